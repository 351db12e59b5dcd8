/*
 * The dashboard's files (README.md, "The dashboard"). Only the files of
 * the table below are served, each on a route of its own, so no request
 * path ever becomes a file path: "../" and its encodings match no route
 * and are 404 like any unknown path. Files are read at each request (a
 * few kilobytes), so editing them needs no restart.
 *
 * The folder: --ui-dir when given; otherwise the first of these, relative
 * to the folder of the running binary, that holds index.html:
 *   ../share/cqrs-c/ui   installed (make install: BINDIR/../share/cqrs-c)
 *   ../../../share/ui    the source tree (build/<kind>/bin/../../../share)
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "invoice_service.h"
#include "log.h"
#include "util.h"

#define UI_FILE_MAX (1024 * 1024)
#define UI_INDEX "index.html"

struct ui_file {
    const char *name;
    const char *type;
};

const struct ui_file ui_index = {UI_INDEX, "text/html; charset=utf-8"};
const struct ui_file ui_script = {"app.js", "text/javascript; charset=utf-8"};
const struct ui_file ui_style = {"style.css", "text/css; charset=utf-8"};

static char ui_dir[PATH_MAX]; /* "" when no folder was found */

static int has_index(const char *dir)
{
    char path[PATH_MAX + sizeof(UI_INDEX) + 1];
    snprintf(path, sizeof(path), "%s/%s", dir, UI_INDEX);
    return access(path, R_OK) == 0;
}

int ui_set_dir(const char *flag_dir)
{
    static const char *const candidates[] = {"../share/cqrs-c/ui", "../../../share/ui"};
    char exe[PATH_MAX], dir[PATH_MAX + 32];
    ssize_t n;

    ui_dir[0] = '\0';
    if (flag_dir) {
        if (!has_index(flag_dir)) {
            log_error(NULL, "--ui-dir '%s' has no readable %s", flag_dir, UI_INDEX);
            return -1;
        }
        util_strlcpy(ui_dir, flag_dir, sizeof(ui_dir));
        return 0;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        for (size_t i = 0; i < ARRAY_LEN(candidates); i++) {
            snprintf(dir, sizeof(dir), "%s/%s", exe, candidates[i]);
            char *real = realpath(dir, NULL);
            if (real && has_index(real)) {
                util_strlcpy(ui_dir, real, sizeof(ui_dir));
                free(real);
                log_info(NULL, "dashboard files in %s", ui_dir);
                return 0;
            }
            free(real);
        }
    }
    log_warn(NULL, "no dashboard files found next to the binary; give --ui-dir to serve them");
    return 0;
}

static void not_found(http_request *req, const char *why)
{
    struct api_error err;
    api_error_set(&err, 404, "not_found", NULL, "%s", why);
    http_reply_error(req, &err);
}

void ui_handle_file(http_request *req, void *app)
{
    const ui_handle_file_data *f = http_route_data(req);
    char path[PATH_MAX + 64];
    char *body = NULL;
    size_t len = 0;
    FILE *in = NULL;
    (void)app;

    if (!ui_dir[0]) {
        not_found(req, "the dashboard's files are not installed (see --ui-dir)");
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", ui_dir, f->name);
    in = fopen(path, "rb");
    if (!in) {
        log_warn(http_request_id(req), "dashboard: cannot open %s: %s", path, strerror(errno));
        not_found(req, "this dashboard file is missing");
        goto out;
    }
    body = xmalloc(UI_FILE_MAX);
    len = fread(body, 1, UI_FILE_MAX, in);
    if (ferror(in) || !feof(in)) {
        log_warn(http_request_id(req), "dashboard: cannot read %s (or larger than %d bytes)", path,
                 UI_FILE_MAX);
        free(body);
        body = NULL;
        not_found(req, "this dashboard file cannot be read");
        goto out;
    }
    http_add_header(req, "Cache-Control", "no-cache");
    http_reply_data(req, 200, f->type, body, len);
    body = NULL;
out:
    if (in)
        fclose(in);
}

void ui_handle_redirect(http_request *req, void *app)
{
    (void)app;
    http_add_header(req, "Location", "/invoice-service/ui/");
    http_reply_data(req, 308, NULL, NULL, 0);
}
