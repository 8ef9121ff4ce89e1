/* The machine's float32 multiply-add peak and memory bandwidth, measured: the ceilings
 * bench/RESULTS.md compares the kernels against, taken in the same run (a shared or throttled core
 * shows up here too). */
#ifndef CONVD_BENCH_PEAK_H
#define CONVD_BENCH_PEAK_H

#include <stdint.h>

/* Runs independent vector FMA chains on n_threads threads (OpenMP) for about `seconds` and
 * returns the GFLOP/s reached (2 flops per multiply-add); *isa is set to the vector width used
 * ("avx512", "avx2" or "scalar"). */
double cv_bench_peak_gflops(int n_threads, double seconds, const char **isa);

/* STREAM's triad a[i] = b[i] + s * c[i] over three arrays of `floats` floats each (make them
 * much larger than the last-level cache), split among n_threads threads (OpenMP), repeated for
 * about `seconds`; returns the best repeat's GB/s counting 12 bytes per element (the write
 * allocate of a is not counted, as STREAM does not), or 0 when the arrays cannot be allocated. */
double cv_bench_triad_gbs(int n_threads, int64_t floats, double seconds);

#endif
