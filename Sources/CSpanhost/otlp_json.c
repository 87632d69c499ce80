/*
 * OTLP JSON (the OTLP/HTTP JSON encoding): ids as hex strings, enums as integers, 64-bit
 * integers as strings or numbers, unknown fields ignored. Keys are matched ignoring case and
 * underscores, so both lowerCamelCase and the proto field names are accepted.
 * Strings without escapes become views into the request bytes; others are unescaped into the
 * arena.
 */
#include "spanhost_core.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct jparser {
    const char *p;
    const char *end;
    const char *start;
    spanhost_batch *batch;
    char *err;
    size_t err_cap;
    int failed;
    int depth;
} jparser;

static int jfail(jparser *j, const char *what) {
    if (!j->failed && j->err && j->err_cap)
        snprintf(j->err, j->err_cap, "invalid OTLP JSON at byte %ld: %s", (long)(j->p - j->start), what);
    j->failed = 1;
    return -1;
}

static void ws(jparser *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static int peek(jparser *j) {
    ws(j);
    return j->p < j->end ? (unsigned char)*j->p : -1;
}

static int expect(jparser *j, char c) {
    if (peek(j) != c) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return jfail(j, msg);
    }
    j->p++;
    return 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int read_hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0) return -1;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return 0;
}

/* Parses a JSON string. Without escapes the result is a view into the input. */
static int jstring(jparser *j, spanhost_str *out) {
    if (expect(j, '"')) return -1;
    const char *s = j->p;
    int escaped = 0;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\') {
            escaped = 1;
            j->p++;
        } else if ((unsigned char)*j->p < 0x20) {
            return jfail(j, "control character in string");
        }
        j->p++;
    }
    if (j->p >= j->end) return jfail(j, "unterminated string");
    const char *e = j->p++;
    if (!escaped) {
        out->ptr = e > s ? s : NULL;
        out->len = (size_t)(e - s);
        return 0;
    }
    char *buf = (char *)sh_arena_alloc(j->batch, (size_t)(e - s));
    if (!buf) return jfail(j, "out of memory");
    size_t n = 0;
    for (const char *q = s; q < e; q++) {
        if (*q != '\\') { buf[n++] = *q; continue; }
        q++;
        switch (*q) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (e - q < 5 || read_hex4(q + 1, &cp)) return jfail(j, "bad \\u escape");
            q += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && e - q >= 7 && q[1] == '\\' && q[2] == 'u' &&
                read_hex4(q + 3, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                q += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* lone surrogate */
            }
            n += put_utf8(buf + n, cp); /* never longer than the 6-byte escape it replaces */
            break;
        }
        default: return jfail(j, "bad escape");
        }
    }
    out->ptr = buf;
    out->len = n;
    return 0;
}

static int jskip(jparser *j);

static int jskip_container(jparser *j, char open, char close) {
    if (++j->depth > MAX_DEPTH) return jfail(j, "nested too deeply");
    j->p++;
    if (peek(j) == close) { j->p++; j->depth--; return 0; }
    for (;;) {
        if (open == '{') {
            spanhost_str k;
            if (jstring(j, &k) || expect(j, ':')) return -1;
        }
        if (jskip(j)) return -1;
        int c = peek(j);
        if (c == ',') { j->p++; continue; }
        if (c == close) { j->p++; j->depth--; return 0; }
        return jfail(j, "expected ',' or end of container");
    }
}

static int jskip(jparser *j) {
    int c = peek(j);
    spanhost_str s;
    switch (c) {
    case '{': return jskip_container(j, '{', '}');
    case '[': return jskip_container(j, '[', ']');
    case '"': return jstring(j, &s);
    default: {
        const char *b = j->p;
        while (j->p < j->end && (strchr("+-.0123456789eE", *j->p) || (*j->p >= 'a' && *j->p <= 'z'))) j->p++;
        size_t n = (size_t)(j->p - b);
        if ((n == 4 && !memcmp(b, "true", 4)) || (n == 5 && !memcmp(b, "false", 5)) ||
            (n == 4 && !memcmp(b, "null", 4)))
            return 0;
        if (n > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9'))) return 0;
        return jfail(j, "unexpected value");
    }
    }
}

/* Reads a number or a numeric string as raw text (for 64-bit integers and doubles). */
static int jnumber_text(jparser *j, char *buf, size_t cap, int *was_null) {
    int c = peek(j);
    *was_null = 0;
    const char *b;
    size_t n;
    if (c == '"') {
        spanhost_str s;
        if (jstring(j, &s)) return -1;
        b = s.ptr;
        n = s.len;
    } else {
        b = j->p;
        while (j->p < j->end && (strchr("+-.0123456789eE", *j->p) || (*j->p >= 'a' && *j->p <= 'z'))) j->p++;
        n = (size_t)(j->p - b);
        if (n == 4 && !memcmp(b, "null", 4)) { *was_null = 1; return 0; }
    }
    if (n == 0 || n >= cap) return jfail(j, "expected a number");
    memcpy(buf, b, n);
    buf[n] = 0;
    return 0;
}

static int jint64(jparser *j, int64_t *out) {
    char buf[40];
    int null;
    if (jnumber_text(j, buf, sizeof buf, &null)) return -1;
    if (null) { *out = 0; return 0; }
    char *e;
    errno = 0;
    long long v = strtoll(buf, &e, 10);
    if (*e == '.' || *e == 'e' || *e == 'E') { /* 3.0 or 1e3 are integers written as doubles */
        double d = strtod(buf, &e);
        if (*e || d != floor(d)) return jfail(j, "expected an integer");
        v = (long long)d;
    } else if (*e || errno) {
        return jfail(j, "expected an integer");
    }
    *out = v;
    return 0;
}

static int juint64(jparser *j, uint64_t *out) {
    char buf[40];
    int null;
    if (jnumber_text(j, buf, sizeof buf, &null)) return -1;
    if (null) { *out = 0; return 0; }
    char *e;
    errno = 0;
    if (buf[0] == '-') return jfail(j, "expected an unsigned integer");
    unsigned long long v = strtoull(buf, &e, 10);
    if (*e || errno) return jfail(j, "expected an unsigned integer");
    *out = v;
    return 0;
}

static int juint32(jparser *j, uint32_t *out) {
    uint64_t v;
    if (juint64(j, &v)) return -1;
    if (v > 0xFFFFFFFFu) return jfail(j, "integer out of range");
    *out = (uint32_t)v;
    return 0;
}

static int jdouble(jparser *j, double *out) {
    char buf[64];
    int null;
    if (jnumber_text(j, buf, sizeof buf, &null)) return -1;
    if (null) { *out = 0; return 0; }
    if (!strcmp(buf, "NaN")) { *out = NAN; return 0; }
    if (!strcmp(buf, "Infinity")) { *out = INFINITY; return 0; }
    if (!strcmp(buf, "-Infinity")) { *out = -INFINITY; return 0; }
    char *e;
    *out = strtod(buf, &e);
    if (*e) return jfail(j, "expected a number");
    return 0;
}

static int jbool(jparser *j, int32_t *out) {
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "true", 4)) { j->p += 4; *out = 1; return 0; }
    if (j->end - j->p >= 5 && !memcmp(j->p, "false", 5)) { j->p += 5; *out = 0; return 0; }
    return jfail(j, "expected true or false");
}

static int jhex_id(jparser *j, uint8_t *dst, size_t size, const char *what) {
    spanhost_str s;
    if (jstring(j, &s)) return -1;
    if (s.len == 0) return 0;
    if (s.len != size * 2) return jfail(j, what);
    for (size_t i = 0; i < size; i++) {
        int hi = hexval((unsigned char)s.ptr[2 * i]), lo = hexval((unsigned char)s.ptr[2 * i + 1]);
        if (hi < 0 || lo < 0) return jfail(j, what);
        dst[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int b64val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

static int jbase64(jparser *j, spanhost_bytes *out) {
    spanhost_str s;
    if (jstring(j, &s)) return -1;
    uint8_t *buf = (uint8_t *)sh_arena_alloc(j->batch, s.len / 4 * 3 + 3);
    if (!buf) return jfail(j, "out of memory");
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '=') break;
        int v = b64val((unsigned char)s.ptr[i]);
        if (v < 0) return jfail(j, "invalid base64 in bytesValue");
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    out->ptr = buf;
    out->len = n;
    return 0;
}

/* Key comparison ignoring ASCII case and underscores: "traceId" == "trace_id" == "traceid". */
static int key_is(spanhost_str k, const char *want) {
    size_t i = 0;
    for (const char *w = want; *w; w++) {
        while (i < k.len && k.ptr[i] == '_') i++;
        if (i >= k.len) return 0;
        char c = k.ptr[i++];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != *w) return 0;
    }
    while (i < k.len && k.ptr[i] == '_') i++;
    return i == k.len;
}

/* Object iteration: call jobject_begin, then jobject_next until it returns 0. */
static int jobject_begin(jparser *j) {
    if (++j->depth > MAX_DEPTH) return jfail(j, "nested too deeply");
    return expect(j, '{');
}

/* Returns 1 with a key (and the ':' consumed), 0 at the end, -1 on error. */
static int jobject_next(jparser *j, spanhost_str *key, int *first) {
    int c = peek(j);
    if (c == '}') { j->p++; j->depth--; return 0; }
    if (!*first) {
        if (c != ',') return jfail(j, "expected ',' or '}'");
        j->p++;
    }
    *first = 0;
    if (jstring(j, key) || expect(j, ':')) return -1;
    return 1;
}

/* Array iteration, same protocol. null is read as an empty array. */
static int jarray_begin(jparser *j, int *is_null) {
    ws(j);
    *is_null = 0;
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; *is_null = 1; return 0; }
    if (++j->depth > MAX_DEPTH) return jfail(j, "nested too deeply");
    return expect(j, '[');
}

static int jarray_next(jparser *j, int *first) {
    int c = peek(j);
    if (c == ']') { j->p++; j->depth--; return 0; }
    if (!*first) {
        if (c != ',') return jfail(j, "expected ',' or ']'");
        j->p++;
    }
    *first = 0;
    return 1;
}

/* Growable arrays in the arena: capacity doubles, the old block is simply abandoned. */
static void *grow(jparser *j, void *items, size_t count, size_t *cap, size_t item) {
    if (count < *cap) return items;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *n = sh_arena_alloc(j->batch, ncap * item);
    if (!n) { jfail(j, "out of memory"); return NULL; }
    if (count) memcpy(n, items, count * item);
    *cap = ncap;
    return n;
}

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

static int jstatus(jparser *j, spanhost_span *s) {
    spanhost_str key;
    int first = 1, r;
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; return 0; }
    if (jobject_begin(j)) return -1;
    while ((r = jobject_next(j, &key, &first)) == 1) {
        if (key_is(key, "message")) { if (jstring(j, &s->status_message)) return -1; }
        else if (key_is(key, "code")) { if (juint32(j, &s->status_code)) return -1; }
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
        else if (key_is(key, "kind")) { if (juint32(j, &s->kind)) return -1; }
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

int sh_decode_otlp_json(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    jparser j = {(const char *)data, (const char *)data + len, (const char *)data, batch, err, err_cap, 0, 0};
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

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct jbuf {
    char *data;
    size_t len;
    size_t cap;
    int oom;
} jbuf;

static void reserve(jbuf *b, size_t extra) {
    if (b->oom || b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *n = (char *)realloc(b->data, cap);
    if (!n) { b->oom = 1; return; }
    b->data = n;
    b->cap = cap;
}

static void out(jbuf *b, const char *s, size_t n) {
    reserve(b, n);
    if (b->oom) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

#define OUTS(b, lit) out((b), (lit), sizeof(lit) - 1)

static void out_str(jbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    reserve(b, n + 2);
    out(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"') out(b, "\\\"", 2);
        else if (c == '\\') out(b, "\\\\", 2);
        else if (c == '\n') out(b, "\\n", 2);
        else if (c == '\r') out(b, "\\r", 2);
        else if (c == '\t') out(b, "\\t", 2);
        else out(b, esc, 6);
    }
    out(b, s + run, n - run);
    out(b, "\"", 1);
}

static void out_view(jbuf *b, spanhost_str s) { out_str(b, s.ptr ? s.ptr : "", s.len); }

static void out_hex(jbuf *b, const uint8_t *id, size_t n) {
    static const char hex[] = "0123456789abcdef";
    char tmp[40];
    tmp[0] = '"';
    for (size_t i = 0; i < n; i++) {
        tmp[1 + 2 * i] = hex[id[i] >> 4];
        tmp[2 + 2 * i] = hex[id[i] & 15];
    }
    tmp[1 + 2 * n] = '"';
    out(b, tmp, 2 + 2 * n);
}

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

static void out_base64(jbuf *b, const uint8_t *p, size_t n) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out(b, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        char q[4] = {tbl[v >> 18 & 63], tbl[v >> 12 & 63], i + 1 < n ? tbl[v >> 6 & 63] : '=', i + 2 < n ? tbl[v & 63] : '='};
        out(b, q, 4);
    }
    out(b, "\"", 1);
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
            out(b, ",{" + (i ? 0 : 1), i ? 2 : 1);
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
            out(b, ",{" + (i ? 0 : 1), i ? 2 : 1);
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
        out(&b, ",{" + (i ? 0 : 1), i ? 2 : 1);
        field(&b, &f, "resource");
        OUTS(&b, "{");
        out_attrs_field(&b, &rf, &rs->resource->attributes, rs->resource->dropped_attributes_count);
        OUTS(&b, "}");
        field(&b, &f, "scopeSpans");
        OUTS(&b, "[");
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            int sf = 1, scf = 1;
            out(&b, ",{" + (j ? 0 : 1), j ? 2 : 1);
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
