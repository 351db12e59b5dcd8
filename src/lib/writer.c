#include "writer.h"

#include "log.h"

#define RELAY_POLL_INTERVAL_MS 1000
#define GROUP_COMMIT_MAX 256 /* requests sharing one commit, at most */

static int start(struct service *s)
{
    const struct config *cfg = s->cfg;
    char err[256];

    s->gc = groupcommit_start(cfg->database_url, GROUP_COMMIT_MAX, err, sizeof(err));
    if (!s->gc) {
        log_error(NULL, "cannot start the group commit: %s", err);
        return -1;
    }

    struct outbox_relay_config relay_cfg = {
        .database_url = cfg->database_url,
        .amqp_url = cfg->amqp_url,
        .service = cfg->service,
        .queue_type = cfg->queue_type,
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
