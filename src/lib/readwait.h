/*
 * readwait: reads that wait until the read model has applied the events
 * their consistency tokens name (docs/api.md "Read your writes").
 *
 * A handler whose tokens are not satisfied yet suspends its request
 * (http_suspend) and hands it here; no HTTP worker thread and no database
 * connection or lock is held while it waits. One thread keeps every
 * waiting request and checks a request's tokens against the inbox
 * (readwait_check) when:
 *   - the consumer of this process committed a batch that applied a
 *     position one of its tokens names (readwait_note, then
 *     readwait_committed after the commit);
 *   - its poll time came: events applied by another process on the same
 *     database (competing consumers) are seen this way, the first poll
 *     soon and then less often (READWAIT_POLL_FIRST_MS doubling up to
 *     READWAIT_POLL_MAX_MS);
 *   - its deadline came, or the server began to drain for shutdown.
 * A satisfied request is answered by its answer callback (the usual GET
 * handler, on this thread, with its own pooled connection); one past its
 * deadline, or cut short by a shutdown, gets 503 not_consistent_yet with
 * Retry-After: 1. Either way the request is then resumed.
 */
#ifndef LIB_READWAIT_H
#define LIB_READWAIT_H

#include <stddef.h>
#include <stdint.h>

#include "ctoken.h"
#include "db.h"
#include "http.h"

#define READWAIT_POLL_FIRST_MS 50
#define READWAIT_POLL_MAX_MS 1000

typedef struct readwait readwait;

/* 1 when every event the tokens name is in the inbox of conn's database,
 * 0 when not yet, or a negative db_result. */
int readwait_check(db *conn, const struct ctoken *tokens, size_t count);

/* Answers 503 not_consistent_yet with Retry-After: 1. */
void readwait_answer_not_yet(http_request *req);

/* Starts the thread with its own connection to database_url; NULL and
 * err filled on failure. */
readwait *readwait_start(const char *database_url, char *err, size_t errlen);

/* Takes over a suspended request until its deadline (util_monotonic_ns
 * time). tokens (count of them, an array of malloc()) become the
 * readwait's. answer(req, app) writes the answer once the tokens are
 * satisfied; readwait resumes the request afterwards. */
void readwait_add(readwait *rw, http_request *req, struct ctoken *tokens, size_t count,
                  int64_t deadline_ns, http_handler answer, void *app);

/* From the consumer's thread, inside its transaction: the event at seq of
 * source is being applied. Remembered until readwait_committed. */
void readwait_note(readwait *rw, const char *source, int64_t seq);
/* After the consumer's commit: the requests waiting for what was noted
 * since the last call are checked again. */
void readwait_committed(readwait *rw);

/* Requests still waiting (for metrics and tests). */
size_t readwait_count(readwait *rw);

/* Stops the thread and frees. Call after the HTTP server has drained
 * (every request is answered by then) and after the consumer stopped. */
void readwait_stop(readwait *rw);

#endif
