/*
 * Jaeger Thrift (jaeger.thrift `Batch`), as Jaeger clients send it:
 * - POST /api/traces: one Batch in the binary protocol (the Jaeger collector's HTTP endpoint);
 * - UDP 6831 / 6832: the agent's `emitBatch` message, compact or binary protocol.
 * Mapped to the span model as the Collector's jaeger receiver maps it (contrib
 * pkg/translator/jaeger, jaegerthrift_to_traces.go):
 * - the process becomes the resource: service.name, its tags, `hostname` as host.name and
 *   `jaeger.version` as opencensus.exporterversion "Jaeger-<version>"; one scope, unnamed;
 * - tags become attributes with their types (binary as bytes); a later tag of the same key wins;
 *   span.kind sets the kind; `error` (bool true), otel.status_code / otel.status_description and
 *   http.status_code (with http.status_message) set the status, in that order of precedence;
 * - logs become events (timestamps in microseconds; the `event` field names them);
 * - parentSpanId, or else a reference to the same trace (CHILD_OF before FOLLOWS_FROM), is the
 *   parent; every other reference is a link with opentracing.ref_type;
 * - a span with every field zero is left out, as the Collector leaves it out.
 * Required fields of the IDL must be present; unknown fields are skipped.
 */
#include "spanhost_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_MAX_DEPTH 64

/* Thrift types, as the binary protocol numbers them (compact types are translated to these). */
enum { T_STOP = 0, T_BOOL = 2, T_BYTE = 3, T_DOUBLE = 4, T_I16 = 6, T_I32 = 8, T_I64 = 10, T_STRING = 11,
       T_STRUCT = 12, T_MAP = 13, T_SET = 14, T_LIST = 15, T_UUID = 16 };

typedef struct treader {
    const uint8_t *p, *end, *start;
    int compact;
    spanhost_batch *batch;
    char *err;
    size_t err_cap;
    int failed;
    int depth;
    int16_t last_id[T_MAX_DEPTH + 1]; /* compact: each open struct's last field id */
    int bool_in_header;               /* compact: the field header carried a bool: 0/1, or -1 */
} treader;

static int tfail(treader *t, const char *what) {
    if (!t->failed && t->err && t->err_cap)
        snprintf(t->err, t->err_cap, "invalid Jaeger Thrift at byte %ld: %s", (long)(t->p - t->start), what);
    t->failed = 1;
    return -1;
}

static int need(treader *t, size_t n) { return (size_t)(t->end - t->p) >= n ? 0 : tfail(t, "truncated"); }

static int tbyte(treader *t, uint8_t *out) {
    if (need(t, 1)) return -1;
    *out = *t->p++;
    return 0;
}

static int tvarint(treader *t, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        uint8_t b;
        if (tbyte(t, &b)) return -1;
        if (shift == 63 && b > 1) return tfail(t, "varint out of range");
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *out = v; return 0; }
    }
    return tfail(t, "varint longer than 10 bytes");
}

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* i16, i32 or i64 (width in bytes), sign-extended; compact ones are zigzag varints. */
static int tint(treader *t, int width, int64_t *out) {
    if (t->compact) {
        uint64_t z;
        if (tvarint(t, &z)) return -1;
        int64_t v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        if ((width == 2 && (v < INT16_MIN || v > INT16_MAX)) || (width == 4 && (v < INT32_MIN || v > INT32_MAX)))
            return tfail(t, "integer out of range for its type");
        *out = v;
        return 0;
    }
    if (need(t, (size_t)width)) return -1;
    uint64_t u = be(t->p, width);
    t->p += width;
    if (width == 2) *out = (int16_t)u;
    else if (width == 4) *out = (int32_t)u;
    else *out = (int64_t)u;
    return 0;
}

static int tdouble(treader *t, double *out) {
    if (need(t, 8)) return -1;
    uint64_t u = 0;
    if (t->compact) for (int i = 7; i >= 0; i--) u = u << 8 | t->p[i]; /* little-endian */
    else u = be(t->p, 8);
    t->p += 8;
    memcpy(out, &u, 8);
    return 0;
}

static int tbool(treader *t, int32_t *out) {
    if (t->bool_in_header >= 0) {
        *out = t->bool_in_header;
        t->bool_in_header = -1;
        return 0;
    }
    uint8_t b;
    if (tbyte(t, &b)) return -1;
    *out = t->compact ? b == 1 : b != 0;
    return 0;
}

/* A string or binary: a view into the input (which lives as long as the batch). */
static int tstring(treader *t, spanhost_str *out) {
    uint64_t len;
    if (t->compact) {
        if (tvarint(t, &len)) return -1;
    } else {
        int64_t n;
        if (tint(t, 4, &n)) return -1;
        if (n < 0) return tfail(t, "negative string length");
        len = (uint64_t)n;
    }
    if (len > (uint64_t)(t->end - t->p)) return tfail(t, "string longer than the data left");
    out->ptr = (const char *)t->p;
    out->len = (size_t)len;
    t->p += len;
    return 0;
}

static int compact_type(treader *t, uint8_t c, int *type) {
    static const int map[] = {T_STOP, T_BOOL, T_BOOL, T_BYTE, T_I16, T_I32, T_I64, T_DOUBLE, T_STRING,
                              T_LIST, T_SET,  T_MAP,  T_STRUCT, T_UUID};
    if (c >= sizeof map / sizeof map[0]) return tfail(t, "unknown compact type");
    *type = map[c];
    return 0;
}

static int struct_begin(treader *t) {
    if (t->depth >= T_MAX_DEPTH) return tfail(t, "structs nested too deep");
    t->last_id[++t->depth] = 0;
    return 0;
}

static void struct_end(treader *t) { t->depth--; }

/* The next field's type and id; type T_STOP at the struct's end. */
static int tfield(treader *t, int *type, int16_t *id) {
    uint8_t b;
    t->bool_in_header = -1;
    if (tbyte(t, &b)) return -1;
    if (b == 0) { *type = T_STOP; return 0; }
    if (!t->compact) {
        int64_t v;
        *type = b;
        if (tint(t, 2, &v)) return -1;
        *id = (int16_t)v;
        return 0;
    }
    uint8_t delta = b >> 4, ctype = b & 0x0f;
    if (compact_type(t, ctype, type)) return -1;
    if (*type == T_BOOL) t->bool_in_header = ctype == 1;
    if (delta) {
        *id = (int16_t)(t->last_id[t->depth] + delta);
    } else {
        int64_t v;
        if (tint(t, 2, &v)) return -1;
        *id = (int16_t)v;
    }
    t->last_id[t->depth] = *id;
    return 0;
}

/* A list or set header: element type and count (at most one element per byte left). */
static int tlist(treader *t, int *elem, size_t *count) {
    uint64_t n;
    if (t->compact) {
        uint8_t b;
        if (tbyte(t, &b)) return -1;
        if (compact_type(t, b & 0x0f, elem)) return -1;
        n = b >> 4;
        if (n == 15 && tvarint(t, &n)) return -1;
    } else {
        uint8_t b;
        int64_t v;
        if (tbyte(t, &b) || tint(t, 4, &v)) return -1;
        if (v < 0) return tfail(t, "negative list size");
        *elem = b;
        n = (uint64_t)v;
    }
    if (n > (uint64_t)(t->end - t->p)) return tfail(t, "list longer than the data left");
    *count = (size_t)n;
    return 0;
}

static int tskip(treader *t, int type);

static int tskip_n(treader *t, int type, uint64_t n) {
    if (n > (uint64_t)(t->end - t->p)) return tfail(t, "collection longer than the data left");
    for (uint64_t i = 0; i < n; i++)
        if (tskip(t, type)) return -1;
    return 0;
}

/* Skips a value of `type` (fields this decoder does not know). */
static int tskip(treader *t, int type) {
    int64_t i;
    double d;
    int32_t b;
    spanhost_str s;
    switch (type) {
    case T_BOOL: return tbool(t, &b);
    case T_BYTE: return need(t, 1) ? -1 : (t->p++, 0);
    case T_DOUBLE: return tdouble(t, &d);
    case T_I16: return tint(t, 2, &i);
    case T_I32: return tint(t, 4, &i);
    case T_I64: return tint(t, 8, &i);
    case T_STRING: return tstring(t, &s);
    case T_UUID: return need(t, 16) ? -1 : (t->p += 16, 0);
    case T_STRUCT: {
        int ft;
        int16_t id;
        if (struct_begin(t)) return -1;
        for (;;) {
            if (tfield(t, &ft, &id)) return -1;
            if (ft == T_STOP) break;
            if (tskip(t, ft)) return -1;
        }
        struct_end(t);
        return 0;
    }
    case T_LIST:
    case T_SET: {
        int elem;
        size_t n;
        if (t->depth >= T_MAX_DEPTH) return tfail(t, "values nested too deep");
        if (tlist(t, &elem, &n)) return -1;
        t->depth++;
        int rc = tskip_n(t, elem, n);
        t->depth--;
        return rc;
    }
    case T_MAP: {
        uint64_t n;
        int kt = T_STOP, vt = T_STOP;
        if (t->depth >= T_MAX_DEPTH) return tfail(t, "values nested too deep");
        if (t->compact) {
            if (tvarint(t, &n)) return -1;
            if (n) {
                uint8_t b;
                if (tbyte(t, &b) || compact_type(t, b >> 4, &kt) || compact_type(t, b & 0x0f, &vt)) return -1;
            }
        } else {
            uint8_t k, v;
            int64_t size;
            if (tbyte(t, &k) || tbyte(t, &v) || tint(t, 4, &size)) return -1;
            if (size < 0) return tfail(t, "negative map size");
            kt = k, vt = v, n = (uint64_t)size;
        }
        if (n > (uint64_t)(t->end - t->p)) return tfail(t, "map longer than the data left");
        t->depth++;
        for (uint64_t k = 0; k < n; k++)
            if (tskip(t, kt) || tskip(t, vt)) { t->depth--; return -1; }
        t->depth--;
        return 0;
    }
    default: return tfail(t, "unknown field type");
    }
}

/* Inside a field loop: a known field of another type than the IDL's is skipped, as the
 * generated Thrift code skips it. */
#define EXPECT(type_wanted) \
    if (ft != (type_wanted)) { if (tskip(t, ft)) return -1; continue; }

static void *alloc(treader *t, size_t size) {
    void *p = sh_arena_alloc(t->batch, size ? size : 1);
    if (!p) tfail(t, "out of memory");
    return p;
}

static spanhost_str lit(const char *s) {
    spanhost_str r = {s, strlen(s)};
    return r;
}

static int same(spanhost_str a, const char *b) { return a.len == strlen(b) && !memcmp(a.ptr, b, a.len); }

/* --- Attributes, with the Collector's map semantics ------------------------------------- */

static spanhost_kv *find(spanhost_kv_list *l, const char *key) {
    for (size_t i = 0; i < l->count; i++)
        if (same(l->items[i].key, key)) return &l->items[i];
    return NULL;
}

static void remove_kv(spanhost_kv_list *l, spanhost_kv *kv) {
    size_t at = (size_t)(kv - l->items);
    memmove(kv, kv + 1, (l->count - at - 1) * sizeof *kv);
    l->count--;
}

/* A key given twice keeps its first place and its last value (pcommon.Map.Put*). */
static int dedupe(treader *t, spanhost_kv_list *l) {
    return sh_dedupe_by_key(t->batch, l->items, &l->count, sizeof(spanhost_kv)) ? tfail(t, "out of memory") : 0;
}

/* --- The jaeger.thrift structs ---------------------------------------------------------- */

enum { TAG_STRING = 0, TAG_DOUBLE = 1, TAG_BOOL = 2, TAG_LONG = 3, TAG_BINARY = 4 };

static int read_tag(treader *t, spanhost_kv *kv) {
    int ft, has_key = 0, has_type = 0;
    int16_t id;
    int64_t vtype = 0, vlong = 0;
    double vdouble = 0;
    int32_t vbool = 0;
    spanhost_str vstr = {"", 0}, vbinary = {"", 0};
    if (struct_begin(t)) return -1;
    for (;;) {
        if (tfield(t, &ft, &id)) return -1;
        if (ft == T_STOP) break;
        switch (id) {
        case 1: EXPECT(T_STRING) if (tstring(t, &kv->key)) return -1; has_key = 1; break;
        case 2: EXPECT(T_I32) if (tint(t, 4, &vtype)) return -1; has_type = 1; break;
        case 3: EXPECT(T_STRING) if (tstring(t, &vstr)) return -1; break;
        case 4: EXPECT(T_DOUBLE) if (tdouble(t, &vdouble)) return -1; break;
        case 5: EXPECT(T_BOOL) if (tbool(t, &vbool)) return -1; break;
        case 6: EXPECT(T_I64) if (tint(t, 8, &vlong)) return -1; break;
        case 7: EXPECT(T_STRING) if (tstring(t, &vbinary)) return -1; break;
        default: if (tskip(t, ft)) return -1;
        }
    }
    struct_end(t);
    if (!has_key || !has_type) return tfail(t, "Tag.key and Tag.vType are required");
    spanhost_value *v = &kv->value;
    memset(v, 0, sizeof *v);
    switch (vtype) {
    case TAG_STRING: v->type = SPANHOST_VALUE_STRING; v->as.string_value = vstr; break;
    case TAG_DOUBLE: v->type = SPANHOST_VALUE_DOUBLE; v->as.double_value = vdouble; break;
    case TAG_BOOL: v->type = SPANHOST_VALUE_BOOL; v->as.bool_value = vbool; break;
    case TAG_LONG: v->type = SPANHOST_VALUE_INT; v->as.int_value = vlong; break;
    case TAG_BINARY:
        v->type = SPANHOST_VALUE_BYTES;
        v->as.bytes_value.ptr = (const uint8_t *)vbinary.ptr;
        v->as.bytes_value.len = vbinary.len;
        break;
    default: v->type = SPANHOST_VALUE_STRING; v->as.string_value = lit("<Unknown Jaeger TagType \"<UNSET>\">");
    }
    return 0;
}

/* list<Tag> into attributes (a list given again replaces the first, as in generated code). */
static int read_tags(treader *t, int ft, spanhost_kv_list *into, int *present) {
    int elem;
    size_t n;
    if (ft != T_LIST) return tskip(t, ft);
    if (tlist(t, &elem, &n)) return -1;
    if (elem != T_STRUCT) return n ? tfail(t, "a list of tags must hold structs") : 0;
    into->items = alloc(t, n * sizeof(spanhost_kv));
    if (!into->items) return -1;
    into->count = 0;
    for (size_t i = 0; i < n; i++, into->count++)
        if (read_tag(t, &into->items[i])) return -1;
    if (present) *present = 1;
    return dedupe(t, into);
}

typedef struct jref {
    int64_t type, trace_low, trace_high, span_id;
} jref;

typedef struct jspan {
    int64_t trace_low, trace_high, span_id, parent_id, flags, start, duration;
    spanhost_str name;
    jref *refs;
    size_t refs_count;
    spanhost_kv_list tags;
    spanhost_event **events;
    size_t events_count;
    int lists_present; /* references, tags or logs were sent (even empty): not a blank span */
} jspan;

static int read_ref(treader *t, jref *r) {
    int ft, seen = 0;
    int16_t id;
    if (struct_begin(t)) return -1;
    for (;;) {
        if (tfield(t, &ft, &id)) return -1;
        if (ft == T_STOP) break;
        switch (id) {
        case 1: EXPECT(T_I32) if (tint(t, 4, &r->type)) return -1; seen |= 1; break;
        case 2: EXPECT(T_I64) if (tint(t, 8, &r->trace_low)) return -1; seen |= 2; break;
        case 3: EXPECT(T_I64) if (tint(t, 8, &r->trace_high)) return -1; seen |= 4; break;
        case 4: EXPECT(T_I64) if (tint(t, 8, &r->span_id)) return -1; seen |= 8; break;
        default: if (tskip(t, ft)) return -1;
        }
    }
    struct_end(t);
    return seen == 15 ? 0 : tfail(t, "SpanRef.refType, traceIdLow, traceIdHigh and spanId are required");
}

static int read_log(treader *t, spanhost_event *e) {
    int ft, has_time = 0, has_fields = 0;
    int16_t id;
    int64_t ts = 0;
    e->struct_size = sizeof *e;
    if (struct_begin(t)) return -1;
    for (;;) {
        if (tfield(t, &ft, &id)) return -1;
        if (ft == T_STOP) break;
        switch (id) {
        case 1: EXPECT(T_I64) if (tint(t, 8, &ts)) return -1; has_time = 1; break;
        case 2: if (read_tags(t, ft, &e->attributes, &has_fields)) return -1; break;
        default: if (tskip(t, ft)) return -1;
        }
    }
    struct_end(t);
    if (!has_time || !has_fields) return tfail(t, "Log.timestamp and Log.fields are required");
    e->time_unix_nano = (uint64_t)ts * 1000u;
    spanhost_kv *name = find(&e->attributes, "event");
    if (name) {
        if (name->value.type == SPANHOST_VALUE_STRING) e->name = name->value.as.string_value;
        remove_kv(&e->attributes, name);
    }
    return 0;
}

static int read_span(treader *t, jspan *s) {
    int ft, seen = 0, elem;
    int16_t id;
    size_t n;
    if (struct_begin(t)) return -1;
    for (;;) {
        if (tfield(t, &ft, &id)) return -1;
        if (ft == T_STOP) break;
        switch (id) {
        case 1: EXPECT(T_I64) if (tint(t, 8, &s->trace_low)) return -1; seen |= 1; break;
        case 2: EXPECT(T_I64) if (tint(t, 8, &s->trace_high)) return -1; seen |= 2; break;
        case 3: EXPECT(T_I64) if (tint(t, 8, &s->span_id)) return -1; seen |= 4; break;
        case 4: EXPECT(T_I64) if (tint(t, 8, &s->parent_id)) return -1; seen |= 8; break;
        case 5: EXPECT(T_STRING) if (tstring(t, &s->name)) return -1; seen |= 16; break;
        case 6:
            EXPECT(T_LIST)
            if (tlist(t, &elem, &n)) return -1;
            if (elem != T_STRUCT && n) return tfail(t, "Span.references must hold structs");
            s->refs = alloc(t, n * sizeof(jref));
            if (!s->refs) return -1;
            for (s->refs_count = 0; s->refs_count < n; s->refs_count++)
                if (read_ref(t, &s->refs[s->refs_count])) return -1;
            s->lists_present = 1;
            break;
        case 7: EXPECT(T_I32) if (tint(t, 4, &s->flags)) return -1; seen |= 32; break;
        case 8: EXPECT(T_I64) if (tint(t, 8, &s->start)) return -1; seen |= 64; break;
        case 9: EXPECT(T_I64) if (tint(t, 8, &s->duration)) return -1; seen |= 128; break;
        case 10: if (read_tags(t, ft, &s->tags, &s->lists_present)) return -1; break;
        case 11:
            EXPECT(T_LIST)
            if (tlist(t, &elem, &n)) return -1;
            if (elem != T_STRUCT && n) return tfail(t, "Span.logs must hold structs");
            s->events = alloc(t, n * sizeof(void *));
            if (!s->events) return -1;
            for (s->events_count = 0; s->events_count < n; s->events_count++) {
                spanhost_event *e = alloc(t, sizeof *e);
                if (!e || read_log(t, e)) return -1;
                s->events[s->events_count] = e;
            }
            s->lists_present = 1;
            break;
        default: if (tskip(t, ft)) return -1;
        }
    }
    struct_end(t);
    if (seen != 255)
        return tfail(t, "Span.traceIdLow, traceIdHigh, spanId, parentSpanId, operationName, flags, startTime and duration are required");
    return 0;
}

/* --- Mapping ---------------------------------------------------------------------------- */

static void put_id(uint8_t *dst, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) dst[i] = (uint8_t)v;
}

static int is_blank(const jspan *s) {
    return !s->trace_low && !s->trace_high && !s->span_id && !s->parent_id && !s->name.len && !s->flags && !s->start &&
           !s->duration && !s->lists_present;
}

/* The parent: parentSpanId, or a reference to the same trace (CHILD_OF before FOLLOWS_FROM). */
static int64_t parent_of(const jspan *s) {
    if (s->parent_id) return s->parent_id;
    const jref *follows = NULL;
    for (size_t i = 0; i < s->refs_count; i++) {
        const jref *r = &s->refs[i];
        if (r->trace_high != s->trace_high || r->trace_low != s->trace_low) continue;
        if (r->type == 0) return r->span_id;
        if (!follows && r->type == 1) follows = r;
    }
    return follows ? follows->span_id : 0;
}

static int upper_is(spanhost_str s, const char *want) {
    if (s.len != strlen(want)) return 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c >= 'a' && c <= 'z') c = (char)(c - 32);
        if (c != want[i]) return 0;
    }
    return 1;
}

/* A value as pcommon's Value.Str() reads it: the string, or empty for other types. */
static spanhost_str str_of(const spanhost_value *v) {
    spanhost_str empty = {"", 0};
    return v->type == SPANHOST_VALUE_STRING ? v->as.string_value : empty;
}

/* otel.status_description, removed; NULL when absent. */
static int take_description(spanhost_kv_list *attrs, spanhost_str *out) {
    spanhost_kv *kv = find(attrs, "otel.status_description");
    if (!kv) return 0;
    *out = str_of(&kv->value);
    remove_kv(attrs, kv);
    return 1;
}

/* An HTTP status code from an int or decimal-string attribute; 0 when it is neither. */
static int http_code(const spanhost_value *v, int64_t *out) {
    if (v->type == SPANHOST_VALUE_INT) { *out = v->as.int_value; return 1; }
    return v->type == SPANHOST_VALUE_STRING && sh_parse_decimal(v->as.string_value.ptr, v->as.string_value.len, out);
}

static void set_status(spanhost_span *span) {
    spanhost_kv_list *attrs = &span->attributes;
    spanhost_kv *kv;
    uint32_t code = SPANHOST_STATUS_UNSET;
    spanhost_str message = {"", 0};
    int exists = 0;
    if ((kv = find(attrs, "error")) && kv->value.type == SPANHOST_VALUE_BOOL && kv->value.as.bool_value) {
        code = SPANHOST_STATUS_ERROR;
        remove_kv(attrs, kv);
        exists = 1;
        if (!take_description(attrs, &message) && (kv = find(attrs, "http.status_message"))) message = str_of(&kv->value);
    }
    if ((kv = find(attrs, "otel.status_code"))) {
        if (!exists) {
            exists = 1;
            spanhost_str s = str_of(&kv->value);
            if (upper_is(s, "OK")) code = SPANHOST_STATUS_OK;
            else if (upper_is(s, "ERROR")) code = SPANHOST_STATUS_ERROR;
            take_description(attrs, &message);
            kv = find(attrs, "otel.status_code");
        }
        remove_kv(attrs, kv);
    } else if (!exists && (kv = find(attrs, "http.status_code"))) {
        int64_t http;
        if (http_code(&kv->value, &http)) {
            uint32_t from_http = SPANHOST_STATUS_ERROR;
            if (http >= 400 && http < 500 && span->kind == SPANHOST_SPAN_KIND_SERVER) from_http = SPANHOST_STATUS_UNSET;
            else if (!(http >= 400 && http < 500 && span->kind == SPANHOST_SPAN_KIND_CLIENT) && http >= 100 && http < 399)
                from_http = SPANHOST_STATUS_UNSET; /* the Collector's bound: 399 is an error */
            if (from_http != SPANHOST_STATUS_UNSET) exists = 1, code = from_http;
            if ((kv = find(attrs, "http.status_message"))) message = str_of(&kv->value);
        }
    }
    if (exists) {
        span->status_code = code;
        span->status_message = message;
    }
}

static uint32_t kind_of(spanhost_str s) {
    if (same(s, "client")) return SPANHOST_SPAN_KIND_CLIENT;
    if (same(s, "server")) return SPANHOST_SPAN_KIND_SERVER;
    if (same(s, "producer")) return SPANHOST_SPAN_KIND_PRODUCER;
    if (same(s, "consumer")) return SPANHOST_SPAN_KIND_CONSUMER;
    if (same(s, "internal")) return SPANHOST_SPAN_KIND_INTERNAL;
    return SPANHOST_SPAN_KIND_UNSPECIFIED;
}

static spanhost_span *map_span(treader *t, jspan *j) {
    spanhost_span *s = alloc(t, sizeof *s);
    if (!s) return NULL;
    s->struct_size = sizeof *s;
    put_id(s->trace_id, (uint64_t)j->trace_high);
    put_id(s->trace_id + 8, (uint64_t)j->trace_low);
    put_id(s->span_id, (uint64_t)j->span_id);
    s->name = j->name;
    /* Go's arithmetic: microseconds times 1000 and the sum wrap as uint64. */
    s->start_time_unix_nano = (uint64_t)j->start * 1000u;
    s->end_time_unix_nano = ((uint64_t)j->start + (uint64_t)j->duration) * 1000u;
    int64_t parent = parent_of(j);
    if (parent) put_id(s->parent_span_id, (uint64_t)parent);
    s->attributes = j->tags;
    spanhost_kv *kind = find(&s->attributes, "span.kind");
    if (kind) {
        s->kind = kind_of(str_of(&kind->value));
        remove_kv(&s->attributes, kind);
    }
    set_status(s);
    s->events = j->events;
    s->events_count = j->events_count;

    int only_parent = j->refs_count == 1 && j->refs[0].span_id == parent && j->refs[0].type == 0;
    if (j->refs_count && !only_parent) {
        s->links = alloc(t, j->refs_count * sizeof(void *));
        if (!s->links) return NULL;
        for (size_t i = 0; i < j->refs_count; i++) {
            const jref *r = &j->refs[i];
            if (r->span_id == parent && r->type == 0) continue;
            spanhost_link *l = alloc(t, sizeof *l);
            spanhost_kv *attr = alloc(t, sizeof *attr);
            if (!l || !attr) return NULL;
            l->struct_size = sizeof *l;
            put_id(l->trace_id, (uint64_t)r->trace_high);
            put_id(l->trace_id + 8, (uint64_t)r->trace_low);
            put_id(l->span_id, (uint64_t)r->span_id);
            attr->key = lit("opentracing.ref_type");
            attr->value.type = SPANHOST_VALUE_STRING;
            attr->value.as.string_value = lit(r->type == 0 ? "child_of" : "follows_from");
            l->attributes.items = attr;
            l->attributes.count = 1;
            s->links[s->links_count++] = l;
        }
    }
    return s;
}

/* Process: serviceName and tags into the resource's attributes. */
static int read_process(treader *t, spanhost_resource *res) {
    int ft, has_service = 0, has_tags = 0;
    int16_t id;
    spanhost_str service = {"", 0};
    spanhost_kv_list tags = {NULL, 0};
    if (struct_begin(t)) return -1;
    for (;;) {
        if (tfield(t, &ft, &id)) return -1;
        if (ft == T_STOP) break;
        switch (id) {
        case 1: EXPECT(T_STRING) if (tstring(t, &service)) return -1; has_service = 1; break;
        case 2: if (read_tags(t, ft, &tags, &has_tags)) return -1; break;
        default: if (tskip(t, ft)) return -1;
        }
    }
    struct_end(t);
    if (!has_service) return tfail(t, "Process.serviceName is required");
    if (!service.len && !has_tags) return 0;
    /* service.name first, the tags after it (a tag of that name wins), then two renames. */
    spanhost_kv_list *attrs = &res->attributes;
    attrs->items = alloc(t, (tags.count + 2) * sizeof(spanhost_kv));
    if (!attrs->items) return -1;
    if (service.len) {
        attrs->items[0].key = lit("service.name");
        attrs->items[0].value.type = SPANHOST_VALUE_STRING;
        attrs->items[0].value.as.string_value = service;
        attrs->count = 1;
    }
    if (tags.count) memcpy(attrs->items + attrs->count, tags.items, tags.count * sizeof(spanhost_kv));
    attrs->count += tags.count;
    if (dedupe(t, attrs)) return -1;
    spanhost_kv *hostname = find(attrs, "hostname");
    if (hostname && !find(attrs, "host.name")) {
        spanhost_value v = hostname->value;
        remove_kv(attrs, hostname);
        attrs->items[attrs->count].key = lit("host.name");
        attrs->items[attrs->count++].value = v;
    }
    spanhost_kv *version = find(attrs, "jaeger.version");
    if (version && !find(attrs, "opencensus.exporterversion")) {
        spanhost_str v = str_of(&version->value);
        char *text = alloc(t, v.len + 7);
        if (!text) return -1;
        memcpy(text, "Jaeger-", 7);
        if (v.len) memcpy(text + 7, v.ptr, v.len);
        remove_kv(attrs, version);
        spanhost_kv *kv = &attrs->items[attrs->count++];
        kv->key = lit("opencensus.exporterversion");
        kv->value.type = SPANHOST_VALUE_STRING;
        kv->value.as.string_value.ptr = text;
        kv->value.as.string_value.len = v.len + 7;
    }
    return 0;
}

/* Batch: the process and the spans, into the batch's one resource and one scope. */
static int read_batch(treader *t) {
    int ft, elem, has_process = 0, has_spans = 0;
    int16_t id;
    size_t n = 0;
    jspan *spans = NULL;
    spanhost_resource *res = alloc(t, sizeof *res);
    if (!res) return -1;
    res->struct_size = sizeof *res;
    if (struct_begin(t)) return -1;
    for (;;) {
        if (tfield(t, &ft, &id)) return -1;
        if (ft == T_STOP) break;
        switch (id) {
        case 1:
            EXPECT(T_STRUCT)
            memset(res, 0, sizeof *res);
            res->struct_size = sizeof *res;
            if (read_process(t, res)) return -1;
            has_process = 1;
            break;
        case 2:
            EXPECT(T_LIST)
            if (tlist(t, &elem, &n)) return -1;
            if (elem != T_STRUCT && n) return tfail(t, "Batch.spans must hold structs");
            spans = alloc(t, n * sizeof(jspan));
            if (!spans) return -1;
            for (size_t i = 0; i < n; i++)
                if (read_span(t, &spans[i])) return -1;
            has_spans = 1;
            break;
        default: if (tskip(t, ft)) return -1;
        }
    }
    struct_end(t);
    if (!has_process || !has_spans) return tfail(t, "Batch.process and Batch.spans are required");

    spanhost_batch *b = t->batch;
    spanhost_resource_spans *rs = alloc(t, sizeof *rs);
    b->resource_spans = alloc(t, sizeof(void *));
    if (!rs || !b->resource_spans) return -1;
    rs->struct_size = sizeof *rs;
    rs->resource = res;
    b->resource_spans[0] = rs;
    b->resource_spans_count = 1;
    if (!n) return 0;
    spanhost_scope_spans *ss = alloc(t, sizeof *ss);
    spanhost_scope *scope = alloc(t, sizeof *scope);
    rs->scope_spans = alloc(t, sizeof(void *));
    if (!ss || !scope || !rs->scope_spans) return -1;
    scope->struct_size = sizeof *scope;
    ss->struct_size = sizeof *ss;
    ss->scope = scope;
    ss->spans = alloc(t, n * sizeof(void *));
    if (!ss->spans) return -1;
    rs->scope_spans[0] = ss;
    rs->scope_spans_count = 1;
    for (size_t i = 0; i < n; i++) {
        if (is_blank(&spans[i])) continue;
        spanhost_span *s = map_span(t, &spans[i]);
        if (!s) return -1;
        ss->spans[ss->spans_count++] = s;
    }
    return 0;
}

/* The agent's message: "emitBatch", a call or oneway, whose argument 1 is the Batch. */
static int read_agent_message(treader *t) {
    spanhost_str name;
    int type;
    int64_t seq;
    if (t->compact) {
        uint8_t id, vt;
        uint64_t seqid;
        if (tbyte(t, &id) || tbyte(t, &vt)) return -1;
        if (id != 0x82 || (vt & 0x1f) != 1) return tfail(t, "not a compact-protocol message (the agent's UDP port 6831 takes TCompactProtocol)");
        type = vt >> 5;
        if (tvarint(t, &seqid) || tstring(t, &name)) return -1;
    } else {
        int64_t v;
        if (tint(t, 4, &v)) return -1;
        if (v < 0) {
            if (((uint64_t)v & 0xffff0000u) != 0x80010000u) return tfail(t, "unknown binary-protocol version");
            type = (int)(v & 0xff);
            if (tstring(t, &name) || tint(t, 4, &seq)) return -1;
        } else {
            uint8_t b;
            t->p -= 4; /* an old, non-strict message: the name comes first */
            if (tstring(t, &name) || tbyte(t, &b) || tint(t, 4, &seq)) return -1;
            type = b;
        }
    }
    if (same(name, "emitZipkinBatch")) return tfail(t, "emitZipkinBatch (Zipkin Thrift spans) is not supported; send Jaeger spans with emitBatch");
    if (!same(name, "emitBatch")) return tfail(t, "unknown agent method; the agent takes emitBatch");
    if (type != 1 && type != 4) return tfail(t, "emitBatch must be a call or a oneway message");
    int ft, found = 0;
    int16_t id;
    if (struct_begin(t)) return -1;
    for (;;) {
        if (tfield(t, &ft, &id)) return -1;
        if (ft == T_STOP) break;
        if (id == 1 && ft == T_STRUCT && !found) {
            if (read_batch(t)) return -1;
            found = 1;
        } else if (tskip(t, ft)) {
            return -1;
        }
    }
    struct_end(t);
    return found ? 0 : tfail(t, "emitBatch carries no batch");
}

int sh_decode_jaeger_thrift(spanhost_batch *batch, const uint8_t *data, size_t len, uint32_t form, char *err, size_t err_cap) {
    treader t;
    memset(&t, 0, sizeof t);
    t.p = t.start = data;
    t.end = data + len;
    t.batch = batch;
    t.err = err;
    t.err_cap = err_cap;
    t.bool_in_header = -1;
    t.compact = form == SH_JAEGER_AGENT_COMPACT;
    int rc = form == SH_JAEGER_BATCH_BINARY ? read_batch(&t) : read_agent_message(&t);
    if (rc) return -1;
    if (t.p != t.end) return tfail(&t, "data after the end of the message");
    return sh_high_bits(data, len) ? sh_decode_check_utf8(batch, "Jaeger Thrift", err, err_cap) : 0;
}
