/* The store's front: URL dispatch to a back end, argument checks, and the helpers every back
 * end shares (error text, clock, notifications). The back ends trust what this file checked. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_impl.h"

/* ---- statuses and error text -------------------------------------------------------------- */

static const char *const status_names[] = {
    [CV_STORE_OK] = "ok",
    [CV_STORE_NOT_FOUND] = "not found",
    [CV_STORE_FENCED] = "fenced (the job's attempt moved on or it ended)",
    [CV_STORE_EXISTS] = "already exists",
    [CV_STORE_UNAVAILABLE] = "store unavailable",
    [CV_STORE_CORRUPT] = "store corrupt or not a convd store",
    [CV_STORE_TOO_NEW] = "store written by a newer convd",
    [CV_STORE_LOCKED] = "store locked by another process",
    [CV_STORE_INVALID] = "invalid argument",
    [CV_STORE_NOMEM] = "out of memory",
};

const char *cv_store_status_str(int status) {
    if (status < 0 || status >= (int)(sizeof status_names / sizeof status_names[0]) ||
        status_names[status] == NULL)
        return "unknown store status";
    return status_names[status];
}

static _Thread_local char errmsg[512];

const char *cv_store_errmsg(void) {
    return errmsg;
}

int cv__store_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return status;
}

/* ---- shared helpers ------------------------------------------------------------------------ */

int64_t cv__store_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cv__store_notify(struct cv_store *s, enum cv_store_note note, const char *job_id,
                      int64_t seq) {
    if (s->listener != NULL)
        s->listener(s->listener_user, note, job_id, seq);
}

bool cv__store_dup(char **dst, const char *src) {
    *dst = NULL;
    if (src == NULL)
        return true;
    *dst = strdup(src);
    return *dst != NULL;
}

void *cv__store_memdup(const void *src, size_t n, bool *ok) {
    if (src == NULL || n == 0)
        return NULL;
    char *p = malloc(n + 1);
    if (p == NULL) {
        *ok = false;
        return NULL;
    }
    memcpy(p, src, n);
    p[n] = '\0';
    return p;
}

const char *cv_store_job_status_name(enum cv_store_job_status st) {
    static const char *const names[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    return (unsigned)st < 5 ? names[st] : "unknown";
}

bool cv_store_job_status_terminal(enum cv_store_job_status st) {
    return st == CV_STORE_JOB_SUCCEEDED || st == CV_STORE_JOB_FAILED ||
           st == CV_STORE_JOB_CANCELLED;
}

/* The schema every back end writes; bump it with a migration in each back end. */
int cv_store_schema_version(void) {
    return 1;
}

struct cv_store_options cv_store_options_default(void) {
    return (struct cv_store_options){CV_STORE_SYNC_NORMAL, 5000, (int64_t)256 << 20, NULL};
}

/* ---- records ---------------------------------------------------------------------------- */

void cv_store_job_free(struct cv_store_job *j) {
    if (j == NULL)
        return;
    free(j->name);
    free(j->labels_json);
    free(j->params_json);
    free(j->request);
    free(j->result);
    memset(j, 0, sizeof *j);
}

void cv_store_jobs_free(struct cv_store_job *jobs, size_t n) {
    if (jobs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        cv_store_job_free(&jobs[i]);
    free(jobs);
}

void cv_store_events_free(struct cv_store_event *ev, size_t n) {
    if (ev == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(ev[i].body);
    free(ev);
}

void cv_store_kernel_free(struct cv_store_kernel *k) {
    if (k == NULL)
        return;
    free(k->meta_json);
    free(k->blob);
    memset(k, 0, sizeof *k);
}

void cv_store_kernels_free(struct cv_store_kernel *k, size_t n) {
    if (k == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        cv_store_kernel_free(&k[i]);
    free(k);
}

/* ---- open / close ------------------------------------------------------------------------ */

int cv_store_open(const char *url, const struct cv_store_options *o, struct cv_store **out) {
    *out = NULL;
    errmsg[0] = '\0';
    struct cv_store_options opt = o ? *o : cv_store_options_default();
    if (opt.busy_timeout_ms <= 0)
        opt.busy_timeout_ms = 5000;
    if (opt.memory_max_bytes <= 0)
        opt.memory_max_bytes = (int64_t)256 << 20;
    if (url == NULL)
        return cv__store_fail(CV_STORE_INVALID, "no store URL");
    if (strcmp(url, "memory") == 0)
        return cv__store_memory_open(&opt, out);
    if (strncmp(url, "sqlite:", 7) == 0) {
        if (url[7] == '\0')
            return cv__store_fail(CV_STORE_INVALID, "sqlite: needs a path (sqlite:PATH)");
        return cv__store_sqlite_open(url + 7, &opt, out);
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
#ifdef CV_STORE_HAVE_POSTGRES
        return cv__store_postgres_open(url, &opt, out);
#else
        return cv__store_fail(CV_STORE_INVALID, "this convd was built without PostgreSQL");
#endif
    }
    return cv__store_fail(CV_STORE_INVALID,
                          "unknown store URL (use memory, sqlite:PATH or postgres://...)");
}

void cv_store_close(struct cv_store *s) {
    if (s != NULL)
        s->ops->close(s);
}

const char *cv_store_backend(const struct cv_store *s) {
    return s->ops->name;
}

void cv_store_set_listener(struct cv_store *s, cv_store_listener_fn fn, void *user) {
    s->listener = fn;
    s->listener_user = user;
}

int cv_store_ping(struct cv_store *s) {
    return s->ops->ping(s);
}

/* ---- argument checks, then dispatch ------------------------------------------------------- */

static bool id_ok(const char *id) {
    return id != NULL && id[0] != '\0' && strlen(id) < 40;
}

static bool events_ok(const struct cv_store_event *ev, size_t n) {
    if (n > 0 && ev == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ev[i].body == NULL || ev[i].seq < 0 || (i > 0 && ev[i].seq != ev[i - 1].seq + 1))
            return false;
    return true;
}

#define INVALID(what) cv__store_fail(CV_STORE_INVALID, "invalid argument: %s", what)

int cv_store_job_insert(struct cv_store *s, const struct cv_store_job *j,
                        const struct cv_store_event *events, size_t n, int64_t lease_ms) {
    if (j == NULL || !id_ok(j->id))
        return INVALID("job id");
    if (j->status != CV_STORE_JOB_QUEUED && j->status != CV_STORE_JOB_RUNNING)
        return INVALID("status of a new job must be queued or running");
    if (j->status == CV_STORE_JOB_RUNNING && (j->owner[0] == '\0' || lease_ms <= 0))
        return INVALID("a running job needs an owner and a lease");
    if (!events_ok(events, n) || (n > 0 && events[0].seq != 0))
        return INVALID("events");
    return s->ops->job_insert(s, j, events, n, lease_ms);
}

int cv_store_job_get(struct cv_store *s, const char *id, unsigned flags, struct cv_store_job *out) {
    memset(out, 0, sizeof *out);
    if (!id_ok(id))
        return cv__store_fail(CV_STORE_NOT_FOUND, "no such job");
    return s->ops->job_get(s, id, flags, out);
}

int cv_store_job_list(struct cv_store *s, const struct cv_store_query *q, struct cv_store_job **out,
                      size_t *n) {
    *out = NULL;
    *n = 0;
    struct cv_store_query qq = {.status = -1};
    if (q != NULL)
        qq = *q;
    if (qq.limit == 0)
        qq.limit = 100;
    if ((qq.label_key == NULL) != (qq.label_value == NULL))
        return INVALID("label_key and label_value go together");
    return s->ops->job_list(s, &qq, out, n);
}

int cv_store_job_count(struct cv_store *s, int status, int64_t *n) {
    *n = 0;
    return s->ops->job_count(s, status, n);
}

int cv_store_job_claim(struct cv_store *s, const char *owner, int64_t lease_ms,
                       struct cv_store_job *out) {
    memset(out, 0, sizeof *out);
    if (owner == NULL || owner[0] == '\0' || strlen(owner) >= 64 || lease_ms <= 0)
        return INVALID("owner or lease");
    return s->ops->job_claim(s, owner, lease_ms, out);
}

int cv_store_job_claim_many(struct cv_store *s, const char *owner, int64_t lease_ms, size_t max,
                            struct cv_store_job *out, size_t *n) {
    *n = 0;
    if (max == 0)
        return INVALID("claim of no job");
    memset(out, 0, max * sizeof *out);
    if (owner == NULL || owner[0] == '\0' || strlen(owner) >= 64 || lease_ms <= 0)
        return INVALID("owner or lease");
    if (s->ops->job_claim_many != NULL)
        return s->ops->job_claim_many(s, owner, lease_ms, max, out, n);
    int st = CV_STORE_OK;
    while (*n < max && (st = s->ops->job_claim(s, owner, lease_ms, &out[*n])) == CV_STORE_OK)
        (*n)++;
    if (st == CV_STORE_NOT_FOUND && *n > 0)
        st = CV_STORE_OK;
    return st;
}

int cv_store_job_renew(struct cv_store *s, const char *id, int32_t attempt, const char *owner,
                       int64_t lease_ms, bool *cancel_requested) {
    *cancel_requested = false;
    if (!id_ok(id) || owner == NULL || lease_ms <= 0)
        return INVALID("renew");
    return s->ops->job_renew(s, id, attempt, owner, lease_ms, cancel_requested);
}

int cv_store_job_orphan(struct cv_store *s, const char *owner, int64_t *n) {
    *n = 0;
    return s->ops->job_orphan(s, owner, n);
}

int cv_store_job_release(struct cv_store *s, const char *id, int32_t attempt) {
    if (!id_ok(id))
        return INVALID("job id");
    return s->ops->job_release(s, id, attempt);
}

static bool finish_ok(const struct cv_store_finish *f) {
    return f != NULL && cv_store_job_status_terminal(f->status) &&
           events_ok(f->events, f->n_events) && (f->result == NULL || f->result_len > 0);
}

int cv_store_job_finish(struct cv_store *s, const char *id, int32_t attempt,
                        const struct cv_store_finish *f) {
    if (!id_ok(id) || !finish_ok(f))
        return INVALID("finish");
    return s->ops->job_finish(s, id, attempt, f);
}

int cv_store_job_cancel(struct cv_store *s, const char *id, const struct cv_store_finish *if_queued,
                        enum cv_store_job_status *status_after) {
    if (!id_ok(id))
        return cv__store_fail(CV_STORE_NOT_FOUND, "no such job");
    if (!finish_ok(if_queued) || if_queued->status != CV_STORE_JOB_CANCELLED)
        return INVALID("cancel: if_queued must end the job cancelled");
    return s->ops->job_cancel(s, id, if_queued, status_after);
}

int cv_store_job_delete(struct cv_store *s, const char *id) {
    if (!id_ok(id))
        return cv__store_fail(CV_STORE_NOT_FOUND, "no such job");
    return s->ops->job_delete(s, id);
}

int cv_store_append(struct cv_store *s, struct cv_store_append *items, size_t n) {
    if (n == 0)
        return CV_STORE_OK;
    for (size_t i = 0; i < n; i++) {
        items[i].status = CV_STORE_OK;
        if (!id_ok(items[i].job_id) || !events_ok(items[i].events, items[i].n_events) ||
            (items[i].checkpoint != NULL && items[i].checkpoint_len == 0))
            return INVALID("append item");
    }
    return s->ops->append(s, items, n);
}

int cv_store_events_read(struct cv_store *s, const char *id, int64_t after_seq, size_t max,
                         struct cv_store_event **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!id_ok(id))
        return cv__store_fail(CV_STORE_NOT_FOUND, "no such job");
    if (after_seq < -1)
        after_seq = -1;
    return s->ops->events_read(s, id, after_seq, max, out, n);
}

int cv_store_checkpoint_get(struct cv_store *s, const char *id, int32_t *step, int32_t *attempt,
                            unsigned char **blob, size_t *len) {
    *step = 0;
    *attempt = 0;
    *blob = NULL;
    *len = 0;
    if (!id_ok(id))
        return cv__store_fail(CV_STORE_NOT_FOUND, "no such job");
    return s->ops->checkpoint_get(s, id, step, attempt, blob, len);
}

int cv_store_retain(struct cv_store *s, int64_t keep, int64_t max_age_ms, int batch, int *deleted) {
    *deleted = 0;
    if (batch <= 0)
        return INVALID("batch");
    return s->ops->retain(s, keep, max_age_ms, batch, deleted);
}

static bool name_ok(const char *name) {
    return name != NULL && name[0] != '\0' && strlen(name) <= 64;
}

int cv_store_kernel_put(struct cv_store *s, const char *name, const unsigned char *blob, size_t len,
                        const char *meta_json, bool replace) {
    if (!name_ok(name) || blob == NULL || len == 0)
        return INVALID("kernel name or blob");
    return s->ops->kernel_put(s, name, blob, len, meta_json, replace);
}

int cv_store_kernel_get(struct cv_store *s, const char *name, struct cv_store_kernel *out) {
    memset(out, 0, sizeof *out);
    if (!name_ok(name))
        return cv__store_fail(CV_STORE_NOT_FOUND, "no such kernel");
    return s->ops->kernel_get(s, name, out);
}

int cv_store_kernel_list(struct cv_store *s, struct cv_store_kernel **out, size_t *n) {
    *out = NULL;
    *n = 0;
    return s->ops->kernel_list(s, out, n);
}

int cv_store_kernel_delete(struct cv_store *s, const char *name) {
    if (!name_ok(name))
        return cv__store_fail(CV_STORE_NOT_FOUND, "no such kernel");
    return s->ops->kernel_delete(s, name);
}
