/* batch processor: gathers spans from many small requests into fewer, larger batches.
 *
 * Config (the Collector's batch processor):
 *   send_batch_size: 8192     send once this many spans are waiting
 *   timeout: 200ms            ... or once the oldest waiting span has waited this long
 *   max_held_spans: 131072    spans held at most (default 16 x send_batch_size); past it,
 *                             process answers RETRYABLE and the client gets 503
 *
 * Spans are taken from incoming batches (the request is answered at once) and emitted to the
 * rest of the pipeline from here. When the pipeline refuses (a full exporter queue), finished
 * batches wait in order in an outbox and are emitted again from the timer; nothing is dropped.
 * flush (shutdown, reload) sends everything waiting. Counters: batches_sent, spans_sent,
 * sent_by_size, sent_by_timeout, sent_by_flush, refused_full; lost_spans if any had to go.
 */
#include "plugin_util.h"
#include "outbox.h"

#include <pthread.h>
#include <time.h>

static const spanhost_host_api *host;

typedef struct batcher {
    spanhost_instance *instance;
    size_t send_size;
    size_t max_held;
    uint64_t timeout_ns;
    pthread_mutex_t lock;
    spanhost_batch *pending; /* being filled */
    size_t pending_spans;
    uint64_t pending_since;
    outbox out; /* finished, waiting to be emitted */
    pthread_t ticker;
    int stopping;
} batcher;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Moves the pending batch to the outbox. Called with the lock held. */
static void finish_pending(batcher *b, const char *reason) {
    if (!b->pending) return;
    outbox_push(&b->out, host, b->instance, b->pending, b->pending_spans, reason);
    b->pending = NULL;
    b->pending_spans = 0;
}

static void *tick(void *arg) {
    batcher *b = (batcher *)arg;
    while (!__atomic_load_n(&b->stopping, __ATOMIC_SEQ_CST)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&b->lock);
        if (b->pending && now_ns() - b->pending_since >= b->timeout_ns) finish_pending(b, "sent_by_timeout");
        pthread_mutex_unlock(&b->lock);
        outbox_drain(&b->out, host, b->instance, 0);
    }
    return NULL;
}

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    int64_t size = 8192, max_held = -1;
    double timeout_ms = 200;
    if (host->config_int(config, "send_batch_size", &size) == SPANHOST_CONFIG_WRONG_TYPE || size < 1 || size > 100000000) {
        snprintf(status->message, status->message_cap, "send_batch_size: must be an integer from 1 to 100000000");
        return SPANHOST_PERMANENT;
    }
    if (util_config_ms(host, config, "timeout", &timeout_ms, status) < 0) return SPANHOST_PERMANENT;
    if (timeout_ms <= 0) {
        snprintf(status->message, status->message_cap, "timeout: must be longer than zero");
        return SPANHOST_PERMANENT;
    }
    if (host->config_int(config, "max_held_spans", &max_held) == SPANHOST_CONFIG_WRONG_TYPE ||
        (max_held != -1 && max_held < size)) {
        snprintf(status->message, status->message_cap, "max_held_spans: must be an integer no less than send_batch_size");
        return SPANHOST_PERMANENT;
    }
    batcher *b = (batcher *)calloc(1, sizeof *b);
    if (!b) return SPANHOST_PERMANENT;
    b->instance = instance;
    b->send_size = (size_t)size;
    b->max_held = max_held == -1 ? (size_t)size * 16 : (size_t)max_held;
    b->timeout_ns = (uint64_t)(timeout_ms * 1e6);
    pthread_mutex_init(&b->lock, NULL);
    outbox_init(&b->out);
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

/* Spans held: being filled and waiting in the outbox. */
static size_t held(batcher *b) {
    pthread_mutex_lock(&b->lock);
    size_t n = b->pending_spans;
    pthread_mutex_unlock(&b->lock);
    return n + outbox_spans(&b->out);
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    batcher *b = (batcher *)state;
    if (held(b) >= b->max_held) {
        outbox_drain(&b->out, host, b->instance, 0);
        size_t waiting = held(b);
        if (waiting >= b->max_held) {
            host->counter_add(b->instance, "refused_full", 1);
            snprintf(status->message, status->message_cap, "batch: %zu spans held while the pipeline refuses them", waiting);
            status->retry_after_ms = 1000;
            return SPANHOST_RETRYABLE;
        }
    }
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
                if (++b->pending_spans >= b->send_size) finish_pending(b, "sent_by_size");
            }
        }
    }
    pthread_mutex_unlock(&b->lock);
    outbox_drain(&b->out, host, b->instance, 0);
    return SPANHOST_OK;
}

static int32_t flush(void *state, spanhost_status *status) {
    (void)status;
    batcher *b = (batcher *)state;
    pthread_mutex_lock(&b->lock);
    finish_pending(b, "sent_by_flush");
    pthread_mutex_unlock(&b->lock);
    outbox_drain(&b->out, host, b->instance, 1);
    return SPANHOST_OK;
}

static void destroy(void *state) {
    batcher *b = (batcher *)state;
    __atomic_store_n(&b->stopping, 1, __ATOMIC_SEQ_CST);
    if (b->ticker) pthread_join(b->ticker, NULL);
    finish_pending(b, NULL);
    outbox_free(&b->out, host, b->instance); /* counts what is left as lost_spans */
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static const spanhost_config_key config_keys[] = {
    {"send_batch_size", SPANHOST_TYPE_INT, 0, "8192", "send once this many spans are waiting"},
    {"timeout", SPANHOST_TYPE_DURATION, 0, "200ms", "... or once the oldest waiting span has waited this long"},
    {"max_held_spans", SPANHOST_TYPE_INT, 0, "16 x send_batch_size", "spans held at most; past it new requests get 503"},
};

static const spanhost_plugin plugin = {
    sizeof(spanhost_plugin), SPANHOST_ABI_MAJOR, SPANHOST_ABI_MINOR, SPANHOST_KIND_PROCESSOR, 0,
    "batch", "1.1.0", "gathers spans into batches by size or timeout",
    create, start, process, NULL, NULL, flush, destroy, SPANHOST_SCHEMA(config_keys), NULL, 0,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
