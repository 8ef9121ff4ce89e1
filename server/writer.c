/* The store's two background threads.
 *
 * The writer: the compute loop never waits on the disk. Workers append step events and
 * checkpoints to their job in memory and kick this thread, which commits everything pending,
 * for every live job, in ONE transaction (group commit), at most every MIN_BATCH_MS (so a
 * fast training is committed ~200 times a second, not once a step); readers are woken after
 * each commit and send only committed events. It also renews the leases of the jobs this
 * process runs (a cancel requested elsewhere arrives here), and runs retention (--job-ttl) in
 * small batches.
 *
 * The dispatcher: the claim loop. It claims queued jobs (and jobs whose runner died) from the
 * store whenever the pool has room, decides what a job's attempt means (resume from its
 * checkpoint, process_lost for an orphaned /train, too_many_attempts), and submits it.
 *
 * Lock order: writer_mu, then the registry, then a job's mu. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define MIN_BATCH_MS    5.0 /* group commit: at most one batch per 5 ms */
#define TICK_MS         200 /* the writer wakes at least this often (renewals, retention) */
#define RETAIN_EVERY_MS 1000.0
#define SWEEP_EVERY_MS  1000.0 /* every waiting job looked up (notes name the rest at once) */
#define RETAIN_BATCH    200    /* jobs per retention transaction */
#define MAX_LIVE        4096   /* jobs one batch looks at */
#define KEEP_COMMITTED  512    /* committed events a running job keeps in memory for followers */
#define CLAIM_MAX       16     /* jobs one claim takes at most */

static pthread_mutex_t writer_mu = PTHREAD_MUTEX_INITIALIZER; /* the writer lock */
static pthread_mutex_t kick_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards the flags below */
static pthread_cond_t kick_cond;
static bool writer_kicked, dispatch_kicked, stopping;
static pthread_t writer_thread, dispatch_thread;
static bool started;
static atomic_bool trim_wanted;
static atomic_bool sweep_wanted;     /* a job accepted here was claimed elsewhere: sweep now */
static atomic_bool sweep_all_wanted; /* notes may have been missed: look every job up */
/* Finished jobs in the store as far as this process knows (set at start, + each end, - each
 * deletion), so that retention after a job's end costs nothing while under --job-history. */
static atomic_llong finished_count;

void cv_writer_lock(void) {
    pthread_mutex_lock(&writer_mu);
}

void cv_writer_unlock(void) {
    pthread_mutex_unlock(&writer_mu);
}

void cv_writer_kick(void) {
    pthread_mutex_lock(&kick_mu);
    if (!writer_kicked) {
        writer_kicked = true;
        pthread_cond_broadcast(&kick_cond);
    }
    pthread_mutex_unlock(&kick_mu);
}

void cv_dispatch_kick(void) {
    pthread_mutex_lock(&kick_mu);
    dispatch_kicked = true;
    pthread_cond_broadcast(&kick_cond);
    pthread_mutex_unlock(&kick_mu);
}

/* Waits on kick_cond until *flag or stopping or ms pass; clears *flag. kick_mu not held. */
static void wait_kick(bool *flag, double ms) {
    const struct timespec deadline = cv_deadline_ms(ms);
    pthread_mutex_lock(&kick_mu);
    while (!*flag && !stopping)
        if (pthread_cond_timedwait(&kick_cond, &kick_mu, &deadline) != 0)
            break;
    *flag = false;
    pthread_mutex_unlock(&kick_mu);
}

static void sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6)};
    nanosleep(&ts, NULL);
}

void cv_store_health(int status) {
    bool ok =
        status != CV_STORE_UNAVAILABLE && status != CV_STORE_NOMEM && status != CV_STORE_CORRUPT;
    if (!ok)
        cv_metrics_store_error();
    bool was = atomic_exchange(&cv_srv.store_ok, ok);
    if (was == ok)
        return;
    if (ok) {
        cv_log_msg("info", "store available again", NULL);
    } else {
        char extra[600];
        size_t n = (size_t)snprintf(extra, sizeof extra, "\"reason\":\"");
        n = cv_log_json_escape(extra, sizeof extra, n, cv_store_errmsg());
        snprintf(extra + n, sizeof extra - n, "\"");
        cv_log_msg("error", "store unavailable", extra);
    }
}

/* ---- group commit ------------------------------------------------------------------------- */

/* What one job contributes to a batch: copies, so the worker can go on appending. */
struct pending {
    struct cv_job *job; /* a reference */
    struct cv_store_event *ev;
    size_t n_ev;
    unsigned char *ckpt; /* taken from the job; given back if the commit fails */
    size_t ckpt_len;
    int32_t ckpt_step;
};

static void pending_free(struct pending *p) {
    for (size_t i = 0; i < p->n_ev; i++)
        free(p->ev[i].body);
    free(p->ev);
    free(p->ckpt);
}

/* Collects what the job has not committed (mu taken here). False when nothing is pending. */
static bool collect(struct cv_job *job, struct pending *p, struct cv_store_append *item) {
    memset(p, 0, sizeof *p);
    pthread_mutex_lock(&job->mu);
    if (job->terminal || job->ending || job->attempt == 0 || atomic_load(&job->fenced)) {
        pthread_mutex_unlock(&job->mu);
        return false;
    }
    size_t first = (size_t)(job->written_seq + 1 - job->base_seq);
    size_t n = job->n_events > first ? job->n_events - first : 0;
    if (n > 0) {
        p->ev = calloc(n, sizeof *p->ev);
        for (size_t i = 0; p->ev != NULL && i < n; i++) {
            const struct cv_job_event *e = &job->events[first + i];
            p->ev[i] = (struct cv_store_event){job->written_seq + 1 + (int64_t)i, 0,
                                               malloc(e->len + 1), e->len};
            if (p->ev[i].body == NULL) {
                n = i; /* commit what could be copied; the rest next time */
                break;
            }
            memcpy(p->ev[i].body, e->json, e->len + 1);
        }
        p->n_ev = p->ev ? n : 0;
    }
    p->ckpt = job->ckpt;
    p->ckpt_len = job->ckpt_len;
    p->ckpt_step = job->ckpt_step;
    job->ckpt = NULL;
    bool progress = job->progress_dirty;
    job->progress_dirty = false;
    *item = (struct cv_store_append){
        .job_id = job->id,
        .attempt = job->attempt,
        .events = p->ev,
        .n_events = p->n_ev,
        .has_progress = progress,
        .step = job->step,
        .loss = job->last_loss,
        .elapsed_ms = NAN,
        .checkpoint = p->ckpt,
        .checkpoint_len = p->ckpt_len,
        .checkpoint_step = p->ckpt_step,
    };
    pthread_mutex_unlock(&job->mu);
    if (p->n_ev == 0 && p->ckpt == NULL && !progress) {
        pending_free(p);
        return false;
    }
    p->job = cv_job_ref(job);
    return true;
}

/* After the commit: advance written_seq, drop committed events from memory, wake readers; or
 * put things back when the commit failed. */
static void settle(struct pending *p, const struct cv_store_append *item) {
    struct cv_job *job = p->job;
    pthread_mutex_lock(&job->mu);
    if (item->status == CV_STORE_OK) {
        if (p->n_ev > 0) {
            job->written_seq = p->ev[p->n_ev - 1].seq;
            /* Committed events live in the store now; the newest KEEP_COMMITTED stay here too,
             * so live followers (a commit or two behind) read memory, not the database, and
             * readers further behind fetch them from the store. */
            size_t committed = (size_t)(job->written_seq + 1 - job->base_seq);
            size_t drop = committed > KEEP_COMMITTED ? committed - KEEP_COMMITTED : 0;
            for (size_t i = 0; i < drop; i++)
                free(job->events[i].json);
            memmove(job->events, job->events + drop,
                    (job->n_events - drop) * sizeof job->events[0]);
            job->n_events -= drop;
            job->base_seq += (int64_t)drop;
        }
        pthread_cond_broadcast(&job->cond);
    } else {
        if (p->ckpt != NULL && job->ckpt == NULL) { /* retry it unless a newer one came */
            job->ckpt = p->ckpt;
            job->ckpt_len = p->ckpt_len;
            job->ckpt_step = p->ckpt_step;
            p->ckpt = NULL;
        }
        job->progress_dirty = true;
    }
    pthread_mutex_unlock(&job->mu);
    if (item->status == CV_STORE_FENCED) {
        char extra[120];
        snprintf(extra, sizeof extra, "\"job\":\"%s\"", job->id);
        cv_log_msg("warn", "job taken over by another attempt: stopping it here", extra);
        atomic_store(&job->fenced, true);
        cv_job_cancel(job);
    }
}

/* One group commit over the given jobs (writer lock held). Returns the store status. */
static int commit_jobs(struct cv_job **jobs, size_t n) {
    struct pending *p = calloc(n ? n : 1, sizeof *p);
    struct cv_store_append *items = calloc(n ? n : 1, sizeof *items);
    if (p == NULL || items == NULL) {
        free(p);
        free(items);
        return CV_STORE_NOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (collect(jobs[i], &p[m], &items[m]))
            m++;
    int st = CV_STORE_OK;
    if (m > 0) {
        st = cv_store_append(cv_srv.store, items, m);
        cv_store_health(st);
        for (size_t i = 0; i < m; i++) {
            settle(&p[i], &items[i]);
            pending_free(&p[i]);
            cv_job_unref(p[i].job);
        }
    }
    free(p);
    free(items);
    return st;
}

int cv_writer_flush_job(struct cv_job *job) {
    cv_writer_lock();
    int st = commit_jobs(&job, 1);
    cv_writer_unlock();
    return st;
}

static int batch(void) {
    struct cv_job **jobs = malloc(MAX_LIVE * sizeof *jobs);
    if (jobs == NULL)
        return CV_STORE_NOMEM;
    size_t n = cv_jobs_snapshot(jobs, MAX_LIVE);
    cv_writer_lock();
    int st = commit_jobs(jobs, n);
    cv_writer_unlock();
    for (size_t i = 0; i < n; i++)
        cv_job_unref(jobs[i]);
    free(jobs);
    return st;
}

/* ---- leases -----------------------------------------------------------------------------------
 */

static void renew_all(void) {
    struct cv_job **jobs = malloc(MAX_LIVE * sizeof *jobs);
    if (jobs == NULL)
        return;
    size_t n = cv_jobs_snapshot(jobs, MAX_LIVE);
    int64_t lease_ms = (int64_t)(cv_srv.cfg.lease * 1000);
    for (size_t i = 0; i < n; i++) {
        struct cv_job *job = jobs[i];
        pthread_mutex_lock(&job->mu);
        int32_t attempt = job->attempt;
        bool live = !job->terminal && attempt > 0 && !atomic_load(&job->fenced);
        pthread_mutex_unlock(&job->mu);
        if (live) {
            bool cancel = false;
            int st =
                cv_store_job_renew(cv_srv.store, job->id, attempt, cv_srv.owner, lease_ms, &cancel);
            cv_store_health(st);
            if (st == CV_STORE_OK && cancel)
                cv_job_cancel(job);
            if (st == CV_STORE_FENCED) {
                atomic_store(&job->fenced, true);
                cv_job_cancel(job);
            }
        }
        cv_job_unref(job);
    }
    free(jobs);
}

/* ---- retention --------------------------------------------------------------------------------
 */

/* Deletes finished jobs beyond --job-history or older than --job-ttl, at most `rounds` small
 * transactions at a time so the writer never stalls long. */
static void retain(int rounds) {
    int64_t ttl_ms = (int64_t)(cv_srv.cfg.job_ttl * 1000);
    for (int i = 0; i < rounds; i++) {
        int deleted = 0;
        int st =
            cv_store_retain(cv_srv.store, cv_srv.cfg.job_history, ttl_ms, RETAIN_BATCH, &deleted);
        cv_store_health(st);
        if (st != CV_STORE_OK || deleted < RETAIN_BATCH)
            break;
    }
}

void cv_writer_retain_now(void) {
    int deleted = 0;
    atomic_store(&trim_wanted, true); /* a job's log was freed: malloc_trim soon */
    if (atomic_fetch_add(&finished_count, 1) + 1 <= cv_srv.cfg.job_history)
        return;
    /* Exact --job-history for the next client: one small transaction right after a job ends. */
    cv_store_retain(cv_srv.store, cv_srv.cfg.job_history, 0, 16, &deleted);
    atomic_fetch_sub(&finished_count, deleted);
}

/* ---- the writer thread ------------------------------------------------------------------------
 */

static void *writer_main(void *arg) {
    (void)arg;
    double last_batch = 0, last_renew = cv_now_ms(), last_retain = 0, last_sweep = 0;
    double renew_every = cv_srv.cfg.lease * 1000.0 / 3.0;
    for (;;) {
        wait_kick(&writer_kicked, TICK_MS);
        pthread_mutex_lock(&kick_mu);
        bool stop = stopping;
        pthread_mutex_unlock(&kick_mu);
        double since = cv_now_ms() - last_batch;
        if (!stop && since < MIN_BATCH_MS)
            sleep_ms(MIN_BATCH_MS - since); /* let a batch gather */
        last_batch = cv_now_ms();
        if (batch() == CV_STORE_UNAVAILABLE)
            sleep_ms(200); /* the disk is full or the database busy: retry at a slower pace */
        if (cv_now_ms() - last_renew >= renew_every) {
            renew_all();
            last_renew = cv_now_ms();
        }
        bool all =
            atomic_exchange(&sweep_all_wanted, false) || cv_now_ms() - last_sweep >= SWEEP_EVERY_MS;
        if (atomic_exchange(&sweep_wanted, false) || all)
            cv_jobs_forget_taken(all);
        if (all)
            last_sweep = cv_now_ms();
        if (cv_now_ms() - last_retain >= RETAIN_EVERY_MS) {
            retain(5);
            last_retain = cv_now_ms();
        }
        if (atomic_exchange(&trim_wanted, false))
            malloc_trim(0); /* finished jobs freed their logs: give the pages back */
        if (stop)
            break;
    }
    batch(); /* last flush */
    return NULL;
}

/* ---- the dispatcher -----------------------------------------------------------------------------
 */

/* Prepares a claimed job for a resumed attempt: its checkpoint and the "resumed" event. */
static void prepare_resume(struct cv_job *job, const struct cv_store_job *row) {
    int32_t step = 0, attempt;
    unsigned char *blob = NULL;
    size_t len = 0;
    int st = job->kind == CV_JOB_KIND_TRAIN
                 ? cv_store_checkpoint_get(cv_srv.store, row->id, &step, &attempt, &blob, &len)
                 : CV_STORE_NOT_FOUND;
    if (st == CV_STORE_OK) {
        struct cv_persist_ckpt *c = calloc(1, sizeof *c);
        if (c != NULL && cv_persist_checkpoint_decode(blob, len, c) == CV_OK) {
            job->resume = c;
            step = c->step;
        } else {
            free(c);
            step = 0;
            cv_log_msg("warn", "a checkpoint could not be read: the job starts over", NULL);
        }
    } else {
        step = 0;
    }
    free(blob);
    char ev[128];
    snprintf(ev, sizeof ev, "{\"event\":\"resumed\",\"step\":%d,\"attempt\":%d}", (int)step,
             (int)row->attempt);
    pthread_mutex_lock(&job->mu);
    job->step = step;
    job->last_loss = step > 0 && job->resume ? job->resume->losses[step - 1] : NAN;
    pthread_mutex_unlock(&job->mu);
    cv_job_push_event(job, "resumed", strdup(ev), 0);
    char extra[160];
    snprintf(extra, sizeof extra, "\"job\":\"%s\",\"step\":%d,\"attempt\":%d", job->id, (int)step,
             (int)row->attempt);
    cv_log_msg("info", "job resumed", extra);
    cv_metrics_store_resume();
}

/* Handles one claimed row. */
static void dispatch(struct cv_store_job *row) {
    if (row->attempt > 1 && !row->resumable) {
        cv_job_end_unrun(row, "cancelled", "process_lost",
                         "the convd process that ran this /train stopped while its client was "
                         "attached; submit it again (POST /jobs jobs resume instead)");
        struct cv_job *live = cv_jobs_find(row->id);
        if (live != NULL) { /* cannot happen in one process; keep the registry clean anyway */
            cv_job_cancel(live);
            cv_job_unref(live);
        }
        return;
    }
    if (row->attempt > cv_srv.cfg.max_attempts) {
        char detail[200];
        snprintf(detail, sizeof detail,
                 "the job was started %d times (--max-attempts %d) without finishing",
                 (int)row->attempt - 1, cv_srv.cfg.max_attempts);
        cv_job_end_unrun(row, "failed", "too_many_attempts", detail);
        return;
    }
    struct cv_job *job = cv_jobs_find(row->id);
    if (job == NULL) {
        if (cv_job_from_row(row, &job) != CV_OK) {
            cv_job_end_unrun(row, "failed", "internal",
                             "the stored request could not be read back");
            return;
        }
    }
    pthread_mutex_lock(&job->mu);
    job->attempt = row->attempt;
    pthread_mutex_unlock(&job->mu);
    if (atomic_load(&job->cancel)) {
        /* DELETE came while the claim was under way: end it now, claimed and unstarted. */
        cv_job_cancel(job);
        cv_job_unref(job);
        return;
    }
    if (row->attempt > 1)
        prepare_resume(job, row);
    /* The pool may have filled up since the claim (a /train or /corr2d of a connection took
     * the room): the job is ours now, so wait for room rather than hand it back, which would
     * count as an attempt. */
    while (cv_job_submit(job, cv_srv.pool) == CV_EAGAIN)
        sleep_ms(5);
    cv_job_unref(job);
}

static void *dispatch_main(void *arg) {
    (void)arg;
    int64_t lease_ms = (int64_t)(cv_srv.cfg.lease * 1000);
    for (;;) {
        pthread_mutex_lock(&kick_mu);
        bool stop = stopping;
        pthread_mutex_unlock(&kick_mu);
        if (stop)
            break;
        /* Claim only what the workers will take soon: at most one waiting job per worker, so
         * the rest stays in the store's queue (cancellable there; another replica's to take). */
        int waiting = 0, running = 0;
        cv_pool_counts(cv_srv.pool, &waiting, &running);
        if (atomic_load(&cv_srv.draining) || !cv_pool_admits(cv_srv.pool) ||
            waiting >= cv_srv.cfg.workers) {
            wait_kick(&dispatch_kicked, 100);
            continue;
        }
        /* As many as there is room for, in one claim (one statement on PostgreSQL). */
        struct cv_store_job rows[CLAIM_MAX];
        size_t room = (size_t)(cv_srv.cfg.workers - waiting), n = 0;
        if (room > CLAIM_MAX)
            room = CLAIM_MAX;
        double t0 = cv_now_ms();
        int st = cv_store_job_claim_many(cv_srv.store, cv_srv.owner, lease_ms, room, rows, &n);
        if (n > 0)
            cv_metrics_store_claim((cv_now_ms() - t0) / 1000.0);
        for (size_t i = 0; i < n; i++) {
            dispatch(&rows[i]);
            cv_store_job_free(&rows[i]);
        }
        if (st == CV_STORE_OK)
            continue; /* maybe more */
        if (st != CV_STORE_NOT_FOUND)
            cv_store_health(st);
        /* Nothing to claim: sleep until a job is queued or a worker frees up; a slow poll
         * catches leases that expire without anyone saying so. */
        wait_kick(&dispatch_kicked, st == CV_STORE_NOT_FOUND ? 1000 : 500);
    }
    return NULL;
}

/* ---- notifications ---------------------------------------------------------------------------
 */

static pthread_mutex_t note_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t note_cond;      /* CLOCK_MONOTONIC, set up in cv_writer_start */
static struct cv_note_watch *watches; /* guarded by note_mu */

void cv_store_watch_add(struct cv_note_watch *w, const char *id) {
    snprintf(w->id, sizeof w->id, "%s", id);
    pthread_mutex_lock(&note_mu);
    w->gen = 0;
    w->next = watches;
    watches = w;
    pthread_mutex_unlock(&note_mu);
}

void cv_store_watch_remove(struct cv_note_watch *w) {
    pthread_mutex_lock(&note_mu);
    for (struct cv_note_watch **p = &watches; *p != NULL; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    pthread_mutex_unlock(&note_mu);
}

uint64_t cv_store_watch_gen(struct cv_note_watch *w) {
    pthread_mutex_lock(&note_mu);
    uint64_t g = w->gen;
    pthread_mutex_unlock(&note_mu);
    return g;
}

bool cv_store_watch_wait(struct cv_note_watch *w, uint64_t gen, int ms) {
    const struct timespec deadline = cv_deadline_ms(ms);
    pthread_mutex_lock(&note_mu);
    while (w->gen == gen)
        if (pthread_cond_timedwait(&note_cond, &note_mu, &deadline) != 0)
            break;
    bool noted = w->gen != gen;
    pthread_mutex_unlock(&note_mu);
    return noted;
}

/* Store notifications (this process's writes, and with postgres every replica's): a queued job
 * wakes the dispatcher, a cancel reaches its runner here (a DELETE on another replica), events
 * and state changes wake the readers that follow jobs not live here. Runs on the store's
 * thread: quick, and no store calls. */
static void on_note(void *user, enum cv_store_note note, const char *job_id, int64_t seq) {
    (void)user;
    if (note == CV_STORE_NOTE_QUEUED) {
        cv_dispatch_kick();
        if (job_id != NULL)
            return;
        /* no id: the store may have missed notes (a reconnect): wake every reader too, and
         * look up every job accepted here */
        atomic_store(&sweep_all_wanted, true);
        cv_writer_kick();
    }
    if (note == CV_STORE_NOTE_STATE && job_id != NULL) {
        /* A job this process accepted may have been claimed (or ended) by another replica:
         * let the writer look now rather than at its next sweep, so its readers move to the
         * store at once. */
        struct cv_job *job = cv_jobs_find(job_id);
        if (job != NULL) {
            pthread_mutex_lock(&job->mu);
            bool waiting = job->attempt == 0 && !job->terminal;
            pthread_mutex_unlock(&job->mu);
            if (waiting && seq == CV_STORE_SEQ_ELSEWHERE) {
                cv_jobs_forget(job); /* another replica claimed or ended it: no need to ask */
            } else if (waiting) {
                /* our own claim (the dispatcher sets the attempt next) or our own DELETE: the
                 * writer looks it up in the store */
                atomic_store(&job->noted, true);
                atomic_store(&sweep_wanted, true);
                cv_writer_kick();
            }
            cv_job_unref(job);
        }
    }
    if (note == CV_STORE_NOTE_CANCEL && job_id != NULL) {
        struct cv_job *job = cv_jobs_find(job_id);
        if (job != NULL) {
            cv_job_cancel(job);
            cv_job_unref(job);
        }
    }
    /* Readers of the job named (every reader when none is named). */
    bool woke = false;
    pthread_mutex_lock(&note_mu);
    for (struct cv_note_watch *w = watches; w != NULL; w = w->next)
        if (job_id == NULL || strcmp(w->id, job_id) == 0) {
            w->gen++;
            woke = true;
        }
    if (woke)
        pthread_cond_broadcast(&note_cond);
    pthread_mutex_unlock(&note_mu);
}

int cv_writer_start(void) {
    int64_t all = 0, queued = 0, running = 0;
    cv_store_job_count(cv_srv.store, -1, &all);
    cv_store_job_count(cv_srv.store, CV_STORE_JOB_QUEUED, &queued);
    cv_store_job_count(cv_srv.store, CV_STORE_JOB_RUNNING, &running);
    atomic_store(&finished_count, all - queued - running);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&kick_cond, &attr);
    pthread_cond_init(&note_cond, &attr);
    pthread_condattr_destroy(&attr);
    cv_store_set_listener(cv_srv.store, on_note, NULL);
    if (pthread_create(&writer_thread, NULL, writer_main, NULL) != 0)
        return CV_ENOMEM;
    if (pthread_create(&dispatch_thread, NULL, dispatch_main, NULL) != 0) {
        pthread_mutex_lock(&kick_mu);
        stopping = true;
        pthread_cond_broadcast(&kick_cond);
        pthread_mutex_unlock(&kick_mu);
        pthread_join(writer_thread, NULL);
        return CV_ENOMEM;
    }
    started = true;
    return CV_OK;
}

void cv_writer_stop(void) {
    pthread_mutex_lock(&kick_mu);
    stopping = true;
    pthread_cond_broadcast(&kick_cond);
    pthread_mutex_unlock(&kick_mu);
    if (started) {
        pthread_join(dispatch_thread, NULL);
        pthread_join(writer_thread, NULL);
        started = false;
    }
}
