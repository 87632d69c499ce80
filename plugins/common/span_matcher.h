/* The Collector's include/exclude span matching (attributes and span processors), shared by the
 * first-party C plugins: match_type strict or regexp over services, span_names and attributes,
 * plus OTTL conditions. Header-only, static functions; each takes the host table. */
#ifndef SPANHOST_SPAN_MATCHER_H
#define SPANHOST_SPAN_MATCHER_H

#include "plugin_util.h"

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

static void matcher_free(const spanhost_host_api *host, matcher *m) {
    for (size_t i = 0; m->regexp && i < m->nservices; i++) regfree(&m->service_re[i]);
    for (size_t i = 0; m->regexp && i < m->nnames; i++) regfree(&m->name_re[i]);
    for (size_t i = 0; m->regexp && i < m->nattrs; i++)
        if (m->attr_has_value[i]) regfree(&m->value_re[i]);
    free(m->services); free(m->names); free(m->attr_keys); free(m->attr_values); free(m->attr_has_value);
    free(m->service_re); free(m->name_re); free(m->value_re);
    for (size_t i = 0; i < m->nconditions; i++) host->expr_free(m->conditions[i]);
    free(m->conditions);
}

/* Reads a list of strings at `path` into views (and regexes when regexp). */
static int matcher_read_list(const spanhost_host_api *host, const spanhost_config *config, const char *path, int regexp, size_t *n, spanhost_str **out,
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
    snprintf(p, sizeof p, "%s.services", name);
    if (matcher_read_list(host, config, p, m->regexp, &m->nservices, &m->services, &m->service_re, status)) return -1;
    snprintf(p, sizeof p, "%s.span_names", name);
    if (matcher_read_list(host, config, p, m->regexp, &m->nnames, &m->names, &m->name_re, status)) return -1;
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

static int matcher_text_matches(const matcher *m, const regex_t *re, spanhost_str want, spanhost_str got) {
    return m->regexp ? util_regmatch(re, got.ptr, got.len) : util_str_eq(want, got);
}

/* Whether the span matches every list the matcher has (of `conditions`, any one). A condition
 * that fails to run does not hold; it is counted as condition_errors. */
static int matcher_span_matches(const spanhost_host_api *host, const matcher *m, spanhost_batch *batch, spanhost_resource_spans *rs, spanhost_scope_spans *ss,
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
        for (size_t i = 0; i < m->nservices && !hit; i++) hit = matcher_text_matches(m, m->service_re ? &m->service_re[i] : NULL, m->services[i], svc);
        if (!hit) return 0;
    }
    if (m->nnames) {
        int hit = 0;
        for (size_t i = 0; i < m->nnames && !hit; i++) hit = matcher_text_matches(m, m->name_re ? &m->name_re[i] : NULL, m->names[i], span->name);
        if (!hit) return 0;
    }
    for (size_t i = 0; i < m->nattrs; i++) {
        const spanhost_value *v = util_find(&span->attributes, m->attr_keys[i]);
        if (!v) return 0;
        if (!m->attr_has_value[i]) continue;
        char buf[256];
        int len = util_value_text(v, buf, sizeof buf);
        spanhost_str got = {buf, len < 0 ? 0 : (size_t)len};
        if (len < 0 || !matcher_text_matches(m, &m->value_re[i], m->attr_values[i], got)) return 0;
    }
    return 1;
}

/* The schema rows of an include or exclude map, for a plugin's spanhost_config_key table. */
#define SPAN_MATCHER_KEYS(name, what)                                                                              \
    {name, SPANHOST_TYPE_MAP, 0, NULL, what},                                                                      \
    {name ".match_type", SPANHOST_TYPE_STRING, 0, "strict", "strict or regexp: how the lists below compare"},      \
    {name ".services", SPANHOST_TYPE_STRING_LIST, 0, NULL, "resource service.name values"},                        \
    {name ".span_names", SPANHOST_TYPE_STRING_LIST, 0, NULL, "span names"},                                        \
    {name ".attributes", SPANHOST_TYPE_LIST, 0, NULL, "span attributes that must be present"},                     \
    {name ".conditions", SPANHOST_TYPE_STRING_LIST, 0, NULL, "OTTL conditions; the span matches when any holds"}, \
    {name ".attributes.*.key", SPANHOST_TYPE_STRING, 1, NULL, "attribute key"},                                    \
    {name ".attributes.*.value", SPANHOST_TYPE_SCALAR, 0, NULL, "value it must have (omit: presence only)"}

#endif
