/* check.h - pass/fail counting for the C unit tests (tests/unit/test_*.c), one include each.
 *
 * Three ways to check, each with its own line format:
 *   CHECK(cond)                "ok   file:line cond"  or  "FAIL file:line cond"
 *   CHECK_MSG(cond, fmt, ...)  nothing when it holds,  or  "FAIL file:line: message"
 *   check(ok, fmt, ...)        "ok   - message"       or  "FAIL - message"
 * A test with checks of its own counts them in g_pass / g_fail. main() ends with
 * `return check_report();`: the "N passed, M failed" line, and the exit status. */
#ifndef CHATGW_TEST_CHECK_H
#define CHATGW_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>

static int g_pass, g_fail;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (cond) {                                                                                    \
      g_pass++;                                                                                    \
      printf("ok   %s:%d %s\n", __FILE__, __LINE__, #cond);                                        \
    } else {                                                                                       \
      g_fail++;                                                                                    \
      printf("FAIL %s:%d %s\n", __FILE__, __LINE__, #cond);                                        \
    }                                                                                              \
  } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
  do {                                                                                             \
    if (cond) {                                                                                    \
      g_pass++;                                                                                    \
    } else {                                                                                       \
      g_fail++;                                                                                    \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                  \
      printf(__VA_ARGS__);                                                                         \
      printf("\n");                                                                                \
    }                                                                                              \
  } while (0)

static inline void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s - ", ok ? "ok  " : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  fflush(stdout);
  va_end(ap);
  if (ok)
    g_pass++;
  else
    g_fail++;
}

static inline int check_report(void) {
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

#endif
