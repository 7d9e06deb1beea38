/* exec_env.h - the environment a child of chatgw.exec gets: chatgw's own minus secrets and
 * minus the names the call sets or removes, plus the call's entries. */
#ifndef CHATGW_EXEC_ENV_H
#define CHATGW_EXEC_ENV_H

#include <stddef.h>

/* 1 if an environment variable with this name is withheld from children: CHAT_GATEWAY_TOKEN,
 * TELEGRAM_BOT_TOKEN, FEISHU_APP_SECRET, FEISHU_VERIFICATION_TOKEN, FEISHU_ENCRYPT_KEY, and
 * any name ending in _TOKEN, _SECRET, _PASSWORD or _KEY (any case; _API_KEY included). */
int exec_env_is_secret(const char *name, size_t len);

/* The child's environment. set: "NAME=value" entries, unset: names (both NULL-terminated). The
 * strings belong to environ and to the caller; only the array is new (free it). NULL on OOM. */
char **exec_env_build(char *const *set, char *const *unset);

#endif
