/* main.c - the command line: chatgw run|check|test DIR [--config FILE] [--no-master] | version |
 * --help */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master.h"
#include "rt.h"

#define DEFAULT_CONFIG "./config/chatgw.yml"

static const char USAGE[] =
    "usage: chatgw run DIR [--config FILE] [--no-master] | chatgw check DIR "
    "[--config "
    "FILE] | chatgw test DIR [SPEC...] [--config FILE] | chatgw version | "
    "chatgw --help\n";

static const char HELP[] =
    "chatgw - a scriptable chat gateway: Lua handlers on a libuv runtime\n"
    "\n"
    "Commands:\n"
    "  chatgw run DIR [--config FILE]    load config and every DIR/*.lua handler, then serve\n"
    "                                    (SIGHUP reloads, SIGTERM/SIGINT drain and stop); a\n"
    "                                    master process holds the listeners and re-forks the\n"
    "                                    worker that serves when it dies (--no-master, or\n"
    "                                    CHATGW_NO_MASTER=1: serve in this process, debugging)\n"
    "  chatgw check DIR [--config FILE]  load and validate exactly as run would, start nothing;\n"
    "                                    prints problems as file:line: message, exits 1 if any\n"
    "  chatgw test DIR [SPEC...]         load DIR and run handler specs (*_spec.lua files or\n"
    "                                    directories; default DIR/../tests) against a simulated\n"
    "                                    chat; a line per spec, then N passed, N failed\n"
    "  chatgw version                    print the version\n"
    "  chatgw --help                     this text\n"
    "\n"
    "The config file defaults to " DEFAULT_CONFIG " (built-in defaults when it is absent).\n"
    "Environment: CHAT_GATEWAY_TOKEN, CHAT_GATEWAY_HOST, CHAT_GATEWAY_PORT,\n"
    "CHAT_GATEWAY_DATA_DIR, CHAT_GATEWAY_LOG_LEVEL (see docs/config.md).\n";

static int usage_error(const char *what) {
  fprintf(stderr, "chatgw: %s\n%s", what, USAGE);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage_error("missing command");
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    fputs(HELP, stdout);
    return 0;
  }
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    if (argc > 2) return usage_error("version takes no arguments");
    printf("chatgw %s\n", CHATGW_VERSION);
    return 0;
  }
  int check = strcmp(cmd, "check") == 0, test = strcmp(cmd, "test") == 0;
  if (!check && !test && strcmp(cmd, "run") != 0) {
    char msg[300];
    snprintf(msg, sizeof msg, "unknown command '%.200s'", cmd);
    return usage_error(msg);
  }
  const char *dir = NULL, *config = DEFAULT_CONFIG;
  int explicit_config = 0, no_master = 0;
  const char *specs[256];
  int nspecs = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0) {
      if (i + 1 >= argc) return usage_error("--config needs a FILE");
      config = argv[++i];
      explicit_config = 1;
    } else if (strncmp(argv[i], "--config=", 9) == 0) {
      config = argv[i] + 9;
      explicit_config = 1;
    } else if (strcmp(argv[i], "--no-master") == 0 && !check && !test) {
      no_master = 1;
    } else if (argv[i][0] == '-') {
      char msg[300];
      snprintf(msg, sizeof msg, "unknown flag '%.200s'", argv[i]);
      return usage_error(msg);
    } else if (!dir) {
      dir = argv[i];
    } else if (test && nspecs < (int)(sizeof specs / sizeof specs[0])) {
      specs[nspecs++] = argv[i];
    } else {
      return usage_error(test ? "too many specs" : "only one handlers directory");
    }
  }
  if (!dir) return usage_error("missing handlers DIR");
  rt_options_t o = {dir,   config, explicit_config, check ? RT_CHECK : test ? RT_TEST : RT_RUN,
                    specs, nspecs};
  const char *nm = getenv("CHATGW_NO_MASTER");
  if (nm && *nm && strcmp(nm, "0") != 0) no_master = 1;
  if (check || test || no_master) return rt_run(&o);
  return master_run(&o);
}
