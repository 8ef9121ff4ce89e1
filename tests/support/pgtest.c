/* See pgtest.h. The postmaster is run directly (not through pg_ctl, which detaches it) so that
 * it stays our child: PR_SET_PDEATHSIG then reaches it, waitpid tells when it is gone, and a
 * test can stop it fast, immediately or by SIGKILL to inject faults. */
#define _GNU_SOURCE
#include "pgtest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PGTEST_PORT        5432 /* only names the socket file in our private directory */
#define PGTEST_MAX         16   /* clusters one process may run at once (atexit list) */
#define PGTEST_STOP_WAIT_S 30

static struct cv_pgtest *g_live[PGTEST_MAX];
static pid_t g_owner[PGTEST_MAX];
static int g_atexit_set;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Only the process that started a cluster stops it: a check test's fork inherits the list. */
static void pgtest_atexit(void) {
    for (int i = 0; i < PGTEST_MAX; i++)
        if (g_live[i] && g_owner[i] == getpid())
            cv_pgtest_free(g_live[i]);
}

static void track(struct cv_pgtest *pg, bool on) {
    for (int i = 0; i < PGTEST_MAX; i++) {
        if (on && !g_live[i]) {
            g_live[i] = pg;
            g_owner[i] = getpid();
            break;
        }
        if (!on && g_live[i] == pg)
            g_live[i] = NULL;
    }
    if (on && !g_atexit_set) {
        atexit(pgtest_atexit);
        g_atexit_set = 1;
    }
}

static bool is_exec(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, X_OK) == 0;
}

static int find_bindir(char *out, size_t n) {
    const char *env = getenv("CV_PG_BINDIR");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return is_exec(out, "postgres") ? 0 : -1;
    }
    FILE *p = popen("pg_config --bindir 2>/dev/null", "r");
    if (p) {
        char line[256] = "";
        if (fgets(line, sizeof line, p)) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, n, "%s", line);
        }
        pclose(p);
        if (*out && is_exec(out, "postgres") && is_exec(out, "initdb"))
            return 0;
    }
    glob_t g;
    int rc = -1;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        /* glob sorts; the last is the newest major version (15 > 14; fine until 100) */
        snprintf(out, n, "%s", g.gl_pathv[g.gl_pathc - 1]);
        char *slash = strrchr(out, '/');
        if (slash)
            *slash = '\0';
        rc = is_exec(out, "initdb") ? 0 : -1;
    }
    globfree(&g);
    return rc;
}

/* Runs argv as the postgres user (when we are root) with stdout+stderr appended to
 * <dir>/server.log. With pdeath, the child gets SIGQUIT when the test process dies. */
static pid_t spawn(const struct cv_pgtest *pg, char *const argv[], bool pdeath) {
    char logp[300];
    snprintf(logp, sizeof logp, "%s/server.log", pg->dir);
    struct passwd *pw = geteuid() == 0 ? getpwnam("postgres") : NULL;
    if (geteuid() == 0 && !pw) {
        fprintf(stderr, "pgtest: running as root and there is no 'postgres' user to run the "
                        "server as (install the postgresql package)\n");
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0)
            dup2(nul, 0);
        if (pw) {
            if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
                _exit(126);
        }
        /* after setuid: a change of credentials clears the parent-death signal */
        if (pdeath) {
            prctl(PR_SET_PDEATHSIG, SIGQUIT);
            if (getppid() != parent)
                _exit(1);
        }
        setenv("LC_ALL", "C", 1);
        unsetenv("PGDATA");
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int run_wait(const struct cv_pgtest *pg, char *const argv[]) {
    pid_t pid = spawn(pg, argv, true);
    if (pid < 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void dump_log(const struct cv_pgtest *pg) {
    char p[300];
    snprintf(p, sizeof p, "%s/server.log", pg->dir);
    FILE *f = fopen(p, "r");
    fprintf(stderr, "--- postgres log (%s) ---\n", p);
    if (f) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, n, stderr);
        fclose(f);
    }
    fprintf(stderr, "--- end of postgres log ---\n");
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static bool child_alive(struct cv_pgtest *pg) {
    if (pg->pid <= 0)
        return false;
    int st;
    pid_t r = waitpid(pg->pid, &st, WNOHANG);
    if (r == pg->pid || (r < 0 && errno == ECHILD)) {
        pg->pid = 0;
        return false;
    }
    return true;
}

static int launch_and_wait(struct cv_pgtest *pg) {
    char data[300], port[16];
    snprintf(data, sizeof data, "%s/data", pg->dir);
    snprintf(port, sizeof port, "%d", pg->port);
    char postgres[300];
    snprintf(postgres, sizeof postgres, "%s/postgres", pg->bindir);
    char *argv[] = {postgres, "-D", data, "-p", port, NULL};
    char admin[600];
    snprintf(admin, sizeof admin, "host=%s port=%d user=postgres dbname=postgres connect_timeout=5",
             pg->dir, pg->port);
    double deadline = now_s() + CV_PGTEST_START_TIMEOUT_S;
    while (now_s() < deadline) {
        pg->pid = spawn(pg, argv, true);
        if (pg->pid < 0) {
            pg->pid = 0;
            return -1;
        }
        while (now_s() < deadline && child_alive(pg)) {
            if (PQping(admin) == PQPING_OK)
                return 0;
            sleep_ms(50);
        }
        if (pg->pid == 0) {
            /* it exited: e.g. backends of a SIGKILLed postmaster still hold the old shared
               memory for a moment; try again */
            sleep_ms(200);
            continue;
        }
        break;
    }
    fprintf(stderr, "pgtest: the server in %s did not become ready\n", pg->dir);
    dump_log(pg);
    if (pg->pid > 0) {
        kill(pg->pid, SIGKILL);
        waitpid(pg->pid, NULL, 0);
        pg->pid = 0;
    }
    return -1;
}

int cv_pgtest_start(struct cv_pgtest *pg, const char *extra_conf) {
    memset(pg, 0, sizeof *pg);
    pg->port = PGTEST_PORT;
    if (find_bindir(pg->bindir, sizeof pg->bindir) != 0) {
        fprintf(stderr, "pgtest: no PostgreSQL server binaries (postgres, initdb) found: install "
                        "the postgresql package (tools/test-packages.txt) or set CV_PG_BINDIR\n");
        return -1;
    }
    /* /tmp, not $TMPDIR: the postgres user must reach the directory (a TMPDIR under /root
       would not do), and the socket path (<dir>/.s.PGSQL.5432) must fit in sun_path (107
       bytes). CV_PG_TMPDIR overrides. */
    const char *tmp = getenv("CV_PG_TMPDIR");
    snprintf(pg->dir, sizeof pg->dir, "%s/cvpg-XXXXXX",
             tmp && *tmp && strlen(tmp) < 60 ? tmp : "/tmp");
    if (!mkdtemp(pg->dir)) {
        perror("pgtest: mkdtemp");
        return -1;
    }
    track(pg, true);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
            fprintf(stderr, "pgtest: cannot hand %s to the postgres user\n", pg->dir);
            cv_pgtest_free(pg);
            return -1;
        }
    }
    char data[300], initdb[300];
    snprintf(data, sizeof data, "%s/data", pg->dir);
    snprintf(initdb, sizeof initdb, "%s/initdb", pg->bindir);
    char *iargv[] = {initdb, "-D",   data,         "--auth=trust", "-U", "postgres",
                     "-E",   "UTF8", "--locale=C", "-N",           NULL};
    if (run_wait(pg, iargv) != 0) {
        fprintf(stderr, "pgtest: initdb failed\n");
        dump_log(pg);
        cv_pgtest_free(pg);
        return -1;
    }
    char confp[320];
    snprintf(confp, sizeof confp, "%s/postgresql.conf", data);
    FILE *conf = fopen(confp, "a");
    if (!conf) {
        perror("pgtest: postgresql.conf");
        cv_pgtest_free(pg);
        return -1;
    }
    fprintf(conf,
            "\n# cv_pgtest: a private unix socket only, no durability (tests crash convd, not "
            "the machine)\nlisten_addresses = ''\nunix_socket_directories = '%s'\nfsync = off\n"
            "full_page_writes = off\nshared_buffers = 32MB\nmax_connections = 100\n"
            "log_min_messages = warning\n%s\n",
            pg->dir, extra_conf ? extra_conf : "");
    fclose(conf);
    if (launch_and_wait(pg) != 0) {
        cv_pgtest_free(pg);
        return -1;
    }
    char admin[600];
    snprintf(admin, sizeof admin, "host=%s port=%d user=postgres dbname=postgres", pg->dir,
             pg->port);
    PGconn *c = PQconnectdb(admin);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, "CREATE DATABASE convd") : NULL;
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "pgtest: CREATE DATABASE: %s\n", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    if (!ok) {
        dump_log(pg);
        cv_pgtest_free(pg);
        return -1;
    }
    snprintf(pg->conninfo, sizeof pg->conninfo, "postgresql:///convd?host=%s&port=%d&user=postgres",
             pg->dir, pg->port);
    return 0;
}

int cv_pgtest_stop(struct cv_pgtest *pg, char mode) {
    if (!child_alive(pg))
        return 0;
    int sig = mode == 'f' ? SIGINT : mode == 'i' ? SIGQUIT : SIGKILL;
    kill(pg->pid, sig);
    double deadline = now_s() + PGTEST_STOP_WAIT_S;
    while (child_alive(pg) && now_s() < deadline)
        sleep_ms(20);
    if (pg->pid > 0) {
        kill(pg->pid, SIGKILL);
        waitpid(pg->pid, NULL, 0);
        pg->pid = 0;
    }
    return 0;
}

int cv_pgtest_restart(struct cv_pgtest *pg) {
    if (child_alive(pg))
        return 0;
    return launch_and_wait(pg);
}

void cv_pgtest_free(struct cv_pgtest *pg) {
    if (!pg)
        return;
    if (pg->pid > 0)
        cv_pgtest_stop(pg, 'i');
    if (pg->dir[0])
        nftw(pg->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    track(pg, false);
    pg->dir[0] = '\0';
}

char *cv_pgtest_query(const struct cv_pgtest *pg, const char *sql) {
    PGconn *c = PQconnectdb(pg->conninfo);
    char *out = NULL;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pgtest: connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK)
        out = strdup(PQntuples(r) > 0 && PQnfields(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    else if (st == PGRES_COMMAND_OK)
        out = strdup("");
    else
        fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return out;
}

long long cv_pgtest_query_ll(const struct cv_pgtest *pg, const char *sql) {
    char *s = cv_pgtest_query(pg, sql);
    long long v = s && *s ? strtoll(s, NULL, 10) : -1;
    free(s);
    return v;
}
