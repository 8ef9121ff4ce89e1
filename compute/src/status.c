/* Status strings and the assertion handler shared by every layer. */
#include "convd/status.h"

#include <stdio.h>
#include <stdlib.h>

static const struct {
    int status;
    const char *str;
} status_table[] = {
    {CV_OK, "ok"},
    {CV_EINVAL, "invalid argument"},
    {CV_ESHAPE, "shape mismatch"},
    {CV_ENOMEM, "out of memory"},
    {CV_ECANCELED, "cancelled"},
    {CV_EDIVERGED, "diverged: a value became NaN or infinite"},
    {CV_EAGAIN, "queue full, try again later"},
    {CV_ETOOBIG, "too large"},
};

const char *cv_status_str(int status) {
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].status == status)
            return status_table[i].str;
    return "unknown status";
}

void cv__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "convd: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
