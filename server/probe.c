/* `convd --probe URL`: a tiny HTTP GET for container health checks, so the runtime image needs
 * no curl. Exits 0 when the reply status is 2xx, 1 otherwise. Plain HTTP on loopback only. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "server.h"

int cv_probe_run(const char *url) {
    /* Accept "http://host:port/path" or "host:port/path". */
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    char host[300] = "127.0.0.1", port[16] = "8080", path[512] = "/healthz";
    const char *slash = strchr(p, '/');
    size_t hp_len = slash ? (size_t)(slash - p) : strlen(p);
    if (slash != NULL)
        snprintf(path, sizeof path, "%s", slash);
    char hp[300];
    if (hp_len >= sizeof hp)
        return 1;
    memcpy(hp, p, hp_len);
    hp[hp_len] = '\0';
    char *colon = strrchr(hp, ':');
    if (colon != NULL) {
        *colon = '\0';
        snprintf(port, sizeof port, "%s", colon + 1);
    }
    if (hp[0] != '\0')
        snprintf(host, sizeof host, "%s", hp);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "convd --probe: cannot resolve %s\n", host);
        return 1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "convd --probe: cannot connect to %s:%s\n", host, port);
        freeaddrinfo(ai);
        if (fd >= 0)
            close(fd);
        return 1;
    }
    freeaddrinfo(ai);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: convd-probe\r\n\r\n", path, host);
    char reply[64] = {0};
    ssize_t got = -1;
    if (write(fd, req, (size_t)n) == n)
        got = read(fd, reply, sizeof reply - 1);
    close(fd);
    int status = 0;
    if (got > 0 && sscanf(reply, "HTTP/%*d.%*d %d", &status) == 1 && status >= 200 && status < 300)
        return 0;
    fprintf(stderr, "convd --probe: %s answered %d\n", url, status);
    return 1;
}
