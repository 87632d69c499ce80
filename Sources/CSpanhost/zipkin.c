/*
 * Zipkin v2 JSON (POST /api/v2/spans): an array of spans, mapped to the span model as the
 * Collector's zipkin receiver maps it (pkg/translator/zipkin/zipkinv2):
 * - localEndpoint.serviceName becomes the resource's service.name (or the key the tag
 *   otlp.service.name.source names), with the span's resource tags (service.*, host.*,
 *   telemetry.*, deployment.*, k8s.*...); otel.library.name / version become the scope;
 * - otel.status_code / otel.status_description set the status; an `error` tag sets ERROR (and
 *   is removed when it is "true"); w3c.tracestate is the trace state; otlp.link.N are links;
 * - without a Zipkin kind the span is UNSPECIFIED, or INTERNAL with the tag span.kind=internal;
 * - other tags become string attributes; the endpoints become peer.service, net.peer.ip,
 *   net.peer.port, net.host.ip, net.host.port;
 * - annotations "name|{json attributes}|dropped" become events with attributes;
 * - microseconds become nanoseconds; a span without a timestamp starts at 0 and is marked
 *   otel.zipkin.absentField.startTime; 64-bit trace ids are padded with leading zeros.
 */
#include "json_reader.h"
#include "proto_reader.h"

#include <arpa/inet.h>

typedef struct ztag {
    spanhost_str key, value;
} ztag;

typedef struct zspan {
    spanhost_span *span;
    spanhost_str service, service_key; /* service_key: otlp.service.name.source, or empty */
    spanhost_str library, library_version;
    ztag *resource_tags;
    size_t resource_count;
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

/* An endpoint as the Collector's translator writes it into attributes: the service (when
 * `service_key` is given), the address and a positive port. */
static int add_endpoint(jparser *j, spanhost_span *s, size_t *cap, const char *service_key, spanhost_str service,
                        const char *ip_key, spanhost_str ip, const char *port_key, int64_t port) {
    if (service_key && service.len && add_attr(j, &s->attributes, cap, service_key, str_value(service))) return -1;
    if (ip.len && add_attr(j, &s->attributes, cap, ip_key, str_value(ip))) return -1;
    if (port <= 0) return 0;
    spanhost_value v;
    memset(&v, 0, sizeof v);
    v.type = SPANHOST_VALUE_INT;
    v.as.int_value = port;
    return add_attr(j, &s->attributes, cap, port_key, v);
}

/* otel.zipkin.absentField.startTime: the span came without a start time. */
static int mark_absent_start(jparser *j, spanhost_span *s, size_t *cap) {
    spanhost_value v;
    memset(&v, 0, sizeof v);
    v.type = SPANHOST_VALUE_BOOL;
    v.as.bool_value = 1;
    return add_attr(j, &s->attributes, cap, "otel.zipkin.absentField.startTime", v);
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

static int str_same(spanhost_str a, spanhost_str b) { return a.len == b.len && (!a.len || !memcmp(a.ptr, b.ptr, a.len)); }

static int library_order(spanhost_str a, spanhost_str b) {
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

static int is_key(spanhost_str k, const char *want) { return k.len == strlen(want) && !memcmp(k.ptr, want, k.len); }

static int starts_with(spanhost_str k, const char *prefix) { size_t n = strlen(prefix); return k.len > n && !memcmp(k.ptr, prefix, n); }

/* Tags the Collector moves to the resource: the resource semantic conventions (whole namespaces
 * that only describe the producer, and the resource names of mixed ones) and OpenCensus's. */
static int resource_tag(spanhost_str k) {
    static const char *const prefixes[] = {"service.", "telemetry.", "host.", "os.", "process.", "container.", "k8s.", "cloud.",
                                           "deployment.", "device.", "browser.", "webengine.", "heroku.", "aws.ecs.", "aws.eks.",
                                           "aws.log.", "gcp.cloud_run.", "gcp.gce."};
    static const char *const names[] = {"faas.name", "faas.id", "faas.version", "faas.instance", "faas.max_memory",
                                        "opencensus.starttime", "opencensus.exporterversion", "opencensus.resourcetype",
                                        "otel.scope.name", "otel.scope.version"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (starts_with(k, prefixes[i])) return 1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (is_key(k, names[i])) return 1;
    return 0;
}

/* The tag `key` not taken yet; NULL when none. Taking it empties its key. */
static ztag *take(ztag *tags, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (tags[i].key.ptr && is_key(tags[i].key, key)) return &tags[i];
    return NULL;
}

static void drop(ztag *t) { t->key.ptr = NULL; t->key.len = 0; }

/* A JSON object of attributes (annotation and link attributes): strings, bools, numbers (whole
 * ones as ints, as the Collector reads them). */
static int json_attributes(jparser *outer, spanhost_str text, spanhost_kv_list *into, const char *what) {
    char err[160];
    jparser j = {text.ptr, text.ptr + text.len, text.ptr, outer->batch, err, sizeof err, 0, 0, what};
    spanhost_str key;
    size_t cap = 0;
    int first = 1, r;
    if (jobject_begin(&j)) return jfail(outer, err);
    while ((r = jobject_next(&j, &key, &first)) == 1) {
        spanhost_value v;
        memset(&v, 0, sizeof v);
        int c = peek(&j);
        if (c == '"') {
            v.type = SPANHOST_VALUE_STRING;
            if (jstring(&j, &v.as.string_value)) return jfail(outer, err);
        } else if (c == 't' || c == 'f') {
            v.type = SPANHOST_VALUE_BOOL;
            if (jbool(&j, &v.as.bool_value)) return jfail(outer, err);
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            double d;
            if (jdouble(&j, &d)) return jfail(outer, err);
            if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
                v.type = SPANHOST_VALUE_INT;
                v.as.int_value = (int64_t)d;
            } else {
                v.type = SPANHOST_VALUE_DOUBLE;
                v.as.double_value = d;
            }
        } else {
            if (jskip(&j)) return jfail(outer, err);
            continue; /* other JSON types are left out, as the Collector leaves them */
        }
        into->items = (spanhost_kv *)grow(&j, into->items, into->count, &cap, sizeof(spanhost_kv));
        if (!into->items) return jfail(outer, err);
        into->items[into->count].key = key;
        into->items[into->count].value = v;
        into->count++;
    }
    if (r < 0) return jfail(outer, err);
    ws(&j);
    if (j.p != j.end) return jfail(outer, "text after the attributes' JSON object");
    return 0;
}

/* Splits `s` at '|': the first part, the middle (parts 2 to n-1 joined back), the last. */
static size_t split_bars(spanhost_str s, spanhost_str *first, spanhost_str *middle, spanhost_str *last) {
    size_t parts = 1;
    *first = s;
    if (!s.len) return 1;
    const char *first_bar = memchr(s.ptr, '|', s.len), *last_bar = NULL;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '|') parts++, last_bar = s.ptr + i;
    first->ptr = s.ptr;
    first->len = first_bar ? (size_t)(first_bar - s.ptr) : s.len;
    if (parts >= 3) {
        middle->ptr = first_bar + 1;
        middle->len = (size_t)(last_bar - first_bar - 1);
        last->ptr = last_bar + 1;
        last->len = (size_t)(s.ptr + s.len - last_bar - 1);
    }
    return parts;
}

static int dropped_count(jparser *j, spanhost_str text, uint32_t *out) {
    uint64_t v = 0;
    if (!text.len || text.len > 10) return jfail(j, "the dropped attributes count after the last '|' is not a number");
    for (size_t i = 0; i < text.len; i++) {
        if (text.ptr[i] < '0' || text.ptr[i] > '9') return jfail(j, "the dropped attributes count after the last '|' is not a number");
        v = v * 10 + (uint64_t)(text.ptr[i] - '0');
    }
    if (v > 0xFFFFFFFFu) return jfail(j, "the dropped attributes count is out of range");
    *out = (uint32_t)v;
    return 0;
}

static int hex_into(jparser *j, spanhost_str text, uint8_t *dst, size_t size, const char *what) {
    if (text.len >= 2 && text.ptr[0] == '"' && text.ptr[text.len - 1] == '"') text.ptr++, text.len -= 2;
    if (!text.len) return 0;
    if (text.len != 2 * size) return jfail(j, what);
    for (size_t i = 0; i < size; i++) {
        int hi = hexval((unsigned char)text.ptr[2 * i]), lo = hexval((unsigned char)text.ptr[2 * i + 1]);
        if (hi < 0 || lo < 0) return jfail(j, what);
        dst[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* otlp.link.0, otlp.link.1, ... (up to 128, stopping at the first missing): "traceId|spanId|
 * traceState|{json attributes}|dropped". Fewer than five parts: the tag is dropped. */
static int zlinks(jparser *j, spanhost_span *s, ztag *tags, size_t n) {
    size_t cap = 0;
    for (int i = 0; i < 128; i++) {
        char key[24];
        snprintf(key, sizeof key, "otlp.link.%d", i);
        ztag *t = take(tags, n, key);
        if (!t) break;
        spanhost_str value = t->value, parts[5];
        drop(t);
        size_t count = 1;
        for (size_t k = 0; k < value.len; k++) count += value.ptr[k] == '|';
        if (count < 5) continue;
        /* trace id, span id and trace state are the first three parts; the last is the count */
        const char *p = value.ptr, *end = value.ptr + value.len;
        for (int k = 0; k < 3; k++) {
            const char *bar = memchr(p, '|', (size_t)(end - p));
            parts[k].ptr = p;
            parts[k].len = (size_t)(bar - p);
            p = bar + 1;
        }
        const char *last_bar = end;
        while (last_bar > p && last_bar[-1] != '|') last_bar--;
        parts[3].ptr = p;
        parts[3].len = (size_t)(last_bar - 1 - p);
        parts[4].ptr = last_bar;
        parts[4].len = (size_t)(end - last_bar);
        spanhost_link *l = (spanhost_link *)sh_arena_alloc(j->batch, sizeof *l);
        s->links = (spanhost_link **)grow(j, s->links, s->links_count, &cap, sizeof(void *));
        if (!l || !s->links) return jfail(j, "out of memory");
        l->struct_size = sizeof *l;
        if (hex_into(j, parts[0], l->trace_id, 16, "a link's trace id is 32 hex digits") ||
            hex_into(j, parts[1], l->span_id, 8, "a link's span id is 16 hex digits"))
            return -1;
        l->trace_state = parts[2];
        if (json_attributes(j, parts[3], &l->attributes, "Zipkin link attributes") || dropped_count(j, parts[4], &l->dropped_attributes_count))
            return -1;
        s->links[s->links_count++] = l;
    }
    return 0;
}

static int status_code_of(spanhost_str v) {
    if (is_key(v, "STATUS_CODE_OK") || is_key(v, "Ok")) return SPANHOST_STATUS_OK;
    if (is_key(v, "STATUS_CODE_ERROR") || is_key(v, "Error")) return SPANHOST_STATUS_ERROR;
    return SPANHOST_STATUS_UNSET; /* STATUS_CODE_UNSET, Unset, and names the Collector does not know */
}

/* The tags, in the order the Collector reads them, then what is left as attributes. */
static int apply_tags(jparser *j, zspan *z, ztag *tags, size_t n, int has_kind, size_t *attr_cap) {
    spanhost_span *s = z->span;
    ztag *t;
    if ((t = take(tags, n, "w3c.tracestate"))) s->trace_state = t->value, drop(t);
    if (!has_kind && (t = take(tags, n, "span.kind"))) {
        s->kind = is_key(t->value, "internal") ? SPANHOST_SPAN_KIND_INTERNAL : SPANHOST_SPAN_KIND_UNSPECIFIED;
        drop(t);
    }
    if ((t = take(tags, n, "otel.status_code"))) {
        s->status_code = (uint32_t)status_code_of(t->value);
        drop(t);
        if ((t = take(tags, n, "otel.status_description"))) s->status_message = t->value, drop(t);
    }
    if ((t = take(tags, n, "error"))) {
        s->status_code = SPANHOST_STATUS_ERROR;
        if (is_key(t->value, "true")) drop(t);
    }
    if (zlinks(j, s, tags, n)) return -1;
    if ((t = take(tags, n, "otel.library.name"))) z->library = t->value, drop(t);
    if ((t = take(tags, n, "otel.library.version"))) z->library_version = t->value, drop(t);
    if ((t = take(tags, n, "otlp.service.name.source"))) z->service_key = t->value, drop(t);
    for (size_t i = 0; i < n; i++) {
        if (!tags[i].key.ptr) continue;
        if (resource_tag(tags[i].key)) {
            z->resource_tags = z->resource_tags ? z->resource_tags : (ztag *)sh_arena_alloc(j->batch, n * sizeof(ztag));
            if (!z->resource_tags) return jfail(j, "out of memory");
            z->resource_tags[z->resource_count++] = tags[i];
            continue;
        }
        s->attributes.items = (spanhost_kv *)grow(j, s->attributes.items, s->attributes.count, attr_cap, sizeof(spanhost_kv));
        if (!s->attributes.items) return -1;
        s->attributes.items[s->attributes.count].key = tags[i].key;
        s->attributes.items[s->attributes.count].value = str_value(tags[i].value);
        s->attributes.count++;
    }
    return 0;
}

/* An annotation: "name|{json attributes}|dropped", or just its name. */
static int zannotation(jparser *j, spanhost_event *e, spanhost_str value) {
    spanhost_str name, json, dropped;
    size_t parts = split_bars(value, &name, &json, &dropped);
    e->name = name;
    if (parts < 3) return 0;
    return json_attributes(j, json, &e->attributes, "Zipkin annotation attributes") || dropped_count(j, dropped, &e->dropped_attributes_count);
}

/* One span's fields as read, JSON or protobuf, before they are mapped. */
typedef struct zfields {
    spanhost_str kind, remote_service, remote_ip, local_ip;
    int64_t remote_port, local_port;
    uint64_t timestamp, duration;
    ztag *tags;
    size_t ntags;
} zfields;

static int zspan_finish(jparser *j, zspan *z, zfields *f);

static int zspan_parse(jparser *j, zspan *z) {
    spanhost_span *s = (spanhost_span *)sh_arena_alloc(j->batch, sizeof *s);
    if (!s) return jfail(j, "out of memory");
    s->struct_size = sizeof *s;
    z->span = s;
    zfields f;
    memset(&f, 0, sizeof f);
    spanhost_str key;
    size_t event_cap = 0, tag_cap = 0;
    int first = 1, r, has_trace = 0, has_id = 0;
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "traceid")) { if (zid(j, s->trace_id, 16, "traceId must be 16 or 32 hex digits")) return -1; has_trace = 1; }
        else if (key_is(key, "id")) { if (zid(j, s->span_id, 8, "id must be 16 hex digits")) return -1; has_id = 1; }
        else if (key_is(key, "parentid")) { if (zid(j, s->parent_span_id, 8, "parentId must be 16 hex digits")) return -1; }
        else if (key_is(key, "name")) { if (jstring_or_null(j, &s->name)) return -1; }
        else if (key_is(key, "kind")) { if (jstring_or_null(j, &f.kind)) return -1; }  /* Zipkin's own exporter sends null for internal spans */
        else if (key_is(key, "timestamp")) { if (juint64(j, &f.timestamp)) return -1; }
        else if (key_is(key, "duration")) { if (juint64(j, &f.duration)) return -1; }
        else if (key_is(key, "localendpoint")) { if (zendpoint(j, &z->service, &f.local_ip, &f.local_port)) return -1; }
        else if (key_is(key, "remoteendpoint")) { if (zendpoint(j, &f.remote_service, &f.remote_ip, &f.remote_port)) return -1; }
        else if (key_is(key, "tags")) {
            spanhost_str tag;
            int tfirst = 1, tr;
            ws(j);
            if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; continue; }
            if (jobject_begin(j)) return -1;
            while ((tr = jobject_next(j, &tag, &tfirst)) == 1) {
                f.tags = (ztag *)grow(j, f.tags, f.ntags, &tag_cap, sizeof(ztag));
                if (!f.tags) return -1;
                f.tags[f.ntags].key = tag;
                if (jstring(j, &f.tags[f.ntags].value)) return jfail(j, "tag values must be strings");
                f.ntags++;
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
                spanhost_str ak, value = {NULL, 0};
                int efirst = 1, er;
                if (jobject_begin(j)) return -1;
                while ((er = jobject_next(j, &ak, &efirst)) == 1) {
                    uint64_t ts;
                    if (key_is(ak, "timestamp")) {
                        if (juint64(j, &ts)) return -1;
                        if (ts > UINT64_MAX / 1000) return jfail(j, "annotation timestamp out of range");
                        e->time_unix_nano = ts * 1000;
                    } else if (key_is(ak, "value")) {
                        if (jstring(j, &value)) return -1;
                    } else if (jskip(j)) {
                        return -1;
                    }
                }
                if (er < 0 || zannotation(j, e, value)) return -1;
                s->events[s->events_count++] = e;
            }
            if (ar < 0) return -1;
        } else if (jskip(j)) {
            return -1;
        }
    }
    if (r < 0) return -1;
    if (!has_trace || !has_id) return jfail(j, "a span needs traceId and id");
    return zspan_finish(j, z, &f);
}

/* The mapping both forms share: kind, tags, times, endpoints. */
static int zspan_finish(jparser *j, zspan *z, zfields *f) {
    spanhost_span *s = z->span;
    spanhost_str kind = f->kind;
    /* Tags are a map: a key sent twice has its last value. */
    if (sh_dedupe_by_key(j->batch, f->tags, &f->ntags, sizeof(ztag))) return jfail(j, "out of memory");
    uint64_t timestamp = f->timestamp, duration = f->duration;
    size_t attr_cap = 0;
    if (!memcmp(s->parent_span_id, s->span_id, 8)) memset(s->parent_span_id, 0, 8); /* its own parent: a root */
    if (kind.len) {
        if (kind.len == 6 && !memcmp(kind.ptr, "CLIENT", 6)) s->kind = SPANHOST_SPAN_KIND_CLIENT;
        else if (kind.len == 6 && !memcmp(kind.ptr, "SERVER", 6)) s->kind = SPANHOST_SPAN_KIND_SERVER;
        else if (kind.len == 8 && !memcmp(kind.ptr, "PRODUCER", 8)) s->kind = SPANHOST_SPAN_KIND_PRODUCER;
        else if (kind.len == 8 && !memcmp(kind.ptr, "CONSUMER", 8)) s->kind = SPANHOST_SPAN_KIND_CONSUMER;
        else return jfail(j, "kind must be CLIENT, SERVER, PRODUCER or CONSUMER");
    }
    if (apply_tags(j, z, f->tags, f->ntags, kind.len > 0, &attr_cap)) return -1;
    if (timestamp > UINT64_MAX / 1000 || duration > UINT64_MAX / 1000 - timestamp) return jfail(j, "timestamp or duration out of range");
    s->start_time_unix_nano = timestamp * 1000;
    s->end_time_unix_nano = (timestamp + duration) * 1000;
    spanhost_str none = {NULL, 0};
    if (add_endpoint(j, s, &attr_cap, NULL, none, "net.host.ip", f->local_ip, "net.host.port", f->local_port) ||
        add_endpoint(j, s, &attr_cap, "peer.service", f->remote_service, "net.peer.ip", f->remote_ip, "net.peer.port", f->remote_port))
        return -1;
    return timestamp ? 0 : mark_absent_start(j, s, &attr_cap);
}

static int zgroup(jparser *jp, zspan *spans, size_t count);

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
    return zgroup(&j, spans, count);
}

/* Spans into resources and scopes.
 * One resource per service name and, inside it, one scope per instrumentation library, in
     * order of first appearance. As in the Collector, which sorts spans by service and library
     * and takes the resource from the first span of each service, the resource's tags come from
     * the service's first span with the lowest library name (the others' resource tags are left
     * out), and a scope's version from its first span. */
static int zgroup(jparser *jp, zspan *spans, size_t count) {
    jparser j = *jp;
    spanhost_batch *batch = j.batch;
    static const char service_key[] = "service.name";
    size_t *service_of = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    size_t *scope_of = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    size_t *first_of_service = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    size_t *first_of_scope = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    size_t *scopes_in = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    size_t *spans_in = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    size_t services = 0, scopes = 0;
    if (!service_of || !scope_of || !first_of_service || !first_of_scope || !scopes_in || !spans_in) return jfail(&j, "out of memory");
    for (size_t i = 0; i < count; i++) {
        size_t g = 0, c = 0;
        while (g < services && !str_same(spans[first_of_service[g]].service, spans[i].service)) g++;
        if (g == services) first_of_service[services++] = i;
        while (c < scopes && !(service_of[first_of_scope[c]] == g && str_same(spans[first_of_scope[c]].library, spans[i].library))) c++;
        if (c == scopes) first_of_scope[scopes++] = i, scopes_in[g]++;
        service_of[i] = g;
        scope_of[i] = c;
        spans_in[c]++;
    }
    for (size_t i = 0; i < count; i++) {
        size_t *rep = &first_of_service[service_of[i]];
        if (library_order(spans[i].library, spans[*rep].library) < 0) *rep = i;
    }
    if (services) {
        batch->resource_spans = (spanhost_resource_spans **)sh_arena_alloc(batch, services * sizeof(void *));
        if (!batch->resource_spans) return jfail(&j, "out of memory");
    }
    for (size_t g = 0; g < services; g++) {
        const zspan *z = &spans[first_of_service[g]];
        spanhost_resource_spans *rs = (spanhost_resource_spans *)sh_arena_alloc(batch, sizeof *rs);
        spanhost_resource *res = (spanhost_resource *)sh_arena_alloc(batch, sizeof *res);
        spanhost_scope_spans **list = (spanhost_scope_spans **)sh_arena_alloc(batch, scopes_in[g] * sizeof(void *));
        if (!rs || !res || !list) return jfail(&j, "out of memory");
        res->struct_size = sizeof *res;
        if (z->service.len) { /* spans without a service name get an empty resource */
            res->attributes.items = (spanhost_kv *)sh_arena_alloc(batch, (1 + z->resource_count) * sizeof(spanhost_kv));
            if (!res->attributes.items) return jfail(&j, "out of memory");
            spanhost_kv *kv = res->attributes.items;
            kv->key.ptr = z->service_key.len ? z->service_key.ptr : service_key;
            kv->key.len = z->service_key.len ? z->service_key.len : sizeof service_key - 1;
            kv->value = str_value(z->service);
            res->attributes.count = 1;
            for (size_t t = 0; t < z->resource_count; t++) {
                size_t at = res->attributes.count;
                for (size_t k = 0; k < res->attributes.count; k++)
                    if (str_same(res->attributes.items[k].key, z->resource_tags[t].key)) at = k;
                res->attributes.items[at].key = z->resource_tags[t].key;
                res->attributes.items[at].value = str_value(z->resource_tags[t].value);
                if (at == res->attributes.count) res->attributes.count++;
            }
        }
        rs->struct_size = sizeof *rs;
        rs->resource = res;
        rs->scope_spans = list;
        batch->resource_spans[g] = rs;
    }
    batch->resource_spans_count = services;
    for (size_t c = 0; c < scopes; c++) {
        const zspan *z = &spans[first_of_scope[c]];
        spanhost_resource_spans *rs = batch->resource_spans[service_of[first_of_scope[c]]];
        spanhost_scope_spans *ss = (spanhost_scope_spans *)sh_arena_alloc(batch, sizeof *ss);
        spanhost_scope *scope = (spanhost_scope *)sh_arena_alloc(batch, sizeof *scope);
        spanhost_span **members = (spanhost_span **)sh_arena_alloc(batch, spans_in[c] * sizeof(void *));
        if (!ss || !scope || !members) return jfail(&j, "out of memory");
        scope->struct_size = sizeof *scope;
        scope->name = z->library;
        if (z->library.len) scope->version = z->library_version;
        ss->struct_size = sizeof *ss;
        ss->scope = scope;
        ss->spans = members;
        rs->scope_spans[rs->scope_spans_count++] = ss;
    }
    for (size_t i = 0; i < count; i++) {
        spanhost_resource_spans *rs = batch->resource_spans[service_of[i]];
        spanhost_scope_spans *ss = NULL;
        for (size_t k = 0; k < rs->scope_spans_count && !ss; k++)
            if (str_same(rs->scope_spans[k]->scope->name, spans[i].library)) ss = rs->scope_spans[k];
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

/* --- Zipkin v2 protobuf (zipkin.proto3: ListOfSpans) ------------------------------------ */

static int pfail(jparser *j, const reader *r, const char *what) {
    j->p = (const char *)r->p;
    return jfail(j, what);
}

/* An address of 4 or 16 bytes as text, as the Collector writes it (net.IP.String). */
static int ip_text(jparser *j, reader ip, spanhost_str *out) {
    char text[INET6_ADDRSTRLEN];
    size_t n = (size_t)(ip.end - ip.p);
    if (!n) return 0;
    if ((n != 4 && n != 16) || !inet_ntop(n == 4 ? AF_INET : AF_INET6, ip.p, text, sizeof text))
        return pfail(j, &ip, "an endpoint address is 4 (ipv4) or 16 (ipv6) bytes");
    *out = sh_arena_strdup(j->batch, text, strlen(text));
    return out->ptr ? 0 : jfail(j, "out of memory");
}

static int pendpoint(jparser *j, reader r, spanhost_str *service, spanhost_str *ip, int64_t *port) {
    uint32_t field, wire;
    int rc;
    reader v4 = {NULL, NULL}, v6 = {NULL, NULL};
    while ((rc = read_tag(&r, &field, &wire)) == 1) {
        reader sub;
        uint64_t n;
        if (field >= 1 && field <= 3 && wire == WT_LEN) {
            if (read_len(&r, &sub)) return pfail(j, &r, "truncated endpoint");
            if (field == 1) *service = as_str(sub);
            else if (field == 2) v4 = sub;
            else v6 = sub;
        } else if (field == 4 && wire == WT_VARINT) {
            if (read_varint(&r, &n)) return pfail(j, &r, "truncated endpoint port");
            *port = (int32_t)n;
        } else if (skip_field(&r, wire)) {
            return pfail(j, &r, "malformed endpoint field");
        }
    }
    if (rc < 0) return pfail(j, &r, "malformed endpoint");
    return ip_text(j, v4.p ? v4 : v6, ip);
}

static const char *const proto_kinds[] = {"", "CLIENT", "SERVER", "PRODUCER", "CONSUMER"};

static int pspan(jparser *j, reader r, zspan *z) {
    spanhost_span *s = (spanhost_span *)sh_arena_alloc(j->batch, sizeof *s);
    if (!s) return jfail(j, "out of memory");
    s->struct_size = sizeof *s;
    z->span = s;
    zfields f;
    memset(&f, 0, sizeof f);
    size_t event_cap = 0, tag_cap = 0;
    int has_trace = 0, has_id = 0, rc;
    uint32_t field, wire;
    while ((rc = read_tag(&r, &field, &wire)) == 1) {
        reader sub;
        uint64_t n;
        int is_len = wire == WT_LEN;
        if (is_len && read_len(&r, &sub)) return pfail(j, &r, "truncated span field");
        size_t len = is_len ? (size_t)(sub.end - sub.p) : 0;
        if (field == 1 && is_len) {
            if (len != 16 && len != 8) return pfail(j, &r, "trace_id must be 8 or 16 bytes");
            memcpy(s->trace_id + 16 - len, sub.p, len);
            has_trace = 1;
        } else if ((field == 2 || field == 3) && is_len) {
            if (len != 8) return pfail(j, &r, field == 2 ? "parent_id must be 8 bytes" : "id must be 8 bytes");
            memcpy(field == 2 ? s->parent_span_id : s->span_id, sub.p, 8);
            if (field == 3) has_id = 1;
        } else if (field == 4 && wire == WT_VARINT) {
            if (read_varint(&r, &n)) return pfail(j, &r, "truncated kind");
            if (n > 4) return pfail(j, &r, "kind must be CLIENT, SERVER, PRODUCER or CONSUMER");
            f.kind.ptr = proto_kinds[n];
            f.kind.len = strlen(proto_kinds[n]);
        } else if (field == 5 && is_len) {
            s->name = as_str(sub);
        } else if (field == 6 && wire == WT_I64) {
            if (read_fixed64(&r, &f.timestamp)) return pfail(j, &r, "truncated timestamp");
        } else if (field == 7 && wire == WT_VARINT) {
            if (read_varint(&r, &f.duration)) return pfail(j, &r, "truncated duration");
        } else if (field == 8 && is_len) {
            if (pendpoint(j, sub, &z->service, &f.local_ip, &f.local_port)) return -1;
        } else if (field == 9 && is_len) {
            if (pendpoint(j, sub, &f.remote_service, &f.remote_ip, &f.remote_port)) return -1;
        } else if (field == 10 && is_len) {
            spanhost_event *e = (spanhost_event *)sh_arena_alloc(j->batch, sizeof *e);
            s->events = (spanhost_event **)grow(j, s->events, s->events_count, &event_cap, sizeof(void *));
            if (!e || !s->events) return jfail(j, "out of memory");
            e->struct_size = sizeof *e;
            spanhost_str value = {NULL, 0};
            uint32_t af, aw;
            int ar;
            while ((ar = read_tag(&sub, &af, &aw)) == 1) {
                reader text;
                uint64_t ts;
                if (af == 1 && aw == WT_I64) {
                    if (read_fixed64(&sub, &ts)) return pfail(j, &sub, "truncated annotation timestamp");
                    if (ts > UINT64_MAX / 1000) return pfail(j, &sub, "annotation timestamp out of range");
                    e->time_unix_nano = ts * 1000;
                } else if (af == 2 && aw == WT_LEN) {
                    if (read_len(&sub, &text)) return pfail(j, &sub, "truncated annotation value");
                    value = as_str(text);
                } else if (skip_field(&sub, aw)) {
                    return pfail(j, &sub, "malformed annotation field");
                }
            }
            if (ar < 0 || zannotation(j, e, value)) return ar < 0 ? pfail(j, &sub, "malformed annotation") : -1;
            s->events[s->events_count++] = e;
        } else if (field == 11 && is_len) {
            f.tags = (ztag *)grow(j, f.tags, f.ntags, &tag_cap, sizeof(ztag));
            if (!f.tags) return -1;
            ztag *t = &f.tags[f.ntags++];
            memset(t, 0, sizeof *t);
            t->key.ptr = t->value.ptr = "";
            uint32_t tf, tw;
            int tr;
            while ((tr = read_tag(&sub, &tf, &tw)) == 1) {
                reader text;
                if ((tf == 1 || tf == 2) && tw == WT_LEN) {
                    if (read_len(&sub, &text)) return pfail(j, &sub, "truncated tag");
                    if (tf == 1) t->key = as_str(text);
                    else t->value = as_str(text);
                } else if (skip_field(&sub, tw)) {
                    return pfail(j, &sub, "malformed tag field");
                }
            }
            if (tr < 0) return pfail(j, &sub, "malformed tag");
        } else if (field <= 11 && field != 0 && !(field == 12 || field == 13)) {
            return pfail(j, &r, "a span field has the wrong wire type");
        } else if (skip_field(&r, wire)) {
            return pfail(j, &r, "malformed span field");
        }
    }
    if (rc < 0) return pfail(j, &r, "malformed span");
    if (!has_trace || !has_id) return pfail(j, &r, "a span needs trace_id and id");
    return zspan_finish(j, z, &f);
}

static int decode_zipkin_proto(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    jparser j = {(const char *)data, (const char *)data + len, (const char *)data, batch, err, err_cap, 0, 0, "Zipkin protobuf"};
    reader r = {data, data + len};
    zspan *spans = NULL;
    size_t count = 0, cap = 0;
    uint32_t field, wire;
    int rc;
    while ((rc = read_tag(&r, &field, &wire)) == 1) {
        reader sub;
        if (field != 1 || wire != WT_LEN) {
            if (skip_field(&r, wire)) return pfail(&j, &r, "malformed ListOfSpans field");
            continue;
        }
        if (read_len(&r, &sub)) return pfail(&j, &r, "truncated span");
        spans = (zspan *)grow(&j, spans, count, &cap, sizeof(zspan));
        if (!spans) return -1;
        memset(&spans[count], 0, sizeof(zspan));
        if (pspan(&j, sub, &spans[count])) return -1;
        count++;
    }
    if (rc < 0) return pfail(&j, &r, "malformed ListOfSpans");
    return zgroup(&j, spans, count);
}

/* A zipkin.proto3 ListOfSpans (POST /api/v2/spans, application/x-protobuf). */
int sh_decode_zipkin_proto(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    if (decode_zipkin_proto(batch, data, len, err, err_cap)) return -1;
    return sh_high_bits(data, len) ? sh_decode_check_utf8(batch, "Zipkin protobuf", err, err_cap) : 0;
}

/* --- Zipkin v1 JSON (POST /api/v1/spans) ------------------------------------------------ *
 * Mapped as the Collector's zipkinv1 translator maps it: the first of the annotations cs, cr,
 * ms, mr, ss, sr sets the kind and, with a service name, the span's endpoint (its resource:
 * service.name and ipv4, ipv6, port); the earliest and latest annotations bound the span
 * unless timestamp is given; other annotations are events. Binary annotations are string
 * attributes (`lc` as `component`), except the status keys: census.status_code,
 * otel.status_code (an integer), error, with their descriptions, and http.status_code. The
 * address annotations sa, ca and ma (whose `true` value the Collector cannot read) name the
 * remote endpoint: peer.service, net.peer.ip, net.peer.port, as in v2. */

typedef struct zep1 {
    spanhost_str service, ipv4, ipv6;
    int64_t port;
} zep1;

typedef struct zspan1 {
    spanhost_span *span;
    zep1 endpoint; /* the resource's */
    size_t group;
} zspan1;

static const char unknown_service[] = "unknown-service";

static int zendpoint1(jparser *j, zep1 *e) {
    spanhost_str key;
    int first = 1, r;
    if (jtake_null(j) == 1) return 0;
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "servicename")) { if (jstring_or_null(j, &e->service)) return -1; }
        else if (key_is(key, "ipv4")) { if (jstring_or_null(j, &e->ipv4)) return -1; }
        else if (key_is(key, "ipv6")) { if (jstring_or_null(j, &e->ipv6)) return -1; }
        else if (key_is(key, "port")) { if (jint64(j, &e->port)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

/* The status keys, as the Collector's statusMapper collects them. */
typedef struct zstatus1 {
    int census, status, error, http;
    uint32_t census_code, status_code, http_code;
    spanhost_str census_message, status_message, http_message;
} zstatus1;

/* An int32 from a decimal string (the Collector's attribToStatusCode on a string value). */
static int status_int(spanhost_str v, int64_t *out) {
    return sh_parse_decimal(v.ptr, v.len, out) && *out >= INT32_MIN && *out <= INT32_MAX;
}

/* 1 when the key is a status key the Collector drops from the attributes. */
static int status_key(zstatus1 *st, spanhost_str key, spanhost_str value) {
    int64_t n;
    if (is_key(key, "census.status_code")) {
        if (status_int(value, &n)) st->census = 1, st->census_code = n == 0 ? SPANHOST_STATUS_OK : SPANHOST_STATUS_ERROR;
        return 1;
    }
    if (is_key(key, "census.status_description") || is_key(key, "opencensus.status_description")) {
        st->census_message = value;
        return 1;
    }
    if (is_key(key, "otel.status_code")) {
        if (status_int(value, &n)) st->status = 1, st->status_code = (uint32_t)(int32_t)n;
        return 1;
    }
    if (is_key(key, "otel.status_description")) {
        st->status_message = value;
        return 1;
    }
    if (is_key(key, "error")) {
        st->error = 1;
        return 1;
    }
    if (is_key(key, "http.status_code") && status_int(value, &n)) {
        st->http = 1;
        st->http_code = n >= 100 && n < 400 ? SPANHOST_STATUS_UNSET : SPANHOST_STATUS_ERROR;
    } else if (is_key(key, "http.status_message")) {
        st->http_message = value;
    }
    return 0;
}

static void apply_status1(spanhost_span *s, const zstatus1 *st) {
    if (st->census) s->status_code = st->census_code, s->status_message = st->census_message;
    else if (st->status) s->status_code = st->status_code, s->status_message = st->status_message;
    else if (st->error) {
        s->status_code = SPANHOST_STATUS_ERROR;
        s->status_message = st->census_message.len ? st->census_message : st->status_message;
    } else if (st->http) s->status_code = st->http_code, s->status_message = st->http_message;
}

/* A binary annotation's value as text: strings as they are, other JSON values as written. */
static int value_text(jparser *j, spanhost_str *out, int *is_true) {
    int c = peek(j);
    *is_true = 0;
    if (c == '"') return jstring(j, out);
    const char *start = j->p;
    if (jskip(j)) return -1;
    out->ptr = start;
    out->len = (size_t)(j->p - start);
    *is_true = out->len == 4 && !memcmp(start, "true", 4);
    return 0;
}

static int zspan1_parse(jparser *j, zspan1 *z, int64_t now_us) {
    spanhost_span *s = (spanhost_span *)sh_arena_alloc(j->batch, sizeof *s);
    if (!s) return jfail(j, "out of memory");
    s->struct_size = sizeof *s;
    z->span = s;
    spanhost_str key, trace = {NULL, 0}, id = {NULL, 0}, parent = {NULL, 0};
    int64_t timestamp = 0, duration = 0, early = INT64_MAX, late = INT64_MIN;
    uint64_t start = 0, end = 0;
    int first = 1, r, has_endpoint = 0, kind_set = 0;
    size_t event_cap = 0, attr_cap = 0;
    zstatus1 st;
    memset(&st, 0, sizeof st);
    spanhost_str fallback = {NULL, 0}, remote_service = {NULL, 0}, remote_ip = {NULL, 0};
    int64_t remote_port = 0;
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "traceid")) { if (jstring(j, &trace)) return -1; }
        else if (key_is(key, "id")) { if (jstring(j, &id)) return -1; }
        else if (key_is(key, "parentid")) { if (jstring_or_null(j, &parent)) return -1; }
        else if (key_is(key, "name")) { if (jstring_or_null(j, &s->name)) return -1; }
        else if (key_is(key, "timestamp")) { if (jint64(j, &timestamp)) return -1; }
        else if (key_is(key, "duration")) { if (jint64(j, &duration)) return -1; }
        else if (key_is(key, "annotations")) {
            int is_null, afirst = 1, ar;
            if (jarray_begin(j, &is_null)) return -1;
            if (is_null) continue;
            while ((ar = jarray_next(j, &afirst)) == 1) {
                spanhost_str ak, value = {NULL, 0};
                zep1 ep;
                memset(&ep, 0, sizeof ep);
                int64_t ts = 0;
                int efirst = 1, er;
                if (jtake_null(j) == 1) continue;
                if (jobject_begin(j)) return -1;
                while ((er = jobject_next(j, &ak, &efirst)) == 1) {
                    if (key_is(ak, "timestamp")) { if (jint64(j, &ts)) return -1; }
                    else if (key_is(ak, "value")) { if (jstring_or_null(j, &value)) return -1; }
                    else if (key_is(ak, "endpoint")) { if (zendpoint1(j, &ep)) return -1; }
                    else if (jskip(j)) return -1;
                }
                if (er < 0) return -1;
                if (!value.len) continue;
                int kind = 0;
                if (value.len == 2) {
                    if (!memcmp(value.ptr, "cs", 2) || !memcmp(value.ptr, "cr", 2)) kind = SPANHOST_SPAN_KIND_CLIENT;
                    else if (!memcmp(value.ptr, "ss", 2) || !memcmp(value.ptr, "sr", 2)) kind = SPANHOST_SPAN_KIND_SERVER;
                    else if (!memcmp(value.ptr, "ms", 2)) kind = SPANHOST_SPAN_KIND_PRODUCER;
                    else if (!memcmp(value.ptr, "mr", 2)) kind = SPANHOST_SPAN_KIND_CONSUMER;
                }
                if (!has_endpoint && ep.service.len && kind) z->endpoint = ep, has_endpoint = 1;
                if (!kind_set && kind) s->kind = (uint32_t)kind, kind_set = 1;
                uint64_t at = ts > 0 ? (uint64_t)ts * 1000u : 0;
                if (ts < early) early = ts, start = at;
                if (ts > late) late = ts, end = at;
                if (kind) continue;
                spanhost_event *e = (spanhost_event *)sh_arena_alloc(j->batch, sizeof *e);
                s->events = (spanhost_event **)grow(j, s->events, s->events_count, &event_cap, sizeof(void *));
                if (!e || !s->events) return jfail(j, "out of memory");
                e->struct_size = sizeof *e;
                e->time_unix_nano = at;
                e->name = value;
                s->events[s->events_count++] = e;
            }
            if (ar < 0) return -1;
        } else if (key_is(key, "binaryannotations")) {
            int is_null, bfirst = 1, br;
            if (jarray_begin(j, &is_null)) return -1;
            if (is_null) continue;
            while ((br = jarray_next(j, &bfirst)) == 1) {
                spanhost_str bk, bkey = {NULL, 0}, value = {"", 0};
                zep1 ep;
                memset(&ep, 0, sizeof ep);
                int bf = 1, b, is_true = 0;
                if (jtake_null(j) == 1) continue;
                if (jobject_begin(j)) return -1;
                while ((b = jobject_next(j, &bk, &bf)) == 1) {
                    if (key_is(bk, "key")) { if (jstring_or_null(j, &bkey)) return -1; }
                    else if (key_is(bk, "value")) { if (value_text(j, &value, &is_true)) return -1; }
                    else if (key_is(bk, "endpoint")) { if (zendpoint1(j, &ep)) return -1; }
                    else if (jskip(j)) return -1;
                }
                if (b < 0) return -1;
                if (ep.service.len) fallback = ep.service;
                if (is_true && (is_key(bkey, "sa") || is_key(bkey, "ca") || is_key(bkey, "ma"))) {
                    remote_service = ep.service;
                    remote_ip = ep.ipv4.len ? ep.ipv4 : ep.ipv6;
                    remote_port = ep.port;
                    continue;
                }
                if (is_key(bkey, "lc")) {
                    bkey.ptr = "component", bkey.len = 9;
                    if (!fallback.len) fallback = value; /* the Collector's fallback: the local component */
                }
                if (status_key(&st, bkey, value)) continue;
                s->attributes.items = (spanhost_kv *)grow(j, s->attributes.items, s->attributes.count, &attr_cap, sizeof(spanhost_kv));
                if (!s->attributes.items) return -1;
                s->attributes.items[s->attributes.count].key = bkey;
                s->attributes.items[s->attributes.count].value = str_value(value);
                s->attributes.count++;
            }
            if (br < 0) return -1;
        } else if (jskip(j)) {
            return -1;
        }
    }
    if (r < 0) return -1;
    if (!trace.len || !id.len) return jfail(j, "a span needs traceId and id");
    if (trace.len != 16 && trace.len != 32) return jfail(j, "traceId must be 16 or 32 hex digits");
    if (id.len != 16) return jfail(j, "id must be 16 hex digits");
    if (parent.len && parent.len != 16) return jfail(j, "parentId must be 16 hex digits");
    if (hex_into(j, trace, s->trace_id + 16 - trace.len / 2, trace.len / 2, "traceId is not hex") ||
        hex_into(j, id, s->span_id, 8, "id is not hex") || hex_into(j, parent, s->parent_span_id, 8, "parentId is not hex"))
        return -1;
    static const uint8_t zero[16];
    if (!memcmp(s->trace_id, zero, 16)) return jfail(j, "traceId is zero");
    if (!memcmp(s->span_id, zero, 8)) return jfail(j, "id is zero");
    apply_status1(s, &st);
    if (!has_endpoint) z->endpoint.service.ptr = unknown_service, z->endpoint.service.len = sizeof unknown_service - 1;
    if (is_key(z->endpoint.service, unknown_service) && fallback.len) z->endpoint.service = fallback;
    if (timestamp) {
        start = timestamp > 0 ? (uint64_t)timestamp * 1000u : 0;
        int64_t stop = (int64_t)((uint64_t)timestamp + (uint64_t)duration);
        end = stop > 0 ? (uint64_t)stop * 1000u : 0;
    }
    s->start_time_unix_nano = start;
    s->end_time_unix_nano = end;
    if (add_endpoint(j, s, &attr_cap, "peer.service", remote_service, "net.peer.ip", remote_ip, "net.peer.port", remote_port)) return -1;
    if (s->start_time_unix_nano) return 0;
    /* the Collector's setTimestampsIfUnset: the time it arrived, marked */
    s->start_time_unix_nano = s->end_time_unix_nano = (uint64_t)now_us * 1000u;
    return mark_absent_start(j, s, &attr_cap);
}

static int same_endpoint(const zep1 *a, const zep1 *b) {
    return str_same(a->service, b->service) && str_same(a->ipv4, b->ipv4) && str_same(a->ipv6, b->ipv6) && a->port == b->port;
}

static int decode_zipkin_v1_json(spanhost_batch *batch, const uint8_t *data, size_t len, int64_t now_us, char *err, size_t err_cap) {
    jparser j = {(const char *)data, (const char *)data + len, (const char *)data, batch, err, err_cap, 0, 0, "Zipkin v1 JSON"};
    zspan1 *spans = NULL;
    size_t count = 0, cap = 0, groups = 0;
    int is_null, first = 1, r = 0;
    if (peek(&j) != '[') return jfail(&j, "expected a JSON array of Zipkin v1 spans");
    if (jarray_begin(&j, &is_null)) return -1;
    while (!is_null && (r = jarray_next(&j, &first)) == 1) {
        spans = (zspan1 *)grow(&j, spans, count, &cap, sizeof(zspan1));
        if (!spans) return -1;
        memset(&spans[count], 0, sizeof(zspan1));
        if (zspan1_parse(&j, &spans[count], now_us)) return -1;
        count++;
    }
    if (!is_null && r < 0) return -1;
    if (peek(&j) != -1) return jfail(&j, "trailing data after the JSON array");
    /* One resource (with one unnamed scope) per endpoint, in order of first appearance. */
    size_t *first_of = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    size_t *members = (size_t *)sh_arena_alloc(batch, (count ? count : 1) * sizeof(size_t));
    if (!first_of || !members) return jfail(&j, "out of memory");
    for (size_t i = 0; i < count; i++) {
        size_t g = 0;
        while (g < groups && !same_endpoint(&spans[first_of[g]].endpoint, &spans[i].endpoint)) g++;
        if (g == groups) first_of[groups++] = i;
        spans[i].group = g;
        members[g]++;
    }
    if (groups && !(batch->resource_spans = (spanhost_resource_spans **)sh_arena_alloc(batch, groups * sizeof(void *))))
        return jfail(&j, "out of memory");
    for (size_t g = 0; g < groups; g++) {
        const zep1 *e = &spans[first_of[g]].endpoint;
        spanhost_resource_spans *rs = (spanhost_resource_spans *)sh_arena_alloc(batch, sizeof *rs);
        spanhost_resource *res = (spanhost_resource *)sh_arena_alloc(batch, sizeof *res);
        spanhost_scope_spans *ss = (spanhost_scope_spans *)sh_arena_alloc(batch, sizeof *ss);
        spanhost_scope *scope = (spanhost_scope *)sh_arena_alloc(batch, sizeof *scope);
        spanhost_scope_spans **list = (spanhost_scope_spans **)sh_arena_alloc(batch, sizeof(void *));
        spanhost_span **group = (spanhost_span **)sh_arena_alloc(batch, members[g] * sizeof(void *));
        size_t attr_cap = 0;
        if (!rs || !res || !ss || !scope || !list || !group) return jfail(&j, "out of memory");
        res->struct_size = sizeof *res;
        scope->struct_size = sizeof *scope;
        ss->struct_size = sizeof *ss;
        rs->struct_size = sizeof *rs;
        if (add_attr(&j, &res->attributes, &attr_cap, "service.name", str_value(e->service)) ||
            (e->ipv4.len && add_attr(&j, &res->attributes, &attr_cap, "ipv4", str_value(e->ipv4))) ||
            (e->ipv6.len && add_attr(&j, &res->attributes, &attr_cap, "ipv6", str_value(e->ipv6))))
            return -1;
        if (e->port) {
            char text[24];
            int n = snprintf(text, sizeof text, "%d", (int32_t)e->port);
            spanhost_str port = sh_arena_strdup(batch, text, (size_t)n);
            if (!port.ptr || add_attr(&j, &res->attributes, &attr_cap, "port", str_value(port))) return jfail(&j, "out of memory");
        }
        ss->scope = scope;
        ss->spans = group;
        list[0] = ss;
        rs->resource = res;
        rs->scope_spans = list;
        rs->scope_spans_count = 1;
        batch->resource_spans[g] = rs;
    }
    batch->resource_spans_count = groups;
    for (size_t i = 0; i < count; i++) {
        spanhost_scope_spans *ss = batch->resource_spans[spans[i].group]->scope_spans[0];
        ss->spans[ss->spans_count++] = spans[i].span;
    }
    return 0;
}

/* A Zipkin v1 JSON array of spans (POST /api/v1/spans). `now_us` stands in for a span without
 * any time, as the Collector's translator uses the time it receives it. */
int sh_decode_zipkin_v1_json(spanhost_batch *batch, const uint8_t *data, size_t len, int64_t now_us, char *err, size_t err_cap) {
    if (decode_zipkin_v1_json(batch, data, len, now_us, err, err_cap)) return -1;
    return sh_high_bits(data, len) ? sh_decode_check_utf8(batch, "Zipkin v1 JSON", err, err_cap) : 0;
}
