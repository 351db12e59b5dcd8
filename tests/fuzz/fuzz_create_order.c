/*
 * fuzz_create_order: POST /order-service/orders up to the database. The
 * service's own order_create (orders.o, linked) is what runs, so its
 * parse_order.
 */
#include "contract.h"
#include "fuzz_create.h"
#include "money.h"
#include "order/order_service.h"
#include "timeutil.h"

/* Written back as the answer writes it ("50.00"), the amount reads back
 * to the same cents. */
static void check_money_roundtrip(int64_t cents)
{
    char text[MONEY_TEXT_MAX];
    json_error_t jerr;
    int64_t back = 0;

    size_t n = money_format(cents, text);
    json_t *v = json_loadb(text, n, JSON_DECODE_ANY, &jerr);
    FUZZ_CHECK(v != NULL);
    FUZZ_CHECK(money_from_json(v, &back) == MONEY_OK);
    FUZZ_CHECK(back == cents);
    json_decref(v);
}

static void check_order(json_t *obj, const void *item)
{
    const struct new_order *o = item;

    fuzz_check_keys(obj, order_fields, order_field_count);
    FUZZ_CHECK(o->user_id > 0);
    FUZZ_CHECK(json_integer_value(json_object_get(obj, "user_id")) == o->user_id);

    FUZZ_CHECK(o->amount_cents > 0 && o->amount_cents <= MONEY_MAX_CENTS);
    json_t *amount = json_object_get(obj, "amount");
    if (json_is_integer(amount))
        FUZZ_CHECK(json_integer_value(amount) * 100 == o->amount_cents);
    else
        FUZZ_CHECK(json_is_real(amount) &&
                   (double)o->amount_cents / 100.0 == json_real_value(amount));
    check_money_roundtrip(o->amount_cents);

    fuzz_check_field_string(obj, "description", o->description, 0, CONTRACT_DESCRIPTION_MAX_CHARS);

    json_t *created = json_object_get(obj, "created_at");
    if (!o->has_created_at) {
        FUZZ_CHECK(!created || json_is_null(created));
        return;
    }
    FUZZ_CHECK(json_is_string(created));
    FUZZ_CHECK(o->created_at >= timeutil_month_start(1970, 1));
    FUZZ_CHECK(o->created_at < timeutil_month_start(10000, 1));
    char text[TIMEUTIL_TEXT_MAX];
    int64_t back = -1;
    size_t n = timeutil_format_rfc3339(o->created_at, text);
    FUZZ_CHECK(timeutil_parse_rfc3339(text, n, &back) == 0 && back == o->created_at);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_create_body(data, size, &order_create, check_order);
    return 0;
}
