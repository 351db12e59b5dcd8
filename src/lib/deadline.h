/*
 * deadline: connection deadlines of the HTTP server (slow clients).
 *
 * libmicrohttpd closes a connection that stays silent for --idle-timeout,
 * but a client that trickles its request a byte at a time is never
 * silent, so it could hold its connection for hours, and enough of them
 * lock everyone else out (slowloris). So we add deadlines of our own:
 *
 *   - the head of a request must be complete within the idle timeout of
 *     the connection opening or of the previous answer;
 *   - its body then gets a grace of the idle timeout plus one second per
 *     DEADLINE_BODY_MIN_RATE bytes received, so an honest upload of any
 *     allowed size finishes, and a trickle does not.
 * A connection whose request is being served (or suspended for the group
 * commit) has no deadline here.
 *
 * The server keeps one deadline_list: it opens a record per connection
 * (deadline_open, with the connection's socket), moves it from phase to
 * phase as the request arrives (deadline_enter, deadline_received) and
 * closes it when the connection closes (deadline_close). The list's
 * reaper thread (deadline_reaper_start) shuts down the socket of every
 * connection past its deadline (deadline_reap), every
 * DEADLINE_REAP_PERIOD_MS; the server then reads end-of-file and closes
 * the connection in its own thread. A record leaves the list under the
 * same lock as the reaper's shutdown, so the server must close the record
 * before it closes the socket: a descriptor the reaper shuts down is then
 * never one that was closed and reused.
 *
 * Every time is util_monotonic_ns() time, given by the caller (the reaper
 * uses the real clock), so that the rules can be tested on a fake one.
 */
#ifndef LIB_DEADLINE_H
#define LIB_DEADLINE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes per second a body must average, past its grace. */
#define DEADLINE_BODY_MIN_RATE 1024
/* How often the reaper looks for connections past their deadline. */
#define DEADLINE_REAP_PERIOD_MS 250
/* Counts the connections shut down, by phase="head" or "body". */
#define DEADLINE_METRIC_TIMED_OUT "http_connections_timed_out_total"

enum deadline_phase {
    DEADLINE_HEAD,   /* a request head is due */
    DEADLINE_BODY,   /* the head is complete, the body is due */
    DEADLINE_SERVING /* the request is being served: no deadline */
};

typedef struct deadline_list deadline_list;
typedef struct deadline_conn deadline_conn;

/* A list with no connection and no thread yet, for connections whose idle
 * timeout is idle_ns. Freed by deadline_list_free. */
deadline_list *deadline_list_new(int64_t idle_ns);

/* Frees the list and any record still open in it (the reaper stopped). */
void deadline_list_free(deadline_list *l);

/* Starts the reaper thread. 0, or -1 when it cannot start. */
int deadline_reaper_start(deadline_list *l);

/* Stops the reaper thread and waits for it. */
void deadline_reaper_stop(deadline_list *l);

/* Adds the connection of socket fd, in phase DEADLINE_HEAD since now_ns.
 * Any thread. The record is the list's: the caller keeps the pointer until
 * deadline_close. */
deadline_conn *deadline_open(deadline_list *l, int fd, int64_t now_ns);

/* Removes c from the list and frees it; call before closing its socket. */
void deadline_close(deadline_list *l, deadline_conn *c);

/* c (NULL: nothing) enters phase at now_ns, its body count back to 0.
 * From the connection's own thread, without the list's lock. */
void deadline_enter(deadline_conn *c, enum deadline_phase phase, int64_t now_ns);

/* c (NULL: nothing) received bytes more of its body. */
void deadline_received(deadline_conn *c, size_t bytes);

/* The metrics label of the deadline c has passed at now_ns
 * ("phase=\"head\"" or "phase=\"body\""), or NULL when it has none or has
 * not passed it. Static text. */
const char *deadline_overdue(const deadline_list *l, const deadline_conn *c, int64_t now_ns);

/* Shuts down the socket of every connection past its deadline at now_ns
 * and not shut down yet, and counts it (DEADLINE_METRIC_TIMED_OUT).
 * Returns how many it shut down. The reaper's step; any thread. */
size_t deadline_reap(deadline_list *l, int64_t now_ns);

#endif
