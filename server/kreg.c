/* The registry of users' named kernels (POST/GET/DELETE /kernels), kept in the store's kernels
 * table (cv_srv.store) so that they survive restarts where jobs do (sqlite, postgres; the
 * memory store loses them at exit). Each kernel is one codec blob: the weight as float32, the
 * rank it was written with, and the job it came from. Nothing is cached here: every read asks
 * the store, so replicas sharing a postgres store see each other's kernels at once.
 *
 * The cap: the store does not bound the number of kernels, so this file keeps the cap of 256
 * (each kernel is bounded by --max-elements; the count keeps GET /kernels and the table
 * bounded). It is checked against the store's list before a new name is inserted; two saves of
 * new names racing on different replicas may pass it together, so it is a bound of 256 plus
 * the number of concurrent savers, not an exact count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cv_store_codec.h"
#include "server.h"

#define KREG_MAX 256

/* Field tags of a kernel blob. Never reuse a number: old databases keep them. */
enum {
    K_WEIGHT = 1,
    K_RANK = 2,
    K_SOURCE = 3, /* job id (bytes), absent when given as a weight */
};

/* A decoded kernel, owning its weight. */
struct kreg_item {
    char name[65];
    char source[64];
    int64_t created_ms;
    int rank;
    struct cv_tensor weight;
};

/* Logs and counts a failed store call; returns CV_EAGAIN (the routes answer 503). */
static int store_failed(int st, const char *what) {
    char extra[600];
    size_t n = (size_t)snprintf(extra, sizeof extra, "\"op\":\"%s\",\"reason\":\"", what);
    n = cv_log_json_escape(extra, sizeof extra, n, cv_store_errmsg());
    snprintf(extra + n, sizeof extra - n, "\"");
    cv_log_msg("error", "kernel store call failed", extra);
    cv_metrics_store_error();
    return st == CV_STORE_NOMEM ? CV_ENOMEM : CV_EAGAIN;
}

static int encode(const struct cv_tensor *weight, int rank, const char *source,
                  struct cv_store_rec **out) {
    struct cv_store_rec *r = NULL;
    int st = cv_store_rec_new(&r);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_tensor(r, K_WEIGHT, weight);
    if (st == CV_STORE_OK)
        st = cv_store_rec_put_i64(r, K_RANK, rank);
    if (st == CV_STORE_OK && source != NULL && source[0] != '\0')
        st = cv_store_rec_put_bytes(r, K_SOURCE, source, strlen(source));
    if (st != CV_STORE_OK) {
        cv_store_rec_free(r);
        return CV_ENOMEM;
    }
    *out = r;
    return CV_OK;
}

/* Decodes a stored kernel record into *it (free its weight). False for a damaged blob. */
static bool decode(const struct cv_store_kernel *k, struct kreg_item *it) {
    memset(it, 0, sizeof *it);
    struct cv_store_rec *r = NULL;
    if (k->blob == NULL || cv_store_rec_decode(k->blob, k->len, &r) != CV_STORE_OK)
        return false;
    int64_t rank = 0;
    const void *src = NULL;
    size_t src_len = 0;
    bool ok = cv_store_rec_get_i64(r, K_RANK, &rank) == CV_STORE_OK && rank >= 2 && rank <= 4 &&
              cv_store_rec_get_tensor(r, K_WEIGHT, &it->weight) == CV_STORE_OK;
    int st = ok ? cv_store_rec_get_bytes(r, K_SOURCE, &src, &src_len) : CV_STORE_OK;
    if (ok && st == CV_STORE_OK && src_len < sizeof it->source)
        memcpy(it->source, src, src_len);
    else if (ok && st != CV_STORE_NOT_FOUND)
        ok = false;
    cv_store_rec_free(r);
    if (!ok) {
        cv_tensor_free(&it->weight);
        return false;
    }
    snprintf(it->name, sizeof it->name, "%s", k->name);
    it->created_ms = k->created_ms;
    it->rank = (int)rank;
    return true;
}

/* Reads one kernel. CV_OK with *found and *it set (free it->weight when found), CV_EAGAIN or
 * CV_ENOMEM when the store failed. A damaged blob reads as not found (and is logged). */
static int read_item(const char *name, struct kreg_item *it, bool *found) {
    *found = false;
    struct cv_store_kernel k;
    int st = cv_store_kernel_get(cv_srv.store, name, &k);
    if (st == CV_STORE_NOT_FOUND)
        return CV_OK;
    if (st != CV_STORE_OK)
        return store_failed(st, "get");
    *found = decode(&k, it);
    if (!*found)
        cv_log_msg("error", "a saved kernel's blob is damaged; ignored", NULL);
    cv_store_kernel_free(&k);
    return CV_OK;
}

int cv_kreg_put(const char *name, const struct cv_tensor *weight, int rank, const char *source,
                bool *replaced) {
    *replaced = false;
    struct cv_store_kernel *list = NULL;
    size_t n = 0;
    int st = cv_store_kernel_list(cv_srv.store, &list, &n);
    if (st != CV_STORE_OK)
        return store_failed(st, "list");
    for (size_t i = 0; i < n && !*replaced; i++)
        *replaced = strcmp(list[i].name, name) == 0;
    cv_store_kernels_free(list, n);
    if (!*replaced && n >= KREG_MAX)
        return CV_ETOOBIG;
    struct cv_store_rec *r = NULL;
    if (encode(weight, rank, source, &r) != CV_OK)
        return CV_ENOMEM;
    size_t len = 0;
    const unsigned char *blob = cv_store_rec_bytes(r, &len);
    st = cv_store_kernel_put(cv_srv.store, name, blob, len, NULL, *replaced);
    if (st == CV_STORE_EXISTS) { /* saved meanwhile (another request or replica) */
        *replaced = true;
        st = cv_store_kernel_put(cv_srv.store, name, blob, len, NULL, true);
    }
    cv_store_rec_free(r);
    return st == CV_STORE_OK ? CV_OK : store_failed(st, "put");
}

bool cv_kreg_get(const char *name, struct cv_tensor *out, int *rank) {
    struct kreg_item it;
    bool found = false;
    if (read_item(name, &it, &found) != CV_OK || !found)
        return false;
    *out = it.weight;
    *rank = it.rank;
    return true;
}

int cv_kreg_delete(const char *name, bool *found) {
    *found = false;
    int st = cv_store_kernel_delete(cv_srv.store, name);
    if (st == CV_STORE_NOT_FOUND)
        return CV_OK;
    if (st != CV_STORE_OK)
        return store_failed(st, "delete");
    *found = true;
    return CV_OK;
}

static void view_of(const struct kreg_item *it, struct cv_api_user_kernel *v, char time[40]) {
    cv_log_format_time((double)it->created_ms, time, 40);
    *v = (struct cv_api_user_kernel){
        .name = it->name,
        .weight = &it->weight,
        .rank = it->rank,
        .source = it->source[0] ? it->source : NULL,
        .created_at = time,
    };
}

int cv_kreg_list_dump(char **body, size_t *len) {
    *body = NULL;
    struct cv_store_kernel *list = NULL;
    size_t n = 0;
    int st = cv_store_kernel_list(cv_srv.store, &list, &n);
    if (st != CV_STORE_OK)
        return store_failed(st, "list");
    struct kreg_item *items = n ? calloc(n, sizeof *items) : NULL;
    struct cv_api_user_kernel *views = n ? calloc(n, sizeof *views) : NULL;
    char(*times)[40] = n ? calloc(n, sizeof *times) : NULL;
    int rc = n && (items == NULL || views == NULL || times == NULL) ? CV_ENOMEM : CV_OK;
    size_t got = 0;
    for (size_t i = 0; i < n && rc == CV_OK; i++) {
        bool found = false;
        rc = read_item(list[i].name, &items[got], &found);
        if (rc == CV_OK && found) { /* deleted since the list: left out */
            view_of(&items[got], &views[got], times[got]);
            got++;
        }
    }
    if (rc == CV_OK) {
        *body = cv_api_kernels_dump_with(views, got, len);
        if (*body == NULL)
            rc = CV_ENOMEM;
    }
    for (size_t i = 0; i < got; i++)
        cv_tensor_free(&items[i].weight);
    free(items);
    free(views);
    free(times);
    cv_store_kernels_free(list, n);
    return rc;
}

int cv_kreg_dump(const char *name, char **body, size_t *len, bool *found) {
    *body = NULL;
    struct kreg_item it;
    int rc = read_item(name, &it, found);
    if (rc != CV_OK || !*found)
        return rc;
    struct cv_api_user_kernel v;
    char time[40];
    view_of(&it, &v, time);
    *body = cv_api_user_kernel_dump(&v, len);
    cv_tensor_free(&it.weight);
    return *body ? CV_OK : CV_ENOMEM;
}

/* The api layer's resolver for "kernel": NAME and "init": NAME. It can only say "none": a
 * store failure here is logged and counted (store_failed) and reads as an unknown name. */
static bool resolve(void *user, const char *name, struct cv_tensor *out, int *rank) {
    (void)user;
    return cv_kreg_get(name, out, rank);
}

void cv_kreg_init(void) {
    cv_api_kernels_set_resolver(resolve, NULL);
}
