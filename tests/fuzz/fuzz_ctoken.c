/*
 * fuzz_ctoken: consistency tokens (ctoken.h). The first byte picks a mode:
 *   even: the rest is a token as a client may send it: decoding must not
 *         crash, and with the fuzzer's key nothing it makes is accepted
 *         unless it is exactly what ctoken_encode writes for those runs;
 *   odd:  the rest is a list of seqs (2 bytes each, so runs form often):
 *         the token of them is URL-safe, decodes to the same set, and any
 *         one changed byte makes it refused.
 */
#include "fuzz.h"

#include "ctoken.h"

#define KEY "fuzz-key"
#define MAX_SEQS 1000
#define TEXT_MAX 8192

static int url_safe(const char *t)
{
    for (; *t; t++)
        if (!((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9') ||
              *t == '-' || *t == '.' || *t == '_' || *t == '~'))
            return 0;
    return 1;
}

/* Every seq of the decoded runs, in order. */
static size_t expand(const struct ctoken *t, int64_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t r = 0; r < t->run_count; r++)
        for (int64_t s = t->runs[r].first; s <= t->runs[r].last && n < cap; s++)
            out[n++] = s;
    return n;
}

static void decode_text(const uint8_t *data, size_t size)
{
    static char text[TEXT_MAX + 1];
    struct ctoken tok;

    if (size > TEXT_MAX)
        size = TEXT_MAX;
    memcpy(text, data, size);
    text[size] = '\0';
    if (ctoken_decode(text, KEY, &tok) != 0) {
        FUZZ_CHECK(tok.runs == NULL && tok.run_count == 0);
        return;
    }
    /* Accepted: then it is the one spelling the writer makes. */
    static int64_t seqs[MAX_SEQS * 64];
    size_t n = expand(&tok, seqs, sizeof(seqs) / sizeof(seqs[0]));
    char *again = ctoken_encode(tok.source, seqs, n, KEY);
    FUZZ_CHECK(again && strcmp(again, text) == 0);
    free(again);
    ctoken_free(&tok);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void encode_seqs(const uint8_t *data, size_t size)
{
    int64_t seqs[MAX_SEQS], back[MAX_SEQS];
    size_t n = 0;
    struct ctoken tok;

    for (size_t i = 0; i + 1 < size && n < MAX_SEQS; i += 2) {
        int64_t s = 1 + (data[i] << 8 | data[i + 1]);
        int dup = 0;
        for (size_t j = 0; j < n && !dup; j++)
            dup = seqs[j] == s;
        if (!dup)
            seqs[n++] = s;
    }
    if (n == 0)
        return;
    char *t = ctoken_encode("order-service", seqs, n, KEY);
    FUZZ_CHECK(t != NULL && url_safe(t));
    FUZZ_CHECK(ctoken_decode(t, KEY, &tok) == 0);
    FUZZ_CHECK(strcmp(tok.source, "order-service") == 0);
    FUZZ_CHECK(expand(&tok, back, MAX_SEQS) == n);
    qsort(seqs, n, sizeof(seqs[0]), cmp64);
    FUZZ_CHECK(memcmp(seqs, back, n * sizeof(seqs[0])) == 0);
    ctoken_free(&tok);

    /* One changed byte, at a place and to a value the input chooses. */
    size_t len = strlen(t), at = (size_t)data[0] % len;
    char c = (char)(data[size - 1] % 94 + 33);
    if (t[at] != c) {
        t[at] = c;
        FUZZ_CHECK(ctoken_decode(t, KEY, &tok) == -1);
    }
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] % 2 == 0)
        decode_text(data + 1, size - 1);
    else
        encode_seqs(data + 1, size - 1);
    return 0;
}
