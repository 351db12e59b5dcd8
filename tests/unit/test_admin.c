/*
 * Unit tests for admin: which tokens are acceptable, and the comparison
 * (equal only for the same bytes and the same length, whatever the
 * lengths; the timing itself is not measurable here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "admin.h"

static int equal(const char *expected, const char *presented)
{
    return admin_token_equal(expected, presented, strlen(presented));
}

static void test_valid_tokens(void **state)
{
    (void)state;
    char longest[ADMIN_TOKEN_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    longest[ADMIN_TOKEN_MAX + 1] = '\0';

    assert_true(admin_token_valid("s3cr3t-token_~+/=", 17));
    assert_true(admin_token_valid("x", 1));
    assert_true(admin_token_valid(longest, ADMIN_TOKEN_MAX));
    assert_false(admin_token_valid(longest, ADMIN_TOKEN_MAX + 1));
    assert_false(admin_token_valid("", 0));
    assert_false(admin_token_valid(NULL, 0));
    assert_false(admin_token_valid("has space", 9));
    assert_false(admin_token_valid("tab\there", 8));
    assert_false(admin_token_valid("new\nline", 8));
    assert_false(admin_token_valid("caf\xc3\xa9", 5));
    assert_false(admin_token_valid("del\x7f", 4));
}

static void test_equal_only_for_the_same_token(void **state)
{
    (void)state;
    assert_true(equal("secret", "secret"));
    assert_false(equal("secret", "secreT"));
    assert_false(equal("secret", "Secret"));
    assert_false(equal("secret", "secre"));
    assert_false(equal("secret", "secrets"));
    assert_false(equal("secret", "secretsecret")); /* the cycled bytes match */
    assert_false(equal("secret", ""));
    assert_false(equal("", ""));
    assert_false(equal("", "x"));
    assert_false(equal("ab", "abab"));
    /* A NUL inside what was presented does not end the comparison. */
    assert_false(admin_token_equal("secret", "secret\0x", 8));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_tokens),
        cmocka_unit_test(test_equal_only_for_the_same_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
