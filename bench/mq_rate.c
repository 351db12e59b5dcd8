/*
 * mq_rate: the raw RabbitMQ limits of this machine for `make bench`, with
 * rabbitmq-c alone (none of our code).
 *
 *   bench/mq_rate HOST PORT COUNT
 *
 * Declares a fresh durable queue, then
 *  1. publishes COUNT persistent messages of an order.created event's size
 *     to it through the default exchange, on a channel in confirm mode,
 *     waiting for the broker's confirms after every batch of
 *     CONFIRM_BATCH messages (the relay's pattern);
 *  2. consumes them with manual acks, prefetch PREFETCH, acknowledging with
 *     one multiple-ack every ACK_EVERY deliveries (the consumer's pattern);
 * then deletes the queue. Prints one JSON line:
 *   {"count":N,"publish_per_s":..,"consume_per_s":..}
 * Exit status 1 on any error. Credentials are the broker's default
 * guest/guest, allowed on loopback.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CONFIRM_BATCH 1000
#define PREFETCH 1000
#define ACK_EVERY 250
#define CHANNEL 1
#define FRAME_MAX 131072
#define WAIT_TIMEOUT_S 30

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rpc_ok(amqp_connection_state_t conn, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 1;
    fprintf(stderr, "mq_rate: %s failed (reply type %d, library error %s)\n", what,
            (int)r.reply_type, amqp_error_string2(r.library_error));
    return 0;
}

/* Reads frames until every tag up to last_tag is acked by the broker. */
static int wait_confirms(amqp_connection_state_t conn, uint64_t last_tag)
{
    uint64_t confirmed = 0;
    struct timeval timeout = {WAIT_TIMEOUT_S, 0};

    while (confirmed < last_tag) {
        amqp_frame_t frame;
        amqp_maybe_release_buffers(conn);
        int rc = amqp_simple_wait_frame_noblock(conn, &frame, &timeout);
        if (rc != AMQP_STATUS_OK) {
            fprintf(stderr, "mq_rate: waiting for confirms: %s\n", amqp_error_string2(rc));
            return -1;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *ack = frame.payload.method.decoded;
            if (ack->multiple) {
                if (ack->delivery_tag > confirmed)
                    confirmed = ack->delivery_tag;
            } else if (ack->delivery_tag == confirmed + 1) {
                confirmed++; /* a lone ack out of order is caught by a later multiple */
            }
        } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            fprintf(stderr, "mq_rate: the broker nacked a publish\n");
            return -1;
        } else {
            fprintf(stderr, "mq_rate: unexpected method 0x%08x\n",
                    (unsigned)frame.payload.method.id);
            return -1;
        }
    }
    return 0;
}

static int publish_all(amqp_connection_state_t conn, amqp_bytes_t queue, long count)
{
    char body[512];
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;

    amqp_confirm_select(conn, CHANNEL);
    if (!rpc_ok(conn, "confirm.select"))
        return -1;
    for (long i = 1; i <= count; i++) {
        /* An order.created envelope of the usual size. */
        int n = snprintf(body, sizeof(body),
                         "{\"id\":\"00000000-0000-4000-8000-%012ld\",\"type\":\"order.created\","
                         "\"version\":1,\"source\":\"order-service\","
                         "\"occurred_at\":\"2025-04-03T10:15:00.000Z\",\"data\":{\"id\":%ld,"
                         "\"user_id\":%ld,\"amount\":50.00,\"description\":\"Test purchase\","
                         "\"created_at\":\"2025-04-03T10:15:00.000Z\"}}",
                         i, i, 1 + i % 1000);
        amqp_bytes_t payload = {(size_t)n, body};
        int rc = amqp_basic_publish(conn, CHANNEL, amqp_empty_bytes, queue, 0, 0, &props, payload);
        if (rc != AMQP_STATUS_OK) {
            fprintf(stderr, "mq_rate: publish: %s\n", amqp_error_string2(rc));
            return -1;
        }
        if (i % CONFIRM_BATCH == 0 || i == count) {
            if (wait_confirms(conn, (uint64_t)i) != 0)
                return -1;
        }
    }
    return 0;
}

static int consume_all(amqp_connection_state_t conn, amqp_bytes_t queue, long count)
{
    struct timeval timeout = {WAIT_TIMEOUT_S, 0};

    amqp_basic_qos(conn, CHANNEL, 0, PREFETCH, 0);
    if (!rpc_ok(conn, "basic.qos"))
        return -1;
    amqp_basic_consume(conn, CHANNEL, queue, amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    if (!rpc_ok(conn, "basic.consume"))
        return -1;
    for (long got = 0; got < count;) {
        amqp_envelope_t env;
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &timeout, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            fprintf(stderr, "mq_rate: consume after %ld of %ld: reply type %d\n", got, count,
                    (int)r.reply_type);
            return -1;
        }
        got++;
        if (got % ACK_EVERY == 0 || got == count) {
            if (amqp_basic_ack(conn, CHANNEL, env.delivery_tag, 1) != AMQP_STATUS_OK) {
                amqp_destroy_envelope(&env);
                fprintf(stderr, "mq_rate: ack failed\n");
                return -1;
            }
        }
        amqp_destroy_envelope(&env);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST PORT COUNT\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    long count = strtol(argv[3], NULL, 10);
    if (port <= 0 || port > 65535 || count < 1) {
        fprintf(stderr, "mq_rate: bad arguments\n");
        return 2;
    }

    char queue_name[64];
    snprintf(queue_name, sizeof(queue_name), "bench.raw.%ld", (long)getpid());
    amqp_bytes_t queue = amqp_cstring_bytes(queue_name);
    int status = 1, channel_open = 0;

    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    if (sock == NULL || amqp_socket_open(sock, host, port) != AMQP_STATUS_OK) {
        fprintf(stderr, "mq_rate: cannot connect to %s:%d\n", host, port);
        goto out;
    }
    amqp_rpc_reply_t login =
        amqp_login(conn, "/", 0, FRAME_MAX, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    if (login.reply_type != AMQP_RESPONSE_NORMAL) {
        fprintf(stderr, "mq_rate: login failed\n");
        goto out;
    }
    amqp_channel_open(conn, CHANNEL);
    if (!rpc_ok(conn, "channel.open"))
        goto out;
    channel_open = 1;
    amqp_queue_declare(conn, CHANNEL, queue, 0, 1, 0, 0, amqp_empty_table);
    if (!rpc_ok(conn, "queue.declare"))
        goto out;

    double t0 = now_s();
    if (publish_all(conn, queue, count) != 0)
        goto out;
    double t1 = now_s();
    if (consume_all(conn, queue, count) != 0)
        goto out;
    double t2 = now_s();

    printf("{\"count\":%ld,\"publish_per_s\":%.1f,\"consume_per_s\":%.1f}\n", count,
           count / (t1 - t0), count / (t2 - t1));
    status = 0;
out:
    if (channel_open) {
        /* A fresh channel: the consuming one may still hold deliveries. */
        amqp_channel_open(conn, CHANNEL + 1);
        if (amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL)
            amqp_queue_delete(conn, CHANNEL + 1, queue, 0, 0);
    }
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return status;
}
