/* token.h - the data directory and the API bearer token. */
#ifndef CHATGW_TOKEN_H
#define CHATGW_TOKEN_H

#include <stddef.h>

/* mkdir -p with mode 0700 for what it creates. Returns 0, or -1 with err set. */
int data_dir_prepare(const char *dir, char *err, size_t errlen);

/* The token: CHAT_GATEWAY_TOKEN when set; else <data_dir>/token, generated (32 random bytes,
 * hex, mode 0600) the first time. source receives "env" or the file's path. Returns 0, or -1
 * with err set. */
int token_setup(const char *data_dir, char *token, size_t tlen, char *source, size_t slen,
                char *err, size_t errlen);

#endif
