/*
 * metrics: a fixed table of series behind one mutex.
 *
 * A metric name is a family (HELP, TYPE, kind); each distinct label string
 * under it is a series. Series are found through an open-addressing hash
 * of (name, labels), so recording stays cheap on the request path; the
 * table never grows or shrinks, so a series, once made, lives as long as
 * the process and memory is bounded whatever labels callers invent.
 */
#include "metrics.h"

#include "util.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 128
#define HASH_SLOTS 1024 /* a power of two, at least twice METRICS_MAX_SERIES */
#define LABELS_MAX 512  /* room for the labels metrics_observe_request builds */
#define RENDER_INITIAL_CAP 4096

#define REQUESTS_NAME "http_requests_total"
#define DURATION_NAME "http_request_duration_seconds"

/* Upper bounds in seconds; the +Inf bucket is implicit (the count). The
 * text form is kept beside the value so "le" reads as written here. */
static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,   0.1,   0.25,   0.5,   1,    2.5};
static const char *const bucket_labels[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                            "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5"};
#define BUCKETS ARRAY_LEN(bucket_bounds)

_Static_assert(ARRAY_LEN(bucket_bounds) == ARRAY_LEN(bucket_labels), "bucket tables differ");
_Static_assert(HASH_SLOTS >= 2 * METRICS_MAX_SERIES, "hash table too full");
_Static_assert((HASH_SLOTS & (HASH_SLOTS - 1)) == 0, "HASH_SLOTS not a power of two");

enum kind {
    KIND_UNUSED = 0, /* described but never recorded */
    KIND_COUNTER,
    KIND_GAUGE,
    KIND_HISTOGRAM,
};

struct family {
    char *name;
    char *help;      /* NULL: a generic line is rendered */
    char *type;      /* from metrics_describe, or NULL */
    enum kind kind;  /* fixed by the first series */
    int first, last; /* series of this family, in creation order */
};

struct series {
    int family;
    int next;     /* next series of the same family, or -1 */
    char *labels; /* "" for none */
    int64_t value;
    /* Histogram state: per-bucket (not cumulative) counts; render sums. */
    uint64_t buckets[BUCKETS];
    uint64_t count;
    double sum;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct family families[MAX_FAMILIES];
static int family_count;
static struct series series_table[METRICS_MAX_SERIES];
static int series_count;
static int slots[HASH_SLOTS]; /* series index + 1; 0 is empty */

/* Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. A bad one would make
 * the whole page unparseable, so it is refused rather than rendered. */
static bool valid_name(const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != name && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* Labels come escaped from callers; a raw newline would still end the
 * sample line early, so such a series is refused. */
static bool valid_labels(const char *labels)
{
    return strchr(labels, '\n') == NULL;
}

static uint32_t hash_key(const char *name, const char *labels)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ 0xffu) * 16777619u; /* separator no name contains */
    for (const char *p = labels; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

static int family_find(const char *name)
{
    for (int i = 0; i < family_count; i++)
        if (strcmp(families[i].name, name) == 0)
            return i;
    return -1;
}

static int family_get(const char *name)
{
    int i = family_find(name);
    if (i >= 0 || family_count == MAX_FAMILIES)
        return i;
    i = family_count++;
    families[i] = (struct family){.name = xstrdup(name), .first = -1, .last = -1};
    return i;
}

static bool kinds_compatible(enum kind have, enum kind want)
{
    /* Counters and gauges share the integer value; a histogram has a
     * different shape, so a name cannot be both. */
    return have == want || (have != KIND_HISTOGRAM && want != KIND_HISTOGRAM);
}

/* Finds or creates the series; NULL when it is invalid, of the wrong kind
 * for its name, or the table is full. Called with the lock held. */
static struct series *series_get(const char *name, const char *labels, enum kind kind)
{
    if (!labels)
        labels = "";
    if (!valid_name(name) || !valid_labels(labels))
        return NULL;

    uint32_t slot = hash_key(name, labels) & (HASH_SLOTS - 1);
    while (slots[slot] != 0) {
        struct series *s = &series_table[slots[slot] - 1];
        struct family *f = &families[s->family];
        if (strcmp(f->name, name) == 0 && strcmp(s->labels, labels) == 0)
            return kinds_compatible(f->kind, kind) ? s : NULL;
        slot = (slot + 1) & (HASH_SLOTS - 1);
    }

    if (series_count == METRICS_MAX_SERIES)
        return NULL;
    int fi = family_get(name);
    if (fi < 0)
        return NULL;
    struct family *f = &families[fi];
    if (f->kind == KIND_UNUSED)
        f->kind = kind;
    else if (!kinds_compatible(f->kind, kind))
        return NULL;

    int si = series_count++;
    struct series *s = &series_table[si];
    *s = (struct series){.family = fi, .next = -1, .labels = xstrdup(labels)};
    if (f->last >= 0)
        series_table[f->last].next = si;
    else
        f->first = si;
    f->last = si;
    slots[slot] = si + 1;
    return s;
}

static int64_t saturating_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static bool known_type(const char *type)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "untyped"};
    for (size_t i = 0; i < ARRAY_LEN(types); i++)
        if (strcmp(type, types[i]) == 0)
            return true;
    return false;
}

void metrics_describe(const char *name, const char *type, const char *help)
{
    if (!valid_name(name))
        return;
    pthread_mutex_lock(&lock);
    int fi = family_get(name);
    if (fi < 0)
        goto out;
    struct family *f = &families[fi];
    if (help) {
        free(f->help);
        f->help = xstrdup(help);
    }
    if (type && known_type(type)) {
        free(f->type);
        f->type = xstrdup(type);
    }
out:
    pthread_mutex_unlock(&lock);
}

void metrics_counter_add(const char *name, const char *labels, int64_t n)
{
    if (n < 0) /* a counter only goes up; Prometheus reads a drop as a restart */
        return;
    pthread_mutex_lock(&lock);
    struct series *s = series_get(name, labels, KIND_COUNTER);
    if (s)
        s->value = saturating_add(s->value, n);
    pthread_mutex_unlock(&lock);
}

void metrics_gauge_set(const char *name, const char *labels, int64_t value)
{
    pthread_mutex_lock(&lock);
    struct series *s = series_get(name, labels, KIND_GAUGE);
    if (s)
        s->value = value;
    pthread_mutex_unlock(&lock);
}

void metrics_gauge_add(const char *name, const char *labels, int64_t delta)
{
    pthread_mutex_lock(&lock);
    struct series *s = series_get(name, labels, KIND_GAUGE);
    if (s)
        s->value = saturating_add(s->value, delta);
    pthread_mutex_unlock(&lock);
}

static void histogram_add(struct series *s, double seconds)
{
    size_t i = 0;
    while (i < BUCKETS && seconds > bucket_bounds[i])
        i++;
    if (i < BUCKETS)
        s->buckets[i]++;
    s->count++;
    s->sum += seconds;
}

/* NaN or infinity would poison _sum for good; a negative duration (clock
 * skew between hosts, for event lag) is counted as zero. */
static bool clean_seconds(double *seconds)
{
    if (!isfinite(*seconds))
        return false;
    if (*seconds < 0)
        *seconds = 0;
    return true;
}

void metrics_observe(const char *name, const char *labels, double seconds)
{
    if (!clean_seconds(&seconds))
        return;
    pthread_mutex_lock(&lock);
    struct series *s = series_get(name, labels, KIND_HISTOGRAM);
    if (s)
        histogram_add(s, seconds);
    pthread_mutex_unlock(&lock);
}

/* Appends value to dst escaped as a label value (backslash, quote and
 * newline); an escape that would not fit is left out whole, so the result
 * is always well-formed. Returns the new length. */
static size_t append_label_value(char *dst, size_t len, size_t size, const char *value)
{
    for (const char *p = value; *p; p++) {
        char esc[2] = {*p, 0};
        size_t n = 1;
        if (*p == '\\' || *p == '"' || *p == '\n') {
            esc[0] = '\\';
            esc[1] = *p == '\n' ? 'n' : *p;
            n = 2;
        }
        if (len + n >= size)
            break;
        memcpy(dst + len, esc, n);
        len += n;
    }
    dst[len] = '\0';
    return len;
}

static size_t append_text(char *dst, size_t len, size_t size, const char *text)
{
    size_t n = strlen(text);
    if (n > size - 1 - len)
        n = size - 1 - len;
    memcpy(dst + len, text, n);
    len += n;
    dst[len] = '\0';
    return len;
}

static void set_default_help(const char *name, const char *help)
{
    int fi = family_find(name);
    if (fi >= 0 && !families[fi].help)
        families[fi].help = xstrdup(help);
}

void metrics_observe_request(const char *route, const char *method, int status, double seconds)
{
    char labels[LABELS_MAX];
    char status_text[32];
    size_t len = 0;

    len = append_text(labels, len, sizeof labels, "route=\"");
    len = append_label_value(labels, len, sizeof labels, route ? route : "");
    len = append_text(labels, len, sizeof labels, "\",method=\"");
    len = append_label_value(labels, len, sizeof labels, method ? method : "");
    len = append_text(labels, len, sizeof labels, "\"");
    /* The histogram has the labels so far; the counter adds the status. */
    size_t histogram_len = len;
    snprintf(status_text, sizeof status_text, ",status=\"%d\"", status);
    append_text(labels, len, sizeof labels, status_text);

    pthread_mutex_lock(&lock);
    struct series *s = series_get(REQUESTS_NAME, labels, KIND_COUNTER);
    if (s)
        s->value = saturating_add(s->value, 1);
    set_default_help(REQUESTS_NAME, "HTTP requests answered, by route, method and status.");

    labels[histogram_len] = '\0';
    if (clean_seconds(&seconds)) {
        s = series_get(DURATION_NAME, labels, KIND_HISTOGRAM);
        if (s)
            histogram_add(s, seconds);
        set_default_help(DURATION_NAME, "Time to answer an HTTP request, by route and method.");
    }
    pthread_mutex_unlock(&lock);
}

/* A growable text buffer for rendering. */
struct text {
    char *p;
    size_t len;
    size_t cap;
};

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= t->cap - t->len) {
        while ((size_t)n >= t->cap - t->len)
            t->cap *= 2;
        t->p = xrealloc(t->p, t->cap);
        va_start(ap, fmt);
        vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
    }
    t->len += (size_t)n;
}

/* HELP text escapes only backslash and newline (format 0.0.4). */
static void render_help(struct text *t, const struct family *f)
{
    text_printf(t, "# HELP %s ", f->name);
    const char *help = f->help ? f->help : f->name;
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            text_printf(t, "\\\\");
        else if (*p == '\n')
            text_printf(t, "\\n");
        else
            text_printf(t, "%c", *p);
    }
    text_printf(t, "\n");
}

static const char *family_type(const struct family *f)
{
    if (f->kind == KIND_HISTOGRAM)
        return "histogram"; /* the _bucket lines make it one, whatever was declared */
    if (f->type && strcmp(f->type, "histogram") != 0)
        return f->type;
    return f->kind == KIND_COUNTER ? "counter" : "gauge";
}

/* The shortest text from 15 significant digits up that reads back as the
 * same double: "0.25" rather than "0.25000000000000000". */
static void format_double(char *buf, size_t size, double v)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void render_histogram(struct text *t, const struct family *f, const struct series *s)
{
    const char *sep = *s->labels ? "," : "";
    uint64_t cumulative = 0;
    char sum[40];

    for (size_t i = 0; i < BUCKETS; i++) {
        cumulative += s->buckets[i];
        text_printf(t, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", f->name, s->labels, sep,
                    bucket_labels[i], cumulative);
    }
    text_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", f->name, s->labels, sep, s->count);
    format_double(sum, sizeof sum, s->sum);
    if (*s->labels) {
        text_printf(t, "%s_sum{%s} %s\n", f->name, s->labels, sum);
        text_printf(t, "%s_count{%s} %" PRIu64 "\n", f->name, s->labels, s->count);
    } else {
        text_printf(t, "%s_sum %s\n", f->name, sum);
        text_printf(t, "%s_count %" PRIu64 "\n", f->name, s->count);
    }
}

char *metrics_render(size_t *len)
{
    struct text t = {xmalloc(RENDER_INITIAL_CAP), 0, RENDER_INITIAL_CAP};
    t.p[0] = '\0';

    pthread_mutex_lock(&lock);
    for (int fi = 0; fi < family_count; fi++) {
        const struct family *f = &families[fi];
        if (f->first < 0)
            continue; /* described, never recorded: nothing to show yet */
        render_help(&t, f);
        text_printf(&t, "# TYPE %s %s\n", f->name, family_type(f));
        for (int si = f->first; si >= 0; si = series_table[si].next) {
            const struct series *s = &series_table[si];
            if (f->kind == KIND_HISTOGRAM)
                render_histogram(&t, f, s);
            else if (*s->labels)
                text_printf(&t, "%s{%s} %" PRId64 "\n", f->name, s->labels, s->value);
            else
                text_printf(&t, "%s %" PRId64 "\n", f->name, s->value);
        }
    }
    pthread_mutex_unlock(&lock);

    if (len)
        *len = t.len;
    return t.p;
}
