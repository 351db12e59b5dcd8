#include "create.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "ctoken.h"
#include "groupcommit.h"
#include "idempotency.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "service.h"
#include "trace.h"
#include "util.h"

/* One create request on its way through the group commit. */
struct create_job {
    struct groupcommit_job gc_job; /* first: the committer hands it back */
    http_request *req;
    const struct create_spec *spec;
    const struct service *service; /* outlives its group commit */
    char *items;                   /* count parsed items of spec->item_size bytes */
    size_t count;
    int is_batch;
    struct jsonw answer;
    int64_t first_id;
    int64_t *seqs; /* the outbox seq of each item's event */
    char *token;   /* X-Consistency-Token of a committed create */
    struct api_error err;
    struct idempotency_request idem;
    /* The 201 as a whole, made on the committer thread inside the job's
     * savepoint (so a stored key holds it): the created object(s) with
     * every header of the answer, or a key's stored answer when
     * replayed. */
    struct idempotency_answer reply;
    int replayed;
};

/* Validates every item first so a bad item writes nothing. */
int create_parse_all(json_t *body, const struct create_spec *spec, size_t count, int is_batch,
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

/* On the committer thread, inside the group's transaction: inserts every
 * item and its event, and writes the answer (an object, or an array when
 * the body was a batch). */
static int write_items(db *conn, struct groupcommit_job *gc_job)
{
    struct create_job *job = (struct create_job *)gc_job;
    const struct create_spec *spec = job->spec;
    const char *request_id = http_request_id(job->req);
    struct jsonw obj;
    int rc = DB_OK;

    jsonw_init(&obj);
    jsonw_reset(&job->answer);
    if (job->is_batch)
        jsonw_array_begin(&job->answer);
    for (size_t i = 0; i < job->count && rc == DB_OK; i++) {
        int64_t id = 0;
        jsonw_reset(&obj);
        rc = spec->insert(conn, job->items + i * spec->item_size, &obj, &id, &job->err);
        if (rc == DB_OK && jsonw_failed(&obj)) {
            rc = DB_ERROR; /* the created object did not fit (jsonw.h) */
            service_db_error(rc, &job->err);
        }
        if (rc == DB_OK) {
            /* Each event is a span of its own in the request's trace. */
            struct trace_context span;
            char traceparent[TRACE_PARENT_LEN + 1];
            trace_child(http_trace(job->req), &span);
            trace_format(&span, traceparent, sizeof(traceparent));
            struct outbox_event ev = {
                .type = spec->event_type,
                .data_json = obj.buf,
                .data_len = obj.len,
                .correlation_id = request_id,
                .occurred_at_ms = util_now_ms(),
                .traceparent = traceparent,
            };
            rc = outbox_append_seq(conn, job->service->cfg->service, &ev, &job->seqs[i]);
            if (rc != DB_OK)
                service_db_error(rc, &job->err);
        }
        if (rc != DB_OK) {
            job->err.index = job->is_batch ? (long)i : -1;
            if (job->err.status >= 500)
                log_warn(request_id, "create %s failed: %s", spec->event_type, db_errmsg(conn));
            break;
        }
        if (i == 0)
            job->first_id = id;
        jsonw_raw(&job->answer, obj.buf, obj.len);
    }
    if (job->is_batch)
        jsonw_array_end(&job->answer);
    if (rc == DB_OK && jsonw_failed(&job->answer)) {
        rc = DB_ERROR; /* the answer did not fit: a 500, nothing written */
        service_db_error(rc, &job->err);
        log_warn(request_id, "create %s: the answer is over %zu bytes", spec->event_type,
                 (size_t)JSONW_MAX_BYTES);
    }
    free(job->token);
    job->token = rc == DB_OK ? ctoken_encode(job->service->cfg->service, job->seqs, job->count,
                                             job->service->cfg->consistency_key)
                             : NULL;
    jsonw_free(&obj);
    return rc;
}

/* The whole 201 of a create, headers included. Every header of a 201
 * is added here, inside the savepoint, so that an Idempotency-Key stores
 * it with the rest and a replay gives it back. */
static void make_reply(struct create_job *job)
{
    struct idempotency_answer *reply = &job->reply;

    reply->status = 201;
    if (!job->is_batch) {
        char location[128];
        snprintf(location, sizeof(location), "%s%lld", job->spec->location_prefix,
                 (long long)job->first_id);
        idempotency_answer_add_header(reply, "Location", location);
    }
    if (job->token)
        idempotency_answer_add_header(reply, "X-Consistency-Token", job->token);
    reply->body = jsonw_steal(&job->answer, &reply->body_len);
}

/* On the committer thread, in the job's savepoint: a key already used
 * answers from what it stored (or refuses); otherwise the items are
 * written and, with a key, the answer is stored beside them. */
static int run_create(db *conn, struct groupcommit_job *gc_job)
{
    struct create_job *job = (struct create_job *)gc_job;
    const struct config *cfg = job->service->cfg;
    int rc;

    if (job->idem.present) {
        rc = idempotency_claim(conn, cfg->service, cfg->idempotency_ttl_s, &job->idem,
                               &job->replayed, &job->reply, &job->err);
        if (rc != DB_OK || job->replayed)
            return rc;
    }
    rc = write_items(conn, gc_job);
    if (rc != DB_OK)
        return rc;
    make_reply(job);
    if (job->idem.present)
        rc = idempotency_store(conn, cfg->service, &job->idem, &job->reply, &job->err);
    return rc;
}

static void free_job(struct create_job *job)
{
    free(job->items);
    free(job->seqs);
    free(job->token);
    jsonw_free(&job->answer);
    idempotency_answer_free(&job->reply);
    free(job);
}

/* On the committer thread, once the group's fate is known. */
static void answer(struct groupcommit_job *gc_job, int rc)
{
    struct create_job *job = (struct create_job *)gc_job;
    http_request *req = job->req;

    if (rc == DB_OK) {
        struct idempotency_answer *reply = &job->reply;
        if (job->replayed) {
            http_add_header(req, "Idempotent-Replayed", "true");
            metrics_counter_add("idempotency_replays_total", NULL, 1);
        } else {
            outbox_relay_wake(job->service->relay);
        }
        for (int i = 0; i < reply->header_count; i++)
            http_add_header(req, reply->headers[i].name, reply->headers[i].value);
        http_reply_json(req, reply->status, reply->body, reply->body_len);
        reply->body = NULL; /* the HTTP layer's now */
    } else {
        /* The job's own error (409, 422), or the group's commit failure. */
        if (!job->err.status)
            service_db_error(rc, &job->err);
        if (job->err.status == 409 && strcmp(job->err.code, "idempotency_key_in_use") == 0)
            http_add_header(req, "Retry-After", IDEMPOTENCY_RETRY_AFTER);
        http_reply_error(req, &job->err);
    }
    free_job(job);
    http_resume(req);
}

void create_handle(http_request *req, void *app)
{
    const struct service *service = app;
    const create_handle_data *spec = http_route_data(req);
    json_t *body = http_body(req);

    if (http_refuse_query(req))
        return;
    struct create_job *job = xcalloc(1, sizeof(*job));

    api_error_clear(&job->err);
    jsonw_init(&job->answer);
    job->req = req;
    job->spec = spec;
    job->service = service;
    if (idempotency_read(req, &job->idem, &job->err) != 0)
        goto invalid;
    if (body_items(body, BODY_MAX_ITEMS, &job->count, &job->is_batch, &job->err) != 0)
        goto invalid;
    job->items = xcalloc(job->count, spec->item_size);
    job->seqs = xcalloc(job->count, sizeof(*job->seqs));
    if (create_parse_all(body, spec, job->count, job->is_batch, job->items, &job->err) != 0)
        goto invalid;

    job->gc_job.run = run_create;
    job->gc_job.done = answer;
    http_suspend(req);
    groupcommit_submit(service->gc, &job->gc_job);
    return;
invalid:
    http_reply_error(req, &job->err);
    free_job(job);
}

int create_returning(db *conn, db_stmt *st, rows_writer write, struct jsonw *out, int64_t *id,
                     struct api_error *err)
{
    int rc = db_step(st);
    if (rc == DB_ROW) {
        *id = db_col_int64(st, 0);
        rc = write(conn, st, out);
    } else if (rc != DB_DUPLICATE) {
        service_db_error(rc, err);
    }
    db_stmt_reset(st);
    return rc;
}
