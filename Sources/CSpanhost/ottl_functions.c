/*
 * The editors and converters of the Collector's OTTL (pkg/ottl/ottlfuncs) built into the
 * engine, with the Collector's parameter names (for name=value arguments), argument rules and
 * results. Each takes the values of its arguments in parameter order; one not given has the
 * type -1. What a converter returns lives in the run's batch (ottl_alloc).
 */
#define _GNU_SOURCE /* memmem, strndup */
#include "ottl_internal.h"
#include "json_reader.h"

#include <ctype.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GIVEN(a) ((a).type >= 0)

/* --- Argument helpers -------------------------------------------------------------------- */

static int want_str(runner *r, const char *fn, const xvalue *a, spanhost_str *out) {
    if (a->type != V_STR) return ottl_fail(r, "%s: expected a string but got %s", fn, ottl_type_name(a->type));
    *out = a->s;
    return 0;
}

static int want_int(runner *r, const char *fn, const xvalue *a, int64_t *out) {
    if (a->type != V_INT) return ottl_fail(r, "%s: expected an int but got %s", fn, ottl_type_name(a->type));
    *out = a->i;
    return 0;
}

static int want_map(runner *r, const char *fn, const xvalue *a) {
    return a->type == V_MAP ? 0 : ottl_fail(r, "%s: expected a map but got %s", fn, ottl_type_name(a->type));
}

static int want_time(runner *r, const char *fn, const xvalue *a) {
    return a->type == V_TIME ? 0 : ottl_fail(r, "%s: expected a time but got %s", fn, ottl_type_name(a->type));
}

static int want_dur(runner *r, const char *fn, const xvalue *a) {
    return a->type == V_DUR ? 0 : ottl_fail(r, "%s: expected a duration but got %s", fn, ottl_type_name(a->type));
}

static void set_str(xvalue *out, const char *p, size_t n) {
    out->type = V_STR;
    out->s.ptr = p;
    out->s.len = n;
}

static int out_text(runner *r, xvalue *out, const char *p, size_t n) {
    spanhost_str s = ottl_strdup(r, p, n);
    if (n && !s.ptr) return ottl_fail(r, "out of memory");
    out->type = V_STR;
    out->s = s;
    return 0;
}

/* A growing text buffer in malloc'd memory. */
typedef struct text {
    char *p;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *p, size_t n) {
    if (t->failed || !n) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *grown = (char *)realloc(t->p, cap);
        if (!grown) { t->failed = 1; return; }
        t->p = grown;
        t->cap = cap;
    }
    memcpy(t->p + t->len, p, n);
    t->len += n;
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

static int text_out(runner *r, text *t, xvalue *out) {
    if (t->failed) { free(t->p); return ottl_fail(r, "out of memory"); }
    int rc = out_text(r, out, t->p ? t->p : "", t->len);
    free(t->p);
    return rc;
}

/* A fresh list of `n` items, or map, in the run's memory. */
static spanhost_value_array *new_list(runner *r, size_t n) {
    spanhost_value_array *l = (spanhost_value_array *)ottl_alloc(r, sizeof *l);
    if (!l) return NULL;
    l->items = (spanhost_value *)ottl_alloc(r, (n ? n : 1) * sizeof *l->items);
    l->count = n;
    return l->items ? l : NULL;
}

static spanhost_kv_list *new_map(runner *r) { return (spanhost_kv_list *)ottl_alloc(r, sizeof(spanhost_kv_list)); }

static int map_put(runner *r, spanhost_kv_list *m, spanhost_str key, const spanhost_value *v) {
    return sh_set_attribute(ottl_batch(r), m, key, v) == 0 ? 0 : ottl_fail(r, "out of memory");
}

static int map_put_str(runner *r, spanhost_kv_list *m, const char *key, size_t klen, const char *val, size_t vlen) {
    spanhost_value v;
    memset(&v, 0, sizeof v);
    v.type = SPANHOST_VALUE_STRING;
    v.as.string_value.ptr = val;
    v.as.string_value.len = vlen;
    spanhost_str k = {key, klen};
    return map_put(r, m, k, &v);
}

/* --- Text of values (String, Concat, Format, JSON) ---------------------------------------- */

static void put_double(text *t, double d) {
    char buf[40];
    for (int precision = 1; precision <= 17; precision++) { /* the shortest text that reads back */
        snprintf(buf, sizeof buf, "%.*g", precision, d);
        if (strtod(buf, NULL) == d) break;
    }
    puts_(t, buf);
}

static void put_json_string(text *t, spanhost_str s) {
    put(t, "\"", 1);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        char esc[8];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; put(t, esc, 2); }
        else if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); puts_(t, esc); }
        else put(t, (const char *)&c, 1);
    }
    put(t, "\"", 1);
}

static void put_json(text *t, const xvalue *v);

static int key_order(const void *a, const void *b) {
    const spanhost_kv *x = *(const spanhost_kv *const *)a, *y = *(const spanhost_kv *const *)b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = n ? memcmp(x->key.ptr, y->key.ptr, n) : 0;
    return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

static void put_json_map(text *t, const spanhost_kv_list *m) {
    /* keys sorted, as Go's encoding/json writes a map */
    const spanhost_kv **sorted = (const spanhost_kv **)malloc((m->count ? m->count : 1) * sizeof *sorted);
    if (!sorted) { t->failed = 1; return; }
    for (size_t i = 0; i < m->count; i++) sorted[i] = &m->items[i];
    qsort(sorted, m->count, sizeof *sorted, key_order);
    put(t, "{", 1);
    for (size_t i = 0; i < m->count; i++) {
        xvalue x;
        if (i) put(t, ",", 1);
        put_json_string(t, sorted[i]->key);
        put(t, ":", 1);
        ottl_from_value(&x, &sorted[i]->value);
        put_json(t, &x);
    }
    put(t, "}", 1);
    free(sorted);
}

static void put_hex(text *t, const uint8_t *p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        char pair[2] = {digits[p[i] >> 4], digits[p[i] & 15]};
        put(t, pair, 2);
    }
}

static void put_json(text *t, const xvalue *v) {
    char buf[32];
    switch (v->type) {
    case V_STR: put_json_string(t, v->s); return;
    case V_INT: snprintf(buf, sizeof buf, "%lld", (long long)v->i); puts_(t, buf); return;
    case V_DBL: put_double(t, v->d); return;
    case V_BOOL: puts_(t, v->i ? "true" : "false"); return;
    case V_MAP: put_json_map(t, v->map); return;
    case V_LIST:
        put(t, "[", 1);
        for (size_t i = 0; i < v->list->count; i++) {
            xvalue x;
            if (i) put(t, ",", 1);
            ottl_from_value(&x, &v->list->items[i]);
            put_json(t, &x);
        }
        put(t, "]", 1);
        return;
    case V_BYTES:
        if (v->id) { /* an id: an array of its bytes, as Go encodes [16]byte */
            put(t, "[", 1);
            for (size_t i = 0; i < v->s.len; i++) {
                snprintf(buf, sizeof buf, "%s%u", i ? "," : "", (unsigned)(uint8_t)v->s.ptr[i]);
                puts_(t, buf);
            }
            put(t, "]", 1);
            return;
        }
        put(t, "\"", 1);
        put_hex(t, (const uint8_t *)v->s.ptr, v->s.len);
        put(t, "\"", 1);
        return;
    case V_TIME: case V_DUR: snprintf(buf, sizeof buf, "%lld", (long long)v->i); puts_(t, buf); return;
    default: puts_(t, "null");
    }
}

/* The text of a value: strings as they are, numbers and bools as Go writes them, bytes in hex,
 * ids, maps and lists as JSON. */
static void put_text(text *t, const xvalue *v) {
    switch (v->type) {
    case V_STR: put(t, v->s.ptr, v->s.len); return;
    case V_DBL: {
        char buf[64];
        if (v->d == floor(v->d) && fabs(v->d) < 1e21) snprintf(buf, sizeof buf, "%.0f", v->d);
        else snprintf(buf, sizeof buf, "%.17g", v->d);
        for (int precision = 1; precision <= 17 && !(v->d == floor(v->d) && fabs(v->d) < 1e21); precision++) {
            snprintf(buf, sizeof buf, "%.*f", precision, v->d);
            if (strtod(buf, NULL) == v->d) break;
        }
        puts_(t, buf);
        return;
    }
    case V_BYTES: if (!v->id) { put_hex(t, (const uint8_t *)v->s.ptr, v->s.len); return; } /* fall through */
    default: put_json(t, v);
    }
}

int ottl_to_text(runner *r, const xvalue *v, spanhost_str *out) {
    text t = {0};
    xvalue x;
    put_text(&t, v);
    if (text_out(r, &t, &x) != 0) return -1;
    *out = x.s;
    return 0;
}

/* --- Editors ----------------------------------------------------------------------------- */

static int f_set(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    return ottl_assign(r, call->kids[0], &a[1], call->kids[1]->op == N_LIT) < 0 ? -1 : 0;
}

static int same_key(spanhost_str k, spanhost_str want) { return k.len == want.len && (!k.len || !memcmp(k.ptr, want.ptr, k.len)); }

static int f_delete_key(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)out;
    spanhost_str key;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "delete_key", &a[0]) != 0 || want_str(r, "delete_key", &a[1], &key) != 0) return -1;
    sh_remove_attribute(r->batch, a[0].map, key);
    return 0;
}

/* Keeps the items of a map for which keep() says so, in order. */
static void filter_map(spanhost_kv_list *m, int (*keep)(const node *, const xvalue *, spanhost_str), const node *call, const xvalue *arg) {
    size_t out = 0;
    for (size_t i = 0; i < m->count; i++)
        if (keep(call, arg, m->items[i].key)) m->items[out++] = m->items[i];
    m->count = out;
}

static int pattern_matches(const node *call, const xvalue *unused, spanhost_str key) {
    (void)unused;
    return ottl_match(call, &call->re, key, 0, NULL);
}
static int pattern_misses(const node *call, const xvalue *unused, spanhost_str key) { return !pattern_matches(call, unused, key); }

static int in_list(const spanhost_value_array *l, spanhost_str key) {
    for (size_t i = 0; l && i < l->count; i++)
        if (l->items[i].type == SPANHOST_VALUE_STRING && same_key(l->items[i].as.string_value, key)) return 1;
    return 0;
}

static int listed(const node *call, const xvalue *keys, spanhost_str key) {
    (void)call;
    return in_list(keys->list, key);
}

static int need_pattern(runner *r, const node *call, const char *fn) {
    return call->has_re ? 0 : ottl_fail(r, "%s: the pattern must be a \"string\" literal", fn);
}

static int f_delete_matching_keys(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "delete_matching_keys", &a[0]) != 0 || need_pattern(r, call, "delete_matching_keys") != 0) return -1;
    filter_map(a[0].map, pattern_misses, call, NULL);
    return 0;
}

static int f_keep_matching_keys(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "keep_matching_keys", &a[0]) != 0 || need_pattern(r, call, "keep_matching_keys") != 0) return -1;
    filter_map(a[0].map, pattern_matches, call, NULL);
    return 0;
}

static int f_keep_keys(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "keep_keys", &a[0]) != 0) return -1;
    if (a[1].type != V_LIST) return ottl_fail(r, "keep_keys: the keys are a list of strings");
    filter_map(a[0].map, listed, call, &a[1]);
    return 0;
}

static int f_limit(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)out;
    int64_t limit;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "limit", &a[0]) != 0 || want_int(r, "limit", &a[1], &limit) != 0) return -1;
    if (limit < 0) return ottl_fail(r, "limit: invalid limit for limit function, %lld cannot be negative", (long long)limit);
    spanhost_kv_list *m = a[0].map;
    const spanhost_value_array *priority = GIVEN(a[2]) && a[2].type == V_LIST ? a[2].list : NULL;
    if (m->count <= (size_t)limit) return 0;
    /* the priority keys first, then the others in order; what is kept stays in its order */
    size_t kept = 0;
    unsigned char *keep = (unsigned char *)calloc(m->count, 1);
    if (!keep) return ottl_fail(r, "out of memory");
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < m->count && kept < (size_t)limit; i++)
            if (!keep[i] && in_list(priority, m->items[i].key) == !pass) keep[i] = 1, kept++;
    size_t o = 0;
    for (size_t i = 0; i < m->count; i++)
        if (keep[i]) m->items[o++] = m->items[i];
    m->count = o;
    free(keep);
    return 0;
}

static size_t utf8_cut(spanhost_str s, size_t limit) {
    size_t cut = limit; /* never inside a UTF-8 sequence */
    while (cut > 0 && cut < s.len && ((unsigned char)s.ptr[cut] & 0xC0) == 0x80) cut--;
    return cut;
}

static int f_truncate_all(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)out;
    int64_t limit;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "truncate_all", &a[0]) != 0 || want_int(r, "truncate_all", &a[1], &limit) != 0) return -1;
    if (limit < 0) return ottl_fail(r, "truncate_all: invalid limit for truncate_all function, %lld cannot be negative", (long long)limit);
    spanhost_kv_list *m = a[0].map;
    for (size_t i = 0; i < m->count; i++) {
        spanhost_value *v = &m->items[i].value;
        if (v->type == SPANHOST_VALUE_STRING && v->as.string_value.len > (size_t)limit)
            v->as.string_value.len = utf8_cut(v->as.string_value, (size_t)limit);
    }
    return 0;
}

/* Go's regexp expansion of $1 / ${1} / ${name} in a replacement, for one match. */
static void expand(text *t, spanhost_str repl, const char *s, const regmatch_t *m, size_t groups, const node *call) {
    for (size_t i = 0; i < repl.len; i++) {
        const char *c = repl.ptr + i;
        if (*c == '$' && i + 1 < repl.len && c[1] == '$') {
            put(t, "$", 1);
            i++;
            continue;
        }
        if (*c == '$' && i + 1 < repl.len && (isalnum((unsigned char)c[1]) || c[1] == '_' || c[1] == '{')) {
            size_t j = i + 1;
            int braced = c[1] == '{';
            if (braced) j++;
            size_t start = j;
            while (j < repl.len && (isalnum((unsigned char)repl.ptr[j]) || repl.ptr[j] == '_')) j++;
            if (braced && (j >= repl.len || repl.ptr[j] != '}')) goto literal;
            size_t name_len = j - start, g = groups;
            int numeric = name_len > 0;
            for (size_t k = start; k < j; k++) numeric &= isdigit((unsigned char)repl.ptr[k]) != 0;
            if (numeric) g = (size_t)strtoul(repl.ptr + start, NULL, 10);
            else
                for (size_t k = 0; k < call->ngroups; k++)
                    if (call->group_names[k] && strlen(call->group_names[k]) == name_len && !memcmp(call->group_names[k], repl.ptr + start, name_len)) g = k + 1;
            if (braced) j++;
            if (g < groups && m[g].rm_so >= 0) put(t, s + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so));
            i = j - 1;
            continue;
        }
    literal:
        put(t, c, 1);
    }
}

/* Applies a converter (SHA256...) and a format ("prefix=%s") to a replacement. */
static int transform_replacement(runner *r, const xvalue *fn, const xvalue *format, text *t) {
    if (!GIVEN(*fn) && !GIVEN(*format)) return 0;
    xvalue in, res;
    memset(&in, 0, sizeof in);
    set_str(&in, t->p ? t->p : "", t->len);
    res = in;
    if (GIVEN(*fn)) {
        if (fn->type != V_FUNC) { free(t->p); return ottl_fail(r, "the function argument names a converter, like SHA256"); }
        xvalue args[6];
        memset(args, 0, sizeof args);
        for (int i = 1; i < 6; i++) args[i].type = -1;
        args[0] = in;
        if (ottl_call_function(r, fn->fn, args, &res) != 0) { free(t->p); return -1; }
    }
    text done = {0};
    spanhost_str s;
    if (ottl_to_text(r, &res, &s) != 0) { free(t->p); return -1; }
    if (GIVEN(*format) && format->type == V_STR) {
        const char *pct = format->s.len ? memmem(format->s.ptr, format->s.len, "%s", 2) : NULL;
        if (!pct) { free(t->p); return ottl_fail(r, "replacementFormat must contain %%s"); }
        put(&done, format->s.ptr, (size_t)(pct - format->s.ptr));
        put(&done, s.ptr, s.len);
        put(&done, pct + 2, format->s.len - (size_t)(pct + 2 - format->s.ptr));
    } else {
        put(&done, s.ptr, s.len);
    }
    free(t->p);
    *t = done;
    return 0;
}

/* Every match of the call's pattern in `s` replaced; *changed says whether any was. */
static int replace_all(runner *r, const node *call, spanhost_str s, spanhost_str repl, const xvalue *fn, const xvalue *format,
                       spanhost_str *result, int *changed) {
    regmatch_t m[10];
    text out = {0};
    size_t at = 0;
    *changed = 0;
    while (at <= s.len) {
        spanhost_str rest = {s.ptr + at, s.len - at};
        if (!ottl_match(call, &call->re, rest, 10, m)) break;
        put(&out, rest.ptr, (size_t)m[0].rm_so);
        text piece = {0};
        expand(&piece, repl, rest.ptr, m, 10, call);
        if (transform_replacement(r, fn, format, &piece) != 0) { free(out.p); return -1; }
        put(&out, piece.p ? piece.p : "", piece.len);
        free(piece.p);
        *changed = 1;
        if (m[0].rm_eo == m[0].rm_so) { /* an empty match: step over one byte */
            if (at + (size_t)m[0].rm_eo < s.len) put(&out, rest.ptr + m[0].rm_eo, 1);
            at += (size_t)m[0].rm_eo + 1;
        } else {
            at += (size_t)m[0].rm_eo;
        }
    }
    if (!*changed) { free(out.p); *result = s; return 0; }
    if (at < s.len) put(&out, s.ptr + at, s.len - at);
    if (out.failed) { free(out.p); return ottl_fail(r, "out of memory"); }
    /* A pattern matches bytes: replacing part of a multi-byte character leaves bytes that are
     * not UTF-8, written as U+FFFD. */
    if (out.len && sh_high_bits(out.p, out.len) && !sh_utf8_valid(out.p, out.len)) {
        char *fixed = (char *)ottl_alloc(r, out.len * 3);
        if (!fixed) { free(out.p); return ottl_fail(r, "out of memory"); }
        result->len = sh_utf8_repair(out.p, out.len, fixed);
        result->ptr = fixed;
        free(out.p);
        return 0;
    }
    *result = ottl_strdup(r, out.p ? out.p : "", out.len);
    free(out.p);
    return result->len && !result->ptr ? ottl_fail(r, "out of memory") : 0;
}

static int f_replace_pattern(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    spanhost_str repl, result;
    int changed;
    if (a[0].type != V_STR) return 0; /* nothing to replace in */
    if (need_pattern(r, call, "replace_pattern") != 0 || want_str(r, "replace_pattern", &a[2], &repl) != 0) return -1;
    if (replace_all(r, call, a[0].s, repl, &a[3], &a[4], &result, &changed) != 0) return -1;
    if (!changed) return 0;
    xvalue v;
    memset(&v, 0, sizeof v);
    set_str(&v, result.ptr, result.len);
    return ottl_assign(r, call->kids[0], &v, 0) < 0 ? -1 : 0;
}

/* The replacement a whole-value match gives (replace_match, replace_all_matches). */
static int whole_replacement(runner *r, spanhost_str repl, const xvalue *fn, const xvalue *format, spanhost_str *result) {
    text t = {0};
    put(&t, repl.ptr, repl.len);
    if (transform_replacement(r, fn, format, &t) != 0) return -1;
    xvalue v;
    if (text_out(r, &t, &v) != 0) return -1;
    *result = v.s;
    return 0;
}

static int f_replace_match(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    spanhost_str repl, result;
    if (a[0].type != V_STR) return 0;
    if (need_pattern(r, call, "replace_match") != 0 || want_str(r, "replace_match", &a[2], &repl) != 0) return -1;
    if (!ottl_match(call, &call->re, a[0].s, 0, NULL)) return 0;
    if (whole_replacement(r, repl, &a[3], &a[4], &result) != 0) return -1;
    xvalue v;
    memset(&v, 0, sizeof v);
    set_str(&v, result.ptr, result.len);
    return ottl_assign(r, call->kids[0], &v, 0) < 0 ? -1 : 0;
}

static int f_replace_all_matches(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    spanhost_str repl, result;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "replace_all_matches", &a[0]) != 0 || need_pattern(r, call, "replace_all_matches") != 0 ||
        want_str(r, "replace_all_matches", &a[2], &repl) != 0)
        return -1;
    spanhost_kv_list *m = a[0].map;
    for (size_t i = 0; i < m->count; i++) {
        spanhost_value *v = &m->items[i].value;
        if (v->type != SPANHOST_VALUE_STRING || !ottl_match(call, &call->re, v->as.string_value, 0, NULL)) continue;
        if (whole_replacement(r, repl, &a[3], &a[4], &result) != 0) return -1;
        v->as.string_value = result;
    }
    return 0;
}

static int f_replace_all_patterns(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    spanhost_str mode, repl, result;
    int changed;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "replace_all_patterns", &a[0]) != 0 || want_str(r, "replace_all_patterns", &a[1], &mode) != 0 ||
        need_pattern(r, call, "replace_all_patterns") != 0 || want_str(r, "replace_all_patterns", &a[3], &repl) != 0)
        return -1;
    int keys = mode.len == 3 && !memcmp(mode.ptr, "key", 3);
    if (!keys && !(mode.len == 5 && !memcmp(mode.ptr, "value", 5))) return ottl_fail(r, "replace_all_patterns: mode is \"key\" or \"value\"");
    spanhost_kv_list *m = a[0].map;
    for (size_t i = 0; i < m->count; i++) {
        spanhost_kv *kv = &m->items[i];
        if (!keys && kv->value.type != SPANHOST_VALUE_STRING) continue;
        spanhost_str s = keys ? kv->key : kv->value.as.string_value;
        if (replace_all(r, call, s, repl, &a[4], &a[5], &result, &changed) != 0) return -1;
        if (!changed) continue;
        if (keys) {
            /* a renamed key replaces one of that name */
            for (size_t j = 0; j < m->count; j++)
                if (j != i && same_key(m->items[j].key, result)) {
                    memmove(&m->items[j], &m->items[j + 1], (m->count - j - 1) * sizeof *m->items);
                    m->count--;
                    if (j < i) i--;
                    break;
                }
            m->items[i].key = result;
        } else {
            kv->value.as.string_value = result;
        }
    }
    return 0;
}

static int f_merge_maps(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)out;
    spanhost_str strategy;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "merge_maps", &a[0]) != 0 || want_str(r, "merge_maps", &a[2], &strategy) != 0) return -1;
    if (a[1].type != V_MAP) return a[1].type == V_NIL ? 0 : ottl_fail(r, "merge_maps: expected a map but got %s", ottl_type_name(a[1].type));
    int insert = strategy.len == 6 && !memcmp(strategy.ptr, "insert", 6), update = strategy.len == 6 && !memcmp(strategy.ptr, "update", 6);
    int upsert = strategy.len == 6 && !memcmp(strategy.ptr, "upsert", 6);
    if (!insert && !update && !upsert) return ottl_fail(r, "merge_maps: invalid value for strategy, %.*s, must be 'insert', 'update' or 'upsert'", (int)strategy.len, strategy.ptr);
    spanhost_kv_list source = *a[1].map; /* it may be a part of the target */
    for (size_t i = 0; i < source.count; i++) {
        int exists = ottl_find(a[0].map, source.items[i].key) != NULL;
        if ((insert && exists) || (update && !exists)) continue;
        if (map_put(r, a[0].map, source.items[i].key, &source.items[i].value) != 0) return -1;
    }
    return 0;
}

typedef struct flattening {
    runner *r;
    spanhost_kv_list *result;
    int64_t max_depth;
    int conflicts;
    spanhost_kv_list seen; /* resolveConflicts: how many times each key came */
} flattening;

static int flat_put(flattening *f, const char *key, size_t klen, const spanhost_value *v) {
    spanhost_str k = {key, klen};
    if (f->conflicts && ottl_find(f->result, k)) { /* the n-th repeat of a key is "key.n" */
        const spanhost_value *count = ottl_find(&f->seen, k);
        int64_t n = count ? count->as.int_value : 0;
        char *renamed = (char *)ottl_alloc(f->r, klen + 24);
        if (!renamed) return ottl_fail(f->r, "out of memory");
        int len = snprintf(renamed, klen + 24, "%.*s.%lld", (int)klen, key, (long long)n);
        spanhost_value next;
        memset(&next, 0, sizeof next);
        next.type = SPANHOST_VALUE_INT;
        next.as.int_value = n + 1;
        if (map_put(f->r, &f->seen, k, &next) != 0) return -1;
        spanhost_str nk = {renamed, (size_t)len};
        return map_put(f->r, f->result, nk, v);
    }
    return map_put(f->r, f->result, k, v);
}

static int flatten_map(flattening *f, const spanhost_kv_list *m, const char *prefix, size_t plen, int64_t depth);

static char *join_key(runner *r, const char *prefix, size_t plen, const char *key, size_t klen, size_t *len) {
    char *k = (char *)ottl_alloc(r, plen + klen + 2);
    if (!k) return NULL;
    *len = 0;
    if (plen) {
        memcpy(k, prefix, plen);
        k[plen] = '.';
        *len = plen + 1;
    }
    if (klen) memcpy(k + *len, key, klen);
    *len += klen;
    return k;
}

static int flatten_value(flattening *f, const char *key, size_t klen, const spanhost_value *v, int64_t depth) {
    if (v->type == SPANHOST_VALUE_KVLIST && depth < f->max_depth) return flatten_map(f, &v->as.kvlist_value, key, klen, depth + 1);
    if (v->type == SPANHOST_VALUE_ARRAY && depth < f->max_depth) {
        for (size_t i = 0; i < v->as.array_value.count; i++) {
            const spanhost_value *item = &v->as.array_value.items[i];
            char index[24];
            size_t ilen = (size_t)snprintf(index, sizeof index, "%zu", i), len;
            char *k = join_key(f->r, key, klen, index, ilen, &len);
            if (!k) return ottl_fail(f->r, "out of memory");
            int nested = (item->type == SPANHOST_VALUE_KVLIST || item->type == SPANHOST_VALUE_ARRAY) && depth + 1 < f->max_depth;
            if (nested) {
                if (flatten_value(f, k, len, item, depth + 1) != 0) return -1;
            } else if (flat_put(f, f->conflicts ? key : k, f->conflicts ? klen : len, item) != 0) {
                return -1;
            }
        }
        return 0;
    }
    return flat_put(f, key, klen, v);
}

static int flatten_map(flattening *f, const spanhost_kv_list *m, const char *prefix, size_t plen, int64_t depth) {
    for (size_t i = 0; i < m->count; i++) {
        size_t len;
        char *k = join_key(f->r, prefix, plen, m->items[i].key.ptr, m->items[i].key.len, &len);
        if (!k || flatten_value(f, k, len, &m->items[i].value, depth) != 0) return k ? -1 : ottl_fail(f->r, "out of memory");
    }
    return 0;
}

static int f_flatten(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)out;
    if (a[0].type == V_NIL) return 0;
    if (want_map(r, "flatten", &a[0]) != 0) return -1;
    spanhost_kv_list result = {NULL, 0};
    flattening f = {r, &result, INT64_MAX, GIVEN(a[3]) && a[3].type == V_BOOL && a[3].i, {NULL, 0}};
    spanhost_str prefix = {"", 0};
    if (GIVEN(a[1]) && want_str(r, "flatten", &a[1], &prefix) != 0) return -1;
    if (GIVEN(a[2]) && want_int(r, "flatten", &a[2], &f.max_depth) != 0) return -1;
    if (f.max_depth < 0) return ottl_fail(r, "flatten: invalid depth for flatten function, %lld cannot be negative", (long long)f.max_depth);
    if (flatten_map(&f, a[0].map, prefix.ptr, prefix.len, 0) != 0) return -1;
    *a[0].map = result;
    return 0;
}

static int f_append(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)out;
    if (!GIVEN(a[1]) && !GIVEN(a[2])) return ottl_fail(r, "append: at least one of the optional arguments ('value' or 'values') must be provided");
    size_t have = a[0].type == V_LIST ? a[0].list->count : a[0].type == V_NIL ? 0 : 1;
    size_t more = (GIVEN(a[1]) ? 1 : 0) + (GIVEN(a[2]) && a[2].type == V_LIST ? a[2].list->count : 0);
    spanhost_value_array *l = new_list(r, have + more);
    if (!l) return ottl_fail(r, "out of memory");
    size_t n = 0;
    if (a[0].type == V_LIST && have) memcpy(l->items, a[0].list->items, have * sizeof *l->items), n = have;
    else if (a[0].type != V_NIL && ottl_to_value(r, &a[0], &l->items[n++]) != 0) return -1;
    if (GIVEN(a[1]) && ottl_to_value(r, &a[1], &l->items[n++]) != 0) return -1;
    if (GIVEN(a[2]) && a[2].type == V_LIST)
        for (size_t i = 0; i < a[2].list->count; i++) l->items[n++] = a[2].list->items[i];
    l->count = n;
    xvalue v;
    memset(&v, 0, sizeof v);
    v.type = V_LIST;
    v.list = l;
    return ottl_assign(r, call->kids[0], &v, 0) < 0 ? -1 : 0;
}

/* set_semconv_span_name: the span's name as the semantic conventions (1.37 to 1.40) derive it
 * from its kind and attributes, as the Collector's transform processor does; the old name goes
 * to the attribute `originalSpanNameAttribute` names, when given and when the name changes. */
typedef struct semconv {
    spanhost_span *span;
    text out; /* the name being built */
} semconv;

/* The attribute `key` (or, when missing, `alias`), its text appended to `into` (when given); 0 if neither is there. */
static int attr_text(semconv *sc, const char *key, const char *alias, text *into) {
    for (int pass = 0; pass < 2; pass++) {
        const char *k = pass ? alias : key;
        if (!k) break;
        spanhost_str want = {k, strlen(k)};
        const spanhost_value *v = ottl_find(&sc->span->attributes, want);
        if (!v) continue;
        if (into) {
            xvalue x;
            ottl_from_value(&x, v);
            put_text(into, &x);
        }
        return 1;
    }
    return 0;
}

static int attr_true(semconv *sc, const char *key) {
    spanhost_str want = {key, strlen(key)};
    const spanhost_value *v = ottl_find(&sc->span->attributes, want);
    return v && v->type == SPANHOST_VALUE_BOOL && v->as.bool_value;
}

/* "address:port", or "address"; 0 when there is no server.address. */
static int server_text(semconv *sc, text *into) {
    if (!attr_text(sc, "server.address", NULL, NULL)) return 0;
    attr_text(sc, "server.address", NULL, into);
    if (attr_text(sc, "server.port", NULL, NULL)) {
        put(into, ":", 1);
        attr_text(sc, "server.port", NULL, into);
    }
    return 1;
}

static int http_name(semconv *sc, const char *subject) {
    if (!attr_text(sc, "http.request.method", "http.method", &sc->out)) return 0;
    if (attr_text(sc, subject, NULL, NULL)) {
        put(&sc->out, " ", 1);
        attr_text(sc, subject, NULL, &sc->out);
    }
    return 1;
}

static int rpc_name(semconv *sc) {
    if (!attr_text(sc, "rpc.system.name", "rpc.system", NULL)) return 0;
    int method = attr_text(sc, "rpc.method", "rpc.grpc.method", NULL), service = attr_text(sc, "rpc.service", "rpc.grpc.service", NULL);
    if (service) {
        attr_text(sc, "rpc.service", "rpc.grpc.service", &sc->out);
        put(&sc->out, "/", 1);
        if (method) attr_text(sc, "rpc.method", "rpc.grpc.method", &sc->out);
        else put(&sc->out, "*", 1);
    } else if (method) {
        attr_text(sc, "rpc.method", "rpc.grpc.method", &sc->out);
    } else {
        attr_text(sc, "rpc.system.name", "rpc.system", &sc->out);
    }
    return 1;
}

/* The database target: namespace.collection, namespace.procedure, namespace, or the server. */
static void db_target(semconv *sc, text *t) {
    int ns = attr_text(sc, "db.namespace", "db.name", NULL);
    const char *object = attr_text(sc, "db.collection.name", NULL, NULL) ? "db.collection.name"
                         : attr_text(sc, "db.stored_procedure.name", NULL, NULL) ? "db.stored_procedure.name" : NULL;
    if (ns) attr_text(sc, "db.namespace", "db.name", t);
    if (object) {
        if (ns) put(t, ".", 1);
        attr_text(sc, object, NULL, t);
        return;
    }
    if (!ns) server_text(sc, t);
}

static int db_name(semconv *sc) {
    if (!attr_text(sc, "db.system.name", "db.system", NULL)) return 0;
    if (attr_text(sc, "db.query.summary", NULL, &sc->out)) return 1;
    text target = {0};
    db_target(sc, &target);
    int operation = attr_text(sc, "db.operation.name", "db.operation", &sc->out);
    if (operation && target.len) put(&sc->out, " ", 1);
    put(&sc->out, target.p ? target.p : "", target.len);
    if (!operation && !target.len) attr_text(sc, "db.system.name", "db.system", &sc->out);
    free(target.p);
    return 1;
}

static void messaging_destination(semconv *sc, text *t) {
    if (attr_true(sc, "messaging.destination.temporary")) puts_(t, "(temporary)");
    else if (attr_true(sc, "messaging.destination.anonymous")) puts_(t, "(anonymous)");
    else if (!attr_text(sc, "messaging.destination.template", NULL, t) && !attr_text(sc, "messaging.destination.name", "messaging.destination", t))
        server_text(sc, t);
}

static int messaging_name(semconv *sc) {
    if (!attr_text(sc, "messaging.system", NULL, NULL)) return 0;
    text destination = {0};
    messaging_destination(sc, &destination);
    int operation = attr_text(sc, "messaging.operation.name", "messaging.operation", &sc->out);
    if (operation && destination.len) put(&sc->out, " ", 1);
    put(&sc->out, destination.p ? destination.p : "", destination.len);
    if (!operation && !destination.len) attr_text(sc, "messaging.system", NULL, &sc->out);
    free(destination.p);
    return 1;
}

static int f_set_semconv_span_name(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)out;
    spanhost_span *span = r->t->span;
    if (!span) return 0;
    if (GIVEN(a[1]) && (a[1].type != V_STR || !a[1].s.len)) return ottl_fail(r, "set_semconv_span_name: originalSpanNameAttribute is a non-empty string");
    semconv sc = {span, {0}};
    int named = 0;
    switch (span->kind) {
    case SPANHOST_SPAN_KIND_SERVER: named = http_name(&sc, "http.route") || rpc_name(&sc) || messaging_name(&sc); break;
    case SPANHOST_SPAN_KIND_CLIENT:
        named = http_name(&sc, "url.template") || rpc_name(&sc) || db_name(&sc) || messaging_name(&sc);
        break;
    case SPANHOST_SPAN_KIND_CONSUMER:
    case SPANHOST_SPAN_KIND_PRODUCER: named = messaging_name(&sc); break;
    }
    if (!named) return 0;
    if (sc.out.failed) {
        free(sc.out.p);
        return ottl_fail(r, "out of memory");
    }
    spanhost_str name = {sc.out.p ? sc.out.p : "", sc.out.len}, old = span->name;
    if (same_key(name, old)) {
        free(sc.out.p);
        return 0;
    }
    xvalue v;
    if (text_out(r, &sc.out, &v) != 0) return -1;
    span->name = v.s;
    if (GIVEN(a[1])) {
        spanhost_value original;
        memset(&original, 0, sizeof original);
        original.type = SPANHOST_VALUE_STRING;
        original.as.string_value = old;
        if (map_put(r, &span->attributes, a[1].s, &original) != 0) return -1;
    }
    return 0;
}

/* --- Converters: strings ------------------------------------------------------------------ */

static int f_concat(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str delim;
    if (a[0].type != V_LIST) return ottl_fail(r, "Concat: expected a list but got %s", ottl_type_name(a[0].type));
    if (want_str(r, "Concat", &a[1], &delim) != 0) return -1;
    text t = {0};
    for (size_t i = 0; i < a[0].list->count; i++) {
        xvalue x;
        if (i) put(&t, delim.ptr, delim.len);
        ottl_from_value(&x, &a[0].list->items[i]);
        if (x.type != V_NIL) put_text(&t, &x);
    }
    return text_out(r, &t, out);
}

static int change_case(runner *r, spanhost_str s, xvalue *out, int upper) {
    char *buf = (char *)ottl_alloc(r, s.len);
    if (!buf) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        buf[i] = upper ? (c >= 'a' && c <= 'z' ? (char)(c - 32) : c) : (c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
    }
    set_str(out, buf, s.len);
    return 0;
}

/* fooBar, FooBar, foo_bar -> the words */
static int camel(runner *r, spanhost_str s, xvalue *out) {
    text t = {0};
    int start = 1;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '_' || c == '-' || c == ' ' || c == '.') { start = 1; continue; }
        char o = start && c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
        put(&t, &o, 1);
        start = 0;
    }
    return text_out(r, &t, out);
}

static int snake(runner *r, spanhost_str s, xvalue *out) {
    text t = {0};
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c >= 'A' && c <= 'Z') {
            int after_lower = i > 0 && (islower((unsigned char)s.ptr[i - 1]) || isdigit((unsigned char)s.ptr[i - 1]));
            int before_lower = i > 0 && i + 1 < s.len && isupper((unsigned char)s.ptr[i - 1]) && islower((unsigned char)s.ptr[i + 1]);
            if ((after_lower || before_lower) && t.len && t.p[t.len - 1] != '_') put(&t, "_", 1);
            c = (char)(c + 32);
        } else if (c == '-' || c == ' ' || c == '.') {
            c = '_';
        }
        put(&t, &c, 1);
    }
    return text_out(r, &t, out);
}

static int f_to_lower(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    return want_str(r, "ToLowerCase", &a[0], &s) != 0 ? -1 : change_case(r, s, out, 0);
}
static int f_to_upper(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    return want_str(r, "ToUpperCase", &a[0], &s) != 0 ? -1 : change_case(r, s, out, 1);
}
static int f_to_camel(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    return want_str(r, "ToCamelCase", &a[0], &s) != 0 ? -1 : camel(r, s, out);
}
static int f_to_snake(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    return want_str(r, "ToSnakeCase", &a[0], &s) != 0 ? -1 : snake(r, s, out);
}

static int f_convert_case(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s, to;
    if (a[0].type == V_NIL) return 0;
    if (want_str(r, "ConvertCase", &a[0], &s) != 0 || want_str(r, "ConvertCase", &a[1], &to) != 0) return -1;
    if (to.len == 5 && !memcmp(to.ptr, "lower", 5)) return change_case(r, s, out, 0);
    if (to.len == 5 && !memcmp(to.ptr, "upper", 5)) return change_case(r, s, out, 1);
    if (to.len == 5 && !memcmp(to.ptr, "snake", 5)) return snake(r, s, out);
    if (to.len == 5 && !memcmp(to.ptr, "camel", 5)) return camel(r, s, out);
    return ottl_fail(r, "ConvertCase: invalid case: %.*s, allowed cases are: lower, upper, snake, camel", (int)to.len, to.ptr);
}

static int f_has_prefix(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s, p;
    if (want_str(r, "HasPrefix", &a[0], &s) != 0 || want_str(r, "HasPrefix", &a[1], &p) != 0) return -1;
    out->type = V_BOOL;
    out->i = s.len >= p.len && (!p.len || !memcmp(s.ptr, p.ptr, p.len));
    return 0;
}

static int f_has_suffix(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s, p;
    if (want_str(r, "HasSuffix", &a[0], &s) != 0 || want_str(r, "HasSuffix", &a[1], &p) != 0) return -1;
    out->type = V_BOOL;
    out->i = s.len >= p.len && (!p.len || !memcmp(s.ptr + s.len - p.len, p.ptr, p.len));
    return 0;
}

static int f_trim(runner *r, const char *fn, xvalue *a, xvalue *out, int suffix) {
    spanhost_str s, p;
    if (want_str(r, fn, &a[0], &s) != 0 || want_str(r, fn, &a[1], &p) != 0) return -1;
    *out = a[0];
    if (s.len < p.len || (p.len && memcmp(suffix ? s.ptr + s.len - p.len : s.ptr, p.ptr, p.len))) return 0;
    if (!suffix) out->s.ptr += p.len;
    out->s.len -= p.len;
    return 0;
}
static int f_trim_prefix(runner *r, const node *call, xvalue *a, xvalue *out) { (void)call; return f_trim(r, "TrimPrefix", a, out, 0); }
static int f_trim_suffix(runner *r, const node *call, xvalue *a, xvalue *out) { (void)call; return f_trim(r, "TrimSuffix", a, out, 1); }

static int f_substring(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    int64_t start, length;
    if (want_str(r, "Substring", &a[0], &s) != 0 || want_int(r, "Substring", &a[1], &start) != 0 || want_int(r, "Substring", &a[2], &length) != 0) return -1;
    if (start < 0) return ottl_fail(r, "Substring: invalid start for substring function, %lld cannot be negative", (long long)start);
    if (length <= 0) return ottl_fail(r, "Substring: invalid length for substring function, %lld cannot be negative or zero", (long long)length);
    if ((uint64_t)start > s.len || (uint64_t)length > s.len - (uint64_t)start)
        return ottl_fail(r, "Substring: invalid range for substring function, start %lld and length %lld are past the end of the string (%zu bytes)",
                         (long long)start, (long long)length, s.len);
    set_str(out, s.ptr + start, (size_t)length);
    return 0;
}

static int f_split(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s, d;
    if (a[0].type == V_NIL) return 0;
    if (want_str(r, "Split", &a[0], &s) != 0 || want_str(r, "Split", &a[1], &d) != 0) return -1;
    if (!s.len) s.ptr = ""; /* an empty string splits into one empty item */
    size_t n = 1;
    if (d.len)
        for (const char *p = s.ptr; (p = memmem(p, (size_t)(s.ptr + s.len - p), d.ptr, d.len)); p += d.len) n++;
    else n = s.len ? s.len : 1;
    spanhost_value_array *l = new_list(r, n);
    if (!l) return ottl_fail(r, "out of memory");
    const char *p = s.ptr;
    for (size_t i = 0; i < n; i++) {
        const char *next = d.len ? memmem(p, (size_t)(s.ptr + s.len - p), d.ptr, d.len) : (i + 1 < n ? p + 1 : NULL);
        size_t len = next ? (size_t)(next - p) : (size_t)(s.ptr + s.len - p);
        l->items[i].type = SPANHOST_VALUE_STRING;
        l->items[i].as.string_value.ptr = p;
        l->items[i].as.string_value.len = len;
        p = next ? next + d.len : p + len;
    }
    out->type = V_LIST;
    out->list = l;
    return 0;
}

static int f_format(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str f;
    if (want_str(r, "Format", &a[0], &f) != 0) return -1;
    if (a[1].type != V_LIST) return ottl_fail(r, "Format: the values are a list");
    text t = {0};
    size_t next = 0;
    for (size_t i = 0; i < f.len; i++) {
        if (f.ptr[i] != '%') { put(&t, &f.ptr[i], 1); continue; }
        if (i + 1 < f.len && f.ptr[i + 1] == '%') { put(&t, "%", 1); i++; continue; }
        size_t j = i + 1;
        while (j < f.len && strchr("+-# 0123456789.", f.ptr[j])) j++;
        if (j >= f.len) break;
        char spec[32], verb = f.ptr[j], buf[512];
        size_t flags = j - i - 1 < 20 ? j - i - 1 : 20;
        xvalue x;
        memset(&x, 0, sizeof x);
        if (next < a[1].list->count) ottl_from_value(&x, &a[1].list->items[next]);
        else x.type = -1;
        next++;
        if (x.type < 0) { snprintf(buf, sizeof buf, "%%!%c(MISSING)", verb); puts_(&t, buf); i = j; continue; }
        if ((verb == 'd' || verb == 'x' || verb == 'X' || verb == 'o' || verb == 'b') && x.type == V_INT) {
            snprintf(spec, sizeof spec, "%%%.*sll%c", (int)flags, f.ptr + i + 1, verb == 'b' ? 'd' : verb);
            snprintf(buf, sizeof buf, spec, (long long)x.i);
            puts_(&t, buf);
        } else if ((verb == 'f' || verb == 'e' || verb == 'g' || verb == 'F' || verb == 'E' || verb == 'G') && (x.type == V_DBL || x.type == V_INT)) {
            snprintf(spec, sizeof spec, "%%%.*s%c", (int)flags, f.ptr + i + 1, verb);
            snprintf(buf, sizeof buf, spec, x.type == V_INT ? (double)x.i : x.d);
            puts_(&t, buf);
        } else if (verb == 'q' && x.type == V_STR) {
            put_json_string(&t, x.s);
        } else if (verb == 't' && x.type == V_BOOL) {
            puts_(&t, x.i ? "true" : "false");
        } else {
            text v = {0};
            put_text(&v, &x);
            snprintf(spec, sizeof spec, "%%%.*s.*s", (int)flags, f.ptr + i + 1);
            if (flags && !v.failed) {
                snprintf(buf, sizeof buf, spec, (int)v.len, v.p ? v.p : "");
                puts_(&t, buf);
            } else {
                put(&t, v.p ? v.p : "", v.len);
            }
            free(v.p);
        }
        i = j;
    }
    return text_out(r, &t, out);
}

/* --- Converters: types -------------------------------------------------------------------- */

static int f_is(runner *r, xvalue *a, xvalue *out, int type) {
    (void)r;
    out->type = V_BOOL;
    out->i = a[0].type == type;
    return 0;
}
static int f_is_string(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return f_is(r, a, out, V_STR); }
static int f_is_int(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return f_is(r, a, out, V_INT); }
static int f_is_double(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return f_is(r, a, out, V_DBL); }
static int f_is_bool(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return f_is(r, a, out, V_BOOL); }
static int f_is_map(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return f_is(r, a, out, V_MAP); }
static int f_is_list(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return f_is(r, a, out, V_LIST); }

static int f_is_match(runner *r, const node *call, xvalue *a, xvalue *out) {
    char buf[64];
    spanhost_str s = a[0].s;
    out->type = V_BOOL;
    out->i = 0;
    if (a[0].type == V_INT) s.ptr = buf, s.len = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)a[0].i);
    else if (a[0].type == V_DBL || a[0].type == V_BOOL) {
        spanhost_str t;
        if (ottl_to_text(r, &a[0], &t) != 0) return -1;
        s = t;
    } else if (a[0].type != V_STR) return 0;
    if (need_pattern(r, call, "IsMatch") != 0) return -1;
    out->i = ottl_match(call, &call->re, s, 0, NULL);
    return 0;
}

static int f_string(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    if (a[0].type == V_NIL) return 0;
    spanhost_str s;
    if (ottl_to_text(r, &a[0], &s) != 0) return -1;
    set_str(out, s.ptr, s.len);
    return 0;
}

static int f_int(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    switch (a[0].type) {
    case V_INT: *out = a[0]; return 0;
    case V_DBL:
        if (!(a[0].d > -9223372036854775808.0 && a[0].d < 9223372036854775808.0)) return ottl_fail(r, "Int: %g is out of range", a[0].d);
        out->type = V_INT;
        out->i = (int64_t)a[0].d;
        return 0;
    case V_BOOL: out->type = V_INT; out->i = a[0].i; return 0;
    case V_STR: {
        char buf[64], *end;
        if (!a[0].s.len || a[0].s.len >= sizeof buf) return 0;
        memcpy(buf, a[0].s.ptr, a[0].s.len);
        buf[a[0].s.len] = 0;
        long long v = strtoll(buf, &end, 10);
        if (*end) return 0; /* not a whole number: nil, as in the Collector */
        out->type = V_INT;
        out->i = v;
        return 0;
    }
    default: return 0;
    }
}

static int f_double(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)r;
    switch (a[0].type) {
    case V_DBL: *out = a[0]; return 0;
    case V_INT: case V_BOOL: out->type = V_DBL; out->d = (double)a[0].i; return 0;
    case V_STR: {
        char buf[64], *end;
        if (!a[0].s.len || a[0].s.len >= sizeof buf) return 0;
        memcpy(buf, a[0].s.ptr, a[0].s.len);
        buf[a[0].s.len] = 0;
        double v = strtod(buf, &end);
        if (*end) return 0;
        out->type = V_DBL;
        out->d = v;
        return 0;
    }
    default: return 0;
    }
}

static int f_len(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    out->type = V_INT;
    switch (a[0].type) {
    case V_STR: case V_BYTES: out->i = (int64_t)a[0].s.len; return 0;
    case V_MAP: out->i = (int64_t)a[0].map->count; return 0;
    case V_LIST: out->i = (int64_t)a[0].list->count; return 0;
    default: return ottl_fail(r, "Len: the value is a %s: Len takes a string, map or list", ottl_type_name(a[0].type));
    }
}

static int f_log(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    double x;
    if (a[0].type == V_INT) x = (double)a[0].i;
    else if (a[0].type == V_DBL) x = a[0].d;
    else return ottl_fail(r, "Log: expected a number but got %s", ottl_type_name(a[0].type));
    if (x <= 0) return ottl_fail(r, "Log: the value must be greater than 0");
    out->type = V_DBL;
    out->d = log(x);
    return 0;
}

static int f_hex(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    uint8_t buf[8];
    const uint8_t *p = buf;
    size_t n = 8;
    uint64_t bits = 0;
    switch (a[0].type) {
    case V_INT: bits = (uint64_t)a[0].i; break;
    case V_DBL: memcpy(&bits, &a[0].d, 8); break;
    case V_BOOL: buf[0] = (uint8_t)a[0].i; n = 1; break;
    case V_STR: case V_BYTES: p = (const uint8_t *)a[0].s.ptr; n = a[0].s.len; break;
    default: return ottl_fail(r, "Hex: unsupported type %s", ottl_type_name(a[0].type));
    }
    if (a[0].type == V_INT || a[0].type == V_DBL)
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(bits >> (56 - 8 * i)); /* big-endian, as Go's binary.Write */
    text t = {0};
    put_hex(&t, p, n);
    return text_out(r, &t, out);
}

static int f_id(runner *r, xvalue *a, xvalue *out, size_t n, const char *fn) {
    if (a[0].type != V_BYTES || a[0].s.len != n) return ottl_fail(r, "%s: expected %zu bytes (0x...)", fn, n);
    *out = a[0];
    out->id = 1;
    return 0;
}
static int f_trace_id(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return f_id(r, a, out, 16, "TraceID"); }
static int f_span_id(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return f_id(r, a, out, 8, "SpanID"); }

static int f_is_root_span(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)a;
    static const uint8_t zero[8];
    if (!r->t->span) return ottl_fail(r, "IsRootSpan: there is no span");
    out->type = V_BOOL;
    out->i = !memcmp(r->t->span->parent_span_id, zero, 8);
    return 0;
}

static int f_uuid(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call, (void)a;
    uint8_t b[16];
    if (RAND_bytes(b, sizeof b) != 1) return ottl_fail(r, "UUID: no random bytes");
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    char buf[37];
    snprintf(buf, sizeof buf, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
             b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return out_text(r, out, buf, 36);
}

static int f_is_valid_luhn(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    char buf[32];
    spanhost_str s = a[0].s;
    if (a[0].type == V_INT) {
        if (a[0].i < 0) return ottl_fail(r, "IsValidLuhn: the number cannot be negative");
        s.ptr = buf;
        s.len = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)a[0].i);
    } else if (a[0].type != V_STR) {
        return ottl_fail(r, "IsValidLuhn: expected a string or int but got %s", ottl_type_name(a[0].type));
    }
    if (!s.len) return ottl_fail(r, "IsValidLuhn: the value is empty");
    int sum = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[s.len - 1 - i];
        if (!isdigit((unsigned char)c)) return ottl_fail(r, "IsValidLuhn: the value must contain only digits");
        int d = c - '0';
        if (i % 2) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    out->type = V_BOOL;
    out->i = sum % 10 == 0;
    return 0;
}

/* --- Converters: hashes ------------------------------------------------------------------- */

static int digest(runner *r, const EVP_MD *md, xvalue *a, xvalue *out, const char *fn) {
    spanhost_str s;
    unsigned char sum[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (want_str(r, fn, &a[0], &s) != 0) return -1;
    if (EVP_Digest(s.ptr ? s.ptr : "", s.len, sum, &len, md, NULL) != 1) return ottl_fail(r, "%s: the digest failed", fn);
    text t = {0};
    put_hex(&t, sum, len);
    return text_out(r, &t, out);
}
static int f_sha1(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return digest(r, EVP_sha1(), a, out, "SHA1"); }
static int f_sha256(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return digest(r, EVP_sha256(), a, out, "SHA256"); }
static int f_sha512(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return digest(r, EVP_sha512(), a, out, "SHA512"); }
static int f_md5(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return digest(r, EVP_md5(), a, out, "MD5"); }

/* FNV-1a, 64 bits, as a signed integer (the Collector's FNV). */
static int f_fnv(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    if (want_str(r, "FNV", &a[0], &s) != 0) return -1;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < s.len; i++) h = (h ^ (uint8_t)s.ptr[i]) * 0x100000001b3ull;
    out->type = V_INT;
    out->i = (int64_t)h;
    return 0;
}

static uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t fmix64(uint64_t k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ull; k ^= k >> 33;
    return k;
}

/* MurmurHash3 x86 32-bit, seed 0. */
static uint32_t murmur3_32(const uint8_t *p, size_t n) {
    uint32_t h = 0, c1 = 0xcc9e2d51, c2 = 0x1b873593, k;
    size_t blocks = n / 4;
    for (size_t i = 0; i < blocks; i++) {
        memcpy(&k, p + 4 * i, 4);
        k *= c1; k = rotl32(k, 15); k *= c2;
        h ^= k; h = rotl32(h, 13); h = h * 5 + 0xe6546b64;
    }
    const uint8_t *tail = p + 4 * blocks;
    k = 0;
    switch (n & 3) {
    case 3: k ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2: k ^= (uint32_t)tail[1] << 8; /* fall through */
    case 1: k ^= tail[0]; k *= c1; k = rotl32(k, 15); k *= c2; h ^= k;
    }
    h ^= (uint32_t)n;
    h ^= h >> 16; h *= 0x85ebca6b; h ^= h >> 13; h *= 0xc2b2ae35; h ^= h >> 16;
    return h;
}

/* MurmurHash3 x64 128-bit, seed 0. */
static void murmur3_128(const uint8_t *p, size_t n, uint64_t *o1, uint64_t *o2) {
    uint64_t h1 = 0, h2 = 0, c1 = 0x87c37b91114253d5ull, c2 = 0x4cf5ad432745937full, k1, k2;
    size_t blocks = n / 16;
    for (size_t i = 0; i < blocks; i++) {
        memcpy(&k1, p + 16 * i, 8);
        memcpy(&k2, p + 16 * i + 8, 8);
        k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1;
        h1 = rotl64(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
        k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2;
        h2 = rotl64(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
    }
    const uint8_t *tail = p + 16 * blocks;
    k1 = k2 = 0;
    switch (n & 15) {
    case 15: k2 ^= (uint64_t)tail[14] << 48; /* fall through */
    case 14: k2 ^= (uint64_t)tail[13] << 40; /* fall through */
    case 13: k2 ^= (uint64_t)tail[12] << 32; /* fall through */
    case 12: k2 ^= (uint64_t)tail[11] << 24; /* fall through */
    case 11: k2 ^= (uint64_t)tail[10] << 16; /* fall through */
    case 10: k2 ^= (uint64_t)tail[9] << 8; /* fall through */
    case 9: k2 ^= (uint64_t)tail[8]; k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2; /* fall through */
    case 8: k1 ^= (uint64_t)tail[7] << 56; /* fall through */
    case 7: k1 ^= (uint64_t)tail[6] << 48; /* fall through */
    case 6: k1 ^= (uint64_t)tail[5] << 40; /* fall through */
    case 5: k1 ^= (uint64_t)tail[4] << 32; /* fall through */
    case 4: k1 ^= (uint64_t)tail[3] << 24; /* fall through */
    case 3: k1 ^= (uint64_t)tail[2] << 16; /* fall through */
    case 2: k1 ^= (uint64_t)tail[1] << 8; /* fall through */
    case 1: k1 ^= (uint64_t)tail[0]; k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1;
    }
    h1 ^= (uint64_t)n; h2 ^= (uint64_t)n;
    h1 += h2; h2 += h1;
    h1 = fmix64(h1); h2 = fmix64(h2);
    h1 += h2; h2 += h1;
    *o1 = h1;
    *o2 = h2;
}

static int f_murmur3(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    if (want_str(r, "Murmur3Hash", &a[0], &s) != 0) return -1;
    uint32_t h = murmur3_32((const uint8_t *)s.ptr, s.len);
    uint8_t b[4] = {(uint8_t)h, (uint8_t)(h >> 8), (uint8_t)(h >> 16), (uint8_t)(h >> 24)};
    text t = {0};
    put_hex(&t, b, 4);
    return text_out(r, &t, out);
}

static int f_murmur3_128(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    uint64_t h[2];
    if (want_str(r, "Murmur3Hash128", &a[0], &s) != 0) return -1;
    murmur3_128((const uint8_t *)s.ptr, s.len, &h[0], &h[1]);
    uint8_t b[16];
    for (int i = 0; i < 16; i++) b[i] = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
    text t = {0};
    put_hex(&t, b, 16);
    return text_out(r, &t, out);
}

/* --- Converters: encodings and parsing ---------------------------------------------------- */

static int base64_decode(runner *r, spanhost_str s, xvalue *out, const char *fn) {
    uint8_t *buf = (uint8_t *)ottl_alloc(r, s.len);
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (!buf) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < s.len; i++) {
        int c = (unsigned char)s.ptr[i], v;
        if (c == '=') break;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+' || c == '-') v = 62;
        else if (c == '/' || c == '_') v = 63;
        else return ottl_fail(r, "%s: illegal base64 data at input byte %zu", fn, i);
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (!sh_utf8_valid((const char *)buf, n)) return ottl_fail(r, "%s: the decoded bytes are not UTF-8 text", fn);
    set_str(out, (const char *)buf, n);
    return 0;
}

static int f_base64_decode(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    return want_str(r, "Base64Decode", &a[0], &s) != 0 ? -1 : base64_decode(r, s, out, "Base64Decode");
}

static int f_decode(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s, enc;
    if (want_str(r, "Decode", &a[0], &s) != 0 || want_str(r, "Decode", &a[1], &enc) != 0) return -1;
    if ((enc.len == 6 && !strncasecmp(enc.ptr, "base64", 6)) || (enc.len == 9 && !strncasecmp(enc.ptr, "base64-url", 9)) ||
        (enc.len == 10 && !strncasecmp(enc.ptr, "base64-raw", 10)) || (enc.len == 14 && !strncasecmp(enc.ptr, "base64-raw-url", 14)))
        return base64_decode(r, s, out, "Decode");
    if ((enc.len == 5 && !strncasecmp(enc.ptr, "utf-8", 5)) || (enc.len == 5 && !strncasecmp(enc.ptr, "ascii", 5))) {
        *out = a[0];
        return 0;
    }
    return ottl_fail(r, "Decode: the encoding %.*s is not supported yet (base64, base64-url, base64-raw, base64-raw-url, utf-8 are)", (int)enc.len, enc.ptr);
}

static int json_value(runner *r, jparser *j, spanhost_value *v);

static int json_value(runner *r, jparser *j, spanhost_value *v) {
    memset(v, 0, sizeof *v);
    if (++j->depth > MAX_DEPTH) return jfail(j, "nested too deeply");
    int c = peek(j), rc = 0;
    if (c == '{') {
        int first = 1;
        spanhost_str key;
        v->type = SPANHOST_VALUE_KVLIST;
        if (jobject_begin(j) != 0) return -1;
        size_t cap = 0;
        while ((rc = jobject_next(j, &key, &first)) > 0) { /* a key given twice is kept twice, as read */
            spanhost_kv *items = (spanhost_kv *)grow(j, v->as.kvlist_value.items, v->as.kvlist_value.count, &cap, sizeof *items);
            if (!items) return -1;
            v->as.kvlist_value.items = items;
            items[v->as.kvlist_value.count].key = key;
            if (json_value(r, j, &items[v->as.kvlist_value.count].value) != 0) return -1;
            v->as.kvlist_value.count++;
        }
        if (rc < 0) return -1;
    } else if (c == '[') {
        int first = 1, is_null = 0;
        size_t cap = 0;
        v->type = SPANHOST_VALUE_ARRAY;
        if (jarray_begin(j, &is_null) != 0) return -1;
        while ((rc = jarray_next(j, &first)) > 0) {
            spanhost_value *items = (spanhost_value *)grow(j, v->as.array_value.items, v->as.array_value.count, &cap, sizeof *items);
            if (!items) return -1;
            v->as.array_value.items = items;
            if (json_value(r, j, &items[v->as.array_value.count]) != 0) return -1;
            v->as.array_value.count++;
        }
        if (rc < 0) return -1;
    } else if (c == '"') {
        v->type = SPANHOST_VALUE_STRING;
        if (jstring(j, &v->as.string_value) != 0) return -1;
    } else if (c == 't' || c == 'f') {
        v->type = SPANHOST_VALUE_BOOL;
        if (jbool(j, &v->as.bool_value) != 0) return -1;
    } else if (c == 'n') {
        if (jtake_null(j) != 1) return jfail(j, "expected a value");
    } else {
        v->type = SPANHOST_VALUE_DOUBLE; /* every JSON number is a double, as in the Collector */
        if (jdouble(j, &v->as.double_value) != 0) return -1;
    }
    j->depth--;
    return 0;
}

static int f_parse_json(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    char err[200];
    if (want_str(r, "ParseJSON", &a[0], &s) != 0) return -1;
    jparser j = {s.ptr, s.ptr + s.len, s.ptr, ottl_batch(r), err, sizeof err, 0, 0, "JSON"};
    spanhost_value *v = (spanhost_value *)ottl_alloc(r, sizeof *v);
    if (!v) return ottl_fail(r, "out of memory");
    if (json_value(r, &j, v) != 0) return ottl_fail(r, "ParseJSON: %s", err);
    ws(&j);
    if (j.p != j.end) return ottl_fail(r, "ParseJSON: text after the JSON value");
    if (v->type != SPANHOST_VALUE_KVLIST && v->type != SPANHOST_VALUE_ARRAY) return ottl_fail(r, "ParseJSON: the JSON must be an object or an array");
    ottl_from_value(out, v);
    return 0;
}

/* Splits `s` at `delim` outside "double" or 'single' quotes, dropping the quotes of a part that
 * is quoted whole; calls back each part. */
static int split_quoted(runner *r, spanhost_str s, spanhost_str delim, spanhost_value_array **parts) {
    size_t n = 0, cap = 8;
    spanhost_value *items = (spanhost_value *)malloc(cap * sizeof *items);
    if (!items) return ottl_fail(r, "out of memory");
    size_t start = 0;
    char quote = 0;
    for (size_t i = 0; i <= s.len; i++) {
        if (i < s.len && quote) { if (s.ptr[i] == quote) quote = 0; continue; }
        if (i < s.len && (s.ptr[i] == '"' || s.ptr[i] == '\'')) { quote = s.ptr[i]; continue; }
        if (i < s.len && !(delim.len && i + delim.len <= s.len && !memcmp(s.ptr + i, delim.ptr, delim.len))) continue;
        if (n == cap) {
            spanhost_value *grown = (spanhost_value *)realloc(items, (cap *= 2) * sizeof *items);
            if (!grown) { free(items); return ottl_fail(r, "out of memory"); }
            items = grown;
        }
        memset(&items[n], 0, sizeof items[n]);
        items[n].type = SPANHOST_VALUE_STRING;
        items[n].as.string_value.ptr = s.ptr + start;
        items[n].as.string_value.len = i - start;
        n++;
        if (i < s.len) i += delim.len - 1;
        start = i + 1;
    }
    spanhost_value_array *l = new_list(r, n);
    if (!l) { free(items); return ottl_fail(r, "out of memory"); }
    memcpy(l->items, items, n * sizeof *items);
    free(items);
    *parts = l;
    return 0;
}

static spanhost_str unquote(spanhost_str s) {
    while (s.len && s.ptr[0] == ' ') s.ptr++, s.len--;
    while (s.len && s.ptr[s.len - 1] == ' ') s.len--;
    if (s.len >= 2 && (s.ptr[0] == '"' || s.ptr[0] == '\'') && s.ptr[s.len - 1] == s.ptr[0]) s.ptr++, s.len -= 2;
    return s;
}

static int f_parse_key_value(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s, delim = {"=", 1}, pair = {" ", 1};
    if (want_str(r, "ParseKeyValue", &a[0], &s) != 0) return -1;
    if (GIVEN(a[1]) && want_str(r, "ParseKeyValue", &a[1], &delim) != 0) return -1;
    if (GIVEN(a[2]) && want_str(r, "ParseKeyValue", &a[2], &pair) != 0) return -1;
    if (!s.len) return ottl_fail(r, "ParseKeyValue: cannot parse from empty target");
    if (!delim.len || !pair.len) return ottl_fail(r, "ParseKeyValue: the delimiters cannot be empty");
    if (delim.len == pair.len && !memcmp(delim.ptr, pair.ptr, delim.len)) return ottl_fail(r, "ParseKeyValue: pair delimiter cannot be equal to key value delimiter");
    spanhost_value_array *parts;
    if (split_quoted(r, s, pair, &parts) != 0) return -1;
    spanhost_kv_list *m = new_map(r);
    if (!m) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < parts->count; i++) {
        spanhost_str p = parts->items[i].as.string_value;
        if (!p.len) continue;
        const char *d = memmem(p.ptr, p.len, delim.ptr, delim.len);
        if (!d) return ottl_fail(r, "ParseKeyValue: cannot split \"%.*s\" into 2 items, got 1 item(s)", (int)p.len, p.ptr);
        spanhost_str k = {p.ptr, (size_t)(d - p.ptr)}, v = {d + delim.len, p.len - (size_t)(d - p.ptr) - delim.len};
        k = unquote(k);
        v = unquote(v);
        if (map_put_str(r, m, k.ptr, k.len, v.ptr, v.len) != 0) return -1;
    }
    out->type = V_MAP;
    out->map = m;
    return 0;
}

static int f_to_key_value_string(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str delim = {"=", 1}, pair = {" ", 1};
    if (want_map(r, "ToKeyValueString", &a[0]) != 0) return -1;
    if (GIVEN(a[1]) && want_str(r, "ToKeyValueString", &a[1], &delim) != 0) return -1;
    if (GIVEN(a[2]) && want_str(r, "ToKeyValueString", &a[2], &pair) != 0) return -1;
    int sorted = GIVEN(a[3]) && a[3].type == V_BOOL && a[3].i;
    const spanhost_kv_list *m = a[0].map;
    const spanhost_kv **items = (const spanhost_kv **)malloc((m->count ? m->count : 1) * sizeof *items);
    if (!items) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < m->count; i++) items[i] = &m->items[i];
    if (sorted) qsort(items, m->count, sizeof *items, key_order);
    text t = {0};
    for (size_t i = 0; i < m->count; i++) {
        for (int part = 0; part < 2; part++) {
            text piece = {0};
            xvalue x;
            if (part == 0) set_str(&x, items[i]->key.ptr, items[i]->key.len);
            else ottl_from_value(&x, &items[i]->value);
            put_text(&piece, &x);
            int needs_quotes = piece.len && ((delim.len && memmem(piece.p, piece.len, delim.ptr, delim.len)) ||
                                             (pair.len && memmem(piece.p, piece.len, pair.ptr, pair.len)));
            if (i && part == 0) put(&t, pair.ptr, pair.len);
            if (part == 1) put(&t, delim.ptr, delim.len);
            if (needs_quotes) put(&t, "\"", 1);
            put(&t, piece.p ? piece.p : "", piece.len);
            if (needs_quotes) put(&t, "\"", 1);
            free(piece.p);
        }
    }
    free(items);
    return text_out(r, &t, out);
}

static int f_parse_csv(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s, header, delim = {",", 1}, hdelim, mode = {"strict", 6};
    if (want_str(r, "ParseCSV", &a[0], &s) != 0 || want_str(r, "ParseCSV", &a[1], &header) != 0) return -1;
    if (GIVEN(a[2]) && want_str(r, "ParseCSV", &a[2], &delim) != 0) return -1;
    hdelim = delim;
    if (GIVEN(a[3]) && want_str(r, "ParseCSV", &a[3], &hdelim) != 0) return -1;
    if (GIVEN(a[4]) && want_str(r, "ParseCSV", &a[4], &mode) != 0) return -1;
    int lazy = mode.len == 11 && !memcmp(mode.ptr, "lazyQuotes", 10), ignore = mode.len == 12 && !memcmp(mode.ptr, "ignoreQuotes", 12);
    if (!lazy && !ignore && !(mode.len == 6 && !memcmp(mode.ptr, "strict", 6))) return ottl_fail(r, "ParseCSV: unknown mode: %.*s", (int)mode.len, mode.ptr);
    spanhost_value_array *names, *values;
    if (split_quoted(r, header, hdelim, &names) != 0 || split_quoted(r, s, delim, &values) != 0) return -1;
    if (names->count != values->count)
        return ottl_fail(r, "ParseCSV: wrong number of fields: expected %zu, found %zu", names->count, values->count);
    spanhost_kv_list *m = new_map(r);
    if (!m) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < names->count; i++) {
        spanhost_str k = unquote(names->items[i].as.string_value), v = values->items[i].as.string_value;
        if (!ignore) v = unquote(v);
        if (map_put_str(r, m, k.ptr, k.len, v.ptr, v.len) != 0) return -1;
    }
    out->type = V_MAP;
    out->map = m;
    return 0;
}

static int f_extract_patterns(runner *r, const node *call, xvalue *a, xvalue *out) {
    spanhost_str s;
    if (want_str(r, "ExtractPatterns", &a[0], &s) != 0 || need_pattern(r, call, "ExtractPatterns") != 0) return -1;
    regmatch_t m[32];
    size_t groups = call->ngroups + 1 < 32 ? call->ngroups + 1 : 32;
    spanhost_kv_list *map = new_map(r);
    if (!map) return ottl_fail(r, "out of memory");
    out->type = V_MAP;
    out->map = map;
    if (!ottl_match(call, &call->re, s, groups, m)) return 0;
    for (size_t g = 1; g < groups; g++) {
        const char *name = call->group_names[g - 1];
        if (!name || m[g].rm_so < 0) continue;
        if (map_put_str(r, map, name, strlen(name), s.ptr + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so)) != 0) return -1;
    }
    return 0;
}

/* --- Converters: lists and maps ----------------------------------------------------------- */

typedef struct sort_rule {
    int kind; /* 0 numbers, 1 strings, 2 bools, 3 mixed: by text */
    int desc;
} sort_rule;

static double num_of(const spanhost_value *v) { return v->type == SPANHOST_VALUE_INT ? (double)v->as.int_value : v->as.double_value; }

typedef struct sort_item {
    spanhost_value value;
    char *text;
    size_t len, index;
} sort_item;

static int sort_order(const void *pa, const void *pb, void *context) {
    const sort_item *a = (const sort_item *)pa, *b = (const sort_item *)pb;
    const sort_rule *rule = (const sort_rule *)context;
    int c;
    if (rule->kind == 0) { double x = num_of(&a->value), y = num_of(&b->value); c = (x > y) - (x < y); }
    else if (rule->kind == 2) c = a->value.as.bool_value - b->value.as.bool_value;
    else {
        size_t n = a->len < b->len ? a->len : b->len;
        c = n ? memcmp(a->text, b->text, n) : 0;
        if (!c) c = (a->len > b->len) - (a->len < b->len);
    }
    if (rule->desc) c = -c;
    return c ? c : (a->index > b->index) - (a->index < b->index); /* stable */
}

static int f_sort(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str order = {"asc", 3};
    if (a[0].type != V_LIST) return ottl_fail(r, "Sort: expected a list but got %s", ottl_type_name(a[0].type));
    if (GIVEN(a[1]) && want_str(r, "Sort", &a[1], &order) != 0) return -1;
    int desc = order.len == 4 && !memcmp(order.ptr, "desc", 4);
    if (!desc && !(order.len == 3 && !memcmp(order.ptr, "asc", 3))) return ottl_fail(r, "Sort: invalid sort order '%.*s', valid options are 'asc' or 'desc'", (int)order.len, order.ptr);
    size_t n = a[0].list->count;
    sort_item *items = (sort_item *)calloc(n ? n : 1, sizeof *items);
    if (!items) return ottl_fail(r, "out of memory");
    int numbers = 1, strings = 1, bools = 1;
    for (size_t i = 0; i < n; i++) {
        const spanhost_value *v = &a[0].list->items[i];
        numbers &= v->type == SPANHOST_VALUE_INT || v->type == SPANHOST_VALUE_DOUBLE;
        strings &= v->type == SPANHOST_VALUE_STRING;
        bools &= v->type == SPANHOST_VALUE_BOOL;
        items[i].value = *v;
        items[i].index = i;
        text t = {0};
        xvalue x;
        ottl_from_value(&x, v);
        put_text(&t, &x);
        items[i].text = t.p;
        items[i].len = t.len;
    }
    spanhost_value_array *l = new_list(r, n);
    if (l) {
        sort_rule rule = {numbers ? 0 : strings ? 1 : bools ? 2 : 3, desc};
        qsort_r(items, n, sizeof *items, sort_order, &rule);
        for (size_t i = 0; i < n; i++) l->items[i] = items[i].value;
    }
    for (size_t i = 0; i < n; i++) free(items[i].text);
    free(items);
    if (!l) return ottl_fail(r, "out of memory");
    out->type = V_LIST;
    out->list = l;
    return 0;
}

static int f_keys(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    if (want_map(r, "Keys", &a[0]) != 0) return -1;
    spanhost_value_array *l = new_list(r, a[0].map->count);
    if (!l) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < a[0].map->count; i++) {
        l->items[i].type = SPANHOST_VALUE_STRING;
        l->items[i].as.string_value = a[0].map->items[i].key;
    }
    out->type = V_LIST;
    out->list = l;
    return 0;
}

static int f_values(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    if (want_map(r, "Values", &a[0]) != 0) return -1;
    spanhost_value_array *l = new_list(r, a[0].map->count);
    if (!l) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < a[0].map->count; i++) l->items[i] = a[0].map->items[i].value;
    out->type = V_LIST;
    out->list = l;
    return 0;
}

static int f_contains_value(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    if (a[0].type != V_LIST) return ottl_fail(r, "ContainsValue: expected a list but got %s", ottl_type_name(a[0].type));
    out->type = V_BOOL;
    out->i = 0;
    for (size_t i = 0; i < a[0].list->count && !out->i; i++) {
        xvalue x;
        ottl_from_value(&x, &a[0].list->items[i]);
        out->i = ottl_compare(CMP_EQ, &x, &a[1]);
    }
    return 0;
}

static int f_index(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    out->type = V_INT;
    out->i = -1;
    if (a[0].type == V_STR) {
        spanhost_str v;
        if (want_str(r, "Index", &a[1], &v) != 0) return -1;
        const char *at = !v.len ? a[0].s.ptr : a[0].s.len ? memmem(a[0].s.ptr, a[0].s.len, v.ptr, v.len) : NULL;
        if (at) out->i = at - a[0].s.ptr;
        return 0;
    }
    if (a[0].type != V_LIST) return ottl_fail(r, "Index: expected a string or list but got %s", ottl_type_name(a[0].type));
    for (size_t i = 0; i < a[0].list->count; i++) {
        xvalue x;
        ottl_from_value(&x, &a[0].list->items[i]);
        if (ottl_compare(CMP_EQ, &x, &a[1])) { out->i = (int64_t)i; break; }
    }
    return 0;
}

/* The value at `path` (a list of keys) inside a map item. */
static const spanhost_value *dig(const spanhost_value *v, const spanhost_value_array *path) {
    for (size_t i = 0; path && i < path->count; i++) {
        if (v->type != SPANHOST_VALUE_KVLIST || path->items[i].type != SPANHOST_VALUE_STRING) return NULL;
        if (!(v = ottl_find(&v->as.kvlist_value, path->items[i].as.string_value))) return NULL;
    }
    return v;
}

static int f_slice_to_map(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    if (a[0].type != V_LIST) return ottl_fail(r, "SliceToMap: expected a list but got %s", ottl_type_name(a[0].type));
    const spanhost_value_array *key_path = GIVEN(a[1]) && a[1].type == V_LIST ? a[1].list : NULL;
    const spanhost_value_array *value_path = GIVEN(a[2]) && a[2].type == V_LIST ? a[2].list : NULL;
    spanhost_kv_list *m = new_map(r);
    if (!m) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < a[0].list->count; i++) {
        const spanhost_value *item = &a[0].list->items[i];
        spanhost_str key;
        char index[24];
        if (key_path) {
            const spanhost_value *k = dig(item, key_path);
            if (!k || k->type != SPANHOST_VALUE_STRING) return ottl_fail(r, "SliceToMap: could not extract key from element %zu", i);
            key = k->as.string_value;
        } else {
            key.len = (size_t)snprintf(index, sizeof index, "%zu", i);
            key.ptr = index;
        }
        const spanhost_value *v = value_path ? dig(item, value_path) : item;
        if (!v) return ottl_fail(r, "SliceToMap: could not extract value from element %zu", i);
        if (map_put(r, m, key, v) != 0) return -1;
    }
    out->type = V_MAP;
    out->map = m;
    return 0;
}

/* --- Converters: time --------------------------------------------------------------------- */

#define NS_PER_S 1000000000LL

/* Go's duration text: "1h30m", "1.5s", "300ms", "-2us". */
static int parse_duration(spanhost_str s, int64_t *out) {
    static const struct { const char *unit; double ns; } units[] = {
        {"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    size_t i = 0;
    int neg = 0;
    double total = 0;
    if (i < s.len && (s.ptr[i] == '-' || s.ptr[i] == '+')) neg = s.ptr[i++] == '-';
    if (i == s.len) return -1;
    if (s.len - i == 1 && s.ptr[i] == '0') { *out = 0; return 0; }
    while (i < s.len) {
        char buf[40];
        size_t n = 0;
        while (i < s.len && (isdigit((unsigned char)s.ptr[i]) || s.ptr[i] == '.') && n < sizeof buf - 1) buf[n++] = s.ptr[i++];
        if (!n) return -1;
        buf[n] = 0;
        double value = strtod(buf, NULL);
        size_t best = 0, best_len = 0;
        for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
            size_t ul = strlen(units[u].unit);
            if (ul > best_len && s.len - i >= ul && !memcmp(s.ptr + i, units[u].unit, ul)) best = u, best_len = ul;
        }
        if (!best_len) return -1;
        total += value * units[best].ns;
        i += best_len;
    }
    if (total > 9.2e18) return -1;
    *out = (int64_t)(neg ? -total : total);
    return 0;
}

static int f_duration(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s;
    if (want_str(r, "Duration", &a[0], &s) != 0) return -1;
    if (parse_duration(s, &out->i) != 0) return ottl_fail(r, "Duration: invalid duration \"%.*s\"", (int)s.len, s.ptr);
    out->type = V_DUR;
    return 0;
}

static const char *const month_names[] = {"January", "February", "March", "April", "May", "June", "July",
                                          "August", "September", "October", "November", "December"};

static int read_num(spanhost_str s, size_t *i, int max_digits, long *out) {
    long v = 0;
    int n = 0;
    while (*i < s.len && n < max_digits && isdigit((unsigned char)s.ptr[*i])) v = v * 10 + (s.ptr[(*i)++] - '0'), n++;
    *out = v;
    return n ? 0 : -1;
}

/* strptime-style text (the Collector's ctime directives) to nanoseconds since 1970, UTC. A
 * date left out is 1970-01-01. */
static int parse_time(spanhost_str s, spanhost_str f, int64_t *out) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = 70;
    tm.tm_mday = 1;
    long v, frac = 0, offset = 0;
    int pm = -1;
    size_t i = 0;
    for (size_t k = 0; k < f.len; k++) {
        if (f.ptr[k] != '%' || k + 1 >= f.len) {
            if (i >= s.len || s.ptr[i] != f.ptr[k]) return -1;
            i++;
            continue;
        }
        char d = f.ptr[++k];
        switch (d) {
        case 'Y': if (read_num(s, &i, 4, &v)) return -1; tm.tm_year = (int)v - 1900; break;
        case 'y': if (read_num(s, &i, 2, &v)) return -1; tm.tm_year = (int)(v < 69 ? v + 100 : v); break;
        case 'm': if (read_num(s, &i, 2, &v)) return -1; tm.tm_mon = (int)v - 1; break;
        case 'd': case 'e': if (read_num(s, &i, 2, &v)) return -1; tm.tm_mday = (int)v; break;
        case 'H': case 'k': if (read_num(s, &i, 2, &v)) return -1; tm.tm_hour = (int)v; break;
        case 'I': case 'l': if (read_num(s, &i, 2, &v)) return -1; tm.tm_hour = (int)v % 12; break;
        case 'M': if (read_num(s, &i, 2, &v)) return -1; tm.tm_min = (int)v; break;
        case 'S': if (read_num(s, &i, 2, &v)) return -1; tm.tm_sec = (int)v; break;
        case 'j': if (read_num(s, &i, 3, &v)) return -1; tm.tm_mday = (int)v; break;
        case 'f': case 'L': case 's': {
            size_t start = i;
            if (d == 's') {
                if (read_num(s, &i, 19, &v)) return -1;
                *out = (int64_t)v * NS_PER_S;
                return i == s.len ? 0 : -1;
            }
            if (read_num(s, &i, 9, &v)) return -1;
            for (size_t n = i - start; n < 9; n++) v *= 10;
            frac = v;
            break;
        }
        case 'p':
            if (i + 2 > s.len) return -1;
            pm = toupper((unsigned char)s.ptr[i]) == 'P';
            i += 2;
            break;
        case 'b': case 'h': case 'B': {
            int found = -1;
            for (int m = 0; m < 12 && found < 0; m++) {
                size_t full = strlen(month_names[m]);
                if (d == 'B' && s.len - i >= full && !strncasecmp(s.ptr + i, month_names[m], full)) found = m, i += full;
                else if (d != 'B' && s.len - i >= 3 && !strncasecmp(s.ptr + i, month_names[m], 3)) found = m, i += 3;
            }
            if (found < 0) return -1;
            tm.tm_mon = found;
            break;
        }
        case 'a': case 'A':
            while (i < s.len && isalpha((unsigned char)s.ptr[i])) i++;
            break;
        case 'z': {
            if (i < s.len && s.ptr[i] == 'Z') { i++; break; }
            if (i >= s.len || (s.ptr[i] != '+' && s.ptr[i] != '-')) return -1;
            int sign = s.ptr[i++] == '-' ? -1 : 1;
            long hh, mm = 0;
            if (read_num(s, &i, 2, &hh)) return -1;
            if (i < s.len && s.ptr[i] == ':') i++;
            read_num(s, &i, 2, &mm);
            offset = sign * (hh * 3600 + mm * 60);
            break;
        }
        case 'Z':
            while (i < s.len && isalpha((unsigned char)s.ptr[i])) i++;
            break;
        case '%': if (i >= s.len || s.ptr[i] != '%') return -1; i++; break;
        default: return -1;
        }
    }
    if (i != s.len) return -1;
    if (pm == 1) tm.tm_hour += 12;
    int64_t secs = (int64_t)timegm(&tm) - offset;
    if (__builtin_mul_overflow(secs, NS_PER_S, out) || __builtin_add_overflow(*out, frac, out)) return -2;
    return 0;
}

static int f_time(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str s, f;
    if (want_str(r, "Time", &a[0], &s) != 0 || want_str(r, "Time", &a[1], &f) != 0) return -1;
    if (!f.len) return ottl_fail(r, "Time: format cannot be nil");
    if (GIVEN(a[2]) && !(a[2].type == V_STR && (a[2].s.len == 0 || (a[2].s.len == 3 && !memcmp(a[2].s.ptr, "UTC", 3)))))
        return ottl_fail(r, "Time: locations other than UTC are not supported yet");
    int rc = parse_time(s, f, &out->i);
    if (rc == -2) return ottl_fail(r, "Time: \"%.*s\" is out of range (1678 to 2262)", (int)s.len, s.ptr);
    if (rc != 0) return ottl_fail(r, "Time: \"%.*s\" does not match the format \"%.*s\"", (int)s.len, s.ptr, (int)f.len, f.ptr);
    out->type = V_TIME;
    return 0;
}

static int f_format_time(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    spanhost_str f;
    if (want_time(r, "FormatTime", &a[0]) != 0 || want_str(r, "FormatTime", &a[1], &f) != 0) return -1;
    int64_t secs = a[0].i / NS_PER_S, ns = a[0].i % NS_PER_S;
    if (ns < 0) secs--, ns += NS_PER_S;
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    text out_text_ = {0};
    for (size_t k = 0; k < f.len; k++) {
        char buf[64];
        if (f.ptr[k] != '%' || k + 1 >= f.len) { put(&out_text_, &f.ptr[k], 1); continue; }
        char d = f.ptr[++k];
        if (d == 'f') snprintf(buf, sizeof buf, "%06lld", (long long)(ns / 1000));
        else if (d == 'L') snprintf(buf, sizeof buf, "%03lld", (long long)(ns / 1000000));
        else if (d == 'N' || d == 'n') snprintf(buf, sizeof buf, "%09lld", (long long)ns);
        else {
            char spec[3] = {'%', d, 0};
            if (!strftime(buf, sizeof buf, spec, &tm)) buf[0] = 0;
        }
        puts_(&out_text_, buf);
    }
    return text_out(r, &out_text_, out);
}

static int f_now(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)r, (void)call, (void)a;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    out->type = V_TIME;
    out->i = (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
    return 0;
}

static int f_unix(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    int64_t secs, ns = 0;
    if (want_int(r, "Unix", &a[0], &secs) != 0 || (GIVEN(a[1]) && want_int(r, "Unix", &a[1], &ns) != 0)) return -1;
    out->type = V_TIME;
    if (__builtin_mul_overflow(secs, NS_PER_S, &out->i) || __builtin_add_overflow(out->i, ns, &out->i))
        return ottl_fail(r, "Unix: the time is out of range (1678 to 2262)");
    return 0;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

static int unix_as(runner *r, xvalue *a, xvalue *out, int64_t unit, const char *fn) {
    if (want_time(r, fn, &a[0]) != 0) return -1;
    out->type = V_INT;
    out->i = floor_div(a[0].i, unit);
    return 0;
}
static int f_unix_nano(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return unix_as(r, a, out, 1, "UnixNano"); }
static int f_unix_micro(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return unix_as(r, a, out, 1000, "UnixMicro"); }
static int f_unix_milli(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return unix_as(r, a, out, 1000000, "UnixMilli"); }
static int f_unix_seconds(runner *r, const node *c, xvalue *a, xvalue *out) { (void)c; return unix_as(r, a, out, NS_PER_S, "UnixSeconds"); }

static int f_truncate_time(runner *r, const node *call, xvalue *a, xvalue *out) {
    (void)call;
    if (want_time(r, "TruncateTime", &a[0]) != 0 || want_dur(r, "TruncateTime", &a[1]) != 0) return -1;
    *out = a[0];
    if (a[1].i > 0 && __builtin_mul_overflow(floor_div(a[0].i, a[1].i), a[1].i, &out->i)) return ottl_fail(r, "TruncateTime: out of range");
    return 0;
}

/* A part of a time: 0 year, 1 month, 2 day, 3 hour, 4 minute, 5 second, 6 nanosecond, 7 weekday. */
static int time_part(runner *r, xvalue *a, xvalue *out, int part, const char *fn) {
    if (want_time(r, fn, &a[0]) != 0) return -1;
    time_t t = (time_t)floor_div(a[0].i, NS_PER_S);
    struct tm tm;
    gmtime_r(&t, &tm);
    int64_t parts[] = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (a[0].i % NS_PER_S + NS_PER_S) % NS_PER_S, tm.tm_wday};
    out->type = V_INT;
    out->i = parts[part];
    return 0;
}
static int f_year(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return time_part(r, a, o, 0, "Year"); }
static int f_month(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return time_part(r, a, o, 1, "Month"); }
static int f_day(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return time_part(r, a, o, 2, "Day"); }
static int f_hour(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return time_part(r, a, o, 3, "Hour"); }
static int f_minute(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return time_part(r, a, o, 4, "Minute"); }
static int f_second(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return time_part(r, a, o, 5, "Second"); }
static int f_nanosecond(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return time_part(r, a, o, 6, "Nanosecond"); }
static int f_weekday(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return time_part(r, a, o, 7, "Weekday"); }

/* A duration in a unit: as a double (Hours, Minutes, Seconds) or a whole int. */
static int duration_in(runner *r, xvalue *a, xvalue *out, double unit, int whole, const char *fn) {
    if (want_dur(r, fn, &a[0]) != 0) return -1;
    if (whole) {
        out->type = V_INT;
        out->i = a[0].i / (int64_t)unit;
    } else {
        out->type = V_DBL;
        out->d = (double)a[0].i / unit;
    }
    return 0;
}
static int f_hours(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return duration_in(r, a, o, 3600e9, 0, "Hours"); }
static int f_minutes(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return duration_in(r, a, o, 60e9, 0, "Minutes"); }
static int f_seconds(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return duration_in(r, a, o, 1e9, 0, "Seconds"); }
static int f_milliseconds(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return duration_in(r, a, o, 1e6, 1, "Milliseconds"); }
static int f_microseconds(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return duration_in(r, a, o, 1e3, 1, "Microseconds"); }
static int f_nanoseconds(runner *r, const node *c, xvalue *a, xvalue *o) { (void)c; return duration_in(r, a, o, 1, 1, "Nanoseconds"); }

/* --- The table ---------------------------------------------------------------------------- */

static const ottl_builtin builtins[] = {
    /* editors */
    {"set", 1, {"target", "value"}, 1, f_set},
    {"delete_key", 1, {"target", "key:s"}, 0, f_delete_key},
    {"delete_matching_keys", 1, {"target", "*pattern"}, 0, f_delete_matching_keys},
    {"keep_keys", 1, {"target", "keys:l"}, 0, f_keep_keys},
    {"keep_matching_keys", 1, {"target", "*pattern"}, 0, f_keep_matching_keys},
    {"limit", 1, {"target", "limit:i", "priority_keys:l"}, 0, f_limit},
    {"truncate_all", 1, {"target", "limit:i"}, 0, f_truncate_all},
    {"replace_pattern", 1, {"target", "*regex", "replacement:s", "function?", "replacementFormat:s?"}, 0, f_replace_pattern},
    {"replace_all_patterns", 1, {"target", "mode:s", "*regex", "replacement:s", "function?", "replacementFormat:s?"}, 0, f_replace_all_patterns},
    {"replace_match", 1, {"target", "*pattern", "replacement:s", "function?", "replacementFormat:s?"}, 0, f_replace_match},
    {"replace_all_matches", 1, {"target", "*pattern", "replacement:s", "function?", "replacementFormat:s?"}, 0, f_replace_all_matches},
    {"merge_maps", 1, {"target", "source", "strategy:s"}, 0, f_merge_maps},
    {"flatten", 1, {"target", "prefix:s?", "depth:i?", "resolveConflicts:b?"}, 0, f_flatten},
    {"append", 1, {"target", "value?", "values:l?"}, 0, f_append},
    {"set_semconv_span_name", 1, {"semconvVersion:s", "originalSpanNameAttribute:s?"}, 0, f_set_semconv_span_name},
    /* converters */
    {"Base64Decode", 0, {"value"}, 0, f_base64_decode},
    {"Concat", 0, {"vals:l", "delimiter:s"}, 0, f_concat},
    {"ContainsValue", 0, {"target", "item"}, 0, f_contains_value},
    {"ConvertCase", 0, {"target", "toCase:s"}, 0, f_convert_case},
    {"Day", 0, {"time"}, 0, f_day},
    {"Decode", 0, {"value", "encoding:s"}, 0, f_decode},
    {"Double", 0, {"value"}, 0, f_double},
    {"Duration", 0, {"duration:s"}, 0, f_duration},
    {"ExtractPatterns", 0, {"target", "*pattern"}, 0, f_extract_patterns},
    {"FNV", 0, {"value"}, 0, f_fnv},
    {"Format", 0, {"format:s", "vals:l"}, 0, f_format},
    {"FormatTime", 0, {"time", "format:s"}, 0, f_format_time},
    {"HasPrefix", 0, {"target", "prefix:s"}, 0, f_has_prefix},
    {"HasSuffix", 0, {"target", "suffix:s"}, 0, f_has_suffix},
    {"Hex", 0, {"value"}, 0, f_hex},
    {"Hour", 0, {"time"}, 0, f_hour},
    {"Hours", 0, {"duration"}, 0, f_hours},
    {"Index", 0, {"target", "value"}, 0, f_index},
    {"Int", 0, {"value"}, 0, f_int},
    {"IsBool", 0, {"value"}, 0, f_is_bool},
    {"IsDouble", 0, {"value"}, 0, f_is_double},
    {"IsInt", 0, {"value"}, 0, f_is_int},
    {"IsList", 0, {"value"}, 0, f_is_list},
    {"IsMap", 0, {"value"}, 0, f_is_map},
    {"IsMatch", 0, {"target", "*pattern"}, 0, f_is_match},
    {"IsRootSpan", 0, {NULL}, 0, f_is_root_span},
    {"IsString", 0, {"value"}, 0, f_is_string},
    {"IsValidLuhn", 0, {"value"}, 0, f_is_valid_luhn},
    {"Keys", 0, {"target"}, 0, f_keys},
    {"Len", 0, {"target"}, 0, f_len},
    {"Log", 0, {"value"}, 0, f_log},
    {"MD5", 0, {"value"}, 0, f_md5},
    {"Microseconds", 0, {"duration"}, 0, f_microseconds},
    {"Milliseconds", 0, {"duration"}, 0, f_milliseconds},
    {"Minute", 0, {"time"}, 0, f_minute},
    {"Minutes", 0, {"duration"}, 0, f_minutes},
    {"Month", 0, {"time"}, 0, f_month},
    {"Murmur3Hash", 0, {"target"}, 0, f_murmur3},
    {"Murmur3Hash128", 0, {"target"}, 0, f_murmur3_128},
    {"Nanosecond", 0, {"time"}, 0, f_nanosecond},
    {"Nanoseconds", 0, {"duration"}, 0, f_nanoseconds},
    {"Now", 0, {NULL}, 0, f_now},
    {"ParseCSV", 0, {"target", "header:s", "delimiter:s?", "headerDelimiter:s?", "mode:s?"}, 0, f_parse_csv},
    {"ParseJSON", 0, {"target"}, 0, f_parse_json},
    {"ParseKeyValue", 0, {"target", "delimiter:s?", "pair_delimiter:s?"}, 0, f_parse_key_value},
    {"SHA1", 0, {"value"}, 0, f_sha1},
    {"SHA256", 0, {"value"}, 0, f_sha256},
    {"SHA512", 0, {"value"}, 0, f_sha512},
    {"Second", 0, {"time"}, 0, f_second},
    {"Seconds", 0, {"duration"}, 0, f_seconds},
    {"SliceToMap", 0, {"target", "keyPath:l?", "valuePath:l?"}, 0, f_slice_to_map},
    {"Sort", 0, {"target", "order:s?"}, 0, f_sort},
    {"SpanID", 0, {"bytes"}, 0, f_span_id},
    {"Split", 0, {"target", "delimiter:s"}, 0, f_split},
    {"String", 0, {"value"}, 0, f_string},
    {"Substring", 0, {"target", "start:i", "length:i"}, 0, f_substring},
    {"Time", 0, {"time", "format:s", "location:s?", "locale:s?"}, 0, f_time},
    {"ToCamelCase", 0, {"target"}, 0, f_to_camel},
    {"ToKeyValueString", 0, {"target", "delimiter:s?", "pair_delimiter:s?", "sort_output:b?"}, 0, f_to_key_value_string},
    {"ToLowerCase", 0, {"target"}, 0, f_to_lower},
    {"ToSnakeCase", 0, {"target"}, 0, f_to_snake},
    {"ToUpperCase", 0, {"target"}, 0, f_to_upper},
    {"TraceID", 0, {"bytes"}, 0, f_trace_id},
    {"TrimPrefix", 0, {"target", "prefix:s"}, 0, f_trim_prefix},
    {"TrimSuffix", 0, {"target", "suffix:s"}, 0, f_trim_suffix},
    {"TruncateTime", 0, {"time", "duration"}, 0, f_truncate_time},
    {"UUID", 0, {NULL}, 0, f_uuid},
    {"Unix", 0, {"seconds:i", "nanoseconds:i?"}, 0, f_unix},
    {"UnixMicro", 0, {"time"}, 0, f_unix_micro},
    {"UnixMilli", 0, {"time"}, 0, f_unix_milli},
    {"UnixNano", 0, {"time"}, 0, f_unix_nano},
    {"UnixSeconds", 0, {"time"}, 0, f_unix_seconds},
    {"Weekday", 0, {"time"}, 0, f_weekday},
    {"Year", 0, {"time"}, 0, f_year},
};

const ottl_builtin *ottl_find_builtin(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strlen(builtins[i].name) == len && !memcmp(builtins[i].name, name, len)) return &builtins[i];
    return NULL;
}

/* Literal arguments the Collector refuses when a statement is parsed. */
const char *ottl_check_call(const node *call) {
    const char *name = call->builtin->name;
    const node *const *k = (const node *const *)call->kids;
    static _Thread_local char why[120];  /* compiles run on many threads at once */
    for (size_t i = 0; i < call->nkids; i++) {
        const char *param = call->builtin->params[i], *type = strchr(param, ':');
        if (!type || !k[i]) continue;
        int literal = k[i]->op == N_LIT || k[i]->op == N_LIST || k[i]->op == N_MAP;
        int have = k[i]->op == N_LIST ? V_LIST : k[i]->op == N_MAP ? V_MAP : k[i]->lit.type;
        int want = type[1] == 's' ? V_STR : type[1] == 'i' ? V_INT : type[1] == 'b' ? V_BOOL : V_LIST;
        if (literal && have != want && have != V_NIL) {
            snprintf(why, sizeof why, "the argument '%.*s' must be a %s, not a %s", (int)strcspn(param + (param[0] == '*'), ":?"),
                     param + (param[0] == '*'), ottl_type_name(want), ottl_type_name(have));
            return why;
        }
    }
#define LIT(i, t) (call->nkids > (i) && k[i] && k[i]->op == N_LIT && k[i]->lit.type == (t))
    if ((!strcmp(name, "limit") || !strcmp(name, "truncate_all")) && LIT(1, V_INT) && k[1]->lit.i < 0) return "the limit cannot be negative";
    if (!strcmp(name, "flatten") && LIT(2, V_INT) && k[2]->lit.i < 0) return "the depth cannot be negative";
    if (!strcmp(name, "merge_maps") && LIT(2, V_STR) && strcmp(k[2]->lit.s.ptr, "insert") && strcmp(k[2]->lit.s.ptr, "update") && strcmp(k[2]->lit.s.ptr, "upsert"))
        return "the strategy is 'insert', 'update' or 'upsert'";
    if (!strcmp(name, "replace_all_patterns") && LIT(1, V_STR) && strcmp(k[1]->lit.s.ptr, "key") && strcmp(k[1]->lit.s.ptr, "value"))
        return "the mode is \"key\" or \"value\"";
    if (!strcmp(name, "ConvertCase") && LIT(1, V_STR) && strcmp(k[1]->lit.s.ptr, "lower") && strcmp(k[1]->lit.s.ptr, "upper") &&
        strcmp(k[1]->lit.s.ptr, "snake") && strcmp(k[1]->lit.s.ptr, "camel"))
        return "invalid case: allowed cases are lower, upper, snake, camel";
    if (!strcmp(name, "ExtractPatterns") && call->has_re) {
        int named = 0;
        for (size_t i = 0; i < call->ngroups; i++) named |= call->group_names[i] != NULL;
        if (!named) return "at least 1 named capture group must be supplied in the given regex";
    }
    if (!strcmp(name, "set_semconv_span_name")) {
        if (!LIT(0, V_STR)) return "the semconv version is a \"string\", like \"1.37.0\"";
        int major = 0, minor = 0, patch = 0, end = 0;
        if (sscanf(k[0]->lit.s.ptr, "%d.%d.%d%n", &major, &minor, &patch, &end) != 3 || (size_t)end != k[0]->lit.s.len)
            return "the semconv version is major.minor.patch, like \"1.37.0\"";
        if (major != 1 || minor < 37 || minor > 40 || (minor == 40 && patch > 0)) return "unsupported semconv version: must be between 1.37.0 and 1.40.0";
        if (call->nkids > 1 && k[1] && k[1]->op == N_LIT && k[1]->lit.type == V_STR && !k[1]->lit.s.len)
            return "originalSpanNameAttribute cannot be an empty string";
    }
    if (!strcmp(name, "Duration") && LIT(0, V_STR)) {
        int64_t ns;
        if (parse_duration(k[0]->lit.s, &ns) != 0) return "not a duration (like \"1h30m\", \"1.5s\", \"300ms\")";
    }
    if (call->builtin->editor && call->nkids && k[0] && k[0]->op != N_PATH && strcmp(name, "merge_maps") != 0 &&
        strcmp(name, "set_semconv_span_name") != 0)
        return "the first argument is a path (attributes, name...)";
    if (!strcmp(name, "merge_maps") && k[0] && k[0]->op != N_PATH) return "the first argument is a path (attributes...)";
#undef LIT
    return NULL;
}
