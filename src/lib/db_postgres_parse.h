/*
 * db_postgres_parse: the text the PostgreSQL backend reads itself, apart
 * from the server: its database URLs (our options taken out, the rest
 * left to libpq) and the SQL it prepares (the $n parameters it uses).
 * Plain string handling with no libpq in it; only db_postgres.c includes
 * this header.
 */
#ifndef LIB_DB_POSTGRES_PARSE_H
#define LIB_DB_POSTGRES_PARSE_H

#include <stddef.h>

/* PostgreSQL's identifier limit (NAMEDATALEN - 1). */
#define PG_SCHEMA_NAME_MAX 63
/* Parameters a statement may have; PostgreSQL's own limit is 65535. */
#define PG_MAX_PARAMS 65535

/* A database URL taken apart. Filled by pg_parse_url; conninfo and
 * password are owned by it and freed by pg_url_free. */
struct pg_url {
    char *conninfo; /* the URL for libpq, without our options */
    char schema[PG_SCHEMA_NAME_MAX + 1];
    long lock_timeout_ms;
    char *password; /* as written in the URL, to keep out of messages */
};

/* Fills u from url: schema=NAME and busy_timeout=MS are ours, the rest of
 * the query goes to libpq, with a connect_timeout added unless the URL
 * sets one. Returns DB_OK, or DB_ERROR with err filled and nothing in u
 * to free. */
int pg_parse_url(const char *url, struct pg_url *u, char *err, size_t errlen);
void pg_url_free(struct pg_url *u);

/* Masks password wherever msg quotes it, in place (the same length, so
 * any buffer fits). Does nothing for a NULL or empty password. */
void pg_scrub(char *msg, const char *password);

/* Reads SQL as PostgreSQL's lexer would, as far as matters here: sets
 * *max_param to the highest $n outside literals, quoted names and
 * comments (PG_MAX_PARAMS + 1 for any higher), and *has_token to whether
 * there is any token at all (blank and comment-only text is not a
 * statement). */
void pg_scan_sql(const char *sql, int *max_param, int *has_token);

#endif
