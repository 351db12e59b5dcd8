/*
 * fuzz_body: a request body as the HTTP layer hands it over (body_parse),
 * then split as every create endpoint splits it (body_items).
 *
 * Beyond the sanitizers it checks that an accepted document is nested no
 * deeper than BODY_MAX_DEPTH and exactly as deep as body_depth measured,
 * that a document written back out parses again, that body_items agrees
 * with the document's shape, and that every error has docs/api.md's form.
 */
#include "body.h"
#include "fuzz.h"

/* Nesting of a parsed document, the outermost array or object being 1. */
static int tree_depth(json_t *v)
{
    int max = 0;

    if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach(v, key, item) {
            int d = tree_depth(item);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
            int d = tree_depth(item);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    return 0;
}

static void check_items(json_t *doc)
{
    struct api_error err;
    size_t count = 0;
    int is_batch = -1;

    api_error_clear(&err);
    if (body_items(doc, BODY_MAX_ITEMS, &count, &is_batch, &err) != 0) {
        fuzz_check_error(&err);
        FUZZ_CHECK(err.status == 422 && strcmp(err.code, "invalid_body") == 0);
        FUZZ_CHECK(!json_is_object(doc));
        if (err.index >= 0) {
            FUZZ_CHECK(json_is_array(doc));
            FUZZ_CHECK(!json_is_object(json_array_get(doc, (size_t)err.index)));
        }
        return;
    }
    FUZZ_CHECK(count >= 1 && count <= BODY_MAX_ITEMS);
    FUZZ_CHECK(is_batch == json_is_array(doc));
    FUZZ_CHECK(is_batch || count == 1);
    FUZZ_CHECK(!is_batch || count == json_array_size(doc));
    for (size_t i = 0; i < count; i++)
        FUZZ_CHECK(json_is_object(body_item(doc, i)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct api_error err;
    json_t *doc = (json_t *)1;

    api_error_clear(&err);
    if (body_parse(buf, size, &doc, &err) != 0) {
        FUZZ_CHECK(doc == NULL);
        fuzz_check_error(&err);
        FUZZ_CHECK(strcmp(err.code, "malformed_json") == 0 ||
                   (err.status == 422 && strcmp(err.code, "missing_field") != 0 &&
                    strcmp(err.code, "unknown_field") != 0));
        return 0;
    }
    FUZZ_CHECK(doc != NULL);
    FUZZ_CHECK(size > 0);

    int depth = tree_depth(doc);
    FUZZ_CHECK(depth <= BODY_MAX_DEPTH);
    FUZZ_CHECK(depth == body_depth(buf, size, BODY_MAX_DEPTH));

    /* What was accepted, written out again, is accepted again. */
    size_t n = json_dumpb(doc, NULL, 0, JSON_ENCODE_ANY | JSON_COMPACT);
    FUZZ_CHECK(n > 0);
    char *text = malloc(n);
    FUZZ_CHECK(text != NULL);
    FUZZ_CHECK(json_dumpb(doc, text, n, JSON_ENCODE_ANY | JSON_COMPACT) == n);
    json_t *again = NULL;
    FUZZ_CHECK(body_parse(text, n, &again, &err) == 0);
    FUZZ_CHECK(json_equal(doc, again));
    json_decref(again);
    free(text);

    check_items(doc);
    json_decref(doc);
    return 0;
}
