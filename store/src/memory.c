/* The memory back end: today's behaviour behind the store interface, for throwaway runs and
 * tests. One mutex guards everything. It is bounded by BYTES (requests, results, event bodies,
 * checkpoints), not by job count: past memory_max_bytes the oldest finished jobs are dropped,
 * and when only live jobs are left a write fails with CV_STORE_NOMEM. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

struct mjob {
    struct cv_store_job row;   /* owns name, labels, params, request, result */
    struct cv_store_event *ev; /* owned bodies */
    size_t n_ev, cap_ev;
    unsigned char *ckpt;
    size_t ckpt_len;
    int32_t ckpt_step, ckpt_attempt;
    int64_t bytes; /* what this job counts against the budget */
};

struct mstore {
    struct cv_store base;
    pthread_mutex_t mu; /* guards every field below */
    struct mjob **jobs; /* oldest first (insertion order) */
    size_t n, cap;
    struct cv_store_kernel *kernels; /* owned, unordered */
    size_t n_kernels;
    int64_t bytes, max_bytes;
};

#define M(s) ((struct mstore *)(s))

static void mjob_free(struct mjob *j) {
    if (j == NULL)
        return;
    cv_store_job_free(&j->row);
    for (size_t i = 0; i < j->n_ev; i++)
        free(j->ev[i].body);
    free(j->ev);
    free(j->ckpt);
    free(j);
}

static int64_t row_bytes(const struct cv_store_job *r) {
    int64_t b = (int64_t)sizeof(struct mjob) + (int64_t)r->request_len + (int64_t)r->result_len;
    b += r->name ? (int64_t)strlen(r->name) : 0;
    b += r->labels_json ? (int64_t)strlen(r->labels_json) : 0;
    b += r->params_json ? (int64_t)strlen(r->params_json) : 0;
    return b;
}

static struct mjob *find_locked(struct mstore *m, const char *id, size_t *index) {
    for (size_t i = m->n; i-- > 0;)
        if (strcmp(m->jobs[i]->row.id, id) == 0) {
            if (index)
                *index = i;
            return m->jobs[i];
        }
    return NULL;
}

static void remove_at_locked(struct mstore *m, size_t i) {
    m->bytes -= m->jobs[i]->bytes;
    mjob_free(m->jobs[i]);
    memmove(&m->jobs[i], &m->jobs[i + 1], (m->n - i - 1) * sizeof m->jobs[0]);
    m->n--;
}

/* Makes room for `need` more bytes by dropping the oldest finished jobs (never `keep`).
 * Returns false when live jobs alone fill the budget. */
static bool reserve_locked(struct mstore *m, int64_t need, const struct mjob *keep) {
    for (size_t i = 0; i < m->n && m->bytes + need > m->max_bytes;) {
        if (m->jobs[i] != keep && cv_store_job_status_terminal(m->jobs[i]->row.status))
            remove_at_locked(m, i);
        else
            i++;
    }
    return m->bytes + need <= m->max_bytes;
}

/* Copies a row (deep) for a reader, with what flags asks for. */
static bool copy_row(struct cv_store_job *dst, const struct cv_store_job *src, unsigned flags) {
    *dst = *src;
    dst->name = dst->labels_json = dst->params_json = dst->result = NULL;
    dst->request = NULL;
    dst->request_len = dst->result_len = 0;
    bool ok = cv__store_dup(&dst->name, src->name) &&
              cv__store_dup(&dst->labels_json, src->labels_json) &&
              cv__store_dup(&dst->params_json, src->params_json);
    if (ok && (flags & CV_STORE_LOAD_REQUEST) && src->request) {
        dst->request = cv__store_memdup(src->request, src->request_len, &ok);
        dst->request_len = ok ? src->request_len : 0;
    }
    if (ok && (flags & CV_STORE_LOAD_RESULT) && src->result) {
        dst->result = cv__store_memdup(src->result, src->result_len, &ok);
        dst->result_len = ok ? src->result_len : 0;
    }
    if (!ok)
        cv_store_job_free(dst);
    return ok;
}

/* Appends events (copied; seqs already checked to continue the log). */
static int push_events_locked(struct mstore *m, struct mjob *j, const struct cv_store_event *ev,
                              size_t n, int32_t attempt) {
    if (n == 0)
        return CV_STORE_OK;
    if (ev[0].seq != j->row.last_seq + 1)
        return cv__store_fail(CV_STORE_INVALID, "event seq %lld does not follow %lld",
                              (long long)ev[0].seq, (long long)j->row.last_seq);
    int64_t need = 0;
    for (size_t i = 0; i < n; i++)
        need += (int64_t)ev[i].len + (int64_t)sizeof *ev;
    if (!reserve_locked(m, need, j))
        return cv__store_fail(CV_STORE_NOMEM, "memory store full (%lld bytes)",
                              (long long)m->max_bytes);
    if (j->n_ev + n > j->cap_ev) {
        size_t cap = j->cap_ev ? j->cap_ev : 16;
        while (cap < j->n_ev + n)
            cap *= 2;
        struct cv_store_event *e = realloc(j->ev, cap * sizeof *e);
        if (e == NULL)
            return CV_STORE_NOMEM;
        j->ev = e;
        j->cap_ev = cap;
    }
    size_t done = 0;
    for (; done < n; done++) {
        bool ok = true;
        char *body = cv__store_memdup(ev[done].body, ev[done].len, &ok);
        if (!ok)
            break;
        if (body == NULL)
            body = strdup("");
        if (body == NULL)
            break;
        j->ev[j->n_ev + done] = (struct cv_store_event){ev[done].seq, attempt, body, ev[done].len};
    }
    if (done < n) { /* all or nothing */
        for (size_t i = 0; i < done; i++)
            free(j->ev[j->n_ev + i].body);
        return CV_STORE_NOMEM;
    }
    j->n_ev += n;
    j->row.last_seq = ev[n - 1].seq;
    j->bytes += need;
    m->bytes += need;
    return CV_STORE_OK;
}

/* ---- ops ------------------------------------------------------------------------------------ */

static void m_close(struct cv_store *s) {
    struct mstore *m = M(s);
    for (size_t i = 0; i < m->n; i++)
        mjob_free(m->jobs[i]);
    free(m->jobs);
    cv_store_kernels_free(m->kernels, m->n_kernels);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int m_ping(struct cv_store *s) {
    return CV_STORE_OK;
}

static int m_job_insert(struct cv_store *s, const struct cv_store_job *j,
                        const struct cv_store_event *ev, size_t n, int64_t lease_ms) {
    struct mstore *m = M(s);
    struct mjob *mj = calloc(1, sizeof *mj);
    if (mj == NULL)
        return CV_STORE_NOMEM;
    bool ok = copy_row(&mj->row, j, CV_STORE_LOAD_REQUEST | CV_STORE_LOAD_RESULT);
    if (!ok) {
        free(mj);
        return CV_STORE_NOMEM;
    }
    int64_t now = cv__store_now_ms();
    mj->row.last_seq = -1;
    if (mj->row.created_ms == 0)
        mj->row.created_ms = now;
    mj->row.cancel_requested = false;
    mj->row.finished_ms = 0;
    if (j->status == CV_STORE_JOB_RUNNING) {
        mj->row.attempt = 1;
        mj->row.lease_until_ms = now + lease_ms;
        if (mj->row.started_ms == 0)
            mj->row.started_ms = now;
    } else {
        mj->row.attempt = 0;
        mj->row.owner[0] = '\0';
        mj->row.lease_until_ms = 0;
    }
    mj->bytes = row_bytes(&mj->row);
    pthread_mutex_lock(&m->mu);
    int st = CV_STORE_OK;
    if (find_locked(m, j->id, NULL) != NULL)
        st = cv__store_fail(CV_STORE_INVALID, "duplicate job id %s", j->id);
    else if (!reserve_locked(m, mj->bytes, NULL))
        st = cv__store_fail(CV_STORE_NOMEM, "memory store full (%lld bytes)",
                            (long long)m->max_bytes);
    if (st == CV_STORE_OK && m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        struct mjob **a = realloc(m->jobs, cap * sizeof *a);
        if (a == NULL)
            st = CV_STORE_NOMEM;
        else {
            m->jobs = a;
            m->cap = cap;
        }
    }
    if (st == CV_STORE_OK) {
        m->jobs[m->n++] = mj;
        m->bytes += mj->bytes;
        st = push_events_locked(m, mj, ev, n, mj->row.attempt);
        if (st != CV_STORE_OK)
            remove_at_locked(m, m->n - 1);
    } else {
        mjob_free(mj);
    }
    pthread_mutex_unlock(&m->mu);
    if (st == CV_STORE_OK && j->status == CV_STORE_JOB_QUEUED)
        cv__store_notify(s, CV_STORE_NOTE_QUEUED, j->id, -1);
    return st;
}

static int m_job_get(struct cv_store *s, const char *id, unsigned flags, struct cv_store_job *out) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    struct mjob *j = find_locked(m, id, NULL);
    int st = CV_STORE_NOT_FOUND;
    if (j != NULL)
        st = copy_row(out, &j->row, flags) ? CV_STORE_OK : CV_STORE_NOMEM;
    pthread_mutex_unlock(&m->mu);
    if (st == CV_STORE_NOT_FOUND)
        cv__store_fail(st, "no such job");
    return st;
}

static bool labels_match(const char *labels, const char *key, const char *value) {
    if (key == NULL)
        return true;
    if (labels == NULL)
        return false;
    /* The labels object is written by the api layer as {"k":"v",...} with JSON escapes; match
     * the exact member text, which is what the SQL back ends' json_extract compares too for
     * plain strings. */
    size_t need = strlen(key) + strlen(value) + 8;
    char *pat = malloc(need);
    if (pat == NULL)
        return false;
    snprintf(pat, need, "\"%s\":\"%s\"", key, value);
    bool hit = strstr(labels, pat) != NULL;
    free(pat);
    return hit;
}

static int m_job_list(struct cv_store *s, const struct cv_store_query *q, struct cv_store_job **out,
                      size_t *n) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    size_t start = m->n;
    if (q->before_id != NULL) {
        size_t idx;
        start = find_locked(m, q->before_id, &idx) ? idx : 0;
    }
    struct cv_store_job *a = calloc(q->limit, sizeof *a);
    int st = a ? CV_STORE_OK : CV_STORE_NOMEM;
    size_t count = 0;
    for (size_t i = start; st == CV_STORE_OK && i-- > 0 && count < q->limit;) {
        const struct cv_store_job *r = &m->jobs[i]->row;
        if (q->status >= 0 && (int)r->status != q->status)
            continue;
        if (q->name != NULL && (r->name == NULL || strcmp(r->name, q->name) != 0))
            continue;
        if (!labels_match(r->labels_json, q->label_key, q->label_value))
            continue;
        if (!copy_row(&a[count], r, CV_STORE_LOAD_ROW))
            st = CV_STORE_NOMEM;
        else
            count++;
    }
    pthread_mutex_unlock(&m->mu);
    if (st != CV_STORE_OK || count == 0) {
        cv_store_jobs_free(a, count);
        return st;
    }
    *out = a;
    *n = count;
    return CV_STORE_OK;
}

static int m_job_count(struct cv_store *s, int status, int64_t *n) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n; i++)
        *n += status < 0 || (int)m->jobs[i]->row.status == status;
    pthread_mutex_unlock(&m->mu);
    return CV_STORE_OK;
}

static int m_job_claim(struct cv_store *s, const char *owner, int64_t lease_ms,
                       struct cv_store_job *out) {
    struct mstore *m = M(s);
    int64_t now = cv__store_now_ms();
    pthread_mutex_lock(&m->mu);
    struct mjob *hit = NULL;
    for (size_t i = 0; i < m->n && hit == NULL; i++)
        if (m->jobs[i]->row.status == CV_STORE_JOB_QUEUED)
            hit = m->jobs[i];
    for (size_t i = 0; i < m->n && hit == NULL; i++)
        if (m->jobs[i]->row.status == CV_STORE_JOB_RUNNING && m->jobs[i]->row.lease_until_ms < now)
            hit = m->jobs[i];
    int st = CV_STORE_NOT_FOUND;
    if (hit != NULL) {
        struct cv_store_job *r = &hit->row;
        r->status = CV_STORE_JOB_RUNNING;
        snprintf(r->owner, sizeof r->owner, "%s", owner);
        r->attempt++;
        if (r->started_ms == 0)
            r->started_ms = now;
        r->lease_until_ms = now + lease_ms;
        st = copy_row(out, r, CV_STORE_LOAD_REQUEST) ? CV_STORE_OK : CV_STORE_NOMEM;
    }
    pthread_mutex_unlock(&m->mu);
    if (st == CV_STORE_OK)
        cv__store_notify(s, CV_STORE_NOTE_STATE, out->id, -1);
    return st;
}

/* The row of job id while attempt runs it (for owner, unless NULL), mu held: CV_STORE_OK with
 * *row, CV_STORE_NOT_FOUND, or CV_STORE_FENCED when the job is not running that attempt. */
static int running_locked(struct mstore *m, const char *id, int32_t attempt, const char *owner,
                          struct cv_store_job **row) {
    struct mjob *j = find_locked(m, id, NULL);
    if (j == NULL)
        return CV_STORE_NOT_FOUND;
    *row = &j->row;
    if ((*row)->status != CV_STORE_JOB_RUNNING || (*row)->attempt != attempt ||
        (owner != NULL && strcmp((*row)->owner, owner) != 0))
        return CV_STORE_FENCED;
    return CV_STORE_OK;
}

static int m_job_renew(struct cv_store *s, const char *id, int32_t attempt, const char *owner,
                       int64_t lease_ms, bool *cancel_requested) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    struct cv_store_job *r;
    int st = running_locked(m, id, attempt, owner, &r);
    if (st == CV_STORE_OK) {
        r->lease_until_ms = cv__store_now_ms() + lease_ms;
        *cancel_requested = r->cancel_requested;
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

static int m_job_orphan(struct cv_store *s, const char *owner, int64_t *n) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n; i++) {
        struct cv_store_job *r = &m->jobs[i]->row;
        if (r->status == CV_STORE_JOB_RUNNING && (owner == NULL || strcmp(r->owner, owner) == 0)) {
            r->lease_until_ms = 0;
            (*n)++;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (*n > 0)
        cv__store_notify(s, CV_STORE_NOTE_QUEUED, NULL, -1);
    return CV_STORE_OK;
}

static int m_job_release(struct cv_store *s, const char *id, int32_t attempt) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    struct cv_store_job *r;
    int st = running_locked(m, id, attempt, NULL, &r);
    if (st == CV_STORE_OK) {
        r->status = CV_STORE_JOB_QUEUED;
        r->owner[0] = '\0';
        r->lease_until_ms = 0;
    }
    pthread_mutex_unlock(&m->mu);
    if (st == CV_STORE_OK)
        cv__store_notify(s, CV_STORE_NOTE_QUEUED, id, -1);
    return st;
}

/* Ends a job (mu held): fields, events, result; all or nothing. */
static int finish_locked(struct mstore *m, struct mjob *j, const struct cv_store_finish *f) {
    struct cv_store_job *r = &j->row;
    bool ok = true;
    char *result = cv__store_memdup(f->result, f->result_len, &ok);
    if (!ok)
        return CV_STORE_NOMEM;
    int st = push_events_locked(m, j, f->events, f->n_events, r->attempt);
    if (st != CV_STORE_OK) {
        free(result);
        return st;
    }
    free(r->result);
    r->result = result;
    r->result_len = result ? f->result_len : 0;
    j->bytes += (int64_t)r->result_len;
    m->bytes += (int64_t)r->result_len;
    r->status = f->status;
    r->finished_ms = cv__store_now_ms();
    r->lease_until_ms = 0;
    r->step = f->step;
    r->loss = f->loss;
    r->elapsed_ms = f->elapsed_ms;
    snprintf(r->error_code, sizeof r->error_code, "%s", f->error_code ? f->error_code : "");
    snprintf(r->error_detail, sizeof r->error_detail, "%s", f->error_detail ? f->error_detail : "");
    m->bytes -= (int64_t)j->ckpt_len;
    j->bytes -= (int64_t)j->ckpt_len;
    free(j->ckpt);
    j->ckpt = NULL;
    j->ckpt_len = 0;
    /* A finished job no longer needs its request: drop it so history costs little. */
    m->bytes -= (int64_t)r->request_len;
    j->bytes -= (int64_t)r->request_len;
    free(r->request);
    r->request = NULL;
    r->request_len = 0;
    return CV_STORE_OK;
}

static int m_job_finish(struct cv_store *s, const char *id, int32_t attempt,
                        const struct cv_store_finish *f) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    struct mjob *j = find_locked(m, id, NULL);
    int st = CV_STORE_NOT_FOUND;
    int64_t seq = -1;
    if (j != NULL) {
        if (j->row.attempt != attempt || cv_store_job_status_terminal(j->row.status))
            st = CV_STORE_FENCED;
        else
            st = finish_locked(m, j, f);
        seq = j->row.last_seq;
    }
    pthread_mutex_unlock(&m->mu);
    if (st == CV_STORE_OK) {
        cv__store_notify(s, CV_STORE_NOTE_EVENTS, id, seq);
        cv__store_notify(s, CV_STORE_NOTE_STATE, id, -1);
    }
    return st;
}

static int m_job_cancel(struct cv_store *s, const char *id, const struct cv_store_finish *if_queued,
                        enum cv_store_job_status *status_after) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    struct mjob *j = find_locked(m, id, NULL);
    int st = CV_STORE_NOT_FOUND;
    enum cv_store_note note = CV_STORE_NOTE_CANCEL;
    if (j != NULL) {
        st = CV_STORE_OK;
        if (j->row.status == CV_STORE_JOB_QUEUED) {
            st = finish_locked(m, j, if_queued);
            note = CV_STORE_NOTE_STATE;
        } else if (j->row.status == CV_STORE_JOB_RUNNING) {
            j->row.cancel_requested = true;
        }
        *status_after = j->row.status;
    }
    pthread_mutex_unlock(&m->mu);
    if (st == CV_STORE_OK)
        cv__store_notify(s, note, id, -1);
    return st;
}

static int m_job_delete(struct cv_store *s, const char *id) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    size_t idx;
    int st = CV_STORE_NOT_FOUND;
    if (find_locked(m, id, &idx) != NULL) {
        remove_at_locked(m, idx);
        st = CV_STORE_OK;
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

static int m_append(struct cv_store *s, struct cv_store_append *items, size_t n) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        struct cv_store_append *it = &items[i];
        struct mjob *j = find_locked(m, it->job_id, NULL);
        if (j == NULL) {
            it->status = CV_STORE_NOT_FOUND;
            continue;
        }
        if (j->row.attempt != it->attempt || cv_store_job_status_terminal(j->row.status)) {
            it->status = CV_STORE_FENCED;
            continue;
        }
        it->status = push_events_locked(m, j, it->events, it->n_events, it->attempt);
        if (it->status != CV_STORE_OK)
            continue;
        if (it->has_progress) {
            j->row.step = it->step;
            j->row.loss = it->loss;
            j->row.elapsed_ms = it->elapsed_ms;
        }
        if (it->checkpoint != NULL) {
            bool ok = true;
            unsigned char *c = cv__store_memdup(it->checkpoint, it->checkpoint_len, &ok);
            if (!ok) {
                it->status = CV_STORE_NOMEM;
                continue;
            }
            int64_t delta = (int64_t)it->checkpoint_len - (int64_t)j->ckpt_len;
            free(j->ckpt);
            j->ckpt = c;
            j->ckpt_len = it->checkpoint_len;
            j->ckpt_step = it->checkpoint_step;
            j->ckpt_attempt = it->attempt;
            j->bytes += delta;
            m->bytes += delta;
        }
    }
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CV_STORE_OK && items[i].n_events > 0)
            cv__store_notify(s, CV_STORE_NOTE_EVENTS, items[i].job_id,
                             items[i].events[items[i].n_events - 1].seq);
    return CV_STORE_OK;
}

static int m_events_read(struct cv_store *s, const char *id, int64_t after_seq, size_t max,
                         struct cv_store_event **out, size_t *n) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    struct mjob *j = find_locked(m, id, NULL);
    int st = j ? CV_STORE_OK : CV_STORE_NOT_FOUND;
    if (j != NULL) {
        size_t from = (size_t)(after_seq + 1); /* seq == index: the log has no gaps */
        size_t count = from < j->n_ev ? j->n_ev - from : 0;
        if (max > 0 && count > max)
            count = max;
        if (count > 0) {
            struct cv_store_event *a = calloc(count, sizeof *a);
            size_t k = 0;
            bool ok = a != NULL;
            for (; ok && k < count; k++) {
                a[k] = j->ev[from + k];
                a[k].body = cv__store_memdup(j->ev[from + k].body, j->ev[from + k].len + 1, &ok);
            }
            if (!ok) {
                cv_store_events_free(a, k);
                st = CV_STORE_NOMEM;
            } else {
                *out = a;
                *n = count;
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

static int m_checkpoint_get(struct cv_store *s, const char *id, int32_t *step, int32_t *attempt,
                            unsigned char **blob, size_t *len) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    struct mjob *j = find_locked(m, id, NULL);
    int st = CV_STORE_NOT_FOUND;
    if (j != NULL && j->ckpt != NULL) {
        bool ok = true;
        *blob = cv__store_memdup(j->ckpt, j->ckpt_len, &ok);
        st = ok ? CV_STORE_OK : CV_STORE_NOMEM;
        if (ok) {
            *len = j->ckpt_len;
            *step = j->ckpt_step;
            *attempt = j->ckpt_attempt;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

static int m_retain(struct cv_store *s, int64_t keep, int64_t max_age_ms, int batch, int *deleted) {
    struct mstore *m = M(s);
    int64_t now = cv__store_now_ms();
    pthread_mutex_lock(&m->mu);
    int64_t finished = 0;
    for (size_t i = 0; i < m->n; i++)
        finished += cv_store_job_status_terminal(m->jobs[i]->row.status);
    /* Oldest first: by insertion order, which is creation order. */
    for (size_t i = 0; i < m->n && *deleted < batch;) {
        const struct cv_store_job *r = &m->jobs[i]->row;
        bool done = cv_store_job_status_terminal(r->status);
        bool over = keep >= 0 && finished > keep;
        bool old = max_age_ms > 0 && r->finished_ms < now - max_age_ms;
        if (done && (over || old)) {
            remove_at_locked(m, i);
            finished--;
            (*deleted)++;
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return CV_STORE_OK;
}

static int m_kernel_put(struct cv_store *s, const char *name, const unsigned char *blob, size_t len,
                        const char *meta_json, bool replace) {
    struct mstore *m = M(s);
    struct cv_store_kernel k = {.created_ms = cv__store_now_ms(), .len = len};
    snprintf(k.name, sizeof k.name, "%s", name);
    bool ok = cv__store_dup(&k.meta_json, meta_json);
    k.blob = ok ? cv__store_memdup(blob, len, &ok) : NULL;
    if (!ok) {
        cv_store_kernel_free(&k);
        return CV_STORE_NOMEM;
    }
    pthread_mutex_lock(&m->mu);
    int st = CV_STORE_OK;
    size_t i = 0;
    while (i < m->n_kernels && strcmp(m->kernels[i].name, name) != 0)
        i++;
    if (i < m->n_kernels) {
        if (!replace) {
            st = CV_STORE_EXISTS;
        } else {
            cv_store_kernel_free(&m->kernels[i]);
            m->kernels[i] = k;
        }
    } else {
        struct cv_store_kernel *a = realloc(m->kernels, (m->n_kernels + 1) * sizeof *a);
        if (a == NULL) {
            st = CV_STORE_NOMEM;
        } else {
            m->kernels = a;
            m->kernels[m->n_kernels++] = k;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (st != CV_STORE_OK)
        cv_store_kernel_free(&k);
    return st;
}

static int m_kernel_get(struct cv_store *s, const char *name, struct cv_store_kernel *out) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    int st = CV_STORE_NOT_FOUND;
    for (size_t i = 0; i < m->n_kernels && st == CV_STORE_NOT_FOUND; i++) {
        if (strcmp(m->kernels[i].name, name) != 0)
            continue;
        *out = m->kernels[i];
        bool ok = cv__store_dup(&out->meta_json, m->kernels[i].meta_json);
        out->blob = ok ? cv__store_memdup(m->kernels[i].blob, m->kernels[i].len, &ok) : NULL;
        if (!ok) {
            cv_store_kernel_free(out);
            st = CV_STORE_NOMEM;
        } else {
            st = CV_STORE_OK;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

static int cmp_kernel(const void *a, const void *b) {
    return strcmp(((const struct cv_store_kernel *)a)->name,
                  ((const struct cv_store_kernel *)b)->name);
}

static int m_kernel_list(struct cv_store *s, struct cv_store_kernel **out, size_t *n) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    int st = CV_STORE_OK;
    size_t count = 0;
    struct cv_store_kernel *a = NULL;
    if (m->n_kernels > 0) {
        a = calloc(m->n_kernels, sizeof *a);
        st = a ? CV_STORE_OK : CV_STORE_NOMEM;
        for (; st == CV_STORE_OK && count < m->n_kernels; count++) {
            a[count] = m->kernels[count];
            a[count].blob = NULL;
            a[count].len = 0;
            if (!cv__store_dup(&a[count].meta_json, m->kernels[count].meta_json))
                st = CV_STORE_NOMEM;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (st != CV_STORE_OK) {
        cv_store_kernels_free(a, count);
        return st;
    }
    if (count > 0)
        qsort(a, count, sizeof *a, cmp_kernel);
    *out = a;
    *n = count;
    return CV_STORE_OK;
}

static int m_kernel_delete(struct cv_store *s, const char *name) {
    struct mstore *m = M(s);
    pthread_mutex_lock(&m->mu);
    int st = CV_STORE_NOT_FOUND;
    for (size_t i = 0; i < m->n_kernels; i++) {
        if (strcmp(m->kernels[i].name, name) == 0) {
            cv_store_kernel_free(&m->kernels[i]);
            m->kernels[i] = m->kernels[--m->n_kernels];
            st = CV_STORE_OK;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

static const struct cv_store_ops memory_ops = {
    .name = "memory",
    .close = m_close,
    .ping = m_ping,
    .job_insert = m_job_insert,
    .job_get = m_job_get,
    .job_list = m_job_list,
    .job_count = m_job_count,
    .job_claim = m_job_claim,
    .job_renew = m_job_renew,
    .job_orphan = m_job_orphan,
    .job_release = m_job_release,
    .job_finish = m_job_finish,
    .job_cancel = m_job_cancel,
    .job_delete = m_job_delete,
    .append = m_append,
    .events_read = m_events_read,
    .checkpoint_get = m_checkpoint_get,
    .retain = m_retain,
    .kernel_put = m_kernel_put,
    .kernel_get = m_kernel_get,
    .kernel_list = m_kernel_list,
    .kernel_delete = m_kernel_delete,
};

int cv__store_memory_open(const struct cv_store_options *o, struct cv_store **out) {
    struct mstore *m = calloc(1, sizeof *m);
    if (m == NULL)
        return CV_STORE_NOMEM;
    m->base.ops = &memory_ops;
    m->max_bytes = o->memory_max_bytes;
    pthread_mutex_init(&m->mu, NULL);
    *out = &m->base;
    return CV_STORE_OK;
}
