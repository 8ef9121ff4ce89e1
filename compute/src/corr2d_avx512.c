/* The corr2d kernels compiled for AVX-512 (F, VL, DQ) with FMA. Only this file's functions use
 * these instructions; corr2d.c calls them after __builtin_cpu_supports says the CPU has them. */
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
/* clang ignores `#pragma GCC target`; its attribute push gives every function below the ISA.
 * The system headers come first so that their declarations keep their own targets. */
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma"))),        \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
#endif
#define CV__KERN_ISA      CV__AVX512
#define CV__KERN_NAME     avx512
#define CV__KERN_NAME_STR "avx512"
/* In this order: each file uses the ones before it. */
/* clang-format off */
#include "corr2d_vec.h"
#include "corr2d_direct.h"
#include "corr2d_stream.h"
#include "corr2d_bk.h"
#include "corr2d_sum.h"
#include "corr2d_wino.h"
#include "corr2d_wino4.h"
#include "corr2d_rwino.h"
#include "corr2d_wgrad.h"
#include "corr2d_wgrad4.h"
#include "corr2d_table.h"
/* clang-format on */
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int cv__corr2d_avx512_unused; /* not an x86 target: nothing to build */
#endif
