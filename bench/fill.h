/* The inputs and the output check every implementation of bench/compare.sh shares (convd-bench,
 * dnnl-bench, opencv-bench and torch_bench.py compute the same numbers), so each can be checked
 * against the same output: element i of a tensor filled with seed s is
 *
 *   h = (i * 2654435761 mod 2^32) ^ (s * 0x9e3779b9 mod 2^32); h ^= h >> 15;
 *   h = h * 0x2c1b3c6d mod 2^32; h ^= h >> 12;  value = (h >> 8) / 2^24 * 2 - 1   (in [-1, 1))
 *
 * (the mixing steps keep tensors of different seeds uncorrelated).
 * and the check of an output y[0..n) is (sum y[i], sum y[i] * fill(i, 4), sum |y[i]|), summed in
 * double. bench/report.py compares the first two of each implementation with convd's, within a
 * tolerance scaled by the third. Header-only (C and C++). */
#ifndef CONVD_BENCH_FILL_H
#define CONVD_BENCH_FILL_H

#include <math.h>
#include <stdint.h>

/* Seeds of the shared tensors. */
#define CV_BENCH_SEED_X  1 /* input */
#define CV_BENCH_SEED_K  2 /* kernel */
#define CV_BENCH_SEED_DY 3 /* output gradient */
#define CV_BENCH_SEED_W  4 /* the weights of the check */

static inline float cv_bench_fill(uint64_t i, uint32_t seed) {
    uint32_t h = (uint32_t)(i * 2654435761u) ^ (uint32_t)(seed * 0x9e3779b9u);
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return (float)((double)(h >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
}

static inline void cv_bench_fill_n(float *p, uint64_t n, uint32_t seed) {
    for (uint64_t i = 0; i < n; i++)
        p[i] = cv_bench_fill(i, seed);
}

/* The three check sums of y[0..n) (see above) into out[3]. */
static inline void cv_bench_check(const float *y, uint64_t n, double out[3]) {
    double s = 0.0, sw = 0.0, sa = 0.0;
    for (uint64_t i = 0; i < n; i++) {
        s += y[i];
        sw += (double)y[i] * cv_bench_fill(i, CV_BENCH_SEED_W);
        sa += fabs((double)y[i]);
    }
    out[0] = s, out[1] = sw, out[2] = sa;
}

#endif
