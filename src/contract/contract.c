#include "contract.h"

#include "util.h"

static const struct mq_binding queues[] = {
    {"user", "user.*"},
    {"account", "account.*"},
    {"order", "order.*"},
};

const struct mq_topology contract_topology = {
    .exchange = "cqrs.events",
    .queues = queues,
    .queue_count = ARRAY_LEN(queues),
};

const char *const contract_consumed_queues[] = {"user", "account", "order", NULL};

const char *const contract_account_statuses[] = {"open", "closed", NULL};
