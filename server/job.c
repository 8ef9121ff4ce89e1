/* Jobs: one corr2d or training run, its state, and its append-only event log.
 *
 * A job is shared by reference count between the connection that made it, the pool (until the
 * worker is done) and stream readers. `mu` guards state and the event log; readers wait on
 * `cond`, which is broadcast on every append. The worker alone touches the request's tensors
 * while the job runs; others read results only after `terminal` is set under `mu`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "server.h"

/* ---- registry of registered jobs ----------------------------------------------------------- */

struct registry_node {
    struct cv_job *job; /* one reference */
    struct registry_node *next;
};

/* registry_mu guards the list (newest first) and history; taken before any job's mu, never
 * after, so the two locks never deadlock. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct registry_node *registry;
static int history = 100;

void cv_jobs_set_history(int n) {
    history = n;
}

static bool job_terminal(struct cv_job *job) {
    pthread_mutex_lock(&job->mu);
    bool t = job->terminal;
    pthread_mutex_unlock(&job->mu);
    return t;
}

/* Drops the oldest finished jobs beyond `history` (registry_mu held). */
static void evict_locked(void) {
    int finished = 0;
    for (struct registry_node **p = &registry; *p != NULL;) {
        struct registry_node *n = *p;
        if (job_terminal(n->job) && ++finished > history) {
            *p = n->next;
            cv_job_unref(n->job);
            free(n);
        } else {
            p = &n->next;
        }
    }
}

static void registry_add(struct cv_job *job) {
    struct registry_node *node = malloc(sizeof *node);
    if (node == NULL)
        return; /* the job still runs; it is only not listed */
    node->job = cv_job_ref(job);
    pthread_mutex_lock(&registry_mu);
    node->next = registry;
    registry = node;
    evict_locked();
    pthread_mutex_unlock(&registry_mu);
}

/* Removes a job that never ran (its submission failed). */
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
        cv_job_unref(found->job);
        free(found);
    }
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

size_t cv_jobs_list(int state, struct cv_job **out, size_t max) {
    size_t count = 0;
    pthread_mutex_lock(&registry_mu);
    for (struct registry_node *n = registry; n != NULL && count < max; n = n->next) {
        pthread_mutex_lock(&n->job->mu);
        bool match = state < 0 || (int)n->job->state == state;
        pthread_mutex_unlock(&n->job->mu);
        if (match)
            out[count++] = cv_job_ref(n->job);
    }
    pthread_mutex_unlock(&registry_mu);
    return count;
}

void cv_jobs_cancel_all(void) {
    pthread_mutex_lock(&registry_mu);
    for (struct registry_node *n = registry; n != NULL; n = n->next)
        cv_job_cancel(n->job);
    pthread_mutex_unlock(&registry_mu);
}

int cv_jobs_active(void) {
    int count = 0;
    pthread_mutex_lock(&registry_mu);
    for (struct registry_node *n = registry; n != NULL; n = n->next)
        count += !job_terminal(n->job);
    pthread_mutex_unlock(&registry_mu);
    return count;
}

const struct cv_api_job_meta *cv_job_meta(const struct cv_job *job) {
    return job->kind == CV_JOB_KIND_TRAIN ? &job->train.meta : &job->corr2d.meta;
}

void cv_job_view_locked(struct cv_job *job, struct cv_api_job_view *v, char times[3][40],
                        bool with_losses) {
    const double when[3] = {job->created_unix_ms, job->started_unix_ms, job->finished_unix_ms};
    const char *strs[3];
    for (int i = 0; i < 3; i++) {
        strs[i] = NULL;
        if (when[i] > 0) {
            cv_log_format_time(when[i], times[i], 40);
            strs[i] = times[i];
        }
    }
    *v = (struct cv_api_job_view){
        .id = job->id,
        .kind = job->kind == CV_JOB_KIND_TRAIN ? "train" : "corr2d",
        .status = cv_job_state_name(job->state),
        .created_at = strs[0],
        .started_at = strs[1],
        .finished_at = strs[2],
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
        .result_json = with_losses || job->result_brief_json == NULL ? job->result_json
                                                                     : job->result_brief_json,
        .error_code = job->error_code,
        .error_detail = job->error_code ? job->error_detail : NULL,
    };
    /* The rate over the steps done so far: what a client shows beside an ETA. */
    if (job->kind == CV_JOB_KIND_TRAIN && job->step > 0 && v->elapsed_ms > 0)
        v->steps_per_s = job->step / (v->elapsed_ms / 1000.0);
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

int cv_job_new(enum cv_job_kind kind, void *req, bool registered, struct cv_job **out) {
    *out = NULL;
    struct cv_job *job = calloc(1, sizeof *job);
    if (job == NULL)
        return CV_ENOMEM;
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        free(job);
        return CV_ENOMEM;
    }
    strcpy(job->id, "j-");
    for (int i = 0; i < 16; i++)
        snprintf(job->id + 2 + 2 * i, 3, "%02x", rnd[i]);
    if (kind == CV_JOB_KIND_TRAIN) {
        struct cv_train_request *tr = req;
        job->losses = calloc((size_t)tr->params.steps, sizeof *job->losses);
        if (job->losses == NULL) {
            free(job);
            return CV_ENOMEM;
        }
        job->train = *tr;
        memset(tr, 0, sizeof *tr);
    } else {
        struct cv_corr2d_request *cr = req;
        job->corr2d = *cr;
        memset(cr, 0, sizeof *cr);
    }
    job->kind = kind;
    job->registered = registered;
    if (registered) {
        job->params_json = kind == CV_JOB_KIND_TRAIN
                               ? cv_api_train_params_dump(&job->train, NULL)
                               : cv_api_corr2d_params_dump(&job->corr2d, NULL);
        if (job->params_json == NULL) {
            cv_api_corr2d_request_free(&job->corr2d);
            cv_api_train_request_free(&job->train);
            free(job->losses);
            free(job);
            return CV_ENOMEM;
        }
    }
    job->created_unix_ms = cv_now_unix_ms();
    job->last_loss = NAN;
    atomic_init(&job->refs, 1);
    atomic_init(&job->cancel, false);
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
    if (registered)
        registry_add(job);
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
    for (size_t i = 0; i < job->n_events; i++)
        free(job->events[i].json);
    free(job->events);
    free(job->losses);
    free(job->result_json);
    free(job->result_brief_json);
    free(job->params_json);
    cv_api_corr2d_request_free(&job->corr2d);
    cv_api_train_request_free(&job->train);
    pthread_mutex_destroy(&job->mu);
    pthread_cond_destroy(&job->cond);
    free(job);
}

static void finish_unstarted_locked(struct cv_job *job);

void cv_job_cancel(struct cv_job *job) {
    atomic_store(&job->cancel, true);
    pthread_mutex_lock(&job->mu);
    if (job->state == CV_JOB_STATE_RUNNING)
        job->state = CV_JOB_STATE_CANCELLING;
    else if (job->state == CV_JOB_STATE_QUEUED)
        finish_unstarted_locked(job); /* ends now; the worker that pops it skips it */
    pthread_cond_broadcast(&job->cond);
    pthread_mutex_unlock(&job->mu);
}

/* Appends under mu (held by the caller). */
static void push_locked(struct cv_job *job, const char *type, char *json, size_t len,
                        bool terminal) {
    static const char oom[] = "{\"event\":\"error\",\"status\":\"failed\",\"code\":\"internal\","
                              "\"detail\":\"out of memory\"}";
    if (json != NULL && len == 0)
        len = strlen(json);
    if (json == NULL) {
        json = strdup(oom);
        len = json ? strlen(json) : 0;
        type = "error";
    }
    if (job->n_events == job->cap_events) {
        size_t cap = job->cap_events ? 2 * job->cap_events : 16;
        struct cv_job_event *ev = realloc(job->events, cap * sizeof *ev);
        if (ev == NULL) {
            /* Keep the log consistent: a terminal event must land, so reuse the last slot. */
            if (!terminal || job->n_events == 0) {
                free(json);
                return;
            }
            free(job->events[--job->n_events].json);
        } else {
            job->events = ev;
            job->cap_events = cap;
        }
    }
    job->events[job->n_events++] = (struct cv_job_event){type, json, len};
    if (terminal)
        job->terminal = true;
    pthread_cond_broadcast(&job->cond);
}

void cv_job_push_event(struct cv_job *job, const char *type, char *json, size_t len,
                       bool terminal) {
    pthread_mutex_lock(&job->mu);
    push_locked(job, type, json, len, terminal);
    pthread_mutex_unlock(&job->mu);
}

bool cv_job_wait_terminal(struct cv_job *job, int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&job->mu);
    while (!job->terminal)
        if (pthread_cond_timedwait(&job->cond, &job->mu, &deadline) != 0)
            break;
    bool done = job->terminal;
    pthread_mutex_unlock(&job->mu);
    return done;
}

/* ---- running on a worker ------------------------------------------------------------------- */

/* Ends a job cancelled before it ran (mu held): state, result and terminal event at once.
 * Idempotent: a job already terminal is left alone. */
static void finish_unstarted_locked(struct cv_job *job) {
    if (job->terminal)
        return;
    job->status = CV_ECANCELED;
    job->state = CV_JOB_STATE_CANCELLED;
    job->finished_unix_ms = cv_now_unix_ms();
    char *json;
    size_t len = 0;
    if (job->kind == CV_JOB_KIND_TRAIN) {
        job->result = (struct cv_train_result){0, NAN, NAN, false};
        json = cv_api_event_done_dump(&job->train, "cancelled", &job->result, 0, &len);
        if (job->registered)
            job->result_json = cv_api_train_reply_dump(&job->train, "cancelled", &job->result,
                                                       job->losses, 0, 0, NULL);
        /* no steps: the brief result is the same text */
    } else {
        json = strdup("{\"event\":\"done\",\"status\":\"cancelled\"}");
    }
    push_locked(job, "done", json, len, true);
    cv_metrics_job_done(job->kind, CV_JOB_STATE_CANCELLED);
}

/* Marks the job running unless it was cancelled while queued (then it is ended here, if
 * cv_job_cancel has not already). Returns false when it must not run. */
static bool begin_running(struct cv_job *job) {
    pthread_mutex_lock(&job->mu);
    bool go = !atomic_load(&job->cancel) && !job->terminal;
    if (go) {
        job->started_ms = cv_now_ms();
        job->state = CV_JOB_STATE_RUNNING;
        job->started_unix_ms = cv_now_unix_ms();
    } else {
        finish_unstarted_locked(job);
    }
    pthread_mutex_unlock(&job->mu);
    return go;
}

/* Ends the job: its final state, result (registered jobs) and terminal event, in one step
 * under mu so that a reader never sees a terminal event without the result. */
static void finish(struct cv_job *job, enum cv_job_state state, const char *type, char *json,
                   size_t len, char *result_json, const char *error_code, const char *detail) {
    /* The resource leaves the losses out unless asked (?include=losses): a 42,000-step job's
     * losses are half a megabyte. */
    char *brief = NULL;
    if (result_json != NULL && job->kind == CV_JOB_KIND_TRAIN && job->result.steps_done > 0)
        brief = cv_api_train_reply_dump(
            &job->train, state == CV_JOB_STATE_SUCCEEDED ? "succeeded" : "cancelled", &job->result,
            NULL, job->result.steps_done, job->elapsed_ms, NULL);
    pthread_mutex_lock(&job->mu);
    job->state = state;
    job->finished_unix_ms = cv_now_unix_ms();
    job->result_json = result_json;
    job->result_brief_json = brief;
    job->error_code = error_code;
    if (detail != NULL)
        snprintf(job->error_detail, sizeof job->error_detail, "%s", detail);
    push_locked(job, type, json, len, true);
    pthread_mutex_unlock(&job->mu);
    cv_metrics_job_done(job->kind, state);
}

static void run_corr2d(struct cv_job *job, int n_threads) {
    double t0 = cv_now_ms();
    if (!begin_running(job))
        return;
    struct cv_corr2d_request *r = &job->corr2d;
    job->status = cv_corr2d_forward(&r->x, &r->k, r->bias, &r->geom, &r->y, n_threads);
    job->elapsed_ms = cv_now_ms() - t0;
    bool ok = job->status == CV_OK;
    /* A synchronous /corr2d renders its reply on the connection; a listed job keeps its
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

/* Step callback on the worker: records the loss, emits reported steps, honours cancel. */
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
        json = cv_api_event_step_dump(s, cv_now_ms() - ctx->t0, &len);
    pthread_mutex_lock(&job->mu);
    job->step = s->step;
    job->last_loss = s->loss;
    if (warning != NULL)
        push_locked(job, "warning", warning, warning_len, false);
    if (json != NULL)
        push_locked(job, "step", json, len, false);
    pthread_mutex_unlock(&job->mu);
    cv_metrics_train_step();
    return !atomic_load(&job->cancel);
}

/* The result object of a finished training (the "stream": false reply), for listed jobs. */
static char *train_result(struct cv_job *job, const char *status) {
    if (!job->registered)
        return NULL;
    return cv_api_train_reply_dump(&job->train, status, &job->result, job->losses,
                                   job->result.steps_done, job->elapsed_ms, NULL);
}

static void run_train(struct cv_job *job, int n_threads) {
    struct cv_train_request *r = &job->train;
    struct train_ctx ctx = {job, cv_now_ms()};
    size_t len = 0;
    char *json;
    if (!begin_running(job))
        return;
    r->params.n_threads = n_threads;
    job->status =
        cv_train_run(&r->params, &r->x, &r->y, &r->weight, r->bias, on_step, &ctx, &job->result);
    job->elapsed_ms = cv_now_ms() - ctx.t0;
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
    pthread_mutex_lock(&registry_mu);
    evict_locked(); /* one more finished job: keep the history bounded */
    pthread_mutex_unlock(&registry_mu);
    cv_job_unref(job);
}

int cv_job_submit(struct cv_job *job, struct cv_pool *pool) {
    cv_job_ref(job);
    int rc = cv_pool_submit(pool, job_main, job);
    if (rc != CV_OK) {
        if (job->registered)
            registry_remove(job);
        cv_job_unref(job);
    }
    return rc;
}
