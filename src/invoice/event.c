#include "event.h"

#include <stdio.h>
#include <string.h>

#include "body.h"
#include "contract.h"
#include "field.h"
#include "timeutil.h"
#include "util.h"


static const struct {
    const char *name;
    enum event_type type;
} types[] = {
    {CONTRACT_USER_CREATED, EVENT_USER_CREATED},
    {CONTRACT_ACCOUNT_CREATED, EVENT_ACCOUNT_CREATED},
    {CONTRACT_ORDER_CREATED, EVENT_ORDER_CREATED},
};

static int decode_user(json_t *data, struct event *ev, struct api_error *err)
{
    return field_id(data, "id", 1, &ev->u.user.id, NULL, err) ||
           field_string(data, "name", 1, CONTRACT_NAME_MAX_CHARS, &ev->u.user.name, err) ||
           field_email(data, "email", CONTRACT_EMAIL_MAX_CHARS, &ev->u.user.email, err);
}

static int decode_account(json_t *data, struct event *ev, struct api_error *err)
{
    const size_t max = CONTRACT_ADDRESS_MAX_CHARS;

    return field_id(data, "id", 1, &ev->u.account.id, NULL, err) ||
           field_id(data, "user_id", 1, &ev->u.account.user_id, NULL, err) ||
           field_string(data, "address1", 1, max, &ev->u.account.address1, err) ||
           field_string(data, "address2", 0, max, &ev->u.account.address2, err) ||
           field_string(data, "city", 1, max, &ev->u.account.city, err) ||
           field_string(data, "state", 1, max, &ev->u.account.state, err) ||
           field_string(data, "zip", 1, max, &ev->u.account.zip, err) ||
           field_enum(data, "status", contract_account_statuses, CONTRACT_ACCOUNT_STATUS_COUNT,
                      &ev->u.account.status, err);
}

/* The order's month comes from created_at, else occurred_at, else now. */
static int decode_order(json_t *data, struct event *ev, int64_t now_ms, struct api_error *err)
{
    int has_created = 0;
    if (field_id(data, "id", 1, &ev->u.order.id, NULL, err) ||
        field_id(data, "user_id", 1, &ev->u.order.user_id, NULL, err) ||
        field_money(data, "amount", &ev->u.order.amount_cents, err) ||
        field_string(data, "description", 0, CONTRACT_DESCRIPTION_MAX_CHARS,
                     &ev->u.order.description, err) ||
        field_time(data, "created_at", &ev->u.order.created_at_ms, &has_created, err))
        return -1;
    if (!has_created) /* occurred_at, already checked, may be 1970-01-01T00:00Z (0 ms) */
        ev->u.order.created_at_ms =
            json_is_string(json_object_get(ev->doc, "occurred_at")) ? ev->occurred_at_ms : now_ms;
    return 0;
}

static int fail(char *reason, size_t size, const char *fmt, const char *detail)
{
    snprintf(reason, size, fmt, detail);
    return -1;
}

/* Event ids are echoed into logs and headers: printable ASCII only. */
static int valid_event_id(const char *s, size_t len)
{
    if (len == 0 || len > EVENT_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

int event_decode(const void *body, size_t len, const char *message_id, int64_t now_ms,
                 struct event *ev, char *reason, size_t reason_size)
{
    struct api_error err;
    json_t *doc = NULL, *v;
    size_t t;
    int present = 0;

    memset(ev, 0, sizeof(*ev));
    api_error_clear(&err);
    if (body_parse(body, len, &doc, &err) != 0)
        return fail(reason, reason_size, "body is not usable JSON: %s", err.message);
    ev->doc = doc;
    if (!json_is_object(doc))
        return fail(reason, reason_size, "body is not a JSON object%s", "");

    v = json_object_get(doc, "type");
    if (!json_is_string(v))
        return fail(reason, reason_size, "type is missing or not a string%s", "");
    for (t = 0; t < ARRAY_LEN(types); t++)
        if (strcmp(json_string_value(v), types[t].name) == 0)
            break;
    if (t == ARRAY_LEN(types))
        return fail(reason, reason_size, "unknown event type%s", "");
    ev->type = types[t].type;
    ev->type_name = types[t].name;

    v = json_object_get(doc, "id");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || !valid_event_id(json_string_value(v), json_string_length(v)))
            return fail(reason, reason_size, "id must be a printable string of 1 to 200 bytes%s",
                        "");
        util_strlcpy(ev->id, json_string_value(v), sizeof(ev->id));
    } else if (message_id && valid_event_id(message_id, strlen(message_id))) {
        util_strlcpy(ev->id, message_id, sizeof(ev->id));
    }

    if (field_time(doc, "occurred_at", &ev->occurred_at_ms, &present, &err) != 0)
        return fail(reason, reason_size, "occurred_at: %s", err.message);

    json_t *data = json_object_get(doc, "data");
    if (!json_is_object(data))
        return fail(reason, reason_size, "data is missing or not an object%s", "");

    int rc = ev->type == EVENT_USER_CREATED      ? decode_user(data, ev, &err)
             : ev->type == EVENT_ACCOUNT_CREATED ? decode_account(data, ev, &err)
                                                 : decode_order(data, ev, now_ms, &err);
    if (rc != 0)
        return fail(reason, reason_size, "data: %s", err.message);
    return 0;
}

void event_free(struct event *ev)
{
    json_decref(ev->doc);
    ev->doc = NULL;
}
