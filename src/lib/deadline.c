/*
 * deadline (see deadline.h). A record's phase and the figures beside it
 * are written by its connection's thread and read by the reaper, as
 * atomics: the phase is stored last, so a reaper that sees a new phase
 * sees its figures. The links, the fd and "reaped" only change under the
 * list's lock.
 */
#include "deadline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

#define NS_PER_S 1000000000LL

struct deadline_conn {
    int fd;
    atomic_int phase;
    _Atomic int64_t since_ns;    /* DEADLINE_HEAD: since when a head is due;
                                    DEADLINE_BODY: when the head was complete */
    _Atomic uint64_t body_bytes; /* DEADLINE_BODY: received so far */
    int reaped;                  /* shut down already (under the lock) */
    struct deadline_conn *prev, *next;
};

struct deadline_list {
    int64_t idle_ns;
    pthread_mutex_t lock; /* guards conns and the records' links */
    struct deadline_conn *conns;
    struct worker reaper; /* its own lock is only for its sleeps */
};

deadline_list *deadline_list_new(int64_t idle_ns)
{
    deadline_list *l = xcalloc(1, sizeof(*l));

    l->idle_ns = idle_ns;
    pthread_mutex_init(&l->lock, NULL);
    metrics_describe(DEADLINE_METRIC_TIMED_OUT, "counter",
                     "Connections closed because a request head or body did not arrive in time.");
    return l;
}

void deadline_list_free(deadline_list *l)
{
    if (!l)
        return;
    while (l->conns) {
        struct deadline_conn *c = l->conns;
        l->conns = c->next;
        free(c);
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static void *reaper_main(void *arg)
{
    deadline_list *l = arg;

    do
        deadline_reap(l, util_monotonic_ns());
    while (!worker_sleep(&l->reaper, DEADLINE_REAP_PERIOD_MS));
    return NULL;
}

int deadline_reaper_start(deadline_list *l)
{
    return worker_start(&l->reaper, reaper_main, l);
}

void deadline_reaper_stop(deadline_list *l)
{
    worker_stop(&l->reaper);
}

deadline_conn *deadline_open(deadline_list *l, int fd, int64_t now_ns)
{
    struct deadline_conn *c = xcalloc(1, sizeof(*c));

    c->fd = fd;
    deadline_enter(c, DEADLINE_HEAD, now_ns);
    pthread_mutex_lock(&l->lock);
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    pthread_mutex_unlock(&l->lock);
    return c;
}

void deadline_close(deadline_list *l, deadline_conn *c)
{
    pthread_mutex_lock(&l->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&l->lock);
    free(c);
}

void deadline_enter(deadline_conn *c, enum deadline_phase phase, int64_t now_ns)
{
    if (!c)
        return;
    /* The phase last: a reaper that sees the new phase sees its figures. */
    atomic_store(&c->since_ns, now_ns);
    atomic_store(&c->body_bytes, 0);
    atomic_store(&c->phase, (int)phase);
}

void deadline_received(deadline_conn *c, size_t bytes)
{
    if (c)
        atomic_fetch_add(&c->body_bytes, bytes);
}

const char *deadline_overdue(const deadline_list *l, const deadline_conn *c, int64_t now_ns)
{
    int phase = atomic_load(&c->phase);
    int64_t waited = now_ns - atomic_load(&c->since_ns);

    if (phase == DEADLINE_HEAD)
        return waited > l->idle_ns ? "phase=\"head\"" : NULL;
    if (phase == DEADLINE_BODY) {
        uint64_t bytes = atomic_load(&c->body_bytes);
        int64_t earned = (int64_t)(bytes / DEADLINE_BODY_MIN_RATE) * NS_PER_S;
        return waited > l->idle_ns + earned ? "phase=\"body\"" : NULL;
    }
    return NULL;
}

size_t deadline_reap(deadline_list *l, int64_t now_ns)
{
    size_t n = 0;

    pthread_mutex_lock(&l->lock);
    for (struct deadline_conn *c = l->conns; c; c = c->next) {
        const char *late = c->reaped ? NULL : deadline_overdue(l, c, now_ns);
        if (!late)
            continue;
        shutdown(c->fd, SHUT_RDWR);
        c->reaped = 1;
        n++;
        metrics_counter_add(DEADLINE_METRIC_TIMED_OUT, late, 1);
        log_debug(NULL, "closed a connection whose request did not arrive in time (%s)", late);
    }
    pthread_mutex_unlock(&l->lock);
    return n;
}
