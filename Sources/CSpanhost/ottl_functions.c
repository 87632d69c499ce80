/*
 * The converters of the Collector's OTTL (pkg/ottl/ottlfuncs) that take and give plain values,
 * built into the engine. They are registered like the functions plugins add (library
 * "builtin"), so expressions call them the same way and a wrong argument count or type is
 * refused when an expression is compiled.
 *
 * A string result points at a buffer of the calling thread; the engine copies it into the
 * batch before the next call on that thread.
 */
#include "spanhost_core.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The calling thread's result buffer, grown to at least `size` bytes; NULL when out of memory. */
static char *result_buffer(size_t size) {
    static __thread char *buffer;
    static __thread size_t capacity;
    if (size > capacity) {
        char *grown = (char *)realloc(buffer, size);
        if (!grown) return NULL;
        buffer = grown;
        capacity = size;
    }
    return buffer ? buffer : (buffer = (char *)malloc(capacity = 64));
}

static int32_t fail(spanhost_status *status, const char *message) {
    snprintf(status->message, status->message_cap, "%s", message);
    return SPANHOST_PERMANENT;
}

/* ASCII letters only: other characters pass unchanged. */
static int32_t change_case(spanhost_str s, spanhost_str *out, spanhost_status *status, int upper) {
    char *buf = result_buffer(s.len + 1);
    if (!buf) return fail(status, "out of memory");
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        buf[i] = upper ? (c >= 'a' && c <= 'z' ? (char)(c - 32) : c) : (c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
    }
    out->ptr = buf;
    out->len = s.len;
    return SPANHOST_OK;
}

static int32_t to_lower_case(spanhost_str s, spanhost_str *out, spanhost_status *status) { return change_case(s, out, status, 0); }
static int32_t to_upper_case(spanhost_str s, spanhost_str *out, spanhost_status *status) { return change_case(s, out, status, 1); }

static int32_t has_prefix(spanhost_str s, spanhost_str prefix, int32_t *out, spanhost_status *status) {
    (void)status;
    *out = s.len >= prefix.len && (prefix.len == 0 || !memcmp(s.ptr, prefix.ptr, prefix.len));
    return SPANHOST_OK;
}

static int32_t has_suffix(spanhost_str s, spanhost_str suffix, int32_t *out, spanhost_status *status) {
    (void)status;
    *out = s.len >= suffix.len && (suffix.len == 0 || !memcmp(s.ptr + s.len - suffix.len, suffix.ptr, suffix.len));
    return SPANHOST_OK;
}

/* Substring(target, start, length): the Collector refuses a negative start, a length below 1
 * and a range past the end. */
static int32_t substring(spanhost_str s, int64_t start, int64_t length, spanhost_str *out, spanhost_status *status) {
    if (start < 0) return fail(status, "Substring: start cannot be negative");
    if (length <= 0) return fail(status, "Substring: length must be at least 1");
    if ((uint64_t)start > s.len || (uint64_t)length > s.len - (uint64_t)start) return fail(status, "Substring: the range is past the end of the string");
    out->ptr = s.ptr + start;
    out->len = (size_t)length;
    return SPANHOST_OK;
}

/* The digest of `s` in lowercase hex, as the Collector's SHA1, SHA256, SHA512 and MD5 give it. */
static int32_t digest(const EVP_MD *md, spanhost_str s, spanhost_str *out, spanhost_status *status) {
    unsigned char sum[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(s.ptr ? s.ptr : "", s.len, sum, &len, md, NULL) != 1) return fail(status, "the digest failed");
    char *buf = result_buffer(2 * (size_t)len + 1);
    if (!buf) return fail(status, "out of memory");
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < len; i++) {
        buf[2 * i] = hex[sum[i] >> 4];
        buf[2 * i + 1] = hex[sum[i] & 15];
    }
    out->ptr = buf;
    out->len = 2 * (size_t)len;
    return SPANHOST_OK;
}

static int32_t sha1(spanhost_str s, spanhost_str *out, spanhost_status *status) { return digest(EVP_sha1(), s, out, status); }
static int32_t sha256(spanhost_str s, spanhost_str *out, spanhost_status *status) { return digest(EVP_sha256(), s, out, status); }
static int32_t sha512(spanhost_str s, spanhost_str *out, spanhost_status *status) { return digest(EVP_sha512(), s, out, status); }
static int32_t md5(spanhost_str s, spanhost_str *out, spanhost_status *status) { return digest(EVP_md5(), s, out, status); }

/* FNV-1a, 64 bits, as a signed integer (the Collector's FNV). */
static int32_t fnv(spanhost_str s, int64_t *out, spanhost_status *status) {
    (void)status;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < s.len; i++) h = (h ^ (uint8_t)s.ptr[i]) * 0x100000001b3ull;
    *out = (int64_t)h;
    return SPANHOST_OK;
}

static const uint32_t one_string[] = {SPANHOST_ARG_STRING};
static const uint32_t two_strings[] = {SPANHOST_ARG_STRING, SPANHOST_ARG_STRING};
static const uint32_t string_int_int[] = {SPANHOST_ARG_STRING, SPANHOST_ARG_INT, SPANHOST_ARG_INT};

#define FN(name, result, args, fn, doc) \
    {sizeof(spanhost_function), name, result, sizeof(args) / sizeof(args[0]), args, (void (*)(void))fn, doc}

static const spanhost_function builtins[] = {
    FN("ToLowerCase", SPANHOST_ARG_STRING, one_string, to_lower_case, "the string with ASCII letters in lower case"),
    FN("ToUpperCase", SPANHOST_ARG_STRING, one_string, to_upper_case, "the string with ASCII letters in upper case"),
    FN("HasPrefix", SPANHOST_ARG_BOOL, two_strings, has_prefix, "whether the string starts with the prefix"),
    FN("HasSuffix", SPANHOST_ARG_BOOL, two_strings, has_suffix, "whether the string ends with the suffix"),
    FN("Substring", SPANHOST_ARG_STRING, string_int_int, substring, "length bytes from start"),
    FN("SHA1", SPANHOST_ARG_STRING, one_string, sha1, "SHA-1 of the string, in hex"),
    FN("SHA256", SPANHOST_ARG_STRING, one_string, sha256, "SHA-256 of the string, in hex"),
    FN("SHA512", SPANHOST_ARG_STRING, one_string, sha512, "SHA-512 of the string, in hex"),
    FN("MD5", SPANHOST_ARG_STRING, one_string, md5, "MD5 of the string, in hex"),
    FN("FNV", SPANHOST_ARG_INT, one_string, fnv, "FNV-1a (64 bits) of the string"),
};

void sh_register_builtin_functions(void) {
    char err[256];
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (sh_function_register(&builtins[i], "builtin", err, sizeof err) != 0) abort(); /* a mistake in the table above */
}
