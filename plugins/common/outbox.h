/* outbox.h -- batches a processor has finished and must still emit, kept in order while the
 * rest of the pipeline refuses them (host->emit answers SPANHOST_RETRYABLE when an exporter
 * queue is full). A processor that holds spans (batch, tail_sampling) pushes finished batches
 * here and calls outbox_drain from its hooks and timer; it checks outbox_spans against its
 * limit and answers RETRYABLE from process while the outbox is over it, so clients are slowed
 * down instead of spans being dropped.
 *
 * Threading: every function may be called from any thread. Only one thread drains at a time
 * (others return at once), so batches leave in the order they were pushed. */
#ifndef SPANHOST_PLUGIN_OUTBOX_H
#define SPANHOST_PLUGIN_OUTBOX_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spanhost/spanhost.h"

typedef struct outbox_item {
    spanhost_batch *batch; /* OWNERSHIP: one reference, the outbox's */
    size_t spans;
    const char *counter; /* a counter bumped once when the batch leaves (NULL: none) */
    int release;         /* release trace_id to the host once the batch has left (1.4) */
    uint8_t trace_id[16];
    struct outbox_item *next;
} outbox_item;

typedef struct outbox {
    pthread_mutex_t lock;
    pthread_mutex_t draining; /* held by the one thread emitting */
    outbox_item *head, *tail;
    size_t spans; /* spans waiting, for the processor's limit */
} outbox;

static inline void outbox_init(outbox *o) {
    pthread_mutex_init(&o->lock, NULL);
    pthread_mutex_init(&o->draining, NULL);
    o->head = o->tail = NULL;
    o->spans = 0;
}

static inline size_t outbox_spans(outbox *o) {
    pthread_mutex_lock(&o->lock);
    size_t n = o->spans;
    pthread_mutex_unlock(&o->lock);
    return n;
}

/* Takes over the caller's reference to `batch`. Returns -1 (and releases it, counting the
 * spans as lost) when out of memory. */
static inline int outbox_push(outbox *o, const spanhost_host_api *host, spanhost_instance *instance,
                              spanhost_batch *batch, size_t spans, const char *counter) {
    outbox_item *item = (outbox_item *)malloc(sizeof *item);
    if (!item) {
        host->counter_add(instance, "lost_spans", (int64_t)spans);
        host->batch_release(batch);
        return -1;
    }
    item->batch = batch;
    item->spans = spans;
    item->counter = counter;
    item->release = 0;
    item->next = NULL;
    pthread_mutex_lock(&o->lock);
    if (o->tail) o->tail->next = item; else o->head = item;
    o->tail = item;
    o->spans += spans;
    pthread_mutex_unlock(&o->lock);
    return 0;
}

/* Emits waiting batches in order until the pipeline refuses one (it stays first) or none are
 * left. A batch rejected for good is dropped; the host has counted its spans as lost. With
 * `wait` 0 it returns at once when another thread is draining; flush passes 1. */
/* As outbox_push, for a batch holding the rest of one trace: once it has left (taken, or
 * rejected for good), the host is told the processor is done with the trace (release_trace),
 * so spans of it the processor dropped leave the host's hold journal too. */
static inline int outbox_push_trace(outbox *o, const spanhost_host_api *host, spanhost_instance *instance,
                                    spanhost_batch *batch, size_t spans, const uint8_t trace_id[16]) {
    if (outbox_push(o, host, instance, batch, spans, NULL) != 0) return -1;
    pthread_mutex_lock(&o->lock);
    o->tail->release = 1;
    memcpy(o->tail->trace_id, trace_id, 16);
    pthread_mutex_unlock(&o->lock);
    return 0;
}

static inline void outbox_drain(outbox *o, const spanhost_host_api *host, spanhost_instance *instance, int wait) {
    if (wait) pthread_mutex_lock(&o->draining);
    else if (pthread_mutex_trylock(&o->draining) != 0) return; /* another thread is at it */
    for (;;) {
        pthread_mutex_lock(&o->lock);
        outbox_item *item = o->head;
        pthread_mutex_unlock(&o->lock);
        if (!item) break;
        int32_t rc = host->emit(instance, item->batch);
        if (rc == SPANHOST_RETRYABLE) break;
        if (rc == SPANHOST_OK) {
            host->counter_add(instance, "batches_sent", 1);
            host->counter_add(instance, "spans_sent", (int64_t)item->spans);
            if (item->counter) host->counter_add(instance, item->counter, 1);
        }
        if (item->release && SPANHOST_HOST_HAS(host, release_trace)) host->release_trace(instance, item->trace_id);
        pthread_mutex_lock(&o->lock);
        o->head = item->next;
        if (!o->head) o->tail = NULL;
        o->spans -= item->spans;
        pthread_mutex_unlock(&o->lock);
        host->batch_release(item->batch);
        free(item);
    }
    pthread_mutex_unlock(&o->draining);
}

/* Frees what is left (at destroy), counting its spans as lost. */
static inline void outbox_free(outbox *o, const spanhost_host_api *host, spanhost_instance *instance) {
    outbox_item *item = o->head;
    while (item) {
        outbox_item *next = item->next;
        host->counter_add(instance, "lost_spans", (int64_t)item->spans);
        host->batch_release(item->batch);
        free(item);
        item = next;
    }
    o->head = o->tail = NULL;
    o->spans = 0;
    pthread_mutex_destroy(&o->lock);
    pthread_mutex_destroy(&o->draining);
}

#endif
