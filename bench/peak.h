/* The machine's float32 multiply-add peak, measured: the ceiling bench/RESULTS.md compares the
 * kernels against, taken in the same run (a shared or throttled core shows up here too). */
#ifndef CONVD_BENCH_PEAK_H
#define CONVD_BENCH_PEAK_H

/* Runs independent vector FMA chains on n_threads threads (OpenMP) for about `seconds` and
 * returns the GFLOP/s reached (2 flops per multiply-add); *isa is set to the vector width used
 * ("avx512", "avx2" or "scalar"). */
double cv_bench_peak_gflops(int n_threads, double seconds, const char **isa);

#endif
