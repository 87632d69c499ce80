/*
 * json_reader.h -- a small JSON reader for the host's decoders (OTLP JSON, Zipkin JSON).
 * Values are read in place: strings without escapes become views into the input, others are
 * unescaped into the batch arena. Private to CSpanhost.
 */
#ifndef SPANHOST_JSON_READER_H
#define SPANHOST_JSON_READER_H

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
    const char *format; /* named in error messages, e.g. "OTLP JSON" */
} jparser;

static inline int jfail(jparser *j, const char *what) {
    if (!j->failed && j->err && j->err_cap)
        snprintf(j->err, j->err_cap, "invalid %s at byte %ld: %s", j->format, (long)(j->p - j->start), what);
    j->failed = 1;
    return -1;
}

static inline void ws(jparser *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static inline int peek(jparser *j) {
    ws(j);
    return j->p < j->end ? (unsigned char)*j->p : -1;
}

static inline int expect(jparser *j, char c) {
    if (peek(j) != c) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return jfail(j, msg);
    }
    j->p++;
    return 0;
}

static inline int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static inline size_t put_utf8(char *o, uint32_t cp) {
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

static inline int read_hex4(const char *p, uint32_t *out) {
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
/* Consumes a JSON null if one comes next; 1 if it did. */
static inline int jtake_null(jparser *j) {
    if (peek(j) == 'n' && j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) {
        j->p += 4;
        return 1;
    }
    return 0;
}

static inline int jstring(jparser *j, spanhost_str *out) {
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

/* A string, or null (an empty view): what senders write for an absent optional string. */
static inline int jstring_or_null(jparser *j, spanhost_str *out) {
    if (jtake_null(j)) {
        out->ptr = NULL;
        out->len = 0;
        return 0;
    }
    return jstring(j, out);
}

static inline int jskip(jparser *j);

static inline int jskip_container(jparser *j, char open, char close) {
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

static inline int jskip(jparser *j) {
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
static inline int jnumber_text(jparser *j, char *buf, size_t cap, int *was_null) {
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

static inline int jint64(jparser *j, int64_t *out) {
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
        /* Converting a double outside int64 (or infinity, "1e999") is undefined: refuse it. */
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return jfail(j, "integer out of range");
        v = (long long)d;
    } else if (*e || errno) {
        return jfail(j, "expected an integer");
    }
    *out = v;
    return 0;
}

static inline int juint64(jparser *j, uint64_t *out) {
    char buf[40];
    int null;
    if (jnumber_text(j, buf, sizeof buf, &null)) return -1;
    if (null) { *out = 0; return 0; }
    char *e;
    errno = 0;
    if (buf[0] == '-') return jfail(j, "expected an unsigned integer");
    unsigned long long v = strtoull(buf, &e, 10);
    if (*e == '.' || *e == 'e' || *e == 'E') { /* 3.0 or 1e3, as jint64 takes them */
        double d = strtod(buf, &e);
        if (*e || d != floor(d)) return jfail(j, "expected an unsigned integer");
        if (!(d >= 0 && d < 18446744073709551616.0)) return jfail(j, "integer out of range");
        v = (unsigned long long)d;
    } else if (*e || errno) {
        return jfail(j, "expected an unsigned integer");
    }
    *out = v;
    return 0;
}

static inline int juint32(jparser *j, uint32_t *out) {
    uint64_t v;
    if (juint64(j, &v)) return -1;
    if (v > 0xFFFFFFFFu) return jfail(j, "integer out of range");
    *out = (uint32_t)v;
    return 0;
}

/* An enum: its number, or its name from `names` (index = value), as the Collector's OTLP/JSON
 * reader takes both ("kind": 2 or "kind": "SPAN_KIND_SERVER"). */
static inline int jenum(jparser *j, const char *const *names, size_t count, uint32_t *out) {
    if (peek(j) == '"') {
        const char *at = j->p;
        spanhost_str s;
        if (jstring(j, &s)) return -1;
        for (size_t i = 0; i < count; i++)
            if (strlen(names[i]) == s.len && !memcmp(names[i], s.ptr, s.len)) {
                *out = (uint32_t)i;
                return 0;
            }
        j->p = at; /* a number written as a string */
    }
    return juint32(j, out);
}

static inline int jdouble(jparser *j, double *out) {
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

static inline int jbool(jparser *j, int32_t *out) {
    ws(j);
    if (j->end - j->p >= 4 && !memcmp(j->p, "true", 4)) { j->p += 4; *out = 1; return 0; }
    if (j->end - j->p >= 5 && !memcmp(j->p, "false", 5)) { j->p += 5; *out = 0; return 0; }
    return jfail(j, "expected true or false");
}

static inline int jhex_id(jparser *j, uint8_t *dst, size_t size, const char *what) {
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

static inline int b64val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

static inline int jbase64(jparser *j, spanhost_bytes *out) {
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
static inline int key_is(spanhost_str k, const char *want) {
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
static inline int jobject_begin(jparser *j) {
    if (++j->depth > MAX_DEPTH) return jfail(j, "nested too deeply");
    return expect(j, '{');
}

/* Returns 1 with a key (and the ':' consumed), 0 at the end, -1 on error. */
static inline int jobject_next(jparser *j, spanhost_str *key, int *first) {
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
static inline int jarray_begin(jparser *j, int *is_null) {
    ws(j);
    *is_null = 0;
    if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) { j->p += 4; *is_null = 1; return 0; }
    if (++j->depth > MAX_DEPTH) return jfail(j, "nested too deeply");
    return expect(j, '[');
}

static inline int jarray_next(jparser *j, int *first) {
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
static inline void *grow(jparser *j, void *items, size_t count, size_t *cap, size_t item) {
    if (count < *cap) return items;
    /* More items than the capacity they were counted against: never copy past the block. */
    if (count > *cap) { jfail(j, "malformed input: an array was given twice"); return NULL; }
    size_t ncap = *cap ? *cap * 2 : 4;
    void *n = sh_arena_alloc(j->batch, ncap * item);
    if (!n) { jfail(j, "out of memory"); return NULL; }
    if (count) memcpy(n, items, count * item);
    *cap = ncap;
    return n;
}

#endif
