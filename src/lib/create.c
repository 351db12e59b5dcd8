#include "create.h"

#include <stdio.h>
#include <stdlib.h>

#include "body.h"
#include "log.h"
#include "service.h"
#include "util.h"

/* Validates every item first so a bad item writes nothing. */
static int parse_all(json_t *body, const struct create_spec *spec, size_t count, int is_batch,
                     char *items, struct api_error *err)
{
    for (size_t i = 0; i < count; i++) {
        if (spec->parse(body_item(body, i), items + i * spec->item_size, err) != 0) {
            err->index = is_batch ? (long)i : -1;
            return -1;
        }
    }
    return 0;
}

/* Inserts every item and its event in one transaction; answers into
 * *answer (an object, or an array when is_batch). */
static int write_all(db *conn, const struct create_spec *spec, const struct create_target *target,
                     const char *request_id, size_t count, int is_batch, const char *items,
                     struct jsonw *answer, int64_t *first_id, struct api_error *err)
{
    struct jsonw obj;
    int rc;

    jsonw_init(&obj);
    rc = db_begin(conn);
    if (rc != DB_OK) {
        service_db_error(rc, err);
        goto out;
    }
    if (is_batch)
        jsonw_array_begin(answer);
    for (size_t i = 0; i < count; i++) {
        int64_t id = 0;
        jsonw_reset(&obj);
        rc = spec->insert(conn, items + i * spec->item_size, &obj, &id, err);
        if (rc == DB_OK) {
            struct outbox_event ev = {
                .type = spec->event_type,
                .data_json = obj.buf,
                .data_len = obj.len,
                .correlation_id = request_id,
                .occurred_at_ms = util_now_ms(),
            };
            rc = outbox_append(conn, target->service, &ev);
            if (rc != DB_OK)
                service_db_error(rc, err);
        }
        if (rc != DB_OK) {
            err->index = is_batch ? (long)i : -1;
            goto out;
        }
        if (i == 0)
            *first_id = id;
        jsonw_raw(answer, obj.buf, obj.len);
    }
    if (is_batch)
        jsonw_array_end(answer);
    rc = db_commit(conn);
    if (rc != DB_OK)
        service_db_error(rc, err);
out:
    if (rc != DB_OK) {
        if (err->status >= 500)
            log_warn(request_id, "create %s failed: %s", spec->event_type, db_errmsg(conn));
        db_rollback(conn);
    }
    jsonw_free(&obj);
    return rc;
}

void create_handle(http_request *req, const struct create_spec *spec,
                   const struct create_target *target)
{
    json_t *body = http_body(req);
    struct api_error err;
    struct jsonw answer;
    size_t count;
    int is_batch;
    int64_t first_id = 0;
    char *items = NULL;

    api_error_clear(&err);
    jsonw_init(&answer);
    if (body_items(body, BODY_MAX_ITEMS, &count, &is_batch, &err) != 0)
        goto fail;
    items = xcalloc(count, spec->item_size);
    if (parse_all(body, spec, count, is_batch, items, &err) != 0)
        goto fail;

    db *conn = db_pool_acquire(target->pool);
    int rc = write_all(conn, spec, target, http_request_id(req), count, is_batch, items, &answer,
                       &first_id, &err);
    db_pool_release(target->pool, conn);
    if (rc != DB_OK)
        goto fail;

    outbox_relay_wake(target->relay);
    if (!is_batch) {
        char location[128];
        snprintf(location, sizeof(location), "%s%lld", spec->location_prefix,
                 (long long)first_id);
        http_add_header(req, "Location", location);
    }
    http_reply(req, 201, &answer);
    goto out;
fail:
    http_reply_error(req, &err);
out:
    free(items);
    jsonw_free(&answer);
}
