/* Test support: a private PostgreSQL cluster for one test, started and stopped by the test.
 *
 * The cluster lives in a mkdtemp directory under /tmp (or $CV_PG_TMPDIR), listens only on a
 * unix socket inside that directory (listen_addresses = '', so two tests never compete for a
 * TCP port), runs as the unprivileged
 * `postgres` user when the test runs as root (PostgreSQL refuses root), and has fsync off (the
 * tests here test crashes of convd and restarts of the server, never power loss).
 *
 * The postmaster is a direct child of the test process with PR_SET_PDEATHSIG = SIGQUIT
 * (PostgreSQL's immediate shutdown), so a test that dies before its teardown still takes its
 * server down; an atexit handler stops every cluster still running as well.
 *
 * A test that needs PostgreSQL calls cv_pgtest_start and FAILS when it returns -1: it never
 * skips. The server binaries are found in $CV_PG_BINDIR, else `pg_config --bindir`, else the
 * newest /usr/lib/postgresql/N/bin.
 *
 * Not thread-safe: one test process drives its clusters from one thread. */
#ifndef CV_PGTEST_H
#define CV_PGTEST_H

#include <stdbool.h>
#include <sys/types.h>

#define CV_PGTEST_START_TIMEOUT_S 60 /* initdb + first start on a loaded machine */

struct cv_pgtest {
    char dir[256];      /* the temp directory: data/, the socket, server.log */
    char bindir[256];   /* where initdb, postgres live */
    int port;           /* names the socket file (.s.PGSQL.<port>); no TCP listener */
    pid_t pid;          /* the postmaster, 0 when stopped */
    char conninfo[512]; /* "postgresql:///convd?host=<dir>&port=<port>&user=postgres" */
};

/* initdb (once) and start a cluster with a database "convd" in a fresh temp directory.
 * extra_conf: lines appended to postgresql.conf (may be NULL). Returns 0, or -1 with the reason
 * and the server log printed to stderr. */
int cv_pgtest_start(struct cv_pgtest *pg, const char *extra_conf);

/* Stops the server: mode 'f' = fast (SIGINT, waits), 'i' = immediate (SIGQUIT, as a crash),
 * 'k' = SIGKILL of the postmaster. Waits until it is gone (bounded; escalates to SIGKILL).
 * Keeps the data directory, so cv_pgtest_restart can start it again. 0 or -1. */
int cv_pgtest_stop(struct cv_pgtest *pg, char mode);

/* Starts a stopped cluster again on the same socket and data. 0 or -1. */
int cv_pgtest_restart(struct cv_pgtest *pg);

/* Stops the server (immediate) if it runs and removes the temp directory. NULL-safe on a
 * zeroed struct. */
void cv_pgtest_free(struct cv_pgtest *pg);

/* Runs one SQL command through libpq on the cluster's "convd" database and returns the first
 * column of the first row as a malloc'd string ("" for a command without rows), or NULL on an
 * error (printed to stderr). For tests that count rows. */
char *cv_pgtest_query(const struct cv_pgtest *pg, const char *sql);

/* cv_pgtest_query parsed as an integer; -1 on error. */
long long cv_pgtest_query_ll(const struct cv_pgtest *pg, const char *sql);

#endif
