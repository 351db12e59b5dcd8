/*
 * Unit tests for the invoice consumer's event decoder (docs/api.md "Events on
 * RabbitMQ"): the full envelope and the original {id, type, data} shape,
 * the id fallback to the AMQP message_id, data checked by the HTTP rules
 * (the same field.c validators as the services' parse callbacks: emails
 * and account statuses too), the order's time fallback, and every reason to dead-letter a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invoice/event.h"
#include "util.h"

/* A string literal with its length, so that embedded bytes are kept. */
#define LIT(s) (s), (sizeof(s) - 1)

#define NOW_MS INT64_C(1700000000123)  /* 2023-11-14T22:13:20.123Z */
#define APRIL_3 INT64_C(1743675300000) /* 2025-04-03T10:15:00.000Z */
#define APRIL_5 INT64_C(1743847200500) /* 2025-04-05T10:00:00.500Z */
#define REASON_SIZE 256

static int decode(const char *body, size_t len, const char *message_id, struct event *ev,
                  char *reason)
{
    memset(ev, 0x5a, sizeof(*ev));
    memset(reason, 0, REASON_SIZE);
    return event_decode(body, len, message_id, NOW_MS, ev, reason, REASON_SIZE);
}

/* Decodes a body that must be accepted; the caller calls event_free. */
static void expect_ok(const char *body, const char *message_id, struct event *ev)
{
    char reason[REASON_SIZE];
    if (decode(body, strlen(body), message_id, ev, reason) != 0)
        fail_msg("rejected (%s): %s", reason, body);
    assert_non_null(ev->doc);
}

/* Decodes a body that must be dead-lettered, with a reason that starts
 * with prefix and (when given) contains word. */
static void expect_rejected_len(const char *body, size_t len, const char *prefix, const char *word)
{
    struct event ev;
    char reason[REASON_SIZE];

    if (decode(body, len, "mid-1", &ev, reason) != -1)
        fail_msg("accepted: %.*s", (int)len, body);
    if (strncmp(reason, prefix, strlen(prefix)) != 0)
        fail_msg("reason \"%s\" does not start with \"%s\" for %.*s", reason, prefix, (int)len,
                 body);
    if (word && !strstr(reason, word))
        fail_msg("reason \"%s\" does not mention \"%s\" for %.*s", reason, word, (int)len, body);
    event_free(&ev);
    assert_null(ev.doc);
}

static void expect_rejected(const char *body, const char *prefix, const char *word)
{
    expect_rejected_len(body, strlen(body), prefix, word);
}

/* {"id":"e-1","type":<type>,"data":{<data>}} */
static char *envelope(const char *type, const char *data)
{
    size_t n = strlen(type) + strlen(data) + 64;
    char *s = xmalloc(n);
    snprintf(s, n, "{\"id\":\"e-1\",\"type\":\"%s\",\"data\":{%s}}", type, data);
    return s;
}

static void expect_data_rejected(const char *type, const char *data, const char *word)
{
    char *body = envelope(type, data);
    expect_rejected(body, "data: ", word);
    free(body);
}

/* --- valid events ---------------------------------------------------- */

static void test_user_created_full_envelope(void **state)
{
    struct event ev;
    (void)state;

    expect_ok(
        "{\"id\":\"0b7f6e0e-1111-4222-8333-944445555666\",\"type\":\"user.created\","
        "\"version\":1,\"source\":\"user-service\","
        "\"occurred_at\":\"2025-04-03T10:15:00.000Z\","
        "\"data\":{\"id\":1,\"name\":\"Alice\",\"email\":\"alice@demo.com\","
        "\"created_at\":\"2025-04-03T10:15:00.000Z\"}}",
        "ignored-message-id", &ev);
    assert_int_equal(ev.type, EVENT_USER_CREATED);
    assert_string_equal(ev.type_name, "user.created");
    assert_string_equal(ev.id, "0b7f6e0e-1111-4222-8333-944445555666");
    assert_int_equal(ev.occurred_at_ms, APRIL_3);
    assert_int_equal(ev.u.user.id, 1);
    assert_string_equal(ev.u.user.name, "Alice");
    assert_string_equal(ev.u.user.email, "alice@demo.com");
    event_free(&ev);
    assert_null(ev.doc);
}

static void test_account_created_full_envelope(void **state)
{
    struct event ev;
    (void)state;

    expect_ok(
        "{\"id\":\"acc-ev-9\",\"type\":\"account.created\",\"version\":1,"
        "\"source\":\"user-service\",\"occurred_at\":\"2025-04-05T12:00:00.5+02:00\","
        "\"data\":{\"id\":2,\"user_id\":1,\"address1\":\"123 Main St\","
        "\"address2\":null,\"city\":\"Cityville\",\"state\":\"CA\",\"zip\":\"12345\","
        "\"status\":\"open\",\"created_at\":\"2025-04-05T10:00:00.500Z\"}}",
        NULL, &ev);
    assert_int_equal(ev.type, EVENT_ACCOUNT_CREATED);
    assert_string_equal(ev.type_name, "account.created");
    assert_string_equal(ev.id, "acc-ev-9");
    assert_int_equal(ev.occurred_at_ms, APRIL_5);
    assert_int_equal(ev.u.account.id, 2);
    assert_int_equal(ev.u.account.user_id, 1);
    assert_string_equal(ev.u.account.address1, "123 Main St");
    assert_null(ev.u.account.address2);
    assert_string_equal(ev.u.account.city, "Cityville");
    assert_string_equal(ev.u.account.state, "CA");
    assert_string_equal(ev.u.account.zip, "12345");
    event_free(&ev);

    /* With an address2, and an empty one (optional strings may be ""). */
    expect_ok(
        "{\"type\":\"account.created\",\"data\":{\"id\":3,\"user_id\":1,"
        "\"address1\":\"1 Road\",\"address2\":\"Apt 4\",\"city\":\"C\",\"state\":\"S\","
        "\"zip\":\"Z\"}}",
        NULL, &ev);
    assert_string_equal(ev.u.account.address2, "Apt 4");
    event_free(&ev);
    expect_ok(
        "{\"type\":\"account.created\",\"data\":{\"id\":3,\"user_id\":1,"
        "\"address1\":\"1 Road\",\"address2\":\"\",\"city\":\"C\",\"state\":\"S\","
        "\"zip\":\"Z\"}}",
        NULL, &ev);
    assert_string_equal(ev.u.account.address2, "");
    event_free(&ev);
}

static void test_order_created_full_envelope(void **state)
{
    struct event ev;
    (void)state;

    expect_ok(
        "{\"id\":\"ord-ev-1\",\"type\":\"order.created\",\"version\":1,"
        "\"source\":\"order-service\",\"occurred_at\":\"2025-04-05T10:00:00.500Z\","
        "\"data\":{\"id\":1,\"user_id\":1,\"amount\":50.00,"
        "\"description\":\"Test purchase\","
        "\"created_at\":\"2025-04-03T10:15:00.000Z\"}}",
        NULL, &ev);
    assert_int_equal(ev.type, EVENT_ORDER_CREATED);
    assert_string_equal(ev.type_name, "order.created");
    assert_string_equal(ev.id, "ord-ev-1");
    assert_int_equal(ev.occurred_at_ms, APRIL_5);
    assert_int_equal(ev.u.order.id, 1);
    assert_int_equal(ev.u.order.user_id, 1);
    assert_int_equal(ev.u.order.amount_cents, 5000);
    assert_string_equal(ev.u.order.description, "Test purchase");
    /* created_at wins over occurred_at. */
    assert_int_equal(ev.u.order.created_at_ms, APRIL_3);
    event_free(&ev);
}

static void test_original_shape(void **state)
{
    struct event ev;
    (void)state;

    /* What the original demo sent straight to the queues. */
    expect_ok(
        "{\"id\":\"u1\",\"type\":\"user.created\","
        "\"data\":{\"id\":1,\"name\":\"Alice\",\"email\":\"alice@demo.com\"}}",
        NULL, &ev);
    assert_int_equal(ev.type, EVENT_USER_CREATED);
    assert_string_equal(ev.id, "u1");
    assert_int_equal(ev.occurred_at_ms, 0);
    assert_int_equal(ev.u.user.id, 1);
    event_free(&ev);

    expect_ok(
        "{\"id\":\"a1\",\"type\":\"account.created\",\"data\":{\"id\":1,\"user_id\":1,"
        "\"address1\":\"123 Main St\",\"city\":\"Cityville\",\"state\":\"CA\","
        "\"zip\":\"12345\"}}",
        NULL, &ev);
    assert_int_equal(ev.type, EVENT_ACCOUNT_CREATED);
    assert_string_equal(ev.id, "a1");
    assert_null(ev.u.account.address2);
    assert_string_equal(ev.u.account.zip, "12345");
    event_free(&ev);

    expect_ok(
        "{\"id\":\"o1\",\"type\":\"order.created\",\"data\":{\"id\":1,\"user_id\":1,"
        "\"amount\":50,\"created_at\":\"2025-04-03T10:15:00Z\"}}",
        NULL, &ev);
    assert_int_equal(ev.type, EVENT_ORDER_CREATED);
    assert_string_equal(ev.id, "o1");
    assert_int_equal(ev.u.order.amount_cents, 5000);
    assert_null(ev.u.order.description);
    assert_int_equal(ev.u.order.created_at_ms, APRIL_3);
    event_free(&ev);
}

static void test_extra_fields_tolerated(void **state)
{
    struct event ev;
    (void)state;

    expect_ok(
        "{\"id\":\"x\",\"type\":\"user.created\",\"version\":2,\"trace\":[1,2],"
        "\"data\":{\"id\":5,\"name\":\"Bob\",\"email\":\"bob@demo.com\","
        "\"created_at\":\"2025-04-03T10:15:00.000Z\",\"nickname\":\"b\","
        "\"meta\":{\"x\":[1,{\"y\":null}]}}}",
        NULL, &ev);
    assert_int_equal(ev.u.user.id, 5);
    assert_string_equal(ev.u.user.name, "Bob");
    event_free(&ev);

    expect_ok(
        "{\"type\":\"order.created\",\"data\":{\"id\":2,\"user_id\":3,\"amount\":1.5,"
        "\"currency\":\"EUR\",\"status\":\"paid\"}}",
        NULL, &ev);
    assert_int_equal(ev.u.order.amount_cents, 150);
    event_free(&ev);
}

/* --- the event id ------------------------------------------------------ */

static void test_id_falls_back_to_message_id(void **state)
{
    struct event ev;
    (void)state;

    const char *no_id =
        "{\"type\":\"user.created\","
        "\"data\":{\"id\":1,\"name\":\"A\",\"email\":\"a@b.c\"}}";
    expect_ok(no_id, "msg-42", &ev);
    assert_string_equal(ev.id, "msg-42");
    event_free(&ev);

    /* "id": null is no id. */
    expect_ok(
        "{\"id\":null,\"type\":\"user.created\","
        "\"data\":{\"id\":1,\"name\":\"A\",\"email\":\"a@b.c\"}}",
        "msg-43", &ev);
    assert_string_equal(ev.id, "msg-43");
    event_free(&ev);

    /* The body's id wins over the message_id. */
    expect_ok(
        "{\"id\":\"body-id\",\"type\":\"user.created\","
        "\"data\":{\"id\":1,\"name\":\"A\",\"email\":\"a@b.c\"}}",
        "msg-44", &ev);
    assert_string_equal(ev.id, "body-id");
    event_free(&ev);
}

static void test_no_id_at_all(void **state)
{
    struct event ev;
    (void)state;

    const char *no_id =
        "{\"type\":\"user.created\","
        "\"data\":{\"id\":1,\"name\":\"A\",\"email\":\"a@b.c\"}}";
    /* Applied without dedupe: decoded, with an empty id. */
    expect_ok(no_id, NULL, &ev);
    assert_string_equal(ev.id, "");
    event_free(&ev);
    expect_ok(no_id, "", &ev);
    assert_string_equal(ev.id, "");
    event_free(&ev);
    /* A message_id unfit for logs and headers is not used. */
    expect_ok(no_id, "has space", &ev);
    assert_string_equal(ev.id, "");
    event_free(&ev);
    expect_ok(no_id, "tab\there", &ev);
    assert_string_equal(ev.id, "");
    event_free(&ev);
}

static void test_invalid_body_id(void **state)
{
    char body[512], id[EVENT_ID_MAX + 2];
    struct event ev;
    (void)state;

    static const char *const bad[] = {
        "7", "\"\"", "\"has space\"", "\"tab\\t\"", "\"caf\\u00e9\"", "true", "[\"x\"]", "{}"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(body, sizeof(body),
                 "{\"id\":%s,\"type\":\"user.created\","
                 "\"data\":{\"id\":1,\"name\":\"A\",\"email\":\"a@b.c\"}}",
                 bad[i]);
        expect_rejected(body, "id must be", NULL);
    }

    /* 200 bytes are fine, 201 are not. */
    memset(id, 'i', EVENT_ID_MAX);
    id[EVENT_ID_MAX] = '\0';
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"type\":\"user.created\","
             "\"data\":{\"id\":1,\"name\":\"A\",\"email\":\"a@b.c\"}}",
             id);
    expect_ok(body, NULL, &ev);
    assert_string_equal(ev.id, id);
    event_free(&ev);

    id[EVENT_ID_MAX] = 'i';
    id[EVENT_ID_MAX + 1] = '\0';
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"type\":\"user.created\","
             "\"data\":{\"id\":1,\"name\":\"A\",\"email\":\"a@b.c\"}}",
             id);
    expect_rejected(body, "id must be", NULL);
}

/* --- unusable bodies ------------------------------------------------- */

static void test_not_json(void **state)
{
    (void)state;
    expect_rejected_len("", 0, "body is not usable JSON: ", "empty");
    expect_rejected("not json", "body is not usable JSON: ", NULL);
    expect_rejected("{\"type\":\"user.created\",", "body is not usable JSON: ", NULL);
    expect_rejected("{\"type\":\"user.created\",\"type\":\"user.created\",\"data\":{}}",
                    "body is not usable JSON: ", NULL);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    expect_rejected_len(LIT("{\"type\":\"user.created\",\"data\":{\"id\":1,"
                            "\"name\":\"\xff\xfe\",\"email\":\"a@b.c\"}}"),
                        "body is not usable JSON: ", "UTF-8");
}

static void test_not_an_object(void **state)
{
    (void)state;
    expect_rejected(
        "[{\"type\":\"user.created\",\"data\":{\"id\":1,\"name\":\"A\","
        "\"email\":\"a@b.c\"}}]",
        "body is not a JSON object", NULL);
    expect_rejected("[]", "body is not a JSON object", NULL);
    expect_rejected("\"user.created\"", "body is not a JSON object", NULL);
    expect_rejected("42", "body is not a JSON object", NULL);
    expect_rejected("null", "body is not a JSON object", NULL);
}

static void test_type(void **state)
{
    (void)state;
    expect_rejected("{\"id\":\"e\",\"type\":\"user.deleted\",\"data\":{\"id\":1}}",
                    "unknown event type", NULL);
    expect_rejected("{\"id\":\"e\",\"type\":\"User.Created\",\"data\":{}}", "unknown event type",
                    NULL);
    expect_rejected("{\"id\":\"e\",\"type\":\"\",\"data\":{}}", "unknown event type", NULL);
    expect_rejected("{\"id\":\"e\",\"type\":\"order.created \",\"data\":{}}", "unknown event type",
                    NULL);
    expect_rejected("{\"id\":\"e\",\"data\":{\"id\":1,\"name\":\"A\",\"email\":\"a@b.c\"}}",
                    "type is missing or not a string", NULL);
    expect_rejected("{\"id\":\"e\",\"type\":null,\"data\":{}}", "type is missing or not a string",
                    NULL);
    expect_rejected("{\"id\":\"e\",\"type\":1,\"data\":{}}", "type is missing or not a string",
                    NULL);
}

static void test_missing_data(void **state)
{
    (void)state;
    static const char *const types[] = {"user.created", "account.created", "order.created"};
    static const char *const bad[] = {
        "", ",\"data\":null", ",\"data\":[]", ",\"data\":\"x\"", ",\"data\":1", ",\"Data\":{}"};
    char body[256];
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            snprintf(body, sizeof(body), "{\"id\":\"e\",\"type\":\"%s\"%s}", types[t], bad[i]);
            expect_rejected(body, "data is missing or not an object", NULL);
        }
    }
}

/* --- data fields ----------------------------------------------------- */

struct data_field {
    const char *name, *value;
};

/* Writes the fields of all but `skip` (or none: skip = count) as JSON
 * members, replacing the value of `replace` by `with` when given. */
static void members(const struct data_field *f, size_t count, size_t skip, size_t replace,
                    const char *with, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (i == skip)
            continue;
        used += (size_t)snprintf(out + used, size - used, "%s\"%s\":%s", used ? "," : "", f[i].name,
                                 i == replace ? with : f[i].value);
    }
}

static const struct data_field user_fields[] = {
    {"id", "1"}, {"name", "\"Alice\""}, {"email", "\"alice@demo.com\""}};
static const struct data_field account_fields[] = {{"id", "2"},
                                                   {"user_id", "1"},
                                                   {"address1", "\"123 Main St\""},
                                                   {"city", "\"Cityville\""},
                                                   {"state", "\"CA\""},
                                                   {"zip", "\"12345\""}};
static const struct data_field order_fields[] = {
    {"id", "3"}, {"user_id", "1"}, {"amount", "50.00"}};

static const struct {
    const char *type;
    const struct data_field *fields;
    size_t count;
} event_kinds[] = {
    {"user.created", user_fields, ARRAY_LEN(user_fields)},
    {"account.created", account_fields, ARRAY_LEN(account_fields)},
    {"order.created", order_fields, ARRAY_LEN(order_fields)},
};

static void test_required_data_fields(void **state)
{
    char data[512], word[64];
    (void)state;

    for (size_t k = 0; k < ARRAY_LEN(event_kinds); k++) {
        const struct data_field *f = event_kinds[k].fields;
        size_t n = event_kinds[k].count;

        /* All present: accepted (this proves the cases below fail for the
         * reason they name). */
        struct event ev;
        members(f, n, n, n, NULL, data, sizeof(data));
        char *body = envelope(event_kinds[k].type, data);
        expect_ok(body, NULL, &ev);
        event_free(&ev);
        free(body);

        for (size_t i = 0; i < n; i++) {
            snprintf(word, sizeof(word), "%s is required", f[i].name);
            members(f, n, i, n, NULL, data, sizeof(data));
            expect_data_rejected(event_kinds[k].type, data, word);
            members(f, n, n, i, "null", data, sizeof(data));
            expect_data_rejected(event_kinds[k].type, data, word);
        }
    }
}

static void test_wrong_types(void **state)
{
    char data[512];
    (void)state;

    static const struct {
        const char *type, *field, *value;
    } cases[] = {
        {"order.created", "amount", "\"50\""},   {"order.created", "amount", "\"50.00\""},
        {"order.created", "amount", "true"},     {"order.created", "user_id", "\"7\""},
        {"order.created", "user_id", "7.0"},     {"order.created", "user_id", "0"},
        {"order.created", "user_id", "-1"},      {"order.created", "id", "\"3\""},
        {"account.created", "user_id", "\"7\""}, {"account.created", "id", "1.5"},
        {"account.created", "zip", "12345"},     {"account.created", "city", "\"   \""},
        {"user.created", "id", "\"1\""},         {"user.created", "name", "5"},
        {"user.created", "name", "\"\\u00a0\""}, {"user.created", "email", "[\"a@b.c\"]"},
    };
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        size_t k = 0;
        while (strcmp(event_kinds[k].type, cases[c].type) != 0)
            k++;
        const struct data_field *f = event_kinds[k].fields;
        size_t n = event_kinds[k].count, i = 0;
        while (strcmp(f[i].name, cases[c].field) != 0)
            i++;
        members(f, n, n, i, cases[c].value, data, sizeof(data));
        expect_data_rejected(cases[c].type, data, cases[c].field);
    }

    /* Optional fields are typed too. */
    expect_data_rejected("order.created", "\"id\":3,\"user_id\":1,\"amount\":5,\"description\":7",
                         "description");
    expect_data_rejected("account.created",
                         "\"id\":2,\"user_id\":1,\"address1\":\"a\",\"address2\":[],"
                         "\"city\":\"c\",\"state\":\"s\",\"zip\":\"z\"",
                         "address2");
}

static void test_amount_rules(void **state)
{
    struct event ev;
    (void)state;

    expect_data_rejected("order.created", "\"id\":3,\"user_id\":1,\"amount\":0.001", "amount");
    expect_data_rejected("order.created", "\"id\":3,\"user_id\":1,\"amount\":0", "amount");
    expect_data_rejected("order.created", "\"id\":3,\"user_id\":1,\"amount\":-5", "amount");
    expect_data_rejected("order.created", "\"id\":3,\"user_id\":1,\"amount\":1000000000.01",
                         "amount");

    char *body = envelope("order.created", "\"id\":3,\"user_id\":1,\"amount\":19.99");
    expect_ok(body, NULL, &ev);
    assert_int_equal(ev.u.order.amount_cents, 1999);
    event_free(&ev);
    free(body);

    /* A number the parser cannot hold is a dead letter too. */
    expect_rejected(
        "{\"type\":\"order.created\",\"data\":{\"id\":3,\"user_id\":1,"
        "\"amount\":1e400}}",
        "body is not usable JSON: ", NULL);
}

static void test_string_lengths(void **state)
{
    char data[1400], description[1002];
    struct event ev;
    (void)state;

    memset(description, 'd', 1000);
    description[1000] = '\0';
    snprintf(data, sizeof(data), "\"id\":3,\"user_id\":1,\"amount\":1,\"description\":\"%s\"",
             description);
    char *body = envelope("order.created", data);
    expect_ok(body, NULL, &ev);
    assert_int_equal(strlen(ev.u.order.description), 1000);
    event_free(&ev);
    free(body);

    description[1000] = 'd';
    description[1001] = '\0';
    snprintf(data, sizeof(data), "\"id\":3,\"user_id\":1,\"amount\":1,\"description\":\"%s\"",
             description);
    expect_data_rejected("order.created", data, "description");
}

/* The email rule of POST /system-api/users (field_email): what it answers
 * 422 for is a dead letter here. */
static void test_email_rules(void **state)
{
    char data[256];
    struct event ev;
    (void)state;

    static const char *const bad[] = {
        "\"noat\"",
        "\"@demo.com\"",
        "\"alice@\"",
        "\"@\"",
        "\"a@b@c\"",
        "\"al ice@demo.com\"",
        "\"alice@demo.com \"",
        "\"a\\tb@demo.com\"",
        "\"alice@demo\\u00a0.com\"",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(data, sizeof(data), "\"id\":1,\"name\":\"Alice\",\"email\":%s", bad[i]);
        expect_data_rejected("user.created", data, "email must have one @");
    }

    static const char *const good[] = {"a@b", "ALICE@Demo.COM", "caf\\u00e9@d\\u00e9mo.fr"};
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        snprintf(data, sizeof(data), "\"id\":1,\"name\":\"Alice\",\"email\":\"%s\"", good[i]);
        char *body = envelope("user.created", data);
        expect_ok(body, NULL, &ev);
        assert_non_null(ev.u.user.email);
        event_free(&ev);
        free(body);
    }
}

/* The status rule of POST /system-api/accounts: optional, "open" or
 * "closed" (field_enum with contract_account_statuses). */
static void test_account_status(void **state)
{
    char data[512];
    struct event ev;
    (void)state;

    static const char *const bad[] = {"\"weird\"", "\"Open\"", "\"OPEN\"", "\"open \"",
                                      "\"\"",      "1",        "true",     "[\"open\"]"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        members(account_fields, ARRAY_LEN(account_fields), ARRAY_LEN(account_fields),
                ARRAY_LEN(account_fields), NULL, data, sizeof(data));
        size_t used = strlen(data);
        snprintf(data + used, sizeof(data) - used, ",\"status\":%s", bad[i]);
        expect_data_rejected("account.created", data, "status must be \"open\" or \"closed\"");
    }

    static const struct {
        const char *value, *want;
    } good[] = {{"\"open\"", "open"}, {"\"closed\"", "closed"}, {"null", NULL}, {NULL, NULL}};
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        members(account_fields, ARRAY_LEN(account_fields), ARRAY_LEN(account_fields),
                ARRAY_LEN(account_fields), NULL, data, sizeof(data));
        if (good[i].value) {
            size_t used = strlen(data);
            snprintf(data + used, sizeof(data) - used, ",\"status\":%s", good[i].value);
        }
        char *body = envelope("account.created", data);
        expect_ok(body, NULL, &ev);
        if (good[i].want)
            assert_string_equal(ev.u.account.status, good[i].want);
        else
            assert_null(ev.u.account.status);
        event_free(&ev);
        free(body);
    }
}

/* --- times ----------------------------------------------------------- */

static void test_invalid_created_at(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\"2025-13-01T00:00:00Z\"", "\"2025-04-03\"",           "\"yesterday\"", "\"\"",
        "\"1969-12-31T23:59:59Z\"", "\"2025-04-03T10:15:60Z\"", "1743675300000", "true",
    };
    char data[256];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(data, sizeof(data), "\"id\":3,\"user_id\":1,\"amount\":1,\"created_at\":%s",
                 bad[i]);
        expect_data_rejected("order.created", data, "created_at");
    }
}

static void test_order_time_fallback(void **state)
{
    struct event ev;
    (void)state;

    /* No created_at: occurred_at. */
    expect_ok(
        "{\"type\":\"order.created\",\"occurred_at\":\"2025-04-05T10:00:00.500Z\","
        "\"data\":{\"id\":3,\"user_id\":1,\"amount\":1}}",
        NULL, &ev);
    assert_int_equal(ev.u.order.created_at_ms, APRIL_5);
    event_free(&ev);

    /* created_at null is absent too. */
    expect_ok(
        "{\"type\":\"order.created\",\"occurred_at\":\"2025-04-05T10:00:00.500Z\","
        "\"data\":{\"id\":3,\"user_id\":1,\"amount\":1,\"created_at\":null}}",
        NULL, &ev);
    assert_int_equal(ev.u.order.created_at_ms, APRIL_5);
    event_free(&ev);

    /* Neither: now. */
    expect_ok("{\"type\":\"order.created\",\"data\":{\"id\":3,\"user_id\":1,\"amount\":1}}", NULL,
              &ev);
    assert_int_equal(ev.occurred_at_ms, 0);
    assert_int_equal(ev.u.order.created_at_ms, NOW_MS);
    event_free(&ev);
    expect_ok(
        "{\"type\":\"order.created\",\"occurred_at\":null,"
        "\"data\":{\"id\":3,\"user_id\":1,\"amount\":1}}",
        NULL, &ev);
    assert_int_equal(ev.u.order.created_at_ms, NOW_MS);
    event_free(&ev);

    /* An occurred_at at the very start of 1970 is a time like any other. */
    expect_ok(
        "{\"type\":\"order.created\",\"occurred_at\":\"1970-01-01T00:00:00.000Z\","
        "\"data\":{\"id\":3,\"user_id\":1,\"amount\":1}}",
        NULL, &ev);
    assert_int_equal(ev.u.order.created_at_ms, 0);
    event_free(&ev);
}

static void test_invalid_occurred_at(void **state)
{
    (void)state;
    static const char *const bad[] = {"\"2025-02-30T00:00:00Z\"", "\"not a time\"", "0",
                                      "\"1969-12-31T23:00:00Z\"", "{}"};
    char body[512];
    for (size_t k = 0; k < ARRAY_LEN(event_kinds); k++) {
        char data[256];
        members(event_kinds[k].fields, event_kinds[k].count, event_kinds[k].count,
                event_kinds[k].count, NULL, data, sizeof(data));
        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            snprintf(body, sizeof(body),
                     "{\"id\":\"e\",\"type\":\"%s\",\"occurred_at\":%s,"
                     "\"data\":{%s}}",
                     event_kinds[k].type, bad[i], data);
            expect_rejected(body, "occurred_at: ", NULL);
        }
    }
}

static void test_reason_is_bounded(void **state)
{
    struct event ev;
    char reason[8];
    (void)state;

    memset(reason, 'x', sizeof(reason));
    assert_int_equal(event_decode(LIT("[]"), NULL, NOW_MS, &ev, reason, sizeof(reason)), -1);
    assert_string_equal(reason, "body is");
    event_free(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_created_full_envelope),
        cmocka_unit_test(test_account_created_full_envelope),
        cmocka_unit_test(test_order_created_full_envelope),
        cmocka_unit_test(test_original_shape),
        cmocka_unit_test(test_extra_fields_tolerated),
        cmocka_unit_test(test_id_falls_back_to_message_id),
        cmocka_unit_test(test_no_id_at_all),
        cmocka_unit_test(test_invalid_body_id),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_missing_data),
        cmocka_unit_test(test_required_data_fields),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_amount_rules),
        cmocka_unit_test(test_string_lengths),
        cmocka_unit_test(test_email_rules),
        cmocka_unit_test(test_account_status),
        cmocka_unit_test(test_invalid_created_at),
        cmocka_unit_test(test_order_time_fallback),
        cmocka_unit_test(test_invalid_occurred_at),
        cmocka_unit_test(test_reason_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
