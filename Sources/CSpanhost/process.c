/* Process helpers for the supervisor and its worker: see spanhost_core.h. */
#define _GNU_SOURCE
#include "spanhost_core.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

int sh_listen_tcp(const char *host, int port, int backlog, char *err, size_t err_cap) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, service, &hints, &found);
    if (rc != 0) {
        snprintf(err, err_cap, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = found; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, backlog) == 0) break;
        snprintf(err, err_cap, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    return fd;
}

int sh_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    /* dup2 onto 3, 4, ...: the copies do not inherit close-on-exec. Mapped through a high
     * number first so a source below 3+nfds is not overwritten before it is copied. */
    for (int i = 0; i < nfds; i++) posix_spawn_file_actions_adddup2(&actions, fds[i], 1000 + i);
    for (int i = 0; i < nfds; i++) {
        posix_spawn_file_actions_adddup2(&actions, 1000 + i, 3 + i);
        posix_spawn_file_actions_addclose(&actions, 1000 + i);
    }
    pid_t pid = -1;
    int rc = posix_spawn(&pid, path, &actions, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return pid;
}

void sh_die_with_parent(void) { prctl(PR_SET_PDEATHSIG, SIGTERM); }

void sh_killed_with_parent(void) { prctl(PR_SET_PDEATHSIG, SIGKILL); }
