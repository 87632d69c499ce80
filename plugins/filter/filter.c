/* filter processor: drops spans that match any listed condition.
 *
 * The Collector's shape (OTTL, compiled and run by the host's expression engine):
 *   error_mode: propagate        ignore: a condition that fails to run counts as false and is
 *                                logged; silent: the same, not logged; propagate: the batch is
 *                                refused with the error
 *   traces:
 *     span:
 *       - 'attributes["http.route"] == "/health"'
 *       - 'resource.attributes["service.name"] == "synthetic" and kind == SPAN_KIND_INTERNAL'
 *       - 'IsMatch(name, "^GET /static/")'
 *     spanevent:                   an event matching any of these is removed from its span
 *       - 'name == "log" and span.attributes["noisy"] == true'
 * A condition that does not compile is refused at create, naming its column. Both shapes may
 * be used together.
 *
 * Config:
 *   spans:                          drop a span when ANY entry matches
 *     - attribute: http.route       what to look at: one of
 *       equals: /health               attribute: KEY           (span attribute)
 *     - resource_attribute: service.name                        (resource attribute)
 *       regex: "^synthetic-"          field: name | kind | status | duration_ms
 *     - field: duration_ms          and one test:
 *       less_than: 1                  equals, not_equals        (text; kind SERVER.., status OK|ERROR|UNSET)
 *     - all:                          regex                     (POSIX extended)
 *         - {field: kind, equals: INTERNAL}   greater_than, less_than, greater_or_equal, less_or_equal
 *         - {attribute: db.system, exists: true}   exists: true|false
 *                                   `all: [...]` matches when every condition in it matches.
 *   drop_whole_trace: false         when a root span (no parent) matches, also drop the other
 *                                   spans of its trace: those in the same batch, and those that
 *                                   arrive later (trace ids remembered, up to remembered_traces)
 *   remembered_traces: 10000
 *
 * A missing attribute matches only `not_equals` and `exists: false`.
 * Counters: dropped_spans, dropped_traces.
 */
#include "plugin_util.h"

static const spanhost_host_api *host;

#define ERR_PROPAGATE 0
#define ERR_IGNORE 1
#define ERR_SILENT 2

#define F_ATTR 0
#define F_RES_ATTR 1
#define F_NAME 2
#define F_KIND 3
#define F_STATUS 4
#define F_DURATION 5

#define OP_EQ 0
#define OP_NE 1
#define OP_REGEX 2
#define OP_GT 3
#define OP_LT 4
#define OP_GE 5
#define OP_LE 6
#define OP_EXISTS 7

typedef struct condition {
    int field;
    spanhost_str key;  /* attribute key; owned by the host config */
    int op;
    spanhost_str text; /* equals / not_equals */
    double number;
    int exists;
    regex_t re;
    int has_re;
    struct condition *all; /* for `all:` entries */
    size_t all_count;
} condition;

typedef struct filter {
    spanhost_instance *instance;
    condition *conds;
    size_t count;
    spanhost_expr **ottl; /* traces.span: OTTL conditions */
    size_t ottl_count;
    spanhost_expr **events; /* traces.spanevent: an event for which one holds is removed */
    size_t event_count;
    int error_mode;       /* ERR_* */
    int whole_trace;
    util_idset dropped_traces; /* bounded: the most recent remembered_traces ids */
    util_counter dropped_spans, dropped_span_events;
} filter;

static const char *kinds[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
static const char *statuses[] = {"UNSET", "OK", "ERROR"};

static void free_conditions(condition *c, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (c[i].has_re) regfree(&c[i].re);
        free_conditions(c[i].all, c[i].all_count);
    }
    free(c);
}

static int parse_condition(const spanhost_config *config, const char *path, condition *c, spanhost_status *status) {
    char p[256];
    size_t n;
    snprintf(p, sizeof p, "%s.all", path);
    if (host->config_count(config, p, &n) == SPANHOST_CONFIG_FOUND) {
        c->all = (condition *)calloc(n ? n : 1, sizeof *c->all);
        c->all_count = n;
        for (size_t i = 0; i < n; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.all.%zu", path, i);
            if (parse_condition(config, sub, &c->all[i], status)) return -1;
        }
        return n ? 0 : (snprintf(status->message, status->message_cap, "%s.all: must list conditions", path), -1);
    }
    spanhost_str v;
    snprintf(p, sizeof p, "%s.attribute", path);
    if (host->config_string(config, p, &c->key) == SPANHOST_CONFIG_FOUND) c->field = F_ATTR;
    else {
        snprintf(p, sizeof p, "%s.resource_attribute", path);
        if (host->config_string(config, p, &c->key) == SPANHOST_CONFIG_FOUND) c->field = F_RES_ATTR;
        else {
            snprintf(p, sizeof p, "%s.field", path);
            if (host->config_string(config, p, &v) != SPANHOST_CONFIG_FOUND) {
                snprintf(status->message, status->message_cap, "%s: needs attribute, resource_attribute, field or all", path);
                return -1;
            }
            if (util_str_is(v, "name")) c->field = F_NAME;
            else if (util_str_is(v, "kind")) c->field = F_KIND;
            else if (util_str_is(v, "status")) c->field = F_STATUS;
            else if (util_str_is(v, "duration_ms")) c->field = F_DURATION;
            else {
                snprintf(status->message, status->message_cap, "%s.field: '%.*s' is not name, kind, status or duration_ms", path, (int)v.len, v.ptr);
                return -1;
            }
        }
    }
    static const char *ops[] = {"equals", "not_equals", "regex", "greater_than", "less_than", "greater_or_equal", "less_or_equal", "exists"};
    int found = 0;
    for (int op = 0; op < 8; op++) {
        snprintf(p, sizeof p, "%s.%s", path, ops[op]);
        uint32_t rc;
        if (op == OP_EXISTS) {
            int32_t b;
            rc = host->config_bool(config, p, &b);
            c->exists = b;
        } else if (op >= OP_GT) {
            rc = host->config_double(config, p, &c->number);
        } else {
            rc = host->config_string(config, p, &c->text);
        }
        if (rc == SPANHOST_CONFIG_MISSING) continue;
        if (rc == SPANHOST_CONFIG_WRONG_TYPE) {
            snprintf(status->message, status->message_cap, "%s: %s has the wrong type", path, ops[op]);
            return -1;
        }
        if (found++) {
            snprintf(status->message, status->message_cap, "%s: give exactly one test", path);
            return -1;
        }
        c->op = op;
    }
    if (!found) {
        snprintf(status->message, status->message_cap, "%s: needs a test (equals, not_equals, regex, greater_than, less_than, greater_or_equal, less_or_equal or exists)", path);
        return -1;
    }
    if (c->op == OP_REGEX) {
        char err[200];
        if (util_regcomp(&c->re, c->text, NULL, 0, err, sizeof err)) {
            snprintf(status->message, status->message_cap, "%s.regex: %s", path, err);
            return -1;
        }
        c->has_re = 1;
    }
    return 0;
}

static void destroy(void *state);

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    size_t n = 0, nottl = 0;
    const spanhost_str *texts = NULL;
    spanhost_str mode;
    int error_mode = ERR_PROPAGATE;
    /* The other signals' conditions are accepted (a Collector config has them) and never run. */
    spanhost_str other_signal;
    host->config_key(config, "metrics", 0, &other_signal); /* lists its keys: the whole section is taken as read */
    host->config_key(config, "logs", 0, &other_signal); /* lists its keys: the whole section is taken as read */
    host->config_key(config, "profiles", 0, &other_signal); /* lists its keys: the whole section is taken as read */
    if (host->config_string(config, "error_mode", &mode) == SPANHOST_CONFIG_FOUND) {
        if (util_str_is(mode, "ignore")) error_mode = ERR_IGNORE;
        else if (util_str_is(mode, "silent")) error_mode = ERR_SILENT;
        else if (!util_str_is(mode, "propagate")) {
            snprintf(status->message, status->message_cap, "error_mode: '%.*s' is not ignore, silent or propagate", (int)mode.len, mode.ptr);
            return SPANHOST_PERMANENT;
        }
    }
    const spanhost_str *event_texts = NULL;
    size_t nevents = 0;
    if (host->config_string_list(config, "traces.spanevent", &event_texts, &nevents) == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "traces.spanevent: must be a list of OTTL conditions");
        return SPANHOST_PERMANENT;
    }
    if (host->config_string_list(config, "traces.span", &texts, &nottl) == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "traces.span: must be a list of OTTL conditions");
        return SPANHOST_PERMANENT;
    }
    if (host->config_count(config, "spans", &n) != SPANHOST_CONFIG_FOUND) n = 0;
    if (n == 0 && nottl == 0 && nevents == 0) {
        snprintf(status->message, status->message_cap, "spans, traces.span or traces.spanevent: required, a list of conditions");
        return SPANHOST_PERMANENT;
    }
    filter *f = (filter *)calloc(1, sizeof *f);
    f->conds = (condition *)calloc(n ? n : 1, sizeof *f->conds);
    f->count = n;
    f->instance = instance;
    f->dropped_spans = util_counter_declare(host, instance, "dropped_spans");
    f->dropped_span_events = util_counter_declare(host, instance, "dropped_span_events");
    f->error_mode = error_mode;
    if (util_compile_list(host, config, "traces.span", SPANHOST_EXPR_CONDITION, SPANHOST_CONTEXT_SPAN, &f->ottl, &f->ottl_count, status) ||
        util_compile_list(host, config, "traces.spanevent", SPANHOST_EXPR_CONDITION, SPANHOST_CONTEXT_SPANEVENT, &f->events,
                          &f->event_count, status)) {
        destroy(f);
        return SPANHOST_PERMANENT;
    }
    for (size_t i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof path, "spans.%zu", i);
        if (parse_condition(config, path, &f->conds[i], status)) {
            free_conditions(f->conds, n);
            free(f);
            return SPANHOST_PERMANENT;
        }
    }
    int32_t b = 0;
    host->config_bool(config, "drop_whole_trace", &b);
    f->whole_trace = b;
    int64_t cap = 10000;
    if (host->config_int(config, "remembered_traces", &cap) == SPANHOST_CONFIG_WRONG_TYPE || cap < 1) cap = 10000;
    if (f->whole_trace) util_idset_init(&f->dropped_traces, (size_t)cap);
    *out = f;
    return SPANHOST_OK;
}

static int compare(const condition *c, const spanhost_value *v, int present) {
    char buf[256];
    double num;
    switch (c->op) {
    case OP_EXISTS: return present == c->exists;
    case OP_EQ: return present && util_value_text(v, buf, sizeof buf) >= 0 && util_str_is(c->text, buf);
    case OP_NE: return !present || util_value_text(v, buf, sizeof buf) < 0 || !util_str_is(c->text, buf);
    case OP_REGEX:
        if (!present) return 0;
        if (v->type == SPANHOST_VALUE_STRING) return util_regmatch(&c->re, v->as.string_value.ptr, v->as.string_value.len);
        return util_value_text(v, buf, sizeof buf) >= 0 && util_regmatch(&c->re, buf, strlen(buf));
    default:
        if (!present || util_value_number(v, &num)) return 0;
        return c->op == OP_GT ? num > c->number : c->op == OP_LT ? num < c->number : c->op == OP_GE ? num >= c->number : num <= c->number;
    }
}

static int matches(const condition *c, const spanhost_span *span, const spanhost_resource *res) {
    if (c->all) {
        for (size_t i = 0; i < c->all_count; i++)
            if (!matches(&c->all[i], span, res)) return 0;
        return 1;
    }
    spanhost_value v;
    memset(&v, 0, sizeof v);
    const spanhost_value *found = NULL;
    switch (c->field) {
    case F_ATTR: found = util_find(&span->attributes, c->key); break;
    case F_RES_ATTR: found = util_find(&res->attributes, c->key); break;
    case F_NAME: v.type = SPANHOST_VALUE_STRING; v.as.string_value = span->name; found = &v; break;
    case F_KIND:
        v.type = SPANHOST_VALUE_STRING;
        v.as.string_value.ptr = span->kind < 6 ? kinds[span->kind] : "UNSPECIFIED";
        v.as.string_value.len = strlen(v.as.string_value.ptr);
        found = &v;
        break;
    case F_STATUS:
        v.type = SPANHOST_VALUE_STRING;
        v.as.string_value.ptr = span->status_code < 3 ? statuses[span->status_code] : "UNSET";
        v.as.string_value.len = strlen(v.as.string_value.ptr);
        found = &v;
        break;
    case F_DURATION:
        v.type = SPANHOST_VALUE_DOUBLE;
        v.as.double_value = span->end_time_unix_nano > span->start_time_unix_nano
                                ? (double)(span->end_time_unix_nano - span->start_time_unix_nano) / 1e6 : 0;
        found = &v;
        break;
    }
    return compare(c, found, found != NULL);
}

static int is_root(const spanhost_span *s) {
    for (int i = 0; i < 8; i++)
        if (s->parent_span_id[i]) return 0;
    return 1;
}

/* Removes the span's events for which a traces.spanevent condition holds; -1 to refuse the
 * batch (a condition failed under error_mode: propagate). */
static int drop_events(filter *f, spanhost_batch *batch, spanhost_resource_spans *rs, spanhost_scope_spans *ss,
                       spanhost_span *span, spanhost_status *status) {
    size_t kept = 0;
    int64_t dropped = 0;
    for (size_t e = 0; e < span->events_count; e++) {
        spanhost_expr_target t = {sizeof t, batch, rs->resource, ss->scope, span, span->events[e], NULL};
        int hit = 0;
        for (size_t c = 0; c < f->event_count && hit <= 0; c++) {
            hit = host->expr_run(f->events[c], &t, status);
            if (hit < 0) {
                if (f->error_mode == ERR_PROPAGATE) return -1;
                host->counter_add(f->instance, "condition_errors", 1);
                if (f->error_mode == ERR_IGNORE) host->log(f->instance, SPANHOST_LOG_WARN, status->message, strlen(status->message));
            }
        }
        if (hit > 0) dropped++;
        else span->events[kept++] = span->events[e];
    }
    span->events_count = kept;
    if (dropped) util_counter_add(host, f->instance, f->dropped_span_events, dropped);
    return 0;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    filter *f = (filter *)state;
    int64_t dropped = 0;
    /* First pass: spans that match; roots that match mark their trace. */
    for (util_span_iter it = util_spans(batch); util_next_span(&it);) {
        spanhost_resource_spans *rs = it.rs;
        spanhost_scope_spans *ss = it.ss;
        spanhost_span *span = it.span;
        if (f->event_count && drop_events(f, batch, rs, ss, span, status)) return SPANHOST_PERMANENT;
        for (size_t c = 0; c < f->count + f->ottl_count; c++) {
            if (c < f->count) {
                if (!matches(&f->conds[c], span, rs->resource)) continue;
            } else {
                spanhost_expr_target t = {sizeof t, batch, rs->resource, ss->scope, span, NULL, NULL};
                int hit = host->expr_run(f->ottl[c - f->count], &t, status);
                if (hit < 0) {
                    if (f->error_mode == ERR_PROPAGATE) return SPANHOST_PERMANENT;
                    host->counter_add(f->instance, "condition_errors", 1);
                    if (f->error_mode == ERR_IGNORE) host->log(f->instance, SPANHOST_LOG_WARN, status->message, strlen(status->message));
                }
                if (hit <= 0) continue;
            }
            span->host_flags |= SPANHOST_SPAN_DROP;
            if (f->whole_trace && is_root(span) && util_idset_add(&f->dropped_traces, span->trace_id, 1))
                host->counter_add(f->instance, "dropped_traces", 1);
            break;
        }
    }
    /* Second pass: the rest of dropped traces, and the count. */
    for (util_span_iter it = util_spans(batch); util_next_span(&it);) {
        spanhost_span *span = it.span;
        if (f->whole_trace && util_idset_get(&f->dropped_traces, span->trace_id) >= 0) span->host_flags |= SPANHOST_SPAN_DROP;
        if (span->host_flags & SPANHOST_SPAN_DROP) dropped++;
    }
    util_counter_add(host, f->instance, f->dropped_spans, dropped);
    return SPANHOST_OK;
}

static void destroy(void *state) {
    filter *f = (filter *)state;
    free_conditions(f->conds, f->count);
    for (size_t i = 0; i < f->ottl_count; i++) host->expr_free(f->ottl[i]);
    free(f->ottl);
    for (size_t i = 0; i < f->event_count; i++) host->expr_free(f->events[i]);
    free(f->events);
    if (f->whole_trace) util_idset_free(&f->dropped_traces);
    free(f);
}

static const spanhost_config_key config_keys[] = {
    {"spans", SPANHOST_TYPE_LIST, 0, NULL, "conditions; a span matching any of them is dropped"},
    {"traces", SPANHOST_TYPE_MAP, 0, NULL, "OTTL conditions, as the Collector's filter processor takes them"},
    {"traces.span", SPANHOST_TYPE_STRING_LIST, 0, NULL, "a span matching any of these OTTL conditions is dropped"},
    {"traces.spanevent", SPANHOST_TYPE_STRING_LIST, 0, NULL, "a span event matching any of these OTTL conditions is removed"},
    {"error_mode", SPANHOST_TYPE_STRING, 0, "propagate", "a condition that fails: ignore (false, logged), silent (false) or propagate (refuse the batch)"},
    {"drop_whole_trace", SPANHOST_TYPE_BOOL, 0, "false", "a matching root span also drops the rest of its trace"},
    {"remembered_traces", SPANHOST_TYPE_INT, 0, "10000", "dropped trace ids remembered for later spans"},
    /* A Collector config's conditions for the other signals: accepted, and never run here. */
    {"metrics", SPANHOST_TYPE_MAP, 0, NULL, "accepted, never run: spanhost carries traces only"},
    {"logs", SPANHOST_TYPE_MAP, 0, NULL, "accepted, never run: spanhost carries traces only"},
    {"profiles", SPANHOST_TYPE_MAP, 0, NULL, "accepted, never run: spanhost carries traces only"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .flags = SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING,
    .name = "filter",
    .version = "1.0.0",
    .description = "drops spans (or whole traces) matching conditions",
    .create = create,
    .process = process,
    .destroy = destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
