/*
 * proto_reader.h -- protobuf wire-format reading for the host's decoders (OTLP, Zipkin
 * protobuf). A reader is a view of the bytes of one message. Private to CSpanhost.
 */
#ifndef SPANHOST_PROTO_READER_H
#define SPANHOST_PROTO_READER_H

#include <spanhost/spanhost.h>

#include <stdint.h>

#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5
/* The readers below run for every byte of a request: keep them in their callers. */
#define HOT static inline __attribute__((always_inline))

typedef struct reader {
    const uint8_t *p;
    const uint8_t *end;
} reader;

static inline int read_varint_slow(reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Tags, lengths and most values in OTLP fit one or two bytes: those are read inline. */
HOT int read_varint(reader *r, uint64_t *out) {
    const uint8_t *p = r->p;
    if (r->end - p >= 2) {
        if (p[0] < 0x80) {
            *out = p[0];
            r->p = p + 1;
            return 0;
        }
        if (p[1] < 0x80) {
            *out = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
            r->p = p + 2;
            return 0;
        }
    }
    return read_varint_slow(r, out);
}

/* Reads a tag; returns 0 at end of message, 1 with a field, -1 on malformed input. */
HOT int read_tag(reader *r, uint32_t *field, uint32_t *wire) {
    if (r->p >= r->end) return 0;
    uint64_t tag;
    if (read_varint(r, &tag) != 0) return -1;
    *field = (uint32_t)(tag >> 3);
    *wire = (uint32_t)(tag & 7);
    if (*field == 0) return -1;
    return 1;
}

HOT int read_len(reader *r, reader *sub) {
    uint64_t n;
    if (read_varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p)) return -1;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 0;
}

HOT int read_fixed64(reader *r, uint64_t *out) {
    if (r->end - r->p < 8) return -1;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | r->p[i];
    r->p += 8;
    *out = v;
    return 0;
}

HOT int read_fixed32(reader *r, uint32_t *out) {
    if (r->end - r->p < 4) return -1;
    *out = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 0;
}

static inline int skip_field(reader *r, uint32_t wire) {
    uint64_t v;
    reader sub;
    switch (wire) {
    case WT_VARINT: return read_varint(r, &v);
    case WT_I64: return read_fixed64(r, &v);
    case WT_LEN: return read_len(r, &sub);
    case WT_I32: {
        uint32_t x;
        return read_fixed32(r, &x);
    }
    default: return -1; /* groups are not used by OTLP */
    }
}

/* The bytes of a string or bytes field, as a view (empty: NULL). */
HOT spanhost_str as_str(reader sub) {
    spanhost_str s = {(const char *)sub.p, (size_t)(sub.end - sub.p)};
    if (s.len == 0) s.ptr = NULL;
    return s;
}

#endif
