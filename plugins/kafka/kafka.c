/* kafka exporter (librdkafka): publishes batches as OTLP messages.
 *
 * Config:
 *   brokers: [host:port, ...]       or one comma-separated string (required)
 *   topic: otlp_spans               (default otlp_spans)
 *   encoding: otlp_proto | otlp_json   (default otlp_proto): one ExportTraceServiceRequest per message
 *   partition_traces_by_id: false   when true, one message per trace, keyed by the trace id as 32
 *                                   hex characters, so a trace always lands in one partition
 *   acks: all | 1 | 0               (default all)
 *   compression: none | gzip | snappy | lz4 | zstd   (default none)
 *   linger_ms: 5                    how long the producer waits to fill a request
 *   batch_size: 1000000             bytes per produce request
 *   timeout: 10s                    how long a message may wait for the broker's acknowledgement
 *   properties: {name: value}       any librdkafka property (TLS, SASL, ...), applied last
 *
 * export_batch returns OK only after the broker acknowledged every message of the batch (the
 * delivery reports say so); a batch with a failed message is RETRYABLE (or PERMANENT for errors
 * that cannot succeed by retrying, such as a message larger than the broker accepts).
 */
#include "plugin_util.h"

#include <librdkafka/rdkafka.h>

/* Built twice: as the `kafka` exporter, and with KAFKA_EVENTS defined as the `kafka_events`
 * notifier (plugins/kafka_events), which shares the producer set-up below. */

static const spanhost_host_api *host;

typedef struct kafka_state {
    spanhost_instance *instance;
    rd_kafka_t *rk;
    char topic[256];
    int json;
    int by_trace;
    char payload[256]; /* kafka_events: "" for the whole event, else one attribute's key */
} kafka_state;

/* The outcome of one export call's messages, filled by delivery reports. Export calls may run
 * on several threads at once (the plugin is CONCURRENT) and any of them may serve another's
 * delivery reports while polling, so the counters are updated atomically. */
typedef struct delivery {
    int pending;
    int failed;
    int permanent;
    rd_kafka_resp_err_t err;
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    (void)opaque;
    delivery *d = (delivery *)msg->_private;
    if (!d) return;
    if (msg->err) {
        __atomic_add_fetch(&d->failed, 1, __ATOMIC_SEQ_CST);
        d->err = msg->err;
        if (msg->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || msg->err == RD_KAFKA_RESP_ERR_INVALID_MSG ||
            msg->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED || msg->err == RD_KAFKA_RESP_ERR__INVALID_ARG)
            d->permanent = 1;
    }
    __atomic_sub_fetch(&d->pending, 1, __ATOMIC_SEQ_CST);
}

static int set(rd_kafka_conf_t *conf, const char *key, const char *value, const char *from, spanhost_status *status) {
    char err[256];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
        snprintf(status->message, status->message_cap, "%s: %s", from, err);
        return -1;
    }
    return 0;
}

static int cstr(spanhost_str s, char *buf, size_t cap) {
    if (s.len >= cap) return -1;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    return 0;
}

#define FAIL(...) do { snprintf(status->message, status->message_cap, __VA_ARGS__); goto fail; } while (0)

static int32_t kafka_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    kafka_state *s = (kafka_state *)calloc(1, sizeof *s);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char brokers[2048] = "", value[1024], key[256];
    spanhost_str v;
    size_t n = 0;
    if (!s || !conf) return SPANHOST_PERMANENT;
    s->instance = instance;

    if (host->config_count(config, "brokers", &n) == SPANHOST_CONFIG_FOUND) {
        for (size_t i = 0; i < n; i++) {
            char path[32];
            snprintf(path, sizeof path, "brokers.%zu", i);
            if (host->config_string(config, path, &v) != SPANHOST_CONFIG_FOUND || cstr(v, value, sizeof value))
                FAIL("brokers.%zu: must be host:port", i);
            if (strlen(brokers) + strlen(value) + 2 > sizeof brokers) FAIL("brokers: list too long");
            if (i) strcat(brokers, ",");
            strcat(brokers, value);
        }
    } else if (host->config_string(config, "brokers", &v) == SPANHOST_CONFIG_FOUND) {
        if (cstr(v, brokers, sizeof brokers)) FAIL("brokers: too long");
    }
    if (!brokers[0]) strcpy(brokers, "localhost:9092"); /* the Collector's default */
    if (set(conf, "bootstrap.servers", brokers, "brokers", status)) goto fail;
    /* The Collector's protocol_version ("2.1.0"): the broker version librdkafka assumes when the
     * broker cannot tell it (it asks brokers that can). */
    if (host->config_string(config, "protocol_version", &v) == SPANHOST_CONFIG_FOUND &&
        (cstr(v, value, sizeof value) || set(conf, "broker.version.fallback", value, "protocol_version", status)))
        goto fail;

#ifdef KAFKA_EVENTS
    strcpy(s->topic, "spanhost_events");
    if (host->config_string(config, "payload", &v) == SPANHOST_CONFIG_FOUND && !util_str_is(v, "event") &&
        (v.len == 0 || cstr(v, s->payload, sizeof s->payload)))
        FAIL("payload: must be event or an attribute key such as omegi");
#else
    strcpy(s->topic, "otlp_spans");
#endif
    /* The Collector's newer shape puts them under `traces:`; `metrics:` and `logs:` are
     * accepted and never used (spanhost carries traces). */
#ifndef KAFKA_EVENTS
    spanhost_str other_signal;
    host->config_key(config, "metrics", 0, &other_signal);
    host->config_key(config, "logs", 0, &other_signal);
    host->config_key(config, "profiles", 0, &other_signal);
    const char *topic_key = host->config_string(config, "traces.topic", &v) == SPANHOST_CONFIG_FOUND ? "traces.topic" : "topic";
    const char *encoding_key = host->config_string(config, "traces.encoding", &v) == SPANHOST_CONFIG_FOUND ? "traces.encoding" : "encoding";
#else
    const char *topic_key = "topic", *encoding_key = "encoding";
#endif
    if (host->config_string(config, topic_key, &v) == SPANHOST_CONFIG_FOUND && (v.len == 0 || cstr(v, s->topic, sizeof s->topic)))
        FAIL("%s: must be a topic name", topic_key);
    if (host->config_string(config, encoding_key, &v) == SPANHOST_CONFIG_FOUND) {
        if (v.len == 9 && !memcmp(v.ptr, "otlp_json", 9)) s->json = 1;
        else if (!(v.len == 10 && !memcmp(v.ptr, "otlp_proto", 10))) FAIL("%s: '%.*s' is not otlp_proto or otlp_json", encoding_key, (int)v.len, v.ptr);
    }
    int32_t b;
    if (host->config_bool(config, "partition_traces_by_id", &b) == SPANHOST_CONFIG_WRONG_TYPE) FAIL("partition_traces_by_id: must be true or false");
    else if (host->config_bool(config, "partition_traces_by_id", &b) == SPANHOST_CONFIG_FOUND) s->by_trace = b;

    const char *acks = "all";
    if (host->config_string(config, "acks", &v) == SPANHOST_CONFIG_FOUND) {
        if (cstr(v, value, sizeof value) || (strcmp(value, "all") && strcmp(value, "-1") && strcmp(value, "1") && strcmp(value, "0")))
            FAIL("acks: must be all, 1 or 0");
        acks = value;
    }
    if (set(conf, "acks", acks, "acks", status)) goto fail;
    if (host->config_string(config, "compression", &v) == SPANHOST_CONFIG_FOUND) {
        if (cstr(v, value, sizeof value) || set(conf, "compression.codec", value, "compression", status)) goto fail;
    }
    if (host->config_string(config, "linger_ms", &v) == SPANHOST_CONFIG_FOUND) {
        if (cstr(v, value, sizeof value) || set(conf, "linger.ms", value, "linger_ms", status)) goto fail;
    }
    if (host->config_string(config, "batch_size", &v) == SPANHOST_CONFIG_FOUND) {
        if (cstr(v, value, sizeof value) || set(conf, "batch.size", value, "batch_size", status)) goto fail;
    }
    double timeout = 10000;
    if (util_config_ms(host, config, "timeout", &timeout, status) < 0) goto fail;
    if (timeout < 1) FAIL("timeout: must be at least 1ms");
    snprintf(value, sizeof value, "%ld", (long)timeout);
    if (set(conf, "message.timeout.ms", value, "timeout", status)) goto fail;

    if (host->config_count(config, "properties", &n) == SPANHOST_CONFIG_FOUND) {
        for (size_t i = 0; i < n; i++) {
            char path[300];
            if (host->config_key(config, "properties", i, &v) != SPANHOST_CONFIG_FOUND || cstr(v, key, sizeof key)) FAIL("properties: bad key");
            snprintf(path, sizeof path, "properties.%s", key);
            if (host->config_string(config, path, &v) != SPANHOST_CONFIG_FOUND || cstr(v, value, sizeof value))
                FAIL("properties.%s: must be a string", key);
            if (set(conf, key, value, path, status)) goto fail;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char err[512];
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!s->rk) FAIL("cannot create the producer: %s", err); /* conf was not taken */
    *out = s;
    return SPANHOST_OK;
fail:
    rd_kafka_conf_destroy(conf);
    free(s);
    return SPANHOST_PERMANENT;
}

/* Queues one message; waits for room in librdkafka's queue if it is full. */
static int produce(kafka_state *s, spanhost_buffer *payload, const char *key, size_t key_len, delivery *d) {
    for (int attempt = 0; attempt < 100; attempt++) {
        __atomic_add_fetch(&d->pending, 1, __ATOMIC_SEQ_CST);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            s->rk, RD_KAFKA_V_TOPIC(s->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE(payload->data, payload->len), RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_OPAQUE(d),
            RD_KAFKA_V_END);
        if (!err) return 0;
        __atomic_sub_fetch(&d->pending, 1, __ATOMIC_SEQ_CST);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            __atomic_add_fetch(&d->failed, 1, __ATOMIC_SEQ_CST);
            d->err = err;
            return -1;
        }
        rd_kafka_poll(s->rk, 100);
    }
    __atomic_add_fetch(&d->failed, 1, __ATOMIC_SEQ_CST);
    d->err = RD_KAFKA_RESP_ERR__QUEUE_FULL;
    return -1;
}

#ifndef KAFKA_EVENTS
static int same_trace(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, 16) == 0; }

/* One message per trace: spans of each trace copied into a batch of their own. */
static void produce_by_trace(kafka_state *s, const spanhost_batch *batch, uint32_t enc, delivery *d) {
    size_t total = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++)
        for (size_t j = 0; j < batch->resource_spans[i]->scope_spans_count; j++) total += batch->resource_spans[i]->scope_spans[j]->spans_count;
    const uint8_t **done = (const uint8_t **)calloc(total ? total : 1, sizeof *done);
    size_t ndone = 0;
    if (!done) { __atomic_add_fetch(&d->failed, 1, __ATOMIC_SEQ_CST); return; }
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count; k++) {
                const uint8_t *tid = ss->spans[k]->trace_id;
                int seen = 0;
                for (size_t x = 0; x < ndone && !seen; x++) seen = same_trace(done[x], tid);
                if (seen) continue;
                done[ndone++] = tid;
                /* Gather this trace from the whole batch (its spans may sit in other groups). */
                spanhost_batch *one = host->batch_new();
                if (!one) { __atomic_add_fetch(&d->failed, 1, __ATOMIC_SEQ_CST); continue; }
                for (size_t i2 = i; i2 < batch->resource_spans_count; i2++) {
                    const spanhost_resource_spans *rs2 = batch->resource_spans[i2];
                    for (size_t j2 = 0; j2 < rs2->scope_spans_count; j2++) {
                        const spanhost_scope_spans *ss2 = rs2->scope_spans[j2];
                        for (size_t k2 = 0; k2 < ss2->spans_count; k2++)
                            if (same_trace(ss2->spans[k2]->trace_id, tid))
                                host->batch_add_span(one, rs2->resource, rs2->schema_url, ss2->scope, ss2->schema_url, ss2->spans[k2]);
                    }
                }
                spanhost_buffer payload;
                if (host->encode_batch(one, enc, &payload) == 0) {
                    char key[33];
                    for (int b = 0; b < 16; b++) snprintf(key + 2 * b, 3, "%02x", tid[b]);
                    produce(s, &payload, key, 32, d);
                    host->buffer_free(&payload);
                } else {
                    __atomic_add_fetch(&d->failed, 1, __ATOMIC_SEQ_CST);
                }
                host->batch_release(one);
            }
        }
    }
    free(done);
}

static int32_t kafka_export(void *state, const spanhost_batch *batch, spanhost_status *status) {
    kafka_state *s = (kafka_state *)state;
    uint32_t enc = s->json ? SPANHOST_ENCODING_OTLP_JSON : SPANHOST_ENCODING_OTLP_PROTO;
    delivery d = {0, 0, 0, RD_KAFKA_RESP_ERR_NO_ERROR};
    int messages;
    if (s->by_trace) {
        produce_by_trace(s, batch, enc, &d);
    } else {
        spanhost_buffer payload;
        if (host->encode_batch(batch, enc, &payload) != 0) {
            snprintf(status->message, status->message_cap, "encoding the batch failed");
            return SPANHOST_RETRYABLE;
        }
        produce(s, &payload, NULL, 0, &d);
        host->buffer_free(&payload);
    }
    messages = __atomic_load_n(&d.pending, __ATOMIC_SEQ_CST) + __atomic_load_n(&d.failed, __ATOMIC_SEQ_CST);
    /* Every queued message gets exactly one delivery report, at the latest when
     * message.timeout.ms expires; `d` must outlive them all, so wait for all of them. */
    while (__atomic_load_n(&d.pending, __ATOMIC_SEQ_CST) > 0) rd_kafka_poll(s->rk, 2);
    host->counter_add(s->instance, "messages_acked", messages - d.failed);
    if (d.failed) {
        host->counter_add(s->instance, "messages_failed", d.failed);
        snprintf(status->message, status->message_cap, "%d of %d messages to %s failed: %s", d.failed, messages, s->topic,
                 rd_kafka_err2str(d.err));
        return d.permanent ? SPANHOST_PERMANENT : SPANHOST_RETRYABLE;
    }
    return SPANHOST_OK;
}
#endif

#ifdef KAFKA_EVENTS
/* One message per event: the event's JSON, or one attribute's value as JSON (`payload`), keyed
 * by the trace id in hex (or the event's key when it is about no single trace). OK once the
 * broker acknowledged it. Events without the payload attribute are skipped and counted. */
static int32_t kafka_notify(void *state, const spanhost_notification *n, spanhost_status *status) {
    kafka_state *s = (kafka_state *)state;
    spanhost_buffer payload = {NULL, 0};
    int rc;
    if (s->payload[0]) {
        spanhost_str key = {s->payload, strlen(s->payload)};
        const spanhost_value *value = util_find(&n->attributes, key);
        if (!value) {
            host->counter_add(s->instance, "events_without_payload", 1);
            return SPANHOST_OK;
        }
        rc = host->encode_value(value, &payload);
    } else {
        rc = host->encode_notification(n, &payload);
    }
    if (rc != 0) {
        snprintf(status->message, status->message_cap, "encoding the event failed");
        return SPANHOST_PERMANENT;
    }
    char key[33];
    size_t key_len = 32;
    int any = 0;
    for (int b = 0; b < 16; b++) any |= n->trace_id[b];
    if (any) for (int b = 0; b < 16; b++) snprintf(key + 2 * b, 3, "%02x", n->trace_id[b]);
    delivery d = {0, 0, 0, RD_KAFKA_RESP_ERR_NO_ERROR};
    produce(s, &payload, any ? key : n->key.ptr, any ? key_len : n->key.len, &d);
    host->buffer_free(&payload);
    while (__atomic_load_n(&d.pending, __ATOMIC_SEQ_CST) > 0) rd_kafka_poll(s->rk, 2);
    if (d.failed) {
        snprintf(status->message, status->message_cap, "event to %s failed: %s", s->topic, rd_kafka_err2str(d.err));
        return d.permanent ? SPANHOST_PERMANENT : SPANHOST_RETRYABLE;
    }
    host->counter_add(s->instance, "messages_acked", 1);
    return SPANHOST_OK;
}
#endif

static int32_t kafka_flush(void *state, spanhost_status *status) {
    kafka_state *s = (kafka_state *)state;
    if (rd_kafka_flush(s->rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(status->message, status->message_cap, "messages still queued after 10s");
        return SPANHOST_RETRYABLE;
    }
    return SPANHOST_OK;
}

static void kafka_destroy(void *state) {
    kafka_state *s = (kafka_state *)state;
    rd_kafka_flush(s->rk, 5000);
    rd_kafka_destroy(s->rk);
    free(s);
}

#ifdef KAFKA_EVENTS
static const spanhost_config_key config_keys[] = {
    {"brokers", SPANHOST_TYPE_STRING_LIST, 1, NULL, "bootstrap brokers, host:port (a list or one comma-separated string)"},
    {"acks", SPANHOST_TYPE_STRING, 0, "all", "all, 1 or 0"},
    {"compression", SPANHOST_TYPE_STRING, 0, "none", "none, gzip, snappy, lz4 or zstd"},
    {"linger_ms", SPANHOST_TYPE_INT, 0, "5", "how long the producer waits to fill a request (ms)"},
    {"batch_size", SPANHOST_TYPE_INT, 0, "1000000", "bytes per produce request"},
    {"timeout", SPANHOST_TYPE_DURATION, 0, "10s", "how long a message may wait for the broker's acknowledgement"},
    {"properties", SPANHOST_TYPE_MAP, 0, NULL, "librdkafka properties (TLS, SASL, ...), applied last"},
    {"topic", SPANHOST_TYPE_STRING, 0, "spanhost_events", "the topic"},
    {"payload", SPANHOST_TYPE_STRING, 0, "event", "event (the event's JSON) or an attribute key such as omegi"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_NOTIFIER,
    .name = "kafka_events",
    .version = "1.0.0",
    .description = "publishes events (or one attribute of them, such as an error-flow record) to Kafka",
    .create = kafka_create,
    .notify = kafka_notify,
    .flush = kafka_flush,
    .destroy = kafka_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};
#else
static const spanhost_config_key config_keys[] = {
    {"brokers", SPANHOST_TYPE_STRING_LIST, 1, NULL, "bootstrap brokers, host:port (a list or one comma-separated string)"},
    {"acks", SPANHOST_TYPE_STRING, 0, "all", "all, 1 or 0"},
    {"compression", SPANHOST_TYPE_STRING, 0, "none", "none, gzip, snappy, lz4 or zstd"},
    {"linger_ms", SPANHOST_TYPE_INT, 0, "5", "how long the producer waits to fill a request (ms)"},
    {"batch_size", SPANHOST_TYPE_INT, 0, "1000000", "bytes per produce request"},
    {"timeout", SPANHOST_TYPE_DURATION, 0, "10s", "how long a message may wait for the broker's acknowledgement"},
    {"properties", SPANHOST_TYPE_MAP, 0, NULL, "librdkafka properties (TLS, SASL, ...), applied last"},
    {"topic", SPANHOST_TYPE_STRING, 0, "otlp_spans", "the topic"},
    {"encoding", SPANHOST_TYPE_STRING, 0, "otlp_proto", "otlp_proto or otlp_json"},
    {"traces", SPANHOST_TYPE_MAP, 0, NULL, "the Collector's newer shape: topic and encoding for traces"},
    {"traces.topic", SPANHOST_TYPE_STRING, 0, "otlp_spans", "the topic"},
    {"traces.encoding", SPANHOST_TYPE_STRING, 0, "otlp_proto", "otlp_proto or otlp_json"},
    {"metrics", SPANHOST_TYPE_MAP, 0, NULL, "accepted, never used: spanhost carries traces only"},
    {"logs", SPANHOST_TYPE_MAP, 0, NULL, "accepted, never used: spanhost carries traces only"},
    {"profiles", SPANHOST_TYPE_MAP, 0, NULL, "accepted, never used: spanhost carries traces only"},
    {"partition_traces_by_id", SPANHOST_TYPE_BOOL, 0, "false", "one message per trace, keyed by the trace id"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_EXPORTER,
    .flags = SPANHOST_PLUGIN_CONCURRENT,
    .name = "kafka",
    .version = "1.0.0",
    .description = "publishes OTLP messages to Kafka (librdkafka)",
    .create = kafka_create,
    .export_batch = kafka_export,
    .flush = kafka_flush,
    .destroy = kafka_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};
#endif

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
