#include "worker.h"

#include "util.h"

int worker_start(struct worker *w, void *(*main)(void *), void *arg)
{
    pthread_mutex_init(&w->lock, NULL);
    util_cond_init_monotonic(&w->cond);
    atomic_init(&w->stopping, 0);
    if (pthread_create(&w->thread, NULL, main, arg) != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        return -1;
    }
    return 0;
}

int worker_stopping(struct worker *w)
{
    return atomic_load(&w->stopping);
}

void worker_wait_until(struct worker *w, int64_t deadline_ns)
{
    if (atomic_load(&w->stopping))
        return;
    if (deadline_ns == WORKER_FOREVER)
        pthread_cond_wait(&w->cond, &w->lock);
    else
        util_cond_wait_until(&w->cond, &w->lock, deadline_ns);
}

void worker_signal(struct worker *w)
{
    pthread_cond_broadcast(&w->cond);
}

int worker_sleep(struct worker *w, int64_t ms)
{
    int64_t deadline = util_monotonic_ns() + ms * 1000000;

    pthread_mutex_lock(&w->lock);
    while (!atomic_load(&w->stopping) && util_monotonic_ns() < deadline)
        util_cond_wait_until(&w->cond, &w->lock, deadline);
    pthread_mutex_unlock(&w->lock);
    return atomic_load(&w->stopping);
}

void worker_stop(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    atomic_store(&w->stopping, 1);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

int64_t worker_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms)
{
    int64_t ms = base_ms;

    for (int i = 0; i < attempt && ms < max_ms; i++)
        ms *= 2;
    return ms < max_ms ? ms : max_ms;
}
