/*
 * writer: the events of a write-side service (user-service,
 * order-service), for its struct service_spec. Creates share the commits
 * of one group-commit thread (groupcommit.h) and append their events to
 * the outbox in the same transaction; the outbox relay publishes them.
 * At shutdown, after HTTP has drained, the relay finishes its batch and
 * stops, then the group commit it uses.
 */
#ifndef LIB_WRITER_H
#define LIB_WRITER_H

#include "service.h"

extern const struct service_events writer_events;

#endif
