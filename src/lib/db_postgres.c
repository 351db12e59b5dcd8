/*
 * db_postgres.c: the PostgreSQL backend of db.h, over libpq (see
 * db_internal.h for the contract). conn->impl is a struct pg_conn (the
 * PGconn and what belongs to it), a statement's impl a struct pg_stmt
 * (its server-side name, bound values and last result); both are freed
 * here, in pg_close / pg_finalize.
 *
 * Statements are prepared on the server once per connection under a
 * generated name and run with PQexecPrepared on the first db_step; the
 * whole result is fetched then (queries here are bounded by LIMIT) and
 * later steps walk its rows. Parameters and results travel as text, so
 * an int64 is bound as its decimal digits and read back with strtoll.
 *
 * Parameter types are left to the server to infer from the SQL, as the
 * same SQL text also runs on SQLite. Where the server cannot infer one
 * ("$1 IS NULL OR user_id = $1" sees $1 first where any type fits), the
 * backend declares it: bigint, or text when the SQL rejects bigint there
 * (see prepare_typed). The choice fits the SQL, not the bound value, so
 * the statement prepares once and then takes any binding, NULL included.
 *
 * Every connection works in one schema ("demo" unless the URL says
 * ?schema=NAME): search_path is set to it on connect, and db_migrate
 * creates it under its advisory lock (pg_migration_lock).
 */
#include <dlfcn.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_internal.h"
#include "db_postgres_parse.h"
#include "util.h"

/* Server-side statement names: "db" and a per-connection counter. */
#define STMT_NAME_MAX 24
/* Longest decimal int64 and its NUL. */
#define INT64_TEXT_MAX 24
/* ON CONFLICT needs 9.5. */
#define MIN_SERVER_VERSION 90500
/* Type OIDs of pg_type, fixed since PostgreSQL 7. */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_TEXT 25
/* The longest text a parameter may have: PostgreSQL's limit for one
 * value (1 GB - 1 byte). libpq measures a text parameter in an int, so
 * a longer one would not even reach the server intact. */
#define MAX_TEXT_LEN ((size_t)0x3fffffff)
/* Each round of prepare_typed declares one more parameter or changes
 * one, so a statement needs at most two rounds per parameter; this caps
 * statements whose errors keep changing for other reasons. */
#define MAX_PREPARE_ROUNDS 64
/* The two-key advisory lock space of db_migrate ('cqrs', 1), apart from
 * the one-key space of db_try_advisory_lock by PostgreSQL's definition. */
#define MIGRATION_LOCK_CLASS 1668379251
#define MIGRATION_LOCK_ID 1
/* Reads of unexpected input an idle connection gets in pg_alive. */
#define ALIVE_READS_MAX 8
/* Guards the caller's transaction while a statement is prepared in it. */
#define PREPARE_SAVEPOINT "db_prepare"

struct pg_conn {
    PGconn *pg;
    char schema[PG_SCHEMA_NAME_MAX + 1];
    unsigned long long next_stmt; /* for statement names */
    /* Names of finalized statements still on the server: deallocated
     * together before the next prepare outside a transaction, so
     * finalize (also run by db_close) never waits on the network. */
    char **doomed;
    size_t doomed_count;
    size_t doomed_cap;
    /* Advisory locks this session holds, so a repeated try answers
     * without stacking the server's lock count. */
    int64_t *locks;
    size_t lock_count;
    size_t lock_cap;
};

struct pg_stmt {
    char name[STMT_NAME_MAX];
    int nparams;
    char **values; /* per parameter, owned text; NULL is SQL NULL */
    PGresult *res; /* of the first step, until reset */
    int row;       /* current row of res */
    int error;     /* the first step's failure, repeated by later ones */
};

static struct pg_conn *conn_of(const db *conn)
{
    return conn->impl;
}

static PGconn *pg_of(const db *conn)
{
    return conn_of(conn)->pg;
}

static struct pg_stmt *stmt_of(const db_stmt *st)
{
    return st->impl;
}

/* ---- loading libpq ------------------------------------------------------ */

/* libpq is loaded with the first PostgreSQL connection, not linked: with
 * the Kerberos, LDAP and SASL libraries it brings it is about 5 MiB of
 * mapped pages, which a service on SQLite (the default) would carry for
 * nothing (docs/performance.md, "Idle memory"). The soname is the one
 * Debian's libpq5 ships; every entry point is called through pq below,
 * with the type the header declares. */
#define LIBPQ_SONAME "libpq.so.5"
#define LIBPQ_FUNCTIONS(X)                                                                         \
    X(PQclear)                                                                                     \
    X(PQcmdStatus)                                                                                 \
    X(PQconnectdb)                                                                                 \
    X(PQconninfoFree)                                                                              \
    X(PQconninfoParse)                                                                             \
    X(PQconsumeInput)                                                                              \
    X(PQdescribePrepared)                                                                          \
    X(PQerrorMessage)                                                                              \
    X(PQexec)                                                                                      \
    X(PQexecParams)                                                                                \
    X(PQexecPrepared)                                                                              \
    X(PQfinish)                                                                                    \
    X(PQfreemem)                                                                                   \
    X(PQftype)                                                                                     \
    X(PQgetisnull)                                                                                 \
    X(PQgetlength)                                                                                 \
    X(PQgetvalue)                                                                                  \
    X(PQisBusy)                                                                                    \
    X(PQnfields)                                                                                   \
    X(PQnparams)                                                                                   \
    X(PQntuples)                                                                                   \
    X(PQprepare)                                                                                   \
    X(PQresStatus)                                                                                 \
    X(PQresultErrorField)                                                                          \
    X(PQresultErrorMessage)                                                                        \
    X(PQresultStatus)                                                                              \
    X(PQserverVersion)                                                                             \
    X(PQsetNoticeProcessor)                                                                        \
    X(PQsocket)                                                                                    \
    X(PQstatus)                                                                                    \
    X(PQtransactionStatus)

static struct {
#define LIBPQ_FIELD(f) __typeof__(f) *f;
    LIBPQ_FUNCTIONS(LIBPQ_FIELD)
#undef LIBPQ_FIELD
} pq;

static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static void *pq_handle;
static char pq_error[DB_ERRMSG_MAX]; /* why loading failed */

/* Runs once (pthread_once): loads libpq and looks up every entry point;
 * a name it lacks fails the load. (A function pointer converted from
 * dlsym()'s void * is what POSIX promises works for a function's name.) */
static void load_libpq(void)
{
    void *h = dlopen(LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL);

    if (!h) {
        snprintf(pq_error, sizeof(pq_error), "cannot load %s: %s", LIBPQ_SONAME, dlerror());
        return;
    }
#define LIBPQ_LOOK_UP(f)                                                                           \
    if (!(pq.f = (__typeof__(pq.f))dlsym(h, #f))) {                                                \
        snprintf(pq_error, sizeof(pq_error), "%s has no %s", LIBPQ_SONAME, #f);                    \
        dlclose(h);                                                                                \
        memset(&pq, 0, sizeof(pq));                                                                \
        return;                                                                                    \
    }
    LIBPQ_FUNCTIONS(LIBPQ_LOOK_UP)
#undef LIBPQ_LOOK_UP
    pq_handle = h;
}

/* DB_OK when libpq is usable; else DB_ERROR with the reason in err. */
static int libpq_ready(char *err, size_t errlen)
{
    pthread_once(&pq_once, load_libpq);
    if (pq_handle)
        return DB_OK;
    db_put_err(err, errlen, "PostgreSQL: %s", pq_error);
    return DB_ERROR;
}

/* ---- errors ------------------------------------------------------------- */

static int state_is(const char *state, const char *want)
{
    return state && strcmp(state, want) == 0;
}

static int state_class(const char *state, const char *cls)
{
    return state && strncmp(state, cls, 2) == 0;
}

/* The db_result for a failed call: a lost connection first (whatever the
 * message), then by SQLSTATE class or code. */
static int map_error(PGconn *pg, const PGresult *res)
{
    const char *state = res ? pq.PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (pq.PQstatus(pg) == CONNECTION_BAD)
        return DB_UNAVAILABLE;
    if (state_is(state, "23505")) /* unique_violation */
        return DB_DUPLICATE;
    if (state_class(state, "23"))
        return DB_CONSTRAINT;
    if (state_is(state, "40001") || state_is(state, "40P01") || state_is(state, "55P03"))
        return DB_BUSY;
    /* Connection exceptions, the server shutting down or not yet up, and
     * insufficient resources (disk full, too many connections), as a full
     * disk is on SQLite. */
    if (state_class(state, "08") || state_is(state, "57P01") || state_is(state, "57P02") ||
        state_is(state, "57P03") || state_class(state, "53"))
        return DB_UNAVAILABLE;
    return DB_ERROR;
}

/* Records a failed call on conn: the server's primary message and
 * SQLSTATE (its DETAIL may quote row values, so it stays out of logs),
 * or libpq's own message. */
static int fail_pg(db *conn, const PGresult *res, const char *what)
{
    PGconn *pg = pg_of(conn);
    const char *state = res ? pq.PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? pq.PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    int rc = map_error(pg, res);

    if (primary)
        return db_fail(conn, rc, "%s: %s (SQLSTATE %s)", what, primary, state ? state : "?");
    const char *msg = res ? pq.PQresultErrorMessage(res) : "";
    if (!*msg)
        msg = pq.PQerrorMessage(pg);
    size_t len = strcspn(msg, "\n");
    return db_fail(conn, rc, "%s: %.*s", what, (int)len, len ? msg : "no answer from the server");
}

/* ---- opening ------------------------------------------------------------ */

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Session settings, in one round trip. The schema name was checked to be
 * a plain identifier, so quoting it is enough. */
static int configure(PGconn *pg, const struct pg_url *u, char *err, size_t errlen)
{
    char sql[256];
    PGresult *res;
    int rc = DB_OK;

    snprintf(sql, sizeof(sql),
             "SET search_path TO \"%s\"; SET lock_timeout = %ld; "
             "SET client_encoding = 'UTF8'; "
             "SET client_min_messages = warning",
             u->schema, u->lock_timeout_ms);
    res = pq.PQexec(pg, sql);
    if (pq.PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *msg = pq.PQresultErrorMessage(res);
        db_put_err(err, errlen, "PostgreSQL: setting up the session: %.*s", (int)strcspn(msg, "\n"),
                   msg);
        rc = map_error(pg, res);
    }
    pq.PQclear(res);
    return rc;
}

/* Lets libpq parse the connection string before any connection is tried,
 * so a malformed URL is a configuration error (DB_ERROR), not an
 * unreachable server worth retrying. */
static int check_conninfo(const struct pg_url *u, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = pq.PQconninfoParse(u->conninfo, &perr);
    int rc = DB_OK;

    if (!opts) {
        char msg[DB_ERRMSG_MAX];
        snprintf(msg, sizeof(msg), "%.*s", perr ? (int)strcspn(perr, "\n") : 0, perr ? perr : "");
        pg_scrub(msg, u->password);
        db_put_err(err, errlen, "PostgreSQL: bad database URL: %s", *msg ? msg : "out of memory");
        rc = DB_ERROR;
    }
    pq.PQconninfoFree(opts);
    pq.PQfreemem(perr);
    return rc;
}

/* Connects and checks the server is new enough. A failed connection is
 * DB_UNAVAILABLE (worth retrying), its message on one line and without
 * the password; a server that is too old is DB_ERROR. Sets *out only on
 * success. */
static int connect_server(const struct pg_url *u, PGconn **out, char *err, size_t errlen)
{
    PGconn *pg = pq.PQconnectdb(u->conninfo);
    int rc = DB_OK;

    if (!pg || pq.PQstatus(pg) != CONNECTION_OK) {
        char msg[DB_ERRMSG_MAX];
        const char *m = pg ? pq.PQerrorMessage(pg) : "out of memory";
        /* libpq's message may run over lines (one per address tried). */
        snprintf(msg, sizeof(msg), "%s", m);
        for (char *p = msg; *p; p++)
            if (*p == '\n')
                *p = p[1] ? ' ' : '\0';
        pg_scrub(msg, u->password);
        db_put_err(err, errlen, "PostgreSQL: cannot connect: %s", msg);
        rc = DB_UNAVAILABLE;
        goto out;
    }
    if (pq.PQserverVersion(pg) < MIN_SERVER_VERSION) {
        db_put_err(err, errlen, "PostgreSQL: server version %d is older than 9.5",
                   pq.PQserverVersion(pg));
        rc = DB_ERROR;
        goto out;
    }
    *out = pg;
    pg = NULL;
out:
    pq.PQfinish(pg);
    return rc;
}

static int pg_open(db *conn, const char *url, char *err, size_t errlen)
{
    struct pg_url u = {0};
    struct pg_conn *c = NULL;
    PGconn *pg = NULL;
    int rc;

    if (libpq_ready(err, errlen) != DB_OK)
        return DB_ERROR;
    rc = pg_parse_url(url, &u, err, errlen);
    if (rc != DB_OK)
        goto out;
    rc = check_conninfo(&u, err, errlen);
    if (rc != DB_OK)
        goto out;
    rc = connect_server(&u, &pg, err, errlen);
    if (rc != DB_OK)
        goto out;
    pq.PQsetNoticeProcessor(pg, ignore_notice, NULL);
    rc = configure(pg, &u, err, errlen);
    if (rc != DB_OK)
        goto out;
    c = xcalloc(1, sizeof(*c));
    c->pg = pg;
    util_strlcpy(c->schema, u.schema, sizeof(c->schema));
    conn->impl = c;
    pg = NULL;
out:
    pq.PQfinish(pg);
    pg_url_free(&u);
    return rc;
}

static void pg_close(db *conn)
{
    struct pg_conn *c = conn_of(conn);

    if (!c)
        return;
    /* Closing drops the server's statements and session locks too. */
    pq.PQfinish(c->pg);
    for (size_t i = 0; i < c->doomed_count; i++)
        free(c->doomed[i]);
    free(c->doomed);
    free(c->locks);
    free(c);
    conn->impl = NULL;
}

static int pg_alive(db *conn)
{
    PGconn *pg = pg_of(conn);
    struct pollfd pfd = {.fd = pq.PQsocket(pg), .events = POLLIN};

    if (pq.PQstatus(pg) != CONNECTION_OK || pfd.fd < 0)
        return 0;
    /* An idle connection has nothing to read unless the server spoke
     * first: a notice, or the FATAL message and then the end of a
     * terminated backend or a shutdown. Reading on until the socket is
     * quiet lets libpq see that end (CONNECTION_BAD); the bound keeps a
     * chatty server from holding us here. */
    for (int i = 0; i < ALIVE_READS_MAX; i++) {
        if (poll(&pfd, 1, 0) <= 0)
            return 1;
        if (!pq.PQconsumeInput(pg) || pq.PQstatus(pg) != CONNECTION_OK)
            return 0;
        pq.PQisBusy(pg); /* parses it: notices go to ignore_notice */
    }
    return 1;
}

/* ---- statements --------------------------------------------------------- */

/* Runs a command without parameters or rows, returning its result for
 * the caller to inspect and clear, or NULL after recording an error. */
static PGresult *command(db *conn, const char *sql, const char *what)
{
    PGresult *res = pq.PQexec(pg_of(conn), sql);

    if (pq.PQresultStatus(res) == PGRES_COMMAND_OK)
        return res;
    fail_pg(conn, res, what);
    pq.PQclear(res);
    return NULL;
}

/* Runs SQL (several statements allowed); rows are discarded. */
static int pg_exec(db *conn, const char *sql)
{
    PGresult *res = pq.PQexec(pg_of(conn), sql);
    ExecStatusType status = pq.PQresultStatus(res);
    int rc = DB_OK;

    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY)
        rc = fail_pg(conn, res, "exec");
    pq.PQclear(res);
    return rc;
}

/* Deallocates finalized statements, only outside a transaction: a
 * failure there could not abort the caller's work. */
static void flush_doomed(db *conn)
{
    struct pg_conn *c = conn_of(conn);
    size_t cap = 1;
    char *sql;
    size_t used = 0;

    if (c->doomed_count == 0 || pq.PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return;
    for (size_t i = 0; i < c->doomed_count; i++)
        cap += strlen(c->doomed[i]) + sizeof("DEALLOCATE \"\"; ");
    sql = xmalloc(cap);
    sql[0] = '\0';
    for (size_t i = 0; i < c->doomed_count; i++) {
        used += (size_t)snprintf(sql + used, cap - used, "DEALLOCATE \"%s\"; ", c->doomed[i]);
        free(c->doomed[i]);
    }
    c->doomed_count = 0;
    pq.PQclear(pq.PQexec(c->pg, sql));
    free(sql);
}

static int sqlstate_of(const PGresult *res, const char *want)
{
    return state_is(res ? pq.PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL, want);
}

/* The n of the first "$n" in the server's message, 0 if none. */
static int param_in_message(const PGresult *res)
{
    const char *msg = pq.PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *d = msg ? strchr(msg, '$') : NULL;

    while (d && !(d[1] >= '1' && d[1] <= '9'))
        d = strchr(d + 1, '$');
    return d ? atoi(d + 1) : 0;
}

/* PQprepare, declaring the types the server cannot infer. It first lets
 * the server infer them all. When it answers that a parameter's type is
 * undetermined (42P18, 42P08: "$1 IS NULL" seen before "user_id = $1")
 * or that an operator on unknowns is ambiguous (42725: "$2 - $1"), that
 * parameter (else the first undeclared one) is declared bigint and the
 * prepare tried again; when bigint then does not fit the SQL (42883 no
 * such operator or function, 42804 type mismatch: "lower($1)",
 * "status = $2"), text instead. Anything else is the caller's error.
 * In a transaction each failure is undone back to the caller's
 * savepoint, which a failed statement would otherwise abort. */
static PGresult *prepare_typed(PGconn *pg, const char *name, const char *sql, int max_param,
                               int in_tx)
{
    Oid *types = xcalloc((size_t)max_param + 1, sizeof(*types));
    int declared = 0; /* nParams passed: the highest declared index */
    int last = 0;     /* the parameter declared last */
    PGresult *res = NULL;

    for (int round = 0; round < MAX_PREPARE_ROUNDS; round++) {
        int k = 0;

        pq.PQclear(res);
        res = pq.PQprepare(pg, name, sql, declared, declared ? types : NULL);
        if (pq.PQresultStatus(res) == PGRES_COMMAND_OK)
            break;
        if (in_tx)
            pq.PQclear(pq.PQexec(pg, "ROLLBACK TO SAVEPOINT " PREPARE_SAVEPOINT));
        if (sqlstate_of(res, "42P18") || sqlstate_of(res, "42P08") || sqlstate_of(res, "42725")) {
            k = param_in_message(res);
            if (k < 1 || k > max_param || types[k - 1] != 0)
                for (k = 1; k <= max_param && types[k - 1] != 0; k++)
                    ;
            if (k > max_param)
                break;
            types[k - 1] = OID_INT8;
        } else if (last > 0 && types[last - 1] == OID_INT8 &&
                   (sqlstate_of(res, "42883") || sqlstate_of(res, "42804"))) {
            k = last;
            types[k - 1] = OID_TEXT;
        } else {
            break;
        }
        last = k;
        if (k > declared)
            declared = k;
    }
    free(types);
    return res;
}

static int pg_prepare(db *conn, const char *sql, void **impl)
{
    struct pg_conn *c = conn_of(conn);
    struct pg_stmt *s = NULL;
    PGresult *res = NULL;
    int max_param = 0, has_token = 0, in_tx = 0;
    int rc;

    pg_scan_sql(sql, &max_param, &has_token);
    if (!has_token) {
        rc = db_fail(conn, DB_ERROR, "prepare: no SQL statement in text");
        goto out;
    }
    if (max_param > PG_MAX_PARAMS) {
        rc = db_fail(conn, DB_ERROR, "prepare: more than %d parameters", PG_MAX_PARAMS);
        goto out;
    }
    flush_doomed(conn);
    /* On SQLite a failed prepare leaves an open transaction as it was;
     * here a savepoint does that, also for prepare_typed's own tries. It
     * costs two round trips, once per statement and connection. */
    if (pq.PQtransactionStatus(c->pg) == PQTRANS_INTRANS) {
        res = command(conn, "SAVEPOINT " PREPARE_SAVEPOINT, "prepare");
        if (!res) {
            rc = conn->last_error;
            goto out;
        }
        pq.PQclear(res);
        in_tx = 1;
    }
    s = xcalloc(1, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "db%llu", ++c->next_stmt);
    res = prepare_typed(c->pg, s->name, sql, max_param, in_tx);
    if (pq.PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = fail_pg(conn, res, "prepare");
        goto out;
    }
    /* The server's count, which unbound parameters need as NULLs. */
    pq.PQclear(res);
    res = pq.PQdescribePrepared(c->pg, s->name);
    if (pq.PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = fail_pg(conn, res, "prepare");
        goto out;
    }
    s->nparams = pq.PQnparams(res);
    if (s->nparams > 0)
        s->values = xcalloc((size_t)s->nparams, sizeof(*s->values));
    *impl = s;
    s = NULL;
    rc = DB_OK;
out:
    pq.PQclear(res);
    if (in_tx)
        pq.PQclear(pq.PQexec(c->pg, "RELEASE SAVEPOINT " PREPARE_SAVEPOINT));
    free(s);
    return rc;
}

static void clear_values(struct pg_stmt *s)
{
    for (int i = 0; i < s->nparams; i++) {
        free(s->values[i]);
        s->values[i] = NULL;
    }
}

static void pg_finalize(db *conn, void *impl)
{
    struct pg_conn *c = conn_of(conn);
    struct pg_stmt *s = impl;

    if (c->doomed_count == c->doomed_cap) {
        c->doomed_cap = c->doomed_cap ? c->doomed_cap * 2 : 8;
        c->doomed = xrealloc(c->doomed, c->doomed_cap * sizeof(*c->doomed));
    }
    c->doomed[c->doomed_count++] = xstrdup(s->name);
    pq.PQclear(s->res);
    clear_values(s);
    free(s->values);
    free(s);
}

/* Stores value (owned) for $index; an index the SQL does not use is
 * dropped, as the API promises. */
static int set_value(db_stmt *st, int index, char *value)
{
    struct pg_stmt *s = stmt_of(st);

    if (index > s->nparams) {
        free(value);
        return DB_OK;
    }
    free(s->values[index - 1]);
    s->values[index - 1] = value;
    return DB_OK;
}

static int pg_bind_int64(db_stmt *st, int index, int64_t value)
{
    char text[INT64_TEXT_MAX];

    snprintf(text, sizeof(text), "%lld", (long long)value);
    return set_value(st, index, xstrdup(text));
}

static int pg_bind_text(db_stmt *st, int index, const char *text, size_t len)
{
    /* Checked before the text is read. */
    if (len > MAX_TEXT_LEN)
        return db_fail(st->conn, DB_ERROR,
                       "bind: text for $%d is %zu bytes, more than "
                       "PostgreSQL's %zu",
                       index, len, MAX_TEXT_LEN);
    /* Text parameters end at their first NUL, and PostgreSQL's text
     * cannot hold one anyway: refuse rather than store a cut value. */
    if (memchr(text, '\0', len))
        return db_fail(st->conn, DB_ERROR,
                       "bind: text for $%d holds a NUL byte, which "
                       "PostgreSQL cannot store",
                       index);
    return set_value(st, index, xstrndup(text, len));
}

static int pg_bind_null(db_stmt *st, int index)
{
    return set_value(st, index, NULL);
}

static int pg_step(db_stmt *st)
{
    struct pg_stmt *s = stmt_of(st);
    ExecStatusType status;

    if (s->error)
        return s->error;
    if (s->res) {
        if (s->row < pq.PQntuples(s->res))
            s->row++;
        return s->row < pq.PQntuples(s->res) ? DB_ROW : DB_DONE;
    }
    s->res = pq.PQexecPrepared(pg_of(st->conn), s->name, s->nparams, (const char *const *)s->values,
                               NULL, NULL, 0);
    s->row = 0;
    status = pq.PQresultStatus(s->res);
    if (status == PGRES_TUPLES_OK)
        return pq.PQntuples(s->res) > 0 ? DB_ROW : DB_DONE;
    if (status == PGRES_COMMAND_OK)
        return DB_DONE;
    if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR || !s->res)
        s->error = fail_pg(st->conn, s->res, "step");
    else
        s->error =
            db_fail(st->conn, DB_ERROR, "step: unexpected result %s", pq.PQresStatus(status));
    return s->error;
}

static void pg_reset(db_stmt *st)
{
    struct pg_stmt *s = stmt_of(st);

    pq.PQclear(s->res);
    s->res = NULL;
    s->row = 0;
    s->error = 0;
    clear_values(s);
}

/* The current row's value, or NULL (no row, no such column, SQL NULL). */
static const char *cell(db_stmt *st, int col)
{
    struct pg_stmt *s = stmt_of(st);

    if (!s->res || pq.PQresultStatus(s->res) != PGRES_TUPLES_OK || s->row >= pq.PQntuples(s->res) ||
        col < 0 || col >= pq.PQnfields(s->res) || pq.PQgetisnull(s->res, s->row, col))
        return NULL;
    return pq.PQgetvalue(s->res, s->row, col);
}

static int pg_col_is_null(db_stmt *st, int col)
{
    return cell(st, col) == NULL;
}

static int64_t pg_col_int64(db_stmt *st, int col)
{
    const char *v = cell(st, col);

    if (!v)
        return 0;
    if (pq.PQftype(stmt_of(st)->res, col) == OID_BOOL)
        return v[0] == 't';
    return strtoll(v, NULL, 10);
}

static const char *pg_col_text(db_stmt *st, int col)
{
    return cell(st, col);
}

static size_t pg_col_len(db_stmt *st, int col)
{
    return cell(st, col) ? (size_t)pq.PQgetlength(stmt_of(st)->res, stmt_of(st)->row, col) : 0;
}

/* ---- transactions ------------------------------------------------------- */

static int pg_begin(db *conn)
{
    PGresult *res;

    /* PostgreSQL only warns about a nested BEGIN; SQLite refuses it. */
    if (pq.PQtransactionStatus(pg_of(conn)) != PQTRANS_IDLE &&
        pq.PQstatus(pg_of(conn)) == CONNECTION_OK)
        return db_fail(conn, DB_ERROR, "begin: a transaction is already open");
    res = command(conn, "BEGIN", "begin");
    if (!res)
        return conn->last_error;
    pq.PQclear(res);
    return DB_OK;
}

static int pg_commit(db *conn)
{
    PGTransactionStatusType ts = pq.PQtransactionStatus(pg_of(conn));
    PGresult *res;
    int rc = DB_OK;

    if (ts == PQTRANS_IDLE)
        return db_fail(conn, DB_ERROR, "commit: no transaction is open");
    res = command(conn, "COMMIT", "commit");
    if (!res)
        return conn->last_error;
    /* COMMIT of a transaction that an error aborted rolls it back and
     * says so only in its tag. */
    if (strcmp(pq.PQcmdStatus(res), "COMMIT") != 0)
        rc = db_fail(conn, DB_ERROR,
                     "commit: the transaction had failed and was rolled "
                     "back");
    pq.PQclear(res);
    return rc;
}

static int pg_rollback(db *conn)
{
    PGTransactionStatusType ts = pq.PQtransactionStatus(pg_of(conn));
    PGresult *res;

    /* Nothing open, or the connection is gone and its transaction with
     * it (the error that said so is already recorded). */
    if (ts == PQTRANS_IDLE || ts == PQTRANS_UNKNOWN)
        return DB_OK;
    res = command(conn, "ROLLBACK", "rollback");
    if (!res)
        return conn->last_error;
    pq.PQclear(res);
    return DB_OK;
}

/* ---- migrations and advisory locks -------------------------------------- */

static int pg_migration_lock(db *conn)
{
    struct pg_conn *c = conn_of(conn);
    char sql[512];

    /* The lock lasts until the transaction ends; the schema is created
     * only when missing, so a role without CREATE on the database can
     * still start against a schema made for it. */
    snprintf(sql, sizeof(sql),
             "SELECT pg_advisory_xact_lock(%d, %d); "
             "DO $cqrs$ BEGIN "
             "IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '%s') "
             "THEN CREATE SCHEMA \"%s\"; END IF; END $cqrs$",
             MIGRATION_LOCK_CLASS, MIGRATION_LOCK_ID, c->schema, c->schema);
    return pg_exec(conn, sql);
}

static size_t lock_index(const struct pg_conn *c, int64_t key)
{
    size_t i = 0;

    while (i < c->lock_count && c->locks[i] != key)
        i++;
    return i;
}

/* Runs "SELECT f($1)" for a boolean advisory lock function. */
static int lock_call(db *conn, const char *sql, int64_t key, int *result)
{
    char text[INT64_TEXT_MAX];
    const char *values[1] = {text};
    PGresult *res;
    int rc = DB_OK;

    snprintf(text, sizeof(text), "%lld", (long long)key);
    res = pq.PQexecParams(pg_of(conn), sql, 1, NULL, values, NULL, NULL, 0);
    if (pq.PQresultStatus(res) == PGRES_TUPLES_OK && pq.PQntuples(res) == 1)
        *result = pq.PQgetvalue(res, 0, 0)[0] == 't';
    else
        rc = fail_pg(conn, res, "advisory lock");
    pq.PQclear(res);
    return rc;
}

static int pg_try_advisory_lock(db *conn, int64_t key)
{
    struct pg_conn *c = conn_of(conn);
    int taken = 0;
    int rc;

    if (lock_index(c, key) < c->lock_count)
        return 1;
    rc = lock_call(conn, "SELECT pg_try_advisory_lock($1::bigint)", key, &taken);
    if (rc != DB_OK)
        return rc;
    if (taken) {
        if (c->lock_count == c->lock_cap) {
            c->lock_cap = c->lock_cap ? c->lock_cap * 2 : 4;
            c->locks = xrealloc(c->locks, c->lock_cap * sizeof(*c->locks));
        }
        c->locks[c->lock_count++] = key;
    }
    return taken;
}

static void pg_advisory_unlock(db *conn, int64_t key)
{
    struct pg_conn *c = conn_of(conn);
    size_t i = lock_index(c, key);
    int released = 0;

    if (i == c->lock_count)
        return;
    c->locks[i] = c->locks[--c->lock_count];
    /* If this fails the connection is broken, and its end frees the lock. */
    lock_call(conn, "SELECT pg_advisory_unlock($1::bigint)", key, &released);
}

const struct db_backend db_postgres_backend = {
    .name = "postgres",
    .kind = DB_KIND_POSTGRES,
    .migrations_table_sql =
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, "
        "applied_at BIGINT NOT NULL /* ms since the epoch */)",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .bind_int64 = pg_bind_int64,
    .bind_text = pg_bind_text,
    .bind_null = pg_bind_null,
    .step = pg_step,
    .reset = pg_reset,
    .col_is_null = pg_col_is_null,
    .col_int64 = pg_col_int64,
    .col_text = pg_col_text,
    .col_len = pg_col_len,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .migration_lock = pg_migration_lock,
    .alive = pg_alive,
    .try_advisory_lock = pg_try_advisory_lock,
    .advisory_unlock = pg_advisory_unlock,
};
