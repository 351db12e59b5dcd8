/*
 * sqlite_commit: the raw durable-commit limit of this machine's disk for
 * `make bench`.
 *
 *   bench/sqlite_commit PATH ROWS_PER_TRANSACTION SECONDS
 *
 * Creates a fresh SQLite database at PATH (removing an old one and its
 * -wal/-shm files) in WAL mode with synchronous=FULL, the services'
 * settings, and inserts rows shaped like an order (integers and a short
 * text) through one prepared statement, ROWS_PER_TRANSACTION rows per
 * BEGIN..COMMIT, for SECONDS seconds, from one thread. Prints one JSON
 * line: {"rows_per_txn":N,"commits":C,"rows":R,"seconds":S,
 * "commits_per_s":..,"rows_per_s":..}. Exit status 1 on any SQLite error.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PATH_MAX_LEN 4096

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite_commit: %s: %s\n", sql, err ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static void remove_database(const char *path)
{
    char side[PATH_MAX_LEN + 8];
    unlink(path);
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PATH ROWS_PER_TRANSACTION SECONDS\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    long per_txn = strtol(argv[2], NULL, 10);
    double seconds = strtod(argv[3], NULL);
    if (strlen(path) >= PATH_MAX_LEN || per_txn < 1 || seconds <= 0) {
        fprintf(stderr, "sqlite_commit: bad arguments\n");
        return 2;
    }

    remove_database(path);
    sqlite3 *db = NULL;
    sqlite3_stmt *insert = NULL;
    int status = 1;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "sqlite_commit: cannot open %s\n", path);
        goto out;
    }
    if (exec(db, "PRAGMA journal_mode=WAL") || exec(db, "PRAGMA synchronous=FULL") ||
        exec(db,
             "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
             " amount_cents INTEGER NOT NULL, description TEXT,"
             " created_at_ms INTEGER NOT NULL)"))
        goto out;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO orders (user_id, amount_cents, description,"
                           " created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                           -1, &insert, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite_commit: prepare: %s\n", sqlite3_errmsg(db));
        goto out;
    }

    long commits = 0, rows = 0;
    double start = now_s(), elapsed = 0;
    while (elapsed < seconds) {
        if (exec(db, "BEGIN"))
            goto out;
        for (long i = 0; i < per_txn; i++) {
            sqlite3_bind_int64(insert, 1, 1 + rows % 1000);
            sqlite3_bind_int64(insert, 2, 5000);
            sqlite3_bind_text(insert, 3, "Test purchase", -1, SQLITE_STATIC);
            sqlite3_bind_int64(insert, 4, 1743675300000LL + rows);
            if (sqlite3_step(insert) != SQLITE_DONE) {
                fprintf(stderr, "sqlite_commit: insert: %s\n", sqlite3_errmsg(db));
                goto out;
            }
            sqlite3_reset(insert);
            rows++;
        }
        if (exec(db, "COMMIT"))
            goto out;
        commits++;
        elapsed = now_s() - start;
    }
    printf(
        "{\"rows_per_txn\":%ld,\"commits\":%ld,\"rows\":%ld,\"seconds\":%.3f,"
        "\"commits_per_s\":%.1f,\"rows_per_s\":%.1f}\n",
        per_txn, commits, rows, elapsed, commits / elapsed, rows / elapsed);
    status = 0;
out:
    sqlite3_finalize(insert);
    sqlite3_close(db);
    return status;
}
