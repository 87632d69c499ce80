/* exec notifier: runs a command for each event, with the event's JSON on its stdin.
 *
 * Config:
 *   command: [program, arg, ...]   required; the program is looked up in PATH
 *   timeout: 10s                   the command is killed (its whole process group) after this
 *
 * Exit status 0 is delivered. A non-zero exit, a kill by signal or a timeout is retryable (the
 * host retries with backoff); exit status 126 or 127 (cannot run, not found) is permanent.
 * The command's stdout and stderr go to spanhostd's stderr.
 */
#define _GNU_SOURCE /* SOCK_CLOEXEC, syscall(SYS_close_range) */
#include <spanhost/spanhost.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugin_util.h"

static const spanhost_host_api *host;

typedef struct exec_state {
    spanhost_instance *instance;
    char **argv;
    size_t argc;
    double timeout_ms;
} exec_state;

static void exec_destroy(void *state) {
    exec_state *s = (exec_state *)state;
    if (!s) return;
    for (size_t i = 0; i < s->argc; i++) free(s->argv[i]);
    free(s->argv);
    free(s);
}

static int32_t exec_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    size_t argc = 0;
    if (host->config_count(config, "command", &argc) != SPANHOST_CONFIG_FOUND || argc == 0) {
        snprintf(status->message, status->message_cap, "command: required, a list like [/usr/local/bin/page, --team, sre]");
        return SPANHOST_PERMANENT;
    }
    if (host->struct_size < offsetof(spanhost_host_api, encode_notification) + sizeof(void *)) {
        snprintf(status->message, status->message_cap, "needs a host with ABI 1.1 or newer");
        return SPANHOST_PERMANENT;
    }
    exec_state *s = (exec_state *)calloc(1, sizeof *s);
    if (!s || !(s->argv = (char **)calloc(argc + 1, sizeof(char *)))) {
        free(s);
        return SPANHOST_PERMANENT;
    }
    s->instance = instance;
    for (size_t i = 0; i < argc; i++) {
        char path[32];
        spanhost_str arg = {NULL, 0};
        snprintf(path, sizeof path, "command.%zu", i);
        if (host->config_string(config, path, &arg) != SPANHOST_CONFIG_FOUND || (i == 0 && arg.len == 0)) {
            snprintf(status->message, status->message_cap, "command.%zu: must be a string", i);
            exec_destroy(s);
            return SPANHOST_PERMANENT;
        }
        s->argv[i] = util_strdup(arg);
        s->argc = i + 1;
    }
    double timeout_ms = 10000;
    if (util_config_ms(host, config, "timeout", &timeout_ms, status) < 0 || timeout_ms <= 0) {
        if (timeout_ms <= 0) snprintf(status->message, status->message_cap, "timeout: must be longer than zero");
        exec_destroy(s);
        return SPANHOST_PERMANENT;
    }
    s->timeout_ms = timeout_ms;
    *out = s;
    return SPANHOST_OK;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000 + (double)ts.tv_nsec / 1e6;
}

/* In the forked child: closes every descriptor above stderr, so the command inherits none of
 * the host's sockets and files, whatever flags they were opened with. */
static void close_inherited(void) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) return;
#endif
    struct rlimit limit;
    long max = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536 ? (long)limit.rlim_cur : 65536;
    for (long fd = 3; fd < max; fd++) close((int)fd);
}

static int32_t exec_notify(void *state, const spanhost_notification *n, spanhost_status *status) {
    exec_state *s = (exec_state *)state;
    spanhost_buffer json = {NULL, 0};
    if (host->encode_notification(n, &json) != 0) {
        snprintf(status->message, status->message_cap, "could not encode the event");
        return SPANHOST_PERMANENT;
    }
    /* A socket pair rather than a pipe: send() with MSG_NOSIGNAL cannot raise SIGPIPE in the
     * host when the command exits without reading its input. */
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        host->buffer_free(&json);
        snprintf(status->message, status->message_cap, "socketpair: %s", strerror(errno));
        return SPANHOST_RETRYABLE;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        host->buffer_free(&json);
        snprintf(status->message, status->message_cap, "fork: %s", strerror(errno));
        return SPANHOST_RETRYABLE;
    }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fds[1], STDIN_FILENO);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        close_inherited();
        execvp(s->argv[0], s->argv);
        _exit(errno == ENOENT ? 127 : 126);
    }
    close(fds[1]);
    shutdown(fds[0], SHUT_RD);
    double deadline = now_ms() + s->timeout_ms;
    size_t sent = 0;
    while (sent < json.len && now_ms() < deadline) {
        struct pollfd p = {fds[0], POLLOUT, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t k = send(fds[0], json.data + sent, json.len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) sent += (size_t)k;
        else if (k < 0 && errno != EAGAIN && errno != EINTR) break; /* the command closed its stdin */
    }
    close(fds[0]);
    host->buffer_free(&json);

    int wstatus = 0;
    pid_t done = 0;
    while ((done = waitpid(pid, &wstatus, WNOHANG)) == 0 && now_ms() < deadline) {
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    if (done == 0) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        waitpid(pid, &wstatus, 0);
        host->counter_add(s->instance, "timeouts", 1);
        snprintf(status->message, status->message_cap, "%s: killed after %.0f ms", s->argv[0], s->timeout_ms);
        return SPANHOST_RETRYABLE;
    }
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return SPANHOST_OK;
    if (WIFEXITED(wstatus)) {
        int code = WEXITSTATUS(wstatus);
        snprintf(status->message, status->message_cap, "%s: exit status %d%s", s->argv[0], code,
                 code == 127 ? " (not found)" : code == 126 ? " (cannot run)" : "");
        return code == 126 || code == 127 ? SPANHOST_PERMANENT : SPANHOST_RETRYABLE;
    }
    snprintf(status->message, status->message_cap, "%s: killed by signal %d", s->argv[0], WTERMSIG(wstatus));
    return SPANHOST_RETRYABLE;
}

static const spanhost_config_key config_keys[] = {
    {"command", SPANHOST_TYPE_STRING_LIST, 1, NULL, "program and arguments; the program is looked up in PATH"},
    {"timeout", SPANHOST_TYPE_DURATION, 0, "10s", "the command is killed after this"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_NOTIFIER,
    .flags = SPANHOST_PLUGIN_UNLOADABLE,
    .name = "exec",
    .version = "1.0.0",
    .description = "runs a command with each event as JSON on stdin",
    .create = exec_create,
    .notify = exec_notify,
    .destroy = exec_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
