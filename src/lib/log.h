/*
 * log: one line per event on stderr.
 *
 *   2025-04-03T10:15:00.123Z INFO order-service rid=ab12 message...
 *
 * Lines are written with a single write(2) so concurrent threads never
 * interleave. Nothing here allocates on the caller's behalf. URLs are
 * printed through log_redact_url() so a password never reaches a log.
 */
#ifndef LIB_LOG_H
#define LIB_LOG_H

#include <stddef.h>

enum log_level {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO = 1,
    LOG_LVL_WARN = 2,
    LOG_LVL_ERROR = 3,
};

/* service is borrowed for the life of the process. */
void log_init(const char *service, enum log_level min_level);

/* "debug", "info", "warn", "error" -> level; returns 0, or -1 if unknown. */
int log_level_parse(const char *text, enum log_level *level);

/* request_id may be NULL ("-" is printed). */
void log_write(enum log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether lines of level are written: for a caller that would pay to
 * prepare a line that is then dropped. */
int log_enabled(enum log_level level);
#define log_debug(rid, ...) log_write(LOG_LVL_DEBUG, rid, __VA_ARGS__)
#define log_info(rid, ...) log_write(LOG_LVL_INFO, rid, __VA_ARGS__)
#define log_warn(rid, ...) log_write(LOG_LVL_WARN, rid, __VA_ARGS__)
#define log_error(rid, ...) log_write(LOG_LVL_ERROR, rid, __VA_ARGS__)

/* Copies url into buf with any password replaced by "***"
 * (amqp://guest:***@127.0.0.1:5672/). Always terminates buf. */
void log_redact_url(const char *url, char *buf, size_t size);

#endif
