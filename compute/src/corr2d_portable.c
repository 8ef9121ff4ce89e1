/* The corr2d kernels for the baseline instruction set of the build (SSE2 on x86-64), with GCC
 * vector extensions: the path every CPU can run. */
#define CV__KERN_ISA      CV__PORTABLE
#define CV__KERN_NAME     portable
#define CV__KERN_NAME_STR "portable"
#include "corr2d_kern.h"
