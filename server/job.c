/* Jobs: one corr2d or training run, its state, and its append-only event log.
 *
 * A job is shared by reference count between the connection that made it, the pool (until the
 * worker is done) and stream readers. `mu` guards state and the event log; readers wait on
 * `cond`, which is broadcast on every commit. The worker alone touches the request's tensors
 * while the job runs; others read results only after `terminal` is set under `mu`.
 *
 * Registered jobs are durable: cv_job_register stores them (with their request as float32
 * blobs), the writer thread (writer.c) commits their step events, progress and checkpoints in
 * batches, and the worker commits the end (terminal event, result) BEFORE any reader can see
 * it. Readers send only committed events, so an event id a client saw survives a crash. Once
 * the end is committed the job leaves the registry and keeps nothing in memory: later requests
 * read it from the store. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "server.h"

/* ---- registry of live registered jobs ------------------------------------------------------ */

struct registry_node {
    struct cv_job *job; /* one reference */
    struct registry_node *next;
};

/* registry_mu guards the list (newest first); taken before any job's mu, never after, so the
 * two locks never deadlock. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct registry_node *registry;

static void registry_add(struct cv_job *job) {
    struct registry_node *node = malloc(sizeof *node);
    if (node == NULL)
        return; /* the job still runs and is stored; it is only not live-listed */
    node->job = cv_job_ref(job);
    pthread_mutex_lock(&registry_mu);
    node->next = registry;
    registry = node;
    pthread_mutex_unlock(&registry_mu);
    pthread_mutex_lock(&job->mu);
    job->listed = true;
    pthread_mutex_unlock(&job->mu);
}

static void registry_remove(struct cv_job *job) {
    struct registry_node *found = NULL;
    pthread_mutex_lock(&registry_mu);
    for (struct registry_node **p = &registry; *p != NULL; p = &(*p)->next) {
        if ((*p)->job == job) {
            found = *p;
            *p = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    if (found != NULL) {
        pthread_mutex_lock(&job->mu);
        job->listed = false;
        pthread_mutex_unlock(&job->mu);
        cv_job_unref(found->job);
        free(found);
    }
}

/* ---- in-flight unregistered jobs (synchronous /corr2d) --------------------------------------- */

/* Jobs that are not listed (a synchronous /corr2d) but are submitted and not yet done, so the
 * drain can wait for and cancel them too. Guarded by inflight_mu (a leaf lock: nothing else
 * is taken while holding it but a job's mu, through cv_job_cancel). */
static pthread_mutex_t inflight_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cv_job **inflight;
static size_t n_inflight, cap_inflight;

/* Set by cv_jobs_stop_all: unlisted queued jobs popped afterwards end cancelled unrun. */
static atomic_bool aborting;

static void inflight_add(struct cv_job *job) {
    pthread_mutex_lock(&inflight_mu);
    if (n_inflight == cap_inflight) {
        size_t cap = cap_inflight ? 2 * cap_inflight : 64;
        struct cv_job **p = realloc(inflight, cap * sizeof *p);
        if (p != NULL) {
            inflight = p;
            cap_inflight = cap;
        }
    }
    if (n_inflight < cap_inflight)
        inflight[n_inflight++] = job; /* borrowed: removed before the pool's reference goes */
    pthread_mutex_unlock(&inflight_mu);
}

static void inflight_remove(struct cv_job *job) {
    pthread_mutex_lock(&inflight_mu);
    for (size_t i = 0; i < n_inflight; i++) {
        if (inflight[i] == job) {
            inflight[i] = inflight[--n_inflight];
            break;
        }
    }
    pthread_mutex_unlock(&inflight_mu);
}

static void inflight_cancel_all(void) {
    pthread_mutex_lock(&inflight_mu);
    for (size_t i = 0; i < n_inflight; i++)
        cv_job_cancel(inflight[i]);
    pthread_mutex_unlock(&inflight_mu);
}

static int inflight_count(void) {
    pthread_mutex_lock(&inflight_mu);
    int n = (int)n_inflight;
    pthread_mutex_unlock(&inflight_mu);
    return n;
}

struct cv_job *cv_jobs_find(const char *id) {
    struct cv_job *hit = NULL;
    pthread_mutex_lock(&registry_mu);
    for (struct registry_node *n = registry; n != NULL && hit == NULL; n = n->next)
        if (strcmp(n->job->id, id) == 0)
            hit = cv_job_ref(n->job);
    pthread_mutex_unlock(&registry_mu);
    return hit;
}

size_t cv_jobs_snapshot(struct cv_job **out, size_t max) {
    size_t count = 0;
    pthread_mutex_lock(&registry_mu);
    for (struct registry_node *n = registry; n != NULL && count < max; n = n->next)
        out[count++] = cv_job_ref(n->job);
    pthread_mutex_unlock(&registry_mu);
    return count;
}

int cv_jobs_queued(void) {
    int count = 0;
    pthread_mutex_lock(&registry_mu);
    for (struct registry_node *n = registry; n != NULL; n = n->next) {
        pthread_mutex_lock(&n->job->mu);
        count += n->job->state == CV_JOB_STATE_QUEUED && !n->job->terminal;
        pthread_mutex_unlock(&n->job->mu);
    }
    pthread_mutex_unlock(&registry_mu);
    return count;
}

void cv_jobs_forget_taken(bool all) {
    struct cv_job **jobs = malloc(4096 * sizeof *jobs);
    if (jobs == NULL)
        return;
    size_t n = cv_jobs_snapshot(jobs, 4096);
    for (size_t i = 0; i < n; i++) {
        struct cv_job *job = jobs[i];
        pthread_mutex_lock(&job->mu);
        bool waiting = job->registered && job->attempt == 0 && !job->terminal && !job->ending;
        pthread_mutex_unlock(&job->mu);
        bool noted = atomic_exchange(&job->noted, false);
        waiting = waiting && (all || noted);
        struct cv_store_job row;
        if (waiting && cv_store_job_get(cv_srv.store, job->id, 0, &row) == CV_STORE_OK) {
            /* Claimed by another replica (or ended there by a DELETE): the store has it now.
             * Our own claim sets job->attempt right after the claim; its owner is us. */
            bool elsewhere =
                row.status != CV_STORE_JOB_QUEUED && strcmp(row.owner, cv_srv.owner) != 0;
            cv_store_job_free(&row);
            if (elsewhere)
                cv_jobs_forget(job);
        }
        cv_job_unref(job);
    }
    free(jobs);
}

void cv_jobs_forget(struct cv_job *job) {
    pthread_mutex_lock(&job->mu);
    bool waiting = job->registered && job->attempt == 0 && !job->terminal && !job->ending;
    if (waiting) {
        atomic_store(&job->fenced, true); /* readers follow the store instead */
        job->terminal = true;
        pthread_cond_broadcast(&job->cond);
    }
    pthread_mutex_unlock(&job->mu);
    if (waiting)
        registry_remove(job);
}

void cv_jobs_stop_all(void) {
    /* Unlisted work (a synchronous /corr2d) ends: queued ones without running. */
    atomic_store(&aborting, true);
    inflight_cancel_all();
    /* Acted on outside registry_mu: a cancel may end a job, which leaves the registry. */
    struct cv_job *jobs[4096];
    size_t n = cv_jobs_snapshot(jobs, sizeof jobs / sizeof jobs[0]);
    for (size_t i = 0; i < n; i++) {
        if (jobs[i]->resumable)
            atomic_store(&jobs[i]->suspend, true);
        else
            cv_job_cancel(jobs[i]);
        cv_job_unref(jobs[i]);
    }
}

int cv_jobs_active(void) {
    int count = 0;
    pthread_mutex_lock(&registry_mu);
    for (struct registry_node *n = registry; n != NULL; n = n->next) {
        pthread_mutex_lock(&n->job->mu);
        count += n->job->attempt > 0 && !n->job->terminal;
        pthread_mutex_unlock(&n->job->mu);
    }
    pthread_mutex_unlock(&registry_mu);
    return count + inflight_count();
}

/* ---- views --------------------------------------------------------------------------------- */

static const char *time_str(double unix_ms, char *buf) {
    if (unix_ms <= 0)
        return NULL;
    cv_log_format_time(unix_ms, buf, 40);
    return buf;
}

const struct cv_api_job_meta *cv_job_meta(const struct cv_job *job) {
    return job->kind == CV_JOB_KIND_TRAIN ? &job->train.meta : &job->corr2d.meta;
}

void cv_job_view_locked(struct cv_job *job, struct cv_api_job_view *v, char times[3][40],
                        bool with_losses) {
    *v = (struct cv_api_job_view){
        .id = job->id,
        .kind = job->kind == CV_JOB_KIND_TRAIN ? "train" : "corr2d",
        .status = cv_job_state_name(job->state),
        .created_at = time_str(job->created_unix_ms, times[0]),
        .started_at = time_str(job->started_unix_ms, times[1]),
        .finished_at = time_str(job->finished_unix_ms, times[2]),
        .step = job->kind == CV_JOB_KIND_TRAIN ? job->step : (job->terminal ? 1 : 0),
        .steps = job->kind == CV_JOB_KIND_TRAIN ? job->train.params.steps : 1,
        .loss = job->last_loss,
        .elapsed_ms = job->terminal                       ? job->elapsed_ms
                      : job->state == CV_JOB_STATE_QUEUED ? NAN
                                                          : cv_now_ms() - job->started_ms,
        .steps_per_s = NAN,
        .name = cv_job_meta(job)->name,
        .labels_json = cv_job_meta(job)->labels_json,
        .params_json = job->params_json,
        .result_json = job->result_json,
        .omit_losses = !with_losses,
        .error_code = job->error_code,
        .error_detail = job->error_code ? job->error_detail : NULL,
        .attempt = job->attempt,
    };
    /* The rate over the steps done so far: what a client shows beside an ETA. */
    if (job->kind == CV_JOB_KIND_TRAIN && job->step > 0 && v->elapsed_ms > 0)
        v->steps_per_s = job->step / (v->elapsed_ms / 1000.0);
}

void cv_job_view_row(const struct cv_store_job *row, struct cv_api_job_view *v, char times[3][40],
                     bool with_losses) {
    const char *status = cv_store_job_status_name(row->status);
    if (row->status == CV_STORE_JOB_RUNNING && row->cancel_requested)
        status = "cancelling";
    bool terminal = cv_store_job_status_terminal(row->status);
    *v = (struct cv_api_job_view){
        .id = row->id,
        .kind = row->kind == CV_STORE_KIND_TRAIN ? "train" : "corr2d",
        .status = status,
        .created_at = time_str((double)row->created_ms, times[0]),
        .started_at = time_str((double)row->started_ms, times[1]),
        .finished_at = time_str((double)row->finished_ms, times[2]),
        .step = row->step,
        .steps = row->steps,
        .loss = row->loss,
        .elapsed_ms = terminal ? row->elapsed_ms : NAN,
        .steps_per_s = NAN,
        .name = row->name,
        .labels_json = row->labels_json,
        .params_json = row->params_json,
        .result_json = row->result,
        .omit_losses = !with_losses,
        .error_code = row->error_code[0] ? row->error_code : NULL,
        .error_detail = row->error_code[0] ? row->error_detail : NULL,
        .attempt = row->attempt,
    };
    /* The rate over the steps done so far: what a client shows beside an ETA. */
    if (row->kind == CV_STORE_KIND_TRAIN && row->step > 0 && terminal && row->elapsed_ms > 0)
        v->steps_per_s = row->step / (row->elapsed_ms / 1000.0);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

static const char *const state_names[] = {
    [CV_JOB_STATE_QUEUED] = "queued",         [CV_JOB_STATE_RUNNING] = "running",
    [CV_JOB_STATE_SUCCEEDED] = "succeeded",   [CV_JOB_STATE_FAILED] = "failed",
    [CV_JOB_STATE_CANCELLING] = "cancelling", [CV_JOB_STATE_CANCELLED] = "cancelled",
};

const char *cv_job_state_name(enum cv_job_state state) {
    return state_names[state];
}

double cv_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct timespec cv_deadline_ms(double ms) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    const long long ns = (long long)(ms * 1e6);
    t.tv_sec += (time_t)(ns / 1000000000LL);
    t.tv_nsec += (long)(ns % 1000000000LL);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

void cv_job_event_type(const char *json, char *out, size_t cap) {
    static const char key[] = "{\"event\":\"";
    snprintf(out, cap, "message");
    if (strncmp(json, key, sizeof key - 1) != 0)
        return;
    const char *t = json + sizeof key - 1;
    size_t n = strcspn(t, "\"");
    if (n == 0 || n >= cap || t[n] != '"')
        return;
    memcpy(out, t, n);
    out[n] = '\0';
}

static struct cv_job *job_alloc(enum cv_job_kind kind, bool registered) {
    struct cv_job *job = calloc(1, sizeof *job);
    if (job == NULL)
        return NULL;
    job->kind = kind;
    job->registered = registered;
    job->resumable = registered;
    job->created_unix_ms = cv_now_unix_ms();
    job->last_loss = NAN;
    job->written_seq = -1;
    atomic_init(&job->refs, 1);
    atomic_init(&job->cancel, false);
    atomic_init(&job->suspend, false);
    atomic_init(&job->fenced, false);
    atomic_init(&job->noted, false);
    job->created_ms = cv_now_ms();
    job->state = CV_JOB_STATE_QUEUED;
    job->result.last_loss = NAN;
    job->result.final_loss = NAN;
    pthread_mutex_init(&job->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&job->cond, &attr);
    pthread_condattr_destroy(&attr);
    return job;
}

/* Takes ownership of the request; false when out of memory (the job's destroy frees it). */
static bool job_take_request(struct cv_job *job, void *req) {
    if (job->kind == CV_JOB_KIND_TRAIN) {
        struct cv_train_request *tr = req;
        job->losses = calloc((size_t)tr->params.steps, sizeof *job->losses);
        if (job->losses == NULL)
            return false;
        job->train = *tr;
        memset(tr, 0, sizeof *tr);
    } else {
        struct cv_corr2d_request *cr = req;
        job->corr2d = *cr;
        memset(cr, 0, sizeof *cr);
    }
    /* The settings a listed job shows as "params", fixed from now on. */
    if (job->registered)
        job->params_json = job->kind == CV_JOB_KIND_TRAIN
                               ? cv_api_train_params_dump(&job->train, NULL)
                               : cv_api_corr2d_params_dump(&job->corr2d, NULL);
    return !job->registered || job->params_json != NULL;
}

static void job_destroy(struct cv_job *job) {
    for (size_t i = 0; i < job->n_events; i++)
        free(job->events[i].json);
    free(job->events);
    free(job->losses);
    free(job->result_json);
    free(job->params_json);
    free(job->ckpt);
    if (job->resume != NULL) {
        cv_persist_ckpt_free(job->resume);
        free(job->resume);
    }
    cv_api_corr2d_request_free(&job->corr2d);
    cv_api_train_request_free(&job->train);
    pthread_mutex_destroy(&job->mu);
    pthread_cond_destroy(&job->cond);
    free(job);
}

int cv_job_new(enum cv_job_kind kind, void *req, bool registered, struct cv_job **out) {
    *out = NULL;
    struct cv_job *job = job_alloc(kind, registered);
    if (job == NULL)
        return CV_ENOMEM;
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd || !job_take_request(job, req)) {
        job_destroy(job);
        return CV_ENOMEM;
    }
    strcpy(job->id, "j-");
    for (int i = 0; i < 16; i++)
        snprintf(job->id + 2 + 2 * i, 3, "%02x", rnd[i]);
    *out = job;
    return CV_OK;
}

struct cv_job *cv_job_ref(struct cv_job *job) {
    atomic_fetch_add(&job->refs, 1);
    return job;
}

void cv_job_unref(struct cv_job *job) {
    if (job == NULL || atomic_fetch_sub(&job->refs, 1) != 1)
        return;
    job_destroy(job);
}

static void end_unstarted(struct cv_job *job);

void cv_job_cancel(struct cv_job *job) {
    atomic_store(&job->cancel, true);
    pthread_mutex_lock(&job->mu);
    if (job->state == CV_JOB_STATE_RUNNING)
        job->state = CV_JOB_STATE_CANCELLING;
    /* Claimed and waiting for a worker: it ends now, as a queued job does, rather than when a
     * worker gets to it. */
    bool unstarted = job->registered && job->state == CV_JOB_STATE_QUEUED && job->attempt > 0 &&
                     !job->terminal && !job->ending;
    pthread_cond_broadcast(&job->cond);
    pthread_mutex_unlock(&job->mu);
    if (unstarted)
        end_unstarted(job);
}

/* Appends under mu (held by the caller). */
static void push_locked(struct cv_job *job, const char *type, char *json, size_t len) {
    static const char oom[] = "{\"event\":\"error\",\"status\":\"failed\",\"code\":\"internal\","
                              "\"detail\":\"out of memory\"}";
    if (json != NULL && len == 0)
        len = strlen(json);
    if (json == NULL) {
        json = strdup(oom);
        len = json ? strlen(json) : 0;
        type = "error";
        if (json == NULL)
            return;
    }
    if (job->n_events == job->cap_events) {
        size_t cap = job->cap_events ? 2 * job->cap_events : 16;
        struct cv_job_event *ev = realloc(job->events, cap * sizeof *ev);
        if (ev == NULL) {
            free(json); /* a step event lost to memory; the log stays gap-free */
            return;
        }
        job->events = ev;
        job->cap_events = cap;
    }
    job->events[job->n_events++] = (struct cv_job_event){type, json, len};
    if (!job->registered) /* nothing to commit: readers may see it at once */
        job->written_seq = job->base_seq + (int64_t)job->n_events - 1;
    pthread_cond_broadcast(&job->cond);
}

void cv_job_push_event(struct cv_job *job, const char *type, char *json, size_t len) {
    pthread_mutex_lock(&job->mu);
    push_locked(job, type, json, len);
    pthread_mutex_unlock(&job->mu);
    if (job->registered)
        cv_writer_kick();
}

bool cv_job_wait_terminal(struct cv_job *job, int timeout_ms) {
    const struct timespec deadline = cv_deadline_ms(timeout_ms);
    pthread_mutex_lock(&job->mu);
    while (!job->terminal)
        if (pthread_cond_timedwait(&job->cond, &job->mu, &deadline) != 0)
            break;
    bool done = job->terminal;
    pthread_mutex_unlock(&job->mu);
    return done;
}

/* ---- the store ------------------------------------------------------------------------------ */

int cv_job_register(struct cv_job *job, bool queued) {
    size_t blob_len = 0;
    unsigned char *blob = job->kind == CV_JOB_KIND_TRAIN
                              ? cv_persist_train_request(&job->train, &blob_len)
                              : cv_persist_corr2d_request(&job->corr2d, &blob_len);
    if (blob == NULL)
        return CV_ENOMEM;
    struct cv_store_job row = {
        .kind = job->kind == CV_JOB_KIND_TRAIN ? CV_STORE_KIND_TRAIN : CV_STORE_KIND_CORR2D,
        .status = queued ? CV_STORE_JOB_QUEUED : CV_STORE_JOB_RUNNING,
        .resumable = job->resumable,
        .created_ms = (int64_t)job->created_unix_ms,
        .steps = job->kind == CV_JOB_KIND_TRAIN ? job->train.params.steps : 1,
        .loss = NAN,
        .elapsed_ms = NAN,
        .request = blob,
        .request_len = blob_len,
        .name = cv_job_meta(job)->name,
        .labels_json = cv_job_meta(job)->labels_json,
        .params_json = job->params_json,
    };
    snprintf(row.id, sizeof row.id, "%s", job->id);
    if (!queued)
        snprintf(row.owner, sizeof row.owner, "%s", cv_srv.owner);
    /* The events so far (the start event) go in with the row. */
    struct cv_store_event ev[4];
    size_t n = 0;
    pthread_mutex_lock(&job->mu);
    for (; n < job->n_events && n < 4; n++)
        ev[n] = (struct cv_store_event){job->base_seq + (int64_t)n, 0, job->events[n].json,
                                        job->events[n].len};
    if (!queued)
        job->attempt = 1;
    /* Committed with the row: set now, because the dispatcher may claim, run and end the job
     * before the insert call even returns here. */
    job->written_seq = job->base_seq + (int64_t)n - 1;
    pthread_mutex_unlock(&job->mu);
    /* Listed before the insert, so the dispatcher that claims it finds this job, not a copy. */
    registry_add(job);
    int st = cv_store_job_insert(cv_srv.store, &row, ev, n, (int64_t)(cv_srv.cfg.lease * 1000));
    free(blob);
    cv_store_health(st);
    if (st != CV_STORE_OK) {
        registry_remove(job);
        pthread_mutex_lock(&job->mu);
        job->attempt = 0;
        job->written_seq = job->base_seq - 1;
        pthread_mutex_unlock(&job->mu);
        return CV_EAGAIN;
    }
    pthread_mutex_lock(&job->mu);
    pthread_cond_broadcast(&job->cond); /* readers may send the events written with the row */
    pthread_mutex_unlock(&job->mu);
    return CV_OK;
}

void cv_job_unregister(struct cv_job *job) {
    cv_store_job_delete(cv_srv.store, job->id);
    registry_remove(job);
}

int cv_job_from_row(const struct cv_store_job *row, struct cv_job **out) {
    *out = NULL;
    enum cv_job_kind kind =
        row->kind == CV_STORE_KIND_TRAIN ? CV_JOB_KIND_TRAIN : CV_JOB_KIND_CORR2D;
    struct cv_train_request t;
    struct cv_corr2d_request c;
    int st = kind == CV_JOB_KIND_TRAIN
                 ? cv_persist_train_decode(row->request, row->request_len, &t)
                 : cv_persist_corr2d_decode(row->request, row->request_len, &c);
    if (st != CV_OK)
        return CV_EINVAL;
    struct cv_job *job = job_alloc(kind, true);
    if (job == NULL || !job_take_request(job, kind == CV_JOB_KIND_TRAIN ? (void *)&t : &c)) {
        if (job != NULL)
            job_destroy(job);
        cv_api_train_request_free(kind == CV_JOB_KIND_TRAIN ? &t : NULL);
        cv_api_corr2d_request_free(kind == CV_JOB_KIND_CORR2D ? &c : NULL);
        return CV_ENOMEM;
    }
    snprintf(job->id, sizeof job->id, "%s", row->id);
    job->resumable = row->resumable;
    job->attempt = row->attempt;
    job->created_unix_ms = (double)row->created_ms;
    job->started_unix_ms = (double)row->started_ms;
    job->base_seq = row->last_seq + 1;
    job->written_seq = row->last_seq;
    job->step = row->step;
    job->last_loss = row->loss;
    registry_add(job);
    *out = job;
    return CV_OK;
}

void cv_job_end_unrun(const struct cv_store_job *row, const char *status, const char *code,
                      const char *detail) {
    char body[512];
    char esc[300];
    cv_log_json_escape(esc, sizeof esc, 0, detail);
    bool failed = strcmp(status, "failed") == 0;
    snprintf(body, sizeof body,
             "{\"event\":\"%s\",\"status\":\"%s\",\"code\":\"%s\",\"detail\":\"%s\"}",
             failed ? "error" : "done", status, code, esc);
    struct cv_store_event ev = {row->last_seq + 1, 0, body, strlen(body)};
    struct cv_store_finish f = {
        .status = failed ? CV_STORE_JOB_FAILED : CV_STORE_JOB_CANCELLED,
        .error_code = code,
        .error_detail = detail,
        .events = &ev,
        .n_events = 1,
        .step = row->step,
        .loss = row->loss,
        .elapsed_ms = row->elapsed_ms,
    };
    int st = cv_store_job_finish(cv_srv.store, row->id, row->attempt, &f);
    cv_store_health(st);
    char extra[200];
    snprintf(extra, sizeof extra, "\"job\":\"%s\",\"code\":\"%s\",\"attempt\":%d", row->id, code,
             (int)row->attempt);
    cv_log_msg("warn", "job ended without running", extra);
    if (st == CV_STORE_OK)
        cv_metrics_job_done(row->kind == CV_STORE_KIND_TRAIN ? CV_JOB_KIND_TRAIN
                                                             : CV_JOB_KIND_CORR2D,
                            failed ? CV_JOB_STATE_FAILED : CV_JOB_STATE_CANCELLED);
}

void cv_job_retire_cancelled(struct cv_job *job, const char *done_json) {
    char *json = strdup(done_json);
    pthread_mutex_lock(&job->mu);
    if (!job->terminal) {
        job->state = CV_JOB_STATE_CANCELLED;
        job->finished_unix_ms = cv_now_unix_ms();
        if (json != NULL) {
            push_locked(job, "done", json, 0);
            json = NULL;
            job->written_seq = job->base_seq + (int64_t)job->n_events - 1;
        }
        job->terminal = true;
        pthread_cond_broadcast(&job->cond);
    }
    pthread_mutex_unlock(&job->mu);
    free(json);
    registry_remove(job);
    cv_metrics_job_done(job->kind, CV_JOB_STATE_CANCELLED);
}

/* ---- running on a worker ------------------------------------------------------------------- */

/* Ends the job: its final state, result and terminal event. For a registered job the end is
 * committed to the store first (with every event not yet written), and only then becomes
 * visible here, so no client ever sees a `done` that a crash could take back. */
static void finish(struct cv_job *job, enum cv_job_state state, const char *type, char *json,
                   size_t len, char *result_json, const char *error_code, const char *detail) {
    if (json == NULL) {
        json = strdup("{\"event\":\"error\",\"status\":\"failed\",\"code\":\"internal\","
                      "\"detail\":\"out of memory\"}");
        type = "error";
    }
    if (json != NULL && len == 0)
        len = strlen(json);
    double finished = cv_now_unix_ms();
    if (job->registered && !atomic_load(&job->fenced) && json != NULL) {
        static const enum cv_store_job_status map[] = {
            [CV_JOB_STATE_SUCCEEDED] = CV_STORE_JOB_SUCCEEDED,
            [CV_JOB_STATE_FAILED] = CV_STORE_JOB_FAILED,
            [CV_JOB_STATE_CANCELLED] = CV_STORE_JOB_CANCELLED,
        };
        int st = CV_STORE_UNAVAILABLE;
        /* A full disk or a busy database may pass: retry for a while (the worker waits; new
         * work gets 503 meanwhile), then give up and leave the job to the next start. */
        for (int tries = 0; tries < 40; tries++) {
            cv_writer_lock();
            pthread_mutex_lock(&job->mu);
            size_t first = (size_t)(job->written_seq + 1 - job->base_seq);
            size_t n = job->n_events - first;
            struct cv_store_event *ev = calloc(n + 1, sizeof *ev);
            if (ev != NULL) {
                for (size_t i = 0; i < n; i++)
                    ev[i] = (struct cv_store_event){job->written_seq + 1 + (int64_t)i, 0,
                                                    job->events[first + i].json,
                                                    job->events[first + i].len};
                ev[n] = (struct cv_store_event){job->written_seq + 1 + (int64_t)n, 0, json, len};
            }
            int32_t attempt = job->attempt;
            pthread_mutex_unlock(&job->mu);
            /* The worker is the only one that appends to this job, and the writer thread is
             * held off by the writer lock: the event bodies stay put during the commit. */
            struct cv_store_finish f = {
                .status = map[state],
                .result = result_json,
                .result_len = result_json ? strlen(result_json) : 0,
                .error_code = error_code,
                .error_detail = detail,
                .events = ev,
                .n_events = n + 1,
                .step = job->kind == CV_JOB_KIND_TRAIN ? job->step : 1,
                .loss = job->last_loss,
                .elapsed_ms = job->elapsed_ms,
            };
            st = ev ? cv_store_job_finish(cv_srv.store, job->id, attempt, &f) : CV_STORE_NOMEM;
            free(ev);
            if (st == CV_STORE_OK) {
                /* Committed: the writer must not append this job's leftovers (a checkpoint,
                 * the events just written) to a job the store already ended. */
                pthread_mutex_lock(&job->mu);
                job->ending = true;
                pthread_mutex_unlock(&job->mu);
            }
            cv_writer_unlock();
            cv_store_health(st);
            if (st == CV_STORE_OK || st == CV_STORE_FENCED || st == CV_STORE_NOT_FOUND ||
                st == CV_STORE_INVALID)
                break;
            struct timespec ts = {0, 250 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (st != CV_STORE_OK) {
            char extra[600];
            size_t m =
                (size_t)snprintf(extra, sizeof extra, "\"job\":\"%s\",\"reason\":\"", job->id);
            m = cv_log_json_escape(extra, sizeof extra, m, cv_store_errmsg());
            snprintf(extra + m, sizeof extra - m, "\"");
            cv_log_msg("error", "could not store the end of a job", extra);
        }
        if (st == CV_STORE_OK)
            cv_writer_retain_now();
    }
    pthread_mutex_lock(&job->mu);
    job->state = state;
    job->finished_unix_ms = finished;
    job->result_json = job->registered ? NULL : result_json;
    if (job->registered)
        free(result_json); /* stored; a finished job is read from the store */
    job->error_code = error_code;
    if (detail != NULL)
        snprintf(job->error_detail, sizeof job->error_detail, "%s", detail);
    if (json != NULL) {
        push_locked(job, type, json, len);
        job->written_seq = job->base_seq + (int64_t)job->n_events - 1;
    }
    job->terminal = true;
    pthread_cond_broadcast(&job->cond);
    pthread_mutex_unlock(&job->mu);
    if (job->registered)
        registry_remove(job);
    cv_metrics_job_done(job->kind, state);
}

/* Gives the job back to the store's queue (its checkpoint, if any, is already written) and
 * ends its life in this process. When the release fails (the store is down), the job stays
 * running in the store and resumes once its lease lapses. */
static void hand_back(struct cv_job *job) {
    int st = cv_store_job_release(cv_srv.store, job->id, job->attempt);
    cv_store_health(st);
    char extra[160];
    snprintf(extra, sizeof extra, "\"job\":\"%s\",\"step\":%d,\"attempt\":%d", job->id,
             (int)job->step, (int)job->attempt);
    cv_log_msg("info",
               st == CV_STORE_OK ? "job released to the queue"
                                 : "job left running in the store until its lease lapses",
               extra);
    pthread_mutex_lock(&job->mu);
    job->terminal = true; /* ends this process's readers; the job itself goes on later */
    pthread_cond_broadcast(&job->cond);
    pthread_mutex_unlock(&job->mu);
    registry_remove(job);
}

/* Drain: a resumable job stops here and goes back to the store's queue with its checkpoint
 * (written first), for the next start or another replica. */
static void suspend(struct cv_job *job) {
    cv_writer_flush_job(job);
    hand_back(job);
}

void cv_jobs_release_waiting(void) {
    struct cv_job **jobs = malloc(4096 * sizeof *jobs);
    if (jobs == NULL)
        return; /* they are released when a worker pops them after the drain timeout */
    size_t n = cv_jobs_snapshot(jobs, 4096);
    for (size_t i = 0; i < n; i++) {
        struct cv_job *job = jobs[i];
        pthread_mutex_lock(&job->mu);
        bool waiting = job->registered && job->resumable && job->attempt > 0 &&
                       job->state == CV_JOB_STATE_QUEUED && !job->terminal && !job->ending;
        pthread_mutex_unlock(&job->mu);
        if (waiting) {
            cv_writer_flush_job(job); /* a resumed attempt's "resumed" event */
            /* Taken from the worker that would pop it: `ending` makes begin_running skip it
             * (and end_unstarted do nothing), unless it started or was cancelled meanwhile. */
            pthread_mutex_lock(&job->mu);
            waiting = job->state == CV_JOB_STATE_QUEUED && !job->terminal && !job->ending &&
                      !atomic_load(&job->cancel);
            if (waiting)
                job->ending = true;
            pthread_mutex_unlock(&job->mu);
            if (waiting)
                hand_back(job);
        }
        cv_job_unref(job);
    }
    free(jobs);
}

/* Ends a job that was cancelled before it ran: cancelled result and done event, committed.
 * Idempotent: the second caller (the worker that pops it, or the cancel) does nothing. */
static void end_unstarted(struct cv_job *job) {
    pthread_mutex_lock(&job->mu);
    bool first = !job->terminal && !job->ending;
    job->ending = true;
    pthread_mutex_unlock(&job->mu);
    if (!first)
        return;
    size_t len = 0;
    char *json;
    char *result = NULL;
    if (job->kind == CV_JOB_KIND_TRAIN) {
        job->result = (struct cv_train_result){0, NAN, NAN, false};
        json = cv_api_event_done_dump(&job->train, "cancelled", &job->result, 0, &len);
        if (job->registered)
            result = cv_api_train_reply_dump(&job->train, "cancelled", &job->result, job->losses, 0,
                                             0, NULL);
    } else {
        json = strdup("{\"event\":\"done\",\"status\":\"cancelled\"}");
    }
    job->status = CV_ECANCELED;
    finish(job, CV_JOB_STATE_CANCELLED, "done", json, len, result, NULL, NULL);
}

/* Marks the job running unless it was cancelled or suspended while it waited; those end here.
 * Returns false when it must not run. */
static bool begin_running(struct cv_job *job) {
    if (job->registered && atomic_load(&job->suspend) && !atomic_load(&job->cancel)) {
        suspend(job);
        return false;
    }
    if (!job->registered && atomic_load(&aborting))
        atomic_store(&job->cancel, true); /* drained: unlisted queued work ends unrun */
    pthread_mutex_lock(&job->mu);
    bool go = !atomic_load(&job->cancel) && !job->terminal && !job->ending;
    if (go) {
        job->started_ms = cv_now_ms();
        job->state = CV_JOB_STATE_RUNNING;
        if (job->started_unix_ms == 0)
            job->started_unix_ms = cv_now_unix_ms();
    }
    pthread_mutex_unlock(&job->mu);
    if (!go)
        end_unstarted(job);
    return go;
}

static void run_corr2d(struct cv_job *job, int n_threads) {
    double t0 = cv_now_ms();
    if (!begin_running(job))
        return;
    struct cv_corr2d_request *r = &job->corr2d;
    /* The kernels poll job->cancel between row blocks: DELETE, a client that leaves and the
     * drain stop a large corr2d within a block, not after it. */
    job->status = cv_corr2d_forward_cancellable(&r->x, &r->k, r->bias, &r->geom, &r->y, n_threads,
                                                &job->cancel);
    job->elapsed_ms = cv_now_ms() - t0;
    if (job->status == CV_ECANCELED) {
        char done[160];
        snprintf(done, sizeof done,
                 "{\"event\":\"done\",\"status\":\"cancelled\",\"elapsed_ms\":%.3f}",
                 job->elapsed_ms);
        finish(job, CV_JOB_STATE_CANCELLED, "done", strdup(done), 0, NULL, NULL, NULL);
        return;
    }
    bool ok = job->status == CV_OK;
    if (ok && job->registered && !cv_tensor_all_finite(&r->y)) {
        static const char detail[] = "the output overflowed float32 (an element is infinite or "
                                     "NaN); scale the input or kernel down";
        size_t len = 0;
        char *json = cv_api_event_error_dump("non_finite_output", detail, &len);
        finish(job, CV_JOB_STATE_FAILED, "error", json, len, NULL, "non_finite_output", detail);
        return;
    }
    /* A synchronous /corr2d renders its reply on the connection; a listed job stores its
     * result for GET /jobs/{id}. */
    char *result = ok && job->registered ? cv_api_corr2d_reply_dump(r, NULL) : NULL;
    char done[160];
    snprintf(done, sizeof done, "{\"event\":\"done\",\"status\":\"%s\",\"elapsed_ms\":%.3f}",
             ok ? "succeeded" : "failed", job->elapsed_ms);
    finish(job, ok ? CV_JOB_STATE_SUCCEEDED : CV_JOB_STATE_FAILED, ok ? "done" : "error",
           strdup(done), 0, result, ok ? NULL : "internal", ok ? NULL : cv_status_str(job->status));
}

struct train_ctx {
    struct cv_job *job;
    double t0;
};

/* A checkpoint of the state after step s (on the worker; the writer commits it). */
static void take_checkpoint(struct train_ctx *ctx, const struct cv_train_step *s) {
    struct cv_job *job = ctx->job;
    struct cv_persist_ckpt c = {
        .step = s->step,
        .weight = *s->weight,
        .bias = (float *)s->bias,
        .n_bias = s->n_bias,
        .optim_t = s->optim->t,
        .buf1 = s->optim->buf1,
        .buf2 = s->optim->buf2,
        .n_optim = s->optim->n,
        .losses = job->losses,
        .n_losses = s->step,
        .elapsed_ms = job->elapsed_before + (cv_now_ms() - ctx->t0),
    };
    size_t len = 0;
    unsigned char *blob = cv_persist_checkpoint(&c, &len);
    if (blob == NULL)
        return;
    pthread_mutex_lock(&job->mu);
    free(job->ckpt);
    job->ckpt = blob;
    job->ckpt_len = len;
    job->ckpt_step = s->step;
    pthread_mutex_unlock(&job->mu);
    job->last_ckpt_ms = cv_now_ms();
}

/* Step callback on the worker: records the loss, emits reported steps, checkpoints, honours
 * cancel and suspend. Never waits on the disk. */
static bool on_step(const struct cv_train_step *s, void *user) {
    struct train_ctx *ctx = user;
    struct cv_job *job = ctx->job;
    const struct cv_train_request *r = &job->train;
    job->losses[s->step - 1] = s->loss;
    char *warning = NULL;
    size_t warning_len = 0;
    if (s->step == 1)
        job->first_loss = s->loss;
    else if (!job->warned_rising && job->first_loss > 0 && s->loss > 1e3 * job->first_loss) {
        /* Not an error (a loss may climb and recover), but never a silent 4.8e9. */
        job->warned_rising = true;
        warning = cv_api_event_warning_dump(
            "loss_rising", s->step, s->loss, job->first_loss,
            "the loss grew more than 1000x over its first value; the lr is probably too large",
            &warning_len);
    }
    bool last = s->step == s->steps || (r->params.has_stop_loss && s->loss <= r->params.stop_loss);
    char *json = NULL;
    size_t len = 0;
    if (s->step % r->report_every == 0 || last)
        json = cv_api_event_step_dump(s, job->elapsed_before + cv_now_ms() - ctx->t0, &len);
    bool suspending = job->resumable && atomic_load(&job->suspend);
    if (job->registered && job->resumable &&
        (suspending || (cv_srv.cfg.checkpoint_every > 0 &&
                        cv_now_ms() - job->last_ckpt_ms >= cv_srv.cfg.checkpoint_every * 1e3)))
        take_checkpoint(ctx, s);
    pthread_mutex_lock(&job->mu);
    job->step = s->step;
    job->last_loss = s->loss;
    job->progress_dirty = true;
    if (warning != NULL)
        push_locked(job, "warning", warning, warning_len);
    if (json != NULL)
        push_locked(job, "step", json, len);
    pthread_mutex_unlock(&job->mu);
    if (job->registered)
        cv_writer_kick();
    cv_metrics_train_step();
    return !atomic_load(&job->cancel) && !suspending && !atomic_load(&job->fenced);
}

/* The result object of a finished training (the "stream": false reply), for listed jobs. */
static char *train_result(struct cv_job *job, const char *status) {
    if (!job->registered)
        return NULL;
    return cv_api_train_reply_dump(&job->train, status, &job->result, job->losses,
                                   job->result.steps_done, job->elapsed_ms, NULL);
}

/* Loads a resumed job's checkpoint into its tensors; fills *start. False when the checkpoint
 * does not fit the request (then the run starts over from step 0). */
static bool apply_resume(struct cv_job *job, struct cv_train_start *start) {
    struct cv_persist_ckpt *c = job->resume;
    struct cv_train_request *r = &job->train;
    int64_t nw = cv_tensor_numel(&r->weight);
    int64_t nb = r->bias ? r->weight.n : 0;
    bool ok = c->weight.n == r->weight.n && c->weight.c == r->weight.c &&
              c->weight.h == r->weight.h && c->weight.w == r->weight.w && c->n_bias == nb &&
              (c->n_optim == 0 || c->n_optim == nw + nb) && c->step < r->params.steps &&
              c->n_losses == c->step;
    if (!ok)
        return false;
    memcpy(r->weight.data, c->weight.data, (size_t)nw * sizeof(float));
    if (nb > 0)
        memcpy(r->bias, c->bias, (size_t)nb * sizeof(float));
    if (c->step > 0)
        memcpy(job->losses, c->losses, (size_t)c->step * sizeof(double));
    *start = (struct cv_train_start){c->step, c->optim_t, c->buf1, c->buf2};
    job->elapsed_before = c->elapsed_ms;
    return true;
}

static void run_train(struct cv_job *job, int n_threads) {
    struct cv_train_request *r = &job->train;
    size_t len = 0;
    char *json;
    if (!begin_running(job))
        return;
    struct train_ctx ctx = {job, cv_now_ms()};
    job->last_ckpt_ms = ctx.t0;
    r->params.n_threads = n_threads;
    struct cv_train_start start;
    bool resumed = job->resume != NULL && apply_resume(job, &start);
    job->status = cv_train_resume(&r->params, &r->x, &r->y, &r->weight, r->bias,
                                  resumed ? &start : NULL, on_step, &ctx, &job->result);
    job->elapsed_ms = job->elapsed_before + cv_now_ms() - ctx.t0;
    if (job->status == CV_ECANCELED && atomic_load(&job->fenced)) {
        /* Another attempt owns the job now: stop quietly, write nothing. */
        pthread_mutex_lock(&job->mu);
        job->terminal = true;
        pthread_cond_broadcast(&job->cond);
        pthread_mutex_unlock(&job->mu);
        registry_remove(job);
        return;
    }
    if (job->status == CV_ECANCELED && !atomic_load(&job->cancel) && job->resumable &&
        atomic_load(&job->suspend)) {
        suspend(job);
        return;
    }
    switch (job->status) {
    case CV_OK:
        json = cv_api_event_done_dump(r, "succeeded", &job->result, job->elapsed_ms, &len);
        finish(job, CV_JOB_STATE_SUCCEEDED, "done", json, len, train_result(job, "succeeded"), NULL,
               NULL);
        break;
    case CV_ECANCELED:
        json = cv_api_event_done_dump(r, "cancelled", &job->result, job->elapsed_ms, &len);
        finish(job, CV_JOB_STATE_CANCELLED, "done", json, len, train_result(job, "cancelled"), NULL,
               NULL);
        break;
    case CV_EDIVERGED: {
        char detail[160];
        snprintf(detail, sizeof detail,
                 "training diverged at step %d: the loss or a parameter became NaN or infinite; "
                 "try a smaller lr",
                 (int)job->result.steps_done + 1);
        json = cv_api_event_error_dump("diverged", detail, &len);
        finish(job, CV_JOB_STATE_FAILED, "error", json, len, NULL, "diverged", detail);
        break;
    }
    default:
        json = cv_api_event_error_dump("internal", cv_status_str(job->status), &len);
        finish(job, CV_JOB_STATE_FAILED, "error", json, len, NULL, "internal",
               cv_status_str(job->status));
        break;
    }
}

/* Pool entry point: runs the job, then drops the pool's reference. */
static void job_main(void *arg, int n_threads) {
    struct cv_job *job = arg;
    if (job->kind == CV_JOB_KIND_TRAIN)
        run_train(job, n_threads);
    else
        run_corr2d(job, n_threads);
    if (!job->registered)
        inflight_remove(job);
    cv_job_unref(job);
    cv_dispatch_kick(); /* a worker is free: claim the next queued job */
}

int cv_job_submit(struct cv_job *job, struct cv_pool *pool) {
    cv_job_ref(job);
    if (!job->registered)
        inflight_add(job);
    int rc = cv_pool_submit(pool, job_main, job);
    if (rc != CV_OK) {
        if (!job->registered)
            inflight_remove(job);
        cv_job_unref(job);
    }
    return rc;
}
