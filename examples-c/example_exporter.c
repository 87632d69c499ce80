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
} state;

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    state *s = (state *)calloc(1, sizeof *s);
    if (!s) {
        snprintf(status->message, status->message_cap, "out of memory");
        return SPANHOST_PERMANENT;
    }
    s->instance = instance;
    if (host->config_string(config, "prefix", &s->prefix) == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "prefix: must be a string");
        free(s);
        return SPANHOST_PERMANENT;
    }
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
    host->counter_add(s->instance, "example_spans", (int64_t)spans);
    return SPANHOST_OK;
}

static void destroy(void *s) { free(s); }

/* The keys create reads; the host checks settings against them before create runs. */
static const spanhost_config_key config_keys[] = {
    {"prefix", SPANHOST_TYPE_STRING, 0, NULL, "text put before each log line"},
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
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
