/*
 * contract: what the three services agree on, in one place (docs/api.md,
 * "Events on RabbitMQ" and the field rules of each service): the broker's
 * topology, the event types, the limits of the fields that a writer checks
 * on input and the invoice service checks again on every event, and the
 * account statuses. The building blocks of src/lib know none of it: the
 * services hand it to them as parameters.
 */
#ifndef CONTRACT_CONTRACT_H
#define CONTRACT_CONTRACT_H

#include "mq.h"

/* The topic exchange every writer publishes to, and the durable queues
 * bound to it ("user" with "user.*", and so on). */
extern const struct mq_topology contract_topology;

/* Where the invoice service puts a message it gives up on, for tools
 * (its own record of dead letters is in its database, deadletter.h). */
#define CONTRACT_DEAD_LETTER_QUEUE "invoice-service.dead-letter"

/* The queues the invoice service consumes, NULL-terminated. */
extern const char *const contract_consumed_queues[];

/* Event types; each is also the routing key of its event. */
#define CONTRACT_USER_CREATED "user.created"
#define CONTRACT_ACCOUNT_CREATED "account.created"
#define CONTRACT_ORDER_CREATED "order.created"

/* Field limits, in Unicode code points. */
#define CONTRACT_NAME_MAX_CHARS 200
#define CONTRACT_EMAIL_MAX_CHARS 254 /* the longest address SMTP carries */
#define CONTRACT_ADDRESS_MAX_CHARS 200
#define CONTRACT_DESCRIPTION_MAX_CHARS 1000

/* An account's status, NULL-terminated (field_enum, list filters). */
#define CONTRACT_ACCOUNT_STATUS_COUNT 2
extern const char *const contract_account_statuses[CONTRACT_ACCOUNT_STATUS_COUNT + 1];

#endif
