#include "admin.h"

#include <string.h>
#include <strings.h>

#include "api_error.h"

#define BEARER "Bearer"
#define BEARER_LEN (sizeof(BEARER) - 1)

/* RFC 6750: a request without credentials gets the bare challenge; one
 * whose credentials are wrong or malformed also learns that. */
#define CHALLENGE_MISSING "Bearer"
#define CHALLENGE_INVALID "Bearer error=\"invalid_token\""

int admin_token_valid(const char *text, size_t len)
{
    if (!text || len == 0 || len > ADMIN_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f)
            return 0;
    return 1;
}

int admin_token_equal(const char *expected, const char *presented, size_t presented_len)
{
    size_t expected_len = strlen(expected);
    if (expected_len == 0)
        return 0; /* no token is never a match (config refuses one anyway) */
    /* Every byte of presented is looked at, against a byte of expected
     * (cycled, so a short expected never ends the loop early); the
     * lengths are folded into the same accumulator. */
    unsigned diff = (unsigned)(expected_len ^ presented_len);
    for (size_t i = 0; i < presented_len; i++)
        diff |= (unsigned char)presented[i] ^ (unsigned char)expected[i % expected_len];
    return diff == 0;
}

static void refuse(http_request *req, const char *challenge)
{
    struct api_error err;
    api_error_set(&err, 401, "unauthorized", NULL,
                  "this route needs the admin token: Authorization: Bearer <token>");
    http_add_header(req, "WWW-Authenticate", challenge);
    http_reply_error(req, &err);
}

int admin_authorize(http_request *req, const char *token)
{
    struct api_error err;

    if (!token || !*token) {
        api_error_set(&err, 404, "not_found", NULL, "no such resource");
        http_reply_error(req, &err);
        return 0;
    }
    const char *value = http_request_header(req, "Authorization");
    if (!value) {
        refuse(req, CHALLENGE_MISSING);
        return 0;
    }
    /* "Bearer" (any case) SP token, nothing else. */
    if (strncasecmp(value, BEARER, BEARER_LEN) != 0 || value[BEARER_LEN] != ' ') {
        refuse(req, CHALLENGE_INVALID);
        return 0;
    }
    const char *presented = value + BEARER_LEN + 1;
    size_t len = strlen(presented);
    int ok = admin_token_valid(presented, len) && admin_token_equal(token, presented, len);
    if (!ok) {
        refuse(req, CHALLENGE_INVALID);
        return 0;
    }
    return 1;
}
