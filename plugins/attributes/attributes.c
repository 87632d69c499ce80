/* attributes processor: changes span (or resource) attributes.
 *
 * Config (the Collector's attributes processor shape):
 *   target: span | resource            which attributes the actions change (default span)
 *   actions:                           applied in order
 *     - key: KEY                       the attribute to act on
 *       action: insert | update | upsert | delete | hash | extract | convert
 *       value: VALUE                   insert/update/upsert: a string, integer, number or boolean
 *       from_attribute: KEY            ... or the value of another attribute of the same span
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

#include <openssl/evp.h>
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
    spanhost_value value;
    spanhost_str hmac_key;
    int has_pattern;
    regex_t pattern;
    char *group_names[MAX_GROUPS];
    uint32_t converted_type;
} action;

typedef struct matcher {
    int active;
    int regexp;
    size_t nservices, nnames, nattrs;
    spanhost_str *services, *names, *attr_keys, *attr_values;
    int *attr_has_value;
    regex_t *service_re, *name_re, *value_re;
    spanhost_expr **conditions; /* OTTL: the span matches when any holds */
    size_t nconditions;
} matcher;

typedef struct attributes_state {
    int resource;
    spanhost_instance *instance;
    EVP_MD *sha256; /* fetched once: a fetch per call takes OpenSSL's global name-map lock */
    matcher include, exclude;
    size_t count;
    action actions[];
} attributes_state;

static void free_matcher(matcher *m) {
    for (size_t i = 0; m->regexp && i < m->nservices; i++) regfree(&m->service_re[i]);
    for (size_t i = 0; m->regexp && i < m->nnames; i++) regfree(&m->name_re[i]);
    for (size_t i = 0; m->regexp && i < m->nattrs; i++)
        if (m->attr_has_value[i]) regfree(&m->value_re[i]);
    free(m->services); free(m->names); free(m->attr_keys); free(m->attr_values); free(m->attr_has_value);
    free(m->service_re); free(m->name_re); free(m->value_re);
    for (size_t i = 0; i < m->nconditions; i++) host->expr_free(m->conditions[i]);
    free(m->conditions);
}

static void free_state(attributes_state *s) {
    for (size_t i = 0; i < s->count; i++) {
        if (s->actions[i].has_pattern) regfree(&s->actions[i].pattern);
        for (int g = 0; g < MAX_GROUPS; g++) free(s->actions[i].group_names[g]);
    }
    free_matcher(&s->include);
    free_matcher(&s->exclude);
    EVP_MD_free(s->sha256);
    free(s);
}

/* Reads a list of strings at `path` into views (and regexes when regexp). */
static int read_list(const spanhost_config *config, const char *path, int regexp, size_t *n, spanhost_str **out,
                     regex_t **res, spanhost_status *status) {
    if (host->config_count(config, path, n) != SPANHOST_CONFIG_FOUND) { *n = 0; return 0; }
    *out = (spanhost_str *)calloc(*n ? *n : 1, sizeof **out);
    if (regexp) *res = (regex_t *)calloc(*n ? *n : 1, sizeof **res);
    for (size_t i = 0; i < *n; i++) {
        char p[128], err[200];
        snprintf(p, sizeof p, "%s.%zu", path, i);
        if (host->config_string(config, p, &(*out)[i]) != SPANHOST_CONFIG_FOUND) {
            snprintf(status->message, status->message_cap, "%s: must be a string", p);
            *n = i;
            return -1;
        }
        if (regexp && util_regcomp(&(*res)[i], (*out)[i], NULL, 0, err, sizeof err)) {
            snprintf(status->message, status->message_cap, "%s: %s", p, err);
            *n = i;
            return -1;
        }
    }
    return 0;
}

static int read_matcher(const spanhost_config *config, const char *name, matcher *m, spanhost_status *status) {
    size_t n;
    char p[128];
    if (host->config_count(config, name, &n) != SPANHOST_CONFIG_FOUND) return 0;
    m->active = 1;
    spanhost_str type;
    snprintf(p, sizeof p, "%s.match_type", name);
    if (host->config_string(config, p, &type) == SPANHOST_CONFIG_FOUND) {
        if (util_str_is(type, "regexp")) m->regexp = 1;
        else if (!util_str_is(type, "strict")) {
            snprintf(status->message, status->message_cap, "%s: '%.*s' is not strict or regexp", p, (int)type.len, type.ptr);
            return -1;
        }
    }
    snprintf(p, sizeof p, "%s.services", name);
    if (read_list(config, p, m->regexp, &m->nservices, &m->services, &m->service_re, status)) return -1;
    snprintf(p, sizeof p, "%s.span_names", name);
    if (read_list(config, p, m->regexp, &m->nnames, &m->names, &m->name_re, status)) return -1;
    snprintf(p, sizeof p, "%s.conditions", name);
    if (util_compile_list(host, config, p, SPANHOST_EXPR_CONDITION, SPANHOST_CONTEXT_SPAN, &m->conditions, &m->nconditions, status)) return -1;
    snprintf(p, sizeof p, "%s.attributes", name);
    if (host->config_count(config, p, &m->nattrs) == SPANHOST_CONFIG_FOUND) {
        size_t cnt = m->nattrs ? m->nattrs : 1;
        m->attr_keys = (spanhost_str *)calloc(cnt, sizeof *m->attr_keys);
        m->attr_values = (spanhost_str *)calloc(cnt, sizeof *m->attr_values);
        m->attr_has_value = (int *)calloc(cnt, sizeof(int));
        m->value_re = (regex_t *)calloc(cnt, sizeof(regex_t));
        for (size_t i = 0; i < m->nattrs; i++) {
            char q[160], err[200];
            snprintf(q, sizeof q, "%s.attributes.%zu.key", name, i);
            if (host->config_string(config, q, &m->attr_keys[i]) != SPANHOST_CONFIG_FOUND) {
                snprintf(status->message, status->message_cap, "%s: required", q);
                m->nattrs = i;
                return -1;
            }
            snprintf(q, sizeof q, "%s.attributes.%zu.value", name, i);
            if (host->config_string(config, q, &m->attr_values[i]) == SPANHOST_CONFIG_FOUND) {
                if (m->regexp && util_regcomp(&m->value_re[i], m->attr_values[i], NULL, 0, err, sizeof err)) {
                    snprintf(status->message, status->message_cap, "%s: %s", q, err);
                    m->nattrs = i;
                    return -1;
                }
                m->attr_has_value[i] = 1;
            }
        }
    }
    return 0;
}

static int text_matches(const matcher *m, const regex_t *re, spanhost_str want, spanhost_str got) {
    return m->regexp ? util_regmatch(re, got.ptr, got.len) : util_str_eq(want, got);
}

/* Whether the span matches every list the matcher has (of `conditions`, any one). A condition
 * that fails to run does not hold; it is counted as condition_errors. */
static int span_matches(const matcher *m, spanhost_batch *batch, spanhost_resource_spans *rs, spanhost_scope_spans *ss,
                        spanhost_span *span, spanhost_instance *instance, spanhost_status *status) {
    const spanhost_resource *res = rs->resource;
    if (m->nconditions) {
        spanhost_expr_target target = {sizeof target, batch, rs->resource, ss->scope, span, NULL, NULL};
        int hit = 0;
        for (size_t i = 0; i < m->nconditions && hit <= 0; i++)
            if ((hit = host->expr_run(m->conditions[i], &target, status)) < 0) host->counter_add(instance, "condition_errors", 1);
        if (hit <= 0) return 0;
    }
    if (m->nservices) {
        spanhost_str svc = util_service_name(res);
        int hit = 0;
        for (size_t i = 0; i < m->nservices && !hit; i++) hit = text_matches(m, m->service_re ? &m->service_re[i] : NULL, m->services[i], svc);
        if (!hit) return 0;
    }
    if (m->nnames) {
        int hit = 0;
        for (size_t i = 0; i < m->nnames && !hit; i++) hit = text_matches(m, m->name_re ? &m->name_re[i] : NULL, m->names[i], span->name);
        if (!hit) return 0;
    }
    for (size_t i = 0; i < m->nattrs; i++) {
        const spanhost_value *v = util_find(&span->attributes, m->attr_keys[i]);
        if (!v) return 0;
        if (!m->attr_has_value[i]) continue;
        char buf[256];
        int len = util_value_text(v, buf, sizeof buf);
        spanhost_str got = {buf, len < 0 ? 0 : (size_t)len};
        if (len < 0 || !text_matches(m, &m->value_re[i], m->attr_values[i], got)) return 0;
    }
    return 1;
}

#define FAIL(...) do { snprintf(status->message, status->message_cap, __VA_ARGS__); free_state(s); return SPANHOST_PERMANENT; } while (0)

static int32_t attributes_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    size_t n = 0;
    if (host->config_count(config, "actions", &n) != SPANHOST_CONFIG_FOUND || n == 0) {
        snprintf(status->message, status->message_cap, "actions: required, a list of {key, action, ...}");
        return SPANHOST_PERMANENT;
    }
    attributes_state *s = (attributes_state *)calloc(1, sizeof *s + n * sizeof(action));
    if (!s) return SPANHOST_PERMANENT;
    if (!(s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL))) FAIL("OpenSSL has no SHA-256");
    s->instance = instance;
    spanhost_str target;
    if (host->config_string(config, "target", &target) == SPANHOST_CONFIG_FOUND) {
        if (util_str_is(target, "resource")) s->resource = 1;
        else if (!util_str_is(target, "span")) FAIL("target: '%.*s' is not span or resource", (int)target.len, target.ptr);
    }
    if (read_matcher(config, "include", &s->include, status) || read_matcher(config, "exclude", &s->exclude, status)) {
        free_state(s);
        return SPANHOST_PERMANENT;
    }
    for (size_t i = 0; i < n; i++) {
        action *a = &s->actions[i];
        s->count = i + 1;
        char path[64], err[200];
        spanhost_str op, pattern;
        snprintf(path, sizeof path, "actions.%zu.action", i);
        if (host->config_string(config, path, &op) != SPANHOST_CONFIG_FOUND)
            FAIL("actions.%zu.action: required (insert, update, upsert, delete, hash, extract or convert)", i);
        if (util_str_is(op, "insert")) a->op = ACT_INSERT;
        else if (util_str_is(op, "update")) a->op = ACT_UPDATE;
        else if (util_str_is(op, "upsert")) a->op = ACT_UPSERT;
        else if (util_str_is(op, "delete")) a->op = ACT_DELETE;
        else if (util_str_is(op, "hash")) a->op = ACT_HASH;
        else if (util_str_is(op, "extract")) a->op = ACT_EXTRACT;
        else if (util_str_is(op, "convert")) a->op = ACT_CONVERT;
        else FAIL("actions.%zu.action: '%.*s' is not insert, update, upsert, delete, hash, extract or convert", i, (int)op.len, op.ptr);

        snprintf(path, sizeof path, "actions.%zu.key", i);
        int has_key = host->config_string(config, path, &a->key) == SPANHOST_CONFIG_FOUND && a->key.len;
        snprintf(path, sizeof path, "actions.%zu.pattern", i);
        if (host->config_string(config, path, &pattern) == SPANHOST_CONFIG_FOUND) {
            if (util_regcomp(&a->pattern, pattern, a->group_names, MAX_GROUPS, err, sizeof err))
                FAIL("actions.%zu.pattern: %s", i, err);
            a->has_pattern = 1;
        }
        if (!has_key && !(a->op == ACT_DELETE && a->has_pattern)) FAIL("actions.%zu.key: required", i);
        if (a->op == ACT_EXTRACT && !a->has_pattern) FAIL("actions.%zu.pattern: required for extract, with named groups (?P<name>...)", i);

        if (a->op == ACT_HASH) {
            snprintf(path, sizeof path, "actions.%zu.hmac_key", i);
            if (host->config_string(config, path, &a->hmac_key) == SPANHOST_CONFIG_WRONG_TYPE) FAIL("actions.%zu.hmac_key: must be a string", i);
        }
        if (a->op == ACT_CONVERT) {
            spanhost_str type;
            snprintf(path, sizeof path, "actions.%zu.converted_type", i);
            if (host->config_string(config, path, &type) != SPANHOST_CONFIG_FOUND) FAIL("actions.%zu.converted_type: required (int, double, string or bool)", i);
            if (util_str_is(type, "int")) a->converted_type = SPANHOST_VALUE_INT;
            else if (util_str_is(type, "double")) a->converted_type = SPANHOST_VALUE_DOUBLE;
            else if (util_str_is(type, "string")) a->converted_type = SPANHOST_VALUE_STRING;
            else if (util_str_is(type, "bool")) a->converted_type = SPANHOST_VALUE_BOOL;
            else FAIL("actions.%zu.converted_type: '%.*s' is not int, double, string or bool", i, (int)type.len, type.ptr);
        }
        if (a->op > ACT_UPSERT) continue;

        snprintf(path, sizeof path, "actions.%zu.from_attribute", i);
        int has_from = host->config_string(config, path, &a->from_attribute) == SPANHOST_CONFIG_FOUND;
        snprintf(path, sizeof path, "actions.%zu.value", i);
        int64_t iv;
        double dv;
        int32_t bv;
        int has_value = 1;
        /* Typed as written in YAML; a quoted "42" still reads as an integer. */
        if (host->config_int(config, path, &iv) == SPANHOST_CONFIG_FOUND) { a->value.type = SPANHOST_VALUE_INT; a->value.as.int_value = iv; }
        else if (host->config_double(config, path, &dv) == SPANHOST_CONFIG_FOUND) { a->value.type = SPANHOST_VALUE_DOUBLE; a->value.as.double_value = dv; }
        else if (host->config_bool(config, path, &bv) == SPANHOST_CONFIG_FOUND) { a->value.type = SPANHOST_VALUE_BOOL; a->value.as.bool_value = bv; }
        else if (host->config_string(config, path, &a->value.as.string_value) == SPANHOST_CONFIG_FOUND) a->value.type = SPANHOST_VALUE_STRING;
        else has_value = 0;
        if (has_value == has_from) FAIL("actions.%zu: give exactly one of value or from_attribute", i);
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
            spanhost_value value = a->value;
            if (a->from_attribute.len) {
                const spanhost_value *src = util_find(attrs, a->from_attribute);
                if (!src) break;
                value = *src;
            }
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
                if (s->include.active && !span_matches(&s->include, batch, rs, ss, span, s->instance, status)) continue;
                if (s->exclude.active && span_matches(&s->exclude, batch, rs, ss, span, s->instance, status)) continue;
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
    {"target", SPANHOST_TYPE_STRING, 0, "span", "span or resource: which attributes the actions change"},
    {"actions", SPANHOST_TYPE_LIST, 1, NULL, "applied in order"},
    {"actions.*.key", SPANHOST_TYPE_STRING, 0, NULL, "the attribute to act on"},
    {"actions.*.action", SPANHOST_TYPE_STRING, 1, NULL, "insert, update, upsert, delete, hash, extract or convert"},
    {"actions.*.value", SPANHOST_TYPE_SCALAR, 0, NULL, "insert/update/upsert: the value"},
    {"actions.*.from_attribute", SPANHOST_TYPE_STRING, 0, NULL, "insert/update/upsert: take the value of this attribute"},
    {"actions.*.pattern", SPANHOST_TYPE_STRING, 0, NULL, "delete: keys matching this regex; extract: regex with named groups"},
    {"actions.*.hmac_key", SPANHOST_TYPE_STRING, 0, NULL, "hash: HMAC-SHA256 with this key instead of SHA-256"},
    {"actions.*.converted_type", SPANHOST_TYPE_STRING, 0, NULL, "convert: int, double, string or bool"},
    {"include", SPANHOST_TYPE_MAP, 0, NULL, "act only on spans that match"},
    {"include.match_type", SPANHOST_TYPE_STRING, 0, "strict", "strict or regexp: how the lists below compare"},
    {"include.services", SPANHOST_TYPE_STRING_LIST, 0, NULL, "resource service.name values"},
    {"include.span_names", SPANHOST_TYPE_STRING_LIST, 0, NULL, "span names"},
    {"include.attributes", SPANHOST_TYPE_LIST, 0, NULL, "span attributes that must be present"},
    {"include.conditions", SPANHOST_TYPE_STRING_LIST, 0, NULL, "OTTL conditions; the span matches when any holds"},
    {"include.attributes.*.key", SPANHOST_TYPE_STRING, 1, NULL, "attribute key"},
    {"include.attributes.*.value", SPANHOST_TYPE_SCALAR, 0, NULL, "value it must have (omit: presence only)"},
    {"exclude", SPANHOST_TYPE_MAP, 0, NULL, "skip spans that match"},
    {"exclude.match_type", SPANHOST_TYPE_STRING, 0, "strict", "strict or regexp: how the lists below compare"},
    {"exclude.services", SPANHOST_TYPE_STRING_LIST, 0, NULL, "resource service.name values"},
    {"exclude.span_names", SPANHOST_TYPE_STRING_LIST, 0, NULL, "span names"},
    {"exclude.attributes", SPANHOST_TYPE_LIST, 0, NULL, "span attributes that must be present"},
    {"exclude.conditions", SPANHOST_TYPE_STRING_LIST, 0, NULL, "OTTL conditions; the span matches when any holds"},
    {"exclude.attributes.*.key", SPANHOST_TYPE_STRING, 1, NULL, "attribute key"},
    {"exclude.attributes.*.value", SPANHOST_TYPE_SCALAR, 0, NULL, "value it must have (omit: presence only)"},
};

static const spanhost_plugin plugin = {
    sizeof(spanhost_plugin), SPANHOST_ABI_MAJOR, SPANHOST_ABI_MINOR, SPANHOST_KIND_PROCESSOR,
    SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING, "attributes", "1.1.0",
    "inserts, updates, upserts, deletes, hashes, extracts or converts attributes",
    attributes_create, NULL, attributes_process, NULL, NULL, NULL, attributes_destroy, SPANHOST_SCHEMA(config_keys), NULL, 0,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
