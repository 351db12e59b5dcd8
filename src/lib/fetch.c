#include "fetch.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* "Authorization: Bearer " and the longest admin token (admin.h). */
#define AUTH_HEADER_MAX (32 + 1024)

/* libcurl is loaded the first time it is needed, not linked: with its TLS
 * and other libraries it adds about 8 MiB of mapped pages to a process,
 * which a service that never rebuilds would carry for nothing
 * (docs/performance.md, "Idle memory"). The soname is the one Debian's
 * libcurl4 ships; the header checks every entry point's type. */
#define CURL_SONAME "libcurl.so.4"

static struct {
    void *handle;
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_global_cleanup) *global_cleanup;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_perform) *easy_perform;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_strerror) *easy_strerror;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
} libcurl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[FETCH_ERROR_MAX]; /* why loading failed; "" when it did not */

/* Looks up one entry point; a name libcurl lacks fails the load. (A
 * function pointer converted from dlsym()'s void * is what POSIX
 * promises works for a function's name.) */
#define LOOK_UP(field, name)                                                                       \
    do {                                                                                           \
        libcurl.field = (__typeof__(libcurl.field))dlsym(libcurl.handle, name);                    \
        if (!libcurl.field) {                                                                      \
            snprintf(load_error, sizeof(load_error), "%s has no %s", CURL_SONAME, name);           \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* Runs once (pthread_once). curl_global_init() is thread-safe in the
 * libcurl Debian ships (7.84 and later, CURL_VERSION_THREADSAFE), and
 * pthread_once makes sure it runs once whichever thread asks first. */
static void load_libcurl(void)
{
    libcurl.handle = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!libcurl.handle) {
        snprintf(load_error, sizeof(load_error), "cannot load %s: %s", CURL_SONAME, dlerror());
        return;
    }
    LOOK_UP(global_init, "curl_global_init");
    LOOK_UP(global_cleanup, "curl_global_cleanup");
    LOOK_UP(easy_init, "curl_easy_init");
    LOOK_UP(easy_setopt, "curl_easy_setopt");
    LOOK_UP(easy_perform, "curl_easy_perform");
    LOOK_UP(easy_getinfo, "curl_easy_getinfo");
    LOOK_UP(easy_strerror, "curl_easy_strerror");
    LOOK_UP(easy_cleanup, "curl_easy_cleanup");
    LOOK_UP(slist_append, "curl_slist_append");
    LOOK_UP(slist_free_all, "curl_slist_free_all");
    if (libcurl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(load_error, sizeof(load_error), "cannot initialise %s", CURL_SONAME);
        goto fail;
    }
    return;
fail:
    dlclose(libcurl.handle);
    memset(&libcurl, 0, sizeof(libcurl));
}

/* 0 when libcurl is usable; else -1 with the reason in err. */
static int libcurl_ready(char *err, size_t errlen)
{
    pthread_once(&load_once, load_libcurl);
    if (libcurl.handle)
        return 0;
    if (err)
        snprintf(err, errlen, "%s", load_error);
    return -1;
}

int fetch_global_init(char *err, size_t errlen)
{
    return libcurl_ready(err, errlen);
}

void fetch_global_cleanup(void)
{
    /* Only after every fetch_get has returned (the process is ending);
     * the library stays mapped: nothing gains from unloading it then. */
    if (libcurl.handle)
        libcurl.global_cleanup();
}

struct sink {
    struct fetch_answer *a;
    size_t cap;
    int too_large;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;

    if (s->a->len + n > (size_t)FETCH_BODY_MAX) {
        s->too_large = 1;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (s->a->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 16384;
        while (cap < s->a->len + n + 1)
            cap *= 2;
        s->a->body = xrealloc(s->a->body, cap);
        s->cap = cap;
    }
    memcpy(s->a->body + s->a->len, ptr, n);
    s->a->len += n;
    s->a->body[s->a->len] = '\0';
    return n;
}

/* libcurl calls it often while a transfer waits: non-zero aborts. */
static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const atomic_int *cancel = clientp;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return cancel && atomic_load(cancel) ? 1 : 0;
}

int fetch_get(const char *url, const char *bearer, const atomic_int *cancel,
              struct fetch_answer *out, char *err, size_t errlen)
{
    char auth[AUTH_HEADER_MAX];
    struct curl_slist *headers = NULL;
    struct sink sink = {.a = out};
    CURLcode rc;
    int result = -1;

    memset(out, 0, sizeof(*out));
    if (libcurl_ready(err, errlen) != 0)
        return -1;
    CURL *h = libcurl.easy_init();
    if (!h) {
        snprintf(err, errlen, "cannot start an HTTP client");
        return -1;
    }
    headers = libcurl.slist_append(headers, "Accept: application/json");
    if (bearer) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
        headers = libcurl.slist_append(headers, auth);
    }
    /* Called through a pointer, curl_easy_setopt's value types are not
     * checked by curl's macros: each value is of the type its option
     * documents (long, a pointer, a callback of the option's signature). */
    libcurl.easy_setopt(h, CURLOPT_URL, url);
    libcurl.easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    libcurl.easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    libcurl.easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    libcurl.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    libcurl.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    libcurl.easy_setopt(h, CURLOPT_XFERINFODATA, (void *)cancel);
    libcurl.easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)FETCH_CONNECT_TIMEOUT_S);
    libcurl.easy_setopt(h, CURLOPT_TIMEOUT, (long)FETCH_TIMEOUT_S);
    libcurl.easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    libcurl.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    rc = libcurl.easy_perform(h);
    if (rc == CURLE_OK) {
        libcurl.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
        if (!out->body)
            out->body = xcalloc(1, 1);
        result = 0;
    } else {
        snprintf(err, errlen, "%s",
                 sink.too_large                    ? "the answer is too large"
                 : rc == CURLE_ABORTED_BY_CALLBACK ? "cancelled"
                                                   : libcurl.easy_strerror(rc));
        free(out->body);
        memset(out, 0, sizeof(*out));
    }
    /* auth held the token: not left on the stack. */
    explicit_bzero(auth, sizeof(auth));
    libcurl.slist_free_all(headers);
    libcurl.easy_cleanup(h);
    return result;
}

void fetch_answer_free(struct fetch_answer *a)
{
    free(a->body);
    a->body = NULL;
    a->len = 0;
}

int fetch_page_url(char *out, size_t outlen, const char *base, const char *path, int64_t after,
                   int limit)
{
    size_t blen = strlen(base);

    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return -1;
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    int n = snprintf(out, outlen, "%.*s%s?after=%lld&limit=%d", (int)blen, base, path,
                     (long long)after, limit);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
