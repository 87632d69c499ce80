/* redaction processor: the Collector's redactionprocessor. Deletes attributes not on an allowed
 * list and masks values that match blocked patterns, on every resource, span and span event.
 *
 * Config:
 *   allow_all_keys: false         true: keep every key (only masking applies)
 *   allowed_keys: [id, name]      kept; all others are deleted (fail closed: empty deletes all)
 *   ignored_keys: [safe]          never deleted or masked
 *   blocked_key_patterns: [".*token.*"]   values of keys matching these are masked whole
 *   blocked_values: ["4[0-9]{12}(?:[0-9]{3})?"]  parts of values matching these are masked
 *   allowed_values: [".+@mycompany.com"]  values matching one of these are not masked
 *   redact_all_types: false       true: also mask numbers and booleans (as their text)
 *   hash_function: md5 | sha1 | sha3   replace a masked part by its hex digest, not "****"
 *   summary: silent | info | debug     info: redaction.{redacted,masked,ignored}.count
 *                                      debug: also redaction.{redacted,masked}.keys (sorted, comma-joined)
 *
 * Per attribute list, in the Collector's order: ignored keys pass; keys not allowed are
 * deleted; values of blocked key patterns are masked; values matching an allowed value stay;
 * other values have their blocked parts masked. Then the summary attributes are added.
 */
#include "plugin_util.h"

#include <openssl/evp.h>

static const spanhost_host_api *host;

#define MASK "****"
#define MAX_VALUE 8192 /* the debug summary's key list */
#define MAX_LISTED 256

typedef struct patterns {
    regex_t *re;
    size_t count;
} patterns;

typedef struct redaction_state {
    int allow_all_keys, redact_all_types;
    int summary; /* 0 silent, 1 info, 2 debug */
    spanhost_str *allowed, *ignored; /* views into the host's config */
    size_t nallowed, nignored;
    patterns blocked_keys, blocked_values, allowed_values;
    EVP_MD *hash; /* NULL: mask with MASK */
} redaction_state;

static void free_patterns(patterns *p) {
    for (size_t i = 0; i < p->count; i++) regfree(&p->re[i]);
    free(p->re);
}

static void free_state(redaction_state *s) {
    free(s->allowed);
    free(s->ignored);
    free_patterns(&s->blocked_keys);
    free_patterns(&s->blocked_values);
    free_patterns(&s->allowed_values);
    EVP_MD_free(s->hash);
    free(s);
}

static int read_strings(const spanhost_config *config, const char *path, spanhost_str **out, size_t *n, spanhost_status *status) {
    if (host->config_count(config, path, n) != SPANHOST_CONFIG_FOUND || *n == 0) { *n = 0; return 0; }
    if (!(*out = (spanhost_str *)calloc(*n, sizeof **out))) return -1;
    for (size_t i = 0; i < *n; i++) {
        char p[96];
        snprintf(p, sizeof p, "%s.%zu", path, i);
        if (host->config_string(config, p, &(*out)[i]) != SPANHOST_CONFIG_FOUND) {
            snprintf(status->message, status->message_cap, "%s: must be a string", p);
            return -1;
        }
    }
    return 0;
}

static int read_patterns(const spanhost_config *config, const char *path, patterns *out, spanhost_status *status) {
    size_t n = 0;
    if (host->config_count(config, path, &n) != SPANHOST_CONFIG_FOUND || n == 0) return 0;
    if (!(out->re = (regex_t *)calloc(n, sizeof *out->re))) return -1;
    for (size_t i = 0; i < n; i++) {
        char p[96], err[200];
        spanhost_str text;
        snprintf(p, sizeof p, "%s.%zu", path, i);
        if (host->config_string(config, p, &text) != SPANHOST_CONFIG_FOUND) {
            snprintf(status->message, status->message_cap, "%s: must be a string", p);
            return -1;
        }
        if (util_regcomp(&out->re[i], text, NULL, 0, err, sizeof err)) {
            snprintf(status->message, status->message_cap, "%s: %s", p, err);
            return -1;
        }
        out->count = i + 1;
    }
    return 0;
}

static int32_t redaction_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    (void)instance;
    redaction_state *s = (redaction_state *)calloc(1, sizeof *s);
    if (!s) return SPANHOST_PERMANENT;
    int32_t flag;
    if (host->config_bool(config, "allow_all_keys", &flag) == SPANHOST_CONFIG_FOUND) s->allow_all_keys = flag;
    if (host->config_bool(config, "redact_all_types", &flag) == SPANHOST_CONFIG_FOUND) s->redact_all_types = flag;
    spanhost_str text;
    if (host->config_string(config, "summary", &text) == SPANHOST_CONFIG_FOUND) {
        if (util_str_is(text, "debug")) s->summary = 2;
        else if (util_str_is(text, "info")) s->summary = 1;
        else if (!util_str_is(text, "silent") && text.len) {
            snprintf(status->message, status->message_cap, "summary: '%.*s' is not debug, info or silent", (int)text.len, text.ptr);
            goto fail;
        }
    }
    if (host->config_string(config, "hash_function", &text) == SPANHOST_CONFIG_FOUND && text.len && !util_str_is(text, "none")) {
        const char *name = util_str_is(text, "md5") ? "MD5" : util_str_is(text, "sha1") ? "SHA1" : util_str_is(text, "sha3") ? "SHA3-256" : NULL;
        if (!name) {
            snprintf(status->message, status->message_cap, "hash_function: '%.*s' is not md5, sha1 or sha3", (int)text.len, text.ptr);
            goto fail;
        }
        if (!(s->hash = EVP_MD_fetch(NULL, name, NULL))) {
            snprintf(status->message, status->message_cap, "hash_function: OpenSSL has no %s", name);
            goto fail;
        }
    }
    if (read_strings(config, "allowed_keys", &s->allowed, &s->nallowed, status) ||
        read_strings(config, "ignored_keys", &s->ignored, &s->nignored, status) ||
        read_patterns(config, "blocked_key_patterns", &s->blocked_keys, status) ||
        read_patterns(config, "blocked_values", &s->blocked_values, status) ||
        read_patterns(config, "allowed_values", &s->allowed_values, status))
        goto fail;
    *out = s;
    return SPANHOST_OK;
fail:
    free_state(s);
    return SPANHOST_PERMANENT;
}

static int listed(const spanhost_str *list, size_t n, spanhost_str key) {
    for (size_t i = 0; i < n; i++)
        if (util_str_eq(list[i], key)) return 1;
    return 0;
}

static int any_matches(const patterns *p, const char *text, size_t len) {
    for (size_t i = 0; i < p->count; i++)
        if (util_regmatch(&p->re[i], text, len)) return 1;
    return 0;
}

/* A growing text buffer (values have no length limit). */
typedef struct text_buf {
    char *ptr;
    size_t len, cap;
} text_buf;

static int buf_append(text_buf *b, const char *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = (char *)realloc(b->ptr, cap);
        if (!p) return -1;
        b->ptr = p;
        b->cap = cap;
    }
    if (n) memcpy(b->ptr + b->len, data, n);
    b->len += n;
    b->ptr[b->len] = 0;
    return 0;
}

/* Appends the replacement of `part` (MASK or its hex digest). */
static int append_mask(const redaction_state *s, const char *part, size_t len, text_buf *out) {
    if (!s->hash) return buf_append(out, MASK, 4);
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(part, len, md, &mdlen, s->hash, NULL)) return -1;
    for (unsigned int i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    return buf_append(out, hex, 2 * mdlen);
}

/* Every match of each pattern in turn replaced, as Go's ReplaceAllStringFunc does; `text` is
 * replaced by the result. Returns 1 when something was masked, 0 when not, -1 when out of memory. */
static int mask_matches(const redaction_state *s, const patterns *p, text_buf *text) {
    int changed = 0;
    for (size_t i = 0; i < p->count; i++) {
        text_buf out = {0};
        size_t at = 0, len = text->len;
        int hit = 0;
        regmatch_t m;
        while (at <= len && regexec(&p->re[i], text->ptr + at, 1, &m, at ? REG_NOTBOL : 0) == 0) {
            size_t so = at + (size_t)m.rm_so, eo = at + (size_t)m.rm_eo;
            if (buf_append(&out, text->ptr + at, so - at) || append_mask(s, text->ptr + so, eo - so, &out)) { free(out.ptr); return -1; }
            hit = 1;
            if (eo == so) { /* an empty match: keep one character and go on */
                if (eo < len && buf_append(&out, text->ptr + eo, 1)) { free(out.ptr); return -1; }
                eo++;
            }
            at = eo;
        }
        if (!hit) continue;
        if (at < len && buf_append(&out, text->ptr + at, len - at)) { free(out.ptr); return -1; }
        free(text->ptr);
        *text = out;
        changed = 1;
    }
    return changed;
}

typedef struct key_list {
    spanhost_str keys[MAX_LISTED];
    size_t count;
} key_list;

static int key_order(const void *a, const void *b) {
    const spanhost_str *x = (const spanhost_str *)a, *y = (const spanhost_str *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->ptr, y->ptr, n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The Collector's summary: the count added to an existing count, and (debug) the key names
 * joined with an existing list, sorted. */
static int add_summary(const redaction_state *s, spanhost_batch *batch, spanhost_kv_list *attrs, key_list *keys,
                       const char *keys_attr, const char *count_attr) {
    if (!keys->count || !s->summary) return 0;
    spanhost_value v;
    memset(&v, 0, sizeof v);
    if (s->summary == 2 && keys_attr) {
        spanhost_str name = {keys_attr, strlen(keys_attr)};
        char joined[MAX_VALUE];
        size_t n = 0;
        const spanhost_value *old = util_find(attrs, name);
        key_list all = *keys;
        if (old && old->type == SPANHOST_VALUE_STRING && old->as.string_value.len) {
            const char *p = old->as.string_value.ptr, *end = p + old->as.string_value.len;
            while (p < end && all.count < MAX_LISTED) {
                const char *comma = memchr(p, ',', (size_t)(end - p));
                const char *stop = comma ? comma : end;
                all.keys[all.count++] = (spanhost_str){p, (size_t)(stop - p)};
                p = stop + 1;
            }
        }
        qsort(all.keys, all.count, sizeof all.keys[0], key_order);
        for (size_t i = 0; i < all.count; i++) {
            if (n + all.keys[i].len + 1 >= sizeof joined) break;
            if (i) joined[n++] = ',';
            memcpy(joined + n, all.keys[i].ptr, all.keys[i].len);
            n += all.keys[i].len;
        }
        v.type = SPANHOST_VALUE_STRING;
        v.as.string_value = (spanhost_str){joined, n};
        if (host->set_attribute(batch, attrs, name, &v) != 0) return -1;
    }
    spanhost_str count_name = {count_attr, strlen(count_attr)};
    const spanhost_value *old = util_find(attrs, count_name);
    v.type = SPANHOST_VALUE_INT;
    v.as.int_value = (int64_t)keys->count + (old && old->type == SPANHOST_VALUE_INT ? old->as.int_value : 0);
    return host->set_attribute(batch, attrs, count_name, &v);
}

static void note(key_list *list, spanhost_str key) {
    if (list->count < MAX_LISTED) list->keys[list->count++] = key;
}

static int redact(const redaction_state *s, spanhost_batch *batch, spanhost_kv_list *attrs) {
    key_list deleted = {0}, masked = {0}, ignored = {0};
    for (size_t i = 0; i < attrs->count; i++) {
        spanhost_kv *kv = &attrs->items[i];
        if (listed(s->ignored, s->nignored, kv->key)) { note(&ignored, kv->key); continue; }
        if (!s->allow_all_keys && !listed(s->allowed, s->nallowed, kv->key)) { note(&deleted, kv->key); continue; }
        /* Nothing is allocated for a value that stays as it is (most of them). */
        char scalar[64];
        const char *value = scalar;
        int n;
        if (kv->value.type == SPANHOST_VALUE_STRING) {
            value = kv->value.as.string_value.ptr ? kv->value.as.string_value.ptr : "";
            n = (int)kv->value.as.string_value.len;
        } else if (!s->redact_all_types || (n = util_value_text(&kv->value, scalar, sizeof scalar)) < 0) {
            continue; /* lists, maps and bytes are left as they are */
        }
        text_buf text = {0};
        int changed = 0;
        if (any_matches(&s->blocked_keys, kv->key.ptr, kv->key.len)) {
            changed = append_mask(s, value, (size_t)n, &text) ? -1 : 1;
        } else if (!any_matches(&s->allowed_values, value, (size_t)n) && any_matches(&s->blocked_values, value, (size_t)n)) {
            changed = buf_append(&text, value, (size_t)n) ? -1 : mask_matches(s, &s->blocked_values, &text);
        }
        if (changed > 0) {
            spanhost_value v;
            memset(&v, 0, sizeof v);
            v.type = SPANHOST_VALUE_STRING;
            v.as.string_value = (spanhost_str){text.ptr, text.len};
            if (host->set_attribute(batch, attrs, kv->key, &v) != 0) changed = -1; /* copied; in place: same key */
            else note(&masked, kv->key);
        }
        free(text.ptr);
        if (changed < 0) return -1;
    }
    /* The noted keys view key text, which removing items (a memmove of the views) leaves in place. */
    for (size_t i = 0; i < deleted.count; i++) host->remove_attribute(batch, attrs, deleted.keys[i]);
    if (add_summary(s, batch, attrs, &deleted, "redaction.redacted.keys", "redaction.redacted.count") ||
        add_summary(s, batch, attrs, &masked, "redaction.masked.keys", "redaction.masked.count") ||
        add_summary(s, batch, attrs, &ignored, NULL, "redaction.ignored.count"))
        return -1;
    return 0;
}

static int32_t redaction_process(void *state, spanhost_batch *batch, spanhost_status *status) {
    const redaction_state *s = (const redaction_state *)state;
    int rc = 0;
    for (size_t i = 0; i < batch->resource_spans_count && !rc; i++) {
        spanhost_resource_spans *rs = batch->resource_spans[i];
        rc = redact(s, batch, &rs->resource->attributes);
        for (size_t j = 0; j < rs->scope_spans_count && !rc; j++) {
            spanhost_scope_spans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count && !rc; k++) {
                spanhost_span *span = ss->spans[k];
                rc = redact(s, batch, &span->attributes);
                for (size_t e = 0; e < span->events_count && !rc; e++) rc = redact(s, batch, &span->events[e]->attributes);
            }
        }
    }
    if (rc) {
        snprintf(status->message, status->message_cap, "out of memory");
        return SPANHOST_RETRYABLE;
    }
    return SPANHOST_OK;
}

static void redaction_destroy(void *state) { free_state((redaction_state *)state); }

static const spanhost_config_key config_keys[] = {
    {"allow_all_keys", SPANHOST_TYPE_BOOL, 0, "false", "keep every key; only masking applies"},
    {"allowed_keys", SPANHOST_TYPE_STRING_LIST, 0, NULL, "keys kept; all others are deleted"},
    {"ignored_keys", SPANHOST_TYPE_STRING_LIST, 0, NULL, "keys never deleted or masked"},
    {"blocked_key_patterns", SPANHOST_TYPE_STRING_LIST, 0, NULL, "regexes: values of matching keys are masked whole"},
    {"blocked_values", SPANHOST_TYPE_STRING_LIST, 0, NULL, "regexes: matching parts of values are masked"},
    {"allowed_values", SPANHOST_TYPE_STRING_LIST, 0, NULL, "regexes: matching values are not masked"},
    {"redact_all_types", SPANHOST_TYPE_BOOL, 0, "false", "also mask numbers and booleans, as text"},
    {"hash_function", SPANHOST_TYPE_STRING, 0, NULL, "md5, sha1 or sha3: hash masked parts instead of ****"},
    {"summary", SPANHOST_TYPE_STRING, 0, "silent", "silent, info (counts) or debug (counts and keys)"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .flags = SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING,
    .name = "redaction",
    .version = "1.0.0",
    .description = "deletes attributes not allowed and masks blocked values",
    .create = redaction_create,
    .process = redaction_process,
    .destroy = redaction_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
