/* transform processor: changes spans and resources with OTTL statements, in the Collector's
 * shape. The host's expression engine compiles and runs them (README, "Expressions").
 *
 *   transform:
 *     error_mode: propagate           ignore: a statement that fails is logged and skipped;
 *                                     silent: skipped; propagate: the batch is refused
 *     trace_statements:
 *       - context: span               span (default), spanevent (each event of each span) or resource
 *         conditions:                 optional: the statements run where ANY of these hold
 *           - 'attributes["http.route"] != nil'
 *         statements:                 in order; each may end in `where <condition>`
 *           - set(attributes["route.group"], "api") where IsMatch(attributes["http.route"], "^/api/")
 *           - delete_key(attributes, "http.request.header.authorization")
 *           - replace_pattern(attributes["http.url"], "token=[^&]+", "token=***")
 *           - truncate_all(attributes, 256)
 *           - limit(attributes, 64, ["service.name"])
 *           - set(status.code, 2) where attributes["http.status_code"] >= 500
 *       - context: resource
 *         statements: ['set(attributes["deployment.environment"], "prod")']
 *
 * Counters: statement_errors.
 */
#include "plugin_util.h"

static const spanhost_host_api *host;

#define ERR_PROPAGATE 0
#define ERR_IGNORE 1
#define ERR_SILENT 2

typedef struct group {
    uint32_t context;
    spanhost_expr **conditions, **statements;
    size_t nconditions, nstatements;
} group;

typedef struct transform {
    spanhost_instance *instance;
    int error_mode;
    size_t count;
    group groups[];
} transform;

static void destroy(void *state) {
    transform *t = (transform *)state;
    for (size_t g = 0; g < t->count; g++) {
        for (size_t i = 0; i < t->groups[g].nconditions; i++) host->expr_free(t->groups[g].conditions[i]);
        for (size_t i = 0; i < t->groups[g].nstatements; i++) host->expr_free(t->groups[g].statements[i]);
        free(t->groups[g].conditions);
        free(t->groups[g].statements);
    }
    free(t);
}

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    size_t n = 0;
    if (host->config_count(config, "trace_statements", &n) != SPANHOST_CONFIG_FOUND || n == 0) {
        snprintf(status->message, status->message_cap, "trace_statements: required, a list of {context, conditions, statements}");
        return SPANHOST_PERMANENT;
    }
    transform *t = (transform *)calloc(1, sizeof *t + n * sizeof(group));
    if (!t) return SPANHOST_PERMANENT;
    t->instance = instance;
    spanhost_str mode;
    if (host->config_string(config, "error_mode", &mode) == SPANHOST_CONFIG_FOUND) {
        if (util_str_is(mode, "ignore")) t->error_mode = ERR_IGNORE;
        else if (util_str_is(mode, "silent")) t->error_mode = ERR_SILENT;
        else if (!util_str_is(mode, "propagate")) {
            snprintf(status->message, status->message_cap, "error_mode: '%.*s' is not ignore, silent or propagate", (int)mode.len, mode.ptr);
            free(t);
            return SPANHOST_PERMANENT;
        }
    }
    for (size_t g = 0; g < n; g++) {
        group *gr = &t->groups[g];
        char path[64];
        spanhost_str context;
        t->count = g + 1;
        gr->context = SPANHOST_CONTEXT_SPAN;
        snprintf(path, sizeof path, "trace_statements.%zu.context", g);
        if (host->config_string(config, path, &context) == SPANHOST_CONFIG_FOUND) {
            if (util_str_is(context, "resource")) gr->context = SPANHOST_CONTEXT_RESOURCE;
            else if (util_str_is(context, "spanevent")) gr->context = SPANHOST_CONTEXT_SPANEVENT;
            else if (!util_str_is(context, "span")) {
                snprintf(status->message, status->message_cap, "%s: '%.*s' is not span, spanevent or resource (scope and the "
                         "flat form are not supported)", path, (int)context.len, context.ptr);
                destroy(t);
                return SPANHOST_PERMANENT;
            }
        }
        snprintf(path, sizeof path, "trace_statements.%zu.conditions", g);
        if (util_compile_list(host, config, path, SPANHOST_EXPR_CONDITION, gr->context, &gr->conditions, &gr->nconditions, status)) {
            destroy(t);
            return SPANHOST_PERMANENT;
        }
        snprintf(path, sizeof path, "trace_statements.%zu.statements", g);
        if (util_compile_list(host, config, path, SPANHOST_EXPR_STATEMENT, gr->context, &gr->statements, &gr->nstatements, status)) {
            destroy(t);
            return SPANHOST_PERMANENT;
        }
        if (gr->nstatements == 0) {
            snprintf(status->message, status->message_cap, "%s: required, a list of OTTL statements", path);
            destroy(t);
            return SPANHOST_PERMANENT;
        }
    }
    *out = t;
    return SPANHOST_OK;
}

/* A failed condition or statement under error_mode: 0 to go on, -1 to refuse the batch. */
static int failed(transform *t, spanhost_status *status) {
    if (t->error_mode == ERR_PROPAGATE) return -1;
    host->counter_add(t->instance, "statement_errors", 1);
    if (t->error_mode == ERR_IGNORE) host->log(t->instance, SPANHOST_LOG_WARN, status->message, strlen(status->message));
    return 0;
}

/* Runs one group on one target: its statements, if any of its conditions holds (or it has none). */
static int run_group(transform *t, const group *g, const spanhost_expr_target *target, spanhost_status *status) {
    int go = g->nconditions == 0;
    for (size_t i = 0; i < g->nconditions && !go; i++) {
        int hit = host->expr_run(g->conditions[i], target, status);
        if (hit < 0 && failed(t, status)) return -1;
        go = hit > 0;
    }
    for (size_t i = 0; go && i < g->nstatements; i++)
        if (host->expr_run(g->statements[i], target, status) < 0 && failed(t, status)) return -1;
    return 0;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    transform *t = (transform *)state;
    for (size_t g = 0; g < t->count; g++) {
        const group *gr = &t->groups[g];
        for (size_t i = 0; i < batch->resource_spans_count; i++) {
            spanhost_resource_spans *rs = batch->resource_spans[i];
            if (gr->context == SPANHOST_CONTEXT_RESOURCE) {
                spanhost_expr_target target = {sizeof target, batch, rs->resource, NULL, NULL, NULL};
                if (rs->resource && run_group(t, gr, &target, status)) return SPANHOST_PERMANENT;
                continue;
            }
            for (size_t j = 0; j < rs->scope_spans_count; j++) {
                spanhost_scope_spans *ss = rs->scope_spans[j];
                for (size_t k = 0; k < ss->spans_count; k++) {
                    spanhost_span *span = ss->spans[k];
                    spanhost_expr_target target = {sizeof target, batch, rs->resource, ss->scope, span, NULL};
                    if (gr->context == SPANHOST_CONTEXT_SPAN) {
                        if (run_group(t, gr, &target, status)) return SPANHOST_PERMANENT;
                        continue;
                    }
                    for (size_t e = 0; e < span->events_count; e++) {
                        target.event = span->events[e];
                        if (run_group(t, gr, &target, status)) return SPANHOST_PERMANENT;
                    }
                }
            }
        }
    }
    return SPANHOST_OK;
}

static const spanhost_config_key config_keys[] = {
    {"error_mode", SPANHOST_TYPE_STRING, 0, "propagate", "a statement that fails: ignore (logged), silent or propagate (refuse the batch)"},
    {"trace_statements", SPANHOST_TYPE_LIST, 1, NULL, "groups of statements, each in one context"},
    {"trace_statements.*.context", SPANHOST_TYPE_STRING, 0, "span", "span, spanevent or resource: what attributes and the field names refer to"},
    {"trace_statements.*.conditions", SPANHOST_TYPE_STRING_LIST, 0, NULL, "OTTL conditions; the statements run where any holds"},
    {"trace_statements.*.statements", SPANHOST_TYPE_STRING_LIST, 1, NULL, "OTTL statements, run in order"},
};

static const spanhost_plugin plugin = {
    sizeof(spanhost_plugin), SPANHOST_ABI_MAJOR, SPANHOST_ABI_MINOR, SPANHOST_KIND_PROCESSOR,
    SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING, "transform", "1.0.0",
    "changes spans and resources with OTTL statements", create, NULL, process, NULL, NULL, NULL, destroy,
    SPANHOST_SCHEMA(config_keys), NULL, 0,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
