/* batch processor: gathers spans from many small requests into fewer, larger batches.
 *
 * Config (the Collector's batch processor):
 *   send_batch_size: 8192     send once this many spans are waiting
 *   timeout: 200ms            ... or once the oldest waiting span has waited this long
 *
 * Spans are taken from incoming batches (the request is answered at once) and emitted to the
 * rest of the pipeline from here. flush (shutdown, reload) sends what is waiting.
 * Counters: batches_sent, spans_sent, sent_by_size, sent_by_timeout.
 */
#include "plugin_util.h"

#include <pthread.h>
#include <time.h>

static const spanhost_host_api *host;

typedef struct batcher {
    spanhost_instance *instance;
    size_t send_size;
    uint64_t timeout_ns;
    pthread_mutex_t lock;
    spanhost_batch *pending;
    size_t pending_spans;
    uint64_t pending_since;
    pthread_t ticker;
    int stopping;
} batcher;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Takes the pending batch (if any) under the lock. */
static spanhost_batch *take(batcher *b, size_t *spans) {
    pthread_mutex_lock(&b->lock);
    spanhost_batch *out = b->pending;
    *spans = b->pending_spans;
    b->pending = NULL;
    b->pending_spans = 0;
    pthread_mutex_unlock(&b->lock);
    return out;
}

static void send(batcher *b, spanhost_batch *batch, size_t spans, const char *reason) {
    if (!batch) return;
    for (int attempt = 0; attempt < 50; attempt++) { /* a full queue downstream: wait a little */
        if (host->emit(b->instance, batch) == SPANHOST_OK) {
            host->counter_add(b->instance, "batches_sent", 1);
            host->counter_add(b->instance, "spans_sent", (int64_t)spans);
            host->counter_add(b->instance, reason, 1);
            host->batch_release(batch);
            return;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    host->counter_add(b->instance, "spans_refused_downstream", (int64_t)spans);
    host->batch_release(batch);
}

static void *tick(void *arg) {
    batcher *b = (batcher *)arg;
    while (!__atomic_load_n(&b->stopping, __ATOMIC_SEQ_CST)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&b->lock);
        int due = b->pending && now_ns() - b->pending_since >= b->timeout_ns;
        pthread_mutex_unlock(&b->lock);
        if (due) {
            size_t spans;
            spanhost_batch *batch = take(b, &spans);
            send(b, batch, spans, "sent_by_timeout");
        }
    }
    return NULL;
}

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    int64_t size = 8192;
    spanhost_str v;
    double timeout_ms = 200;
    if (host->config_int(config, "send_batch_size", &size) == SPANHOST_CONFIG_WRONG_TYPE || size < 1) {
        snprintf(status->message, status->message_cap, "send_batch_size: must be a positive integer");
        return SPANHOST_PERMANENT;
    }
    if (host->config_string(config, "timeout", &v) == SPANHOST_CONFIG_FOUND && (timeout_ms = util_duration_ms(v)) <= 0) {
        snprintf(status->message, status->message_cap, "timeout: '%.*s' is not a duration like 200ms or 1s", (int)v.len, v.ptr);
        return SPANHOST_PERMANENT;
    }
    batcher *b = (batcher *)calloc(1, sizeof *b);
    if (!b) return SPANHOST_PERMANENT;
    b->instance = instance;
    b->send_size = (size_t)size;
    b->timeout_ns = (uint64_t)(timeout_ms * 1e6);
    pthread_mutex_init(&b->lock, NULL);
    *out = b;
    return SPANHOST_OK;
}

static int32_t start(void *state, spanhost_status *status) {
    batcher *b = (batcher *)state;
    if (pthread_create(&b->ticker, NULL, tick, b) != 0) {
        snprintf(status->message, status->message_cap, "cannot start the timer thread");
        return SPANHOST_PERMANENT;
    }
    return SPANHOST_OK;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    batcher *b = (batcher *)state;
    spanhost_batch *full = NULL;
    size_t full_spans = 0;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        spanhost_resource_spans *rs = batch->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            spanhost_scope_spans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count; k++) {
                if (!b->pending) {
                    b->pending = host->batch_new();
                    b->pending_since = now_ns();
                    if (!b->pending) {
                        pthread_mutex_unlock(&b->lock);
                        snprintf(status->message, status->message_cap, "out of memory");
                        return SPANHOST_RETRYABLE; /* spans not yet taken stay in the request */
                    }
                }
                if (!host->batch_add_span(b->pending, rs->resource, rs->schema_url, ss->scope, ss->schema_url, ss->spans[k])) {
                    pthread_mutex_unlock(&b->lock);
                    snprintf(status->message, status->message_cap, "out of memory");
                    return SPANHOST_RETRYABLE;
                }
                ss->spans[k]->host_flags |= SPANHOST_SPAN_TAKEN;
                if (++b->pending_spans >= b->send_size && !full) {
                    full = b->pending;
                    full_spans = b->pending_spans;
                    b->pending = NULL;
                    b->pending_spans = 0;
                }
            }
        }
    }
    pthread_mutex_unlock(&b->lock);
    send(b, full, full_spans, "sent_by_size");
    return SPANHOST_OK;
}

static int32_t flush(void *state, spanhost_status *status) {
    (void)status;
    batcher *b = (batcher *)state;
    size_t spans;
    spanhost_batch *batch = take(b, &spans);
    send(b, batch, spans, "sent_by_flush");
    return SPANHOST_OK;
}

static void destroy(void *state) {
    batcher *b = (batcher *)state;
    __atomic_store_n(&b->stopping, 1, __ATOMIC_SEQ_CST);
    if (b->ticker) pthread_join(b->ticker, NULL);
    if (b->pending) {
        host->counter_add(b->instance, "spans_dropped_at_shutdown", (int64_t)b->pending_spans);
        host->batch_release(b->pending);
    }
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static const spanhost_plugin plugin = {
    sizeof(spanhost_plugin), SPANHOST_ABI_MAJOR, SPANHOST_ABI_MINOR, SPANHOST_KIND_PROCESSOR, 0,
    "batch", "1.0.0", "gathers spans into batches by size or timeout",
    create, start, process, NULL, NULL, flush, destroy,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
