/* convd status codes: one status space shared by every layer (compute, api, server).
 *
 * Functions return CV_OK (0) on success or a negative CV_E* value, and put their results in
 * out-parameters. Programmer errors (NULL tensors, n_threads < 1) are not statuses: they hit
 * CV_ASSERT, which prints file:line and aborts. */
#ifndef CONVD_STATUS_H
#define CONVD_STATUS_H

enum cv_status {
    CV_OK = 0,
    CV_EINVAL = -1,    /* an argument is out of range (user-caused, reported, not asserted) */
    CV_ESHAPE = -2,    /* shapes do not fit together, e.g. a kernel larger than the padded input */
    CV_ENOMEM = -3,    /* an allocation failed */
    CV_ECANCELED = -4, /* a callback asked to stop */
    CV_EDIVERGED = -5, /* a loss or parameter became NaN or infinite */
    CV_EAGAIN = -6,    /* a bounded queue is full; try again later */
    CV_ETOOBIG = -7,   /* a size limit was exceeded */
};

/* Returns a short English description of a status ("ok", "shape mismatch", ...); never NULL.
 * Unknown values give "unknown status". */
const char *cv_status_str(int status);

/* Aborts with file:line and the failed expression when x is false. For broken contracts only:
 * anything a request can cause is returned as a status instead. */
#define CV_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (!(x))                                                                                  \
            cv__assert_fail(#x, __FILE__, __LINE__);                                               \
    } while (0)

/* Prints "convd: assertion failed: expr (file:line)" to stderr and aborts. Never returns. */
_Noreturn void cv__assert_fail(const char *expr, const char *file, int line);

#endif
