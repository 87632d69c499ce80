/* attributes processor: changes span attributes.
 *
 * Config (the Collector's attributes processor shape):
 *   actions:
 *     - key: KEY                 attribute to act on (required)
 *       action: insert | update | upsert | delete
 *       value: VALUE             string, integer, number or boolean (insert/update/upsert)
 *       from_attribute: KEY      take the value from another attribute of the same span instead
 *
 *   insert: set KEY only if absent; update: only if present; upsert: always; delete: remove.
 */
#include <spanhost/spanhost.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const spanhost_host_api *host;

#define ACT_INSERT 0
#define ACT_UPDATE 1
#define ACT_UPSERT 2
#define ACT_DELETE 3

typedef struct action {
    int op;
    spanhost_str key;            /* owned by the host config; lives as long as the instance */
    spanhost_str from_attribute; /* empty when `value` is used */
    spanhost_value value;
} action;

typedef struct attributes_state {
    size_t count;
    action actions[];
} attributes_state;

static int str_is(spanhost_str s, const char *lit) { return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0; }
static int str_eq(spanhost_str a, spanhost_str b) { return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0); }

#define FAIL(...) do { snprintf(status->message, status->message_cap, __VA_ARGS__); free(s); return SPANHOST_PERMANENT; } while (0)

static int32_t attributes_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    (void)instance;
    size_t n = 0;
    if (host->config_count(config, "actions", &n) != SPANHOST_CONFIG_FOUND || n == 0) {
        snprintf(status->message, status->message_cap, "actions: required, a list of {key, action, value|from_attribute}");
        return SPANHOST_PERMANENT;
    }
    attributes_state *s = (attributes_state *)calloc(1, sizeof *s + n * sizeof(action));
    if (!s) return SPANHOST_PERMANENT;
    s->count = n;
    for (size_t i = 0; i < n; i++) {
        action *a = &s->actions[i];
        char path[64];
        spanhost_str op;
        snprintf(path, sizeof path, "actions.%zu.key", i);
        if (host->config_string(config, path, &a->key) != SPANHOST_CONFIG_FOUND || a->key.len == 0)
            FAIL("actions.%zu.key: required", i);
        snprintf(path, sizeof path, "actions.%zu.action", i);
        if (host->config_string(config, path, &op) != SPANHOST_CONFIG_FOUND) FAIL("actions.%zu.action: required (insert, update, upsert or delete)", i);
        if (str_is(op, "insert")) a->op = ACT_INSERT;
        else if (str_is(op, "update")) a->op = ACT_UPDATE;
        else if (str_is(op, "upsert")) a->op = ACT_UPSERT;
        else if (str_is(op, "delete")) a->op = ACT_DELETE;
        else FAIL("actions.%zu.action: '%.*s' is not insert, update, upsert or delete", i, (int)op.len, op.ptr);
        if (a->op == ACT_DELETE) continue;

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

static const spanhost_value *find(const spanhost_kv_list *l, spanhost_str key) {
    for (size_t i = 0; i < l->count; i++)
        if (str_eq(l->items[i].key, key)) return &l->items[i].value;
    return NULL;
}

static int32_t attributes_process(void *state, spanhost_batch *batch, spanhost_status *status) {
    attributes_state *s = (attributes_state *)state;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        spanhost_resource_spans *rs = batch->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            spanhost_scope_spans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count; k++) {
                spanhost_kv_list *attrs = &ss->spans[k]->attributes;
                for (size_t a = 0; a < s->count; a++) {
                    const action *act = &s->actions[a];
                    if (act->op == ACT_DELETE) {
                        host->remove_attribute(batch, attrs, act->key);
                        continue;
                    }
                    int present = find(attrs, act->key) != NULL;
                    if ((act->op == ACT_INSERT && present) || (act->op == ACT_UPDATE && !present)) continue;
                    spanhost_value value = act->value;
                    if (act->from_attribute.len) {
                        const spanhost_value *src = find(attrs, act->from_attribute);
                        if (!src) continue;
                        value = *src;
                    }
                    if (host->set_attribute(batch, attrs, act->key, &value) != 0) {
                        snprintf(status->message, status->message_cap, "out of memory");
                        return SPANHOST_RETRYABLE;
                    }
                }
            }
        }
    }
    return SPANHOST_OK;
}

static void attributes_destroy(void *state) { free(state); }

static const spanhost_plugin plugin = {
    sizeof(spanhost_plugin), SPANHOST_ABI_MAJOR, SPANHOST_ABI_MINOR, SPANHOST_KIND_PROCESSOR,
    SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE, "attributes", "1.0.0",
    "inserts, updates, upserts or deletes span attributes",
    attributes_create, NULL, attributes_process, NULL, NULL, NULL, attributes_destroy,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
