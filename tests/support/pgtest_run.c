/* pgtest_run CMD [ARG...]: starts a private PostgreSQL cluster (pgtest.h), runs CMD with every
 * argument "@PGURL@" replaced by the cluster's libpq URI (also exported as CV_PG_URL), stops
 * the cluster and exits with CMD's status. Exits 1 (a failure, never a skip) when PostgreSQL
 * cannot be started. For ctest (the store contract suite on postgres) and the benchmarks. */
#include "pgtest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: pgtest_run CMD [ARG...]  (@PGURL@ in an ARG becomes the URI)\n");
        return 2;
    }
    struct cv_pgtest pg;
    if (cv_pgtest_start(&pg, getenv("CV_PG_CONF")) != 0) {
        fprintf(stderr, "pgtest_run: could not start PostgreSQL: FAIL\n");
        return 1;
    }
    setenv("CV_PG_URL", pg.conninfo, 1);
    char **args = calloc((size_t)argc, sizeof *args);
    for (int i = 1; i < argc; i++)
        args[i - 1] = strcmp(argv[i], "@PGURL@") == 0 ? pg.conninfo : argv[i];
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        execvp(args[0], args);
        perror("pgtest_run: exec");
        _exit(127);
    }
    int st = 1;
    if (pid > 0 && waitpid(pid, &st, 0) == pid)
        st = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    else
        st = 1;
    cv_pgtest_free(&pg);
    free(args);
    return st;
}
