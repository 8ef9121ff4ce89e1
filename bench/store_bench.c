/* store-bench: load generator of bench/store_bench.sh (issue 10).
 *
 *   store-bench tiny PORT JOBS THREADS   POST /jobs of the seed's corr2d, then follow
 *                                        /jobs/{id}/events to its done event, JOBS times over
 *                                        THREADS keep-alive connections; prints one JSON line
 *                                        {"jobs":N,"seconds":S,"jobs_per_s":R,"failed":F}
 *   store-bench train PORT SIZE STEPS    one training job (SIZE x SIZE input, 3x3 kernel,
 *                                        report_every 1) through done; prints
 *                                        {"steps":N,"elapsed_ms":E,"steps_per_s":R}
 *
 * Plain libcurl, no JSON library: the few fields read are found by name. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int port;
static atomic_int next_job, failed;
static int total_jobs;

static const char seed_body[] =
    "{\"kind\":\"corr2d\",\"input\":[[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],"
    "[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1]],\"kernel\":[[1,-1]]}";

struct buf {
    char *p;
    size_t n, cap;
};

static size_t on_data(char *d, size_t sz, size_t nm, void *u) {
    struct buf *b = u;
    size_t n = sz * nm;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* POST body to /jobs, then GET the events to the end. Returns 0 when the log ended in done. */
static int run_job(CURL *c, struct curl_slist *hdr, const char *body, struct buf *b) {
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/jobs", port);
    b->n = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    long code = 0;
    if (curl_easy_perform(c) != CURLE_OK)
        return -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    const char *id = b->p ? strstr(b->p, "\"id\":\"") : NULL;
    if (code != 202 || id == NULL) {
        fprintf(stderr, "store-bench: POST /jobs -> %ld %.200s\n", code, b->p ? b->p : "");
        return -1;
    }
    char jid[64];
    snprintf(jid, sizeof jid, "%.34s", id + 6);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/jobs/%s/events", port, jid);
    b->n = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK || !b->p || !strstr(b->p, "\"event\":\"done\"")) {
        fprintf(stderr, "store-bench: GET %s -> curl %d, HTTP %ld: %.300s\n", url, (int)rc, code,
                b->p ? b->p : "");
        return -1;
    }
    return 0;
}

static void *tiny_thread(void *arg) {
    (void)arg;
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    struct buf b = {0};
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    while (atomic_fetch_add(&next_job, 1) < total_jobs)
        if (run_job(c, hdr, seed_body, &b) != 0)
            atomic_fetch_add(&failed, 1);
    free(b.p);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return NULL;
}

static double num_after(const char *s, const char *key) {
    const char *p = s ? strstr(s, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : -1;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: store-bench tiny PORT JOBS THREADS | train PORT SIZE STEPS\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    port = atoi(argv[2]);
    if (strcmp(argv[1], "tiny") == 0) {
        total_jobs = atoi(argv[3]);
        int threads = atoi(argv[4]);
        pthread_t th[64];
        if (threads < 1 || threads > 64)
            return 2;
        double t0 = now_s();
        for (int i = 0; i < threads; i++)
            pthread_create(&th[i], NULL, tiny_thread, NULL);
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        double s = now_s() - t0;
        printf("{\"jobs\":%d,\"seconds\":%.3f,\"jobs_per_s\":%.0f,\"failed\":%d}\n", total_jobs, s,
               total_jobs / s, atomic_load(&failed));
        return atomic_load(&failed) ? 1 : 0;
    }
    int size = atoi(argv[3]), steps = atoi(argv[4]);
    size_t cap = (size_t)size * size * 8 + 256;
    char *body = malloc(cap);
    size_t n = (size_t)snprintf(body, cap, "{\"kind\":\"train\",\"seed\":7,\"input\":[");
    for (int i = 0; i < size; i++) {
        body[n++] = i ? ',' : '[';
        if (i)
            body[n++] = '[';
        for (int j = 0; j < size; j++)
            n += (size_t)snprintf(body + n, cap - n, "%s%d", j ? "," : "", (i * 7 + j * 3) % 10);
        body[n++] = ']';
    }
    n += (size_t)snprintf(body + n, cap - n, "],\"target\":{\"shape\":[%d,%d],\"data\":[", size - 2,
                          size - 2);
    /* a zero target in the flat form */
    for (int i = 0; i < (size - 2) * (size - 2); i++) {
        if (n + 4 > cap) {
            cap *= 2;
            body = realloc(body, cap);
        }
        n += (size_t)snprintf(body + n, cap - n, "%s0", i ? "," : "");
    }
    if (n + 200 > cap)
        body = realloc(body, cap += 256);
    snprintf(
        body + n, cap - n,
        "]},\"kernel_size\":[3,3],\"loss\":\"mse\",\"lr\":0.001,\"steps\":%d,\"report_every\":1}",
        steps);
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    struct buf b = {0};
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
    if (run_job(c, hdr, body, &b) != 0) {
        fprintf(stderr, "store-bench: the training did not end in done\n");
        return 1;
    }
    /* The done event is the last line of the log. */
    const char *done = strstr(b.p, "\"event\":\"done\"");
    double elapsed = num_after(done, "\"elapsed_ms\":");
    printf("{\"steps\":%d,\"elapsed_ms\":%.1f,\"steps_per_s\":%.1f}\n", steps, elapsed,
           steps / (elapsed / 1e3));
    free(b.p);
    free(body);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    return 0;
}
