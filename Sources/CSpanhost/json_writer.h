/*
 * json_writer.h -- a growing buffer and the JSON pieces the host's encoders write (OTLP JSON,
 * Zipkin JSON, notifications). Strings are escaped and always valid UTF-8. Private to CSpanhost.
 */
#ifndef SPANHOST_JSON_WRITER_H
#define SPANHOST_JSON_WRITER_H

#include "spanhost_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jbuf {
    char *data;
    size_t len;
    size_t cap;
    int oom;
} jbuf;

static inline void reserve(jbuf *b, size_t extra) {
    if (b->oom || b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *n = (char *)realloc(b->data, cap);
    if (!n) { b->oom = 1; return; }
    b->data = n;
    b->cap = cap;
}

static inline void out(jbuf *b, const char *s, size_t n) {
    if (!n) return; /* nothing to copy, and a fresh buffer has no memory yet */
    reserve(b, n);
    if (b->oom) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

#define OUTS(b, lit) out((b), (lit), sizeof(lit) - 1)

static inline void out_str(jbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    reserve(b, n + 2);
    out(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            /* Every JSON written is UTF-8: a byte that starts no valid sequence becomes U+FFFD. */
            size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (want <= n - i && sh_utf8_valid_prefix(s + i, want) == want) { i += want - 1; continue; }
            out(b, s + run, i - run);
            run = i + 1;
            out(b, "\xEF\xBF\xBD", 3);
            continue;
        }
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

static inline void out_view(jbuf *b, spanhost_str s) { out_str(b, s.ptr ? s.ptr : "", s.len); }

static inline void out_hex(jbuf *b, const uint8_t *id, size_t n) {
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



static inline void out_base64(jbuf *b, const uint8_t *p, size_t n) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out(b, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        char q[4] = {tbl[v >> 18 & 63], tbl[v >> 12 & 63], i + 1 < n ? tbl[v >> 6 & 63] : '=', i + 2 < n ? tbl[v & 63] : '='};
        out(b, q, 4);
    }
    out(b, "\"", 1);
}

/* The buffer handed over as a host buffer; -1 (and nothing kept) when it ran out of memory. */
static inline int32_t jbuf_finish(jbuf *b, spanhost_buffer *o) {
    if (b->oom) { free(b->data); return -1; }
    o->data = (uint8_t *)b->data;
    o->len = b->len;
    return 0;
}

#endif
