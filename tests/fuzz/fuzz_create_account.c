/*
 * fuzz_create_account: POST /system-api/accounts up to the database (the
 * unknown_user check needs it). The service's own account_create
 * (accounts.o, linked) is what runs, so its parse_account.
 */
#include "contract.h"
#include "fuzz_create.h"
#include "user/user_service.h"

static void check_account(json_t *obj, const void *item)
{
    const struct new_account *a = item;

    fuzz_check_keys(obj, account_fields, account_field_count);
    FUZZ_CHECK(a->user_id > 0);
    FUZZ_CHECK(json_integer_value(json_object_get(obj, "user_id")) == a->user_id);
    fuzz_check_field_string(obj, "address1", a->address1, 1, CONTRACT_ADDRESS_MAX_CHARS);
    fuzz_check_field_string(obj, "address2", a->address2, 0, CONTRACT_ADDRESS_MAX_CHARS);
    fuzz_check_field_string(obj, "city", a->city, 1, CONTRACT_ADDRESS_MAX_CHARS);
    fuzz_check_field_string(obj, "state", a->state, 1, CONTRACT_ADDRESS_MAX_CHARS);
    fuzz_check_field_string(obj, "zip", a->zip, 1, CONTRACT_ADDRESS_MAX_CHARS);

    /* "open" by default; otherwise what the client sent, one of the two. */
    FUZZ_CHECK(a->status && (strcmp(a->status, "open") == 0 || strcmp(a->status, "closed") == 0));
    json_t *status = json_object_get(obj, "status");
    if (status && !json_is_null(status))
        FUZZ_CHECK(json_is_string(status) && strcmp(json_string_value(status), a->status) == 0);
    else
        FUZZ_CHECK(strcmp(a->status, "open") == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_create_body(data, size, &account_create, check_account);
    return 0;
}
