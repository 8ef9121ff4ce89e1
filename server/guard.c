/* Connection guard: admission limits and request deadlines that libmicrohttpd 0.9.75 lacks.
 *
 * - Deadlines. MHD's connection timeout is an idle timeout, so a client sending a header byte a
 *   second holds its connection (and thread) forever. Here every connection has a deadline
 *   while it has not handed over a whole request: --header-timeout for the headers, plus the
 *   body at --min-rate bytes a second. A reaper thread answers a connection past its deadline
 *   with 408 (plain HTTP; TLS connections are just shut down) and shuts its socket down, which
 *   MHD then sees as the client's end. Once a request is complete, no deadline applies (a
 *   long /corr2d or a stream is not the client's fault); after its reply, the next request on
 *   a kept-alive connection gets a fresh one.
 * - Admission. MHD's own limits close surplus sockets with no reply. Instead its hard limit is
 *   --max-connections plus a reserve, and the guard counts connections in total and per
 *   client address (loopback exempt: that is a proxy in front, or a local test): one past
 * --max-connections or --max-connections-per-ip is admitted "over" with a short deadline, its
 * probes (/livez, /healthz, /readyz) are answered and anything else gets 503 too_many_connections.
 * So the probes keep working under a flood of slow clients, and a client over its share hears why.
 *
 * Locking: one mutex guards the list of connections and every field of its entries. */
#include <arpa/inet.h>
#include <malloc.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* Seconds a connection admitted over a limit has to send its request headers. */
#define OVER_GRACE_S 2.0

/* How often the reaper looks for connections past their deadline. */
#define REAP_INTERVAL_MS 100

/* Memory handed back after a crowd of connections leaves: each connection's buffers (MHD's
 * 32 KiB pool and ours) come from the arena of the thread that served it, and glibc keeps freed
 * arena memory: after 10,000 connections closed, RSS stayed at 351 MB (docs/testing.md). When
 * the count falls below a quarter of a peak of at least TRIM_PEAK connections, the reaper calls
 * malloc_trim, which returns the free pages of every arena (measured: back to tens of MB). */
#define TRIM_PEAK 256

enum guard_phase {
    GUARD_PHASE_WAITING = 0, /* reading a request: the deadline applies */
    GUARD_PHASE_SERVING = 1, /* the whole request is in: no deadline */
    GUARD_PHASE_REAPED = 2,  /* shut down by the reaper */
};

struct cv_guard_conn {
    struct cv_guard_conn *prev, *next;
    int fd;
    unsigned char ip[16];
    int ip_len;
    enum guard_phase phase;
    double deadline_ms;
    bool over;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct cv_guard_conn *head;
static int total;
static bool tls;
static pthread_t reaper;
static bool reaper_started;

int cv_guard_hard_limit(const struct cv_config *cfg) {
    int reserve = cfg->max_connections / 8 > 16 ? cfg->max_connections / 8 : 16;
    return cfg->max_connections + reserve;
}

static void ip_of(struct MHD_Connection *conn, struct cv_guard_conn *g) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    g->ip_len = 0;
    if (info == NULL || info->client_addr == NULL)
        return;
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET) {
        memcpy(g->ip, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        g->ip_len = 4;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(g->ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        g->ip_len = 16;
    }
}

static bool is_loopback(const struct cv_guard_conn *g) {
    static const unsigned char v6_loop[16] = {[15] = 1};
    static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (g->ip_len == 4)
        return g->ip[0] == 127;
    if (g->ip_len == 16)
        return memcmp(g->ip, v6_loop, 16) == 0 ||
               (memcmp(g->ip, v4_mapped, 12) == 0 && g->ip[12] == 127);
    return false;
}

static double header_deadline(double now, bool over) {
    return now + 1000.0 * (over ? OVER_GRACE_S : cv_srv.cfg.header_timeout);
}

void cv_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode code) {
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct cv_guard_conn *g = calloc(1, sizeof *g);
        *socket_context = g;
        if (g == NULL)
            return; /* unguarded: MHD's own limits still apply */
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        g->fd = info != NULL ? info->connect_fd : -1;
        ip_of(conn, g);
        pthread_mutex_lock(&mu);
        int same_ip = 0;
        for (struct cv_guard_conn *c = head; c != NULL; c = c->next)
            same_ip += c->ip_len == g->ip_len && memcmp(c->ip, g->ip, (size_t)g->ip_len) == 0;
        total++;
        /* Loopback is exempt from the per-address cap: there it is the proxy in front (all
         * clients share its address) or a local load test, not one client. */
        g->over = total > cv_srv.cfg.max_connections ||
                  (!is_loopback(g) && same_ip >= cv_srv.cfg.max_connections_per_ip);
        g->phase = GUARD_PHASE_WAITING;
        g->deadline_ms = header_deadline(cv_now_ms(), g->over);
        g->next = head;
        if (head != NULL)
            head->prev = g;
        head = g;
        pthread_mutex_unlock(&mu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct cv_guard_conn *g = *socket_context;
        *socket_context = NULL;
        if (g == NULL)
            return;
        pthread_mutex_lock(&mu);
        if (g->prev != NULL)
            g->prev->next = g->next;
        else
            head = g->next;
        if (g->next != NULL)
            g->next->prev = g->prev;
        total--;
        pthread_mutex_unlock(&mu);
        free(g);
    }
}

static struct cv_guard_conn *guard_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

bool cv_guard_request_begin(struct MHD_Connection *conn, int64_t body_bytes) {
    struct cv_guard_conn *g = guard_of(conn);
    if (g == NULL)
        return false;
    pthread_mutex_lock(&mu);
    /* The headers are in; the body gets time in proportion to its size at --min-rate. */
    if (g->phase == GUARD_PHASE_WAITING)
        g->deadline_ms = cv_now_ms() + 1000.0 * (cv_srv.cfg.header_timeout +
                                                 (double)body_bytes / (double)cv_srv.cfg.min_rate);
    bool over = g->over;
    pthread_mutex_unlock(&mu);
    return over;
}

void cv_guard_request_ready(struct MHD_Connection *conn) {
    struct cv_guard_conn *g = guard_of(conn);
    if (g == NULL)
        return;
    pthread_mutex_lock(&mu);
    if (g->phase == GUARD_PHASE_WAITING)
        g->phase = GUARD_PHASE_SERVING;
    pthread_mutex_unlock(&mu);
}

void cv_guard_request_done(struct MHD_Connection *conn) {
    struct cv_guard_conn *g = guard_of(conn);
    if (g == NULL)
        return;
    pthread_mutex_lock(&mu);
    if (g->phase == GUARD_PHASE_SERVING) {
        /* A kept-alive connection may wait up to the idle timeout for its next request. */
        g->phase = GUARD_PHASE_WAITING;
        g->deadline_ms =
            cv_now_ms() + 1000.0 * (cv_srv.cfg.idle_timeout + cv_srv.cfg.header_timeout);
    }
    pthread_mutex_unlock(&mu);
}

#define BODY_408                                                                                   \
    "{\"type\":\"about:blank\",\"title\":\"Request Timeout\",\"status\":408,"                      \
    "\"code\":\"request_timeout\",\"detail\":\"the request did not arrive in time "                \
    "(--header-timeout, --min-rate)\"}"

/* The whole 408 reply, made once by cv_guard_start. */
static char reply_408[512];
static size_t reply_408_len;

/* The reaper's view of the crowd: the peak connection count since the last trim. */
static int trim_peak;

/* Called by the reaper with mu held; true when the arenas should be trimmed now. */
static bool crowd_left(void) {
    if (total > trim_peak)
        trim_peak = total;
    if (trim_peak < TRIM_PEAK || total * 4 > trim_peak)
        return false;
    trim_peak = total;
    return true;
}

static void *reaper_main(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {0, REAP_INTERVAL_MS * 1000000L};
        nanosleep(&ts, NULL);
        double now = cv_now_ms();
        pthread_mutex_lock(&mu);
        for (struct cv_guard_conn *g = head; g != NULL; g = g->next) {
            if (g->phase != GUARD_PHASE_WAITING || now < g->deadline_ms || g->fd < 0)
                continue;
            /* MHD has written nothing on a connection still reading its request, so the reply
             * cannot interleave with one of its own; the fd stays MHD's to close (it does,
             * after the CLOSED notification that takes mu). */
            if (!tls) {
                ssize_t n = send(g->fd, reply_408, reply_408_len, MSG_DONTWAIT | MSG_NOSIGNAL);
                (void)n;
            }
            shutdown(g->fd, SHUT_RDWR);
            g->phase = GUARD_PHASE_REAPED;
        }
        bool trim = crowd_left();
        pthread_mutex_unlock(&mu);
        if (trim)
            malloc_trim(0);
    }
    return NULL;
}

int cv_guard_start(bool use_tls) {
    tls = use_tls;
    int n = snprintf(reply_408, sizeof reply_408,
                     "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/problem+json\r\n"
                     "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     sizeof BODY_408 - 1, BODY_408);
    reply_408_len = n > 0 && (size_t)n < sizeof reply_408 ? (size_t)n : 0;
    if (reaper_started)
        return CV_OK;
    if (pthread_create(&reaper, NULL, reaper_main, NULL) != 0)
        return CV_ENOMEM;
    pthread_detach(reaper);
    reaper_started = true;
    return CV_OK;
}
