/*
 * ctoken: consistency tokens (docs/api.md "Read your writes").
 *
 * A writer's 201 carries a token that names the writer (its service name,
 * the "source" of its events) and the outbox positions (seq) of every
 * event the request appended. The read side parses it and waits until
 * its inbox holds an applied event for each of those (source, seq) pairs
 * (docs/consistency.md says why that is exact).
 *
 * Text form, only characters of A-Z a-z 0-9 - . _ ~ :
 *
 *   1.<source>.<runs>.<mac>
 *
 * source is [a-z0-9-]{1,64}; runs are the seqs as ascending, disjoint,
 * non-adjacent runs "first" or "first-last" joined by "_" (decimal, no
 * leading zero), so a batch committed in one piece is a single run;
 * mac is the first CTOKEN_MAC_BYTES of HMAC-SHA256(key, "1.<source>.<runs>")
 * in unpadded base64url. A token whose mac does not match was not issued
 * by a writer holding the same key (a forged position, a typo): the read
 * side refuses it.
 *
 * Ownership: ctoken_encode returns a malloc()ed string; ctoken_decode
 * fills a struct ctoken whose runs the caller releases with ctoken_free.
 */
#ifndef LIB_CTOKEN_H
#define LIB_CTOKEN_H

#include <stddef.h>
#include <stdint.h>

#define CTOKEN_SOURCE_MAX 64
#define CTOKEN_MAX_RUNS 1000 /* a batch is 1..1000 events */
#define CTOKEN_MAC_BYTES 16
/* What a key falls back to when the operator sets none: it still tells a
 * mistyped or edited token from an issued one, but anyone who reads this
 * file can make tokens, so deployments set their own (README). */
#define CTOKEN_DEFAULT_KEY "cqrs-demo-consistency-key"

struct ctoken_run {
    int64_t first, last; /* first <= last */
};

struct ctoken {
    char source[CTOKEN_SOURCE_MAX + 1];
    struct ctoken_run *runs;
    size_t run_count;
};

/* The token for the events at seqs[0..n-1] (n >= 1, any order, distinct)
 * of source, signed with key (NULL: CTOKEN_DEFAULT_KEY). NULL when the
 * source is not a valid name or a seq is not positive. */
char *ctoken_encode(const char *source, const int64_t *seqs, size_t n, const char *key);

/* Parses and authenticates text; returns 0 and fills out, or -1 (out is
 * then empty and needs no ctoken_free). */
int ctoken_decode(const char *text, const char *key, struct ctoken *out);

void ctoken_free(struct ctoken *t);

#endif
