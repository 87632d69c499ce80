/*
 * Checks on a whole batch, walked once:
 *   - UTF-8: every string field (names, keys, string values, trace state, status message,
 *     scope name and version, schema URLs) must be valid UTF-8, as proto3 `string` requires.
 *     The decoders run this last and refuse the request, naming the field.
 *   - Structure: every value's type is one of SPANHOST_VALUE_* and its union member is what
 *     that type says; every struct pointer is set where the header says "never NULL"; every
 *     pointer and count lies inside memory the batch may point at (its arena, its adopted
 *     blocks, the request bytes, a loaded image's static data or kept expression literals).
 *     The fuzz targets run it after every decode; debug builds after every decode and processor.
 */
#define _GNU_SOURCE 1 /* dladdr */
#include "spanhost_core.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* Deeper than any decoder accepts (64 levels of AnyValue), so only a corrupt batch reaches it. */
#define VALIDATE_MAX_DEPTH 200
/* No single string in a batch comes near this: a request body is capped far below it. */
#define VALIDATE_MAX_LEN ((size_t)1 << 31)
#define TRAIL_MAX 12

typedef struct trail_step {
    const char *field;
    long index; /* -1: not an array element */
} trail_step;

typedef struct walker {
    const spanhost_batch *batch;
    int structure;
    const char *input;
    size_t input_len;
    const char *problem;
    /* The path to the failing field, innermost first; built only on failure. */
    trail_step trail[TRAIL_MAX];
    int steps;
} walker;

/* Appends one step to the failing field's path and passes the failure up. */
static int trail(walker *w, const char *field, long index) {
    if (w->steps < TRAIL_MAX) {
        w->trail[w->steps].field = field;
        w->trail[w->steps].index = index;
        w->steps++;
    }
    return -1;
}

static int fail(walker *w, const char *problem, const char *field) {
    w->problem = problem;
    return trail(w, field, -1);
}

size_t sh_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *start = (const unsigned char *)s, *p = start, *end = p + n;
    while (p < end) {
        /* Eight ASCII bytes at a time: what almost every span name and value is. */
        while (end - p >= 8) {
            uint64_t chunk;
            memcpy(&chunk, p, 8);
            if (chunk & 0x8080808080808080ull) break;
            p += 8;
        }
        if (p >= end) break;
        unsigned c = *p;
        if (c < 0x80) { p++; continue; }
        size_t need;
        unsigned min;
        if (c >= 0xC2 && c <= 0xDF) { need = 1; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; min = 0x10000; }
        else break;
        if ((size_t)(end - p) <= need) break;
        unsigned cp = c & (0x3F >> need);
        size_t i;
        for (i = 1; i <= need && (p[i] & 0xC0) == 0x80; i++) cp = cp << 6 | (p[i] & 0x3F);
        if (i <= need || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) break;
        p += need + 1;
    }
    return (size_t)(p - start);
}

int sh_utf8_valid(const char *s, size_t n) { return sh_utf8_valid_prefix(s, n) == n; }

size_t sh_utf8_repair(const char *in, size_t n, char *out) {
    size_t used = 0, at = 0;
    while (at < n) {
        size_t valid = sh_utf8_valid_prefix(in + at, n - at);
        memcpy(out + used, in + at, valid);
        used += valid;
        at += valid;
        if (at < n) {
            memcpy(out + used, "\xEF\xBF\xBD", 3);
            used += 3;
            at++;
        }
    }
    return used;
}

/* Memory a batch may point at: [ptr, ptr+len) inside one region. */
static int may_point_at(walker *w, const void *ptr, size_t len) {
    const char *p = (const char *)ptr;
    if (w->input && p >= w->input && len <= w->input_len && (size_t)(p - w->input) <= w->input_len - len) return 1;
    if (sh_arena_contains(w->batch, ptr, len)) return 1;
    if (sh_expr_literal_contains(ptr, len)) return 1;
    /* String literals of the host or a plugin (Zipkin's attribute keys, for one). */
    Dl_info info;
    if (dladdr(ptr, &info) && info.dli_fbase) {
        Dl_info last;
        return len == 0 || (dladdr(p + len - 1, &last) && last.dli_fbase == info.dli_fbase);
    }
    return 0;
}

static int check_block(walker *w, const void *ptr, size_t count, size_t size, const char *field) {
    if (count == 0) return 0;
    if (!ptr) return fail(w, "has a count but no items", field);
    if (count > VALIDATE_MAX_LEN / size) return fail(w, "has an impossible count", field);
    if (w->structure && !may_point_at(w, ptr, count * size)) return fail(w, "points outside the batch", field);
    return 0;
}

static int check_str(walker *w, spanhost_str s, const char *field) {
    if (s.len == 0) return 0;
    if (s.len >= VALIDATE_MAX_LEN) return fail(w, "has an impossible length", field);
    if (!s.ptr) return fail(w, "has a length but no text", field);
    if (w->structure && !may_point_at(w, s.ptr, s.len)) return fail(w, "points outside the batch", field);
    if (sh_high_bits(s.ptr, s.len) && !sh_utf8_valid(s.ptr, s.len)) return fail(w, "is not valid UTF-8", field);
    return 0;
}

static int check_kvs(walker *w, const spanhost_kv_list *l, int depth);

static int check_value(walker *w, const spanhost_value *v, int depth) {
    if (depth > VALIDATE_MAX_DEPTH) return fail(w, "is nested too deeply", "value");
    switch (v->type) {
    case SPANHOST_VALUE_EMPTY:
    case SPANHOST_VALUE_INT:
    case SPANHOST_VALUE_DOUBLE:
        return 0;
    case SPANHOST_VALUE_BOOL:
        return v->as.bool_value == 0 || v->as.bool_value == 1 ? 0 : fail(w, "is a bool other than 0 or 1", "value");
    case SPANHOST_VALUE_STRING:
        return check_str(w, v->as.string_value, "value");
    case SPANHOST_VALUE_BYTES:
        if (v->as.bytes_value.len >= VALIDATE_MAX_LEN) return fail(w, "has an impossible length", "value");
        return check_block(w, v->as.bytes_value.ptr, v->as.bytes_value.len, 1, "value");
    case SPANHOST_VALUE_ARRAY:
        if (check_block(w, v->as.array_value.items, v->as.array_value.count, sizeof(spanhost_value), "arrayValue"))
            return -1;
        for (size_t i = 0; i < v->as.array_value.count; i++)
            if (check_value(w, &v->as.array_value.items[i], depth + 1)) return trail(w, "arrayValue.values", (long)i);
        return 0;
    case SPANHOST_VALUE_KVLIST:
        if (check_kvs(w, &v->as.kvlist_value, depth + 1)) return trail(w, "kvlistValue", -1);
        return 0;
    default:
        return fail(w, "has an unknown type", "value");
    }
}

static int check_kvs(walker *w, const spanhost_kv_list *l, int depth) {
    if (check_block(w, l->items, l->count, sizeof(spanhost_kv), "values")) return -1;
    for (size_t i = 0; i < l->count; i++) {
        if (check_str(w, l->items[i].key, "key") || check_value(w, &l->items[i].value, depth))
            return trail(w, "attributes", (long)i);
    }
    return 0;
}

static int check_struct(walker *w, const void *ptr, size_t size, const char *field) {
    if (!ptr) return fail(w, "is missing", field);
    if (w->structure && !may_point_at(w, ptr, size)) return fail(w, "points outside the batch", field);
    return 0;
}

static int check_span(walker *w, const spanhost_span *s) {
    if (check_str(w, s->name, "name") || check_str(w, s->trace_state, "traceState") ||
        check_str(w, s->status_message, "status.message") || check_kvs(w, &s->attributes, 0))
        return -1;
    if (check_block(w, s->events, s->events_count, sizeof(void *), "events")) return -1;
    for (size_t i = 0; i < s->events_count; i++) {
        const spanhost_event *e = s->events[i];
        if (check_struct(w, e, sizeof *e, "event") || check_str(w, e->name, "name") || check_kvs(w, &e->attributes, 0))
            return trail(w, "events", (long)i);
    }
    if (check_block(w, s->links, s->links_count, sizeof(void *), "links")) return -1;
    for (size_t i = 0; i < s->links_count; i++) {
        const spanhost_link *l = s->links[i];
        if (check_struct(w, l, sizeof *l, "link") || check_str(w, l->trace_state, "traceState") ||
            check_kvs(w, &l->attributes, 0))
            return trail(w, "links", (long)i);
    }
    return 0;
}

static int check_scope_spans(walker *w, const spanhost_scope_spans *ss) {
    if (check_struct(w, ss->scope, sizeof *ss->scope, "scope")) return -1;
    if (check_str(w, ss->scope->name, "name") || check_str(w, ss->scope->version, "version") ||
        check_kvs(w, &ss->scope->attributes, 0))
        return trail(w, "scope", -1);
    if (check_str(w, ss->schema_url, "schemaUrl")) return -1;
    if (check_block(w, ss->spans, ss->spans_count, sizeof(void *), "spans")) return -1;
    for (size_t i = 0; i < ss->spans_count; i++)
        if (check_struct(w, ss->spans[i], sizeof(spanhost_span), "span") || check_span(w, ss->spans[i]))
            return trail(w, "spans", (long)i);
    return 0;
}

static int check_batch(walker *w) {
    const spanhost_batch *b = w->batch;
    if (check_block(w, b->resource_spans, b->resource_spans_count, sizeof(void *), "resourceSpans")) return -1;
    for (size_t i = 0; i < b->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = b->resource_spans[i];
        int bad = check_struct(w, rs, sizeof *rs, "resourceSpans") || check_struct(w, rs->resource, sizeof *rs->resource, "resource");
        if (!bad && check_kvs(w, &rs->resource->attributes, 0)) bad = trail(w, "resource", -1);
        if (!bad) bad = check_str(w, rs->schema_url, "schemaUrl") ||
                        check_block(w, rs->scope_spans, rs->scope_spans_count, sizeof(void *), "scopeSpans");
        for (size_t j = 0; !bad && j < rs->scope_spans_count; j++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            if (check_struct(w, ss, sizeof *ss, "scopeSpans") || check_scope_spans(w, ss)) bad = trail(w, "scopeSpans", (long)j);
        }
        if (bad) return trail(w, "resourceSpans", (long)i);
    }
    return 0;
}

/* "resourceSpans[0].scopeSpans[1].spans[2].attributes[3].value is not valid UTF-8". */
static void describe(const walker *w, char *err, size_t cap) {
    size_t n = 0;
    if (!err || !cap) return;
    err[0] = 0;
    for (int i = w->steps - 1; i >= 0 && n < cap; i--) {
        const trail_step *s = &w->trail[i];
        int k = s->index >= 0 ? snprintf(err + n, cap - n, "%s%s[%ld]", n ? "." : "", s->field, s->index)
                              : snprintf(err + n, cap - n, "%s%s", n ? "." : "", s->field);
        if (k < 0) break;
        n += (size_t)k;
    }
    if (n < cap) snprintf(err + n, cap - n, " %s", w->problem ? w->problem : "is invalid");
}

int sh_batch_check_utf8(const spanhost_batch *batch, char *err, size_t err_cap) {
    walker w = {batch, 0, NULL, 0, NULL, {{0, 0}}, 0};
    if (check_batch(&w) == 0) return 0;
    describe(&w, err, err_cap);
    return -1;
}

int sh_batch_validate(const spanhost_batch *batch, const void *input, size_t input_len, char *err, size_t err_cap) {
    walker w = {batch, 1, (const char *)input, input_len, NULL, {{0, 0}}, 0};
    if (check_batch(&w) == 0) return 0;
    describe(&w, err, err_cap);
    return -1;
}

int sh_decode_check_utf8(const spanhost_batch *batch, const char *format, char *err, size_t err_cap) {
    char where[200];
    if (sh_batch_check_utf8(batch, where, sizeof where) == 0) return 0;
    if (err && err_cap) snprintf(err, err_cap, "invalid %s: %s (strings must be UTF-8)", format, where);
    return -1;
}
