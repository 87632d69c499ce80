/* A minimal exporter: logs one line per batch with its span count, and keeps a running total
 * in a counter shown at /status. Config: `prefix` (string, optional).
 * Build: cc -shared -fPIC -I../include -o example_exporter.so example_exporter.c */
#include <spanhost/spanhost.h>

#include <stdio.h>
#include <stdlib.h>

static const spanhost_host_api *host;

typedef struct state {
    spanhost_instance *instance;
    spanhost_str prefix; /* owned by the host's config handle; valid until destroy */
    uint32_t spans_counter; /* a counter handle (ABI 1.8), or 0 on older hosts */
} state;

/* Reads and checks the settings: shared by validate (no side effects) and create. */
static int32_t read_settings(const spanhost_config *config, spanhost_str *prefix, spanhost_status *status) {
    if (host->config_string(config, "prefix", prefix) == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "prefix: must be a string");
        return SPANHOST_PERMANENT;
    }
    if (prefix->len > 64) {
        snprintf(status->message, status->message_cap, "prefix: at most 64 bytes, not %zu", prefix->len);
        return SPANHOST_PERMANENT;
    }
    return SPANHOST_OK;
}

static int32_t validate(const spanhost_config *config, spanhost_status *status) {
    spanhost_str prefix;
    return read_settings(config, &prefix, status);
}

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    state *s = (state *)calloc(1, sizeof *s);
    if (!s) {
        snprintf(status->message, status->message_cap, "out of memory");
        return SPANHOST_PERMANENT;
    }
    s->instance = instance;
    if (read_settings(config, &s->prefix, status) != SPANHOST_OK) {
        free(s);
        return SPANHOST_PERMANENT;
    }
    if (SPANHOST_HOST_HAS(host, counter_declare)) s->spans_counter = host->counter_declare(instance, "example_spans");
    *out = s;
    return SPANHOST_OK;
}

static int32_t export_batch(void *st, const spanhost_batch *batch, spanhost_status *status) {
    (void)status;
    state *s = (state *)st;
    size_t spans = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++)
        for (size_t j = 0; j < batch->resource_spans[i]->scope_spans_count; j++)
            spans += batch->resource_spans[i]->scope_spans[j]->spans_count;
    char line[256];
    int n = snprintf(line, sizeof line, "%.*sexported %zu spans", (int)s->prefix.len, s->prefix.ptr ? s->prefix.ptr : "", spans);
    host->log(s->instance, SPANHOST_LOG_INFO, line, (size_t)n);
    if (s->spans_counter) host->counter_add_id(s->instance, s->spans_counter, (int64_t)spans);
    else host->counter_add(s->instance, "example_spans", (int64_t)spans);
    return SPANHOST_OK;
}

static void destroy(void *s) { free(s); }

/* The keys create reads; the host checks settings against them before create runs. */
static const spanhost_config_key config_keys[] = {
    {"prefix", SPANHOST_TYPE_STRING, 0, NULL, "text put before each log line (at most 64 bytes)"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_EXPORTER,
    .name = "example_exporter",
    .version = "0.1.0",
    .description = "logs span counts",
    .create = create,
    .export_batch = export_batch,
    .destroy = destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
    .validate = validate,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
