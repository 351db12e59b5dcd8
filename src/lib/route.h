/*
 * route: finding the route of a request's method and path in route tables
 * (struct http_route, http.h). Pure functions, no allocation: http.c runs
 * them for every request, and tests/unit/test_route.c checks them alone.
 *
 * A pattern is a path whose segments match exactly, except "{id}", which
 * matches a positive decimal integer without sign or leading zero (up to
 * 2^63 - 1). GET routes also answer HEAD.
 */
#ifndef LIB_ROUTE_H
#define LIB_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define ROUTE_MAX_SEGMENTS 8 /* a longer path matches no route */
#define ROUTE_ALLOW_MAX 64   /* "GET, HEAD, POST, OPTIONS" fits */

/*
 * Route tables the compiler checks. struct http_route keeps its data as
 * const void * (one table holds routes of every kind), so a plain
 * initializer could pair a handler with data of another type, or a
 * function of another signature, and nothing would say so before it ran.
 * Tables are therefore written with ROUTE:
 *
 *   ROUTE("GET", "/svc/orders/{id}", rows_handle_get, &order_rows, 0),
 *
 * - the handler must be an http_handler exactly (no conversion: _Generic
 *   matches types as they are), so another signature does not compile;
 * - every handler declares, beside it in its header, the type of the data
 *   it reads as the typedef <handler>_data (void when it reads none), and
 *   reads http_route_data() through that typedef, so the declaration and
 *   the use cannot drift apart;
 * - the data must point to exactly that type (const or not), NULL only
 *   for a handler whose type is void (NULL is ((void *)0) in C here); a
 *   handler without the typedef does not compile in a table.
 *
 * The last argument is the route's body_optional (http.h).
 */
#define ROUTE(method, pattern, handler, data, body_optional)                                       \
    {                                                                                              \
        (method), (pattern), ROUTE_HANDLER(handler), ROUTE_DATA(handler, data), (body_optional)    \
    }
#define ROUTE_HANDLER(handler) _Generic((handler), http_handler : (handler))
#define ROUTE_DATA(handler, data)                                                                  \
    _Generic((data), const handler##_data *: (const void *)(data),                                 \
             handler##_data *: (const void *)(data))

struct route_table {
    const struct http_route *routes;
    size_t count;
};

struct route_match {
    const struct http_route *route; /* NULL: no route for this method */
    int64_t id;                     /* the {id} segment of the route found */
    int path_known;                 /* some route has this path (then 405) */
    int bad_id;                     /* a path matched but for its {id} */
    char allow[ROUTE_ALLOW_MAX];    /* the methods of the path, "GET, HEAD" */
};

/* Looks method and path up in the tables, in order (the first route that
 * matches wins); fills m. HEAD is looked up as GET. */
void route_find(const struct route_table *tables, size_t table_count, const char *method,
                const char *path, struct route_match *m);

/* Appends method to a comma-separated allow list unless it is there. */
void route_allow_add(char *allow, size_t size, const char *method);

#endif
