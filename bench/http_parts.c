/* Where the time of a large /corr2d request goes, outside the HTTP server: the api layer's
 * parse (cv_api_corr2d_parse), the compute (cv_corr2d_forward) and the reply (the
 * cv_api_corr2d_reply_dump), each the median of several runs on the same body.
 *
 * Built and run by bench/http_bench.sh against a build's static libraries (it needs no target
 * of its own):
 *   http_parts [repeats] [threads]            -> a Markdown table on stdout
 *   http_parts body corr2d|train H W nested|flat|b64
 *                                             -> a request body on stdout (for curl and wrk)
 *
 * Bodies are made here: random float32 in [-1, 1) (what an image or weights look like after
 * normalisation), written as the shortest decimal that reads back as the same float32 (what
 * a careful client sends) or as base64. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "convd/api.h"
#include "convd/base64.h"
#include "convd/corr2d.h"

/* A growable string. */
struct text {
    char *s;
    size_t len, cap;
};

static void put(struct text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        if (t->s == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void puts_(struct text *t, const char *s) {
    put(t, s, strlen(s));
}

/* The shortest %.Ng (N = 6..9) that reads back as v. */
static void put_float(struct text *t, float v) {
    char s[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)v);
        if (strtof(s, NULL) == v)
            break;
    }
    puts_(t, s);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static float next_float(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 40) / (double)(1u << 24) * 2.0 - 1.0);
}

enum form { NESTED, FLAT, B64 };

/* {"input": an h x w tensor in the given form, "kernel": a 3x3 nested kernel}. */
static char *make_body(int h, int w, enum form f, size_t *len) {
    struct text t = {0};
    size_t n = (size_t)h * (size_t)w;
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = next_float();
    puts_(&t, "{\"input\":");
    char head[96];
    if (f == NESTED) {
        puts_(&t, "[");
        for (int r = 0; r < h; r++) {
            puts_(&t, r ? ",[" : "[");
            for (int c = 0; c < w; c++) {
                if (c)
                    puts_(&t, ",");
                put_float(&t, v[(size_t)r * (size_t)w + (size_t)c]);
            }
            puts_(&t, "]");
        }
        puts_(&t, "]");
    } else if (f == FLAT) {
        snprintf(head, sizeof head, "{\"shape\":[%d,%d],\"data\":[", h, w);
        puts_(&t, head);
        for (size_t i = 0; i < n; i++) {
            if (i)
                puts_(&t, ",");
            put_float(&t, v[i]);
        }
        puts_(&t, "]}");
    } else {
        snprintf(head, sizeof head, "{\"shape\":[%d,%d],\"dtype\":\"float32\",\"b64\":\"", h, w);
        puts_(&t, head);
        size_t chars = cv_base64_encoded_len(n * sizeof(float));
        char *b = malloc(chars + 1);
        cv_base64_encode((const uint8_t *)v, n * sizeof(float), b);
        put(&t, b, chars);
        free(b);
        puts_(&t, "\"}");
    }
    puts_(&t, ",\"kernel\":[[0.0625,0.125,0.0625],[0.125,0.25,0.125],[0.0625,0.125,0.0625]]}");
    free(v);
    *len = t.len;
    return t.s;
}

/* {"input": h x w, "target": (h-2) x (w-2), both in form f, a 3x3 kernel with a bias}. */
static char *make_train_body(int h, int w, enum form f, size_t *len) {
    size_t n1, n2;
    char *x = make_body(h, w, f, &n1), *y = make_body(h - 2, w - 2, f, &n2);
    /* Each body is {"input":T,"kernel":...}: keep T. */
    char *xe = strstr(x, ",\"kernel\":"), *ye = strstr(y, ",\"kernel\":");
    *xe = *ye = '\0';
    struct text t = {0};
    puts_(&t, x);
    puts_(&t, ",\"target\":");
    puts_(&t, y + strlen("{\"input\":"));
    puts_(&t, ",\"kernel_size\":3,\"loss\":\"mse\",\"lr\":0.01,\"steps\":20,\"seed\":1}");
    free(x);
    free(y);
    *len = t.len;
    return t.s;
}

static int body_main(int argc, char **argv) {
    static const char *forms[] = {"nested", "flat", "b64"};
    int f = -1;
    for (int i = 0; argc == 6 && i < 3; i++)
        if (strcmp(argv[5], forms[i]) == 0)
            f = i;
    int h = argc == 6 ? atoi(argv[3]) : 0, w = argc == 6 ? atoi(argv[4]) : 0;
    bool train = argc == 6 && strcmp(argv[2], "train") == 0;
    if (f < 0 || h < 3 || w < 3 || !(train || strcmp(argv[2], "corr2d") == 0)) {
        fprintf(stderr, "usage: http_parts body corr2d|train H W nested|flat|b64\n");
        return 2;
    }
    size_t len;
    char *body =
        train ? make_train_body(h, w, (enum form)f, &len) : make_body(h, w, (enum form)f, &len);
    fwrite(body, 1, len, stdout);
    free(body);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "body") == 0)
        return body_main(argc, argv);
    int repeats = argc > 1 ? atoi(argv[1]) : 7;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (repeats < 1 || repeats > 1000 || threads < 1) {
        fprintf(stderr, "usage: http_parts [repeats] [threads]\n");
        return 2;
    }
    static const struct {
        const char *name;
        int h, w;
        enum form f;
    } cases[] = {
        {"1024x1024 b64", 1024, 1024, B64},       {"2048x2048 b64", 2048, 2048, B64},
        {"1000x1000 nested", 1000, 1000, NESTED}, {"1000x1000 flat", 1000, 1000, FLAT},
        {"256x256 nested", 256, 256, NESTED},
    };
    cv_api_init();
    struct cv_api_limits lim = {.max_elements = 1 << 24, .max_steps = 100000};
    printf("| request (3x3 kernel, reply in the input's form) | body MB | reply MB | parse ms | "
           "compute ms | reply ms | total ms | parse+reply share |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t len;
        char *body = make_body(cases[c].h, cases[c].w, cases[c].f, &len);
        double tp[1000], tc[1000], tr[1000];
        size_t reply_len = 0;
        for (int r = 0; r < repeats; r++) {
            struct cv_corr2d_request req;
            struct cv_api_error err;
            double t0 = cv_bench_now_ms();
            if (cv_api_corr2d_parse(body, len, &lim, &req, &err) != CV_OK) {
                fprintf(stderr, "%s: %d %s %s\n", cases[c].name, err.status, err.code, err.detail);
                return 1;
            }
            double t1 = cv_bench_now_ms();
            if (cv_corr2d_forward(&req.x, &req.k, req.bias, &req.geom, &req.y, threads) != CV_OK)
                return 1;
            double t2 = cv_bench_now_ms();
            char *reply = cv_api_corr2d_reply_dump(&req, &reply_len);
            double t3 = cv_bench_now_ms();
            if (reply == NULL)
                return 1;
            free(reply);
            cv_api_corr2d_request_free(&req);
            tp[r] = t1 - t0;
            tc[r] = t2 - t1;
            tr[r] = t3 - t2;
        }
        double p = cv_bench_median(tp, repeats), k = cv_bench_median(tc, repeats),
               o = cv_bench_median(tr, repeats);
        printf("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f%% |\n", cases[c].name,
               (double)len / 1e6, (double)reply_len / 1e6, p, k, o, p + k + o,
               100.0 * (p + o) / (p + k + o));
        free(body);
    }
    return 0;
}
