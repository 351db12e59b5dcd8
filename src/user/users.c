/* Users: validation, insert, lists (docs/api.md "User Service"). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "create.h"
#include "field.h"
#include "rows.h"
#include "service.h"
#include "user_service.h"
#include "util.h"

#define USER_COLUMNS "id, name, email, created_at"

const char *const user_fields[] = {"name", "email"};
const size_t user_field_count = ARRAY_LEN(user_fields);

static int parse_user(json_t *obj, void *item, struct api_error *err)
{
    struct new_user *u = item;

    if (field_reject_unknown(obj, user_fields, ARRAY_LEN(user_fields), err) != 0 ||
        field_string(obj, "name", 1, CONTRACT_NAME_MAX_CHARS, &u->name, err) != 0 ||
        field_email(obj, "email", CONTRACT_EMAIL_MAX_CHARS, &u->email, err) != 0)
        return -1;
    return 0;
}

static int write_user(db *conn, db_stmt *st, struct jsonw *w)
{
    (void)conn;
    jsonw_object_begin(w);
    jsonw_key(w, "id");
    jsonw_int(w, db_col_int64(st, 0));
    jsonw_key(w, "name");
    jsonw_string_len(w, db_col_text(st, 1), db_col_len(st, 1));
    jsonw_key(w, "email");
    jsonw_string_len(w, db_col_text(st, 2), db_col_len(st, 2));
    jsonw_key(w, "created_at");
    jsonw_time(w, db_col_int64(st, 3));
    jsonw_object_end(w);
    return DB_OK;
}

static int insert_user(db *conn, const void *item, struct jsonw *out, int64_t *id,
                       struct api_error *err)
{
    const struct new_user *u = item;
    db_stmt *st = db_prepare(conn,
                             "INSERT INTO users (name, email, created_at) "
                             "VALUES ($1, $2, $3) RETURNING " USER_COLUMNS);
    if (!st)
        return DB_ERROR;
    /* A failed bind is what create_returning's step returns. */
    db_bind_str(st, 1, u->name);
    db_bind_str(st, 2, u->email);
    db_bind_int64(st, 3, util_now_ms());
    int rc = create_returning(conn, st, write_user, out, id, err);
    if (rc == DB_DUPLICATE) /* the only unique key besides id is the email */
        api_error_set(err, 409, "conflict", "email", "a user with this email already exists");
    return rc;
}

const struct create_spec user_create = {
    .item_size = sizeof(struct new_user),
    .parse = parse_user,
    .insert = insert_user,
    .event_type = CONTRACT_USER_CREATED,
    .location_prefix = "/system-api/users/",
};

static const char *const user_columns[] = {"id", "name", "email", "created_at", NULL};
static const struct listq_filter user_filters[] = {
    {.name = "email", .kind = LISTQ_TEXT},
    {.name = "name", .kind = LISTQ_TEXT},
};

/* "50%_off" -> "%50\%\_off%", lower-cased (ASCII, as SQL lower() is). */
static char *substring_pattern(const char *text)
{
    size_t n = strlen(text), j = 0;
    char *p = xmalloc(2 * n + 3);
    p[j++] = '%';
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (c == '%' || c == '_' || c == '\\')
            p[j++] = '\\';
        p[j++] = (char)tolower((unsigned char)c);
    }
    p[j++] = '%';
    p[j] = '\0';
    return p;
}

static const char *const user_filter_sql[] = {
    "lower(email) = lower($%d)",
    "lower(name) LIKE $%d ESCAPE '\\'",
};

/* The name filter binds a LIKE pattern; the email filter its text. */
static char *user_filter_value(size_t filter, const char *text)
{
    return filter == 1 ? substring_pattern(text) : NULL;
}

const struct rows_list user_rows = {
    .select = "SELECT " USER_COLUMNS " FROM users",
    .id_expr = "id",
    .columns = user_columns,
    .column_exprs = user_columns,
    .default_order = "id",
    .filters = user_filters,
    .filter_sql = user_filter_sql,
    .filter_count = ARRAY_LEN(user_filters),
    .text_value = user_filter_value,
    .write = write_user,
};
