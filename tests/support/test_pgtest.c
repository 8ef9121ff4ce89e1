/* The private-PostgreSQL test support itself: start, query, an immediate stop (a crash), a
 * restart on the same data, and a teardown that leaves nothing behind. Fails (never skips)
 * when PostgreSQL cannot be started. */
#include "pgtest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            cv_pgtest_free(&pg);                                                                   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void) {
    struct cv_pgtest pg;
    if (cv_pgtest_start(&pg, NULL) != 0) {
        fprintf(stderr, "test_pgtest: could not start PostgreSQL\n");
        return 1;
    }
    CHECK(cv_pgtest_query_ll(&pg, "SELECT 41 + 1") == 42);
    CHECK(cv_pgtest_query_ll(&pg, "CREATE TABLE t (x int)") == -1); /* "" -> -1: no rows */
    CHECK(cv_pgtest_query_ll(&pg, "INSERT INTO t VALUES (7) RETURNING x") == 7);
    pid_t first = pg.pid;
    CHECK(cv_pgtest_stop(&pg, 'i') == 0 && pg.pid == 0);
    CHECK(kill(first, 0) != 0);
    CHECK(cv_pgtest_query(&pg, "SELECT 1") == NULL); /* down */
    CHECK(cv_pgtest_restart(&pg) == 0);
    CHECK(cv_pgtest_query_ll(&pg, "SELECT count(*) FROM t") == 1);
    CHECK(cv_pgtest_stop(&pg, 'k') == 0); /* SIGKILL of the postmaster, then start again */
    CHECK(cv_pgtest_restart(&pg) == 0);
    CHECK(cv_pgtest_query_ll(&pg, "SELECT x FROM t") == 7);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", pg.dir);
    cv_pgtest_free(&pg);
    CHECK(access(dir, F_OK) != 0);
    printf("pgtest ok\n");
    return 0;
}
