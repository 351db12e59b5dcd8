/*
 * pg_commit: the raw durable-commit limit of a PostgreSQL server for
 * `make bench DB=postgres`, the counterpart of sqlite_commit.
 *
 *   bench/pg_commit CONNINFO CLIENTS ROWS_PER_TRANSACTION SECONDS
 *
 * (Re)creates the table bench_raw_orders, shaped like an order, then runs
 * CLIENTS threads, each with its own connection (libpq connections are
 * not shared between threads), inserting rows through one prepared
 * statement, ROWS_PER_TRANSACTION rows per BEGIN..COMMIT (one row: the
 * INSERT is its own transaction), for SECONDS seconds. Every COMMIT is
 * durable when the server runs with synchronous_commit=on (the driver
 * checks that it does). With several clients the server shares WAL
 * flushes between concurrent commits, which is the limit a service with
 * as many clients waiting can be compared with. Prints one JSON line:
 * {"clients":N,"rows_per_txn":R,"commits":C,"rows":W,"seconds":S,
 * "commits_per_s":..,"rows_per_s":..}. Exit status 1 on any error.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLIENTS_MAX 256
#define INSERT_PARAMS 4
#define PARAM_LEN 32

static const char *conninfo;
static long per_txn;
static double seconds;
static pthread_barrier_t start_line;

struct client {
    pthread_t thread;
    int index;
    long commits;
    long rows;
    double elapsed;
    int failed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs a statement without parameters; 0 on success. */
static int exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -1;
    if (rc)
        fprintf(stderr, "pg_commit: %s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    return rc;
}

static PGconn *connect_db(void)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "pg_commit: connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static int insert_row(PGconn *conn, long row, int client)
{
    char user_id[PARAM_LEN], created_at[PARAM_LEN];
    snprintf(user_id, sizeof(user_id), "%ld", 1 + (row * 7 + client) % 1000);
    snprintf(created_at, sizeof(created_at), "%lld", 1743675300000LL + row);
    const char *values[INSERT_PARAMS] = {user_id, "5000", "Test purchase", created_at};
    PGresult *res = PQexecPrepared(conn, "insert", INSERT_PARAMS, values, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc)
        fprintf(stderr, "pg_commit: insert: %s", PQerrorMessage(conn));
    PQclear(res);
    return rc;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    PGconn *conn = connect_db();
    PGresult *res = NULL;
    int ready = conn != NULL;
    if (ready) {
        res = PQprepare(conn, "insert",
                        "INSERT INTO bench_raw_orders (user_id, amount_cents, description,"
                        " created_at_ms) VALUES ($1, $2, $3, $4)",
                        INSERT_PARAMS, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "pg_commit: prepare: %s", PQerrorMessage(conn));
            ready = 0;
        }
        PQclear(res);
    }
    /* Every client waits for all the others, ready or not, so that the
     * measured seconds are those when all of them commit. */
    pthread_barrier_wait(&start_line);
    if (!ready) {
        c->failed = 1;
        goto out;
    }
    double start = now_s();
    while (c->elapsed < seconds) {
        if (per_txn > 1 && exec(conn, "BEGIN"))
            goto fail;
        for (long i = 0; i < per_txn; i++) {
            if (insert_row(conn, c->rows, c->index))
                goto fail;
            c->rows++;
        }
        if (per_txn > 1 && exec(conn, "COMMIT"))
            goto fail;
        c->commits++;
        c->elapsed = now_s() - start;
    }
    goto out;
fail:
    c->failed = 1;
out:
    PQfinish(conn);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s CONNINFO CLIENTS ROWS_PER_TRANSACTION SECONDS\n", argv[0]);
        return 2;
    }
    conninfo = argv[1];
    long clients = strtol(argv[2], NULL, 10);
    per_txn = strtol(argv[3], NULL, 10);
    seconds = strtod(argv[4], NULL);
    if (clients < 1 || clients > CLIENTS_MAX || per_txn < 1 || seconds <= 0) {
        fprintf(stderr, "pg_commit: bad arguments\n");
        return 2;
    }

    int status = 1;
    int barrier = 0;
    long started = 0;
    struct client *all = calloc((size_t)clients, sizeof(*all));
    PGconn *setup = connect_db();
    if (!all || !setup)
        goto out;
    if (exec(setup, "DROP TABLE IF EXISTS bench_raw_orders") ||
        exec(setup,
             "CREATE TABLE bench_raw_orders (id BIGSERIAL PRIMARY KEY,"
             " user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL,"
             " description TEXT, created_at_ms BIGINT NOT NULL)"))
        goto out;
    if (pthread_barrier_init(&start_line, NULL, (unsigned)clients) != 0)
        goto out;
    barrier = 1;
    for (; started < clients; started++) {
        all[started].index = (int)started;
        if (pthread_create(&all[started].thread, NULL, client_main, &all[started]) != 0) {
            /* The barrier counts on every client: without all of them
             * the started ones would wait forever. */
            fprintf(stderr, "pg_commit: cannot start client %ld\n", started);
            abort();
        }
    }
    long commits = 0, rows = 0, failed = 0;
    double elapsed = 0;
    for (long i = 0; i < started; i++) {
        pthread_join(all[i].thread, NULL);
        commits += all[i].commits;
        rows += all[i].rows;
        failed += all[i].failed;
        if (all[i].elapsed > elapsed)
            elapsed = all[i].elapsed;
    }
    if (failed || elapsed <= 0)
        goto out;
    printf(
        "{\"clients\":%ld,\"rows_per_txn\":%ld,\"commits\":%ld,\"rows\":%ld,"
        "\"seconds\":%.3f,\"commits_per_s\":%.1f,\"rows_per_s\":%.1f}\n",
        clients, per_txn, commits, rows, elapsed, commits / elapsed, rows / elapsed);
    status = 0;
out:
    if (barrier)
        pthread_barrier_destroy(&start_line);
    PQfinish(setup);
    free(all);
    return status;
}
