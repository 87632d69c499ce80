/* span processor: the Collector's spanprocessor. Names spans from their attributes, extracts
 * attributes from their names, and sets their status.
 *
 * Config:
 *   name:
 *     from_attributes: [db.svc, operation]   the new name: these values joined (all must be present)
 *     separator: "::"
 *     to_attributes:
 *       rules: ['^/api/v1/document/(?P<documentId>.*)/update$']
 *                                    each named group becomes an attribute, and its part of the
 *                                    name becomes {documentId}; later rules see the new name
 *       break_after_match: false     stop at the first rule that matches
 *       keep_original_name: false    add the attributes, leave the name
 *   status:
 *     code: Ok | Error | Unset
 *     description: text              only with Error
 *   include: {...} / exclude: {...}  as the attributes processor's
 *
 * The steps run in that order on each span, as the Collector's do.
 */
#include "plugin_util.h"
#include "span_matcher.h"

#include <math.h>

static const spanhost_host_api *host;

#define MAX_GROUPS 16
#define MAX_NAME 4096

typedef struct rule {
    regex_t re;
    char *names[MAX_GROUPS]; /* index = group number; NULL for unnamed groups */
} rule;

typedef struct span_state {
    spanhost_instance *instance;
    matcher include, exclude;
    spanhost_str *from;       /* views into the host's config, which outlives the instance */
    size_t nfrom;
    spanhost_str separator;
    rule *rules;
    size_t nrules;
    int break_after_match, keep_original_name;
    int set_status;
    uint32_t status_code;
    spanhost_str description;
} span_state;

static void free_state(span_state *s) {
    for (size_t i = 0; i < s->nrules; i++) {
        regfree(&s->rules[i].re);
        for (int g = 0; g < MAX_GROUPS; g++) free(s->rules[i].names[g]);
    }
    free(s->rules);
    free(s->from);
    matcher_free(host, &s->include);
    matcher_free(host, &s->exclude);
    free(s);
}

#define FAIL(...) do { snprintf(status->message, status->message_cap, __VA_ARGS__); free_state(s); return SPANHOST_PERMANENT; } while (0)

static int32_t span_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    span_state *s = (span_state *)calloc(1, sizeof *s);
    if (!s) return SPANHOST_PERMANENT;
    s->instance = instance;
    if (matcher_read(host, config, "include", &s->include, status) || matcher_read(host, config, "exclude", &s->exclude, status)) {
        free_state(s);
        return SPANHOST_PERMANENT;
    }
    size_t n = 0;
    if (host->config_count(config, "name.from_attributes", &n) == SPANHOST_CONFIG_FOUND && n) {
        if (!(s->from = (spanhost_str *)calloc(n, sizeof *s->from))) FAIL("out of memory");
        for (size_t i = 0; i < n; i++, s->nfrom++) {
            char path[64];
            snprintf(path, sizeof path, "name.from_attributes.%zu", i);
            if (host->config_string(config, path, &s->from[i]) != SPANHOST_CONFIG_FOUND) FAIL("%s: must be a string", path);
        }
    }
    host->config_string(config, "name.separator", &s->separator);
    if (host->config_count(config, "name.to_attributes.rules", &n) == SPANHOST_CONFIG_FOUND && n) {
        if (!(s->rules = (rule *)calloc(n, sizeof *s->rules))) FAIL("out of memory");
        for (size_t i = 0; i < n; i++) {
            char path[64], err[200];
            spanhost_str pattern;
            snprintf(path, sizeof path, "name.to_attributes.rules.%zu", i);
            if (host->config_string(config, path, &pattern) != SPANHOST_CONFIG_FOUND) FAIL("%s: must be a string", path);
            if (util_regcomp(&s->rules[i].re, pattern, s->rules[i].names, MAX_GROUPS, err, sizeof err)) FAIL("%s: %s", path, err);
            s->nrules = i + 1;
        }
    } else if (host->config_count(config, "name.to_attributes", &n) == SPANHOST_CONFIG_FOUND) {
        FAIL("name.to_attributes.rules: required, a list of regexes with named groups");
    }
    int32_t flag;
    if (host->config_bool(config, "name.to_attributes.break_after_match", &flag) == SPANHOST_CONFIG_FOUND) s->break_after_match = flag;
    if (host->config_bool(config, "name.to_attributes.keep_original_name", &flag) == SPANHOST_CONFIG_FOUND) s->keep_original_name = flag;
    if (host->config_count(config, "name", &n) == SPANHOST_CONFIG_FOUND && !s->nfrom && !s->nrules)
        FAIL("name: set from_attributes or to_attributes");

    spanhost_str code;
    if (host->config_string(config, "status.code", &code) == SPANHOST_CONFIG_FOUND) {
        s->set_status = 1;
        if (util_str_is(code, "Ok")) s->status_code = SPANHOST_STATUS_OK;
        else if (util_str_is(code, "Error")) s->status_code = SPANHOST_STATUS_ERROR;
        else if (util_str_is(code, "Unset")) s->status_code = SPANHOST_STATUS_UNSET;
        else FAIL("status.code: '%.*s' is not Ok, Error or Unset", (int)code.len, code.ptr);
    } else if (host->config_count(config, "status", &n) == SPANHOST_CONFIG_FOUND) {
        FAIL("status.code: required (Ok, Error or Unset)");
    }
    if (host->config_string(config, "status.description", &s->description) == SPANHOST_CONFIG_FOUND && s->description.len &&
        s->status_code != SPANHOST_STATUS_ERROR)
        FAIL("status.description: only with code Error");
    if (!s->nfrom && !s->nrules && !s->set_status) FAIL("set name or status: the processor has nothing to do");
    *out = s;
    return SPANHOST_OK;
}

/* A value as the Collector's span processor writes it into a name; -1 when it does not fit. */
static int name_part(const spanhost_value *v, char *buf, size_t cap) {
    if (v->type == SPANHOST_VALUE_DOUBLE) {
        /* Go's FormatFloat(v, 'f', -1): the shortest digits that read back, never an exponent. */
        double d = v->as.double_value;
        if (!isfinite(d)) return snprintf(buf, cap, "%s", isnan(d) ? "NaN" : d > 0 ? "+Inf" : "-Inf");
        for (int digits = 0; digits <= 340; digits++) {
            int len = snprintf(buf, cap, "%.*f", digits, d);
            if (len < 0 || (size_t)len >= cap) return -1;
            if (strtod(buf, NULL) == d) return len;
        }
        return -1;
    }
    int len = util_value_text(v, buf, cap);
    return len >= 0 ? len : snprintf(buf, cap, "<unknown-attribute-type>");
}

static int name_from_attributes(const span_state *s, spanhost_batch *batch, spanhost_span *span) {
    char name[MAX_NAME], part[512];
    size_t len = 0;
    for (size_t i = 0; i < s->nfrom; i++) {
        const spanhost_value *v = util_find(&span->attributes, s->from[i]);
        if (!v) return 0; /* one key missing: the name stays */
        int n = name_part(v, part, sizeof part);
        size_t sep = i > 0 ? s->separator.len : 0;
        if (n < 0 || len + sep + (size_t)n >= sizeof name) return 0;
        if (sep) memcpy(name + len, s->separator.ptr, sep);
        memcpy(name + len + sep, part, (size_t)n);
        len += sep + (size_t)n;
    }
    name[len] = 0;
    spanhost_str copy = host->arena_strdup(batch, name, len);
    if (!copy.ptr && len) return -1;
    span->name = copy;
    return 0;
}

static int name_to_attributes(const span_state *s, spanhost_batch *batch, spanhost_span *span) {
    for (size_t r = 0; r < s->nrules; r++) {
        const rule *rl = &s->rules[r];
        char old[MAX_NAME], name[MAX_NAME];
        if (span->name.len >= sizeof old) return 0;
        memcpy(old, span->name.ptr, span->name.len);
        old[span->name.len] = 0;
        regmatch_t m[MAX_GROUPS];
        if (regexec(&rl->re, old, MAX_GROUPS, m, 0) != 0) continue;
        size_t len = 0, from = 0;
        for (int g = 1; g < MAX_GROUPS; g++) {
            if (!rl->names[g] || m[g].rm_so < 0) continue;
            size_t start = (size_t)m[g].rm_so, end = (size_t)m[g].rm_eo, klen = strlen(rl->names[g]);
            spanhost_value value;
            memset(&value, 0, sizeof value);
            value.type = SPANHOST_VALUE_STRING;
            value.as.string_value.ptr = old + start;
            value.as.string_value.len = end - start;
            spanhost_str key = {rl->names[g], klen};
            if (host->set_attribute(batch, &span->attributes, key, &value) != 0) return -1;
            if (start < from || len + (start - from) + klen + 2 >= sizeof name) continue;
            memcpy(name + len, old + from, start - from);
            len += start - from;
            name[len++] = '{';
            memcpy(name + len, rl->names[g], klen);
            len += klen;
            name[len++] = '}';
            from = end;
        }
        size_t rest = span->name.len - from;
        if (!s->keep_original_name && len + rest < sizeof name) {
            memcpy(name + len, old + from, rest);
            spanhost_str copy = host->arena_strdup(batch, name, len + rest);
            if (!copy.ptr && len + rest) return -1;
            span->name = copy;
        }
        if (s->break_after_match) break;
    }
    return 0;
}

static int32_t span_process(void *state, spanhost_batch *batch, spanhost_status *status) {
    span_state *s = (span_state *)state;
    for (util_span_iter it = util_spans(batch); util_next_span(&it);) {
        spanhost_resource_spans *rs = it.rs;
        spanhost_scope_spans *ss = it.ss;
        spanhost_span *span = it.span;
        if (s->include.active && !matcher_span_matches(host, &s->include, batch, rs, ss, span, s->instance, status)) continue;
        if (s->exclude.active && matcher_span_matches(host, &s->exclude, batch, rs, ss, span, s->instance, status)) continue;
        if ((s->nfrom && name_from_attributes(s, batch, span) != 0) || name_to_attributes(s, batch, span) != 0) {
            snprintf(status->message, status->message_cap, "out of memory");
            return SPANHOST_RETRYABLE;
        }
        if (s->set_status) {
            span->status_code = s->status_code;
            span->status_message = s->status_code == SPANHOST_STATUS_ERROR ? s->description : (spanhost_str){NULL, 0};
        }
    }
    return SPANHOST_OK;
}

static void span_destroy(void *state) { free_state((span_state *)state); }

static const spanhost_config_key config_keys[] = {
    {"name", SPANHOST_TYPE_MAP, 0, NULL, "rename spans: from_attributes or to_attributes"},
    {"name.from_attributes", SPANHOST_TYPE_STRING_LIST, 0, NULL, "attributes whose values, joined, become the name"},
    {"name.separator", SPANHOST_TYPE_STRING, 0, "", "put between the values"},
    {"name.to_attributes", SPANHOST_TYPE_MAP, 0, NULL, "extract attributes from the name"},
    {"name.to_attributes.rules", SPANHOST_TYPE_STRING_LIST, 0, NULL, "regexes with named groups, applied in order"},
    {"name.to_attributes.break_after_match", SPANHOST_TYPE_BOOL, 0, "false", "stop at the first rule that matches"},
    {"name.to_attributes.keep_original_name", SPANHOST_TYPE_BOOL, 0, "false", "add the attributes, leave the name"},
    {"status", SPANHOST_TYPE_MAP, 0, NULL, "set the status"},
    {"status.code", SPANHOST_TYPE_STRING, 0, NULL, "Ok, Error or Unset"},
    {"status.description", SPANHOST_TYPE_STRING, 0, NULL, "the status message, with Error"},
    SPAN_MATCHER_KEYS("include", "act only on spans that match"),
    SPAN_MATCHER_KEYS("exclude", "skip spans that match"),
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .flags = SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING,
    .name = "span",
    .version = "1.0.0",
    .description = "names spans from attributes, extracts attributes from names, sets the status",
    .create = span_create,
    .process = span_process,
    .destroy = span_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
