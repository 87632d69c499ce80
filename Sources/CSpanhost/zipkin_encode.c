/*
 * Zipkin v2 JSON out of a batch (SPANHOST_ENCODING_ZIPKIN_JSON), mapped as the Collector's
 * zipkin exporter maps spans (contrib pkg/translator/zipkin/zipkinv2/from_translator.go):
 * - the resource's service.name (else faas.name, k8s.deployment.name or process.executable.name,
 *   named by otlp.service.name.source) is localEndpoint.serviceName; its other attributes, the
 *   scope (otel.library.name / version) and the span's attributes become string tags;
 * - net.host.ip / net.host.port make the local endpoint, peer.service / net.peer.ip /
 *   net.peer.port the remote one (and leave the tags);
 * - ERROR sets error="true"; a set status is otel.status_code "Ok" or "Error" with
 *   otel.status_description; INTERNAL is span.kind=internal; the trace state w3c.tracestate;
 * - events are annotations "name|{json attributes}|dropped" (just the name without any), links
 *   otlp.link.N tags "traceId|spanId|traceState|{json attributes}|dropped";
 * - times in microseconds; a 64-bit trace id (high half zero) is written with 16 hex digits.
 * Tags are written sorted by key, as a Go map is.
 */
#include "json_writer.h"

#include <arpa/inet.h>
#include <math.h>

#define NO_SERVICE_NAME "OTLPResourceNoServiceName"

typedef struct ztag_out {
    spanhost_str key;
    spanhost_str value;
} ztag_out;

typedef struct tags {
    ztag_out *items;
    size_t count, cap;
    spanhost_batch *scratch; /* an arena for the tag texts of one encode */
    int oom;
} tags;

static spanhost_str cstr(const char *s) {
    spanhost_str r = {s, strlen(s)};
    return r;
}

static int str_eq(spanhost_str a, spanhost_str b) { return a.len == b.len && (!a.len || !memcmp(a.ptr, b.ptr, a.len)); }

static int is(spanhost_str a, const char *b) { return str_eq(a, cstr(b)); }

/* A key set twice keeps its last value (a Go map). */
static void tag_set(tags *t, spanhost_str key, spanhost_str value) {
    for (size_t i = 0; i < t->count; i++)
        if (str_eq(t->items[i].key, key)) { t->items[i].value = value; return; }
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        ztag_out *n = (ztag_out *)sh_arena_alloc(t->scratch, cap * sizeof *n);
        if (!n) { t->oom = 1; return; }
        if (t->count) memcpy(n, t->items, t->count * sizeof *n);
        t->items = n;
        t->cap = cap;
    }
    t->items[t->count].key = key;
    t->items[t->count++].value = value;
}

/* A copy of `from` to add to (its texts are shared). */
static int tags_copy(tags *to, const tags *from) {
    *to = *from;
    to->cap = from->count;
    to->items = from->count ? (ztag_out *)sh_arena_alloc(from->scratch, from->count * sizeof(ztag_out)) : NULL;
    if (from->count && !to->items) return -1;
    if (from->count) memcpy(to->items, from->items, from->count * sizeof(ztag_out));
    return 0;
}

static ztag_out *tag_get(tags *t, const char *key) {
    for (size_t i = 0; i < t->count; i++)
        if (is(t->items[i].key, key)) return &t->items[i];
    return NULL;
}

static void tag_remove(tags *t, const char *key) {
    ztag_out *found = tag_get(t, key);
    if (!found) return;
    *found = t->items[--t->count];
}

static spanhost_str keep(tags *t, const char *text, size_t len) {
    spanhost_str s = sh_arena_strdup(t->scratch, text, len);
    if (!s.ptr && len) t->oom = 1;
    return s;
}

/* Room for any double in fixed notation: 5e-324 has 323 zeros after the point. */
#define DOUBLE_TEXT 400

/* The shortest decimal that reads back as `d`: fixed notation (Go's FormatFloat 'f', -1), or
 * as encoding/json writes it (exponent form below 1e-6 and from 1e21). `cap` is DOUBLE_TEXT. */
static size_t shortest_double(double d, char *buf, size_t cap, int json) {
    if (isnan(d)) return (size_t)snprintf(buf, cap, "NaN");
    if (isinf(d)) return (size_t)snprintf(buf, cap, d > 0 ? "+Inf" : "-Inf");
    if (d == 0) return (size_t)snprintf(buf, cap, signbit(d) ? "-0" : "0");
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, d);
        if (strtod(e, NULL) == d) break;
    }
    /* e: [-]D[.DDD]e(+|-)XX */
    char digits[24];
    size_t n = 0;
    const char *c = e;
    int negative = *c == '-';
    if (negative) c++;
    for (; *c && *c != 'e'; c++)
        if (*c != '.') digits[n++] = *c;
    int exp = atoi(c + 1);
    size_t at = 0;
    if (negative) buf[at++] = '-';
    if (json && (exp < -6 || exp >= 21)) {
        buf[at++] = digits[0];
        if (n > 1) { buf[at++] = '.'; memcpy(buf + at, digits + 1, n - 1); at += n - 1; }
        at += (size_t)snprintf(buf + at, cap - at, "e%c%d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return at;
    }
    if (exp < 0) {
        buf[at++] = '0';
        buf[at++] = '.';
        for (int z = -1; z > exp; z--) buf[at++] = '0';
        memcpy(buf + at, digits, n);
        return at + n;
    }
    for (int i = 0; i <= exp || i < (int)n; i++) {
        if (i == exp + 1) buf[at++] = '.';
        buf[at++] = i < (int)n ? digits[i] : '0';
    }
    return at;
}

static int kv_order(const void *a, const void *b) {
    const spanhost_kv *x = (const spanhost_kv *)a, *y = (const spanhost_kv *)b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = n ? memcmp(x->key.ptr, y->key.ptr, n) : 0;
    return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

static void raw_json(jbuf *b, const spanhost_value *v, int depth);

/* Attributes as Go's json.Marshal writes a map[string]any: keys sorted. */
static void raw_map(jbuf *b, const spanhost_kv_list *l, int depth) {
    spanhost_kv *sorted = l->count ? (spanhost_kv *)malloc(l->count * sizeof *sorted) : NULL;
    if (l->count && !sorted) { b->oom = 1; return; }
    if (l->count) memcpy(sorted, l->items, l->count * sizeof *sorted);
    if (l->count > 1) qsort(sorted, l->count, sizeof *sorted, kv_order);
    OUTS(b, "{");
    for (size_t i = 0; i < l->count; i++) {
        if (i && kv_order(&sorted[i - 1], &sorted[i]) == 0) continue; /* a map holds a key once */
        if (b->len && b->data[b->len - 1] != '{') OUTS(b, ",");
        out_view(b, sorted[i].key);
        OUTS(b, ":");
        raw_json(b, &sorted[i].value, depth + 1);
    }
    OUTS(b, "}");
    free(sorted);
}

/* A value as encoding/json writes its AsRaw() form. */
static void raw_json(jbuf *b, const spanhost_value *v, int depth) {
    char tmp[DOUBLE_TEXT];
    if (depth > 64) { OUTS(b, "null"); return; }
    switch (v->type) {
    case SPANHOST_VALUE_STRING: out_view(b, v->as.string_value); break;
    case SPANHOST_VALUE_BOOL: if (v->as.bool_value) OUTS(b, "true"); else OUTS(b, "false"); break;
    case SPANHOST_VALUE_INT: out(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v->as.int_value)); break;
    case SPANHOST_VALUE_DOUBLE:
        /* JSON has no NaN or infinities (encoding/json fails on them): written as strings. */
        if (!isfinite(v->as.double_value)) { size_t n = shortest_double(v->as.double_value, tmp, sizeof tmp, 1); out_str(b, tmp, n); }
        else out(b, tmp, shortest_double(v->as.double_value, tmp, sizeof tmp, 1));
        break;
    case SPANHOST_VALUE_BYTES: out_base64(b, v->as.bytes_value.ptr, v->as.bytes_value.len); break;
    case SPANHOST_VALUE_ARRAY:
        OUTS(b, "[");
        for (size_t i = 0; i < v->as.array_value.count; i++) {
            if (i) OUTS(b, ",");
            raw_json(b, &v->as.array_value.items[i], depth + 1);
        }
        OUTS(b, "]");
        break;
    case SPANHOST_VALUE_KVLIST: raw_map(b, &v->as.kvlist_value, depth); break;
    default: OUTS(b, "null");
    }
}

/* pcommon.Value.AsString. */
static spanhost_str as_string(tags *t, const spanhost_value *v) {
    char tmp[DOUBLE_TEXT];
    switch (v->type) {
    case SPANHOST_VALUE_STRING: return v->as.string_value;
    case SPANHOST_VALUE_BOOL: return cstr(v->as.bool_value ? "true" : "false");
    case SPANHOST_VALUE_INT: return keep(t, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v->as.int_value));
    case SPANHOST_VALUE_DOUBLE: return keep(t, tmp, shortest_double(v->as.double_value, tmp, sizeof tmp, 0));
    case SPANHOST_VALUE_EMPTY: return cstr("");
    default: {
        jbuf b = {NULL, 0, 0, 0};
        if (v->type == SPANHOST_VALUE_BYTES) {
            out_base64(&b, v->as.bytes_value.ptr, v->as.bytes_value.len);
            if (!b.oom && b.len >= 2) { spanhost_str s = keep(t, b.data + 1, b.len - 2); free(b.data); return s; } /* unquoted */
        } else {
            raw_json(&b, v, 0);
        }
        if (b.oom) { free(b.data); t->oom = 1; return cstr(""); }
        spanhost_str s = keep(t, b.data, b.len);
        free(b.data);
        return s;
    }
    }
}

static void attrs_to_tags(tags *t, const spanhost_kv_list *l) {
    for (size_t i = 0; i < l->count; i++) tag_set(t, l->items[i].key, as_string(t, &l->items[i].value));
}

static int zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static void hex_text(char *dst, const uint8_t *id, size_t n) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) dst[2 * i] = hex[id[i] >> 4], dst[2 * i + 1] = hex[id[i] & 15];
}

/* "name|{json}|dropped" and "traceId|spanId|traceState|{json}|dropped". */
static spanhost_str with_attributes(tags *t, const char *prefix, size_t prefix_len, const spanhost_kv_list *attrs, uint32_t dropped) {
    jbuf b = {NULL, 0, 0, 0};
    char tmp[16];
    out(&b, prefix, prefix_len);
    OUTS(&b, "|");
    raw_map(&b, attrs, 0);
    out(&b, tmp, (size_t)snprintf(tmp, sizeof tmp, "|%u", dropped));
    if (b.oom) { free(b.data); t->oom = 1; return cstr(""); }
    spanhost_str s = keep(t, b.data, b.len);
    free(b.data);
    return s;
}

/* An endpoint from the tags: the IP (":" makes it IPv6) and port keys leave the tags. */
static void endpoint(jbuf *b, tags *t, const char *name, spanhost_str service, const char *ip_key, const char *port_key) {
    ztag_out *ip = tag_get(t, ip_key), *port = tag_get(t, port_key);
    spanhost_str ip_text = {NULL, 0};
    long port_value = 0;
    unsigned char parsed[16];
    int ipv6 = 0, valid = 0;
    if (ip) {
        char text[64];
        ip_text = ip->value;
        ipv6 = memchr(ip_text.ptr, ':', ip_text.len) != NULL;
        if (ip_text.len < sizeof text) {
            memcpy(text, ip_text.ptr, ip_text.len);
            text[ip_text.len] = 0;
            valid = inet_pton(ipv6 ? AF_INET6 : AF_INET, text, parsed) == 1;
        }
    }
    if (port) {
        char text[16];
        if (port->value.len && port->value.len < sizeof text) {
            memcpy(text, port->value.ptr, port->value.len);
            text[port->value.len] = 0;
            char *end;
            long v = strtol(text, &end, 10);
            if (!*end && text[0] >= '0' && text[0] <= '9' && v <= 65535) port_value = v;
        }
    }
    tag_remove(t, ip_key);
    tag_remove(t, port_key);
    if (!service.len && !valid) return;
    OUTS(b, ",\"");
    out(b, name, strlen(name));
    OUTS(b, "\":{");
    int first = 1;
    if (service.len) { OUTS(b, "\"serviceName\":"); out_view(b, service); first = 0; }
    if (valid) {
        char text[64];
        inet_ntop(ipv6 ? AF_INET6 : AF_INET, parsed, text, sizeof text);
        if (!first) OUTS(b, ",");
        out(b, ipv6 ? "\"ipv6\":" : "\"ipv4\":", 7);
        out_str(b, text, strlen(text));
        first = 0;
    }
    if (port_value) {
        char tmp[24];
        if (!first) OUTS(b, ",");
        out(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "\"port\":%ld", port_value));
    }
    OUTS(b, "}");
}

static int tag_order(const void *a, const void *b) {
    const ztag_out *x = (const ztag_out *)a, *y = (const ztag_out *)b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = n ? memcmp(x->key.ptr, y->key.ptr, n) : 0;
    return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

/* Microseconds, rounded to the nearest as zipkin-go rounds times, and at most what a reader
 * can turn back into nanoseconds. */
#define MAX_MICROS (UINT64_MAX / 1000)
static uint64_t micros(uint64_t ns) {
    uint64_t us = ns / 1000;
    return us + (ns % 1000 >= 500 && us < MAX_MICROS);
}

static int span_json(jbuf *b, tags *t, const spanhost_span *s, spanhost_str service) {
    char id[40];
    if (zero(s->trace_id, 16) || zero(s->span_id, 8)) return -1; /* the Collector refuses them */
    int wide = !zero(s->trace_id, 8);
    OUTS(b, "{\"traceId\":\"");
    hex_text(id, s->trace_id + (wide ? 0 : 8), wide ? 16 : 8);
    out(b, id, wide ? 32 : 16);
    OUTS(b, "\",\"id\":\"");
    hex_text(id, s->span_id, 8);
    out(b, id, 16);
    OUTS(b, "\"");
    if (!zero(s->parent_span_id, 8)) {
        OUTS(b, ",\"parentId\":\"");
        hex_text(id, s->parent_span_id, 8);
        out(b, id, 16);
        OUTS(b, "\"");
    }
    if (s->name.len) { OUTS(b, ",\"name\":"); out_view(b, s->name); }
    static const char *const kinds[] = {NULL, NULL, "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
    if (s->kind < 6 && kinds[s->kind]) { OUTS(b, ",\"kind\":\""); out(b, kinds[s->kind], strlen(kinds[s->kind])); OUTS(b, "\""); }
    char tmp[48];
    if (s->start_time_unix_nano >= 1000000000ull) out(b, tmp, (size_t)snprintf(tmp, sizeof tmp, ",\"timestamp\":%llu", (unsigned long long)micros(s->start_time_unix_nano)));
    if (s->end_time_unix_nano > s->start_time_unix_nano) {
        uint64_t d = s->end_time_unix_nano - s->start_time_unix_nano, start = micros(s->start_time_unix_nano);
        uint64_t us = d < 1000 ? 1 : micros(d);
        if (us > MAX_MICROS - start) us = MAX_MICROS - start; /* so start + duration stays readable */
        if (us) out(b, tmp, (size_t)snprintf(tmp, sizeof tmp, ",\"duration\":%llu", (unsigned long long)us));
    }
    endpoint(b, t, "localEndpoint", service, "net.host.ip", "net.host.port");
    ztag_out *peer = tag_get(t, "peer.service");
    spanhost_str remote = peer ? peer->value : cstr("");
    if (peer) tag_remove(t, "peer.service");
    endpoint(b, t, "remoteEndpoint", remote, "net.peer.ip", "net.peer.port");
    if (s->status_code == SPANHOST_STATUS_ERROR) tag_set(t, cstr("error"), cstr("true"));
    else tag_remove(t, "error");
    if (s->status_code == SPANHOST_STATUS_OK || s->status_code == SPANHOST_STATUS_ERROR) {
        tag_set(t, cstr("otel.status_code"), cstr(s->status_code == SPANHOST_STATUS_OK ? "Ok" : "Error"));
        if (s->status_message.len) tag_set(t, cstr("otel.status_description"), s->status_message);
    }
    if (s->events_count) {
        OUTS(b, ",\"annotations\":[");
        for (size_t i = 0; i < s->events_count; i++) {
            const spanhost_event *e = s->events[i];
            if (i) OUTS(b, ",");
            out(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "{\"timestamp\":%llu,\"value\":", (unsigned long long)micros(e->time_unix_nano)));
            if (!e->attributes.count && !e->dropped_attributes_count) out_view(b, e->name);
            else out_view(b, with_attributes(t, e->name.ptr ? e->name.ptr : "", e->name.len, &e->attributes, e->dropped_attributes_count));
            OUTS(b, "}");
        }
        OUTS(b, "]");
    }
    for (size_t i = 0; i < s->links_count; i++) {
        const spanhost_link *l = s->links[i];
        char head[64 + 8], key[32];
        size_t n = 0;
        if (!zero(l->trace_id, 16)) hex_text(head, l->trace_id, 16), n = 32;
        head[n++] = '|';
        if (!zero(l->span_id, 8)) hex_text(head + n, l->span_id, 8), n += 16;
        head[n++] = '|';
        jbuf prefix = {NULL, 0, 0, 0};
        out(&prefix, head, n);
        if (l->trace_state.len) out(&prefix, l->trace_state.ptr, l->trace_state.len);
        if (prefix.oom) { free(prefix.data); return -1; }
        spanhost_str value = with_attributes(t, prefix.data, prefix.len, &l->attributes, l->dropped_attributes_count);
        free(prefix.data);
        tag_set(t, keep(t, key, (size_t)snprintf(key, sizeof key, "otlp.link.%zu", i)), value);
    }
    if (t->count) {
        qsort(t->items, t->count, sizeof *t->items, tag_order);
        OUTS(b, ",\"tags\":{");
        for (size_t i = 0; i < t->count; i++) {
            if (i) OUTS(b, ",");
            out_view(b, t->items[i].key);
            OUTS(b, ":");
            out_view(b, t->items[i].value);
        }
        OUTS(b, "}");
    }
    OUTS(b, "}");
    return t->oom ? -1 : 0;
}

/* The resource's service name and the tags it gives every span. */
static spanhost_str service_of(tags *t, const spanhost_resource *res) {
    static const char *const fallbacks[] = {"faas.name", "k8s.deployment.name", "process.executable.name"};
    if (!res || !res->attributes.count) return cstr(NO_SERVICE_NAME);
    attrs_to_tags(t, &res->attributes);
    ztag_out *name = tag_get(t, "service.name");
    if (name) {
        spanhost_str s = name->value;
        tag_remove(t, "service.name");
        return s;
    }
    for (size_t i = 0; i < 3; i++) {
        if (!(name = tag_get(t, fallbacks[i]))) continue;
        spanhost_str s = name->value;
        tag_remove(t, fallbacks[i]);
        tag_set(t, cstr("otlp.service.name.source"), cstr(fallbacks[i]));
        return s;
    }
    return cstr(NO_SERVICE_NAME);
}

int32_t sh_encode_zipkin_json(const spanhost_batch *batch, spanhost_buffer *o) {
    jbuf b = {NULL, 0, 0, 0};
    spanhost_batch *scratch = sh_batch_new();
    if (!scratch) return -1;
    int failed = 0, first = 1;
    OUTS(&b, "[");
    for (size_t r = 0; r < batch->resource_spans_count && !failed; r++) {
        const spanhost_resource_spans *rs = batch->resource_spans[r];
        tags base = {NULL, 0, 0, scratch, 0};
        spanhost_str service = service_of(&base, rs->resource);
        for (size_t c = 0; c < rs->scope_spans_count && !failed; c++) {
            const spanhost_scope_spans *ss = rs->scope_spans[c];
            tags scope;
            if (tags_copy(&scope, &base)) { failed = 1; break; }
            if (ss->scope && ss->scope->name.len) tag_set(&scope, cstr("otel.library.name"), ss->scope->name);
            if (ss->scope && ss->scope->version.len) tag_set(&scope, cstr("otel.library.version"), ss->scope->version);
            for (size_t k = 0; k < ss->spans_count && !failed; k++) {
                const spanhost_span *s = ss->spans[k];
                tags t;
                if (tags_copy(&t, &scope)) { failed = 1; break; }
                attrs_to_tags(&t, &s->attributes);
                if (s->trace_state.len) tag_set(&t, cstr("w3c.tracestate"), s->trace_state);
                if (s->kind == SPANHOST_SPAN_KIND_INTERNAL) tag_set(&t, cstr("span.kind"), cstr("internal"));
                if (!first) OUTS(&b, ",");
                first = 0;
                failed = span_json(&b, &t, s, service) != 0 || t.oom;
            }
        }
    }
    OUTS(&b, "]");
    sh_batch_release(scratch);
    if (failed) { free(b.data); return -1; }
    return jbuf_finish(&b, o);
}
