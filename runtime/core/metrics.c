/* metrics.c - process-wide metrics registry rendered as Prometheus text 0.0.4 (see metrics.h).
 *
 * Single-threaded: every call is expected on the event loop thread.
 *
 * Layout: metrics form a singly linked list in registration order. Each metric owns its series
 * (one per label-value combination) twice over: a creation-order list for rendering and a
 * chained hash table keyed on the label values for the per-request lookup. The hash is keyed
 * SipHash-1-3 with a per-process random key, so label values picked by a client cannot be
 * used to build long chains. */
#include "metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "siphash.h"
#include "textbuf.h"

/* Series per metric; past this new label combinations are dropped (one WARN per metric). */
#define METRICS_MAX_SERIES 10000

typedef struct series {
  struct series *hnext; /* hash chain */
  struct series *next;  /* creation order */
  uint64_t hash;
  const char *values[METRICS_MAX_LABELS]; /* point into the tail of this allocation */
  double value;                           /* counter / gauge */
  double sum;                             /* histogram */
  uint64_t count;                         /* histogram */
  uint64_t buckets[];                     /* histogram: nbuckets + 1 (+Inf), not cumulative */
} series_t;

struct metric {
  struct metric *next;
  char *name;
  char *help;
  metric_type_t type;
  size_t nlabels;
  char *labels[METRICS_MAX_LABELS];
  size_t nbuckets;
  double bounds[METRICS_MAX_BUCKETS];
  series_t *first, *last;
  size_t nseries;
  series_t **table; /* power-of-two bucket count */
  size_t tsize;
  int warned_cap;
};

static struct {
  metric_t *first, *last;
  uint64_t key[2]; /* hash key (siphash.h) */
} g_reg;

static const double DEFAULT_BUCKETS[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

/* ---- hashing --------------------------------------------------------------------------- */

static void seed_hash(void) {
  siphash_process_key(g_reg.key);
}

/* Chains one SipHash per value (the previous hash keys the next), so no joined copy of the
 * values is needed on the hot path. Values cannot contain NUL, and the count is fixed per
 * metric, so (value lengths, value bytes) identify the combination. */
static uint64_t hash_values(const char *const *values, size_t n) {
  uint64_t key[2] = {g_reg.key[0], g_reg.key[1]};
  for (size_t i = 0; i < n; i++)
    key[0] = siphash13(values[i], strlen(values[i]), key);
  return key[0];
}

/* ---- validation ------------------------------------------------------------------------ */

static int valid_name(const char *s, int allow_colon) {
  if (!s || !*s) return 0;
  for (const char *p = s; *p; p++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             (allow_colon && c == ':') || (p != s && c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return 1;
}

static int ends_with(const char *s, size_t slen, const char *suffix) {
  size_t n = strlen(suffix);
  return slen >= n && memcmp(s + slen - n, suffix, n) == 0;
}

/* Would name collide with the _bucket/_sum/_count series of a histogram (either way)? */
static int clashes_with_histogram(const char *name, metric_type_t type) {
  static const char *const SUFFIXES[] = {"_bucket", "_sum", "_count"};
  size_t nlen = strlen(name);
  for (metric_t *m = g_reg.first; m; m = m->next) {
    size_t mlen = strlen(m->name);
    for (size_t i = 0; i < 3; i++) {
      /* name == histogram m + suffix */
      if (m->type == METRIC_HISTOGRAM && nlen == mlen + strlen(SUFFIXES[i]) &&
          strncmp(name, m->name, mlen) == 0 && ends_with(name, nlen, SUFFIXES[i]))
        return 1;
      /* new histogram name + suffix == existing m */
      if (type == METRIC_HISTOGRAM && mlen == nlen + strlen(SUFFIXES[i]) &&
          strncmp(m->name, name, nlen) == 0 && ends_with(m->name, mlen, SUFFIXES[i]))
        return 1;
    }
  }
  return 0;
}

/* ---- registry -------------------------------------------------------------------------- */

void metrics_init(void) {
  seed_hash();
}

static void free_metric(metric_t *m) {
  for (series_t *s = m->first, *n; s; s = n) {
    n = s->next;
    free(s);
  }
  for (size_t i = 0; i < m->nlabels; i++)
    free(m->labels[i]);
  free(m->table);
  free(m->name);
  free(m->help);
  free(m);
}

void metrics_shutdown(void) {
  for (metric_t *m = g_reg.first, *n; m; m = n) {
    n = m->next;
    free_metric(m);
  }
  g_reg.first = g_reg.last = NULL;
}

metric_t *metrics_find(const char *name) {
  if (!name) return NULL;
  for (metric_t *m = g_reg.first; m; m = m->next)
    if (strcmp(m->name, name) == 0) return m;
  return NULL;
}

metric_type_t metrics_type(const metric_t *m) {
  return m->type;
}

size_t metrics_label_count(const metric_t *m) {
  return m->nlabels;
}

static series_t *find_series(metric_t *m, const char *const *values, int create);

static metric_t *register_metric(metric_type_t type, const char *name, const char *help,
                                 const char *const *label_names, size_t nlabels,
                                 const double *buckets, size_t nbuckets, const char **err) {
  const char *dummy;
  if (!err) err = &dummy;
  *err = NULL;
  seed_hash();
  if (!valid_name(name, 1)) {
    *err = "invalid metric name (must match [a-zA-Z_:][a-zA-Z0-9_:]*)";
    return NULL;
  }
  if (nlabels > METRICS_MAX_LABELS) {
    *err = "too many labels (max 8)";
    return NULL;
  }
  if (nlabels && !label_names) {
    *err = "label names missing";
    return NULL;
  }
  for (size_t i = 0; i < nlabels; i++) {
    const char *l = label_names[i];
    if (!valid_name(l, 0)) {
      *err = "invalid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)";
      return NULL;
    }
    if (l[0] == '_' && l[1] == '_') {
      *err = "label names starting with __ are reserved";
      return NULL;
    }
    if (type == METRIC_HISTOGRAM && strcmp(l, "le") == 0) {
      *err = "label name 'le' is reserved for histograms";
      return NULL;
    }
    for (size_t j = 0; j < i; j++) {
      if (strcmp(l, label_names[j]) == 0) {
        *err = "duplicate label name";
        return NULL;
      }
    }
  }
  if (type == METRIC_HISTOGRAM) {
    if (nbuckets > METRICS_MAX_BUCKETS) {
      *err = "too many histogram buckets (max 32)";
      return NULL;
    }
    if (!buckets || nbuckets == 0) {
      buckets = DEFAULT_BUCKETS;
      nbuckets = sizeof DEFAULT_BUCKETS / sizeof DEFAULT_BUCKETS[0];
    }
    for (size_t i = 0; i < nbuckets; i++) {
      if (!isfinite(buckets[i])) {
        *err = "histogram buckets must be finite numbers (+Inf is implicit)";
        return NULL;
      }
      if (i > 0 && !(buckets[i] > buckets[i - 1])) {
        *err = "histogram buckets must be strictly ascending";
        return NULL;
      }
    }
  } else {
    nbuckets = 0;
  }

  metric_t *old = metrics_find(name);
  if (old) {
    if (old->type != type) {
      *err = "metric already registered with a different type";
      return NULL;
    }
    int same = old->nlabels == nlabels;
    for (size_t i = 0; same && i < nlabels; i++)
      same = strcmp(old->labels[i], label_names[i]) == 0;
    if (!same) {
      *err = "metric already registered with different label names";
      return NULL;
    }
    if (type == METRIC_HISTOGRAM &&
        (old->nbuckets != nbuckets || memcmp(old->bounds, buckets, nbuckets * sizeof *buckets))) {
      *err = "metric already registered with different buckets";
      return NULL;
    }
    return old;
  }
  if (clashes_with_histogram(name, type)) {
    *err = "metric name clashes with the _bucket/_sum/_count series of a histogram";
    return NULL;
  }

  metric_t *m = calloc(1, sizeof *m);
  if (!m) goto oom;
  m->type = type;
  m->name = strdup(name);
  m->help = strdup(help ? help : "");
  m->tsize = 16;
  m->table = calloc(m->tsize, sizeof *m->table);
  if (!m->name || !m->help || !m->table) goto oom;
  for (size_t i = 0; i < nlabels; i++) {
    m->labels[i] = strdup(label_names[i]);
    if (!m->labels[i]) goto oom;
    m->nlabels = i + 1;
  }
  m->nbuckets = nbuckets;
  if (nbuckets) memcpy(m->bounds, buckets, nbuckets * sizeof *buckets);
  /* A metric without labels has exactly one series: expose it (as 0) from the start. */
  if (nlabels == 0 && !find_series(m, NULL, 1)) goto oom;

  if (g_reg.last)
    g_reg.last->next = m;
  else
    g_reg.first = m;
  g_reg.last = m;
  return m;
oom:
  if (m) free_metric(m);
  *err = "out of memory";
  return NULL;
}

metric_t *metrics_counter(const char *name, const char *help, const char *const *label_names,
                          size_t nlabels, const char **err) {
  return register_metric(METRIC_COUNTER, name, help, label_names, nlabels, NULL, 0, err);
}

metric_t *metrics_gauge(const char *name, const char *help, const char *const *label_names,
                        size_t nlabels, const char **err) {
  return register_metric(METRIC_GAUGE, name, help, label_names, nlabels, NULL, 0, err);
}

metric_t *metrics_histogram(const char *name, const char *help, const char *const *label_names,
                            size_t nlabels, const double *buckets, size_t nbuckets,
                            const char **err) {
  return register_metric(METRIC_HISTOGRAM, name, help, label_names, nlabels, buckets, nbuckets,
                         err);
}

/* ---- series ---------------------------------------------------------------------------- */

static int grow_table(metric_t *m) {
  size_t nsize = m->tsize * 2;
  series_t **nt = calloc(nsize, sizeof *nt);
  if (!nt) return -1;
  for (series_t *s = m->first; s; s = s->next) {
    size_t i = (size_t)s->hash & (nsize - 1);
    s->hnext = nt[i];
    nt[i] = s;
  }
  free(m->table);
  m->table = nt;
  m->tsize = nsize;
  return 0;
}

/* Returns the series for values, creating it when create is set. NULL when absent, on OOM
 * or when the metric is at its series cap. values must already be validated. */
static series_t *find_series(metric_t *m, const char *const *values, int create) {
  uint64_t h = hash_values(values, m->nlabels);
  for (series_t *s = m->table[(size_t)h & (m->tsize - 1)]; s; s = s->hnext) {
    if (s->hash != h) continue;
    size_t i = 0;
    while (i < m->nlabels && strcmp(s->values[i], values[i]) == 0)
      i++;
    if (i == m->nlabels) return s;
  }
  if (!create) return NULL;
  if (m->nseries >= METRICS_MAX_SERIES) {
    if (!m->warned_cap) {
      m->warned_cap = 1;
      log_warnf("metrics: %s reached %d series; new label combinations are dropped", m->name,
                METRICS_MAX_SERIES);
    }
    return NULL;
  }
  if (m->nseries >= m->tsize - m->tsize / 4 && grow_table(m) != 0) return NULL;

  size_t nb = m->type == METRIC_HISTOGRAM ? m->nbuckets + 1 : 0;
  size_t head = sizeof(series_t) + nb * sizeof(uint64_t);
  size_t total = head;
  for (size_t i = 0; i < m->nlabels; i++)
    total += strlen(values[i]) + 1;
  series_t *s = calloc(1, total);
  if (!s) return NULL;
  char *p = (char *)s + head;
  for (size_t i = 0; i < m->nlabels; i++) {
    size_t n = strlen(values[i]) + 1;
    memcpy(p, values[i], n);
    s->values[i] = p;
    p += n;
  }
  s->hash = h;
  size_t bi = (size_t)h & (m->tsize - 1);
  s->hnext = m->table[bi];
  m->table[bi] = s;
  if (m->last)
    m->last->next = s;
  else
    m->first = s;
  m->last = s;
  m->nseries++;
  return s;
}

static int values_ok(const metric_t *m, const char *const *values) {
  if (m->nlabels == 0) return 1;
  if (!values) return 0;
  for (size_t i = 0; i < m->nlabels; i++)
    if (!values[i]) return 0;
  return 1;
}

int metrics_inc(metric_t *m, const char *const *label_values, double v) {
  if (!m || m->type == METRIC_HISTOGRAM || !values_ok(m, label_values)) return -1;
  if (m->type == METRIC_COUNTER && !(v >= 0)) return -1; /* also rejects NaN */
  series_t *s = find_series(m, label_values, 1);
  if (s) s->value += v;
  return 0; /* a series dropped by the cap is not the caller's misuse */
}

int metrics_set(metric_t *m, const char *const *label_values, double v) {
  if (!m || m->type != METRIC_GAUGE || !values_ok(m, label_values)) return -1;
  series_t *s = find_series(m, label_values, 1);
  if (s) s->value = v;
  return 0;
}

int metrics_observe(metric_t *m, const char *const *label_values, double v) {
  if (!m || m->type != METRIC_HISTOGRAM || !values_ok(m, label_values) || isnan(v)) return -1;
  series_t *s = find_series(m, label_values, 1);
  if (!s) return 0;
  /* First bucket whose upper bound is >= v (binary search); index nbuckets is +Inf. */
  size_t lo = 0, hi = m->nbuckets;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (v <= m->bounds[mid])
      hi = mid;
    else
      lo = mid + 1;
  }
  s->buckets[lo]++;
  s->sum += v;
  s->count++;
  return 0;
}

double metrics_value(metric_t *m, const char *const *label_values) {
  if (!m || m->type == METRIC_HISTOGRAM || !values_ok(m, label_values)) return 0;
  series_t *s = find_series(m, label_values, 0);
  return s ? s->value : 0;
}

/* ---- rendering ------------------------------------------------------------------------- */

/* Escapes backslash and newline, plus double quote when quote is set (label values). */
static void sb_escaped(textbuf_t *b, const char *s, int quote) {
  const char *run = s;
  for (const char *p = s; *p; p++) {
    const char *rep = NULL;
    if (*p == '\\')
      rep = "\\\\";
    else if (*p == '\n')
      rep = "\\n";
    else if (quote && *p == '"')
      rep = "\\\"";
    if (!rep) continue;
    textbuf_add(b, run, (size_t)(p - run));
    textbuf_str(b, rep);
    run = p + 1;
  }
  textbuf_str(b, run);
}

/* Integral values print without decimals; others in the shortest of %.15g/%.17g that
 * reads back exactly. */
static void fmt_num(char *out, size_t n, double v) {
  if (isnan(v)) {
    snprintf(out, n, "NaN");
  } else if (isinf(v)) {
    snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
  } else if (v == floor(v) && fabs(v) < 1e15) {
    snprintf(out, n, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
  } else {
    snprintf(out, n, "%.15g", v);
    if (strtod(out, NULL) != v) snprintf(out, n, "%.17g", v);
  }
}

static void sb_num(textbuf_t *b, double v) {
  char tmp[40];
  fmt_num(tmp, sizeof tmp, v);
  textbuf_str(b, tmp);
}

static void sb_u64(textbuf_t *b, uint64_t v) {
  char tmp[24];
  snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
  textbuf_str(b, tmp);
}

/* Writes `{l1="v1",...[,le="x"]}` (nothing when there are no labels and no le). */
static void sb_labels(textbuf_t *b, const metric_t *m, const series_t *s, const char *le) {
  if (m->nlabels == 0 && !le) return;
  textbuf_str(b, "{");
  for (size_t i = 0; i < m->nlabels; i++) {
    if (i) textbuf_str(b, ",");
    textbuf_str(b, m->labels[i]);
    textbuf_str(b, "=\"");
    sb_escaped(b, s->values[i], 1);
    textbuf_str(b, "\"");
  }
  if (le) {
    if (m->nlabels) textbuf_str(b, ",");
    textbuf_str(b, "le=\"");
    textbuf_str(b, le);
    textbuf_str(b, "\"");
  }
  textbuf_str(b, "}");
}

static const char *type_name(metric_type_t t) {
  return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

static void render_metric(textbuf_t *b, const metric_t *m) {
  textbuf_str(b, "# HELP ");
  textbuf_str(b, m->name);
  textbuf_str(b, " ");
  sb_escaped(b, m->help, 0);
  textbuf_str(b, "\n# TYPE ");
  textbuf_str(b, m->name);
  textbuf_str(b, " ");
  textbuf_str(b, type_name(m->type));
  textbuf_str(b, "\n");
  for (const series_t *s = m->first; s; s = s->next) {
    if (m->type != METRIC_HISTOGRAM) {
      textbuf_str(b, m->name);
      sb_labels(b, m, s, NULL);
      textbuf_str(b, " ");
      sb_num(b, s->value);
      textbuf_str(b, "\n");
      continue;
    }
    uint64_t cum = 0;
    for (size_t i = 0; i <= m->nbuckets; i++) {
      char le[40];
      if (i < m->nbuckets)
        fmt_num(le, sizeof le, m->bounds[i]);
      else
        snprintf(le, sizeof le, "+Inf");
      cum += s->buckets[i];
      textbuf_str(b, m->name);
      textbuf_str(b, "_bucket");
      sb_labels(b, m, s, le);
      textbuf_str(b, " ");
      sb_u64(b, cum);
      textbuf_str(b, "\n");
    }
    textbuf_str(b, m->name);
    textbuf_str(b, "_sum");
    sb_labels(b, m, s, NULL);
    textbuf_str(b, " ");
    sb_num(b, s->sum);
    textbuf_str(b, "\n");
    textbuf_str(b, m->name);
    textbuf_str(b, "_count");
    sb_labels(b, m, s, NULL);
    textbuf_str(b, " ");
    sb_u64(b, s->count);
    textbuf_str(b, "\n");
  }
}

char *metrics_render(size_t *len) {
  textbuf_t b = {0};
  textbuf_reserve(&b, 4095); /* a page to start with: the output is rarely small */
  textbuf_add(&b, "", 0);    /* an empty registry still yields "" */
  for (const metric_t *m = g_reg.first; m; m = m->next)
    render_metric(&b, m);
  if (b.oom) {
    free(b.p);
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = b.len;
  return b.p;
}
