/*
 * Zipkin v2 JSON (POST /api/v2/spans): an array of spans, mapped to the span model the way the
 * Collector's zipkin receiver does. localEndpoint.serviceName becomes the resource's
 * service.name (one resource per service); tags become string attributes; the `error` tag sets
 * status ERROR with its value as the message; annotations become events; remoteEndpoint becomes
 * peer.service / net.peer.ip / net.peer.port; microseconds become nanoseconds; 64-bit trace ids
 * are padded to 128 bits with leading zeros.
 */
#include "json_reader.h"

typedef struct zspan {
    spanhost_span *span;
    spanhost_str service;
} zspan;

/* Hex id of `size` bytes, or of size/2 bytes right-aligned (64-bit Zipkin trace ids). */
static int zid(jparser *j, uint8_t *dst, size_t size, const char *what) {
    spanhost_str s;
    if (jstring(j, &s)) return -1;
    if (s.len == 0) return 0;
    size_t bytes = s.len / 2, offset = size - bytes;
    if (s.len % 2 || bytes > size || bytes < size / 2 || (bytes != size && bytes != size / 2)) return jfail(j, what);
    memset(dst, 0, size);
    for (size_t i = 0; i < bytes; i++) {
        int hi = hexval((unsigned char)s.ptr[2 * i]), lo = hexval((unsigned char)s.ptr[2 * i + 1]);
        if (hi < 0 || lo < 0) return jfail(j, what);
        dst[offset + i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int add_attr(jparser *j, spanhost_kv_list *l, size_t *cap, const char *key, spanhost_value v) {
    l->items = (spanhost_kv *)grow(j, l->items, l->count, cap, sizeof(spanhost_kv));
    if (!l->items) return -1;
    l->items[l->count].key.ptr = key;
    l->items[l->count].key.len = strlen(key);
    l->items[l->count].value = v;
    l->count++;
    return 0;
}

static spanhost_value str_value(spanhost_str s) {
    spanhost_value v;
    memset(&v, 0, sizeof v);
    v.type = SPANHOST_VALUE_STRING;
    v.as.string_value = s;
    return v;
}

/* localEndpoint / remoteEndpoint: serviceName, ipv4, ipv6, port. */
static int zendpoint(jparser *j, spanhost_str *service, spanhost_str *ip, int64_t *port) {
    spanhost_str key;
    int first = 1, r;
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; return 0; }
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "servicename")) { if (jstring(j, service)) return -1; }
        else if (key_is(key, "ipv4") || (key_is(key, "ipv6") && ip->len == 0)) { if (jstring(j, ip)) return -1; }
        else if (key_is(key, "port")) { if (jint64(j, port)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int zspan_parse(jparser *j, zspan *z) {
    spanhost_span *s = (spanhost_span *)sh_arena_alloc(j->batch, sizeof *s);
    if (!s) return jfail(j, "out of memory");
    s->struct_size = sizeof *s;
    z->span = s;
    spanhost_str key, kind = {NULL, 0}, remote_service = {NULL, 0}, remote_ip = {NULL, 0}, local_ip = {NULL, 0};
    int64_t remote_port = 0, local_port = 0;
    uint64_t timestamp = 0, duration = 0;
    size_t attr_cap = 0, event_cap = 0;
    int first = 1, r, has_trace = 0, has_id = 0;
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "traceid")) { if (zid(j, s->trace_id, 16, "traceId must be 16 or 32 hex digits")) return -1; has_trace = 1; }
        else if (key_is(key, "id")) { if (zid(j, s->span_id, 8, "id must be 16 hex digits")) return -1; has_id = 1; }
        else if (key_is(key, "parentid")) { if (zid(j, s->parent_span_id, 8, "parentId must be 16 hex digits")) return -1; }
        else if (key_is(key, "name")) { if (jstring(j, &s->name)) return -1; }
        else if (key_is(key, "kind")) { if (jstring_or_null(j, &kind)) return -1; }  /* Zipkin's own exporter sends null for internal spans */
        else if (key_is(key, "timestamp")) { if (juint64(j, &timestamp)) return -1; }
        else if (key_is(key, "duration")) { if (juint64(j, &duration)) return -1; }
        else if (key_is(key, "localendpoint")) { if (zendpoint(j, &z->service, &local_ip, &local_port)) return -1; }
        else if (key_is(key, "remoteendpoint")) { if (zendpoint(j, &remote_service, &remote_ip, &remote_port)) return -1; }
        else if (key_is(key, "tags")) {
            spanhost_str tag;
            int tfirst = 1, tr;
            ws(j);
            if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; continue; }
            if (jobject_begin(j)) return -1;
            while ((tr = jobject_next(j, &tag, &tfirst)) == 1) {
                spanhost_str value;
                if (jstring(j, &value)) return jfail(j, "tag values must be strings");
                if (tag.len == 5 && !memcmp(tag.ptr, "error", 5)) {
                    s->status_code = SPANHOST_STATUS_ERROR;
                    s->status_message = value;
                    continue;
                }
                s->attributes.items = (spanhost_kv *)grow(j, s->attributes.items, s->attributes.count, &attr_cap, sizeof(spanhost_kv));
                if (!s->attributes.items) return -1;
                s->attributes.items[s->attributes.count].key = tag;
                s->attributes.items[s->attributes.count].value = str_value(value);
                s->attributes.count++;
            }
            if (tr < 0) return -1;
        } else if (key_is(key, "annotations")) {
            int is_null, afirst = 1, ar;
            if (jarray_begin(j, &is_null)) return -1;
            if (is_null) continue;
            while ((ar = jarray_next(j, &afirst)) == 1) {
                spanhost_event *e = (spanhost_event *)sh_arena_alloc(j->batch, sizeof *e);
                s->events = (spanhost_event **)grow(j, s->events, s->events_count, &event_cap, sizeof(void *));
                if (!e || !s->events) return jfail(j, "out of memory");
                e->struct_size = sizeof *e;
                spanhost_str ak;
                int efirst = 1, er;
                if (jobject_begin(j)) return -1;
                while ((er = jobject_next(j, &ak, &efirst)) == 1) {
                    uint64_t ts;
                    if (key_is(ak, "timestamp")) { if (juint64(j, &ts)) return -1; e->time_unix_nano = ts * 1000; }
                    else if (key_is(ak, "value")) { if (jstring(j, &e->name)) return -1; }
                    else if (jskip(j)) return -1;
                }
                if (er < 0) return -1;
                s->events[s->events_count++] = e;
            }
            if (ar < 0) return -1;
        } else if (jskip(j)) {
            return -1;
        }
    }
    if (r < 0) return -1;
    if (!has_trace || !has_id) return jfail(j, "a span needs traceId and id");
    if (kind.len) {
        if (kind.len == 6 && !memcmp(kind.ptr, "CLIENT", 6)) s->kind = SPANHOST_SPAN_KIND_CLIENT;
        else if (kind.len == 6 && !memcmp(kind.ptr, "SERVER", 6)) s->kind = SPANHOST_SPAN_KIND_SERVER;
        else if (kind.len == 8 && !memcmp(kind.ptr, "PRODUCER", 8)) s->kind = SPANHOST_SPAN_KIND_PRODUCER;
        else if (kind.len == 8 && !memcmp(kind.ptr, "CONSUMER", 8)) s->kind = SPANHOST_SPAN_KIND_CONSUMER;
        else return jfail(j, "kind must be CLIENT, SERVER, PRODUCER or CONSUMER");
    } else {
        s->kind = SPANHOST_SPAN_KIND_INTERNAL;
    }
    s->start_time_unix_nano = timestamp * 1000;
    s->end_time_unix_nano = (timestamp + duration) * 1000;
    spanhost_value port;
    memset(&port, 0, sizeof port);
    port.type = SPANHOST_VALUE_INT;
    if (remote_service.len && add_attr(j, &s->attributes, &attr_cap, "peer.service", str_value(remote_service))) return -1;
    if (remote_ip.len && add_attr(j, &s->attributes, &attr_cap, "net.peer.ip", str_value(remote_ip))) return -1;
    if (remote_port) {
        port.as.int_value = remote_port;
        if (add_attr(j, &s->attributes, &attr_cap, "net.peer.port", port)) return -1;
    }
    if (local_ip.len && add_attr(j, &s->attributes, &attr_cap, "net.host.ip", str_value(local_ip))) return -1;
    if (local_port) {
        port.as.int_value = local_port;
        if (add_attr(j, &s->attributes, &attr_cap, "net.host.port", port)) return -1;
    }
    return 0;
}

static int str_same(spanhost_str a, spanhost_str b) { return a.len == b.len && (!a.len || !memcmp(a.ptr, b.ptr, a.len)); }

static int decode_zipkin_json(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    jparser j = {(const char *)data, (const char *)data + len, (const char *)data, batch, err, err_cap, 0, 0, "Zipkin JSON"};
    zspan *spans = NULL;
    size_t count = 0, cap = 0;
    int is_null, first = 1, r;
    if (peek(&j) != '[') return jfail(&j, "expected a JSON array of Zipkin v2 spans");
    if (jarray_begin(&j, &is_null)) return -1;
    while (!is_null && (r = jarray_next(&j, &first)) == 1) {
        spans = (zspan *)grow(&j, spans, count, &cap, sizeof(zspan));
        if (!spans) return -1;
        memset(&spans[count], 0, sizeof(zspan));
        if (zspan_parse(&j, &spans[count])) return -1;
        count++;
    }
    if (!is_null && r < 0) return -1;
    if (peek(&j) != -1) return jfail(&j, "trailing data after the JSON array");

    /* One resource (with one scope) per service name, in order of first appearance: first
     * find each span's group, then size every group's span array exactly. */
    static const char service_key[] = "service.name";
    size_t *group_of = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    spanhost_str *services = (spanhost_str *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(spanhost_str));
    size_t *sizes = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    size_t groups = 0;
    if (!group_of || !services || !sizes) return jfail(&j, "out of memory");
    for (size_t i = 0; i < count; i++) {
        size_t g = 0;
        while (g < groups && !str_same(services[g], spans[i].service)) g++;
        if (g == groups) services[groups++] = spans[i].service;
        group_of[i] = g;
        sizes[g]++;
    }
    if (groups) {
        batch->resource_spans = (spanhost_resource_spans **)sh_arena_alloc(batch, groups * sizeof(void *));
        if (!batch->resource_spans) return jfail(&j, "out of memory");
    }
    for (size_t g = 0; g < groups; g++) {
        spanhost_resource_spans *rs = (spanhost_resource_spans *)sh_arena_alloc(batch, sizeof *rs);
        spanhost_resource *res = (spanhost_resource *)sh_arena_alloc(batch, sizeof *res);
        spanhost_scope_spans *ss = (spanhost_scope_spans *)sh_arena_alloc(batch, sizeof *ss);
        spanhost_scope *scope = (spanhost_scope *)sh_arena_alloc(batch, sizeof *scope);
        spanhost_scope_spans **one = (spanhost_scope_spans **)sh_arena_alloc(batch, sizeof(void *));
        spanhost_span **members = (spanhost_span **)sh_arena_alloc(batch, sizes[g] * sizeof(void *));
        if (!rs || !res || !ss || !scope || !one || !members) return jfail(&j, "out of memory");
        res->struct_size = sizeof *res;
        if (services[g].len) {
            res->attributes.items = (spanhost_kv *)sh_arena_alloc(batch, sizeof(spanhost_kv));
            if (!res->attributes.items) return jfail(&j, "out of memory");
            res->attributes.items[0].key.ptr = service_key;
            res->attributes.items[0].key.len = sizeof service_key - 1;
            res->attributes.items[0].value = str_value(services[g]);
            res->attributes.count = 1;
        }
        scope->struct_size = sizeof *scope;
        ss->struct_size = sizeof *ss;
        ss->scope = scope;
        ss->spans = members;
        one[0] = ss;
        rs->struct_size = sizeof *rs;
        rs->resource = res;
        rs->scope_spans = one;
        rs->scope_spans_count = 1;
        batch->resource_spans[g] = rs;
    }
    batch->resource_spans_count = groups;
    for (size_t i = 0; i < count; i++) {
        spanhost_scope_spans *ss = batch->resource_spans[group_of[i]]->scope_spans[0];
        ss->spans[ss->spans_count++] = spans[i].span;
    }
    return 0;
}

/* Every string the request carried must be UTF-8 (proto3 `string`); checked once decoded. */
int sh_decode_zipkin_json(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    if (decode_zipkin_json(batch, data, len, err, err_cap)) return -1;
    /* Escapes only ever make valid UTF-8: an all-ASCII body has nothing else to check. */
    return sh_high_bits(data, len) ? sh_decode_check_utf8(batch, "Zipkin JSON", err, err_cap) : 0;
}
