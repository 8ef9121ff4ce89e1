/* convd: the HTTP daemon. Loads the configuration, starts the worker pool and libmicrohttpd,
 * then waits for SIGTERM/SIGINT and drains: stop taking work (a fleet replica hands the jobs it
 * claimed but has not started back to the queue at once), let running jobs finish within
 * --drain-timeout (then checkpoint and release async jobs, cancel the rest), let every stream
 * send its terminal event, exit 0.
 * A second signal during the drain exits at once. */
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* Waits up to ms for one of the blocked signals. Returns the signal, or 0 on timeout. */
static int wait_signal(const sigset_t *set, int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

/* Waits until done() or the deadline; a signal meanwhile exits at once. */
static void wait_until(const sigset_t *set, double deadline_ms, bool (*done)(void)) {
    while (!done() && cv_now_ms() < deadline_ms) {
        if (wait_signal(set, 50) != 0) {
            cv_log_msg("warn", "second signal: exiting without draining", NULL);
            _exit(1);
        }
    }
}

static bool no_active_jobs(void) {
    return cv_jobs_active() == 0;
}

static bool no_open_streams(void) {
    return atomic_load(&cv_srv.open_streams) == 0;
}

/* Creates the directories above a sqlite database file (mode 0700: jobs are private). */
static bool make_parent_dirs(const char *path) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return true;
    *slash = '\0';
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return false;
        *p = '/';
    }
    return mkdir(dir, 0700) == 0 || errno == EEXIST;
}

/* The store URL fit for a log line: a password in it (postgres://user:PASSWORD@host/db, or
 * ?password=...) becomes "***". */
static void url_redacted(const char *url, char *out, size_t cap) {
    snprintf(out, cap, "%s", url);
    char *scheme = strstr(out, "://");
    if (scheme != NULL) {
        char *user = scheme + 3;
        char *at = strchr(user, '@');
        char *slash = strchr(user, '/');
        char *colon = strchr(user, ':');
        if (at != NULL && (slash == NULL || at < slash) && colon != NULL && colon < at) {
            char rest[600];
            snprintf(rest, sizeof rest, "%s", at);
            snprintf(colon, cap - (size_t)(colon - out), ":***%s", rest);
        }
    }
    char *pw = strstr(out, "password=");
    if (pw != NULL) {
        char *end = strchr(pw, '&');
        char rest[600];
        snprintf(rest, sizeof rest, "%s", end ? end : "");
        snprintf(pw, cap - (size_t)(pw - out), "password=***%s", rest);
    }
}

/* Opens --store; logs and returns false when convd must not start (locked, newer schema,
 * corrupt, unreachable). */
static bool open_store(const struct cv_config *cfg) {
    if (strncmp(cfg->store, "sqlite:", 7) == 0 && !make_parent_dirs(cfg->store + 7)) {
        fprintf(stderr, "convd: cannot create the directory of %s: %s\n", cfg->store + 7,
                strerror(errno));
        return false;
    }
    struct cv_store_options o = cv_store_options_default();
    o.sync = strcmp(cfg->store_sync, "full") == 0 ? CV_STORE_SYNC_FULL : CV_STORE_SYNC_NORMAL;
    o.memory_max_bytes = cfg->store_memory_max;
    /* postgres: the password may live in a file (a mounted secret) rather than in the URL */
    o.password_file = getenv("CONVD_STORE_PASSWORD_FILE");
    int st = cv_store_open(cfg->store, &o, &cv_srv.store);
    if (st != CV_STORE_OK) {
        /* The message is for a human at a terminal as much as for the log. */
        char shown[600];
        url_redacted(cfg->store, shown, sizeof shown);
        fprintf(stderr, "convd: cannot open the store %s: %s: %s\n", shown, cv_store_status_str(st),
                cv_store_errmsg());
        char extra[800];
        size_t n = (size_t)snprintf(extra, sizeof extra, "\"reason\":\"");
        n = cv_log_json_escape(extra, sizeof extra, n, cv_store_errmsg());
        snprintf(extra + n, sizeof extra - n, "\"");
        cv_log_msg("error", "cannot open the store", extra);
        return false;
    }
    atomic_store(&cv_srv.store_ok, true);
    /* Our replica id in leases: host, pid and a random part (pids are reused). */
    char host[32] = "convd";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    unsigned r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (unsigned)getpid();
    snprintf(cv_srv.owner, sizeof cv_srv.owner, "%s:%ld:%08x", host, (long)getpid(), r);
    /* One process per sqlite file (its lock says so) and memory is ours alone: every job the
     * store shows running was left by a process that is gone. Expire their leases now, so
     * they resume at once instead of after --lease. */
    if (strcmp(cv_store_backend(cv_srv.store), "postgres") != 0) {
        int64_t n = 0;
        cv_store_job_orphan(cv_srv.store, NULL, &n);
        if (n > 0) {
            char extra[64];
            snprintf(extra, sizeof extra, "\"jobs\":%lld", (long long)n);
            cv_log_msg("info", "resuming jobs of a previous run", extra);
        }
    }
    return true;
}

/* Seconds past --drain-timeout that cancelled jobs and their streams get to end before the
 * process exits regardless (the hard deadline: Kubernetes' grace period is sized from the
 * drain timeout, and a SIGKILL loses the log lines). Cancelled corr2d and training runs stop
 * within a row block or a step, so this is ample. */
#define DRAIN_HARD_GRACE_S 1.5

/* The hard deadline: a thread that ends the process when the drain overruns, whatever blocks
 * it (a reader that never reads, a handler stuck in a library call). */
static void *drain_watchdog(void *arg) {
    const double deadline_ms = *(const double *)arg;
    for (;;) {
        double left = deadline_ms - cv_now_ms();
        if (left <= 0)
            break;
        struct timespec ts = {(time_t)(left / 1000.0), (long)(fmod(left, 1000.0) * 1e6)};
        nanosleep(&ts, NULL);
    }
    cv_log_msg("warn", "drain deadline passed: exiting now", NULL);
    _exit(0);
    return NULL;
}

static void drain(const sigset_t *set, int sig) {
    char extra[64];
    snprintf(extra, sizeof extra, "\"signal\":%d,\"jobs\":%d", sig, cv_jobs_active());
    cv_log_msg("info", "draining", extra);
    const double t0 = cv_now_ms();
    const double soft_ms = t0 + cv_srv.cfg.drain_timeout * 1000.0;
    static double hard_ms;
    hard_ms = soft_ms + DRAIN_HARD_GRACE_S * 1000.0;
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, drain_watchdog, &hard_ms) == 0)
        pthread_detach(watchdog);
    /* Keep listening while draining: load balancers see /readyz answer 503 and new work is
     * refused with 503 shutting_down, rather than connections being refused outright. */
    atomic_store(&cv_srv.draining, true);
    /* A fleet's other replicas can start the claimed jobs that wait for a worker here right
     * now. With one process (sqlite, memory) they may still run here within the drain. */
    if (strcmp(cv_store_backend(cv_srv.store), "postgres") == 0)
        cv_jobs_release_waiting();
    wait_until(set, soft_ms, no_active_jobs);
    if (!no_active_jobs()) {
        cv_log_msg("warn",
                   "drain timeout: checkpointing async jobs for the next start, cancelling "
                   "/train streams and corr2d jobs",
                   NULL);
        cv_jobs_stop_all();
        wait_until(set, soft_ms + 0.5 * DRAIN_HARD_GRACE_S * 1000.0, no_active_jobs);
    }
    /* Streams now hold only terminal events to flush; give slow readers what is left. */
    wait_until(set, hard_ms - 250.0, no_open_streams);
    MHD_socket listen_fd = MHD_quiesce_daemon(cv_srv.daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    MHD_stop_daemon(cv_srv.daemon);
    cv_pool_free(cv_srv.pool);
    cv_writer_stop(); /* the last batch is committed */
    cv_store_close(cv_srv.store);
    cv_log_msg("info", "stopped", NULL);
}

int main(int argc, char **argv) {
    enum cv_config_outcome outcome;
    if (cv_config_load(&cv_srv.cfg, argc, argv, &outcome) != CV_OK)
        return 2;
    if (outcome == CV_CONFIG_OUTCOME_EXIT)
        return 0;
    if (outcome == CV_CONFIG_OUTCOME_PROBE)
        return cv_probe_run(cv_srv.cfg.probe_url);
    cv_log_init(cv_srv.cfg.log_format);
    cv_api_init(); /* before any thread: seeds jansson's hash function once */
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals before any thread starts, so only sigwait sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    const struct cv_config *cfg = &cv_srv.cfg;
    if (!open_store(cfg))
        return 1;
    cv_kreg_init();
    if (cv_pool_new(cfg->workers, cfg->threads, cfg->queue, &cv_srv.pool) != CV_OK) {
        cv_log_msg("error", "cannot start the worker pool", NULL);
        return 1;
    }
    if (cv_writer_start() != CV_OK) {
        cv_log_msg("error", "cannot start the store's writer", NULL);
        return 1;
    }
    int port = 0;
    if (cv_http_start(&cv_srv, &port) != CV_OK) {
        cv_pool_free(cv_srv.pool);
        return 1;
    }
    char extra[512];
    size_t n = (size_t)snprintf(extra, sizeof extra, "\"listen\":\"");
    n = cv_log_json_escape(extra, sizeof extra, n, cfg->listen);
    snprintf(extra + n, sizeof extra - n,
             "\",\"port\":%d,\"version\":\"%s\",\"workers\":%d,\"threads\":%d,\"queue\":%d,"
             "\"max_body\":%lld,\"max_elements\":%lld,\"max_steps\":%d,\"store\":\"%s\"",
             port, CV_VERSION, cfg->workers, cfg->threads, cfg->queue, (long long)cfg->max_body,
             (long long)cfg->max_elements, (int)cfg->max_steps, cv_store_backend(cv_srv.store));
    cv_log_msg("info", "listening", extra);
    /* For the person who started it: where to point a browser or curl. */
    const char *host = cfg->listen;
    char shown[320];
    const char *colon = strrchr(host, ':');
    size_t hl = colon != NULL ? (size_t)(colon - host) : 0;
    if (hl == 0 || (hl == 7 && strncmp(host, "0.0.0.0", 7) == 0))
        snprintf(shown, sizeof shown, "127.0.0.1");
    else
        snprintf(shown, sizeof shown, "%.*s", (int)hl, host);
    printf("convd serving on http%s://%s:%d/\n", cfg->tls_cert[0] ? "s" : "", shown, port);
    fflush(stdout);

    int sig;
    while (sigwait(&set, &sig) != 0)
        ;
    drain(&set, sig);
    return 0;
}
