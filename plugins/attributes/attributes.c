/* attributes processor: changes span (or resource) attributes.
 *
 * Config (the Collector's attributes processor shape):
 *   target: span | resource            which attributes the actions change (default span)
 *   actions:                           applied in order
 *     - key: KEY                       the attribute to act on
 *       action: insert | update | upsert | delete | hash | extract | convert
 *       value: VALUE                   insert/update/upsert: a string, integer, number or boolean
 *       from_attribute: KEY            ... or the value of another attribute of the same span
 *       from_context: metadata.origin  ... or of the request: a header (the receiver's
 *                                      include_metadata), client.address or auth.<name>
 *       default_value: VALUE           ... used when the one above gives none
 *     - pattern: REGEX                 delete: every key matching the regex (instead of key)
 *     - {key: user.email, action: hash}            value replaced by its SHA-256 (hex)
 *       hmac_key: SECRET               ... HMAC-SHA256 with this key (use ${env:VAR})
 *     - {key: http.url, action: extract, pattern: "^https?://(?P<host>[^/]+)(?P<path>/[^?]*)"}
 *                                      each named group becomes an attribute (POSIX regex)
 *     - {key: http.status_code, action: convert, converted_type: int}   int | double | string | bool
 *   include: {...} / exclude: {...}    act only on spans that match include and not exclude:
 *     match_type: strict | regexp      how the lists below compare (default strict)
 *     services: [svc, ...]             resource service.name
 *     span_names: [name, ...]
 *     attributes: [{key: K, value: V}] span attributes (value optional: presence only)
 *     conditions: ['OTTL', ...]        any of these holds (README, "Expressions")
 *                                      a span matches when every given list has a match
 */
#include "plugin_util.h"
#include "span_matcher.h"

#include <ctype.h>
#include <openssl/evp.h>

/* plugins/resource builds this file as the Collector's resource processor: the same actions,
 * listed under `attributes`, on every resource's attributes, with no include or exclude. */
#ifdef RESOURCE_PROCESSOR
#define ACTIONS "attributes"
#else
#define ACTIONS "actions"
#endif
#include <openssl/hmac.h>

static const spanhost_host_api *host;

#define ACT_INSERT 0
#define ACT_UPDATE 1
#define ACT_UPSERT 2
#define ACT_DELETE 3
#define ACT_HASH 4
#define ACT_EXTRACT 5
#define ACT_CONVERT 6

#define MAX_GROUPS 16

typedef struct action {
    int op;
    spanhost_str key;            /* owned by the host config; lives as long as the instance */
    spanhost_str from_attribute; /* empty when `value` is used */
    spanhost_str from_context;   /* the client_metadata key (heap, freed with the state), or empty */
    spanhost_value value;
    int has_value;               /* `value` is set */
    spanhost_value default_value; /* used when value/from_attribute/from_context gives none */
    int has_default;
    spanhost_str hmac_key;
    int has_pattern;
    regex_t pattern;
    char *group_names[MAX_GROUPS];
    uint32_t converted_type;
} action;

typedef struct attributes_state {
    int resource;
    spanhost_instance *instance;
    EVP_MD *sha256; /* fetched once: a fetch per call takes OpenSSL's global name-map lock */
    matcher include, exclude;
    size_t count;
    action actions[];
} attributes_state;

static void free_state(attributes_state *s) {
    for (size_t i = 0; i < s->count; i++) {
        if (s->actions[i].has_pattern) regfree(&s->actions[i].pattern);
        free((char *)s->actions[i].from_context.ptr);
        for (int g = 0; g < MAX_GROUPS; g++) free(s->actions[i].group_names[g]);
    }
    matcher_free(host, &s->include);
    matcher_free(host, &s->exclude);
    EVP_MD_free(s->sha256);
    free(s);
}

/* A scalar at `path`, typed as written in YAML (a quoted "42" still reads as an integer).
 * Returns 1 when found. */
static int read_value(const spanhost_config *config, const char *path, spanhost_value *v) {
    int64_t iv;
    double dv;
    int32_t bv;
    if (host->config_int(config, path, &iv) == SPANHOST_CONFIG_FOUND) { v->type = SPANHOST_VALUE_INT; v->as.int_value = iv; }
    else if (host->config_double(config, path, &dv) == SPANHOST_CONFIG_FOUND) { v->type = SPANHOST_VALUE_DOUBLE; v->as.double_value = dv; }
    else if (host->config_bool(config, path, &bv) == SPANHOST_CONFIG_FOUND) { v->type = SPANHOST_VALUE_BOOL; v->as.bool_value = bv; }
    else if (host->config_string(config, path, &v->as.string_value) == SPANHOST_CONFIG_FOUND) v->type = SPANHOST_VALUE_STRING;
    else return 0;
    return 1;
}

/* The client_metadata key a from_context names, as the Collector reads it: `auth.<name>` and
 * `client.address` as written; anything else is a request header, `metadata.<name>`, whose
 * name compares without case. Heap string, or NULL when out of memory. */
static char *context_key(spanhost_str from) {
    spanhost_str header = from;
    if ((from.len > 5 && !memcmp(from.ptr, "auth.", 5)) || util_str_is(from, "client.address")) return util_strdup(from);
    if (from.len > 9 && !memcmp(from.ptr, "metadata.", 9)) { header.ptr += 9; header.len -= 9; }
    char *key = (char *)malloc(9 + header.len + 1);
    if (!key) return NULL;
    memcpy(key, "metadata.", 9);
    for (size_t i = 0; i < header.len; i++) key[9 + i] = (char)tolower((unsigned char)header.ptr[i]);
    key[9 + header.len] = 0;
    return key;
}

/* The batch's client_metadata value for `key` (1.7 hosts fill it), or NULL. */
static const spanhost_value *client_metadata(const spanhost_batch *batch, spanhost_str key) {
    if (batch->struct_size < offsetof(spanhost_batch, client_metadata) + sizeof(spanhost_kv_list)) return NULL;
    return util_find(&batch->client_metadata, key);
}

#define FAIL(...) do { snprintf(status->message, status->message_cap, __VA_ARGS__); free_state(s); return SPANHOST_PERMANENT; } while (0)

static int32_t attributes_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    size_t n = 0;
    if (host->config_count(config, ACTIONS, &n) != SPANHOST_CONFIG_FOUND || n == 0) {
        snprintf(status->message, status->message_cap, ACTIONS ": required, a list of {key, action, ...}");
        return SPANHOST_PERMANENT;
    }
    attributes_state *s = (attributes_state *)calloc(1, sizeof *s + n * sizeof(action));
    if (!s) return SPANHOST_PERMANENT;
    if (!(s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL))) FAIL("OpenSSL has no SHA-256");
    s->instance = instance;
#ifdef RESOURCE_PROCESSOR
    s->resource = 1;
#else
    spanhost_str target;
    if (host->config_string(config, "target", &target) == SPANHOST_CONFIG_FOUND) {
        if (util_str_is(target, "resource")) s->resource = 1;
        else if (!util_str_is(target, "span")) FAIL("target: '%.*s' is not span or resource", (int)target.len, target.ptr);
    }
#endif
    /* The resource processor's schema has no include or exclude: these find nothing there. */
    if (matcher_read(host, config, "include", &s->include, status) || matcher_read(host, config, "exclude", &s->exclude, status)) {
        free_state(s);
        return SPANHOST_PERMANENT;
    }
    for (size_t i = 0; i < n; i++) {
        action *a = &s->actions[i];
        s->count = i + 1;
        char path[64], err[200];
        spanhost_str op, pattern;
        snprintf(path, sizeof path, ACTIONS ".%zu.action", i);
        if (host->config_string(config, path, &op) != SPANHOST_CONFIG_FOUND)
            FAIL(ACTIONS ".%zu.action: required (insert, update, upsert, delete, hash, extract or convert)", i);
        if (util_str_is(op, "insert")) a->op = ACT_INSERT;
        else if (util_str_is(op, "update")) a->op = ACT_UPDATE;
        else if (util_str_is(op, "upsert")) a->op = ACT_UPSERT;
        else if (util_str_is(op, "delete")) a->op = ACT_DELETE;
        else if (util_str_is(op, "hash")) a->op = ACT_HASH;
        else if (util_str_is(op, "extract")) a->op = ACT_EXTRACT;
        else if (util_str_is(op, "convert")) a->op = ACT_CONVERT;
        else FAIL(ACTIONS ".%zu.action: '%.*s' is not insert, update, upsert, delete, hash, extract or convert", i, (int)op.len, op.ptr);

        snprintf(path, sizeof path, ACTIONS ".%zu.key", i);
        int has_key = host->config_string(config, path, &a->key) == SPANHOST_CONFIG_FOUND && a->key.len;
        snprintf(path, sizeof path, ACTIONS ".%zu.pattern", i);
        if (host->config_string(config, path, &pattern) == SPANHOST_CONFIG_FOUND) {
            if (util_regcomp(&a->pattern, pattern, a->group_names, MAX_GROUPS, err, sizeof err))
                FAIL(ACTIONS ".%zu.pattern: %s", i, err);
            a->has_pattern = 1;
        }
        if (!has_key && !(a->op == ACT_DELETE && a->has_pattern)) FAIL(ACTIONS ".%zu.key: required", i);
        if (a->op == ACT_EXTRACT && !a->has_pattern) FAIL(ACTIONS ".%zu.pattern: required for extract, with named groups (?P<name>...)", i);

        if (a->op == ACT_HASH) {
            snprintf(path, sizeof path, ACTIONS ".%zu.hmac_key", i);
            if (host->config_string(config, path, &a->hmac_key) == SPANHOST_CONFIG_WRONG_TYPE) FAIL(ACTIONS ".%zu.hmac_key: must be a string", i);
        }
        if (a->op == ACT_CONVERT) {
            spanhost_str type;
            snprintf(path, sizeof path, ACTIONS ".%zu.converted_type", i);
            if (host->config_string(config, path, &type) != SPANHOST_CONFIG_FOUND) FAIL(ACTIONS ".%zu.converted_type: required (int, double, string or bool)", i);
            if (util_str_is(type, "int")) a->converted_type = SPANHOST_VALUE_INT;
            else if (util_str_is(type, "double")) a->converted_type = SPANHOST_VALUE_DOUBLE;
            else if (util_str_is(type, "string")) a->converted_type = SPANHOST_VALUE_STRING;
            else if (util_str_is(type, "bool")) a->converted_type = SPANHOST_VALUE_BOOL;
            else FAIL(ACTIONS ".%zu.converted_type: '%.*s' is not int, double, string or bool", i, (int)type.len, type.ptr);
        }
        if (a->op > ACT_UPSERT) continue;

        snprintf(path, sizeof path, ACTIONS ".%zu.from_attribute", i);
        int sources = host->config_string(config, path, &a->from_attribute) == SPANHOST_CONFIG_FOUND;
        spanhost_str context;
        snprintf(path, sizeof path, ACTIONS ".%zu.from_context", i);
        if (host->config_string(config, path, &context) == SPANHOST_CONFIG_FOUND) {
            char *key = context_key(context);
            if (!key) FAIL("out of memory");
            a->from_context = (spanhost_str){key, strlen(key)};
            sources++;
        }
        snprintf(path, sizeof path, ACTIONS ".%zu.value", i);
        if ((a->has_value = read_value(config, path, &a->value))) sources++;
        snprintf(path, sizeof path, ACTIONS ".%zu.default_value", i);
        a->has_default = read_value(config, path, &a->default_value);
        if (sources > 1) FAIL(ACTIONS ".%zu: give one of value, from_attribute or from_context", i);
        if (!sources && !a->has_default) FAIL(ACTIONS ".%zu: give one of value, from_attribute, from_context or default_value", i);
    }
    *out = s;
    return SPANHOST_OK;
}

/* SHA-256 (or HMAC-SHA256) of a value's text, as a 64-character hex string in the arena. */
static int hash_value(spanhost_batch *batch, const attributes_state *s, const action *a, spanhost_value *v) {
    static const char digits[] = "0123456789abcdef";
    char text[4096];
    const char *data = text;
    int len;
    if (v->type == SPANHOST_VALUE_STRING) {
        data = v->as.string_value.ptr ? v->as.string_value.ptr : "";
        len = (int)v->as.string_value.len;
    } else if (v->type == SPANHOST_VALUE_BYTES) {
        data = (const char *)v->as.bytes_value.ptr;
        len = (int)v->as.bytes_value.len;
    } else if ((len = util_value_text(v, text, sizeof text)) < 0) {
        return 0; /* arrays and maps are left as they are */
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (a->hmac_key.len) {
        if (!HMAC(s->sha256, a->hmac_key.ptr, (int)a->hmac_key.len, (const unsigned char *)data, (size_t)len, md, &mdlen)) return -1;
    } else if (!EVP_Digest(data, (size_t)len, md, &mdlen, s->sha256, NULL)) {
        return -1;
    }
    char *hex = (char *)host->arena_alloc(batch, 64);
    if (!hex) return -1;
    for (unsigned int i = 0; i < mdlen && i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    v->type = SPANHOST_VALUE_STRING;
    v->as.string_value.ptr = hex;
    v->as.string_value.len = 64;
    return 0;
}

static void convert_value(spanhost_batch *batch, spanhost_value *v, uint32_t to) {
    char text[256], *end;
    int len = util_value_text(v, text, sizeof text);
    if (len < 0 || v->type == to) return;
    switch (to) {
    case SPANHOST_VALUE_STRING: {
        spanhost_str copy = host->arena_strdup(batch, text, (size_t)len);
        if (!copy.ptr && len) return;
        v->type = SPANHOST_VALUE_STRING;
        v->as.string_value = copy;
        return;
    }
    case SPANHOST_VALUE_INT: {
        if (v->type == SPANHOST_VALUE_DOUBLE) { v->as.int_value = (int64_t)v->as.double_value; v->type = to; return; }
        if (v->type == SPANHOST_VALUE_BOOL) { v->as.int_value = v->as.bool_value; v->type = to; return; }
        long long n = strtoll(text, &end, 10);
        if (end != text && *end == 0) { v->type = to; v->as.int_value = n; }
        return; /* not a number: left unchanged, as the Collector does */
    }
    case SPANHOST_VALUE_DOUBLE: {
        double d = strtod(text, &end);
        if (v->type == SPANHOST_VALUE_BOOL) d = v->as.bool_value;
        else if (end == text || *end) return;
        v->type = to;
        v->as.double_value = d;
        return;
    }
    case SPANHOST_VALUE_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1")) { v->type = to; v->as.bool_value = 1; }
        else if (!strcmp(text, "false") || !strcmp(text, "0")) { v->type = to; v->as.bool_value = 0; }
        return;
    }
}

static int extract(spanhost_batch *batch, const action *a, spanhost_kv_list *attrs, const spanhost_value *v) {
    char text[4096];
    int len = util_value_text(v, text, sizeof text);
    regmatch_t m[MAX_GROUPS];
    if (len < 0 || regexec(&a->pattern, text, MAX_GROUPS, m, 0) != 0) return 0;
    for (int g = 1; g < MAX_GROUPS; g++) {
        if (!a->group_names[g] || m[g].rm_so < 0) continue;
        spanhost_value out;
        memset(&out, 0, sizeof out);
        out.type = SPANHOST_VALUE_STRING;
        out.as.string_value.ptr = text + m[g].rm_so;
        out.as.string_value.len = (size_t)(m[g].rm_eo - m[g].rm_so);
        spanhost_str key = {a->group_names[g], strlen(a->group_names[g])};
        if (host->set_attribute(batch, attrs, key, &out) != 0) return -1; /* copies text into the arena */
    }
    return 0;
}

/* Runs every action on one attribute list. Returns -1 when out of memory. */
static int apply(attributes_state *s, spanhost_batch *batch, spanhost_kv_list *attrs) {
    for (size_t i = 0; i < s->count; i++) {
        const action *a = &s->actions[i];
        spanhost_value *cur = a->key.len ? util_find(attrs, a->key) : NULL;
        switch (a->op) {
        case ACT_DELETE:
            if (a->has_pattern) {
                for (size_t k = 0; k < attrs->count;) {
                    if (util_regmatch(&a->pattern, attrs->items[k].key.ptr, attrs->items[k].key.len))
                        host->remove_attribute(batch, attrs, attrs->items[k].key);
                    else
                        k++;
                }
            } else {
                host->remove_attribute(batch, attrs, a->key);
            }
            break;
        case ACT_HASH:
            if (cur && hash_value(batch, s, a, cur) != 0) return -1;
            break;
        case ACT_EXTRACT:
            if (cur && extract(batch, a, attrs, cur) != 0) return -1;
            break;
        case ACT_CONVERT:
            if (cur) convert_value(batch, cur, a->converted_type);
            break;
        default: {
            if ((a->op == ACT_INSERT && cur) || (a->op == ACT_UPDATE && !cur)) break;
            const spanhost_value *src = a->has_value ? &a->value
                                      : a->from_attribute.len ? util_find(attrs, a->from_attribute)
                                      : a->from_context.len ? client_metadata(batch, a->from_context) : NULL;
            if (!src && a->has_default) src = &a->default_value;
            if (!src) break;
            spanhost_value value = *src;
            if (host->set_attribute(batch, attrs, a->key, &value) != 0) return -1;
        }
        }
    }
    return 0;
}

static int32_t attributes_process(void *state, spanhost_batch *batch, spanhost_status *status) {
    attributes_state *s = (attributes_state *)state;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        spanhost_resource_spans *rs = batch->resource_spans[i];
        int resource_done = 0;
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            spanhost_scope_spans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count; k++) {
                spanhost_span *span = ss->spans[k];
                if (s->include.active && !matcher_span_matches(host, &s->include, batch, rs, ss, span, s->instance, status)) continue;
                if (s->exclude.active && matcher_span_matches(host, &s->exclude, batch, rs, ss, span, s->instance, status)) continue;
                int rc;
                if (s->resource) {
                    if (resource_done) continue; /* a resource is changed once, if any of its spans matched */
                    resource_done = 1;
                    rc = apply(s, batch, &rs->resource->attributes);
                } else {
                    rc = apply(s, batch, &span->attributes);
                }
                if (rc != 0) {
                    snprintf(status->message, status->message_cap, "out of memory");
                    return SPANHOST_RETRYABLE;
                }
            }
        }
    }
    return SPANHOST_OK;
}

static void attributes_destroy(void *state) { free_state((attributes_state *)state); }

static const spanhost_config_key config_keys[] = {
    {ACTIONS, SPANHOST_TYPE_LIST, 1, NULL, "applied in order"},
    {ACTIONS ".*.key", SPANHOST_TYPE_STRING, 0, NULL, "the attribute to act on"},
    {ACTIONS ".*.action", SPANHOST_TYPE_STRING, 1, NULL, "insert, update, upsert, delete, hash, extract or convert"},
    {ACTIONS ".*.value", SPANHOST_TYPE_SCALAR, 0, NULL, "insert/update/upsert: the value"},
    {ACTIONS ".*.from_attribute", SPANHOST_TYPE_STRING, 0, NULL, "insert/update/upsert: take the value of this attribute"},
    {ACTIONS ".*.from_context", SPANHOST_TYPE_STRING, 0, NULL, "insert/update/upsert: metadata.<header> (receiver include_metadata), client.address or auth.<name>"},
    {ACTIONS ".*.default_value", SPANHOST_TYPE_SCALAR, 0, NULL, "insert/update/upsert: the value when the others give none"},
    {ACTIONS ".*.pattern", SPANHOST_TYPE_STRING, 0, NULL, "delete: keys matching this regex; extract: regex with named groups"},
    {ACTIONS ".*.hmac_key", SPANHOST_TYPE_STRING, 0, NULL, "hash: HMAC-SHA256 with this key instead of SHA-256"},
    {ACTIONS ".*.converted_type", SPANHOST_TYPE_STRING, 0, NULL, "convert: int, double, string or bool"},
#ifndef RESOURCE_PROCESSOR
    {"target", SPANHOST_TYPE_STRING, 0, "span", "span or resource: which attributes the actions change"},
    SPAN_MATCHER_KEYS("include", "act only on spans that match"),
    SPAN_MATCHER_KEYS("exclude", "skip spans that match"),
#endif
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .flags = SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING,
#ifdef RESOURCE_PROCESSOR
    .name = "resource",
    .version = "1.0.0",
    .description = "inserts, updates, upserts, deletes, hashes, extracts or converts resource attributes",
#else
    .name = "attributes",
    .version = "1.1.0",
    .description = "inserts, updates, upserts, deletes, hashes, extracts or converts attributes",
#endif
    .create = attributes_create,
    .process = attributes_process,
    .destroy = attributes_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
