#include "route.h"

#include <stdio.h>
#include <string.h>

#include "listq.h"

/* Splits "/a/b" into its segments ("a", "b"; "/a/" has an empty last one).
 * Returns their number, or (size_t)-1 for a path that does not start with
 * '/' or has more than max segments. */
static size_t split_path(const char *path, const char **seg, size_t *len, size_t max)
{
    size_t n = 0;
    const char *p = path;

    if (*p != '/')
        return (size_t)-1;
    while (*p == '/') {
        const char *start = ++p;
        while (*p && *p != '/')
            p++;
        if (n == max)
            return (size_t)-1;
        seg[n] = start;
        len[n] = (size_t)(p - start);
        n++;
    }
    return n;
}

/* Matches a path against a pattern. Returns 1 on a match (with *id set
 * when the pattern has {id}), 0 otherwise; *bad_id is set when only the
 * {id} segment failed, so the caller answers 404 for the id. */
static int match_pattern(const char *pattern, const char *const *seg, const size_t *len, size_t n,
                         int64_t *id, int *bad_id)
{
    const char *pseg[ROUTE_MAX_SEGMENTS];
    size_t plen[ROUTE_MAX_SEGMENTS];
    size_t pn = split_path(pattern, pseg, plen, ROUTE_MAX_SEGMENTS);
    int id_ok = 1;

    if (pn != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (plen[i] == 4 && memcmp(pseg[i], "{id}", 4) == 0) {
            char buf[24];
            if (len[i] == 0 || len[i] >= sizeof(buf)) {
                id_ok = 0;
                continue;
            }
            memcpy(buf, seg[i], len[i]);
            buf[len[i]] = '\0';
            if (listq_parse_uint(buf, id) != 0 || *id < 1)
                id_ok = 0;
            continue;
        }
        if (plen[i] != len[i] || memcmp(pseg[i], seg[i], len[i]) != 0)
            return 0;
    }
    if (!id_ok) {
        *bad_id = 1;
        return 0;
    }
    return 1;
}

void route_allow_add(char *allow, size_t size, const char *method)
{
    if (strstr(allow, method))
        return;
    size_t used = strlen(allow);
    snprintf(allow + used, size - used, "%s%s", used ? ", " : "", method);
}

/* Looks for method + path in one table; notes the methods the path allows. */
static void match_table(const struct route_table *t, const char *lookup, const char *const *seg,
                        const size_t *len, size_t n, struct route_match *m)
{
    for (size_t i = 0; i < t->count; i++) {
        const struct http_route *r = &t->routes[i];
        int64_t id = 0;
        if (!match_pattern(r->pattern, seg, len, n, &id, &m->bad_id))
            continue;
        m->path_known = 1;
        route_allow_add(m->allow, sizeof(m->allow), r->method);
        if (strcmp(r->method, "GET") == 0)
            route_allow_add(m->allow, sizeof(m->allow), "HEAD");
        if (!m->route && strcmp(r->method, lookup) == 0) {
            m->route = r;
            m->id = id;
        }
    }
}

void route_find(const struct route_table *tables, size_t table_count, const char *method,
                const char *path, struct route_match *m)
{
    const char *seg[ROUTE_MAX_SEGMENTS];
    size_t len[ROUTE_MAX_SEGMENTS];
    size_t n = split_path(path, seg, len, ROUTE_MAX_SEGMENTS);
    const char *lookup = strcmp(method, "HEAD") == 0 ? "GET" : method;

    memset(m, 0, sizeof(*m));
    if (n == (size_t)-1)
        return;
    for (size_t t = 0; t < table_count; t++)
        match_table(&tables[t], lookup, seg, len, n, m);
}
