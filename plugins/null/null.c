/* null exporter: accepts every batch and discards it, counting spans. For benchmarks and for
 * pipelines whose only purpose is their processors or notifiers. */
#include <spanhost/spanhost.h>

static const spanhost_host_api *host;

static int32_t null_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    (void)config;
    (void)status;
    *out = instance; /* the host handle is all the state we need */
    return SPANHOST_OK;
}

static int32_t null_export(void *state, const spanhost_batch *batch, spanhost_status *status) {
    (void)status;
    int64_t spans = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) spans += (int64_t)rs->scope_spans[j]->spans_count;
    }
    host->counter_add((spanhost_instance *)state, "discarded_spans", spans);
    return SPANHOST_OK;
}

static void null_destroy(void *state) { (void)state; }

/* A schema of no keys: null takes no settings. */
static const spanhost_config_key no_keys[1] = {{NULL, 0, 0, NULL, NULL}};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_EXPORTER,
    .flags = SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING,
    .name = "null",
    .version = "1.0.0",
    .description = "discards every span (counts them)",
    .create = null_create,
    .export_batch = null_export,
    .destroy = null_destroy,
    .config_schema = no_keys,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
