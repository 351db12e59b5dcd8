/*
 * eventlog: GET <prefix>/events, a writer's event log (docs/api.md 8.3,
 * docs/eventlog.md): every event its outbox committed, published yet or
 * not, in commit order, each under a position that never changes.
 *
 *   GET /order-service/events?after=17&limit=2
 *   [{"position": 18, "event": {...}}, {"position": 19, "event": {...}}]
 *
 * "event" is the envelope exactly as the relay publishes it (the stored
 * body, not re-serialized). The answer is a JSON array like every list;
 * a client pages by passing the last position it got as the next
 * "after", and has reached the end of the log (for now) when a page is
 * shorter than its limit. An admin route: the handler calls
 * admin_authorize() first. It takes struct service (service.h) as its
 * app pointer and reads on a pooled connection.
 */
#ifndef LIB_EVENTLOG_H
#define LIB_EVENTLOG_H

#include <stddef.h>
#include <stdint.h>

#include "api_error.h"
#include "http.h"
#include "listq.h"

#define EVENTLOG_DEFAULT_LIMIT LISTQ_DEFAULT_LIMIT
#define EVENTLOG_MAX_LIMIT LISTQ_MAX_LIMIT

struct eventlog_query {
    int64_t after; /* answer the positions above it; >= 0 */
    int64_t limit; /* 1..EVENTLOG_MAX_LIMIT */
};

/* Validates the query string: only "after" (an integer >= 0, default 0)
 * and "limit" (1..1000, default 100), each at most once and not empty,
 * as plain decimal digits. Returns 0, or -1 with err set to 400
 * invalid_query (the message names the parameter, or the allowed ones). */
int eventlog_parse_query(const struct query_param *params, size_t count, struct eventlog_query *out,
                         struct api_error *err);

/* GET <prefix>/events. */
void eventlog_handle_list(http_request *req, void *app);
typedef void eventlog_handle_list_data; /* no route data (route.h) */

#endif
