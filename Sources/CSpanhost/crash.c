/* Crash records: see spanhost_core.h. The handler uses only async-signal-safe calls. */
#define _GNU_SOURCE
#include "spanhost_core.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct frame {
    const sh_crash_context *context;
    const char *hook;
    const struct frame *previous;
} frame;

static int record_fd = -1;
static __thread const frame *current;
static __thread int64_t current_record = -1;
static __thread int has_altstack;
/* Frames live in a small per-thread stack: calls nest only a few levels deep. */
enum { MAX_DEPTH = 64 };
static __thread frame frames[MAX_DEPTH];
static __thread int depth;

static void put(const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(record_fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void put_str(const char *s) { put(s, strlen(s)); }

static void put_int(int64_t v) {
    char digits[24];
    int i = (int)sizeof digits;
    int negative = v < 0;
    uint64_t u = negative ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0 && i > 1);
    if (negative) digits[--i] = '-';
    put(digits + i, sizeof digits - (size_t)i);
}

static void on_crash(int sig) {
    if (record_fd >= 0) {
        put_str("signal=");
        put_int(sig);
        put_str("\n");
        if (current) {
            put(current->context->text, current->context->len);
            put_str("hook=");
            put_str(current->hook);
            put_str("\n");
        } else {
            put_str("plugin=\n");
        }
        if (current_record >= 0) {
            put_str("record=");
            put_int(current_record);
            put_str("\n");
        }
        put_str("end\n");
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void sh_crash_records_install(int fd) {
    record_fd = fd;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_crash;
    action.sa_flags = SA_ONSTACK | SA_NODEFER | SA_RESETHAND;
    sigemptyset(&action.sa_mask);
    const int signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) sigaction(signals[i], &action, NULL);
}

static pthread_key_t altstack_key;
static pthread_once_t altstack_once = PTHREAD_ONCE_INIT;

/* Runs when a thread that had an alternate stack ends. */
static void free_altstack(void *memory) {
    stack_t off;
    memset(&off, 0, sizeof off);
    off.ss_flags = SS_DISABLE;
    sigaltstack(&off, NULL);
    free(memory);
}

static void make_altstack_key(void) { pthread_key_create(&altstack_key, free_altstack); }

const void *sh_crash_enter(const sh_crash_context *context, const char *hook) {
    if (!has_altstack) {
        /* A crash from a stack overflow needs a stack of its own to report it; freed when
         * the thread ends. */
        has_altstack = 1;
        pthread_once(&altstack_once, make_altstack_key);
        stack_t stack;
        stack.ss_size = 64 * 1024;
        stack.ss_sp = malloc(stack.ss_size);
        stack.ss_flags = 0;
        if (stack.ss_sp && sigaltstack(&stack, NULL) == 0) pthread_setspecific(altstack_key, stack.ss_sp);
        else free(stack.ss_sp);
    }
    const frame *previous = current;
    if (depth < MAX_DEPTH) {
        frame *f = &frames[depth++];
        f->context = context;
        f->hook = hook;
        f->previous = previous;
        current = f;
    } else {
        depth++;
    }
    return previous;
}

void sh_crash_leave(const void *previous) {
    if (depth > 0) depth--;
    current = (const frame *)previous;
}

void sh_crash_set_record(int64_t seq) { current_record = seq; }
