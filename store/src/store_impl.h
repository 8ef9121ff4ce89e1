/* The back-end vtable behind cv_store.h. Private to store/: each back end (memory.c, sqlite.c,
 * postgres.c) fills one struct cv_store_ops and embeds struct cv_store as the first member of
 * its own handle; store.c dispatches and checks arguments, so back ends see only valid ones.
 *
 * Every op has the contract of the public function of the same name (cv_store.h); store.c has
 * already validated pointers, ids (non-empty, < 40 bytes) and out-parameters, and zeroed the
 * out-parameters. An op reports a failure reason with cv__store_set_errmsg. */
#ifndef CV_STORE_IMPL_H
#define CV_STORE_IMPL_H

#include "cv_store.h"

struct cv_store_ops {
    const char *name; /* "memory", "sqlite", "postgres" */
    void (*close)(struct cv_store *s);
    int (*ping)(struct cv_store *s);
    int (*job_insert)(struct cv_store *s, const struct cv_store_job *j,
                      const struct cv_store_event *ev, size_t n, int64_t lease_ms);
    int (*job_get)(struct cv_store *s, const char *id, unsigned flags, struct cv_store_job *out);
    int (*job_list)(struct cv_store *s, const struct cv_store_query *q, struct cv_store_job **out,
                    size_t *n);
    int (*job_count)(struct cv_store *s, int status, int64_t *n);
    int (*job_claim)(struct cv_store *s, const char *owner, int64_t lease_ms,
                     struct cv_store_job *out);
    /* Optional (NULL: cv_store_job_claim_many calls job_claim in a loop); max >= 1, out
     * zeroed, *n = 0 on entry. */
    int (*job_claim_many)(struct cv_store *s, const char *owner, int64_t lease_ms, size_t max,
                          struct cv_store_job *out, size_t *n);
    int (*job_renew)(struct cv_store *s, const char *id, int32_t attempt, const char *owner,
                     int64_t lease_ms, bool *cancel_requested);
    int (*job_orphan)(struct cv_store *s, const char *owner, int64_t *n);
    int (*job_release)(struct cv_store *s, const char *id, int32_t attempt);
    int (*job_finish)(struct cv_store *s, const char *id, int32_t attempt,
                      const struct cv_store_finish *f);
    int (*job_cancel)(struct cv_store *s, const char *id, const struct cv_store_finish *if_queued,
                      enum cv_store_job_status *status_after);
    int (*job_delete)(struct cv_store *s, const char *id);
    int (*append)(struct cv_store *s, struct cv_store_append *items, size_t n);
    int (*events_read)(struct cv_store *s, const char *id, int64_t after_seq, size_t max,
                       struct cv_store_event **out, size_t *n);
    int (*checkpoint_get)(struct cv_store *s, const char *id, int32_t *step, int32_t *attempt,
                          unsigned char **blob, size_t *len);
    int (*retain)(struct cv_store *s, int64_t keep, int64_t max_age_ms, int batch, int *deleted);
    int (*kernel_put)(struct cv_store *s, const char *name, const unsigned char *blob, size_t len,
                      const char *meta_json, bool replace);
    int (*kernel_get)(struct cv_store *s, const char *name, struct cv_store_kernel *out);
    int (*kernel_list)(struct cv_store *s, struct cv_store_kernel **out, size_t *n);
    int (*kernel_delete)(struct cv_store *s, const char *name);
};

/* The common head of every back end's handle. */
struct cv_store {
    const struct cv_store_ops *ops;
    cv_store_listener_fn listener; /* set before threads start; read without a lock */
    void *listener_user;
};

/* Back-end constructors: `rest` is the URL after the scheme ("" for memory, PATH for sqlite,
 * the whole URL for postgres). Each returns a cv_store_status with *out set on OK. */
int cv__store_memory_open(const struct cv_store_options *o, struct cv_store **out);
int cv__store_sqlite_open(const char *path, const struct cv_store_options *o,
                          struct cv_store **out);
int cv__store_postgres_open(const char *url, const struct cv_store_options *o,
                            struct cv_store **out);

/* Records the calling thread's failure reason (printf-style, truncated) and returns status,
 * so an op can `return cv__store_fail(CV_STORE_UNAVAILABLE, "...", ...)`. */
int cv__store_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Calls the listener, if any. */
void cv__store_notify(struct cv_store *s, enum cv_store_note note, const char *job_id, int64_t seq);

/* Wall-clock Unix milliseconds (the clock of the memory and sqlite back ends). */
int64_t cv__store_now_ms(void);

/* strdup of a possibly-NULL string into *dst (NULL stays NULL). Returns false on ENOMEM. */
bool cv__store_dup(char **dst, const char *src);

/* Copies n bytes into a fresh malloc'd buffer with one extra NUL byte (for JSON text), or
 * NULL for n == 0 / src NULL. *ok becomes false on ENOMEM. */
void *cv__store_memdup(const void *src, size_t n, bool *ok);

#endif
