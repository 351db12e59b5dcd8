/*
 * hello: the raw HTTP limit of this machine for `make bench`.
 *
 *   bench/hello PORT
 *
 * A libmicrohttpd server configured like the services (internal polling
 * thread, epoll) but with a thread pool of 2 and no work at all: GET and
 * POST of any path answer a small fixed JSON object (the size of an order),
 * 200 for GET, 201 for POST after reading the body. Listens on 127.0.0.1
 * only; runs until SIGTERM or SIGINT.
 *
 * The answer is queued on a later call of the access handler, not the first
 * (headers only) one: MHD 0.9.75 closes the connection otherwise
 * (see on_access in src/lib/http.c), and keep-alive is what the services get too.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_SIZE 2
#define CONNECTION_LIMIT 1000
#define IDLE_TIMEOUT_S 30

static const char answer[] =
    "{\"id\":1,\"user_id\":1,\"amount\":50.00,\"description\":\"hello\","
    "\"created_at\":\"2025-04-03T10:15:00.000Z\"}";

static struct MHD_Response *response; /* shared, reference counted by MHD */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    static int first_call_marker;

    (void)cls;
    (void)url;
    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = &first_call_marker;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0; /* the body is read and dropped */
        return MHD_YES;
    }
    unsigned int status = strcmp(method, "POST") == 0 ? MHD_HTTP_CREATED : MHD_HTTP_OK;
    return MHD_queue_response(conn, status, response);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "hello: bad port %s\n", argv[1]);
        return 2;
    }

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL); /* inherited by MHD threads */

    response =
        MHD_create_response_from_buffer(sizeof(answer) - 1, (void *)answer, MHD_RESPMEM_PERSISTENT);
    if (response == NULL || MHD_add_response_header(response, "Content-Type",
                                                    "application/json; charset=utf-8") != MHD_YES) {
        fprintf(stderr, "hello: cannot build the answer\n");
        return 1;
    }

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
        NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)POOL_SIZE, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S,
        MHD_OPTION_END);
    if (daemon == NULL) {
        fprintf(stderr, "hello: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }

    int sig = 0;
    sigwait(&stop_signals, &sig);
    MHD_stop_daemon(daemon);
    MHD_destroy_response(response);
    return 0;
}
