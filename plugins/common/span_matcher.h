/* The Collector's include/exclude span matching (attributes and span processors), shared by the
 * first-party C plugins. Under `include` or `exclude`:
 *   match_type: strict | regexp        how the lists compare (regexp: each item is a regex)
 *   services: [..]                     the resource's service.name
 *   span_names: [..]
 *   span_kinds: [SPAN_KIND_SERVER, ..]
 *   attributes: [{key, value}]         span attributes; without value, presence only
 *   resources: [{key, value}]          resource attributes, the same way
 *   libraries: [{name, version}]       the instrumentation scope; without version, any version
 *   conditions: ['OTTL', ..]           any one holds
 *   regexp: {cacheenabled, cachemaxnumentries}   accepted; matches are not cached
 * A span matches when every list given has a match. With strict, a value compares with its YAML
 * type (`value: false` does not match the string "false"), as the Collector's does.
 * Header-only, static functions; each takes the host table. */
#ifndef SPANHOST_SPAN_MATCHER_H
#define SPANHOST_SPAN_MATCHER_H

#include "plugin_util.h"

/* One {key, value} (or {name, version}) item. */
typedef struct kv_match {
    spanhost_str key;
    int has_value;
    spanhost_value value; /* strict: typed as written */
    regex_t re;           /* regexp: compiled value */
    int has_key_re;
    regex_t key_re;       /* regexp, libraries: compiled name */
} kv_match;

/* A list of strings compared strictly or as regexes. */
typedef struct text_list {
    size_t count;
    spanhost_str *items;
    regex_t *re;
} text_list;

typedef struct matcher {
    int active;
    int regexp;
    text_list services, names, kinds;
    kv_match *attrs, *resources, *libraries;
    size_t nattrs, nresources, nlibraries;
    spanhost_expr **conditions; /* OTTL: the span matches when any holds */
    size_t nconditions;
} matcher;

static void matcher_free_text(const matcher *m, text_list *l) {
    for (size_t i = 0; m->regexp && l->re && i < l->count; i++) regfree(&l->re[i]);
    free(l->items);
    free(l->re);
}

static void matcher_free_kvs(const matcher *m, kv_match *list, size_t n) {
    for (size_t i = 0; m->regexp && i < n; i++) {
        if (list[i].has_value) regfree(&list[i].re);
        if (list[i].has_key_re) regfree(&list[i].key_re);
    }
    free(list);
}

static void matcher_free(const spanhost_host_api *host, matcher *m) {
    matcher_free_text(m, &m->services);
    matcher_free_text(m, &m->names);
    matcher_free_text(m, &m->kinds);
    matcher_free_kvs(m, m->attrs, m->nattrs);
    matcher_free_kvs(m, m->resources, m->nresources);
    matcher_free_kvs(m, m->libraries, m->nlibraries);
    for (size_t i = 0; i < m->nconditions; i++) host->expr_free(m->conditions[i]);
    free(m->conditions);
}

static int matcher_read_text(const spanhost_host_api *host, const spanhost_config *config, const char *path, int regexp,
                             text_list *l, spanhost_status *status) {
    const spanhost_str *items = NULL;
    size_t n = 0;
    uint32_t found = host->config_string_list(config, path, &items, &n); /* a single string is a list of one */
    if (found == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "%s: must be a list of strings", path);
        return -1;
    }
    if (found != SPANHOST_CONFIG_FOUND || n == 0) return 0;
    l->items = (spanhost_str *)calloc(n, sizeof *l->items);
    if (regexp) l->re = (regex_t *)calloc(n, sizeof *l->re);
    if (!l->items || (regexp && !l->re)) return -1;
    for (size_t i = 0; i < n; i++) {
        char p[192], err[200];
        l->items[i] = items[i];
        snprintf(p, sizeof p, "%s.%zu", path, i);
        if (regexp && util_regcomp(&l->re[i], l->items[i], NULL, 0, err, sizeof err)) {
            snprintf(status->message, status->message_cap, "%s: %s", p, err);
            return -1;
        }
        l->count = i + 1;
    }
    return 0;
}

/* Reads [{<key_name>: K, <value_name>: V}] at `path`; with key_is_pattern and regexp, K is a
 * regex too (library names). */
static int matcher_read_kvs(const spanhost_host_api *host, const spanhost_config *config, const char *path, const char *key_name,
                            const char *value_name, int regexp, int key_is_pattern, kv_match **out, size_t *count,
                            spanhost_status *status) {
    size_t n = 0;
    if (host->config_count(config, path, &n) != SPANHOST_CONFIG_FOUND || n == 0) return 0;
    if (!(*out = (kv_match *)calloc(n, sizeof **out))) return -1;
    for (size_t i = 0; i < n; i++, *count = i) {
        kv_match *kv = &(*out)[i];
        char q[224], err[200];
        snprintf(q, sizeof q, "%s.%zu.%s", path, i, key_name);
        if (host->config_string(config, q, &kv->key) != SPANHOST_CONFIG_FOUND) {
            snprintf(status->message, status->message_cap, "%s: required", q);
            return -1;
        }
        if (regexp && key_is_pattern) {
            if (util_regcomp(&kv->key_re, kv->key, NULL, 0, err, sizeof err)) {
                snprintf(status->message, status->message_cap, "%s: %s", q, err);
                return -1;
            }
            kv->has_key_re = 1;
        }
        snprintf(q, sizeof q, "%s.%zu.%s", path, i, value_name);
        spanhost_value *v = &kv->value;
        int64_t iv;
        double dv;
        int32_t bv;
        if (regexp) {
            if (host->config_string(config, q, &v->as.string_value) != SPANHOST_CONFIG_FOUND) continue;
            if (util_regcomp(&kv->re, v->as.string_value, NULL, 0, err, sizeof err)) {
                snprintf(status->message, status->message_cap, "%s: %s", q, err);
                return -1;
            }
            v->type = SPANHOST_VALUE_STRING;
        } else if (host->config_int(config, q, &iv) == SPANHOST_CONFIG_FOUND) {
            v->type = SPANHOST_VALUE_INT;
            v->as.int_value = iv;
        } else if (host->config_double(config, q, &dv) == SPANHOST_CONFIG_FOUND) {
            v->type = SPANHOST_VALUE_DOUBLE;
            v->as.double_value = dv;
        } else if (host->config_bool(config, q, &bv) == SPANHOST_CONFIG_FOUND) {
            v->type = SPANHOST_VALUE_BOOL;
            v->as.bool_value = bv;
        } else if (host->config_string(config, q, &v->as.string_value) == SPANHOST_CONFIG_FOUND) {
            v->type = SPANHOST_VALUE_STRING;
        } else {
            continue;
        }
        kv->has_value = 1;
    }
    *count = n;
    return 0;
}

static int matcher_read(const spanhost_host_api *host, const spanhost_config *config, const char *name, matcher *m, spanhost_status *status) {
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
    static const char *const texts[] = {"services", "span_names", "span_kinds"};
    text_list *lists[] = {&m->services, &m->names, &m->kinds};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s.%s", name, texts[i]);
        if (matcher_read_text(host, config, p, m->regexp, lists[i], status)) return -1;
    }
    snprintf(p, sizeof p, "%s.attributes", name);
    if (matcher_read_kvs(host, config, p, "key", "value", m->regexp, 0, &m->attrs, &m->nattrs, status)) return -1;
    snprintf(p, sizeof p, "%s.resources", name);
    if (matcher_read_kvs(host, config, p, "key", "value", m->regexp, 0, &m->resources, &m->nresources, status)) return -1;
    snprintf(p, sizeof p, "%s.libraries", name);
    if (matcher_read_kvs(host, config, p, "name", "version", m->regexp, 1, &m->libraries, &m->nlibraries, status)) return -1;
    snprintf(p, sizeof p, "%s.conditions", name);
    if (util_compile_list(host, config, p, SPANHOST_EXPR_CONDITION, SPANHOST_CONTEXT_SPAN, &m->conditions, &m->nconditions, status)) return -1;
    if (!m->services.count && !m->names.count && !m->kinds.count && !m->nattrs && !m->nresources && !m->nlibraries && !m->nconditions) {
        snprintf(status->message, status->message_cap,
                 "%s: give at least one of services, span_names, span_kinds, attributes, resources, libraries or conditions", name);
        return -1;
    }
    return 0;
}

static int matcher_any_text(const matcher *m, const text_list *l, spanhost_str got) {
    for (size_t i = 0; i < l->count; i++)
        if (m->regexp ? util_regmatch(&l->re[i], got.ptr, got.len) : util_str_eq(l->items[i], got)) return 1;
    return 0;
}

/* Whether `got` (NULL: absent) satisfies one {key, value} item. */
static int matcher_value_matches(const matcher *m, const kv_match *kv, const spanhost_value *got) {
    if (!got) return 0;
    if (!kv->has_value) return 1;
    if (m->regexp) {
        if (got->type != SPANHOST_VALUE_STRING) return 0;
        return util_regmatch(&kv->re, got->as.string_value.ptr, got->as.string_value.len);
    }
    if (got->type != kv->value.type) return 0;
    switch (got->type) {
    case SPANHOST_VALUE_STRING: return util_str_eq(got->as.string_value, kv->value.as.string_value);
    case SPANHOST_VALUE_INT: return got->as.int_value == kv->value.as.int_value;
    case SPANHOST_VALUE_DOUBLE: return got->as.double_value == kv->value.as.double_value;
    case SPANHOST_VALUE_BOOL: return !got->as.bool_value == !kv->value.as.bool_value;
    default: return 0;
    }
}

static const char *const matcher_kind_names[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
                                                 "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"};

/* Whether the span matches every list the matcher has (of `conditions`, any one). A condition
 * that fails to run does not hold; it is counted as condition_errors. */
static int matcher_span_matches(const spanhost_host_api *host, const matcher *m, spanhost_batch *batch, spanhost_resource_spans *rs,
                                spanhost_scope_spans *ss, spanhost_span *span, spanhost_instance *instance, spanhost_status *status) {
    if (m->nconditions) {
        spanhost_expr_target target = {sizeof target, batch, rs->resource, ss->scope, span, NULL, NULL};
        int hit = 0;
        for (size_t i = 0; i < m->nconditions && hit <= 0; i++)
            if ((hit = host->expr_run(m->conditions[i], &target, status)) < 0) host->counter_add(instance, "condition_errors", 1);
        if (hit <= 0) return 0;
    }
    if (m->services.count && !matcher_any_text(m, &m->services, util_service_name(rs->resource))) return 0;
    if (m->names.count && !matcher_any_text(m, &m->names, span->name)) return 0;
    if (m->kinds.count) {
        const char *kind = span->kind < 6 ? matcher_kind_names[span->kind] : matcher_kind_names[0];
        spanhost_str got = {kind, strlen(kind)};
        if (!matcher_any_text(m, &m->kinds, got)) return 0;
    }
    for (size_t i = 0; i < m->nattrs; i++)
        if (!matcher_value_matches(m, &m->attrs[i], util_find(&span->attributes, m->attrs[i].key))) return 0;
    for (size_t i = 0; i < m->nresources; i++)
        if (!matcher_value_matches(m, &m->resources[i], util_find(&rs->resource->attributes, m->resources[i].key))) return 0;
    if (m->nlibraries) {
        spanhost_value version = {0};
        version.type = SPANHOST_VALUE_STRING;
        version.as.string_value = ss->scope->version;
        int hit = 0;
        for (size_t i = 0; i < m->nlibraries && !hit; i++) {
            const kv_match *lib = &m->libraries[i];
            spanhost_str name = ss->scope->name;
            int name_hit = m->regexp ? util_regmatch(&lib->key_re, name.ptr, name.len) : util_str_eq(lib->key, name);
            hit = name_hit && matcher_value_matches(m, lib, &version);
        }
        if (!hit) return 0;
    }
    return 1;
}

/* The schema rows of an include or exclude map, for a plugin's spanhost_config_key table. */
#define SPAN_MATCHER_KEYS(name, what)                                                                              \
    {name, SPANHOST_TYPE_MAP, 0, NULL, what},                                                                      \
    {name ".match_type", SPANHOST_TYPE_STRING, 0, "strict", "strict or regexp: how the lists below compare"},      \
    {name ".services", SPANHOST_TYPE_STRING_LIST, 0, NULL, "resource service.name values"},                        \
    {name ".span_names", SPANHOST_TYPE_STRING_LIST, 0, NULL, "span names"},                                        \
    {name ".span_kinds", SPANHOST_TYPE_STRING_LIST, 0, NULL, "span kinds: SPAN_KIND_SERVER, SPAN_KIND_CLIENT, ..."}, \
    {name ".attributes", SPANHOST_TYPE_LIST, 0, NULL, "span attributes that must be present"},                     \
    {name ".attributes.*.key", SPANHOST_TYPE_STRING, 1, NULL, "attribute key"},                                    \
    {name ".attributes.*.value", SPANHOST_TYPE_SCALAR, 0, NULL, "value it must have (omit: presence only)"},       \
    {name ".resources", SPANHOST_TYPE_LIST, 0, NULL, "resource attributes that must be present"},                 \
    {name ".resources.*.key", SPANHOST_TYPE_STRING, 1, NULL, "attribute key"},                                     \
    {name ".resources.*.value", SPANHOST_TYPE_SCALAR, 0, NULL, "value it must have (omit: presence only)"},        \
    {name ".libraries", SPANHOST_TYPE_LIST, 0, NULL, "instrumentation scopes"},                                    \
    {name ".libraries.*.name", SPANHOST_TYPE_STRING, 1, NULL, "scope name"},                                       \
    {name ".libraries.*.version", SPANHOST_TYPE_STRING, 0, NULL, "scope version (omit: any)"},                     \
    {name ".conditions", SPANHOST_TYPE_STRING_LIST, 0, NULL, "OTTL conditions; the span matches when any holds"}, \
    {name ".regexp", SPANHOST_TYPE_MAP, 0, NULL, "the Collector's match cache settings; accepted, not used"},     \
    {name ".regexp.cacheenabled", SPANHOST_TYPE_BOOL, 0, "false", "accepted, not used"},                            \
    {name ".regexp.cachemaxnumentries", SPANHOST_TYPE_INT, 0, "0", "accepted, not used"}

#endif
