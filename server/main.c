/* convd: the HTTP daemon. Loads the configuration, starts the worker pool and libmicrohttpd,
 * then waits for SIGTERM/SIGINT and drains: stop taking work, let running jobs finish within
 * --drain-timeout (then cancel them), let every stream send its terminal event, exit 0.
 * A second signal during the drain exits at once. */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void drain(const sigset_t *set, int sig) {
    char extra[64];
    snprintf(extra, sizeof extra, "\"signal\":%d,\"jobs\":%d", sig, cv_jobs_active());
    cv_log_msg("info", "draining", extra);
    /* Keep listening while draining: load balancers see /readyz answer 503 and new work is
     * refused with 503 shutting_down, rather than connections being refused outright. */
    atomic_store(&cv_srv.draining, true);
    wait_until(set, cv_now_ms() + cv_srv.cfg.drain_timeout * 1000.0, no_active_jobs);
    if (!no_active_jobs()) {
        cv_log_msg("warn", "drain timeout: cancelling running jobs", NULL);
        cv_jobs_cancel_all();
        wait_until(set, cv_now_ms() + 10000.0, no_active_jobs);
    }
    /* Streams now hold only terminal events to flush; give slow readers a moment. */
    wait_until(set, cv_now_ms() + 5000.0, no_open_streams);
    MHD_socket listen_fd = MHD_quiesce_daemon(cv_srv.daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    MHD_stop_daemon(cv_srv.daemon);
    cv_pool_free(cv_srv.pool);
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
    cv_jobs_set_history(cfg->job_history);
    cv_kreg_init();
    if (cv_pool_new(cfg->workers, cfg->threads, cfg->queue, &cv_srv.pool) != CV_OK) {
        cv_log_msg("error", "cannot start the worker pool", NULL);
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
             "\"max_body\":%lld,\"max_elements\":%lld,\"max_steps\":%d",
             port, CV_VERSION, cfg->workers, cfg->threads, cfg->queue, (long long)cfg->max_body,
             (long long)cfg->max_elements, (int)cfg->max_steps);
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
