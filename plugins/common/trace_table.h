/* trace_table.h -- traces held by a processor while it waits for their spans (tail_sampling,
 * error_flow): a hash table by trace id plus a list in arrival order, so the oldest trace is
 * found at once. Span copies live in one batch per trace (host->batch_new). Not thread-safe:
 * callers hold their own lock. Header-only, like plugin_util.h. */
#ifndef SPANHOST_TRACE_TABLE_H
#define SPANHOST_TRACE_TABLE_H

#include "plugin_util.h"

#include <pthread.h>
#include <time.h>

typedef struct util_trace {
    uint8_t id[16];
    uint64_t first_seen_ns;
    spanhost_batch *spans; /* copies, in a batch of its own, which also holds this struct; OWNERSHIP: this trace */
    size_t span_count;
    size_t over_limit; /* spans not copied because the trace reached its limit */
    struct util_trace *next_in_bucket;
    struct util_trace *older, *newer; /* arrival order */
} util_trace;

typedef struct util_trace_table {
    util_trace **buckets;
    size_t nbuckets, held;
    util_trace *oldest, *newest;
} util_trace_table;

static inline uint64_t util_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Sizes the table for about `expected` traces. Returns 0 or -1. */
static inline int util_traces_init(util_trace_table *t, size_t expected) {
    memset(t, 0, sizeof *t);
    t->nbuckets = 16;
    while (t->nbuckets < expected) t->nbuckets *= 2;
    t->buckets = (util_trace **)calloc(t->nbuckets, sizeof *t->buckets);
    return t->buckets ? 0 : -1;
}

static inline size_t util_traces_bucket(const util_trace_table *t, const uint8_t *id) {
    return (size_t)(util_id_hash(id) & (t->nbuckets - 1));
}

static inline util_trace *util_traces_find(const util_trace_table *t, const uint8_t *id) {
    for (util_trace *tr = t->buckets[util_traces_bucket(t, id)]; tr; tr = tr->next_in_bucket)
        if (!memcmp(tr->id, id, 16)) return tr;
    return NULL;
}

/* A new, empty trace, the newest in the table. NULL when out of memory. The trace itself lives
 * in its batch's arena: one allocation less per trace, and it goes with the batch. */
static inline util_trace *util_traces_add(util_trace_table *t, const spanhost_host_api *host, const uint8_t *id) {
    spanhost_batch *spans = host->batch_new();
    if (!spans) return NULL;
    util_trace *tr = (util_trace *)host->arena_alloc(spans, sizeof *tr);
    if (!tr) {
        host->batch_release(spans);
        return NULL;
    }
    tr->spans = spans;
    memcpy(tr->id, id, 16);
    tr->first_seen_ns = util_now_ns();
    size_t b = util_traces_bucket(t, id);
    tr->next_in_bucket = t->buckets[b];
    t->buckets[b] = tr;
    tr->older = t->newest;
    if (t->newest) t->newest->newer = tr; else t->oldest = tr;
    t->newest = tr;
    t->held++;
    return tr;
}

/* Takes `tr` off the table; the caller then owns it (release with util_trace_free). */
static inline void util_traces_unlink(util_trace_table *t, util_trace *tr) {
    util_trace **pp = &t->buckets[util_traces_bucket(t, tr->id)];
    while (*pp != tr) pp = &(*pp)->next_in_bucket;
    *pp = tr->next_in_bucket;
    if (tr->older) tr->older->newer = tr->newer; else t->oldest = tr->newer;
    if (tr->newer) tr->newer->older = tr->older; else t->newest = tr->older;
    t->held--;
}

/* Releases the trace's reference to its batch; `tr` is gone with it (unless someone else still
 * holds the batch, in which case it is merely unreachable). */
static inline void util_trace_free(const spanhost_host_api *host, util_trace *tr) {
    host->batch_release(tr->spans);
}

/* Copies `span` into the trace unless it holds `max_spans` already. Returns 1 if copied. */
static inline int util_trace_add_span(const spanhost_host_api *host, util_trace *tr, size_t max_spans,
                                      const spanhost_resource_spans *rs, const spanhost_scope_spans *ss,
                                      const spanhost_span *span) {
    if (tr->span_count >= max_spans) {
        tr->over_limit++;
        return 0;
    }
    if (!host->batch_add_span(tr->spans, rs->resource, rs->schema_url, ss->scope, ss->schema_url, span)) return 0;
    tr->span_count++;
    return 1;
}

/* How late decisions come. A trace decided more than a tenth of its wait after the wait ended
 * counts in traces_decided_late; decision_lag_max_ms is the largest lag so far (it only grows, so
 * it is a counter). Callers hold their lock. */
typedef struct util_lag {
    uint64_t max_ns;
    int64_t late, max_ms_increase; /* not yet reported */
} util_lag;

static inline void util_lag_note(util_lag *l, uint64_t now, const util_trace *tr, uint64_t wait_ns) {
    uint64_t waited = now - tr->first_seen_ns, lag = waited > wait_ns ? waited - wait_ns : 0;
    if (lag > wait_ns / 10) l->late++;
    if (lag > l->max_ns) {
        l->max_ms_increase += (int64_t)(lag / 1000000) - (int64_t)(l->max_ns / 1000000);
        l->max_ns = lag;
    }
}

static inline void util_lag_report(util_lag *l, const spanhost_host_api *host, spanhost_instance *instance) {
    if (l->late) host->counter_add(instance, "traces_decided_late", l->late);
    if (l->max_ms_increase) host->counter_add(instance, "decision_lag_max_ms", l->max_ms_increase);
    l->late = l->max_ms_increase = 0;
}

/* Reads the settings every trace-holding processor has: `wait_key` (a duration, kept in
 * *wait_ms when present), num_traces and max_spans_per_trace (kept when present). Returns 0, or
 * -1 with a message naming the key. */
static inline int util_trace_settings(const spanhost_host_api *host, const spanhost_config *config, const char *wait_key,
                                      double *wait_ms, int64_t *num_traces, int64_t *max_spans, spanhost_status *status) {
    if (util_config_ms(host, config, wait_key, wait_ms, status) < 0) return -1;
    if (host->config_int(config, "num_traces", num_traces) == SPANHOST_CONFIG_WRONG_TYPE || *num_traces < 1) {
        snprintf(status->message, status->message_cap, "num_traces: must be a positive integer");
        return -1;
    }
    if (host->config_int(config, "max_spans_per_trace", max_spans) == SPANHOST_CONFIG_WRONG_TYPE || *max_spans < 1) {
        snprintf(status->message, status->message_cap, "max_spans_per_trace: must be a positive integer");
        return -1;
    }
    return 0;
}

/* A thread calling `fn(arg)` every `interval_ms` until util_ticker_stop. */
typedef struct util_ticker {
    pthread_t thread;
    int started, stopping;
    long interval_ms;
    void (*fn)(void *arg);
    void *arg;
} util_ticker;

static inline void *util_ticker_run(void *p) {
    util_ticker *t = (util_ticker *)p;
    while (!__atomic_load_n(&t->stopping, __ATOMIC_SEQ_CST)) {
        struct timespec ts = {t->interval_ms / 1000, (t->interval_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        t->fn(t->arg);
    }
    return NULL;
}

static inline int util_ticker_start(util_ticker *t, long interval_ms, void (*fn)(void *), void *arg) {
    t->interval_ms = interval_ms;
    t->fn = fn;
    t->arg = arg;
    t->started = pthread_create(&t->thread, NULL, util_ticker_run, t) == 0;
    return t->started ? 0 : -1;
}

static inline void util_ticker_stop(util_ticker *t) {
    __atomic_store_n(&t->stopping, 1, __ATOMIC_SEQ_CST);
    if (t->started) pthread_join(t->thread, NULL);
    t->started = 0;
}

#endif
