/* The corr2d kernels for the baseline instruction set of the build (SSE2 on x86-64), with GCC
 * vector extensions: the path every CPU can run. */
#define CV__KERN_ISA      CV__PORTABLE
#define CV__KERN_NAME     portable
#define CV__KERN_NAME_STR "portable"
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
