/* Small helpers shared by the first-party C plugins (header-only, static functions).
 * Plugins outside this repository need only spanhost.h; this file is a convenience. */
#ifndef SPANHOST_PLUGIN_UTIL_H
#define SPANHOST_PLUGIN_UTIL_H

#include <spanhost/spanhost.h>

#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A counter added to on the data path: by handle on 1.8 hosts (no name lookup), by name on
 * older ones. Declare it in create, after the instance is known. */
typedef struct util_counter {
    const char *name;
    uint32_t id; /* 0: add by name */
} util_counter;

static inline util_counter util_counter_declare(const spanhost_host_api *host, spanhost_instance *instance, const char *name) {
    util_counter c = {name, SPANHOST_HOST_HAS(host, counter_declare) ? host->counter_declare(instance, name) : 0};
    return c;
}

static inline void util_counter_add(const spanhost_host_api *host, spanhost_instance *instance, util_counter c, int64_t delta) {
    if (c.id) host->counter_add_id(instance, c.id, delta);
    else host->counter_add(instance, c.name, delta);
}

/* Every span of a batch, with its resource spans and scope spans, in order:
 *     for (util_span_iter it = util_spans(batch); util_next_span(&it);) { it.rs, it.ss, it.span }
 * NULL entries are skipped. The batch may be changed in place meanwhile, not restructured. */
typedef struct util_span_iter {
    const spanhost_batch *batch;
    size_t i, j, k; /* where the next span is looked for */
    spanhost_resource_spans *rs;
    spanhost_scope_spans *ss;
    spanhost_span *span;
} util_span_iter;

static inline util_span_iter util_spans(const spanhost_batch *batch) {
    util_span_iter it = {batch, 0, 0, 0, NULL, NULL, NULL};
    return it;
}

static inline int util_next_span(util_span_iter *it) {
    while (it->i < it->batch->resource_spans_count) {
        spanhost_resource_spans *rs = it->batch->resource_spans[it->i];
        if (rs && it->j < rs->scope_spans_count) {
            spanhost_scope_spans *ss = rs->scope_spans[it->j];
            if (ss && it->k < ss->spans_count) {
                spanhost_span *span = ss->spans[it->k++];
                if (!span) continue;
                it->rs = rs;
                it->ss = ss;
                it->span = span;
                return 1;
            }
            it->j++;
            it->k = 0;
            continue;
        }
        it->i++;
        it->j = 0;
        it->k = 0;
    }
    return 0;
}

static inline int util_str_is(spanhost_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}

static inline int util_str_eq(spanhost_str a, spanhost_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* A NUL-terminated heap copy of a view. */
static inline char *util_strdup(spanhost_str s) {
    char *p = (char *)malloc(s.len + 1);
    if (!p) return NULL;
    if (s.len) memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return p;
}

static inline spanhost_value *util_find(const spanhost_kv_list *l, spanhost_str key) {
    for (size_t i = 0; i < l->count; i++)
        if (util_str_eq(l->items[i].key, key)) return &l->items[i].value;
    return NULL;
}

/* The resource's service.name, or an empty view. */
static inline spanhost_str util_service_name(const spanhost_resource *r) {
    spanhost_str key = {"service.name", 12}, none = {NULL, 0};
    const spanhost_value *v = util_find(&r->attributes, key);
    return v && v->type == SPANHOST_VALUE_STRING ? v->as.string_value : none;
}

/* Writes a scalar value as text into buf (NUL-terminated). Returns the length, or -1 for
 * values that have no short text form (arrays, maps, empty). */
static inline int util_value_text(const spanhost_value *v, char *buf, size_t cap) {
    switch (v->type) {
    case SPANHOST_VALUE_STRING:
        if (v->as.string_value.len >= cap) return -1;
        if (v->as.string_value.len) memcpy(buf, v->as.string_value.ptr, v->as.string_value.len);
        buf[v->as.string_value.len] = 0;
        return (int)v->as.string_value.len;
    case SPANHOST_VALUE_BOOL: return snprintf(buf, cap, "%s", v->as.bool_value ? "true" : "false");
    case SPANHOST_VALUE_INT: return snprintf(buf, cap, "%" PRId64, v->as.int_value);
    case SPANHOST_VALUE_DOUBLE: return snprintf(buf, cap, "%.17g", v->as.double_value);
    default: return -1;
    }
}

/* A number from an int, double, or numeric string value. Returns 0 on success. */
static inline int util_value_number(const spanhost_value *v, double *out) {
    char buf[64], *end;
    switch (v->type) {
    case SPANHOST_VALUE_INT: *out = (double)v->as.int_value; return 0;
    case SPANHOST_VALUE_DOUBLE: *out = v->as.double_value; return 0;
    case SPANHOST_VALUE_STRING:
        if (util_value_text(v, buf, sizeof buf) < 0) return -1;
        *out = strtod(buf, &end);
        return end != buf && *end == 0 ? 0 : -1;
    default: return -1;
    }
}

/* Reads the duration at `key` with host->config_duration (the host's grammar: "250ms", "1m30s",
 * or a bare number of seconds) into *ms, which keeps its value when the key is absent.
 * Returns 1 when found, 0 when absent, -1 with a message naming the key when it is not a
 * duration. */
static inline int util_config_ms(const spanhost_host_api *host, const spanhost_config *config, const char *key,
                                 double *ms, spanhost_status *status) {
    int64_t ns;
    uint32_t r = host->config_duration(config, key, &ns);
    if (r == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "%s: not a duration like 500ms, 10s or 1m30s", key);
        return -1;
    }
    if (r != SPANHOST_CONFIG_FOUND) return 0;
    *ms = (double)ns / 1e6;
    return 1;
}

/* Compiles a POSIX extended regex from the RE2 syntax Collector configs use. Named groups
 * written (?P<name>...) or (?<name>...) are turned into plain groups and their names returned
 * in `names` (index = group number; NULL for unnamed groups, up to max_groups); (?:...) becomes
 * a plain group; \d and \D outside brackets become [0-9] and [^0-9]. Returns 0, or -1 with a
 * message in err. */
static inline int util_regcomp(regex_t *re, spanhost_str pattern, char **names, size_t max_groups, char *err, size_t err_cap) {
    char *plain = (char *)malloc(pattern.len * 3 + 1);
    size_t n = 0, group = 0;
    int in_bracket = 0;
    if (!plain) return -1;
    for (size_t i = 0; i < pattern.len; i++) {
        char c = pattern.ptr[i];
        if (c == '\\' && i + 1 < pattern.len && !in_bracket && (pattern.ptr[i + 1] == 'd' || pattern.ptr[i + 1] == 'D')) {
            const char *cls = pattern.ptr[++i] == 'd' ? "[0-9]" : "[^0-9]";
            memcpy(plain + n, cls, strlen(cls));
            n += strlen(cls);
            continue;
        }
        if (c == '\\' && i + 1 < pattern.len) {
            plain[n++] = c;
            plain[n++] = pattern.ptr[++i];
            continue;
        }
        if (in_bracket) {
            if (c == ']') in_bracket = 0;
            plain[n++] = c;
            continue;
        }
        if (c == '[') in_bracket = 1;
        if (c == '(') {
            group++;
            size_t name_at = 0;
            if (i + 3 < pattern.len && pattern.ptr[i + 1] == '?' && pattern.ptr[i + 2] == 'P' && pattern.ptr[i + 3] == '<') name_at = i + 4;
            else if (i + 2 < pattern.len && pattern.ptr[i + 1] == '?' && pattern.ptr[i + 2] == '<') name_at = i + 3;
            if (i + 2 < pattern.len && pattern.ptr[i + 1] == '?' && pattern.ptr[i + 2] == ':') {
                plain[n++] = '(';
                i += 2;
                continue;
            }
            if (name_at) {
                size_t end = name_at;
                while (end < pattern.len && pattern.ptr[end] != '>') end++;
                if (end >= pattern.len) {
                    snprintf(err, err_cap, "unterminated group name");
                    free(plain);
                    return -1;
                }
                if (names && group < max_groups) {
                    spanhost_str nm = {pattern.ptr + name_at, end - name_at};
                    names[group] = util_strdup(nm);
                }
                plain[n++] = '(';
                i = end;
                continue;
            }
        }
        plain[n++] = c;
    }
    plain[n] = 0;
    int rc = regcomp(re, plain, REG_EXTENDED);
    free(plain);
    if (rc != 0) {
        regerror(rc, re, err, err_cap);
        return -1;
    }
    return 0;
}

/* Whether the regex matches the text of `len` bytes. */
static inline int util_regmatch(const regex_t *re, const char *text, size_t len) {
    char stack[512];
    char *buf = len < sizeof stack ? stack : (char *)malloc(len + 1);
    if (!buf) return 0;
    if (len) memcpy(buf, text, len);
    buf[len] = 0;
    int hit = regexec(re, buf, 0, NULL, 0) == 0;
    if (buf != stack) free(buf);
    return hit;
}

/* A bounded set of trace ids with one byte of value each: two open-addressing tables; when the
 * newer one is half full it becomes the older one and a fresh one starts. Lookups see both, so
 * the most recent `capacity` to `2 * capacity` ids are remembered. Not thread-safe. */
typedef struct util_idset {
    uint8_t (*tables[2])[18]; /* 16 id bytes, value, used */
    size_t slots, len, limit;
} util_idset;

static inline int util_idset_init(util_idset *s, size_t capacity) {
    s->limit = capacity / 2 + 1;
    s->slots = 16;
    while (s->slots < s->limit * 2) s->slots *= 2;
    s->len = 0;
    s->tables[0] = (uint8_t(*)[18])calloc(s->slots, 18);
    s->tables[1] = (uint8_t(*)[18])calloc(s->slots, 18);
    return s->tables[0] && s->tables[1] ? 0 : -1;
}

static inline void util_idset_free(util_idset *s) {
    free(s->tables[0]);
    free(s->tables[1]);
}

/* A hash of all 16 id bytes. Ids are usually random, but not always (sequential test ids,
 * 64-bit ids padded with zeros), so every byte is mixed in. */
static inline uint64_t util_id_hash(const uint8_t *id) {
    uint64_t lo, hi;
    memcpy(&lo, id, 8);
    memcpy(&hi, id + 8, 8);
    uint64_t h = lo ^ (hi * 0x9E3779B97F4A7C15ull) ^ (hi >> 29);
    /* murmur3's 64-bit finalizer: every input bit reaches the low bits used as the index */
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

static inline size_t util_idset_slot(const util_idset *s, const uint8_t *id) {
    return (size_t)(util_id_hash(id) & (s->slots - 1));
}

/* The value stored for id, or -1 if absent. */
static inline int util_idset_get(const util_idset *s, const uint8_t *id) {
    for (int t = 0; t < 2; t++)
        for (size_t i = util_idset_slot(s, id);; i = (i + 1) & (s->slots - 1)) {
            if (!s->tables[t][i][17]) break;
            if (!memcmp(s->tables[t][i], id, 16)) return s->tables[t][i][16];
        }
    return -1;
}

/* Adds id (if absent) with value. Returns 1 if it was added, 0 if already present. */
static inline int util_idset_add(util_idset *s, const uint8_t *id, uint8_t value) {
    if (util_idset_get(s, id) >= 0) return 0;
    if (s->len >= s->limit) {
        uint8_t(*older)[18] = s->tables[1];
        s->tables[1] = s->tables[0];
        s->tables[0] = older;
        memset(s->tables[0], 0, s->slots * 18);
        s->len = 0;
    }
    size_t i = util_idset_slot(s, id);
    while (s->tables[0][i][17]) i = (i + 1) & (s->slots - 1);
    memcpy(s->tables[0][i], id, 16);
    s->tables[0][i][16] = value;
    s->tables[0][i][17] = 1;
    s->len++;
    return 1;
}

/* Compiles the OTTL list at `path` (absent: none) as SPANHOST_EXPR_* `kind` in `context`. On
 * success *out holds *count expressions (free each with host->expr_free, then the array). On
 * failure returns -1 with the message naming the item, the column and the text; the
 * expressions compiled so far are in *out and *count for the caller to free. */
static inline int util_compile_list(const spanhost_host_api *host, const spanhost_config *config, const char *path,
                                    uint32_t kind, uint32_t context, spanhost_expr ***out, size_t *count,
                                    spanhost_status *status) {
    const spanhost_str *texts = NULL;
    size_t n = 0;
    *count = 0;
    if (host->config_string_list(config, path, &texts, &n) == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "%s: must be a list of OTTL expressions", path);
        return -1;
    }
    if (!(*out = (spanhost_expr **)calloc(n ? n : 1, sizeof **out))) return -1;
    for (size_t i = 0; i < n; i++) {
        if (host->expr_compile(texts[i].ptr, texts[i].len, kind, context, &(*out)[i], status) != SPANHOST_OK) {
            char err[256];
            snprintf(err, sizeof err, "%s", status->message);
            snprintf(status->message, status->message_cap, "%s.%zu: %s in '%.*s'", path, i, err, (int)texts[i].len, texts[i].ptr);
            return -1;
        }
        *count = i + 1;
    }
    return 0;
}

#endif
