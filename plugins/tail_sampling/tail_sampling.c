/* tail_sampling processor: holds each trace for `decision_wait`, then keeps or drops it whole,
 * by policies that see all of its spans.
 *
 * Config (the Collector's tail_sampling shape):
 *   decision_wait: 30s            how long a trace is held after its first span arrives
 *   num_traces: 50000             traces held at most; past it the oldest is decided early
 *                                 (counted as evicted_early)
 *   max_spans_per_trace: 10000    spans held per trace; more are decided with the trace but
 *                                 counted as spans_over_limit and dropped
 *   decision_cache: {size: 100000}  decisions remembered, so late spans follow their trace (or the
 *                                   Collector's sampled_cache_size + non_sampled_cache_size)
 *   policies:
 *     - {name: errors, type: status_code, status_codes: [ERROR]}
 *     - {name: slow, type: latency, threshold_ms: 2000}
 *     - {name: some, type: probabilistic, sampling_percentage: 10}
 *     - {name: vip, type: string_attribute, key: customer.tier, values: [gold], invert_match: false}
 *       (enabled_regex_matching: true treats values as POSIX regexes)
 *     - {name: big, type: numeric_attribute, key: http.response_content_length, min_value: 1000000}
 *     - {name: cap, type: rate_limiting, spans_per_second: 1000}
 *     - {name: bytes, type: bytes_limiting, bytes_per_second: 1048576, burst_capacity: 2097152}
 *       (a trace costs its OTLP protobuf size)
 *     - {name: always, type: always_sample}
 *     - {name: flagged, type: boolean_attribute, key: app.debug, value: true, invert_match: false}
 *     - {name: vendor, type: trace_state, key: vendor, values: [sample]}
 *     - {name: busy, type: span_count, min_spans: 2, max_spans: 100}
 *     - {name: slow-and-some, type: and, and_sub_policy: [{...}, {...}]}
 *     - {name: no-health, type: drop, drop_sub_policy: [{...}]}  (all match: dropped, whatever else)
 *     - {name: mix, type: composite, composite: {max_total_spans_per_second: 1000, policy_order: [errors, rest],
 *        composite_sub_policy: [{name: errors, ...}, {name: rest, ...}],
 *        rate_allocation: [{policy: errors, percent: 75}, {policy: rest, percent: 25}]}}
 *   A trace is kept when any policy samples it, no invert_match policy rejects it and no drop
 *   policy matches it.
 *
 * Counters: traces_sampled, traces_dropped, spans_sampled, spans_dropped, evicted_early,
 * spans_over_limit, late_spans_sampled, late_spans_dropped, traces_decided_late (more than a tenth of decision_wait after it ended), decision_lag_max_ms.
 * Gauges: traces_held, spans_held.
 */
#include "trace_table.h"
#include "outbox.h"

/* plugins/groupbytrace builds this file as the Collector's groupbytrace processor: each trace
 * is held for wait_duration after its first span and then released whole, with no policies
 * and no decision cache (a span arriving after its trace left starts a new group). */
#ifdef GROUP_BY_TRACE
#define WAIT_KEY "wait_duration"
#else
#define WAIT_KEY "decision_wait"
#endif

#include <pthread.h>

static const spanhost_host_api *host;

#define P_ALWAYS 0
#define P_STATUS 1
#define P_LATENCY 2
#define P_PROB 3
#define P_STRING 4
#define P_NUMERIC 5
#define P_RATE 6
#define P_AND 7
#define P_COMPOSITE 8
#define P_OTTL 9
#define P_SPAN_COUNT 10
#define P_BOOL 11
#define P_TRACE_STATE 12
#define P_DROP 13
#define P_BYTES 14

#define D_NOT_SAMPLED 0
#define D_SAMPLED 1
#define D_INVERT_NOT_SAMPLED 2
#define D_DROPPED 3 /* a drop policy matched: not sampled, whatever the others say */

typedef struct policy {
    int type;
    int status_mask; /* bit per SPANHOST_STATUS_* */
    double threshold_ms, upper_ms;
    uint32_t prob_threshold;
    spanhost_str key;
    spanhost_str *values;
    regex_t *res;
    size_t nvalues;
    int regex, invert;
    int32_t bool_value;        /* P_BOOL */
    int64_t min_spans, max_spans; /* P_SPAN_COUNT; max 0: no upper bound */
    double min_value, max_value;
    int has_min, has_max;
    double spans_per_second;   /* P_RATE; P_BYTES: bytes per second */
    double burst;              /* P_BYTES: the bucket's size */
    double tokens;
    uint64_t last_refill_ns;
    struct policy *sub;
    size_t nsub;
    spanhost_expr **conditions; /* P_OTTL: a trace is sampled when any holds for any span (or event) */
    size_t nconditions, nspan_conditions; /* span conditions first, then spanevent ones */
    int silent;                 /* P_OTTL: error_mode silent (no log line per failure) */
    spanhost_instance *instance;
    spanhost_str name;
    /* As a composite's sub-policy: its share of max_total_spans_per_second, as a token bucket. */
    double budget_sps, budget_tokens;
    uint64_t budget_refill_ns;
} policy;

typedef util_trace trace;

typedef struct sampler {
    spanhost_instance *instance;
    uint64_t wait_ns;
    size_t max_traces, max_spans;
    policy *policies;
    size_t npolicies;
    pthread_mutex_t lock;
    util_trace_table traces;
    util_idset decisions; /* value: 1 sampled, 0 dropped */
    util_ticker ticker;
    util_lag lag;
    size_t spans_held;
    outbox out; /* sampled traces waiting for the pipeline to take them */
} sampler;

/* Sampled spans that may wait in the outbox; past it, process answers RETRYABLE. */
#define OUTBOX_LIMIT 200000

static void free_policies(policy *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        for (size_t v = 0; p[i].regex && v < p[i].nvalues; v++) regfree(&p[i].res[v]);
        free(p[i].values);
        free(p[i].res);
        free_policies(p[i].sub, p[i].nsub);
        for (size_t c = 0; c < p[i].nconditions; c++) host->expr_free(p[i].conditions[c]);
        free(p[i].conditions);
    }
    free(p);
}

#define PFAIL(...) do { snprintf(status->message, status->message_cap, __VA_ARGS__); return -1; } while (0)

static int parse_policy(const spanhost_config *c, const char *path, policy *p, spanhost_instance *instance, spanhost_status *status) {
    char k[256];
    p->instance = instance;
    spanhost_str type;
    size_t n;
    spanhost_str name;
    snprintf(k, sizeof k, "%s.name", path); /* the policy's label, as in the Collector */
    if (host->config_string(c, k, &name) == SPANHOST_CONFIG_WRONG_TYPE) PFAIL("%s.name: must be a string", path);
    p->name = name;
    snprintf(k, sizeof k, "%s.type", path);
    if (host->config_string(c, k, &type) != SPANHOST_CONFIG_FOUND) PFAIL("%s.type: required", path);
    /* The Collector nests a policy's settings under its type ({type: latency, latency:
     * {threshold_ms: 500}}); the flat shape ({type: latency, threshold_ms: 500}) works too. */
    char params[192]; /* leaves room in k for the longest key and an index */
    size_t nested;
    snprintf(params, sizeof params, "%s.%.*s", path, (int)type.len, type.ptr);
    if (host->config_count(c, params, &nested) != SPANHOST_CONFIG_FOUND) snprintf(params, sizeof params, "%s", path);
    if (util_str_is(type, "always_sample")) { p->type = P_ALWAYS; return 0; }
    if (util_str_is(type, "status_code")) {
        p->type = P_STATUS;
        snprintf(k, sizeof k, "%s.status_codes", params);
        if (host->config_count(c, k, &n) != SPANHOST_CONFIG_FOUND || !n) PFAIL("%s.status_codes: required, e.g. [ERROR]", params);
        for (size_t i = 0; i < n; i++) {
            spanhost_str code;
            snprintf(k, sizeof k, "%s.status_codes.%zu", params, i);
            host->config_string(c, k, &code);
            if (util_str_is(code, "ERROR")) p->status_mask |= 1 << SPANHOST_STATUS_ERROR;
            else if (util_str_is(code, "OK")) p->status_mask |= 1 << SPANHOST_STATUS_OK;
            else if (util_str_is(code, "UNSET")) p->status_mask |= 1 << SPANHOST_STATUS_UNSET;
            else PFAIL("%s: '%.*s' is not ERROR, OK or UNSET", k, (int)code.len, code.ptr);
        }
        return 0;
    }
    if (util_str_is(type, "latency")) {
        p->type = P_LATENCY;
        snprintf(k, sizeof k, "%s.threshold_ms", params);
        if (host->config_double(c, k, &p->threshold_ms) != SPANHOST_CONFIG_FOUND || p->threshold_ms < 0) PFAIL("%s: required, milliseconds", k);
        p->upper_ms = 0;
        snprintf(k, sizeof k, "%s.upper_threshold_ms", params);
        host->config_double(c, k, &p->upper_ms);
        return 0;
    }
    if (util_str_is(type, "probabilistic")) {
        double pct;
        p->type = P_PROB;
        snprintf(k, sizeof k, "%s.sampling_percentage", params);
        if (host->config_double(c, k, &pct) != SPANHOST_CONFIG_FOUND || pct < 0 || pct > 100) PFAIL("%s: required, 0 to 100", k);
        p->prob_threshold = (uint32_t)(pct / 100.0 * 0x4000 + 0.5);
        return 0;
    }
    if (util_str_is(type, "string_attribute") || util_str_is(type, "numeric_attribute")) {
        int numeric = util_str_is(type, "numeric_attribute");
        p->type = numeric ? P_NUMERIC : P_STRING;
        snprintf(k, sizeof k, "%s.key", params);
        if (host->config_string(c, k, &p->key) != SPANHOST_CONFIG_FOUND) PFAIL("%s: required", k);
        int32_t b = 0;
        snprintf(k, sizeof k, "%s.invert_match", params);
        host->config_bool(c, k, &b);
        p->invert = b;
        if (numeric) {
            snprintf(k, sizeof k, "%s.min_value", params);
            p->has_min = host->config_double(c, k, &p->min_value) == SPANHOST_CONFIG_FOUND;
            snprintf(k, sizeof k, "%s.max_value", params);
            p->has_max = host->config_double(c, k, &p->max_value) == SPANHOST_CONFIG_FOUND;
            if (!p->has_min && !p->has_max) PFAIL("%s: give min_value, max_value or both", params);
            return 0;
        }
        b = 0;
        snprintf(k, sizeof k, "%s.enabled_regex_matching", params);
        host->config_bool(c, k, &b);
        p->regex = b;
        /* The Collector's cache of regex results: accepted; compiled regexes need none here. */
        int64_t cache_size = 0;
        snprintf(k, sizeof k, "%s.cache_max_size", params);
        if (host->config_int(c, k, &cache_size) == SPANHOST_CONFIG_WRONG_TYPE || cache_size < 0) PFAIL("%s: must be a non-negative integer", k);
        snprintf(k, sizeof k, "%s.values", params);
        if (host->config_count(c, k, &p->nvalues) != SPANHOST_CONFIG_FOUND || !p->nvalues) PFAIL("%s: required, a list", k);
        p->values = (spanhost_str *)calloc(p->nvalues, sizeof *p->values);
        if (p->regex) p->res = (regex_t *)calloc(p->nvalues, sizeof *p->res);
        for (size_t i = 0; i < p->nvalues; i++) {
            char err[200];
            snprintf(k, sizeof k, "%s.values.%zu", params, i);
            if (host->config_string(c, k, &p->values[i]) != SPANHOST_CONFIG_FOUND) { p->nvalues = i; PFAIL("%s: must be a string", k); }
            if (p->regex && util_regcomp(&p->res[i], p->values[i], NULL, 0, err, sizeof err)) { p->nvalues = i; PFAIL("%s: %s", k, err); }
        }
        return 0;
    }
    if (util_str_is(type, "ottl_condition")) {
        /* The Collector's shape: {type: ottl_condition, ottl_condition: {error_mode, span: [...]}}. */
        const spanhost_str *texts = NULL;
        spanhost_str mode;
        p->type = P_OTTL;
        snprintf(k, sizeof k, "%s.error_mode", params);
        if (host->config_string(c, k, &mode) == SPANHOST_CONFIG_FOUND) {
            if (util_str_is(mode, "silent")) p->silent = 1;
            else if (!util_str_is(mode, "ignore") && !util_str_is(mode, "propagate")) PFAIL("%s: '%.*s' is not ignore, silent or propagate", k, (int)mode.len, mode.ptr);
        }
        /* span conditions first, then spanevent ones: p->nspan_conditions tells them apart. */
        size_t nspan = 0, nevent = 0;
        const spanhost_str *event_texts = NULL;
        snprintf(k, sizeof k, "%s.span", params);
        if (host->config_string_list(c, k, &texts, &nspan) == SPANHOST_CONFIG_WRONG_TYPE) PFAIL("%s: must be a list of OTTL conditions", k);
        snprintf(k, sizeof k, "%s.spanevent", params);
        if (host->config_string_list(c, k, &event_texts, &nevent) == SPANHOST_CONFIG_WRONG_TYPE) PFAIL("%s: must be a list of OTTL conditions", k);
        if (nspan + nevent == 0) PFAIL("%s: give span or spanevent, lists of OTTL conditions", params);
        if (!(p->conditions = (spanhost_expr **)calloc(nspan + nevent, sizeof *p->conditions))) PFAIL("out of memory");
        p->nspan_conditions = nspan;
        for (size_t i = 0; i < nspan + nevent; i++) {
            const spanhost_str *text = i < nspan ? &texts[i] : &event_texts[i - nspan];
            snprintf(k, sizeof k, "%s.%s.%zu", params, i < nspan ? "span" : "spanevent", i < nspan ? i : i - nspan);
            if (host->expr_compile(text->ptr, text->len, SPANHOST_EXPR_CONDITION, i < nspan ? SPANHOST_CONTEXT_SPAN : SPANHOST_CONTEXT_SPANEVENT,
                                   &p->conditions[i], status) != SPANHOST_OK) {
                char err[256];
                snprintf(err, sizeof err, "%s", status->message);
                PFAIL("%s: %s in '%.*s'", k, err, (int)text->len, text->ptr);
            }
            p->nconditions = i + 1;
        }
        return 0;
    }
    if (util_str_is(type, "span_count")) {
        p->type = P_SPAN_COUNT;
        snprintf(k, sizeof k, "%s.min_spans", params);
        if (host->config_int(c, k, &p->min_spans) != SPANHOST_CONFIG_FOUND || p->min_spans < 0) PFAIL("%s: required, at least 0", k);
        snprintf(k, sizeof k, "%s.max_spans", params);
        if (host->config_int(c, k, &p->max_spans) == SPANHOST_CONFIG_WRONG_TYPE || p->max_spans < 0) PFAIL("%s: must be at least 0", k);
        if (p->max_spans && p->max_spans < p->min_spans) PFAIL("%s: must be at least min_spans", k);
        return 0;
    }
    if (util_str_is(type, "boolean_attribute")) {
        p->type = P_BOOL;
        snprintf(k, sizeof k, "%s.key", params);
        if (host->config_string(c, k, &p->key) != SPANHOST_CONFIG_FOUND) PFAIL("%s: required", k);
        snprintf(k, sizeof k, "%s.value", params);
        if (host->config_bool(c, k, &p->bool_value) != SPANHOST_CONFIG_FOUND) PFAIL("%s: required, true or false", k);
        int32_t b = 0;
        snprintf(k, sizeof k, "%s.invert_match", params);
        host->config_bool(c, k, &b);
        p->invert = b;
        return 0;
    }
    if (util_str_is(type, "trace_state")) {
        p->type = P_TRACE_STATE;
        snprintf(k, sizeof k, "%s.key", params);
        if (host->config_string(c, k, &p->key) != SPANHOST_CONFIG_FOUND || !p->key.len) PFAIL("%s: required", k);
        snprintf(k, sizeof k, "%s.values", params);
        if (host->config_count(c, k, &p->nvalues) != SPANHOST_CONFIG_FOUND || !p->nvalues) PFAIL("%s: required, a list", k);
        p->values = (spanhost_str *)calloc(p->nvalues, sizeof *p->values);
        for (size_t i = 0; i < p->nvalues; i++) {
            snprintf(k, sizeof k, "%s.values.%zu", params, i);
            if (host->config_string(c, k, &p->values[i]) != SPANHOST_CONFIG_FOUND) { p->nvalues = i; PFAIL("%s: must be a string", k); }
        }
        return 0;
    }
    if (util_str_is(type, "drop")) {
        /* The Collector's drop policy: a trace every drop_sub_policy samples is dropped, whatever
         * the other policies decide. */
        p->type = P_DROP;
        snprintf(k, sizeof k, "%s.drop_sub_policy", params);
        if (host->config_count(c, k, &p->nsub) != SPANHOST_CONFIG_FOUND || !p->nsub) PFAIL("%s: required, a list of policies", k);
        p->sub = (policy *)calloc(p->nsub, sizeof *p->sub);
        for (size_t i = 0; i < p->nsub; i++) {
            snprintf(k, sizeof k, "%s.drop_sub_policy.%zu", params, i);
            if (parse_policy(c, k, &p->sub[i], instance, status)) return -1;
        }
        return 0;
    }
    if (util_str_is(type, "bytes_limiting")) {
        /* A token bucket of bytes; a trace costs its OTLP protobuf size, as in the Collector. */
        p->type = P_BYTES;
        snprintf(k, sizeof k, "%s.bytes_per_second", params);
        if (host->config_double(c, k, &p->spans_per_second) != SPANHOST_CONFIG_FOUND || p->spans_per_second <= 0) PFAIL("%s: required, > 0", k);
        p->burst = 2 * p->spans_per_second;
        snprintf(k, sizeof k, "%s.burst_capacity", params);
        uint32_t found = host->config_double(c, k, &p->burst);
        if (found == SPANHOST_CONFIG_WRONG_TYPE || p->burst <= 0) PFAIL("%s: must be > 0", k);
        p->tokens = p->burst;
        return 0;
    }
    if (util_str_is(type, "rate_limiting")) {
        p->type = P_RATE;
        snprintf(k, sizeof k, "%s.spans_per_second", params);
        if (host->config_double(c, k, &p->spans_per_second) != SPANHOST_CONFIG_FOUND || p->spans_per_second <= 0) PFAIL("%s: required, > 0", k);
        p->tokens = p->spans_per_second;
        return 0;
    }
    if (util_str_is(type, "and")) {
        p->type = P_AND;
        snprintf(k, sizeof k, "%s.and_sub_policy", params);
        if (host->config_count(c, k, &p->nsub) != SPANHOST_CONFIG_FOUND || !p->nsub) PFAIL("%s: required, a list of policies", k);
        p->sub = (policy *)calloc(p->nsub, sizeof *p->sub);
        for (size_t i = 0; i < p->nsub; i++) {
            snprintf(k, sizeof k, "%s.and_sub_policy.%zu", params, i);
            if (parse_policy(c, k, &p->sub[i], instance, status)) return -1;
        }
        return 0;
    }
    if (util_str_is(type, "composite")) {
        /* Sub-policies tried in policy_order; each may sample only within its share (rate_allocation
         * percent, the rest split evenly among those without one) of max_total_spans_per_second. */
        double total;
        p->type = P_COMPOSITE;
        snprintf(k, sizeof k, "%s.max_total_spans_per_second", params);
        if (host->config_double(c, k, &total) != SPANHOST_CONFIG_FOUND || total <= 0) PFAIL("%s: required, > 0", k);
        snprintf(k, sizeof k, "%s.composite_sub_policy", params);
        if (host->config_count(c, k, &p->nsub) != SPANHOST_CONFIG_FOUND || !p->nsub) PFAIL("%s: required, a list of policies", k);
        policy *subs = (policy *)calloc(p->nsub, sizeof *subs);
        p->sub = subs;
        for (size_t i = 0; i < p->nsub; i++) {
            snprintf(k, sizeof k, "%s.composite_sub_policy.%zu", params, i);
            if (parse_policy(c, k, &subs[i], instance, status)) return -1;
            if (!subs[i].name.len) PFAIL("%s.name: required in a composite", k);
            subs[i].budget_sps = -1;
        }
        size_t order_n = 0;
        snprintf(k, sizeof k, "%s.policy_order", params);
        if (host->config_count(c, k, &order_n) == SPANHOST_CONFIG_FOUND) {
            if (order_n != p->nsub) PFAIL("%s: must name every composite_sub_policy once", k);
            p->sub = (policy *)calloc(p->nsub, sizeof *p->sub);
            for (size_t i = 0; i < order_n; i++) {
                spanhost_str want;
                size_t at = p->nsub;
                snprintf(k, sizeof k, "%s.policy_order.%zu", params, i);
                if (host->config_string(c, k, &want) == SPANHOST_CONFIG_FOUND)
                    for (size_t j = 0; j < p->nsub; j++) if (util_str_eq(subs[j].name, want) && subs[j].budget_sps == -1) at = j;
                if (at == p->nsub) { free(subs); PFAIL("%s: not a composite_sub_policy name (or named twice)", k); }
                p->sub[i] = subs[at];
                subs[at].budget_sps = -2; /* placed */
            }
            free(subs);
        }
        size_t alloc_n = 0, unallocated = 0;
        double percent_left = 100;
        snprintf(k, sizeof k, "%s.rate_allocation", params);
        if (host->config_count(c, k, &alloc_n) != SPANHOST_CONFIG_FOUND) alloc_n = 0;
        for (size_t i = 0; i < alloc_n; i++) {
            spanhost_str which;
            double pct;
            snprintf(k, sizeof k, "%s.rate_allocation.%zu.policy", params, i);
            if (host->config_string(c, k, &which) != SPANHOST_CONFIG_FOUND) PFAIL("%s: required", k);
            snprintf(k, sizeof k, "%s.rate_allocation.%zu.percent", params, i);
            if (host->config_double(c, k, &pct) != SPANHOST_CONFIG_FOUND || pct < 0 || pct > percent_left) PFAIL("%s: 0 to 100 in all", k);
            size_t j = 0;
            while (j < p->nsub && !util_str_eq(p->sub[j].name, which)) j++;
            if (j == p->nsub) PFAIL("%s.rate_allocation.%zu.policy: '%.*s' is not a composite_sub_policy name", params, i, (int)which.len, which.ptr);
            p->sub[j].budget_sps = total * pct / 100;
            percent_left -= pct;
        }
        for (size_t j = 0; j < p->nsub; j++) if (p->sub[j].budget_sps < 0) unallocated++;
        for (size_t j = 0; j < p->nsub; j++)
            if (p->sub[j].budget_sps < 0) p->sub[j].budget_sps = total * percent_left / 100 / (double)unallocated;
        for (size_t j = 0; j < p->nsub; j++) p->sub[j].budget_tokens = p->sub[j].budget_sps;
        return 0;
    }
    PFAIL("%s.type: '%.*s' is not supported (always_sample, status_code, latency, probabilistic, string_attribute, "
          "numeric_attribute, boolean_attribute, trace_state, span_count, ottl_condition, rate_limiting, bytes_limiting, and, drop, composite)", path, (int)type.len, type.ptr);
}

/* --- Decisions ------------------------------------------------------------------------- */

static uint32_t id_hash(const uint8_t *id) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++) h = (h ^ id[i]) * 16777619u;
    return h ^ (h >> 16);
}

typedef int (*span_fn)(const policy *p, const spanhost_span *s);

/* Whether any span of the trace satisfies fn. */
static int any_span(const trace *t, const policy *p, span_fn fn) {
    for (util_span_iter it = util_spans(t->spans); util_next_span(&it);)
        if (fn(p, it.span)) return 1;
    return 0;
}

static int status_matches(const policy *p, const spanhost_span *s) { return (p->status_mask >> (s->status_code < 3 ? s->status_code : 0)) & 1; }

static int string_matches(const policy *p, const spanhost_span *s) {
    const spanhost_value *v = util_find(&s->attributes, p->key);
    if (!v || v->type != SPANHOST_VALUE_STRING) return 0;
    for (size_t i = 0; i < p->nvalues; i++)
        if (p->regex ? util_regmatch(&p->res[i], v->as.string_value.ptr, v->as.string_value.len) : util_str_eq(p->values[i], v->as.string_value))
            return 1;
    return 0;
}

static int numeric_matches(const policy *p, const spanhost_span *s) {
    const spanhost_value *v = util_find(&s->attributes, p->key);
    double x;
    if (!v || util_value_number(v, &x)) return 0;
    return (!p->has_min || x >= p->min_value) && (!p->has_max || x <= p->max_value);
}

static int bool_matches(const policy *p, const spanhost_span *s) {
    const spanhost_value *v = util_find(&s->attributes, p->key);
    return v && v->type == SPANHOST_VALUE_BOOL && (v->as.bool_value != 0) == (p->bool_value != 0);
}

/* Whether the W3C trace state ("k1=v1,k2=v2") holds the policy's key with one of its values. */
static int trace_state_matches(const policy *p, const spanhost_span *s) {
    const char *at = s->trace_state.ptr, *end = at ? at + s->trace_state.len : NULL;
    while (at && at < end) {
        const char *comma = memchr(at, ',', (size_t)(end - at)), *stop = comma ? comma : end;
        while (at < stop && (*at == ' ' || *at == '\t')) at++;
        const char *eq = memchr(at, '=', (size_t)(stop - at));
        if (eq && (size_t)(eq - at) == p->key.len && !memcmp(at, p->key.ptr, p->key.len)) {
            const char *v = eq + 1, *vend = stop;
            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
            for (size_t i = 0; i < p->nvalues; i++)
                if (p->values[i].len == (size_t)(vend - v) && !memcmp(p->values[i].ptr, v, p->values[i].len)) return 1;
        }
        at = comma ? comma + 1 : end;
    }
    return 0;
}

/* Whether any OTTL condition of `p` holds for any span (or event) of the trace. Run with no batch: what a
 * function returns is read in place, never copied into the held trace. */
static int ottl_matches(const policy *p, const trace *t) {
    char message[256];
    spanhost_status status = {sizeof status, 0, message, sizeof message};
    for (util_span_iter it = util_spans(t->spans); util_next_span(&it);) {
        spanhost_span *span = it.span;
        spanhost_expr_target target = {sizeof target, NULL, it.rs->resource, it.ss->scope, span, NULL, NULL};
        for (size_t c = 0; c < p->nconditions; c++) {
            size_t events = c < p->nspan_conditions ? 1 : span->events_count;
            for (size_t e = 0; e < events; e++) {
                target.event = c < p->nspan_conditions ? NULL : span->events[e];
                message[0] = 0;
                int hit = host->expr_run(p->conditions[c], &target, &status);
                if (hit > 0) return 1;
                if (hit < 0) {
                    host->counter_add(p->instance, "condition_errors", 1);
                    if (!p->silent) host->log(p->instance, SPANHOST_LOG_WARN, message, strlen(message));
                }
            }
        }
    }
    return 0;
}

static void trace_span_range(const trace *t, uint64_t *start, uint64_t *end) {
    *start = UINT64_MAX;
    *end = 0;
    for (util_span_iter it = util_spans(t->spans); util_next_span(&it);) {
        if (it.span->start_time_unix_nano < *start) *start = it.span->start_time_unix_nano;
        if (it.span->end_time_unix_nano > *end) *end = it.span->end_time_unix_nano;
    }
}

static int evaluate(policy *p, const trace *t) {
    uint64_t start, end;
    switch (p->type) {
    case P_ALWAYS: return D_SAMPLED;
    case P_STATUS: return any_span(t, p, status_matches) ? D_SAMPLED : D_NOT_SAMPLED;
    case P_LATENCY: {
        trace_span_range(t, &start, &end);
        double ms = end > start ? (double)(end - start) / 1e6 : 0;
        return ms >= p->threshold_ms && (p->upper_ms <= 0 || ms <= p->upper_ms) ? D_SAMPLED : D_NOT_SAMPLED;
    }
    case P_PROB: return (id_hash(t->id) & 0x3fff) < p->prob_threshold ? D_SAMPLED : D_NOT_SAMPLED;
    case P_OTTL: return ottl_matches(p, t) ? D_SAMPLED : D_NOT_SAMPLED;
    case P_STRING: {
        int hit = any_span(t, p, string_matches);
        if (p->invert) return hit ? D_INVERT_NOT_SAMPLED : D_SAMPLED;
        return hit ? D_SAMPLED : D_NOT_SAMPLED;
    }
    case P_NUMERIC: {
        int hit = any_span(t, p, numeric_matches);
        if (p->invert) return hit ? D_INVERT_NOT_SAMPLED : D_SAMPLED;
        return hit ? D_SAMPLED : D_NOT_SAMPLED;
    }
    case P_BYTES: {
        spanhost_buffer encoded = {NULL, 0};
        if (host->encode_batch(t->spans, SPANHOST_ENCODING_OTLP_PROTO, &encoded) != SPANHOST_OK) return D_NOT_SAMPLED;
        double size = (double)encoded.len;
        host->buffer_free(&encoded);
        uint64_t now = util_now_ns();
        if (p->last_refill_ns) p->tokens += (double)(now - p->last_refill_ns) / 1e9 * p->spans_per_second;
        if (p->tokens > p->burst) p->tokens = p->burst;
        p->last_refill_ns = now;
        if (p->tokens < size) return D_NOT_SAMPLED;
        p->tokens -= size;
        return D_SAMPLED;
    }
    case P_RATE: {
        uint64_t now = util_now_ns();
        if (p->last_refill_ns) p->tokens += (double)(now - p->last_refill_ns) / 1e9 * p->spans_per_second;
        if (p->tokens > p->spans_per_second) p->tokens = p->spans_per_second;
        p->last_refill_ns = now;
        if (p->tokens < (double)t->span_count) return D_NOT_SAMPLED;
        p->tokens -= (double)t->span_count;
        return D_SAMPLED;
    }
    case P_AND:
    case P_DROP:
        for (size_t i = 0; i < p->nsub; i++)
            if (evaluate(&p->sub[i], t) != D_SAMPLED) return D_NOT_SAMPLED;
        return p->type == P_DROP ? D_DROPPED : D_SAMPLED;
    case P_SPAN_COUNT:
        return (int64_t)t->span_count >= p->min_spans && (!p->max_spans || (int64_t)t->span_count <= p->max_spans) ? D_SAMPLED
                                                                                                                  : D_NOT_SAMPLED;
    case P_BOOL: {
        int hit = any_span(t, p, bool_matches);
        if (p->invert) return hit ? D_INVERT_NOT_SAMPLED : D_SAMPLED;
        return hit ? D_SAMPLED : D_NOT_SAMPLED;
    }
    case P_TRACE_STATE: return any_span(t, p, trace_state_matches) ? D_SAMPLED : D_NOT_SAMPLED;
    case P_COMPOSITE: {
        uint64_t now = util_now_ns();
        for (size_t i = 0; i < p->nsub; i++) {
            policy *sub = &p->sub[i];
            if (evaluate(sub, t) != D_SAMPLED) continue;
            if (sub->budget_refill_ns) sub->budget_tokens += (double)(now - sub->budget_refill_ns) / 1e9 * sub->budget_sps;
            if (sub->budget_tokens > sub->budget_sps) sub->budget_tokens = sub->budget_sps;
            sub->budget_refill_ns = now;
            if (sub->budget_tokens < (double)t->span_count) continue; /* its share is spent: the next policy may take it */
            sub->budget_tokens -= (double)t->span_count;
            return D_SAMPLED;
        }
        return D_NOT_SAMPLED;
    }
    }
    return D_NOT_SAMPLED;
}

/* A drop policy's match or an inverted match drops the trace whatever the others say; else any
 * sampled samples it. */
static int decide(sampler *s, const trace *t) {
    if (s->npolicies == 0) return 1; /* groupbytrace: every group is released */
    int sampled = 0;
    for (size_t i = 0; i < s->npolicies; i++) {
        int d = evaluate(&s->policies[i], t);
        if (d == D_DROPPED || d == D_INVERT_NOT_SAMPLED) return 0;
        if (d == D_SAMPLED) sampled = 1;
    }
    return sampled;
}

/* --- The held traces ------------------------------------------------------------------- */

/* Decides a trace that has been unlinked; emits it when sampled. Called without the lock held
 * for emit (which runs the rest of the pipeline). Returns the spans it dropped. */
static void finish(sampler *s, trace *t, int sampled) {
    host->counter_add(s->instance, sampled ? "traces_sampled" : "traces_dropped", 1);
    host->counter_add(s->instance, sampled ? "spans_sampled" : "spans_dropped", (int64_t)t->span_count);
    if (t->over_limit) host->counter_add(s->instance, "spans_over_limit", (int64_t)t->over_limit);
    if (sampled) {
        /* Kept traces leave in decision order; while the pipeline refuses they wait here. The
         * trace is released once they have left (its spans over the limit were dropped). */
        host->batch_retain(t->spans);
        outbox_push_trace(&s->out, host, s->instance, t->spans, t->span_count, t->id);
    } else if (SPANHOST_HOST_HAS(host, release_trace)) {
        host->release_trace(s->instance, t->id);
    }
    util_trace_free(host, t);
}

/* Sets the gauges of what is held. Called with the lock held. */
static void report_held(sampler *s) {
    host->gauge_set(s->instance, "traces_held", (int64_t)s->traces.held);
    host->gauge_set(s->instance, "spans_held", (int64_t)s->spans_held);
}

/* Takes every trace whose wait is over (or all of them) off the table, decided. */
static size_t take_due(sampler *s, int all, trace **out, int *decisions, size_t cap) {
    uint64_t now = util_now_ns();
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    while (s->traces.oldest && n < cap && (all || now - s->traces.oldest->first_seen_ns >= s->wait_ns)) {
        trace *t = s->traces.oldest;
        util_traces_unlink(&s->traces, t);
        if (!all) util_lag_note(&s->lag, now, t, s->wait_ns);
        s->spans_held -= t->span_count;
        decisions[n] = decide(s, t);
        util_idset_add(&s->decisions, t->id, (uint8_t)decisions[n]);
        out[n++] = t;
    }
    util_lag_report(&s->lag, host, s->instance);
    report_held(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void decide_due(sampler *s, int all) {
    trace *due[256];
    int decisions[256];
    size_t n;
    while ((n = take_due(s, all, due, decisions, 256)) > 0)
        for (size_t i = 0; i < n; i++) finish(s, due[i], decisions[i]);
    outbox_drain(&s->out, host, s->instance, all);
}

static void tick(void *arg) { decide_due((sampler *)arg, 0); }

/* --- Hooks ----------------------------------------------------------------------------- */

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    sampler *s = (sampler *)calloc(1, sizeof *s);
#ifdef GROUP_BY_TRACE
    double wait_ms = 1000;
    int64_t num = 1000000, max_spans = 10000, cache = 1, workers = 1;
#else
    double wait_ms = 30000;
    int64_t num = 50000, max_spans = 10000, cache = 100000;
#endif
    size_t n = 0;
    if (!s) return SPANHOST_PERMANENT;
    s->instance = instance;
    if (util_trace_settings(host, config, WAIT_KEY, &wait_ms, &num, &max_spans, status)) goto fail;
#ifdef GROUP_BY_TRACE
    int32_t flag = 0;
    if (host->config_int(config, "num_workers", &workers) == SPANHOST_CONFIG_WRONG_TYPE || workers < 1) {
        snprintf(status->message, status->message_cap, "num_workers: must be a positive integer");
        goto fail;
    }
    if (host->config_bool(config, "store_on_disk", &flag) == SPANHOST_CONFIG_FOUND && flag) {
        snprintf(status->message, status->message_cap,
                 "store_on_disk: Collector key `store_on_disk` is not supported by spanhost: held spans are kept in the hold journal when an exporter of the pipeline has a persistent queue");
        goto fail;
    }
    host->config_bool(config, "discard_orphans", &flag); /* accepted: as in the Collector, unused for traces */
#else
    if (host->config_int(config, "decision_cache.size", &cache) == SPANHOST_CONFIG_WRONG_TYPE || cache < 1) {
        snprintf(status->message, status->message_cap, "decision_cache.size: must be a positive integer");
        goto fail;
    }
    /* The Collector's keys: both decisions share one table here, as large as the two together. */
    int64_t sampled_cache = 0, non_sampled_cache = 0;
    int has_sampled = host->config_int(config, "decision_cache.sampled_cache_size", &sampled_cache);
    int has_non_sampled = host->config_int(config, "decision_cache.non_sampled_cache_size", &non_sampled_cache);
    if (has_sampled == SPANHOST_CONFIG_WRONG_TYPE || has_non_sampled == SPANHOST_CONFIG_WRONG_TYPE || sampled_cache < 0 ||
        non_sampled_cache < 0) {
        snprintf(status->message, status->message_cap, "decision_cache: sampled_cache_size and non_sampled_cache_size are counts of traces");
        goto fail;
    }
    if (has_sampled == SPANHOST_CONFIG_FOUND || has_non_sampled == SPANHOST_CONFIG_FOUND)
        cache = sampled_cache + non_sampled_cache > 0 ? sampled_cache + non_sampled_cache : 1;
    /* The Collector sizes its maps from this hint; the trace table here is sized by num_traces. */
    int64_t expected = 0;
    if (host->config_int(config, "expected_new_traces_per_sec", &expected) == SPANHOST_CONFIG_WRONG_TYPE || expected < 0) {
        snprintf(status->message, status->message_cap, "expected_new_traces_per_sec: must be a non-negative integer");
        goto fail;
    }
    if (host->config_count(config, "policies", &n) != SPANHOST_CONFIG_FOUND || n == 0) {
        snprintf(status->message, status->message_cap, "policies: required, a list of {name, type, ...}");
        goto fail;
    }
#endif
    s->policies = n ? (policy *)calloc(n, sizeof *s->policies) : NULL;
    s->npolicies = n;
    for (size_t i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof path, "policies.%zu", i);
        if (parse_policy(config, path, &s->policies[i], instance, status)) goto fail;
    }
    s->wait_ns = (uint64_t)(wait_ms * 1e6);
    s->max_traces = (size_t)num;
    s->max_spans = (size_t)max_spans;
    if (util_traces_init(&s->traces, s->max_traces) != 0 || util_idset_init(&s->decisions, (size_t)cache) != 0) goto fail;
    pthread_mutex_init(&s->lock, NULL);
    outbox_init(&s->out);
    *out = s;
    return SPANHOST_OK;
fail:
    free_policies(s->policies, s->npolicies);
    free(s->traces.buckets);
    free(s);
    return SPANHOST_PERMANENT;
}

static int32_t start(void *state, spanhost_status *status) {
    sampler *s = (sampler *)state;
    if (util_ticker_start(&s->ticker, 50, tick, s) != 0) {
        snprintf(status->message, status->message_cap, "cannot start the decision thread");
        return SPANHOST_PERMANENT;
    }
    return SPANHOST_OK;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    sampler *s = (sampler *)state;
    if (outbox_spans(&s->out) >= OUTBOX_LIMIT) {
        outbox_drain(&s->out, host, s->instance, 0);
        size_t waiting = outbox_spans(&s->out);
        if (waiting >= OUTBOX_LIMIT) {
            host->counter_add(s->instance, "refused_full", 1);
            snprintf(status->message, status->message_cap, "tail_sampling: %zu sampled spans wait while the pipeline refuses them", waiting);
            status->retry_after_ms = 1000;
            return SPANHOST_RETRYABLE;
        }
    }
    int64_t late_kept = 0, late_dropped = 0, evicted = 0;
    trace *early[64];
    int early_decision[64];
    size_t nearly = 0;
    pthread_mutex_lock(&s->lock);
    for (util_span_iter it = util_spans(batch); util_next_span(&it);) {
        spanhost_resource_spans *rs = it.rs;
        spanhost_scope_spans *ss = it.ss;
        spanhost_span *span = it.span;
        /* A span of a decided trace follows the decision and passes (or not) now. */
#ifdef GROUP_BY_TRACE
        int decided = -1;
#else
        int decided = util_idset_get(&s->decisions, span->trace_id);
#endif
        if (decided >= 0) {
            if (decided) late_kept++;
            else { late_dropped++; span->host_flags |= SPANHOST_SPAN_DROP; }
            continue;
        }
        span->host_flags |= SPANHOST_SPAN_TAKEN; /* held here; emitted with its trace if kept */
        trace *t = util_traces_find(&s->traces, span->trace_id);
        if (!t) {
            if (s->traces.held >= s->max_traces && s->traces.oldest && nearly < 64) {
                /* Full: decide the oldest trace now rather than grow. */
                trace *old = s->traces.oldest;
                util_traces_unlink(&s->traces, old);
                s->spans_held -= old->span_count;
                early_decision[nearly] = decide(s, old);
                util_idset_add(&s->decisions, old->id, (uint8_t)early_decision[nearly]);
                early[nearly++] = old;
                evicted++;
            }
            if (!(t = util_traces_add(&s->traces, host, span->trace_id))) {
                pthread_mutex_unlock(&s->lock);
                snprintf(status->message, status->message_cap, "out of memory");
                return SPANHOST_RETRYABLE;
            }
        }
        size_t before = t->span_count;
        util_trace_add_span(host, t, s->max_spans, rs, ss, span);
        s->spans_held += t->span_count - before;
    }
    report_held(s);
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < nearly; i++) finish(s, early[i], early_decision[i]);
    if (nearly) outbox_drain(&s->out, host, s->instance, 0);
    if (evicted) host->counter_add(s->instance, "evicted_early", evicted);
    if (late_kept) host->counter_add(s->instance, "late_spans_sampled", late_kept);
    if (late_dropped) host->counter_add(s->instance, "late_spans_dropped", late_dropped);
    return SPANHOST_OK;
}

/* Decides every held trace now (before shutdown or reload). */
static int32_t flush(void *state, spanhost_status *status) {
    (void)status;
    decide_due((sampler *)state, 1);
    return SPANHOST_OK;
}

static void destroy(void *state) {
    sampler *s = (sampler *)state;
    util_ticker_stop(&s->ticker);
    pthread_mutex_lock(&s->lock);
    while (s->traces.oldest) { /* undecided: flush was not called */
        trace *t = s->traces.oldest;
        util_traces_unlink(&s->traces, t);
        host->counter_add(s->instance, "lost_spans", (int64_t)t->span_count);
        util_trace_free(host, t);
    }
    pthread_mutex_unlock(&s->lock);
    outbox_free(&s->out, host, s->instance);
    pthread_mutex_destroy(&s->lock);
    util_idset_free(&s->decisions);
    free_policies(s->policies, s->npolicies);
    free(s->traces.buckets);
    free(s);
}

#ifdef GROUP_BY_TRACE
static const spanhost_config_key config_keys[] = {
    {"wait_duration", SPANHOST_TYPE_DURATION, 0, "1s", "how long a trace is held after its first span arrives"},
    {"num_traces", SPANHOST_TYPE_INT, 0, "1000000", "traces held at most; past it the oldest is released early"},
    {"max_spans_per_trace", SPANHOST_TYPE_INT, 0, "10000", "spans held per trace; more are counted and dropped"},
    {"num_workers", SPANHOST_TYPE_INT, 0, "1", "the Collector's key: accepted; one thread releases traces here"},
    {"discard_orphans", SPANHOST_TYPE_BOOL, 0, "false", "the Collector's key: accepted"},
    {"store_on_disk", SPANHOST_TYPE_BOOL, 0, "false", "the Collector's key: only false (see the hold journal)"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .name = "groupbytrace",
    .version = "1.0.0",
    .description = "holds each trace for wait_duration, then releases it whole",
    .create = create,
    .start = start,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};
#else
static const spanhost_config_key config_keys[] = {
    {"decision_wait", SPANHOST_TYPE_DURATION, 0, "30s", "how long a trace is held after its first span arrives"},
    {"num_traces", SPANHOST_TYPE_INT, 0, "50000", "traces held at most; past it the oldest is decided early"},
    {"expected_new_traces_per_sec", SPANHOST_TYPE_INT, 0, "0", "the Collector's sizing hint; accepted, the table is sized by num_traces"},
    {"max_spans_per_trace", SPANHOST_TYPE_INT, 0, "10000", "spans held per trace; more are counted and dropped"},
    {"decision_cache", SPANHOST_TYPE_MAP, 0, NULL, "decisions remembered, so late spans follow their trace"},
    {"decision_cache.size", SPANHOST_TYPE_INT, 0, "100000", "how many"},
    {"decision_cache.sampled_cache_size", SPANHOST_TYPE_INT, 0, NULL, "the Collector's key: added to non_sampled_cache_size for one table"},
    {"decision_cache.non_sampled_cache_size", SPANHOST_TYPE_INT, 0, NULL, "the Collector's key: added to sampled_cache_size for one table"},
    {"policies", SPANHOST_TYPE_LIST, 1, NULL, "{name, type, ...}: a trace is kept when any policy samples it"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .name = "tail_sampling",
    .version = "1.0.0",
    .description = "keeps or drops whole traces after decision_wait, by policies",
    .create = create,
    .start = start,
    .process = process,
    .flush = flush,
    .destroy = destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};
#endif

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
