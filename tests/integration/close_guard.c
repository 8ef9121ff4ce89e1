/* LD_PRELOAD shim for tests/integration/start_failure.sh: makes a double close visible and can
 * make the connection guard's thread fail to start.
 *
 * - close(fd >= 0) failing with EBADF (the descriptor was closed already: a double close, which
 *   in a threaded process may close another thread's file) prints a line and exits 97.
 * - With CV_SHIM_FAIL_GUARD_THREAD=1, the first pthread_create of a routine outside
 *   libmicrohttpd after libmicrohttpd has started a thread fails with EAGAIN. In convd that is
 *   the guard's reaper (cv_guard_start right after MHD_start_daemon): the start-up error path of
 *   server/http.c that closed the listening socket after MHD_stop_daemon had closed it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*close_fn)(int);
typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

int close(int fd) {
    static close_fn real;
    if (real == NULL)
        real = (close_fn)dlsym(RTLD_NEXT, "close");
    int ret = real(fd);
    if (ret != 0 && errno == EBADF && fd >= 0) {
        char msg[96];
        int n =
            snprintf(msg, sizeof msg, "close_guard: close(%d): not open (a double close)\n", fd);
        if (n > 0)
            (void)!write(STDERR_FILENO, msg, (size_t)n);
        _exit(97);
    }
    return ret;
}

/* True when addr lies in libmicrohttpd. */
static bool in_mhd(void *addr) {
    Dl_info info;
    return dladdr(addr, &info) != 0 && info.dli_fname != NULL &&
           strstr(info.dli_fname, "libmicrohttpd") != NULL;
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    static create_fn real;
    static bool mhd_started, failed;
    if (real == NULL)
        real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
    const char *want = getenv("CV_SHIM_FAIL_GUARD_THREAD");
    if (want != NULL && strcmp(want, "1") == 0) {
        if (in_mhd((void *)fn)) {
            __atomic_store_n(&mhd_started, true, __ATOMIC_SEQ_CST);
        } else if (__atomic_load_n(&mhd_started, __ATOMIC_SEQ_CST) &&
                   !__atomic_exchange_n(&failed, true, __ATOMIC_SEQ_CST)) {
            return EAGAIN;
        }
    }
    return real(t, attr, fn, arg);
}
