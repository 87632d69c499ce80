/*
 * OTLP JSON (the OTLP/HTTP JSON encoding): ids as hex strings, enums as integers, 64-bit
 * integers as strings or numbers, unknown fields ignored. Keys are matched ignoring case and
 * underscores, so both lowerCamelCase and the proto field names are accepted.
 * Strings without escapes become views into the request bytes; others are unescaped into the
 * arena.
 */
#include "json_reader.h"
#include "json_writer.h"

#include <time.h>

static int jkv(jparser *j, spanhost_kv *kv);

static int jkv_array(jparser *j, spanhost_kv_list *out) {
    int is_null, first = 1, r;
    size_t cap = 0;
    out->items = NULL;
    out->count = 0;
    if (jarray_begin(j, &is_null)) return -1;
    if (is_null) return 0;
    while ((r = jarray_next(j, &first)) == 1) {
        out->items = (spanhost_kv *)grow(j, out->items, out->count, &cap, sizeof(spanhost_kv));
        if (!out->items) return -1;
        memset(&out->items[out->count], 0, sizeof(spanhost_kv));
        if (jkv(j, &out->items[out->count++])) return -1;
    }
    return r;
}

static int jvalue(jparser *j, spanhost_value *v) {
    spanhost_str key;
    int first = 1, r;
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; return 0; }
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        /* One value, one type: a later value key replaces an earlier one whole, so no member is
         * read under another's type ({"stringValue":..,"arrayValue":{}} is an empty array). */
        if (key_is(key, "stringvalue") || key_is(key, "boolvalue") || key_is(key, "intvalue") ||
            key_is(key, "doublevalue") || key_is(key, "bytesvalue") || key_is(key, "arrayvalue") ||
            key_is(key, "kvlistvalue"))
            memset(v, 0, sizeof *v);
        if (key_is(key, "stringvalue")) {
            v->type = SPANHOST_VALUE_STRING;
            if (jstring(j, &v->as.string_value)) return -1;
        } else if (key_is(key, "boolvalue")) {
            v->type = SPANHOST_VALUE_BOOL;
            if (jbool(j, &v->as.bool_value)) return -1;
        } else if (key_is(key, "intvalue")) {
            v->type = SPANHOST_VALUE_INT;
            if (jint64(j, &v->as.int_value)) return -1;
        } else if (key_is(key, "doublevalue")) {
            v->type = SPANHOST_VALUE_DOUBLE;
            if (jdouble(j, &v->as.double_value)) return -1;
        } else if (key_is(key, "bytesvalue")) {
            v->type = SPANHOST_VALUE_BYTES;
            if (jbase64(j, &v->as.bytes_value)) return -1;
        } else if (key_is(key, "arrayvalue") || key_is(key, "kvlistvalue")) {
            int is_array = key_is(key, "arrayvalue");
            spanhost_str k2;
            int first2 = 1, r2;
            v->type = is_array ? SPANHOST_VALUE_ARRAY : SPANHOST_VALUE_KVLIST;
            if (jobject_begin(j)) return -1;
            while ((r2 = jobject_next(j, &k2, &first2)) == 1) {
                if (!key_is(k2, "values")) {
                    if (jskip(j)) return -1;
                } else if (!is_array) {
                    if (jkv_array(j, &v->as.kvlist_value)) return -1;
                } else {
                    int is_null, f3 = 1, r3;
                    size_t cap = 0;
                    spanhost_value_array *a = &v->as.array_value;
                    a->items = NULL;  /* a repeated "values" key replaces the earlier one */
                    a->count = 0;
                    if (jarray_begin(j, &is_null)) return -1;
                    if (is_null) continue;
                    while ((r3 = jarray_next(j, &f3)) == 1) {
                        a->items = (spanhost_value *)grow(j, a->items, a->count, &cap, sizeof(spanhost_value));
                        if (!a->items) return -1;
                        memset(&a->items[a->count], 0, sizeof(spanhost_value));
                        if (jvalue(j, &a->items[a->count++])) return -1;
                    }
                    if (r3 < 0) return -1;
                }
            }
            if (r2 < 0) return -1;
        } else if (jskip(j)) {
            return -1;
        }
    }
    return r;
}

static int jkv(jparser *j, spanhost_kv *kv) {
    spanhost_str key;
    int first = 1, r;
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "key")) {
            if (jstring(j, &kv->key)) return -1;
        } else if (key_is(key, "value")) {
            if (jvalue(j, &kv->value)) return -1;
        } else if (jskip(j)) {
            return -1;
        }
    }
    return r;
}

static int jevent(jparser *j, spanhost_event *e) {
    spanhost_str key;
    int first = 1, r;
    e->struct_size = sizeof(*e);
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "timeunixnano")) { if (juint64(j, &e->time_unix_nano)) return -1; }
        else if (key_is(key, "name")) { if (jstring(j, &e->name)) return -1; }
        else if (key_is(key, "attributes")) { if (jkv_array(j, &e->attributes)) return -1; }
        else if (key_is(key, "droppedattributescount")) { if (juint32(j, &e->dropped_attributes_count)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int jlink(jparser *j, spanhost_link *l) {
    spanhost_str key;
    int first = 1, r;
    l->struct_size = sizeof(*l);
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "traceid")) { if (jhex_id(j, l->trace_id, 16, "link traceId must be 32 hex digits")) return -1; }
        else if (key_is(key, "spanid")) { if (jhex_id(j, l->span_id, 8, "link spanId must be 16 hex digits")) return -1; }
        else if (key_is(key, "tracestate")) { if (jstring(j, &l->trace_state)) return -1; }
        else if (key_is(key, "attributes")) { if (jkv_array(j, &l->attributes)) return -1; }
        else if (key_is(key, "droppedattributescount")) { if (juint32(j, &l->dropped_attributes_count)) return -1; }
        else if (key_is(key, "flags")) { if (juint32(j, &l->flags)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

/* Arrays of pointers to structs of `size` bytes, filled by `parse`. */
typedef int (*jitem_fn)(jparser *j, void *item);

static int jptr_array(jparser *j, void ***out, size_t *count, size_t size, jitem_fn parse) {
    int is_null, first = 1, r;
    size_t cap = 0;
    /* A key given twice ("events": [..], "events": [..]): the last one wins, as for any key. */
    *out = NULL;
    *count = 0;
    if (jarray_begin(j, &is_null)) return -1;
    if (is_null) return 0;
    while ((r = jarray_next(j, &first)) == 1) {
        *out = (void **)grow(j, *out, *count, &cap, sizeof(void *));
        void *item = *out ? sh_arena_alloc(j->batch, size) : NULL;
        if (!item) return jfail(j, "out of memory");
        (*out)[(*count)++] = item;
        if (parse(j, item)) return -1;
    }
    return r;
}

static int jevent_fn(jparser *j, void *item) { return jevent(j, (spanhost_event *)item); }
static int jlink_fn(jparser *j, void *item) { return jlink(j, (spanhost_link *)item); }

static const char *const span_kinds[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
                                          "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"};
static const char *const status_codes[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"};

static int jstatus(jparser *j, spanhost_span *s) {
    spanhost_str key;
    int first = 1, r;
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; return 0; }
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "message")) { if (jstring(j, &s->status_message)) return -1; }
        else if (key_is(key, "code")) { if (jenum(j, status_codes, 3, &s->status_code)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int jspan(jparser *j, void *item) {
    spanhost_span *s = (spanhost_span *)item;
    spanhost_str key;
    int first = 1, r;
    s->struct_size = sizeof(*s);
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "traceid")) { if (jhex_id(j, s->trace_id, 16, "traceId must be 32 hex digits")) return -1; }
        else if (key_is(key, "spanid")) { if (jhex_id(j, s->span_id, 8, "spanId must be 16 hex digits")) return -1; }
        else if (key_is(key, "parentspanid")) { if (jhex_id(j, s->parent_span_id, 8, "parentSpanId must be 16 hex digits")) return -1; }
        else if (key_is(key, "tracestate")) { if (jstring(j, &s->trace_state)) return -1; }
        else if (key_is(key, "name")) { if (jstring(j, &s->name)) return -1; }
        else if (key_is(key, "kind")) { if (jenum(j, span_kinds, 6, &s->kind)) return -1; }
        else if (key_is(key, "flags")) { if (juint32(j, &s->flags)) return -1; }
        else if (key_is(key, "starttimeunixnano")) { if (juint64(j, &s->start_time_unix_nano)) return -1; }
        else if (key_is(key, "endtimeunixnano")) { if (juint64(j, &s->end_time_unix_nano)) return -1; }
        else if (key_is(key, "attributes")) { if (jkv_array(j, &s->attributes)) return -1; }
        else if (key_is(key, "droppedattributescount")) { if (juint32(j, &s->dropped_attributes_count)) return -1; }
        else if (key_is(key, "events")) { if (jptr_array(j, (void ***)&s->events, &s->events_count, sizeof(spanhost_event), jevent_fn)) return -1; }
        else if (key_is(key, "droppedeventscount")) { if (juint32(j, &s->dropped_events_count)) return -1; }
        else if (key_is(key, "links")) { if (jptr_array(j, (void ***)&s->links, &s->links_count, sizeof(spanhost_link), jlink_fn)) return -1; }
        else if (key_is(key, "droppedlinkscount")) { if (juint32(j, &s->dropped_links_count)) return -1; }
        else if (key_is(key, "status")) { if (jstatus(j, s)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int jscope(jparser *j, spanhost_scope *sc) {
    spanhost_str key;
    int first = 1, r;
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; return 0; }
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "name")) { if (jstring(j, &sc->name)) return -1; }
        else if (key_is(key, "version")) { if (jstring(j, &sc->version)) return -1; }
        else if (key_is(key, "attributes")) { if (jkv_array(j, &sc->attributes)) return -1; }
        else if (key_is(key, "droppedattributescount")) { if (juint32(j, &sc->dropped_attributes_count)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int jscope_spans(jparser *j, void *item) {
    spanhost_scope_spans *ss = (spanhost_scope_spans *)item;
    spanhost_str key;
    int first = 1, r;
    ss->struct_size = sizeof(*ss);
    ss->scope = (spanhost_scope *)sh_arena_alloc(j->batch, sizeof(spanhost_scope));
    if (!ss->scope) return jfail(j, "out of memory");
    ss->scope->struct_size = sizeof(spanhost_scope);
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "scope")) { if (jscope(j, ss->scope)) return -1; }
        else if (key_is(key, "spans")) { if (jptr_array(j, (void ***)&ss->spans, &ss->spans_count, sizeof(spanhost_span), jspan)) return -1; }
        else if (key_is(key, "schemaurl")) { if (jstring(j, &ss->schema_url)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int jresource(jparser *j, spanhost_resource *res) {
    spanhost_str key;
    int first = 1, r;
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; return 0; }
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "attributes")) { if (jkv_array(j, &res->attributes)) return -1; }
        else if (key_is(key, "droppedattributescount")) { if (juint32(j, &res->dropped_attributes_count)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int jresource_spans(jparser *j, void *item) {
    spanhost_resource_spans *rs = (spanhost_resource_spans *)item;
    spanhost_str key;
    int first = 1, r;
    rs->struct_size = sizeof(*rs);
    rs->resource = (spanhost_resource *)sh_arena_alloc(j->batch, sizeof(spanhost_resource));
    if (!rs->resource) return jfail(j, "out of memory");
    rs->resource->struct_size = sizeof(spanhost_resource);
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "resource")) { if (jresource(j, rs->resource)) return -1; }
        else if (key_is(key, "scopespans")) { if (jptr_array(j, (void ***)&rs->scope_spans, &rs->scope_spans_count, sizeof(spanhost_scope_spans), jscope_spans)) return -1; }
        else if (key_is(key, "schemaurl")) { if (jstring(j, &rs->schema_url)) return -1; }
        else if (jskip(j)) return -1;
    }
    return r;
}

static int decode_otlp_json(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    jparser j = {(const char *)data, (const char *)data + len, (const char *)data, batch, err, err_cap, 0, 0, "OTLP JSON"};
    spanhost_str key;
    int first = 1, r;
    if (jobject_begin(&j)) return -1;
    while ((r = jobject_next(&j, &key, &first)) == 1) {
        if (key_is(key, "resourcespans")) {
            if (jptr_array(&j, (void ***)&batch->resource_spans, &batch->resource_spans_count,
                           sizeof(spanhost_resource_spans), jresource_spans))
                return -1;
        } else if (jskip(&j)) {
            return -1;
        }
    }
    if (r < 0) return -1;
    if (peek(&j) != -1) return jfail(&j, "trailing data after the JSON object");
    return 0;
}

/* Every string the request carried must be UTF-8 (proto3 `string`); checked once decoded. */
int sh_decode_otlp_json(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    if (decode_otlp_json(batch, data, len, err, err_cap)) return -1;
    /* Escapes only ever make valid UTF-8: an all-ASCII body has nothing else to check. */
    return sh_high_bits(data, len) ? sh_decode_check_utf8(batch, "OTLP JSON", err, err_cap) : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void out_u64_str(jbuf *b, uint64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "\"%llu\"", (unsigned long long)v);
    out(b, tmp, (size_t)n);
}

static void out_u32(jbuf *b, uint32_t v) {
    char tmp[16];
    int n = snprintf(tmp, sizeof tmp, "%u", v);
    out(b, tmp, (size_t)n);
}

static void out_attrs(jbuf *b, const spanhost_kv_list *l);

static void out_value(jbuf *b, const spanhost_value *v) {
    char tmp[64];
    int n;
    switch (v->type) {
    case SPANHOST_VALUE_STRING: OUTS(b, "{\"stringValue\":"); out_view(b, v->as.string_value); OUTS(b, "}"); break;
    case SPANHOST_VALUE_BOOL: if (v->as.bool_value) OUTS(b, "{\"boolValue\":true}"); else OUTS(b, "{\"boolValue\":false}"); break;
    case SPANHOST_VALUE_INT:
        n = snprintf(tmp, sizeof tmp, "{\"intValue\":\"%lld\"}", (long long)v->as.int_value);
        out(b, tmp, (size_t)n);
        break;
    case SPANHOST_VALUE_DOUBLE:
        if (isnan(v->as.double_value)) OUTS(b, "{\"doubleValue\":\"NaN\"}");
        else if (isinf(v->as.double_value)) { if (v->as.double_value > 0) OUTS(b, "{\"doubleValue\":\"Infinity\"}"); else OUTS(b, "{\"doubleValue\":\"-Infinity\"}"); }
        else { n = snprintf(tmp, sizeof tmp, "{\"doubleValue\":%.17g}", v->as.double_value); out(b, tmp, (size_t)n); }
        break;
    case SPANHOST_VALUE_BYTES: OUTS(b, "{\"bytesValue\":"); out_base64(b, v->as.bytes_value.ptr, v->as.bytes_value.len); OUTS(b, "}"); break;
    case SPANHOST_VALUE_ARRAY:
        OUTS(b, "{\"arrayValue\":{\"values\":[");
        for (size_t i = 0; i < v->as.array_value.count; i++) {
            if (i) OUTS(b, ",");
            out_value(b, &v->as.array_value.items[i]);
        }
        OUTS(b, "]}}");
        break;
    case SPANHOST_VALUE_KVLIST:
        OUTS(b, "{\"kvlistValue\":{\"values\":");
        out_attrs(b, &v->as.kvlist_value);
        OUTS(b, "}}");
        break;
    default: OUTS(b, "{}"); break;
    }
}

static void out_attrs(jbuf *b, const spanhost_kv_list *l) {
    OUTS(b, "[");
    for (size_t i = 0; i < l->count; i++) {
        if (i) OUTS(b, ",");
        OUTS(b, "{\"key\":");
        out_view(b, l->items[i].key);
        OUTS(b, ",\"value\":");
        out_value(b, &l->items[i].value);
        OUTS(b, "}");
    }
    OUTS(b, "]");
}

/* Opens the `index`-th object of an array: `{`, after a comma unless it is the first. */
static void open_item(jbuf *b, size_t index) {
    if (index) OUTS(b, ",");
    OUTS(b, "{");
}

/* Writes `,"name":` (or without the comma for the first field of an object). */
static void field(jbuf *b, int *first, const char *name) {
    if (!*first) OUTS(b, ",");
    *first = 0;
    OUTS(b, "\"");
    out(b, name, strlen(name));
    OUTS(b, "\":");
}

static void out_attrs_field(jbuf *b, int *first, const spanhost_kv_list *l, uint32_t dropped) {
    if (l->count) { field(b, first, "attributes"); out_attrs(b, l); }
    if (dropped) { field(b, first, "droppedAttributesCount"); out_u32(b, dropped); }
}

static int id_zero(const uint8_t *id, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (id[i]) return 0;
    return 1;
}

static void out_span(jbuf *b, const spanhost_span *s) {
    int f = 1;
    OUTS(b, "{");
    field(b, &f, "traceId"); out_hex(b, s->trace_id, 16);
    field(b, &f, "spanId"); out_hex(b, s->span_id, 8);
    if (s->trace_state.len) { field(b, &f, "traceState"); out_view(b, s->trace_state); }
    if (!id_zero(s->parent_span_id, 8)) { field(b, &f, "parentSpanId"); out_hex(b, s->parent_span_id, 8); }
    if (s->flags) { field(b, &f, "flags"); out_u32(b, s->flags); }
    field(b, &f, "name"); out_view(b, s->name);
    if (s->kind) { field(b, &f, "kind"); out_u32(b, s->kind); }
    field(b, &f, "startTimeUnixNano"); out_u64_str(b, s->start_time_unix_nano);
    field(b, &f, "endTimeUnixNano"); out_u64_str(b, s->end_time_unix_nano);
    out_attrs_field(b, &f, &s->attributes, s->dropped_attributes_count);
    if (s->events_count) {
        field(b, &f, "events");
        OUTS(b, "[");
        for (size_t i = 0; i < s->events_count; i++) {
            const spanhost_event *e = s->events[i];
            int ef = 1;
            open_item(b, i);
            field(b, &ef, "timeUnixNano"); out_u64_str(b, e->time_unix_nano);
            field(b, &ef, "name"); out_view(b, e->name);
            out_attrs_field(b, &ef, &e->attributes, e->dropped_attributes_count);
            OUTS(b, "}");
        }
        OUTS(b, "]");
    }
    if (s->dropped_events_count) { field(b, &f, "droppedEventsCount"); out_u32(b, s->dropped_events_count); }
    if (s->links_count) {
        field(b, &f, "links");
        OUTS(b, "[");
        for (size_t i = 0; i < s->links_count; i++) {
            const spanhost_link *l = s->links[i];
            int lf = 1;
            open_item(b, i);
            field(b, &lf, "traceId"); out_hex(b, l->trace_id, 16);
            field(b, &lf, "spanId"); out_hex(b, l->span_id, 8);
            if (l->trace_state.len) { field(b, &lf, "traceState"); out_view(b, l->trace_state); }
            out_attrs_field(b, &lf, &l->attributes, l->dropped_attributes_count);
            if (l->flags) { field(b, &lf, "flags"); out_u32(b, l->flags); }
            OUTS(b, "}");
        }
        OUTS(b, "]");
    }
    if (s->dropped_links_count) { field(b, &f, "droppedLinksCount"); out_u32(b, s->dropped_links_count); }
    field(b, &f, "status");
    {
        int sf = 1;
        OUTS(b, "{");
        if (s->status_message.len) { field(b, &sf, "message"); out_view(b, s->status_message); }
        if (s->status_code) { field(b, &sf, "code"); out_u32(b, s->status_code); }
        OUTS(b, "}");
    }
    OUTS(b, "}");
}

int32_t sh_encode_otlp_json(const spanhost_batch *batch, spanhost_buffer *o);

int32_t sh_encode_otlp_json(const spanhost_batch *batch, spanhost_buffer *o) {
    jbuf b = {NULL, 0, 0, 0};
    OUTS(&b, "{\"resourceSpans\":[");
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        int f = 1, rf = 1;
        open_item(&b, i);
        field(&b, &f, "resource");
        OUTS(&b, "{");
        out_attrs_field(&b, &rf, &rs->resource->attributes, rs->resource->dropped_attributes_count);
        OUTS(&b, "}");
        field(&b, &f, "scopeSpans");
        OUTS(&b, "[");
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            int sf = 1, scf = 1;
            open_item(&b, j);
            field(&b, &sf, "scope");
            OUTS(&b, "{");
            if (ss->scope->name.len) { field(&b, &scf, "name"); out_view(&b, ss->scope->name); }
            if (ss->scope->version.len) { field(&b, &scf, "version"); out_view(&b, ss->scope->version); }
            out_attrs_field(&b, &scf, &ss->scope->attributes, ss->scope->dropped_attributes_count);
            OUTS(&b, "}");
            field(&b, &sf, "spans");
            OUTS(&b, "[");
            for (size_t k = 0; k < ss->spans_count; k++) {
                if (k) OUTS(&b, ",");
                out_span(&b, ss->spans[k]);
            }
            OUTS(&b, "]");
            if (ss->schema_url.len) { field(&b, &sf, "schemaUrl"); out_view(&b, ss->schema_url); }
            OUTS(&b, "}");
        }
        OUTS(&b, "]");
        if (rs->schema_url.len) { field(&b, &f, "schemaUrl"); out_view(&b, rs->schema_url); }
        OUTS(&b, "}");
    }
    OUTS(&b, "]}");
    if (b.oom) {
        free(b.data);
        return -1;
    }
    o->data = (uint8_t *)b.data;
    o->len = b.len;
    return 0;
}

int32_t sh_encode_json_response(int64_t rejected, const char *message, spanhost_buffer *o);
int32_t sh_encode_json_status(int32_t code, const char *message, spanhost_buffer *o);

int32_t sh_encode_json_response(int64_t rejected, const char *message, spanhost_buffer *o) {
    jbuf b = {NULL, 0, 0, 0};
    if (rejected || message) {
        char tmp[64];
        int n = snprintf(tmp, sizeof tmp, "{\"partialSuccess\":{\"rejectedSpans\":\"%lld\"", (long long)rejected);
        out(&b, tmp, (size_t)n);
        if (message) { OUTS(&b, ",\"errorMessage\":"); out_str(&b, message, strlen(message)); }
        OUTS(&b, "}}");
    } else {
        OUTS(&b, "{}");
    }
    if (b.oom) { free(b.data); return -1; }
    o->data = (uint8_t *)b.data;
    o->len = b.len;
    return 0;
}

int32_t sh_encode_json_status(int32_t code, const char *message, spanhost_buffer *o) {
    jbuf b = {NULL, 0, 0, 0};
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "{\"code\":%d", code);
    out(&b, tmp, (size_t)n);
    if (message) { OUTS(&b, ",\"message\":"); out_str(&b, message, strlen(message)); }
    OUTS(&b, "}");
    if (b.oom) { free(b.data); return -1; }
    o->data = (uint8_t *)b.data;
    o->len = b.len;
    return 0;
}

/* --- Notifications as plain JSON --------------------------------------------------------- */

static void out_plain_object(jbuf *b, const spanhost_kv_list *l);

/* An attribute value as plain JSON (not OTLP's typed AnyValue form): notifiers talk to people
 * and chat tools, not to OTLP backends. */
static void out_plain_value(jbuf *b, const spanhost_value *v) {
    char tmp[64];
    int n;
    switch (v->type) {
    case SPANHOST_VALUE_STRING: out_view(b, v->as.string_value); break;
    case SPANHOST_VALUE_BOOL: if (v->as.bool_value) OUTS(b, "true"); else OUTS(b, "false"); break;
    case SPANHOST_VALUE_INT:
        n = snprintf(tmp, sizeof tmp, "%lld", (long long)v->as.int_value);
        out(b, tmp, (size_t)n);
        break;
    case SPANHOST_VALUE_DOUBLE:
        if (isnan(v->as.double_value) || isinf(v->as.double_value)) OUTS(b, "null");
        else {
            /* The shortest of 15 or 17 digits that reads back the same: 0.1, not 0.10000000000000001. */
            n = snprintf(tmp, sizeof tmp, "%.15g", v->as.double_value);
            if (strtod(tmp, NULL) != v->as.double_value) n = snprintf(tmp, sizeof tmp, "%.17g", v->as.double_value);
            out(b, tmp, (size_t)n);
        }
        break;
    case SPANHOST_VALUE_BYTES: out_base64(b, v->as.bytes_value.ptr, v->as.bytes_value.len); break;
    case SPANHOST_VALUE_ARRAY:
        OUTS(b, "[");
        for (size_t i = 0; i < v->as.array_value.count; i++) {
            if (i) OUTS(b, ",");
            out_plain_value(b, &v->as.array_value.items[i]);
        }
        OUTS(b, "]");
        break;
    case SPANHOST_VALUE_KVLIST: out_plain_object(b, &v->as.kvlist_value); break;
    default: OUTS(b, "null"); break;
    }
}

static void out_plain_object(jbuf *b, const spanhost_kv_list *l) {
    OUTS(b, "{");
    for (size_t i = 0; i < l->count; i++) {
        if (i) OUTS(b, ",");
        out_view(b, l->items[i].key);
        OUTS(b, ":");
        out_plain_value(b, &l->items[i].value);
    }
    OUTS(b, "}");
}

int32_t sh_encode_value_json(const spanhost_value *v, spanhost_buffer *o) {
    jbuf b = {NULL, 0, 0, 0};
    out_plain_value(&b, v);
    if (b.oom) { free(b.data); return -1; }
    o->data = (uint8_t *)b.data;
    o->len = b.len;
    return 0;
}

int32_t sh_encode_notification_json(const spanhost_notification *n, spanhost_buffer *o) {
    static const char *const severities[] = {"info", "warning", "error", "critical"};
    jbuf b = {NULL, 0, 0, 0};
    char tmp[96];
    OUTS(&b, "{\"kind\":");
    out_view(&b, n->kind);
    OUTS(&b, ",\"severity\":\"");
    const char *severity = n->severity < 4 ? severities[n->severity] : "error";
    out(&b, severity, strlen(severity));
    OUTS(&b, "\",\"source\":");
    out_view(&b, n->source);
    OUTS(&b, ",\"key\":");
    out_view(&b, n->key);
    OUTS(&b, ",\"summary\":");
    out_view(&b, n->summary);
    OUTS(&b, ",\"trace_id\":");
    if (id_zero(n->trace_id, 16)) OUTS(&b, "null");
    else out_hex(&b, n->trace_id, 16);
    time_t seconds = (time_t)(n->time_unix_nano / 1000000000ull);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    int len = snprintf(tmp, sizeof tmp, ",\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\",\"time_unix_nano\":%llu,\"count\":%llu",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                       (unsigned)(n->time_unix_nano % 1000000000ull / 1000000ull),
                       (unsigned long long)n->time_unix_nano, (unsigned long long)n->count);
    out(&b, tmp, (size_t)len);
    OUTS(&b, ",\"attributes\":");
    out_plain_object(&b, &n->attributes);
    OUTS(&b, "}");
    if (b.oom) { free(b.data); return -1; }
    o->data = (uint8_t *)b.data;
    o->len = b.len;
    return 0;
}
