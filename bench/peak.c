/* cv_bench_peak_gflops: twelve independent FMA chains per thread (enough to cover the FMA
 * latency on two pipes), their operands in registers, so only the FMA units limit the rate.
 * The widest vectors this CPU runs are used, picked with __builtin_cpu_supports as the kernels
 * pick theirs. */
#include "peak.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

/* Iterations per timed block: 12 FMAs each, a few milliseconds. */
#define PEAK_BLOCK 200000

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One chain step each; the asm barrier keeps the multiplier in a register and the loop from
 * being folded. */
#define PEAK_CHAINS(T, FMA)                                                                        \
    do {                                                                                           \
        a0 = FMA(a0, b, c), a1 = FMA(a1, b, c), a2 = FMA(a2, b, c), a3 = FMA(a3, b, c);            \
        a4 = FMA(a4, b, c), a5 = FMA(a5, b, c), a6 = FMA(a6, b, c), a7 = FMA(a7, b, c);            \
        a8 = FMA(a8, b, c), a9 = FMA(a9, b, c), a10 = FMA(a10, b, c), a11 = FMA(a11, b, c);        \
    } while (0)

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f"))) static float run_avx512(int64_t n) {
    __m512 a0 = _mm512_set1_ps(0.1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
           a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
    for (int64_t i = 0; i < n; i++) {
        __asm__ volatile("" : "+v"(b));
        PEAK_CHAINS(__m512, _mm512_fmadd_ps);
    }
    const __m512 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float run_avx2(int64_t n) {
    __m256 a0 = _mm256_set1_ps(0.1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
           a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
    for (int64_t i = 0; i < n; i++) {
        __asm__ volatile("" : "+x"(b));
        PEAK_CHAINS(__m256, _mm256_fmadd_ps);
    }
    const __m256 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}
#endif

static float scalar_fma(float a, float b, float c) {
    return a * b + c;
}

static float run_scalar(int64_t n) {
    float a0 = 0.1f, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
          a9 = a0, a10 = a0, a11 = a0;
    float b = 0.9999f, c = 1e-4f;
    for (int64_t i = 0; i < n; i++) {
        __asm__ volatile("" : "+x"(b));
        PEAK_CHAINS(float, scalar_fma);
    }
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
}

double cv_bench_peak_gflops(int n_threads, double seconds, const char **isa) {
    float (*run)(int64_t) = run_scalar;
    int lanes = 1;
    *isa = "scalar";
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) {
        run = run_avx512, lanes = 16, *isa = "avx512";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        run = run_avx2, lanes = 8, *isa = "avx2";
    }
#endif
    run(PEAK_BLOCK); /* wakes the vector units */
    volatile float sink = 0.0f;
    int64_t blocks = 0;
    const double t0 = now_s();
    double dt = 0.0;
    while (dt < seconds) {
#pragma omp parallel num_threads(n_threads)
        {
            const float r = run(PEAK_BLOCK);
#pragma omp atomic
            sink += r;
        }
        blocks++;
        dt = now_s() - t0;
    }
    (void)sink;
    return (double)blocks * n_threads * PEAK_BLOCK * 12.0 * lanes * 2.0 / dt * 1e-9;
}

double cv_bench_triad_gbs(int n_threads, int64_t floats, double seconds) {
    float *a = malloc((size_t)floats * sizeof(float));
    float *b = malloc((size_t)floats * sizeof(float));
    float *c = malloc((size_t)floats * sizeof(float));
    if (a == NULL || b == NULL || c == NULL) {
        free(a), free(b), free(c);
        return 0.0;
    }
    /* First touch by the threads that run the triad (the same static split). */
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t i = 0; i < floats; i++)
        a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
    const float s = 0.5f;
    double best = 1e30;
    const double t_start = now_s();
    for (int rep = 0; rep < 1000; rep++) {
        const double t0 = now_s();
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int64_t i = 0; i < floats; i++)
            a[i] = b[i] + s * c[i];
        const double t1 = now_s();
        if (t1 - t0 < best)
            best = t1 - t0;
        if (rep >= 3 && t1 - t_start >= seconds)
            break;
    }
    volatile float sink = a[floats / 2];
    (void)sink;
    free(a), free(b), free(c);
    return 12.0 * (double)floats / best * 1e-9;
}
