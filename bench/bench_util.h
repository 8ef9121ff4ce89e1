/* Small helpers the C benchmarks share (convd-bench, dnnl-bench, http_parts): a monotonic clock,
 * the median of repeated timings, and the N,C,H,W form of --input and --kernel. Header-only. */
#ifndef CONVD_BENCH_UTIL_H
#define CONVD_BENCH_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC (differences only: the origin is arbitrary). */
static inline double cv_bench_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static inline int cv_bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) (n >= 1) in place and returns its median. */
static inline double cv_bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cv_bench_cmp_double);
    return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Reads "N,C,H,W" (four integers >= 1, nothing after them) into out; false, out untouched,
 * otherwise. */
static inline bool cv_bench_parse_dims(const char *s, int64_t out[4]) {
    long long v[4];
    char tail;
    if (sscanf(s, "%lld,%lld,%lld,%lld%c", &v[0], &v[1], &v[2], &v[3], &tail) != 4)
        return false;
    for (int q = 0; q < 4; q++)
        if (v[q] < 1)
            return false;
    for (int q = 0; q < 4; q++)
        out[q] = v[q];
    return true;
}

#endif
