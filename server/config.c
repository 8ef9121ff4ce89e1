/* Configuration: defaults, then CONVD_* environment variables, then command-line flags.
 * One table lists every option once; --help is printed from it. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

enum opt_type {
    OPT_TYPE_STRING, /* char[300] */
    OPT_TYPE_INT,    /* int, >= 1 */
    OPT_TYPE_INT32,  /* int32_t, >= 1 */
    OPT_TYPE_INT64,  /* int64_t, >= 1 */
    OPT_TYPE_DOUBLE, /* double, >= 0 */
    OPT_TYPE_LOGFMT, /* "json" | "text" */
};

struct opt {
    const char *flag;
    const char *env;
    enum opt_type type;
    size_t offset;
    const char *help;
};

#define OFF(field) offsetof(struct cv_config, field)

static const struct opt opts[] = {
    {"--listen", "CONVD_LISTEN", OPT_TYPE_STRING, OFF(listen),
     "HOST:PORT to listen on, or PORT for 127.0.0.1:PORT (default 127.0.0.1:8080; port 0 "
     "picks a free one)"},
    {"--workers", "CONVD_WORKERS", OPT_TYPE_INT, OFF(workers),
     "worker threads running compute jobs (default: cores / --threads)"},
    {"--threads", "CONVD_THREADS", OPT_TYPE_INT, OFF(threads),
     "OpenMP threads per job (default 1); workers x threads must not exceed the cores"},
    {"--queue", "CONVD_QUEUE", OPT_TYPE_INT, OFF(queue),
     "jobs that may wait for a worker before requests get 503 (default 64)"},
    {"--max-body", "CONVD_MAX_BODY", OPT_TYPE_INT64, OFF(max_body),
     "largest request body in bytes (default 67108864)"},
    {"--max-elements", "CONVD_MAX_ELEMENTS", OPT_TYPE_INT64, OFF(max_elements),
     "largest tensor in elements (default 16777216)"},
    {"--max-steps", "CONVD_MAX_STEPS", OPT_TYPE_INT32, OFF(max_steps),
     "most training steps one request may ask for (default 100000)"},
    {"--max-macs", "CONVD_MAX_MACS", OPT_TYPE_INT64, OFF(max_macs),
     "most multiply-adds of one /corr2d, or of one training step (default 4000000000: a few "
     "seconds on the slowest kernels)"},
    {"--memory-budget", "CONVD_MEMORY_BUDGET", OPT_TYPE_INT64, OFF(memory_budget),
     "bytes that request bodies and replies may hold at once before requests get 503 "
     "(default: 4 x --max-body, at least 268435456)"},
    {"--job-history", "CONVD_JOB_HISTORY", OPT_TYPE_INT, OFF(job_history),
     "finished jobs kept (default 100)"},
    {"--drain-timeout", "CONVD_DRAIN_TIMEOUT", OPT_TYPE_DOUBLE, OFF(drain_timeout),
     "seconds running jobs get to finish after SIGTERM before they are cancelled (default 25)"},
    {"--heartbeat", "CONVD_HEARTBEAT", OPT_TYPE_DOUBLE, OFF(heartbeat),
     "seconds of quiet after which a stream sends a heartbeat (an SSE comment, or an NDJSON "
     "{\"event\":\"heartbeat\"} line; default 15)"},
    {"--max-connections", "CONVD_MAX_CONNECTIONS", OPT_TYPE_INT, OFF(max_connections),
     "concurrent connections (default 512)"},
    {"--max-connections-per-ip", "CONVD_MAX_CONNECTIONS_PER_IP", OPT_TYPE_INT,
     OFF(max_connections_per_ip),
     "connections one client address may hold before its requests get 503 (default: "
     "--max-connections / 4; loopback, where a proxy connects from, is exempt)"},
    {"--header-timeout", "CONVD_HEADER_TIMEOUT", OPT_TYPE_DOUBLE, OFF(header_timeout),
     "seconds a client has to send its request headers before a 408 (default 10)"},
    {"--min-rate", "CONVD_MIN_RATE", OPT_TYPE_INT64, OFF(min_rate),
     "bytes a second a request body must arrive at, beyond --header-timeout (default 16384)"},
    {"--idle-timeout", "CONVD_IDLE_TIMEOUT", OPT_TYPE_DOUBLE, OFF(idle_timeout),
     "seconds a connection may stay quiet before it is closed (default 30; streams are exempt)"},
    {"--log-format", "CONVD_LOG_FORMAT", OPT_TYPE_LOGFMT, OFF(log_format),
     "json (default) or text"},
    {"--token-file", "CONVD_TOKEN_FILE", OPT_TYPE_STRING, OFF(token_file),
     "file whose first line is the bearer token every route but the probes and /metrics need "
     "(or the token itself in CONVD_TOKEN)"},
    {"--tls-cert", "CONVD_TLS_CERT", OPT_TYPE_STRING, OFF(tls_cert),
     "PEM certificate: serve HTTPS (with --tls-key)"},
    {"--tls-key", "CONVD_TLS_KEY", OPT_TYPE_STRING, OFF(tls_key), "PEM private key for --tls-cert"},
    {"--store", "CONVD_STORE", OPT_TYPE_STRING, OFF(store),
     "where jobs are kept: sqlite:PATH, memory or postgres://... (default "
     "sqlite:convd-data/convd.db)"},
    {"--store-sync", "CONVD_STORE_SYNC", OPT_TYPE_STRING, OFF(store_sync),
     "normal (survives a crash; default) or full (also power loss: fsync every commit)"},
    {"--store-memory-max", "CONVD_STORE_MEMORY_MAX", OPT_TYPE_INT64, OFF(store_memory_max),
     "bytes the memory store may hold (default 268435456); oldest finished jobs go first"},
    {"--checkpoint-every", "CONVD_CHECKPOINT_EVERY", OPT_TYPE_DOUBLE, OFF(checkpoint_every),
     "seconds between checkpoints of a training job (default 1; 0 = none)"},
    {"--max-attempts", "CONVD_MAX_ATTEMPTS", OPT_TYPE_INT, OFF(max_attempts),
     "runs of one job (resumes after crashes included) before it fails (default 3)"},
    {"--job-ttl", "CONVD_JOB_TTL", OPT_TYPE_DOUBLE, OFF(job_ttl),
     "seconds a finished job is kept (default 0 = no age limit; --job-history still applies)"},
    {"--lease", "CONVD_LEASE", OPT_TYPE_DOUBLE, OFF(lease),
     "seconds a running job's lease lasts between renewals (default 5)"},
    {"--tls-priorities", "CONVD_TLS_PRIORITIES", OPT_TYPE_STRING, OFF(tls_priorities),
     "GnuTLS priority string (default: TLS 1.2 and 1.3 only, forward-secret AEAD suites: "
     "ECDHE with AES-GCM or ChaCha20-Poly1305)"},
};

static void print_help(void) {
    printf("usage: convd [options]\n\n"
           "HTTP daemon for 2-D cross-correlation and kernel learning (see API.md).\n"
           "Every option can also be set by its environment variable; flags win.\n\n");
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        printf("  %-18s %-24s %s\n", opts[i].flag, opts[i].env, opts[i].help);
    printf("  %-18s %-24s %s\n", "--help", "", "print this and exit");
    printf("  %-18s %-24s %s\n", "--version", "", "print the version and exit");
    printf("  %-18s %-24s %s\n", "--probe [URL]", "",
           "GET URL (default http://127.0.0.1:8080/healthz); exit 0 on 2xx (health checks)");
}

/* Parses text into the option's field. Returns false (after printing why) on a bad value. */
static bool set_opt(struct cv_config *cfg, const struct opt *o, const char *text, const char *src) {
    char *field = (char *)cfg + o->offset;
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case OPT_TYPE_STRING:
        if (strlen(text) >= sizeof cfg->listen || text[0] == '\0')
            goto bad;
        strcpy(field, text);
        return true;
    case OPT_TYPE_LOGFMT:
        if (strcmp(text, "json") == 0)
            *(enum cv_log_format *)field = CV_LOG_FORMAT_JSON;
        else if (strcmp(text, "text") == 0)
            *(enum cv_log_format *)field = CV_LOG_FORMAT_TEXT;
        else
            goto bad;
        return true;
    case OPT_TYPE_DOUBLE: {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v) || v < 0)
            goto bad;
        *(double *)field = v;
        return true;
    }
    default: {
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end || v < 1)
            goto bad;
        if (o->type == OPT_TYPE_INT64) {
            *(int64_t *)field = v;
        } else if (o->type == OPT_TYPE_INT32) {
            if (v > INT32_MAX)
                goto bad;
            *(int32_t *)field = (int32_t)v;
        } else {
            if (v > INT_MAX)
                goto bad;
            *(int *)field = (int)v;
        }
        return true;
    }
    }
bad:
    fprintf(stderr, "convd: bad value '%s' for %s (from %s); see convd --help\n", text, o->flag,
            src);
    return false;
}

/* The token comes from --token-file (first line, surrounding whitespace dropped) or else
 * from CONVD_TOKEN. Returns false after printing why when the file cannot be read or is empty. */
static bool load_token(struct cv_config *cfg) {
    const char *env = getenv("CONVD_TOKEN");
    if (cfg->token_file[0] == '\0') {
        snprintf(cfg->token, sizeof cfg->token, "%s", env ? env : "");
    } else {
        FILE *f = fopen(cfg->token_file, "r");
        if (f == NULL || fgets(cfg->token, sizeof cfg->token, f) == NULL) {
            fprintf(stderr, "convd: cannot read a token from %s\n", cfg->token_file);
            if (f != NULL)
                fclose(f);
            return false;
        }
        fclose(f);
    }
    char *t = cfg->token;
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
        t[--n] = '\0';
    size_t lead = strspn(t, " \t");
    memmove(t, t + lead, n - lead + 1);
    if (cfg->token_file[0] != '\0' && t[0] == '\0') {
        fprintf(stderr, "convd: the token file %s is empty\n", cfg->token_file);
        return false;
    }
    return true;
}

int cv_config_load(struct cv_config *cfg, int argc, char **argv, enum cv_config_outcome *outcome) {
    *cfg = (struct cv_config){
        .listen = "127.0.0.1:8080",
        .workers = 0, /* derived below */
        .threads = 1,
        .queue = 64,
        .max_body = 64LL << 20,
        .max_elements = 16LL << 20,
        .max_steps = 100000,
        .max_macs = 4000000000LL,
        .memory_budget = 0, /* derived below */
        .job_history = 100,
        .drain_timeout = 25,
        .heartbeat = 15,
        .max_connections = 512,
        .max_connections_per_ip = 0, /* derived below */
        .header_timeout = 10,
        .min_rate = 16384,
        .idle_timeout = 30,
        .log_format = CV_LOG_FORMAT_JSON,
        .store = "sqlite:convd-data/convd.db",
        .store_sync = "normal",
        .store_memory_max = 256LL << 20,
        .checkpoint_every = 1,
        .max_attempts = 3,
        .job_ttl = 0,
        .lease = 5,
        .tls_priorities = CV_TLS_PRIORITIES_DEFAULT,
    };
    *outcome = CV_CONFIG_OUTCOME_RUN;
    const size_t n_opts = sizeof opts / sizeof opts[0];
    for (size_t i = 0; i < n_opts; i++) {
        const char *v = getenv(opts[i].env);
        if (v != NULL && *v != '\0' && !set_opt(cfg, &opts[i], v, opts[i].env))
            return CV_EINVAL;
    }
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            print_help();
            *outcome = CV_CONFIG_OUTCOME_EXIT;
            return CV_OK;
        }
        if (strcmp(argv[a], "--probe") == 0) {
            snprintf(cfg->probe_url, sizeof cfg->probe_url, "%s",
                     a + 1 < argc ? argv[a + 1] : "http://127.0.0.1:8080/healthz");
            *outcome = CV_CONFIG_OUTCOME_PROBE;
            return CV_OK;
        }
        if (strcmp(argv[a], "--version") == 0) {
            printf("convd %s\n", CV_VERSION);
            *outcome = CV_CONFIG_OUTCOME_EXIT;
            return CV_OK;
        }
        const char *arg = argv[a];
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const struct opt *o = NULL;
        for (size_t i = 0; i < n_opts; i++)
            if (strlen(opts[i].flag) == name_len && strncmp(opts[i].flag, arg, name_len) == 0)
                o = &opts[i];
        if (o == NULL) {
            fprintf(stderr, "convd: unknown option '%s'; see convd --help\n", arg);
            return CV_EINVAL;
        }
        const char *value = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (value == NULL) {
            fprintf(stderr, "convd: %s needs a value\n", o->flag);
            return CV_EINVAL;
        }
        if (!set_opt(cfg, o, value, "the command line"))
            return CV_EINVAL;
    }
    if (!load_token(cfg))
        return CV_EINVAL;
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0')) {
        fprintf(stderr, "convd: --tls-cert and --tls-key go together\n");
        return CV_EINVAL;
    }
    if (strcmp(cfg->store_sync, "normal") != 0 && strcmp(cfg->store_sync, "full") != 0) {
        fprintf(stderr, "convd: --store-sync must be normal or full\n");
        return CV_EINVAL;
    }
    if (cfg->lease < 0.5) {
        fprintf(stderr, "convd: --lease must be at least 0.5 seconds\n");
        return CV_EINVAL;
    }
    if (cfg->max_connections_per_ip == 0)
        cfg->max_connections_per_ip = cfg->max_connections / 4 > 0 ? cfg->max_connections / 4 : 1;
    if (cfg->header_timeout <= 0 || cfg->idle_timeout < 1) {
        fprintf(stderr, "convd: --header-timeout must be > 0 and --idle-timeout >= 1\n");
        return CV_EINVAL;
    }
    if (cfg->memory_budget == 0)
        cfg->memory_budget = 4 * cfg->max_body > (256LL << 20) ? 4 * cfg->max_body : 256LL << 20;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    if (cfg->workers == 0)
        cfg->workers = cores / cfg->threads > 0 ? (int)(cores / cfg->threads) : 1;
    if ((long)cfg->workers * cfg->threads > cores) {
        fprintf(stderr,
                "convd: --workers %d x --threads %d = %ld compute threads, more than the %ld "
                "cores; lower one of them\n",
                cfg->workers, cfg->threads, (long)cfg->workers * cfg->threads, cores);
        return CV_EINVAL;
    }
    return CV_OK;
}
