/*
 * fuzz_create_user: POST /system-api/users up to the database. The
 * service's own user_create (users.o, linked) is what runs, so its
 * parse_user, not a copy of its rules.
 */
#include "contract.h"
#include "fuzz_create.h"
#include "user/user_service.h"

static void check_user(json_t *obj, const void *item)
{
    const struct new_user *u = item;

    fuzz_check_keys(obj, user_fields, user_field_count);
    fuzz_check_field_string(obj, "name", u->name, 1, CONTRACT_NAME_MAX_CHARS);
    fuzz_check_field_string(obj, "email", u->email, 1, CONTRACT_EMAIL_MAX_CHARS);

    /* One '@' with text on both sides, no ASCII space or control. */
    const char *at = strchr(u->email, '@');
    FUZZ_CHECK(at && at != u->email && at[1] != '\0' && !strchr(at + 1, '@'));
    for (const char *p = u->email; *p; p++)
        FUZZ_CHECK((unsigned char)*p > 0x20 && *p != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_create_body(data, size, &user_create, check_user);
    return 0;
}
