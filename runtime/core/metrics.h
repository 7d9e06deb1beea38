/* metrics.h - process-wide metrics registry (counters, gauges, histograms with labels),
 * rendered in the Prometheus text exposition format (version 0.0.4).
 *
 * Metrics live in C for the life of the process, so they survive Lua reloads. Registering
 * the same name twice with the same type and label names returns the existing metric; with
 * a different type or label set it fails (NULL, and *err set). */
#ifndef CHATGW_METRICS_H
#define CHATGW_METRICS_H

#include <stddef.h>

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type_t;
typedef struct metric metric_t;

#define METRICS_MAX_LABELS 8
#define METRICS_MAX_BUCKETS 32

void metrics_init(void);
void metrics_shutdown(void); /* frees everything */

/* label_names: up to METRICS_MAX_LABELS names, nlabels of them (0 allowed).
 * Names must match [a-zA-Z_:][a-zA-Z0-9_:]* (labels: no colon). */
metric_t *metrics_counter(const char *name, const char *help, const char *const *label_names,
                          size_t nlabels, const char **err);
metric_t *metrics_gauge(const char *name, const char *help, const char *const *label_names,
                        size_t nlabels, const char **err);
/* buckets: ascending upper bounds (+Inf is implicit); NULL/0 selects the default
 * latency buckets in seconds {.005,.01,.025,.05,.1,.25,.5,1,2.5,5,10}. */
metric_t *metrics_histogram(const char *name, const char *help, const char *const *label_names,
                            size_t nlabels, const double *buckets, size_t nbuckets,
                            const char **err);

metric_t *metrics_find(const char *name);
metric_type_t metrics_type(const metric_t *m);
size_t metrics_label_count(const metric_t *m);

/* label_values: exactly metrics_label_count(m) values. Return 0, or -1 on misuse
 * (wrong type, e.g. inc on a histogram; negative counter increment). */
int metrics_inc(metric_t *m, const char *const *label_values, double v);     /* counter/gauge */
int metrics_set(metric_t *m, const char *const *label_values, double v);     /* gauge */
int metrics_observe(metric_t *m, const char *const *label_values, double v); /* histogram */
/* Current value of a counter/gauge series (0 when the series does not exist). */
double metrics_value(metric_t *m, const char *const *label_values);

/* Render every metric. Returns a malloc'd NUL-terminated string (*len set), caller frees. */
char *metrics_render(size_t *len);

#endif
