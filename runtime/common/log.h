/* log.h - structured logging to stderr.
 *
 * JSON lines ({"ts":..., "level":..., "msg":..., fields...}) when stderr is not a TTY,
 * readable "ts LEVEL msg key=value" lines when it is. One process-wide level. */
#ifndef CHATGW_LOG_H
#define CHATGW_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level_t;

/* A field of a log line. Values are strings; is_raw marks a value that is already JSON
 * (a number, true/false or an object) and is written without quotes in JSON mode. */
typedef struct {
  const char *key;
  const char *value;
  int is_raw;
} log_field_t;

void log_init(void); /* decides JSON or text from isatty(2) */
void log_set_level(log_level_t level);
int log_level_parse(const char *name, log_level_t *out); /* "debug".."error": 0, else -1 */
const char *log_level_name(log_level_t level);
int log_enabled(log_level_t level);
void log_set_json(int json); /* force a format (tests) */
/* cluster.node_id (docs/cluster.md): every line carries "node" while it is set (NULL or "":
 * none, the default). */
void log_set_node(const char *id);

/* Buffer lines below ERROR and write them at log_flush() (the runtime flushes once per
 * loop turn and at exit). Off by default: every line is written at once. */
void log_set_buffered(int on);
void log_flush(void);

/* Write one line. fields may be NULL when nfields is 0. */
void log_write(log_level_t level, const char *msg, const log_field_t *fields, size_t nfields);

/* printf-style convenience with no fields. */
void log_msgf(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debugf(...) log_msgf(LOG_DEBUG, __VA_ARGS__)
#define log_infof(...) log_msgf(LOG_INFO, __VA_ARGS__)
#define log_warnf(...) log_msgf(LOG_WARN, __VA_ARGS__)
#define log_errorf(...) log_msgf(LOG_ERROR, __VA_ARGS__)

#endif
