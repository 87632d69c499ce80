/*
 * Omegi agent messages (Kafka topics `error` and `flow`), decoded into the span model.
 *
 * An error message holds one export batch of one service: {tracer, traceId, token,
 * serviceName, error{exception.*}, spans[{name, spanId, parentSpanId, kind, spanEnterTime,
 * spanExitTime, attributes}]}. Spans carry no trace id and a batch can mix requests, so trees are
 * rebuilt from spanId/parentSpanId: the tree holding spans[0] gets the message's traceId (the
 * agent takes it from spans[0]); any other tree gets an id derived from that traceId and its
 * root span id, marked with the attribute omegi.trace_id_derived. The error belongs to the
 * tree of the last span (the service's entry span): that span gets status ERROR and an
 * "exception" event, and so does the innermost span named by exception.flow's step.1, with the
 * spans between them set to ERROR. A flow message becomes one span named "omegi flow" with a
 * span id of its own (derived from the message's spanId, which it keeps as omegi.span_id), so it
 * never shares an id with the real span the service's error message may later bring.
 *
 * Times are "YYYY-MM-DD HH:MM:SS.fff" (or with 'T') in the agent's local zone: the caller
 * passes that zone's offset from UTC. Every span gets omegi.message = "error" or "flow"; the
 * resource gets service.name, omegi.tracer and omegi.token (the agent's token).
 */
#include "json_reader.h"

typedef struct ospan {
    spanhost_span *span;
    size_t root; /* index of the root of its tree, once known */
} ospan;

static const char key_service[] = "service.name", key_tracer[] = "omegi.tracer", key_message[] = "omegi.message",
                  key_derived[] = "omegi.trace_id_derived", key_token[] = "omegi.token", key_span_id[] = "omegi.span_id";

static spanhost_str lit(const char *s) {
    spanhost_str v = {s, strlen(s)};
    return v;
}

static spanhost_value string_value(spanhost_str s) {
    spanhost_value v;
    memset(&v, 0, sizeof v);
    v.type = SPANHOST_VALUE_STRING;
    v.as.string_value = s;
    return v;
}

static int push_kv(jparser *j, spanhost_kv_list *l, size_t *cap, spanhost_str key, spanhost_value v) {
    l->items = (spanhost_kv *)grow(j, l->items, l->count, cap, sizeof(spanhost_kv));
    if (!l->items) return -1;
    l->items[l->count].key = key;
    l->items[l->count].value = v;
    l->count++;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *p, int n, int *out) {
    *out = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        *out = *out * 10 + (p[i] - '0');
    }
    return 0;
}

/* "YYYY-MM-DD HH:MM:SS[.fraction]" in local time at `offset` seconds east of UTC. */
static int otime(jparser *j, int32_t offset, uint64_t *out) {
    spanhost_str s;
    if (jstring(j, &s)) return -1;
    int y, mo, d, h, mi, se;
    const char *p = s.ptr;
    if (s.len < 19 || digits(p, 4, &y) || p[4] != '-' || digits(p + 5, 2, &mo) || p[7] != '-' || digits(p + 8, 2, &d) ||
        (p[10] != ' ' && p[10] != 'T') || digits(p + 11, 2, &h) || p[13] != ':' || digits(p + 14, 2, &mi) || p[16] != ':' ||
        digits(p + 17, 2, &se) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return jfail(j, "times must look like 2024-05-20 10:00:00.123");
    uint64_t nanos = 0, scale = 100000000;
    size_t i = 19;
    if (i < s.len && s.ptr[i] == '.')
        for (i++; i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9'; i++, scale /= 10) nanos += (uint64_t)(s.ptr[i] - '0') * scale;
    if (i != s.len) return jfail(j, "times must look like 2024-05-20 10:00:00.123");
    int64_t seconds = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - offset;
    if (seconds < 0) return jfail(j, "time before 1970");
    *out = (uint64_t)seconds * 1000000000ull + nanos;
    return 0;
}

/* A value as a string view: strings as they are, numbers, booleans and null as their text. */
static int jtext(jparser *j, spanhost_str *out) {
    int c = peek(j);
    if (c == '"') return jstring(j, out);
    if (c == '{' || c == '[') return jfail(j, "attribute values must be strings or numbers");
    const char *start = j->p;
    if (jskip(j)) return -1;
    out->ptr = start;
    out->len = (size_t)(j->p - start);
    return 0;
}

static int okind(spanhost_str k) {
    static const char *const names[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
    for (int i = 0; i < 6; i++)
        if (k.len == strlen(names[i]) && !memcmp(k.ptr, names[i], k.len)) return i;
    return SPANHOST_SPAN_KIND_INTERNAL;
}

static int ospan_parse(jparser *j, int32_t offset, spanhost_span **out) {
    spanhost_span *s = (spanhost_span *)sh_arena_alloc(j->batch, sizeof *s);
    if (!s) return jfail(j, "out of memory");
    s->struct_size = sizeof *s;
    spanhost_str key, kind = {NULL, 0};
    size_t cap = 0;
    int first = 1, r, has_id = 0;
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "name")) { if (jstring(j, &s->name)) return -1; }
        else if (key_is(key, "spanid")) { if (jhex_id(j, s->span_id, 8, "spanId must be 16 hex digits")) return -1; has_id = 1; }
        else if (key_is(key, "parentspanid")) { if (jhex_id(j, s->parent_span_id, 8, "parentSpanId must be 16 hex digits")) return -1; }
        else if (key_is(key, "kind")) { if (jstring(j, &kind)) return -1; }
        else if (key_is(key, "spanentertime")) { if (otime(j, offset, &s->start_time_unix_nano)) return -1; }
        else if (key_is(key, "spanexittime")) { if (otime(j, offset, &s->end_time_unix_nano)) return -1; }
        else if (key_is(key, "attributes")) {
            spanhost_str akey, avalue;
            int afirst = 1, ar;
            ws(j);
            if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; continue; }
            if (jobject_begin(j)) return -1;
            while ((ar = jobject_next(j, &akey, &afirst)) == 1) {
                if (jtext(j, &avalue) || push_kv(j, &s->attributes, &cap, akey, string_value(avalue))) return -1;
            }
            if (ar < 0) return -1;
        } else if (jskip(j)) {
            return -1;
        }
    }
    if (r < 0) return -1;
    if (!has_id) return jfail(j, "a span needs spanId");
    s->kind = (uint32_t)okind(kind);
    if (push_kv(j, &s->attributes, &cap, lit(key_message), string_value(lit("error")))) return -1;
    *out = s;
    return 0;
}

typedef struct oerror {
    spanhost_str type, message, stacktrace;
    spanhost_value steps; /* array of strings, step.1 first */
    size_t steps_cap;
    int present;
} oerror;

/* exception.flow: {"step.1": ..} (Java) or {"exception.flow": {"step.1": ..}} (Python). Steps
 * are kept in order of their number. */
static int osteps(jparser *j, oerror *e) {
    spanhost_str key;
    int first = 1, r;
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (peek(j) == '{') { if (osteps(j, e)) return -1; continue; }
        spanhost_str step;
        if (jtext(j, &step)) return -1;
        size_t n = 0;
        if (key.len > 5 && !memcmp(key.ptr, "step.", 5))
            for (size_t i = 5; i < key.len && key.ptr[i] >= '0' && key.ptr[i] <= '9'; i++) n = n * 10 + (size_t)(key.ptr[i] - '0');
        if (n == 0 || n > 10000) continue;
        spanhost_value_array *a = &e->steps.as.array_value;
        while (a->count < n) {
            a->items = (spanhost_value *)grow(j, a->items, a->count, &e->steps_cap, sizeof(spanhost_value));
            if (!a->items) return -1;
            a->items[a->count++] = string_value(lit(""));
        }
        a->items[n - 1] = string_value(step);
    }
    return r;
}

static int oerror_parse(jparser *j, oerror *e) {
    spanhost_str key;
    int first = 1, r;
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; return 0; }
    e->steps.type = SPANHOST_VALUE_ARRAY;
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        e->present = 1;
        if (key_is(key, "exception.type")) { if (jtext(j, &e->type)) return -1; }
        else if (key_is(key, "exception.message")) { if (jtext(j, &e->message)) return -1; }
        else if (key_is(key, "exception.stacktrace")) { if (jtext(j, &e->stacktrace)) return -1; }
        else if (key_is(key, "exception.flow") && peek(j) == '{') { if (osteps(j, e)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int has_suffix(spanhost_str s, spanhost_str suffix) {
    if (!suffix.len || suffix.len > s.len || memcmp(s.ptr + s.len - suffix.len, suffix.ptr, suffix.len)) return 0;
    return s.len == suffix.len || s.ptr[s.len - suffix.len - 1] == '.';
}

static ospan *by_id(ospan *spans, size_t n, const uint8_t *id) {
    for (size_t i = 0; i < n; i++)
        if (!memcmp(spans[i].span->span_id, id, 8)) return &spans[i];
    return NULL;
}

static int zero8(const uint8_t *id) {
    static const uint8_t zero[8] = {0};
    return !memcmp(id, zero, 8);
}

/* Marks `s` failed: status ERROR and, with `event`, the exception event. */
static int fail_span(jparser *j, spanhost_span *s, spanhost_event *event) {
    s->status_code = SPANHOST_STATUS_ERROR;
    if (!event || s->events_count) return 0;
    s->events = (spanhost_event **)sh_arena_alloc(j->batch, sizeof(void *));
    if (!s->events) return jfail(j, "out of memory");
    s->events[0] = event;
    s->events_count = 1;
    return 0;
}

/* Builds the resource group: service.name, omegi.tracer and one scope holding `spans`. */
static int one_group(jparser *j, spanhost_str service, spanhost_str tracer, spanhost_str token, spanhost_span **spans, size_t count) {
    spanhost_batch *b = j->batch;
    spanhost_resource_spans *rs = (spanhost_resource_spans *)sh_arena_alloc(b, sizeof *rs);
    spanhost_resource *res = (spanhost_resource *)sh_arena_alloc(b, sizeof *res);
    spanhost_scope_spans *ss = (spanhost_scope_spans *)sh_arena_alloc(b, sizeof *ss);
    spanhost_scope *scope = (spanhost_scope *)sh_arena_alloc(b, sizeof *scope);
    spanhost_scope_spans **one = (spanhost_scope_spans **)sh_arena_alloc(b, sizeof(void *));
    spanhost_resource_spans **groups = (spanhost_resource_spans **)sh_arena_alloc(b, sizeof(void *));
    if (!rs || !res || !ss || !scope || !one || !groups) return jfail(j, "out of memory");
    size_t cap = 0;
    res->struct_size = sizeof *res;
    if (push_kv(j, &res->attributes, &cap, lit(key_service), string_value(service))) return -1;
    if (tracer.len && push_kv(j, &res->attributes, &cap, lit(key_tracer), string_value(tracer))) return -1;
    if (token.len && push_kv(j, &res->attributes, &cap, lit(key_token), string_value(token))) return -1;
    scope->struct_size = sizeof *scope;
    scope->name = lit("omegi");
    ss->struct_size = sizeof *ss;
    ss->scope = scope;
    ss->spans = spans;
    ss->spans_count = count;
    one[0] = ss;
    rs->struct_size = sizeof *rs;
    rs->resource = res;
    rs->scope_spans = one;
    rs->scope_spans_count = 1;
    groups[0] = rs;
    b->resource_spans = groups;
    b->resource_spans_count = 1;
    return 0;
}

static int decode_omegi_json(spanhost_batch *batch, const uint8_t *data, size_t len, int32_t utc_offset_seconds,
                         char *err, size_t err_cap) {
    jparser j = {(const char *)data, (const char *)data + len, (const char *)data, batch, err, err_cap, 0, 0, "Omegi JSON"};
    spanhost_str key, tracer = {NULL, 0}, service = {NULL, 0}, token = {NULL, 0};
    uint8_t trace_id[16] = {0};
    int first = 1, r, has_trace = 0, has_spans = 0, flow_fields = 0;
    oerror error;
    memset(&error, 0, sizeof error);
    ospan *spans = NULL;
    size_t count = 0, cap = 0;
    spanhost_span *flow = (spanhost_span *)sh_arena_alloc(batch, sizeof(spanhost_span));
    if (!flow) return jfail(&j, "out of memory");
    flow->struct_size = sizeof *flow;
    if (peek(&j) != '{') return jfail(&j, "expected a JSON object (an Omegi error or flow message)");
    if (jobject_begin(&j)) return -1;
    while ((r = jobject_next(&j, &key, &first)) == 1) {
        if (key_is(key, "tracer")) { if (jtext(&j, &tracer)) return -1; }
        else if (key_is(key, "token")) { if (jtext(&j, &token)) return -1; }
        else if (key_is(key, "traceid")) { if (jhex_id(&j, trace_id, 16, "traceId must be 32 hex digits")) return -1; has_trace = 1; }
        else if (key_is(key, "servicename")) { if (jtext(&j, &service)) return -1; }
        else if (key_is(key, "error")) { if (oerror_parse(&j, &error)) return -1; }
        else if (key_is(key, "spans")) {
            int is_null, sfirst = 1, sr;
            has_spans = 1;
            if (jarray_begin(&j, &is_null)) return -1;
            while (!is_null && (sr = jarray_next(&j, &sfirst)) == 1) {
                spans = (ospan *)grow(&j, spans, count, &cap, sizeof(ospan));
                if (!spans || ospan_parse(&j, utc_offset_seconds, &spans[count].span)) return -1;
                count++;
            }
            if (!is_null && sr < 0) return -1;
        }
        else if (key_is(key, "spanid")) { if (jhex_id(&j, flow->span_id, 8, "spanId must be 16 hex digits")) return -1; flow_fields++; }
        else if (key_is(key, "parentspanid")) { if (jhex_id(&j, flow->parent_span_id, 8, "parentSpanId must be 16 hex digits")) return -1; }
        else if (key_is(key, "spanentertime")) { if (otime(&j, utc_offset_seconds, &flow->start_time_unix_nano)) return -1; }
        else if (key_is(key, "spanexittime")) { if (otime(&j, utc_offset_seconds, &flow->end_time_unix_nano)) return -1; }
        else if (jskip(&j)) return -1;
    }
    if (r < 0) return -1;
    if (peek(&j) != -1) return jfail(&j, "trailing data after the message");
    if (!has_trace) return jfail(&j, "a message needs traceId");
    if (!service.len) return jfail(&j, "a message needs serviceName");

    if (!has_spans) {
        /* A flow message: the service was entered (from parentSpanId) for this trace. */
        if (!flow_fields) return jfail(&j, "a message needs spans (error) or spanId (flow)");
        memcpy(flow->trace_id, trace_id, 16);
        flow->name = lit("omegi flow");
        flow->kind = SPANHOST_SPAN_KIND_SERVER;
        size_t acap = 0;
        if (push_kv(&j, &flow->attributes, &acap, lit(key_message), string_value(lit("flow")))) return -1;
        /* The message's spanId is the real span's; the pseudo-span takes an id of its own (FNV-1a
         * of it and the trace id, never zero) and keeps the original as an attribute. */
        static const char digits[] = "0123456789abcdef";
        char *hex = (char *)sh_arena_alloc(batch, 16);
        if (!hex) return jfail(&j, "out of memory");
        uint64_t h = 1469598103934665603ull;
        for (int b = 0; b < 8; b++) {
            hex[2 * b] = digits[flow->span_id[b] >> 4];
            hex[2 * b + 1] = digits[flow->span_id[b] & 15];
            h = (h ^ flow->span_id[b]) * 1099511628211ull;
        }
        for (int b = 0; b < 16; b++) h = (h ^ trace_id[b]) * 1099511628211ull;
        h = (h ^ 'f') * 1099511628211ull;
        if (!h) h = 1;
        for (int b = 0; b < 8; b++) flow->span_id[b] = (uint8_t)(h >> (56 - 8 * b));
        spanhost_str original = {hex, 16};
        if (push_kv(&j, &flow->attributes, &acap, lit(key_span_id), string_value(original))) return -1;
        spanhost_span **one = (spanhost_span **)sh_arena_alloc(batch, sizeof(void *));
        if (!one) return jfail(&j, "out of memory");
        one[0] = flow;
        return one_group(&j, service, tracer, token, one, 1);
    }
    if (count == 0) return 0;

    /* Trees: each span's root within this message. */
    for (size_t i = 0; i < count; i++) {
        ospan *at = &spans[i];
        for (size_t steps = 0; steps < count; steps++) {
            if (zero8(at->span->parent_span_id)) break;
            ospan *parent = by_id(spans, count, at->span->parent_span_id);
            if (!parent || parent == at) break;
            at = parent;
        }
        spans[i].root = (size_t)(at - spans);
    }
    spanhost_span **members = (spanhost_span **)sh_arena_alloc(batch, count * sizeof(void *));
    if (!members) return jfail(&j, "out of memory");
    size_t main_root = spans[0].root;
    for (size_t i = 0; i < count; i++) {
        spanhost_span *s = spans[i].span;
        memcpy(s->trace_id, trace_id, 16);
        if (spans[i].root != main_root) {
            const uint8_t *root_id = spans[spans[i].root].span->span_id;
            for (int b = 0; b < 8; b++) s->trace_id[b] ^= root_id[b];
            size_t acap = s->attributes.count;
            spanhost_value yes;
            memset(&yes, 0, sizeof yes);
            yes.type = SPANHOST_VALUE_BOOL;
            yes.as.bool_value = 1;
            if (push_kv(&j, &s->attributes, &acap, lit(key_derived), yes)) return -1;
        }
        members[i] = s;
    }

    if (error.present && (error.type.len || error.message.len)) {
        spanhost_event *event = (spanhost_event *)sh_arena_alloc(batch, sizeof *event);
        if (!event) return jfail(&j, "out of memory");
        event->struct_size = sizeof *event;
        event->name = lit("exception");
        size_t ecap = 0;
        if (error.type.len && push_kv(&j, &event->attributes, &ecap, lit("exception.type"), string_value(error.type))) return -1;
        if (error.message.len && push_kv(&j, &event->attributes, &ecap, lit("exception.message"), string_value(error.message))) return -1;
        if (error.stacktrace.len && push_kv(&j, &event->attributes, &ecap, lit("exception.stacktrace"), string_value(error.stacktrace))) return -1;
        if (error.steps.as.array_value.count && push_kv(&j, &event->attributes, &ecap, lit("exception.flow"), error.steps)) return -1;
        ospan *entry = &spans[count - 1];
        event->time_unix_nano = entry->span->end_time_unix_nano;
        if (fail_span(&j, entry->span, event)) return -1;
        /* The innermost span named by step.1, in the entry span's tree, and the spans above it. */
        spanhost_str step1 = error.steps.as.array_value.count ? error.steps.as.array_value.items[0].as.string_value : lit("");
        for (size_t i = 0; i < count && step1.len; i++) {
            if (spans[i].root != entry->root || !has_suffix(step1, spans[i].span->name)) continue;
            if (fail_span(&j, spans[i].span, event)) return -1;
            ospan *at = &spans[i];
            for (size_t steps = 0; steps < count && at != entry && !zero8(at->span->parent_span_id); steps++) {
                at = by_id(spans, count, at->span->parent_span_id);
                if (!at) break;
                at->span->status_code = SPANHOST_STATUS_ERROR;
            }
            break;
        }
    }
    return one_group(&j, service, tracer, token, members, count);
}

/* Every string the request carried must be UTF-8 (proto3 `string`); checked once decoded. */
int sh_decode_omegi_json(spanhost_batch *batch, const uint8_t *data, size_t len, int32_t utc_offset_seconds,
                         char *err, size_t err_cap) {
    if (decode_omegi_json(batch, data, len, utc_offset_seconds, err, err_cap)) return -1;
    /* Escapes only ever make valid UTF-8: an all-ASCII body has nothing else to check. */
    return sh_high_bits(data, len) ? sh_decode_check_utf8(batch, "Omegi JSON", err, err_cap) : 0;
}
