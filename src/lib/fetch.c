#include "fetch.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* "Authorization: Bearer " and the longest admin token (admin.h). */
#define AUTH_HEADER_MAX (32 + 1024)

int fetch_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void fetch_global_cleanup(void)
{
    curl_global_cleanup();
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
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "cannot start an HTTP client");
        return -1;
    }
    headers = curl_slist_append(headers, "Accept: application/json");
    if (bearer) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
        headers = curl_slist_append(headers, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)cancel);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)FETCH_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)FETCH_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
        if (!out->body)
            out->body = xcalloc(1, 1);
        result = 0;
    } else {
        snprintf(err, errlen, "%s",
                 sink.too_large                    ? "the answer is too large"
                 : rc == CURLE_ABORTED_BY_CALLBACK ? "cancelled"
                                                   : curl_easy_strerror(rc));
        free(out->body);
        memset(out, 0, sizeof(*out));
    }
    /* auth held the token: not left on the stack. */
    explicit_bzero(auth, sizeof(auth));
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
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
