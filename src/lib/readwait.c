/*
 * readwait (see readwait.h). The waiting requests form one list guarded
 * by one mutex. Only the readwait thread removes a waiter, so it may look
 * at its waiters without the lock while it checks them; the consumer
 * only sets their "dirty" flag, under the lock. A waiter's flag is
 * cleared before its check, so a commit that lands during the check
 * makes it dirty again and it is checked once more: no wake-up is lost.
 */
#include "readwait.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inbox.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

/* Distinct writers a consumer batch is remembered for; past it every
 * waiter is checked (a superset is always safe). */
#define NOTE_SOURCES 8
/* Waiters checked per round, so the lock is taken back now and then. */
#define CHECK_BATCH 64
#define MS_NS 1000000LL
#define METRIC_WAITING "reads_waiting"
#define METRIC_OUTCOMES "reads_waited_total"

struct waiter {
    http_request *req;
    struct ctoken *tokens;
    size_t token_count;
    http_handler answer;
    void *app;
    int64_t deadline_ns;
    int64_t next_poll_ns;
    int poll_ms;
    int dirty; /* under lock: something it waits for may have been applied */
    struct waiter *prev, *next;
};

struct note {
    char source[CTOKEN_SOURCE_MAX + 1];
    int64_t first, last;
};

struct readwait {
    char *database_url;
    db *conn; /* the thread's own; NULL while it cannot be opened */

    struct worker w; /* its lock guards the list of waiters */
    struct waiter *head;
    size_t count;

    /* The consumer thread's notes since its last commit (its own). */
    struct note notes[NOTE_SOURCES];
    int note_count;
    int notes_overflow;
};

int readwait_check(db *conn, const struct ctoken *tokens, size_t count)
{
    for (size_t t = 0; t < count; t++) {
        for (size_t r = 0; r < tokens[t].run_count; r++) {
            const struct ctoken_run *run = &tokens[t].runs[r];
            int64_t applied = 0;
            int rc = inbox_count_applied(conn, tokens[t].source, run->first, run->last, &applied);
            if (rc != DB_OK)
                return rc;
            if (applied != run->last - run->first + 1)
                return 0;
        }
    }
    return 1;
}

static void free_waiter(struct waiter *w)
{
    for (size_t i = 0; i < w->token_count; i++)
        ctoken_free(&w->tokens[i]);
    free(w->tokens);
    free(w);
}

static void unlink_waiter(readwait *rw, struct waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        rw->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    rw->count--;
}

/* Whether any run of w's tokens meets a noted range. */
static int touched(const struct waiter *w, const struct note *n)
{
    for (size_t t = 0; t < w->token_count; t++) {
        if (strcmp(w->tokens[t].source, n->source) != 0)
            continue;
        for (size_t r = 0; r < w->tokens[t].run_count; r++)
            if (w->tokens[t].runs[r].first <= n->last && n->first <= w->tokens[t].runs[r].last)
                return 1;
    }
    return 0;
}

void readwait_answer_not_yet(http_request *req)
{
    struct api_error err;

    api_error_set(&err, 503, "not_consistent_yet", NULL,
                  "the read model has not applied every event of the consistency tokens yet;"
                  " retry later");
    http_add_header(req, "Retry-After", "1");
    http_reply_error(req, &err);
}

/* Checks a due waiter (lock not held). Returns 1 when it was answered. */
static int visit(readwait *rw, struct waiter *w, int64_t now)
{
    int rc = 0;

    if (rw->conn && !db_alive(rw->conn)) {
        db_close(rw->conn);
        rw->conn = NULL;
    }
    if (!rw->conn) {
        char err[UTIL_ERR_MAX];
        if (db_open(rw->database_url, &rw->conn, err, sizeof(err)) != DB_OK) {
            log_warn(NULL, "consistent reads: cannot open the database: %s", err);
            rw->conn = NULL;
        }
    }
    if (rw->conn) {
        rc = readwait_check(rw->conn, w->tokens, w->token_count);
        if (rc < 0)
            log_warn(http_request_id(w->req), "consistent read: checking the inbox failed: %s",
                     db_errmsg(rw->conn));
    }
    if (rc == 1) {
        metrics_counter_add(METRIC_OUTCOMES, "outcome=\"consistent\"", 1);
        w->answer(w->req, w->app);
    } else if (now >= w->deadline_ns || http_draining(w->req)) {
        metrics_counter_add(METRIC_OUTCOMES, "outcome=\"not_consistent_yet\"", 1);
        readwait_answer_not_yet(w->req);
    } else {
        w->poll_ms = w->poll_ms * 2 < READWAIT_POLL_MAX_MS ? w->poll_ms * 2 : READWAIT_POLL_MAX_MS;
        w->next_poll_ns = now + w->poll_ms * MS_NS;
        if (w->next_poll_ns > w->deadline_ns)
            w->next_poll_ns = w->deadline_ns;
        return 0;
    }
    http_resume(w->req); /* w->req is not ours any more */
    return 1;
}

static void *run(void *arg)
{
    readwait *rw = arg;
    struct waiter *due[CHECK_BATCH];
    int answered[CHECK_BATCH];

    pthread_mutex_lock(&rw->w.lock);
    while (!worker_stopping(&rw->w)) {
        int64_t now = util_monotonic_ns(), wake = now + READWAIT_POLL_MAX_MS * MS_NS;
        int n = 0;
        for (struct waiter *w = rw->head; w && n < CHECK_BATCH; w = w->next) {
            if (w->dirty || now >= w->next_poll_ns || now >= w->deadline_ns ||
                http_draining(w->req)) {
                w->dirty = 0;
                due[n++] = w;
            } else if (w->next_poll_ns < wake) {
                wake = w->next_poll_ns;
            }
        }
        if (n == 0) {
            worker_wait_until(&rw->w, wake);
            continue;
        }
        pthread_mutex_unlock(&rw->w.lock);
        for (int i = 0; i < n; i++)
            answered[i] = visit(rw, due[i], now);
        pthread_mutex_lock(&rw->w.lock);
        for (int i = 0; i < n; i++) {
            if (!answered[i])
                continue;
            unlink_waiter(rw, due[i]);
            free_waiter(due[i]);
        }
        metrics_gauge_set(METRIC_WAITING, NULL, (int64_t)rw->count);
    }
    pthread_mutex_unlock(&rw->w.lock);
    return NULL;
}

readwait *readwait_start(const char *database_url, char *err, size_t errlen)
{
    readwait *rw = xcalloc(1, sizeof(*rw));

    rw->database_url = xstrdup(database_url);
    if (db_open(database_url, &rw->conn, err, errlen) != DB_OK) {
        free(rw->database_url);
        free(rw);
        return NULL;
    }
    metrics_describe(METRIC_WAITING, "gauge",
                     "Reads waiting for the read model to apply their consistency tokens.");
    metrics_describe(METRIC_OUTCOMES, "counter", "Reads that waited, by how the wait ended.");
    if (worker_start(&rw->w, run, rw) != 0) {
        snprintf(err, errlen, "cannot start the consistent-read thread");
        db_close(rw->conn);
        free(rw->database_url);
        free(rw);
        return NULL;
    }
    return rw;
}

void readwait_add(readwait *rw, http_request *req, struct ctoken *tokens, size_t count,
                  int64_t deadline_ns, http_handler answer, void *app)
{
    struct waiter *w = xcalloc(1, sizeof(*w));

    w->req = req;
    w->tokens = tokens;
    w->token_count = count;
    w->answer = answer;
    w->app = app;
    w->deadline_ns = deadline_ns;
    w->poll_ms = READWAIT_POLL_FIRST_MS;
    w->next_poll_ns = util_monotonic_ns() + w->poll_ms * MS_NS;
    if (w->next_poll_ns > deadline_ns)
        w->next_poll_ns = deadline_ns;
    /* Checked at once: what was committed before it was listed here
     * woke nobody for it. */
    w->dirty = 1;
    pthread_mutex_lock(&rw->w.lock);
    w->next = rw->head;
    if (rw->head)
        rw->head->prev = w;
    rw->head = w;
    rw->count++;
    metrics_gauge_set(METRIC_WAITING, NULL, (int64_t)rw->count);
    worker_signal(&rw->w);
    pthread_mutex_unlock(&rw->w.lock);
}

void readwait_note(readwait *rw, const char *source, int64_t seq)
{
    int i;

    if (!rw || !source || seq <= 0 || rw->notes_overflow)
        return;
    for (i = 0; i < rw->note_count; i++)
        if (strcmp(rw->notes[i].source, source) == 0)
            break;
    if (i == rw->note_count) {
        if (i == NOTE_SOURCES || strlen(source) > CTOKEN_SOURCE_MAX) {
            rw->notes_overflow = 1;
            return;
        }
        util_strlcpy(rw->notes[i].source, source, sizeof(rw->notes[i].source));
        rw->notes[i].first = rw->notes[i].last = seq;
        rw->note_count++;
        return;
    }
    if (seq < rw->notes[i].first)
        rw->notes[i].first = seq;
    if (seq > rw->notes[i].last)
        rw->notes[i].last = seq;
}

void readwait_committed(readwait *rw)
{
    int woke = 0;

    if (!rw || (rw->note_count == 0 && !rw->notes_overflow))
        return;
    pthread_mutex_lock(&rw->w.lock);
    for (struct waiter *w = rw->head; w; w = w->next) {
        for (int i = 0; i < rw->note_count && !w->dirty; i++)
            if (touched(w, &rw->notes[i]))
                w->dirty = 1;
        if (rw->notes_overflow)
            w->dirty = 1;
        woke |= w->dirty;
    }
    if (woke)
        worker_signal(&rw->w);
    pthread_mutex_unlock(&rw->w.lock);
    rw->note_count = 0;
    rw->notes_overflow = 0;
}

size_t readwait_count(readwait *rw)
{
    pthread_mutex_lock(&rw->w.lock);
    size_t n = rw->count;
    pthread_mutex_unlock(&rw->w.lock);
    return n;
}

void readwait_stop(readwait *rw)
{
    if (!rw)
        return;
    worker_stop(&rw->w);
    /* The server drained first, which answers every waiter; anything left
     * belongs to a server stopped past its drain timeout and must not be
     * touched. */
    if (rw->count)
        log_warn(NULL, "consistent reads: %zu still waiting at shutdown", rw->count);
    while (rw->head) {
        struct waiter *w = rw->head;
        rw->head = w->next;
        free_waiter(w);
    }
    if (rw->conn)
        db_close(rw->conn);
    free(rw->database_url);
    free(rw);
}
