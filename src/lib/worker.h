/*
 * worker: one background thread, with the lock, condition variable and
 * stop flag that each of the services' threads needs (the group committer,
 * the outbox relay, the consumer, the reads that wait for consistency
 * tokens, the connection-deadline reaper, the event-stream hub, the
 * rebuild runner). Every thread of the services starts here.
 *
 * The owner embeds a struct worker, guards its own shared state with
 * w->lock, and waits with worker_wait_until() or worker_sleep(), so that
 * worker_stop() never waits for a timeout or a backoff to run out:
 *
 *   pthread_mutex_lock(&w->lock);
 *   while (!work_ready(o) && !worker_stopping(w))
 *       worker_wait_until(w, deadline_ns);
 *   pthread_mutex_unlock(&w->lock);
 */
#ifndef LIB_WORKER_H
#define LIB_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* A deadline that never comes (worker_wait_until). */
#define WORKER_FOREVER INT64_MAX

struct worker {
    pthread_t thread;
    pthread_mutex_t lock; /* also guards the owner's shared state */
    pthread_cond_t cond;  /* on the monotonic clock */
    atomic_int stopping;  /* set under lock by worker_stop; read anywhere */
};

/* Makes the lock and the condition variable and starts main(arg) on a new
 * thread. Returns 0, or -1 with nothing left to undo. */
int worker_start(struct worker *w, void *(*main)(void *), void *arg);

/* Whether worker_stop() has been called. */
int worker_stopping(struct worker *w);

/* With w->lock held: waits until signalled, stopped, or deadline_ns
 * (util_monotonic_ns() time; WORKER_FOREVER for none) passes. It may
 * return early: callers wait in a loop on their own condition. */
void worker_wait_until(struct worker *w, int64_t deadline_ns);

/* Wakes the thread (and anyone else waiting on w->cond); w->lock held or
 * not. */
void worker_signal(struct worker *w);

/* Without w->lock held: sleeps ms, cut short only by a stop (a signal
 * does not end a backoff early). Returns 1 when stopping, else 0. */
int worker_sleep(struct worker *w, int64_t ms);

/* Sets the stop flag, wakes the thread, joins it, and frees the lock and
 * the condition variable. The thread's main() must return soon after
 * worker_stopping() turns true. A main() may also return by itself (a
 * one-shot job): worker_stop then only joins it. Once stopped, w may be
 * started again. */
void worker_stop(struct worker *w);

/* Exponential backoff: base_ms doubled per attempt already made (0 for
 * the first), at most max_ms. */
int64_t worker_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms);

#endif
