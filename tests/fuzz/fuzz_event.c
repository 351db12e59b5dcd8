/*
 * fuzz_event: the invoice consumer's decoder (src/invoice/event.c) on a
 * hostile message. Input: the AMQP message_id up to the first newline,
 * then the body; an input without a newline is a body without a
 * message_id. The decoder is called and released exactly as
 * projection_apply does (event_free after a failure too).
 */
#include "consumer.h"
#include "event.h"
#include "fuzz.h"
#include "money.h"
#include "timeutil.h"

#define NOW_MS INT64_C(1743675300000) /* 2025-04-03T10:15:00Z */

/* docs/api.md's limits, in code points. */
#define NAME_MAX_CHARS 200
#define EMAIL_MAX_CHARS 254
#define ADDRESS_MAX_CHARS 200
#define DESCRIPTION_MAX_CHARS 1000

static int printable_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > EVENT_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int in_years(int64_t ms)
{
    return ms >= timeutil_month_start(1970, 1) && ms < timeutil_month_start(10000, 1);
}

static void check_event(const struct event *ev, const char *message_id)
{
    json_t *doc = ev->doc;
    json_t *data = json_object_get(doc, "data");
    json_t *id = json_object_get(doc, "id");

    FUZZ_CHECK(json_is_object(doc) && json_is_object(data));
    FUZZ_CHECK(strcmp(json_string_value(json_object_get(doc, "type")), ev->type_name) == 0);

    /* The body's id, else a usable message_id, else none. */
    if (id && !json_is_null(id))
        FUZZ_CHECK(strcmp(ev->id, json_string_value(id)) == 0);
    else if (message_id && printable_id(message_id))
        FUZZ_CHECK(strcmp(ev->id, message_id) == 0);
    else
        FUZZ_CHECK(ev->id[0] == '\0');
    FUZZ_CHECK(ev->id[0] == '\0' || printable_id(ev->id));
    FUZZ_CHECK(ev->occurred_at_ms == 0 || in_years(ev->occurred_at_ms));

    switch (ev->type) {
    case EVENT_USER_CREATED:
        FUZZ_CHECK(strcmp(ev->type_name, "user.created") == 0);
        FUZZ_CHECK(ev->u.user.id > 0);
        fuzz_check_field_string(data, "name", ev->u.user.name, 1, NAME_MAX_CHARS);
        fuzz_check_field_string(data, "email", ev->u.user.email, 1, EMAIL_MAX_CHARS);
        /* As POST /system-api/users: one '@' with text on both sides, no
         * ASCII space or control. */
        const char *at = strchr(ev->u.user.email, '@');
        FUZZ_CHECK(at && at != ev->u.user.email && at[1] != '\0' && !strchr(at + 1, '@'));
        for (const char *p = ev->u.user.email; *p; p++)
            FUZZ_CHECK((unsigned char)*p > 0x20 && *p != 0x7f);
        break;
    case EVENT_ACCOUNT_CREATED:
        FUZZ_CHECK(strcmp(ev->type_name, "account.created") == 0);
        FUZZ_CHECK(ev->u.account.id > 0 && ev->u.account.user_id > 0);
        fuzz_check_field_string(data, "address1", ev->u.account.address1, 1, ADDRESS_MAX_CHARS);
        fuzz_check_field_string(data, "address2", ev->u.account.address2, 0, ADDRESS_MAX_CHARS);
        fuzz_check_field_string(data, "city", ev->u.account.city, 1, ADDRESS_MAX_CHARS);
        fuzz_check_field_string(data, "state", ev->u.account.state, 1, ADDRESS_MAX_CHARS);
        fuzz_check_field_string(data, "zip", ev->u.account.zip, 1, ADDRESS_MAX_CHARS);
        /* As POST /system-api/accounts: absent, null, "open" or "closed". */
        json_t *status = json_object_get(data, "status");
        if (status && !json_is_null(status))
            FUZZ_CHECK(json_is_string(status) && ev->u.account.status &&
                       strcmp(json_string_value(status), ev->u.account.status) == 0 &&
                       (strcmp(ev->u.account.status, "open") == 0 ||
                        strcmp(ev->u.account.status, "closed") == 0));
        else
            FUZZ_CHECK(ev->u.account.status == NULL);
        break;
    case EVENT_ORDER_CREATED: {
        FUZZ_CHECK(strcmp(ev->type_name, "order.created") == 0);
        FUZZ_CHECK(ev->u.order.id > 0 && ev->u.order.user_id > 0);
        FUZZ_CHECK(ev->u.order.amount_cents > 0 && ev->u.order.amount_cents <= MONEY_MAX_CENTS);
        fuzz_check_field_string(data, "description", ev->u.order.description, 0,
                                DESCRIPTION_MAX_CHARS);
        /* The month of the invoice can always be determined. */
        FUZZ_CHECK(in_years(ev->u.order.created_at_ms));
        /* created_at, else occurred_at (which may be 0 ms, 1970-01-01), else now. */
        json_t *created = json_object_get(data, "created_at");
        json_t *occurred = json_object_get(doc, "occurred_at");
        if (!created || json_is_null(created))
            FUZZ_CHECK(ev->u.order.created_at_ms ==
                       (occurred && !json_is_null(occurred) ? ev->occurred_at_ms : NOW_MS));
        int year, month;
        timeutil_year_month(ev->u.order.created_at_ms, &year, &month);
        FUZZ_CHECK(year >= 1970 && year <= 9999 && month >= 1 && month <= 12);
        break;
    }
    default:
        FUZZ_CHECK(!"unknown event type accepted");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    char *message_id = NULL;
    const uint8_t *body = data;
    size_t body_len = size;
    struct event ev;
    char reason[CONSUMER_REASON_MAX];

    if (nl) {
        /* As mq.c copies it: a C string, cut at any NUL. */
        message_id = strndup((const char *)data, (size_t)(nl - data));
        FUZZ_CHECK(message_id != NULL);
        body = nl + 1;
        body_len = size - (size_t)(nl - data) - 1;
    }
    /* A body of its own allocation, so ASan sees any read past its end. */
    uint8_t *copy = malloc(body_len ? body_len : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, body, body_len);

    memset(reason, 'x', sizeof(reason));
    if (event_decode(copy, body_len, message_id, NOW_MS, &ev, reason, sizeof(reason)) != 0) {
        size_t n = strnlen(reason, sizeof(reason));
        FUZZ_CHECK(n > 0 && n < sizeof(reason));
        FUZZ_CHECK(fuzz_is_utf8(reason, n));
    } else {
        check_event(&ev, message_id);
    }
    event_free(&ev);
    FUZZ_CHECK(ev.doc == NULL);

    free(copy);
    free(message_id);
    return 0;
}
