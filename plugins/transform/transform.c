/* transform processor: changes spans and resources with OTTL statements, in the Collector's
 * shape. The host's expression engine compiles and runs them (README, "Expressions").
 *
 *   transform:
 *     error_mode: propagate           ignore: a statement that fails is logged and skipped;
 *                                     silent: skipped; propagate: the batch is refused
 *     trace_statements:
 *       # The flat form: each statement runs in the context its path prefixes name
 *       # (spanevent., span. or resource.; the most specific one), as in the Collector.
 *       - set(span.attributes["route.group"], "api") where IsMatch(span.attributes["http.route"], "^/api/")
 *       - set(resource.attributes["deployment.environment"], "prod")
 *       # Groups: statements in one context (given, or inferred from their prefixes; span
 *       # when they have none), run where ANY of the conditions holds, with their own
 *       # error_mode.
 *       - context: span               span, spanevent (each event of each span) or resource
 *         error_mode: ignore
 *         conditions:
 *           - 'attributes["http.route"] != nil'
 *         statements:                 in order; each may end in `where <condition>`
 *           - delete_key(attributes, "http.request.header.authorization")
 *           - replace_pattern(attributes["http.url"], "token=[^&]+", "token=***")
 *           - truncate_all(attributes, 256)
 *           - limit(attributes, 64, ["service.name"])
 *           - set(status.code, 2) where attributes["http.status_code"] >= 500
 *
 * Consecutive flat statements of one context run as one group, in order.
 * Counters: statement_errors.
 */
#include "plugin_util.h"

#include <pthread.h>
#include <time.h>

static const spanhost_host_api *host;

#define ERR_PROPAGATE 0
#define ERR_IGNORE 1
#define ERR_SILENT 2

typedef struct group {
    uint32_t context;
    int error_mode;
    int flat; /* made of flat statements: the next one of the same context joins it */
    spanhost_expr **conditions, **statements;
    size_t nconditions, nstatements;
} group;

/* error_mode ignore logs a failure at most once per LOG_EVERY_S seconds, with how many were
 * not logged: a statement that fails on every span would otherwise log a line per span. */
#define LOG_EVERY_S 10

typedef struct transform {
    spanhost_instance *instance;
    int error_mode;
    pthread_mutex_t log_lock;
    time_t last_log;
    int64_t unlogged;
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
    pthread_mutex_destroy(&t->log_lock);
    free(t);
}

/* Reads an error_mode at `path` into *mode (left alone when absent). Returns -1 on a bad value. */
static int read_error_mode(const spanhost_config *config, const char *path, int *mode, spanhost_status *status) {
    spanhost_str text;
    if (host->config_string(config, path, &text) != SPANHOST_CONFIG_FOUND) return 0;
    if (util_str_is(text, "ignore")) *mode = ERR_IGNORE;
    else if (util_str_is(text, "silent")) *mode = ERR_SILENT;
    else if (util_str_is(text, "propagate")) *mode = ERR_PROPAGATE;
    else {
        snprintf(status->message, status->message_cap, "%s: '%.*s' is not ignore, silent or propagate", path, (int)text.len, text.ptr);
        return -1;
    }
    return 0;
}

/* spanevent > span > resource; 0 for none. */
static int specificity(uint32_t c) {
    return c == SPANHOST_CONTEXT_SPANEVENT ? 3 : c == SPANHOST_CONTEXT_SPAN ? 2 : c == SPANHOST_CONTEXT_RESOURCE ? 1 : 0;
}

/* The context of a group with no `context:`: the most specific one its texts' prefixes name;
 * span when none has a prefix (as before the flat form). */
static uint32_t group_context(const spanhost_config *config, const char *path) {
    static const char *const lists[] = {"conditions", "statements"};
    uint32_t context = 0;
    for (size_t l = 0; l < 2; l++) {
        char key[96];
        const spanhost_str *texts = NULL;
        size_t n = 0;
        snprintf(key, sizeof key, "%s.%s", path, lists[l]);
        if (host->config_string_list(config, key, &texts, &n) != SPANHOST_CONFIG_FOUND) continue;
        for (size_t i = 0; i < n; i++) {
            char message[256];
            spanhost_status ignored = {sizeof ignored, 0, message, sizeof message};
            uint32_t c = host->expr_infer_context(texts[i].ptr, texts[i].len, &ignored);
            if (specificity(c) > specificity(context)) context = c;
        }
    }
    return context ? context : SPANHOST_CONTEXT_SPAN;
}

/* One flat statement, `text` at `path`: joins the last group when that is flat and of the same
 * context, else starts a group. */
static int add_flat(transform *t, spanhost_str text, const char *path, spanhost_status *status) {
    uint32_t context = host->expr_infer_context(text.ptr, text.len, status);
    if (!context) {
        char err[256];
        snprintf(err, sizeof err, "%s", status->message);
        snprintf(status->message, status->message_cap, "%s: %s in '%.*s'", path, err, (int)text.len, text.ptr);
        return -1;
    }
    group *gr = t->count ? &t->groups[t->count - 1] : NULL;
    if (!gr || !gr->flat || gr->context != context) {
        gr = &t->groups[t->count++];
        gr->context = context;
        gr->flat = 1;
        gr->error_mode = t->error_mode;
    }
    spanhost_expr **grown = (spanhost_expr **)realloc(gr->statements, (gr->nstatements + 1) * sizeof *grown);
    if (!grown) {
        snprintf(status->message, status->message_cap, "out of memory");
        return -1;
    }
    gr->statements = grown;
    if (host->expr_compile(text.ptr, text.len, SPANHOST_EXPR_STATEMENT, context, &gr->statements[gr->nstatements], status) != SPANHOST_OK) {
        char err[256];
        snprintf(err, sizeof err, "%s", status->message);
        snprintf(status->message, status->message_cap, "%s: %s in '%.*s'", path, err, (int)text.len, text.ptr);
        return -1;
    }
    gr->nstatements++;
    return 0;
}

/* One group (a map) at `path`. */
static int add_group(transform *t, const spanhost_config *config, const char *path, spanhost_status *status) {
    group *gr = &t->groups[t->count++];
    char key[96];
    spanhost_str context;
    gr->error_mode = t->error_mode;
    snprintf(key, sizeof key, "%s.error_mode", path);
    if (read_error_mode(config, key, &gr->error_mode, status)) return -1;
    snprintf(key, sizeof key, "%s.context", path);
    if (host->config_string(config, key, &context) == SPANHOST_CONFIG_FOUND) {
        if (util_str_is(context, "resource")) gr->context = SPANHOST_CONTEXT_RESOURCE;
        else if (util_str_is(context, "spanevent")) gr->context = SPANHOST_CONTEXT_SPANEVENT;
        else if (util_str_is(context, "span")) gr->context = SPANHOST_CONTEXT_SPAN;
        else {
            snprintf(status->message, status->message_cap, "%s: '%.*s' is not span, spanevent or resource (the scope context is "
                     "not supported yet)", key, (int)context.len, context.ptr);
            return -1;
        }
    } else {
        gr->context = group_context(config, path);
    }
    snprintf(key, sizeof key, "%s.conditions", path);
    if (util_compile_list(host, config, key, SPANHOST_EXPR_CONDITION, gr->context, &gr->conditions, &gr->nconditions, status)) return -1;
    snprintf(key, sizeof key, "%s.statements", path);
    if (util_compile_list(host, config, key, SPANHOST_EXPR_STATEMENT, gr->context, &gr->statements, &gr->nstatements, status)) return -1;
    if (gr->nstatements == 0) {
        snprintf(status->message, status->message_cap, "%s: required, a list of OTTL statements", key);
        return -1;
    }
    return 0;
}

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    size_t n = 0;
    /* The other signals' statements are accepted (a Collector config has them) and never run. */
    spanhost_str other_signal;
    host->config_key(config, "metric_statements", 0, &other_signal); /* lists its keys: the whole section is taken as read */
    host->config_key(config, "log_statements", 0, &other_signal); /* lists its keys: the whole section is taken as read */
    host->config_key(config, "profile_statements", 0, &other_signal); /* lists its keys: the whole section is taken as read */
    if (host->config_count(config, "trace_statements", &n) != SPANHOST_CONFIG_FOUND || n == 0) {
        snprintf(status->message, status->message_cap, "trace_statements: required, a list of OTTL statements or of {context, conditions, statements} groups");
        return SPANHOST_PERMANENT;
    }
    /* At most one group per item. */
    transform *t = (transform *)calloc(1, sizeof *t + n * sizeof(group));
    if (!t) return SPANHOST_PERMANENT;
    t->instance = instance;
    pthread_mutex_init(&t->log_lock, NULL);
    if (read_error_mode(config, "error_mode", &t->error_mode, status)) {
        destroy(t);
        return SPANHOST_PERMANENT;
    }
    for (size_t i = 0; i < n; i++) {
        char path[64];
        spanhost_str text;
        snprintf(path, sizeof path, "trace_statements.%zu", i);
        int rc = host->config_string(config, path, &text) == SPANHOST_CONFIG_FOUND ? add_flat(t, text, path, status)
                                                                                  : add_group(t, config, path, status);
        if (rc) {
            destroy(t);
            return SPANHOST_PERMANENT;
        }
    }
    *out = t;
    return SPANHOST_OK;
}

/* A failed condition or statement under its group's error_mode: 0 to go on, -1 to refuse the batch. */
static int failed(transform *t, const group *g, spanhost_status *status) {
    if (g->error_mode == ERR_PROPAGATE) return -1;
    host->counter_add(t->instance, "statement_errors", 1);
    if (g->error_mode != ERR_IGNORE) return 0;
    time_t now = time(NULL);
    int64_t unlogged = -1;
    pthread_mutex_lock(&t->log_lock);
    if (now - t->last_log >= LOG_EVERY_S) {
        unlogged = t->unlogged;
        t->unlogged = 0;
        t->last_log = now;
    } else {
        t->unlogged++;
    }
    pthread_mutex_unlock(&t->log_lock);
    if (unlogged < 0) return 0;
    char line[512];
    int n = snprintf(line, sizeof line, "%s (%" PRId64 " more failures since the last line; counter statement_errors)", status->message, unlogged);
    host->log(t->instance, SPANHOST_LOG_WARN, line, n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    return 0;
}

/* Runs one group on one target: its statements, if any of its conditions holds (or it has none). */
static int run_group(transform *t, const group *g, spanhost_expr_target *target, spanhost_status *status) {
    spanhost_kv_list cache = {NULL, 0}; /* the group's `cache` for this one target */
    target->cache = &cache;
    int go = g->nconditions == 0;
    for (size_t i = 0; i < g->nconditions && !go; i++) {
        int hit = host->expr_run(g->conditions[i], target, status);
        if (hit < 0 && failed(t, g, status)) return -1;
        go = hit > 0;
    }
    for (size_t i = 0; go && i < g->nstatements; i++)
        if (host->expr_run(g->statements[i], target, status) < 0 && failed(t, g, status)) return -1;
    return 0;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    transform *t = (transform *)state;
    for (size_t g = 0; g < t->count; g++) {
        const group *gr = &t->groups[g];
        for (size_t i = 0; i < batch->resource_spans_count; i++) {
            spanhost_resource_spans *rs = batch->resource_spans[i];
            if (gr->context == SPANHOST_CONTEXT_RESOURCE) {
                spanhost_expr_target target = {sizeof target, batch, rs->resource, NULL, NULL, NULL, NULL};
                if (rs->resource && run_group(t, gr, &target, status)) return SPANHOST_PERMANENT;
                continue;
            }
            for (size_t j = 0; j < rs->scope_spans_count; j++) {
                spanhost_scope_spans *ss = rs->scope_spans[j];
                for (size_t k = 0; k < ss->spans_count; k++) {
                    spanhost_span *span = ss->spans[k];
                    spanhost_expr_target target = {sizeof target, batch, rs->resource, ss->scope, span, NULL, NULL};
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
    {"trace_statements", SPANHOST_TYPE_LIST, 1, NULL, "OTTL statements (flat form), or groups of statements"},
    {"trace_statements.*", SPANHOST_TYPE_STRING, 0, NULL, "a statement whose path prefixes (span., spanevent., resource.) say its context"},
    {"trace_statements.*.context", SPANHOST_TYPE_STRING, 0, "inferred", "span, spanevent or resource: what attributes and the field names refer to"},
    {"trace_statements.*.error_mode", SPANHOST_TYPE_STRING, 0, "the top-level one", "ignore, silent or propagate, for this group"},
    {"trace_statements.*.conditions", SPANHOST_TYPE_STRING_LIST, 0, NULL, "OTTL conditions; the statements run where any holds"},
    {"trace_statements.*.statements", SPANHOST_TYPE_STRING_LIST, 1, NULL, "OTTL statements, run in order"},
    /* A Collector config's statements for the other signals: accepted, and never run here. */
    {"metric_statements", SPANHOST_TYPE_LIST, 0, NULL, "accepted, never run: spanhost carries traces only"},
    {"log_statements", SPANHOST_TYPE_LIST, 0, NULL, "accepted, never run: spanhost carries traces only"},
    {"profile_statements", SPANHOST_TYPE_LIST, 0, NULL, "accepted, never run: spanhost carries traces only"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .flags = SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING,
    .name = "transform",
    .version = "1.0.0",
    .description = "changes spans and resources with OTTL statements",
    .create = create,
    .process = process,
    .destroy = destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
