/*
 * invoice-service: the read side. A consumer applies user, account and
 * order events to a projection of monthly invoices (projection.c); its
 * GET routes answer queries on it with the table of invoices.c.
 */
#ifndef INVOICE_SERVICE_H
#define INVOICE_SERVICE_H

#include "consumer.h"
#include "db.h"
#include "mq.h"
#include "event.h"
#include "readwait.h"
#include "rows.h"
#include "rows.h"
#include "sse.h"

extern const struct db_migration invoice_migrations[];
extern const size_t invoice_migration_count;

/* Events of one consumer batch remembered for the event stream; past it
 * the rest of the batch is not streamed (counted in metrics). The
 * consumer's batch is at most 10000 (--consumer-batch). */
#define LIVE_PENDING_MAX 10000

/* Who hears about what the consumer applies: the reads waiting for it
 * and the event stream's clients (GET /invoice-service/stream). */
struct invoice_live {
    readwait *readwait; /* may be NULL */
    sse_hub *hub;       /* may be NULL */
    /* The consumer thread's own: the stream events of the open batch
     * (JSON lines of malloc()), published after its commit. */
    char **pending;
    size_t pending_count;
    char last_id[EVENT_ID_MAX + 1]; /* the last one noted, to skip a rerun */
    /* Whether the open batch also writes a rebuild's shadow model
     * (rebuild.h), decided by projection_begin for the transaction. */
    int rebuilding;
};

/* The consumer's apply callback (consumer.h); ctx is the service's
 * struct invoice_live, told what it applies. */
int projection_apply(db *conn, const struct mq_delivery *d, struct consumer_result *res, void *ctx);
/* The consumer's begin callback: asks, first in the batch's transaction,
 * whether a rebuild runs (rebuild_running), for every apply of the batch. */
int projection_begin(db *conn, void *ctx);
/* The consumer's committed callback: wakes the reads waiting for them
 * and sends the batch's events to the stream. */
void projection_committed(void *ctx);

/* GET /invoice-service/stream (route data: the struct invoice_live). */
void stream_handle(http_request *req, void *app);
typedef struct invoice_live stream_handle_data; /* route data (route.h) */

/* The dashboard's files (ui.c): GET /invoice-service/ui/ and the files
 * it loads, read from the folder ui_set_dir() chose. */
struct ui_file;
extern const struct ui_file ui_index, ui_script, ui_style; /* route data */
int ui_set_dir(const char *flag_dir);
void ui_handle_file(http_request *req, void *app);
void ui_handle_redirect(http_request *req, void *app);
typedef struct ui_file ui_handle_file_data; /* route data (route.h) */
typedef void ui_handle_redirect_data;

extern const struct rows_list invoice_rows; /* GET list and GET {id} */

/* GET list and GET {id}: the usual answers of invoice_rows, after waiting
 * for consistent_with tokens when the query has some (docs/api.md). */
void invoices_handle_list(http_request *req, void *app);
void invoices_handle_get(http_request *req, void *app);
/* Their route data is what rows_handle_list and rows_handle_get read. */
typedef rows_handle_list_data invoices_handle_list_data; /* route.h */
typedef rows_handle_get_data invoices_handle_get_data;

#endif
