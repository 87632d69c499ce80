/* Encoding dispatch, gzip (zlib) and file hashing (OpenSSL). */
#include "spanhost_core.h"

#include <errno.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int32_t sh_encode_otlp_proto(const spanhost_batch *batch, spanhost_buffer *out);
int32_t sh_encode_otlp_json(const spanhost_batch *batch, spanhost_buffer *out);
int32_t sh_encode_zipkin_json(const spanhost_batch *batch, spanhost_buffer *out);
int32_t sh_encode_proto_response(int64_t rejected, const char *message, spanhost_buffer *out);
int32_t sh_encode_proto_status(int32_t code, const char *message, spanhost_buffer *out);
int32_t sh_encode_json_response(int64_t rejected, const char *message, spanhost_buffer *out);
int32_t sh_encode_json_status(int32_t code, const char *message, spanhost_buffer *out);

int32_t sh_encode_batch(const spanhost_batch *batch, uint32_t encoding, spanhost_buffer *out) {
    out->data = NULL;
    out->len = 0;
    switch (encoding) {
    case SPANHOST_ENCODING_OTLP_PROTO: return sh_encode_otlp_proto(batch, out);
    case SPANHOST_ENCODING_OTLP_JSON: return sh_encode_otlp_json(batch, out);
    case SPANHOST_ENCODING_ZIPKIN_JSON: return sh_encode_zipkin_json(batch, out);
    default: return -1;
    }
}

int32_t sh_encode_export_response(uint32_t encoding, int64_t rejected, const char *message, spanhost_buffer *out) {
    return encoding == SPANHOST_ENCODING_OTLP_JSON ? sh_encode_json_response(rejected, message, out)
                                                   : sh_encode_proto_response(rejected, message, out);
}

int32_t sh_encode_rpc_status(uint32_t encoding, int32_t code, const char *message, spanhost_buffer *out) {
    return encoding == SPANHOST_ENCODING_OTLP_JSON ? sh_encode_json_status(code, message, out)
                                                   : sh_encode_proto_status(code, message, out);
}

void sh_buffer_free(spanhost_buffer *buffer) {
    if (!buffer) return;
    free(buffer->data);
    buffer->data = NULL;
    buffer->len = 0;
}

int sh_gunzip(const uint8_t *data, size_t len, size_t limit, uint8_t **out, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) return SH_GUNZIP_CORRUPT; /* +32: gzip or zlib header */
    size_t cap = len * 4 < 65536 ? 65536 : len * 4;
    if (cap > limit + 1) cap = limit + 1;
    uint8_t *buf = (uint8_t *)malloc(cap);
    if (!buf) { inflateEnd(&z); return SH_GUNZIP_CORRUPT; }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    size_t produced = 0;
    int rc = Z_OK;
    for (;;) {
        if (produced == cap) {
            if (cap > limit) { rc = Z_BUF_ERROR; break; } /* already past the limit */
            size_t ncap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
            uint8_t *n = (uint8_t *)realloc(buf, ncap);
            if (!n) { rc = Z_MEM_ERROR; break; }
            buf = n;
            cap = ncap;
        }
        z.next_out = buf + produced;
        z.avail_out = (uInt)(cap - produced);
        rc = inflate(&z, Z_NO_FLUSH);
        produced = cap - z.avail_out;
        if (rc == Z_STREAM_END) {
            /* Concatenated gzip members are allowed: continue with the next one. */
            if (z.avail_in > 0) { inflateReset(&z); continue; }
            break;
        }
        if (rc != Z_OK) break;
        if (produced > limit) break;
        if (z.avail_in == 0 && z.avail_out > 0) { rc = Z_DATA_ERROR; break; } /* truncated */
    }
    inflateEnd(&z);
    if (produced > limit) { free(buf); return SH_GUNZIP_TOO_LARGE; }
    if (rc != Z_STREAM_END) { free(buf); return SH_GUNZIP_CORRUPT; }
    *out = buf;
    *out_len = produced;
    return SH_GUNZIP_OK;
}

uint32_t sh_crc32_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b) {
    return (uint32_t)crc32_combine(crc_a, crc_b, (z_off_t)len_b);
}

uint32_t sh_crc32(uint32_t crc, const void *data, size_t len) {
    const Bytef *p = (const Bytef *)data;
    while (len > 0) { /* zlib takes uInt lengths */
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;
        crc = (uint32_t)crc32(crc, p, n);
        p += n;
        len -= n;
    }
    return crc;
}

int32_t sh_gzip(const uint8_t *data, size_t len, spanhost_buffer *out) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t cap = deflateBound(&z, (uLong)len) + 32;
    out->data = (uint8_t *)malloc(cap);
    if (!out->data) { deflateEnd(&z); return -1; }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = out->data;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    out->len = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) { sh_buffer_free(out); return -1; }
    return 0;
}

int sh_sha256_file(const char *path, char out_hex[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    unsigned char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    ok = ok && !ferror(f);
    unsigned char md[32];
    unsigned int mdlen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (!ok) return -1;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out_hex[2 * i] = hex[md[i] >> 4];
        out_hex[2 * i + 1] = hex[md[i] & 15];
    }
    out_hex[64] = 0;
    return 0;
}

void sh_release_free_memory(void) {
    sh_pool_release_cached();
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

int sh_parse_decimal(const char *text, size_t len, int64_t *out) {
    char buf[24];
    if (!len || len >= sizeof buf) return 0;
    memcpy(buf, text, len);
    buf[len] = 0;
    if (buf[0] != '-' && buf[0] != '+' && (buf[0] < '0' || buf[0] > '9')) return 0;
    char *end;
    errno = 0;
    long long n = strtoll(buf, &end, 10);
    if (*end || errno) return 0;
    *out = n;
    return 1;
}
