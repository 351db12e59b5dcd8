#include "writer.h"

#include "idempotency.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"

#define RELAY_POLL_INTERVAL_MS 1000
#define GROUP_COMMIT_MAX 256 /* requests sharing one commit, at most */
/* Expired Idempotency-Keys are deleted this many at a time between
 * groups, so a sweep never holds up the writes behind it for long. */
#define IDEMPOTENCY_SWEEP_BATCH 200
#define IDEMPOTENCY_SWEEP_PERIOD_MS 1000

/* The group commit's chore: one small batch of expired keys. */
static int sweep_keys(db *conn, void *arg)
{
    const struct config *cfg = arg;
    return idempotency_sweep(conn, cfg->service, cfg->idempotency_ttl_s, IDEMPOTENCY_SWEEP_BATCH);
}

/* The group commit's step before COMMIT: the events of the group get
 * their event-log positions in commit order (outbox.h). */
static int assign_positions(db *conn, void *arg)
{
    const struct config *cfg = arg;
    return outbox_assign_positions(conn, cfg->service);
}

static int start(struct service *s)
{
    const struct config *cfg = s->cfg;
    char err[UTIL_ERR_MAX];

    s->gc = groupcommit_start(cfg->database_url, GROUP_COMMIT_MAX, err, sizeof(err));
    if (!s->gc) {
        log_error(NULL, "cannot start the group commit: %s", err);
        return -1;
    }
    metrics_describe("idempotency_keys_swept_total", "counter",
                     "Expired Idempotency-Keys deleted.");
    metrics_describe("idempotency_replays_total", "counter",
                     "Requests answered with the stored answer of their Idempotency-Key.");
    struct groupcommit_chore sweep = {
        .run = sweep_keys,
        .arg = (void *)cfg,
        .period_ms = IDEMPOTENCY_SWEEP_PERIOD_MS,
        .batch = IDEMPOTENCY_SWEEP_BATCH,
    };
    groupcommit_set_chore(s->gc, &sweep);
    struct groupcommit_precommit positions = {.run = assign_positions, .arg = (void *)cfg};
    groupcommit_set_precommit(s->gc, &positions);

    struct outbox_relay_config relay_cfg = {
        .database_url = cfg->database_url,
        .amqp_url = cfg->amqp_url,
        .service = cfg->service,
        .queue_type = cfg->queue_type,
        .topology = s->spec->topology,
        .batch_size = cfg->relay_batch,
        .poll_interval_ms = RELAY_POLL_INTERVAL_MS,
        .gc = s->gc,
    };
    s->relay = outbox_relay_start(&relay_cfg);
    return s->relay ? 0 : -1;
}

static int connected(const struct service *s)
{
    return outbox_relay_connected(s->relay);
}

static void stop(struct service *s)
{
    outbox_relay_stop(s->relay); /* before the group commit it uses */
    groupcommit_stop(s->gc);
}

const struct service_events writer_events = {.start = start, .connected = connected, .stop = stop};
