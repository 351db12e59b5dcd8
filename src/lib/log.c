/*
 * log: formats each line completely in a stack buffer and hands it to the
 * kernel with one write(2). A line is capped at LOG_LINE_MAX bytes, which
 * is PIPE_BUF on Linux, so even when stderr is a pipe to a collector two
 * threads' lines can never interleave.
 */
#include "log.h"

#include "timeutil.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096
#define LOG_REQUEST_ID_MAX 128 /* the longest X-Request-Id we accept */
#define TRUNCATION_MARK "...[truncated]"
#define REDACTED "***"

static const char *service_name = "-";
/* Atomic so a level change at run time is safe; the name is set once at
 * start-up, before any thread logs. */
static _Atomic int min_level = LOG_LVL_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *service, enum log_level level)
{
    service_name = service && *service ? service : "-";
    atomic_store(&min_level, (int)level);
}

int log_level_parse(const char *text, enum log_level *level)
{
    if (!text)
        return -1;
    for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/*
 * Control characters (a newline above all) would let one event look like
 * several, including forged ones if the text came from a client, so each
 * becomes a space. Bytes >= 0x80 pass, as UTF-8 text is fine.
 */
static void flatten(char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            p[i] = ' ';
    }
}

static void write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failure to log */
        }
        p += n;
        len -= (size_t)n;
    }
}

int log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&min_level);
}

void log_write(enum log_level level, const char *request_id, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    char stamp[TIMEUTIL_TEXT_MAX];
    int saved_errno = errno; /* so "%m" and the caller's errno survive */
    size_t used, room;
    int n;

    if ((int)level < atomic_load(&min_level))
        return;
    if ((unsigned)level >= ARRAY_LEN(level_names))
        level = LOG_LVL_ERROR;

    timeutil_format_rfc3339(util_now_ms(), stamp);
    n = snprintf(line, sizeof line, "%s %s %s rid=%.*s ", stamp, level_names[level], service_name,
                 LOG_REQUEST_ID_MAX, request_id ? request_id : "-");
    if (n < 0)
        return;
    used = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    flatten(line, used);

    /* Keep one byte for the newline (snprintf's NUL takes its place). */
    room = sizeof line - used - 1;
    va_list ap;
    va_start(ap, fmt);
    errno = saved_errno;
    n = vsnprintf(line + used, room + 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > room) {
        /* Cut long messages visibly rather than silently. */
        n = (int)room;
        if (room >= strlen(TRUNCATION_MARK))
            memcpy(line + used + room - strlen(TRUNCATION_MARK), TRUNCATION_MARK,
                   strlen(TRUNCATION_MARK));
    }
    flatten(line + used, (size_t)n);
    used += (size_t)n;
    line[used++] = '\n';

    write_all(line, used);
    errno = saved_errno;
}

/* Appends to a fixed buffer, dropping what does not fit; always leaves it
 * terminated. */
struct out {
    char *buf;
    size_t size;
    size_t len;
};

static void append(struct out *o, const char *p, size_t n)
{
    if (o->size == 0)
        return;
    size_t room = o->size - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* The password of a query parameter or libpq key=value pair ends at one
 * of these; a quoted conninfo value ends at its closing quote. */
static size_t param_value_len(const char *v)
{
    if (*v == '\'') {
        size_t i = 1;
        while (v[i] && v[i] != '\'') {
            if (v[i] == '\\' && v[i + 1])
                i++;
            i++;
        }
        return v[i] ? i + 1 : i;
    }
    return strcspn(v, "& #");
}

/* Whether a "password=" starting at p begins a parameter, as opposed to
 * sitting inside another name ("old_password=") or a value. */
static bool starts_param(const char *url, const char *p)
{
    return p == url || p[-1] == '?' || p[-1] == '&' || p[-1] == ' ' || p[-1] == ';';
}

/*
 * Two places hold passwords in the URLs and connection strings we log:
 * the userinfo of scheme://user:pass@host, and a "password=" parameter
 * (a libpq conninfo or a postgresql://...?password= query). The output is
 * written left to right, so a too-small buffer can cut it short but never
 * reveal a password.
 */
static void redact_one(const char *url, char *buf, size_t size)
{
    static const char key[] = "password=";
    struct out o = {buf, size, 0};
    const char *p;

    if (size == 0)
        return;
    buf[0] = '\0';
    if (!url)
        return;
    p = url;

    const char *scheme_end = strstr(url, "://");
    if (scheme_end) {
        const char *auth = scheme_end + 3;
        const char *auth_end = auth + strcspn(auth, "/?#");
        const char *at = NULL;
        /* The last '@' ends the userinfo, as URL parsers take it, so an
         * unescaped '@' inside a password is still hidden. */
        for (const char *q = auth; q < auth_end; q++)
            if (*q == '@')
                at = q;
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon && colon + 1 < at) {
            append(&o, url, (size_t)(colon + 1 - url));
            append(&o, REDACTED, strlen(REDACTED));
            p = at;
        }
    }

    while (*p) {
        const char *hit = strcasestr(p, key);
        while (hit && !starts_param(url, hit))
            hit = strcasestr(hit + 1, key);
        if (!hit)
            break;
        const char *value = hit + strlen(key);
        append(&o, p, (size_t)(value - p));
        size_t vlen = param_value_len(value);
        if (vlen > 0)
            append(&o, REDACTED, strlen(REDACTED));
        p = value + vlen;
    }
    append(&o, p, strlen(p));
}

/* A broker cluster is a comma-separated list of URLs: each has its own
 * password to hide. */
void log_redact_url(const char *url, char *buf, size_t size)
{
    char one[512], shown[512];
    size_t used = 0;

    if (!url || !strchr(url, ',') || !strstr(url, "://")) {
        redact_one(url, buf, size);
        return;
    }
    if (size == 0)
        return;
    buf[0] = '\0';
    for (const char *p = url; *p;) {
        size_t n = strcspn(p, ",");
        if (n >= sizeof(one))
            n = sizeof(one) - 1; /* cut, never shown past the password */
        memcpy(one, p, n);
        one[n] = '\0';
        redact_one(one, shown, sizeof(shown));
        used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%s%s", used ? "," : "",
                                 shown);
        if (used >= size)
            break;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
}
