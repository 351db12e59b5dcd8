/*
 * metrics: process-wide counters, gauges and request latency histograms,
 * rendered in the Prometheus text format (version 0.0.4).
 *
 * Every function is thread-safe. Names and label strings are copied on
 * first use; a label string is the inside of the braces, already escaped,
 * e.g. "route=\"/x\"" (or NULL for none). The number of distinct
 * series is capped (METRICS_MAX_SERIES); past it new series are dropped.
 */
#ifndef LIB_METRICS_H
#define LIB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_SERIES 512

/* Declares HELP and TYPE ("counter" or "gauge") for a metric name. */
void metrics_describe(const char *name, const char *type, const char *help);

void metrics_counter_add(const char *name, const char *labels, int64_t n);
void metrics_gauge_set(const char *name, const char *labels, int64_t value);
void metrics_gauge_add(const char *name, const char *labels, int64_t delta);

/* One HTTP request: counted by route, method and status, and its latency
 * added to a histogram by route and method. */
void metrics_observe_request(const char *route, const char *method, int status, double seconds);

/* Observes a duration in seconds into a histogram (e.g. event lag). */
void metrics_observe(const char *name, const char *labels, double seconds);

/* Renders everything; the caller frees the returned string. */
char *metrics_render(size_t *len);

#endif
