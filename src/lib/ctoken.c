#include "ctoken.h"

#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listq.h"
#include "util.h"

#define CTOKEN_VERSION "1"
#define MAC_TEXT_LEN 22 /* unpadded base64url of CTOKEN_MAC_BYTES */
/* The longest run: two 19-digit numbers, '-', and the '_' before it. */
#define RUN_TEXT_MAX 40
#define TEXT_MAX (2 + CTOKEN_SOURCE_MAX + 1 + CTOKEN_MAX_RUNS * RUN_TEXT_MAX + 1 + MAC_TEXT_LEN)

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int valid_source(const char *s, size_t len)
{
    if (len == 0 || len > CTOKEN_SOURCE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

/* The mac of the signed part, as MAC_TEXT_LEN characters and a NUL. */
static void mac_text(const char *key, const char *signed_part, size_t len,
                     char out[MAC_TEXT_LEN + 1])
{
    struct hmac_sha256_ctx ctx;
    uint8_t md[SHA256_DIGEST_SIZE];
    uint32_t bits = 0;
    int nbits = 0;
    size_t o = 0;

    if (!key)
        key = CTOKEN_DEFAULT_KEY;
    hmac_sha256_set_key(&ctx, strlen(key), (const uint8_t *)key);
    hmac_sha256_update(&ctx, len, (const uint8_t *)signed_part);
    hmac_sha256_digest(&ctx, sizeof(md), md);
    for (size_t i = 0; i < CTOKEN_MAC_BYTES; i++) {
        bits = (bits << 8) | md[i];
        nbits += 8;
        while (nbits >= 6) {
            nbits -= 6;
            out[o++] = b64url[(bits >> nbits) & 63];
        }
    }
    if (nbits > 0)
        out[o++] = b64url[(bits << (6 - nbits)) & 63];
    out[o] = '\0';
}

static int cmp_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

char *ctoken_encode(const char *source, const int64_t *seqs, size_t n, const char *key)
{
    char mac[MAC_TEXT_LEN + 1];
    int64_t *sorted = NULL;
    char *text = NULL;
    size_t used, size;

    if (!source || !valid_source(source, strlen(source)) || n == 0)
        return NULL;
    sorted = xmalloc(n * sizeof(*sorted));
    memcpy(sorted, seqs, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_int64);
    if (sorted[0] <= 0)
        goto out;
    size = strlen(source) + n * RUN_TEXT_MAX + MAC_TEXT_LEN + 8;
    text = xmalloc(size);
    used = (size_t)snprintf(text, size, CTOKEN_VERSION ".%s.", source);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && sorted[j + 1] == sorted[j] + 1)
            j++;
        if (j + 1 < n && sorted[j + 1] == sorted[j]) { /* not distinct */
            free(text);
            text = NULL;
            goto out;
        }
        used += (size_t)snprintf(text + used, size - used, "%s%lld", i ? "_" : "",
                                 (long long)sorted[i]);
        if (j > i)
            used += (size_t)snprintf(text + used, size - used, "-%lld", (long long)sorted[j]);
        i = j + 1;
    }
    mac_text(key, text, used, mac);
    snprintf(text + used, size - used, ".%s", mac);
out:
    free(sorted);
    return text;
}

/* A positive decimal of s[0..len), by the strict rule of query integers. */
static int parse_seq(const char *s, size_t len, int64_t *out)
{
    char buf[24];

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return listq_parse_uint(buf, out) == 0 && *out > 0 ? 0 : -1;
}

/* Parses "a" or "a-b" into run. The two-number form needs a < b, so
 * that every set of seqs has exactly one spelling. */
static int parse_run(const char *s, size_t len, struct ctoken_run *run)
{
    const char *dash = memchr(s, '-', len);

    if (!dash) {
        if (parse_seq(s, len, &run->first) != 0)
            return -1;
        run->last = run->first;
        return 0;
    }
    if (parse_seq(s, (size_t)(dash - s), &run->first) != 0 ||
        parse_seq(dash + 1, len - (size_t)(dash - s) - 1, &run->last) != 0)
        return -1;
    return run->first < run->last ? 0 : -1;
}

static int parse_runs(const char *s, size_t len, struct ctoken *out)
{
    size_t start = 0;

    out->runs = xcalloc(CTOKEN_MAX_RUNS, sizeof(*out->runs));
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '_')
            continue;
        if (out->run_count == CTOKEN_MAX_RUNS)
            return -1;
        struct ctoken_run *run = &out->runs[out->run_count];
        if (parse_run(s + start, i - start, run) != 0)
            return -1;
        /* Ascending, disjoint and not touching the previous run. */
        if (out->run_count > 0 && run->first <= out->runs[out->run_count - 1].last + 1)
            return -1;
        out->run_count++;
        start = i + 1;
    }
    /* Kept for as long as a read waits: only what it needs. */
    out->runs = xrealloc(out->runs, out->run_count * sizeof(*out->runs));
    return 0;
}

int ctoken_decode(const char *text, const char *key, struct ctoken *out)
{
    char mac[MAC_TEXT_LEN + 1];
    const char *source, *runs, *given_mac;
    size_t len;

    memset(out, 0, sizeof(*out));
    if (!text)
        return -1;
    len = strnlen(text, TEXT_MAX + 1);
    if (len > TEXT_MAX || strncmp(text, CTOKEN_VERSION ".", 2) != 0)
        return -1;
    source = text + 2;
    runs = strchr(source, '.');
    if (!runs || !valid_source(source, (size_t)(runs - source)))
        goto fail;
    runs++;
    given_mac = strchr(runs, '.');
    if (!given_mac || strlen(given_mac + 1) != MAC_TEXT_LEN)
        goto fail;
    mac_text(key, text, (size_t)(given_mac - text), mac);
    if (!memeql_sec(mac, given_mac + 1, MAC_TEXT_LEN)) /* constant time */
        goto fail;
    memcpy(out->source, source, (size_t)(runs - 1 - source));
    out->source[runs - 1 - source] = '\0';
    if (parse_runs(runs, (size_t)(given_mac - runs), out) != 0)
        goto fail;
    return 0;
fail:
    ctoken_free(out);
    return -1;
}

void ctoken_free(struct ctoken *t)
{
    free(t->runs);
    memset(t, 0, sizeof(*t));
}
