/*
 * Route tables the compiler refuses (route.h, ROUTE). Built by
 * `make check-routes` once per MISTAKE: 0 is a correct table and must
 * compile (so that a failure below is the check's, not a typo's); each
 * other value is one mistake and must not compile.
 */
#include <stddef.h>

#include "create.h"
#include "http.h"
#include "route.h"
#include "rows.h"

static const struct create_spec spec;
static const struct rows_list list;

/* A handler of another signature, and one without its _data typedef. */
static void wrong_signature(http_request *req)
{
    (void)req;
}
static void undeclared(http_request *req, void *app)
{
    (void)req;
    (void)app;
}

#ifndef MISTAKE
#define MISTAKE 0
#endif

const struct http_route route_mistakes[] = {
    ROUTE("POST", "/x", create_handle, &spec, 0),
    ROUTE("GET", "/x", rows_handle_list, &list, 0),
#if MISTAKE == 1 /* data of another type */
    ROUTE("GET", "/x/{id}", rows_handle_get, &spec, 0),
#elif MISTAKE == 2 /* a handler of another signature */
    ROUTE("GET", "/y", wrong_signature, NULL, 0),
#elif MISTAKE == 3 /* no data for a handler that reads some */
    ROUTE("POST", "/y", create_handle, NULL, 0),
#elif MISTAKE == 4 /* data for a handler that reads none */
    ROUTE("GET", "/healthz", http_handle_document, &list, 0),
#elif MISTAKE == 5 /* a handler that does not say what it reads */
    ROUTE("GET", "/y", undeclared, NULL, 0),
#endif
};

/* Uses what the cases above may leave unused. */
const void *route_mistakes_unused[] = {(const void *)wrong_signature, (const void *)undeclared};
