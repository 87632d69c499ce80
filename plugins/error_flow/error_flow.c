/* error_flow processor: groups spans by trace and, for every trace with an error, raises one
 * "error_flow" event: the exception, the services it crossed, their entry points and the path
 * of spans from the root to the failing span, with durations. Spans pass through unchanged.
 *
 * Config:
 *   wait: 5s                      a trace is examined this long after its first span arrives
 *   num_traces: 50000             traces held at most; past it the oldest is examined early
 *   max_spans_per_trace: 1000     spans held per trace
 *   format: spanhost | omegi      omegi adds the attribute "omegi": the record in the Omegi
 *                                 agents' error-message shape (tracer, traceId, serviceName,
 *                                 error{exception.*, exception.flow{step.N}}, spans[...])
 *
 * The failing span is the deepest span with status ERROR, an "exception" event, or (a SERVER
 * span) an HTTP status of 500 or more. With format omegi the record keeps the agent's token
 * (resource attribute omegi.token) when the spans came from an Omegi agent. The event's
 * attributes: service.name, span.name, exception.type, exception.message,
 * exception.stacktrace, error_flow.services [..], error_flow.entry_points [{service, span,
 * kind}], error_flow.path [{service, name, kind, span_id, duration_ms, status}],
 * error_flow.spans (spans in the trace), error_flow.complete (the path reaches a root span).
 *
 * Counters: traces_examined, error_flows, evicted_early, spans_over_limit, traces_decided_late
 * (examined more than a tenth of `wait` after it ended), decision_lag_max_ms. Gauge: traces_held.
 */
#include "trace_table.h"

static const spanhost_host_api *host;

typedef struct flow {
    spanhost_instance *instance;
    uint64_t wait_ns;
    size_t max_traces, max_spans;
    int omegi;
    pthread_mutex_t lock;
    util_trace_table traces;
    util_ticker ticker;
    util_lag lag;
} flow;

/* One span of a trace being examined, with its service. */
typedef struct ref {
    const spanhost_span *span;
    spanhost_str service;
    spanhost_str token;  /* the Omegi agent's token (resource omegi.token), if any */
    int depth;   /* -1 until computed */
    int error;   /* status ERROR or an exception event */
    const spanhost_event *exception;
} ref;

static const char *const kind_names[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};

static const char *kind_name(uint32_t kind) { return kind < 6 ? kind_names[kind] : "UNSPECIFIED"; }

static int by_span_id(const void *a, const void *b) {
    return memcmp(((const ref *)a)->span->span_id, ((const ref *)b)->span->span_id, 8);
}

static ref *find_ref(ref *refs, size_t n, const uint8_t *span_id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(refs[mid].span->span_id, span_id, 8);
        if (c == 0) return &refs[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

static int zero_id(const uint8_t *id, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (id[i]) return 0;
    return 1;
}

/* Depth below the trace's root (0 for a span whose parent is absent). */
static int depth_of(ref *refs, size_t n, ref *r) {
    if (r->depth >= 0) return r->depth;
    r->depth = 0; /* guards against parent cycles */
    ref *parent = zero_id(r->span->parent_span_id, 8) ? NULL : find_ref(refs, n, r->span->parent_span_id);
    r->depth = parent && parent != r ? depth_of(refs, n, parent) + 1 : 0;
    return r->depth;
}

/* --- Building the event's values in a scratch batch arena ------------------------------------ */

typedef struct builder {
    spanhost_batch *arena;
    int oom;
} builder;

static spanhost_str text(builder *b, const char *ptr, size_t len) {
    spanhost_str s = host->arena_strdup(b->arena, ptr ? ptr : "", len);
    if (len && !s.ptr) b->oom = 1;
    return s;
}

static spanhost_str textz(builder *b, const char *z) { return text(b, z, strlen(z)); }

static spanhost_kv *kvs(builder *b, size_t n) {
    spanhost_kv *items = n ? (spanhost_kv *)host->arena_alloc(b->arena, n * sizeof(spanhost_kv)) : NULL;
    if (n && !items) b->oom = 1;
    else if (n) memset(items, 0, n * sizeof(spanhost_kv));
    return items;
}

static spanhost_value *values(builder *b, size_t n) {
    spanhost_value *items = n ? (spanhost_value *)host->arena_alloc(b->arena, n * sizeof(spanhost_value)) : NULL;
    if (n && !items) b->oom = 1;
    else if (n) memset(items, 0, n * sizeof(spanhost_value));
    return items;
}

static void set_str(spanhost_kv *kv, spanhost_str key, spanhost_str value) {
    kv->key = key;
    kv->value.type = SPANHOST_VALUE_STRING;
    kv->value.as.string_value = value;
}

static void set_list(spanhost_kv *kv, spanhost_str key, spanhost_kv *items, size_t n) {
    kv->key = key;
    kv->value.type = SPANHOST_VALUE_KVLIST;
    kv->value.as.kvlist_value.items = items;
    kv->value.as.kvlist_value.count = items ? n : 0;
}

static spanhost_str hex(builder *b, const uint8_t *id, size_t n) {
    static const char digits[] = "0123456789abcdef";
    char tmp[33];
    for (size_t i = 0; i < n; i++) {
        tmp[2 * i] = digits[id[i] >> 4];
        tmp[2 * i + 1] = digits[id[i] & 15];
    }
    return text(b, tmp, 2 * n);
}

/* Omegi's time format: "YYYY-MM-DD HH:MM:SS.mmm", UTC. */
static spanhost_str omegi_time(builder *b, uint64_t unix_nano) {
    char tmp[32];
    time_t seconds = (time_t)(unix_nano / 1000000000ull);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    size_t len = strftime(tmp, sizeof tmp, "%Y-%m-%d %H:%M:%S", &tm);
    len += (size_t)snprintf(tmp + len, sizeof tmp - len, ".%03u", (unsigned)(unix_nano % 1000000000ull / 1000000ull));
    return text(b, tmp, len);
}

static spanhost_str exception_attr(builder *b, const spanhost_event *e, const char *key) {
    spanhost_str k = {key, strlen(key)}, none = {NULL, 0};
    if (!e) return none;
    const spanhost_value *v = util_find(&e->attributes, k);
    return v && v->type == SPANHOST_VALUE_STRING ? text(b, v->as.string_value.ptr, v->as.string_value.len) : none;
}

/* Appends `s` to buf (NUL-terminated, truncated at cap). */
static void append(char *buf, size_t cap, size_t *len, const char *s, size_t n) {
    if (*len + 1 >= cap) return;
    if (n > cap - 1 - *len) n = cap - 1 - *len;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = 0;
}

/* Omegi's span records for every span of the services on the path, in end-time order. */
static void omegi_spans(builder *b, ref *refs, size_t n, ref **path, size_t depth, spanhost_kv *out) {
    size_t count = 0;
    ref **chosen = (ref **)calloc(n ? n : 1, sizeof *chosen);
    if (!chosen) { b->oom = 1; return; }
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < depth; p++)
            if (util_str_eq(refs[i].service, path[p]->service)) { chosen[count++] = &refs[i]; break; }
    for (size_t i = 1; i < count; i++) /* insertion sort by end time: traces are small */
        for (size_t j = i; j > 0 && chosen[j - 1]->span->end_time_unix_nano > chosen[j]->span->end_time_unix_nano; j--) {
            ref *t = chosen[j]; chosen[j] = chosen[j - 1]; chosen[j - 1] = t;
        }
    spanhost_value *items = values(b, count);
    for (size_t i = 0; items && i < count; i++) {
        const spanhost_span *s = chosen[i]->span;
        spanhost_kv *f = kvs(b, 7);
        if (!f) break;
        set_str(&f[0], textz(b, "name"), text(b, s->name.ptr, s->name.len));
        set_str(&f[1], textz(b, "spanId"), hex(b, s->span_id, 8));
        set_str(&f[2], textz(b, "parentSpanId"), hex(b, s->parent_span_id, 8));
        set_str(&f[3], textz(b, "kind"), textz(b, kind_name(s->kind)));
        set_str(&f[4], textz(b, "spanEnterTime"), omegi_time(b, s->start_time_unix_nano));
        set_str(&f[5], textz(b, "spanExitTime"), omegi_time(b, s->end_time_unix_nano));
        spanhost_kv *attrs = kvs(b, s->attributes.count);
        size_t na = 0;
        for (size_t a = 0; attrs && a < s->attributes.count; a++) {
            char value[1024];
            int len = util_value_text(&s->attributes.items[a].value, value, sizeof value);
            if (len < 0) continue; /* Omegi attributes are strings; arrays and maps are left out */
            set_str(&attrs[na++], text(b, s->attributes.items[a].key.ptr, s->attributes.items[a].key.len), text(b, value, (size_t)len));
        }
        set_list(&f[6], textz(b, "attributes"), attrs, na);
        items[i].type = SPANHOST_VALUE_KVLIST;
        items[i].as.kvlist_value.items = f;
        items[i].as.kvlist_value.count = 7;
    }
    out->key = textz(b, "spans");
    out->value.type = SPANHOST_VALUE_ARRAY;
    out->value.as.array_value.items = items;
    out->value.as.array_value.count = items ? count : 0;
    free(chosen);
}

/* Raises the error-flow event of one trace with an error. */
static void raise_flow(flow *f, const util_trace *t, ref *refs, size_t n, ref *failing) {
    /* The path, root first. */
    ref **path = (ref **)calloc(n, sizeof *path);
    if (!path) return;
    size_t depth = 0;
    for (ref *r = failing; r && depth < n;) {
        path[depth++] = r;
        if (zero_id(r->span->parent_span_id, 8)) break;
        r = find_ref(refs, n, r->span->parent_span_id);
    }
    const spanhost_span *top = path[depth - 1]->span;
    int complete = zero_id(top->parent_span_id, 8);
    for (size_t i = 0; i < depth / 2; i++) {
        ref *tmp = path[i]; path[i] = path[depth - 1 - i]; path[depth - 1 - i] = tmp;
    }
    /* The exception: the failing span's, else the nearest one above it. */
    const spanhost_event *exception = NULL;
    for (size_t i = depth; i-- > 0 && !exception;) exception = path[i]->exception;

    builder b = {host->batch_new(), 0};
    if (!b.arena) { free(path); return; }
    spanhost_str type = exception_attr(&b, exception, "exception.type");
    spanhost_str message = exception_attr(&b, exception, "exception.message");
    if (!message.len) message = text(&b, failing->span->status_message.ptr, failing->span->status_message.len);
    spanhost_str stack = exception_attr(&b, exception, "exception.stacktrace");

    /* Services in path order, and the span where the path entered each. */
    size_t nservices = 0;
    spanhost_value *services = values(&b, depth);
    spanhost_value *entries = values(&b, depth);
    char summary[1024];
    size_t slen = 0;
    summary[0] = 0;
    char head[512];
    int hlen = snprintf(head, sizeof head, "%.*s%s%.*s in %.*s (", (int)(type.len > 200 ? 200 : type.len), type.ptr ? type.ptr : "",
                        type.len && message.len ? ": " : "", (int)(message.len > 200 ? 200 : message.len), message.ptr ? message.ptr : "",
                        (int)failing->service.len, failing->service.ptr ? failing->service.ptr : "");
    append(summary, sizeof summary, &slen, head, hlen > 0 ? (size_t)(hlen < (int)sizeof head ? hlen : (int)sizeof head - 1) : 0);
    for (size_t i = 0; services && entries && i < depth; i++) {
        if (i && util_str_eq(path[i]->service, path[i - 1]->service)) continue;
        services[nservices].type = SPANHOST_VALUE_STRING;
        services[nservices].as.string_value = text(&b, path[i]->service.ptr, path[i]->service.len);
        spanhost_kv *e = kvs(&b, 3);
        if (e) {
            set_str(&e[0], textz(&b, "service"), services[nservices].as.string_value);
            set_str(&e[1], textz(&b, "span"), text(&b, path[i]->span->name.ptr, path[i]->span->name.len));
            set_str(&e[2], textz(&b, "kind"), textz(&b, kind_name(path[i]->span->kind)));
            entries[nservices].type = SPANHOST_VALUE_KVLIST;
            entries[nservices].as.kvlist_value.items = e;
            entries[nservices].as.kvlist_value.count = 3;
        }
        if (nservices) append(summary, sizeof summary, &slen, " -> ", 4);
        append(summary, sizeof summary, &slen, path[i]->service.ptr ? path[i]->service.ptr : "", path[i]->service.len);
        append(summary, sizeof summary, &slen, " ", 1);
        append(summary, sizeof summary, &slen, path[i]->span->name.ptr ? path[i]->span->name.ptr : "", path[i]->span->name.len);
        nservices++;
    }
    /* The failing span, unless it is listed already as where the path entered its service. */
    if (depth > 1 && util_str_eq(path[depth - 1]->service, path[depth - 2]->service)) {
        append(summary, sizeof summary, &slen, " -> ", 4);
        append(summary, sizeof summary, &slen, failing->span->name.ptr ? failing->span->name.ptr : "", failing->span->name.len);
    }
    append(summary, sizeof summary, &slen, ")", 1);

    spanhost_value *steps = values(&b, depth);
    for (size_t i = 0; steps && i < depth; i++) {
        const spanhost_span *s = path[i]->span;
        spanhost_kv *p = kvs(&b, 6);
        if (!p) break;
        set_str(&p[0], textz(&b, "service"), text(&b, path[i]->service.ptr, path[i]->service.len));
        set_str(&p[1], textz(&b, "name"), text(&b, s->name.ptr, s->name.len));
        set_str(&p[2], textz(&b, "kind"), textz(&b, kind_name(s->kind)));
        set_str(&p[3], textz(&b, "span_id"), hex(&b, s->span_id, 8));
        p[4].key = textz(&b, "duration_ms");
        p[4].value.type = SPANHOST_VALUE_DOUBLE;
        p[4].value.as.double_value = s->end_time_unix_nano > s->start_time_unix_nano ? (double)(s->end_time_unix_nano - s->start_time_unix_nano) / 1e6 : 0;
        set_str(&p[5], textz(&b, "status"), textz(&b, path[i]->error ? "ERROR" : s->status_code == SPANHOST_STATUS_OK ? "OK" : "UNSET"));
        steps[i].type = SPANHOST_VALUE_KVLIST;
        steps[i].as.kvlist_value.items = p;
        steps[i].as.kvlist_value.count = 6;
    }

    spanhost_kv *attrs = kvs(&b, 12);
    size_t na = 0;
    if (attrs) {
        set_str(&attrs[na++], textz(&b, "service.name"), text(&b, failing->service.ptr, failing->service.len));
        set_str(&attrs[na++], textz(&b, "span.name"), text(&b, failing->span->name.ptr, failing->span->name.len));
        if (type.len) set_str(&attrs[na++], textz(&b, "exception.type"), type);
        if (message.len) set_str(&attrs[na++], textz(&b, "exception.message"), message);
        if (stack.len) set_str(&attrs[na++], textz(&b, "exception.stacktrace"), stack);
        attrs[na].key = textz(&b, "error_flow.services");
        attrs[na].value.type = SPANHOST_VALUE_ARRAY;
        attrs[na].value.as.array_value.items = services;
        attrs[na++].value.as.array_value.count = services ? nservices : 0;
        attrs[na].key = textz(&b, "error_flow.entry_points");
        attrs[na].value.type = SPANHOST_VALUE_ARRAY;
        attrs[na].value.as.array_value.items = entries;
        attrs[na++].value.as.array_value.count = entries ? nservices : 0;
        attrs[na].key = textz(&b, "error_flow.path");
        attrs[na].value.type = SPANHOST_VALUE_ARRAY;
        attrs[na].value.as.array_value.items = steps;
        attrs[na++].value.as.array_value.count = steps ? depth : 0;
        attrs[na].key = textz(&b, "error_flow.spans");
        attrs[na].value.type = SPANHOST_VALUE_INT;
        attrs[na++].value.as.int_value = (int64_t)n;
        attrs[na].key = textz(&b, "error_flow.complete");
        attrs[na].value.type = SPANHOST_VALUE_BOOL;
        attrs[na++].value.as.bool_value = complete;
    }
    if (attrs && f->omegi) {
        /* exception.flow: step.1 is the innermost frame, as the agents write it. */
        spanhost_kv *flow_steps = kvs(&b, depth);
        for (size_t i = 0; flow_steps && i < depth; i++) {
            char key[32];
            int klen = snprintf(key, sizeof key, "step.%zu", i + 1);
            const ref *r = path[depth - 1 - i];
            char value[512];
            int vlen = snprintf(value, sizeof value, "%.*s.%.*s", (int)r->service.len, r->service.ptr ? r->service.ptr : "",
                                (int)r->span->name.len, r->span->name.ptr ? r->span->name.ptr : "");
            set_str(&flow_steps[i], text(&b, key, (size_t)klen), text(&b, value, vlen < (int)sizeof value ? (size_t)vlen : sizeof value - 1));
        }
        spanhost_kv *error = kvs(&b, 4);
        if (error) {
            set_str(&error[0], textz(&b, "exception.type"), type);
            set_str(&error[1], textz(&b, "exception.message"), message);
            set_list(&error[2], textz(&b, "exception.flow"), flow_steps, depth);
            set_str(&error[3], textz(&b, "exception.stacktrace"), stack);
        }
        size_t fields = failing->token.len ? 6 : 5;
        spanhost_kv *record = kvs(&b, fields);
        if (record) {
            set_str(&record[0], textz(&b, "tracer"), textz(&b, "spanhost"));
            set_str(&record[1], textz(&b, "traceId"), hex(&b, t->id, 16));
            set_str(&record[2], textz(&b, "serviceName"), text(&b, failing->service.ptr, failing->service.len));
            set_list(&record[3], textz(&b, "error"), error, 4);
            omegi_spans(&b, refs, n, path, depth, &record[4]);
            /* The agent's token, kept from its message, so the Omegi server accepts the record. */
            if (fields == 6) set_str(&record[5], textz(&b, "token"), text(&b, failing->token.ptr, failing->token.len));
            set_list(&attrs[na++], textz(&b, "omegi"), record, fields);
        }
    }

    if (!b.oom && attrs) {
        char key[512];
        int klen = snprintf(key, sizeof key, "%.*s %.*s %.*s", (int)failing->service.len, failing->service.ptr ? failing->service.ptr : "",
                            (int)failing->span->name.len, failing->span->name.ptr ? failing->span->name.ptr : "",
                            (int)type.len, type.ptr ? type.ptr : "");
        spanhost_notification note;
        memset(&note, 0, sizeof note);
        note.struct_size = sizeof note;
        note.severity = SPANHOST_SEVERITY_ERROR;
        note.kind = textz(&b, "error_flow");
        note.source = textz(&b, "error_flow");
        note.key = text(&b, key, klen < (int)sizeof key ? (size_t)klen : sizeof key - 1);
        note.summary = text(&b, summary, slen);
        note.attributes.items = attrs;
        note.attributes.count = na;
        memcpy(note.trace_id, t->id, 16);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        note.time_unix_nano = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
        note.count = 1;
        host->raise(f->instance, &note);
        host->counter_add(f->instance, "error_flows", 1);
    } else {
        host->counter_add(f->instance, "out_of_memory", 1);
    }
    host->batch_release(b.arena);
    free(path);
}

/* A SERVER span that answered an HTTP status of 500 or more failed, whatever its status says
 * (agents often leave the status unset). */
static int server_error(const spanhost_span *span) {
    static const spanhost_str keys[] = {{"http.response.status_code", 25}, {"http.status_code", 16}};
    if (span->kind != SPANHOST_SPAN_KIND_SERVER) return 0;
    for (size_t i = 0; i < 2; i++) {
        const spanhost_value *v = util_find(&span->attributes, keys[i]);
        if (!v) continue;
        if (v->type == SPANHOST_VALUE_INT) return v->as.int_value >= 500;
        if (v->type == SPANHOST_VALUE_STRING && v->as.string_value.len == 3) return v->as.string_value.ptr[0] >= '5' && v->as.string_value.ptr[0] <= '9';
    }
    return 0;
}

/* Examines a trace taken off the table, then frees it. */
static void examine(flow *f, util_trace *t) {
    host->counter_add(f->instance, "traces_examined", 1);
    if (t->over_limit) host->counter_add(f->instance, "spans_over_limit", (int64_t)t->over_limit);
    ref *refs = (ref *)calloc(t->span_count ? t->span_count : 1, sizeof *refs);
    size_t n = 0;
    const spanhost_batch *batch = t->spans;
    spanhost_str exception_name = {"exception", 9};
    for (size_t i = 0; refs && i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        spanhost_str service = rs->resource ? util_service_name(rs->resource) : (spanhost_str){NULL, 0};
        spanhost_str token = {NULL, 0}, token_key = {"omegi.token", 11};
        const spanhost_value *tv = rs->resource ? util_find(&rs->resource->attributes, token_key) : NULL;
        if (tv && tv->type == SPANHOST_VALUE_STRING) token = tv->as.string_value;
        for (size_t j = 0; j < rs->scope_spans_count; j++)
            for (size_t k = 0; k < rs->scope_spans[j]->spans_count && n < t->span_count; k++) {
                ref *r = &refs[n++];
                r->span = rs->scope_spans[j]->spans[k];
                r->service = service;
                r->depth = -1;
                for (size_t e = 0; e < r->span->events_count; e++)
                    if (util_str_eq(r->span->events[e]->name, exception_name)) { r->exception = r->span->events[e]; break; }
                r->error = r->span->status_code == SPANHOST_STATUS_ERROR || r->exception || server_error(r->span);
                r->token = token;
            }
    }
    if (refs && n) {
        qsort(refs, n, sizeof *refs, by_span_id);
        ref *failing = NULL;
        for (size_t i = 0; i < n; i++) {
            if (!refs[i].error) continue;
            int d = depth_of(refs, n, &refs[i]);
            if (!failing || d > failing->depth || (d == failing->depth && refs[i].exception && !failing->exception)) failing = &refs[i];
        }
        if (failing) raise_flow(f, t, refs, n, failing);
    }
    free(refs);
    util_trace_free(host, t);
}

/* Takes the traces whose wait is over (or all) off the table and examines them. */
static void examine_due(flow *f, int all) {
    for (;;) {
        util_trace *due[64];
        size_t n = 0;
        uint64_t now = util_now_ns();
        pthread_mutex_lock(&f->lock);
        while (f->traces.oldest && n < 64 && (all || now - f->traces.oldest->first_seen_ns >= f->wait_ns)) {
            due[n] = f->traces.oldest;
            if (!all) util_lag_note(&f->lag, now, due[n], f->wait_ns);
            util_traces_unlink(&f->traces, due[n++]);
        }
        util_lag_report(&f->lag, host, f->instance);
        host->gauge_set(f->instance, "traces_held", (int64_t)f->traces.held);
        pthread_mutex_unlock(&f->lock);
        if (!n) return;
        for (size_t i = 0; i < n; i++) examine(f, due[i]);
    }
}

static void tick(void *arg) { examine_due((flow *)arg, 0); }

/* --- Hooks ------------------------------------------------------------------------------------ */

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    flow *f = (flow *)calloc(1, sizeof *f);
    spanhost_str v;
    double wait_ms = 5000;
    int64_t num = 50000, max_spans = 1000;
    if (!f) return SPANHOST_PERMANENT;
    f->instance = instance;
    if (util_trace_settings(host, config, "wait", &wait_ms, &num, &max_spans, status)) goto fail;
    if (host->config_string(config, "format", &v) == SPANHOST_CONFIG_FOUND) {
        if (util_str_is(v, "omegi")) f->omegi = 1;
        else if (!util_str_is(v, "spanhost")) {
            snprintf(status->message, status->message_cap, "format: '%.*s' is not spanhost or omegi", (int)v.len, v.ptr);
            goto fail;
        }
    }
    f->wait_ns = (uint64_t)(wait_ms * 1e6);
    f->max_traces = (size_t)num;
    f->max_spans = (size_t)max_spans;
    if (util_traces_init(&f->traces, f->max_traces) != 0) goto fail;
    pthread_mutex_init(&f->lock, NULL);
    *out = f;
    return SPANHOST_OK;
fail:
    free(f);
    return SPANHOST_PERMANENT;
}

static int32_t start(void *state, spanhost_status *status) {
    flow *f = (flow *)state;
    if (util_ticker_start(&f->ticker, 100, tick, f) != 0) {
        snprintf(status->message, status->message_cap, "cannot start the timer thread");
        return SPANHOST_PERMANENT;
    }
    return SPANHOST_OK;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    flow *f = (flow *)state;
    util_trace *early[64];
    size_t nearly = 0;
    pthread_mutex_lock(&f->lock);
    for (util_span_iter it = util_spans(batch); util_next_span(&it);) {
        spanhost_resource_spans *rs = it.rs;
        spanhost_scope_spans *ss = it.ss;
        spanhost_span *span = it.span;
        util_trace *t = util_traces_find(&f->traces, span->trace_id);
        if (!t) {
            if (f->traces.held >= f->max_traces && f->traces.oldest && nearly < 64) {
                early[nearly] = f->traces.oldest; /* full: examine the oldest now */
                util_traces_unlink(&f->traces, early[nearly++]);
            }
            if (!(t = util_traces_add(&f->traces, host, span->trace_id))) {
                pthread_mutex_unlock(&f->lock);
                for (size_t e = 0; e < nearly; e++) examine(f, early[e]);
                snprintf(status->message, status->message_cap, "out of memory");
                return SPANHOST_RETRYABLE;
            }
        }
        util_trace_add_span(host, t, f->max_spans, rs, ss, span);
    }
    host->gauge_set(f->instance, "traces_held", (int64_t)f->traces.held);
    pthread_mutex_unlock(&f->lock);
    if (nearly) host->counter_add(f->instance, "evicted_early", (int64_t)nearly);
    for (size_t e = 0; e < nearly; e++) examine(f, early[e]);
    return SPANHOST_OK;
}

/* Examines every held trace now (before shutdown or reload). */
static int32_t flush(void *state, spanhost_status *status) {
    (void)status;
    examine_due((flow *)state, 1);
    return SPANHOST_OK;
}

static void destroy(void *state) {
    flow *f = (flow *)state;
    util_ticker_stop(&f->ticker);
    while (f->traces.oldest) {
        util_trace *t = f->traces.oldest;
        util_traces_unlink(&f->traces, t);
        util_trace_free(host, t);
    }
    pthread_mutex_destroy(&f->lock);
    free(f->traces.buckets);
    free(f);
}

static const spanhost_config_key config_keys[] = {
    {"wait", SPANHOST_TYPE_DURATION, 0, "5s", "a trace is examined this long after its first span arrives"},
    {"num_traces", SPANHOST_TYPE_INT, 0, "50000", "traces held at most; past it the oldest is examined early"},
    {"max_spans_per_trace", SPANHOST_TYPE_INT, 0, "1000", "spans held per trace"},
    {"format", SPANHOST_TYPE_STRING, 0, "spanhost", "spanhost or omegi (adds the Omegi record as attribute omegi)"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .flags = SPANHOST_PLUGIN_READONLY | SPANHOST_PLUGIN_TRACE_EVENTS,
    .name = "error_flow",
    .version = "1.0.0",
    .description = "raises one error-flow event per trace with an error: exception, services, path",
    .create = create,
    .start = start,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
