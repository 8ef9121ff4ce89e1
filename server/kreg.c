/* The registry of users' named kernels (POST/GET/DELETE /kernels), in memory. One small
 * interface (server.h, "kreg") so that a durable store can stand behind it later without the
 * routes changing. Entries hold a private copy of each weight; readers get copies too, so no
 * lock is held while a request computes. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* Saved kernels at most: each is bounded by --max-elements, the count keeps the total bounded. */
#define KREG_MAX 256

struct kreg_entry {
    char name[65];
    char source[40]; /* job id, "" when given as a weight */
    double created_unix_ms;
    int rank;
    struct cv_tensor weight; /* owned */
};

static pthread_mutex_t kreg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kreg_entry kreg[KREG_MAX];
static size_t kreg_n;

static struct kreg_entry *find_locked(const char *name) {
    for (size_t i = 0; i < kreg_n; i++)
        if (strcmp(kreg[i].name, name) == 0)
            return &kreg[i];
    return NULL;
}

static int copy_tensor(const struct cv_tensor *from, struct cv_tensor *to) {
    if (cv_tensor_init(to, from->n, from->c, from->h, from->w) != CV_OK)
        return CV_ENOMEM;
    memcpy(to->data, from->data, (size_t)cv_tensor_numel(from) * sizeof(float));
    return CV_OK;
}

int cv_kreg_put(const char *name, const struct cv_tensor *weight, int rank, const char *source,
                bool *replaced) {
    struct cv_tensor copy;
    if (copy_tensor(weight, &copy) != CV_OK)
        return CV_ENOMEM;
    pthread_mutex_lock(&kreg_mu);
    struct kreg_entry *e = find_locked(name);
    *replaced = e != NULL;
    if (e == NULL && kreg_n == KREG_MAX) {
        pthread_mutex_unlock(&kreg_mu);
        cv_tensor_free(&copy);
        return CV_ETOOBIG;
    }
    if (e == NULL)
        e = &kreg[kreg_n++];
    else
        cv_tensor_free(&e->weight);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->source, sizeof e->source, "%s", source ? source : "");
    e->created_unix_ms = cv_now_unix_ms();
    e->rank = rank;
    e->weight = copy;
    pthread_mutex_unlock(&kreg_mu);
    return CV_OK;
}

bool cv_kreg_get(const char *name, struct cv_tensor *out, int *rank) {
    pthread_mutex_lock(&kreg_mu);
    struct kreg_entry *e = find_locked(name);
    bool hit = e != NULL && copy_tensor(&e->weight, out) == CV_OK;
    if (hit)
        *rank = e->rank;
    pthread_mutex_unlock(&kreg_mu);
    return hit;
}

bool cv_kreg_delete(const char *name) {
    pthread_mutex_lock(&kreg_mu);
    struct kreg_entry *e = find_locked(name);
    if (e != NULL) {
        cv_tensor_free(&e->weight);
        *e = kreg[--kreg_n];
        memset(&kreg[kreg_n], 0, sizeof kreg[kreg_n]);
    }
    pthread_mutex_unlock(&kreg_mu);
    return e != NULL;
}

/* Renders n entries (from first) as views with the caller's time buffers, under kreg_mu. */
static void views_locked(const struct kreg_entry *first, size_t n, struct cv_api_user_kernel *v,
                         char (*times)[40]) {
    for (size_t i = 0; i < n; i++) {
        cv_log_format_time(first[i].created_unix_ms, times[i], 40);
        v[i] = (struct cv_api_user_kernel){
            .name = first[i].name,
            .weight = &first[i].weight,
            .rank = first[i].rank,
            .source = first[i].source[0] ? first[i].source : NULL,
            .created_at = times[i],
        };
    }
}

char *cv_kreg_list_dump(size_t *len) {
    static struct cv_api_user_kernel views[KREG_MAX];
    static char times[KREG_MAX][40];
    pthread_mutex_lock(&kreg_mu); /* also guards the static views */
    views_locked(kreg, kreg_n, views, times);
    char *body = cv_api_kernels_dump_with(views, kreg_n, len);
    pthread_mutex_unlock(&kreg_mu);
    return body;
}

char *cv_kreg_dump(const char *name, size_t *len, bool *found) {
    pthread_mutex_lock(&kreg_mu);
    struct kreg_entry *e = find_locked(name);
    char *body = NULL;
    *found = e != NULL;
    if (e != NULL) {
        struct cv_api_user_kernel v;
        char times[1][40];
        views_locked(e, 1, &v, times);
        body = cv_api_user_kernel_dump(&v, len);
    }
    pthread_mutex_unlock(&kreg_mu);
    return body;
}

static bool resolve(void *user, const char *name, struct cv_tensor *out, int *rank) {
    (void)user;
    return cv_kreg_get(name, out, rank);
}

void cv_kreg_init(void) {
    cv_api_kernels_set_resolver(resolve, NULL);
}
