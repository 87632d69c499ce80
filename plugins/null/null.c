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
    sizeof(spanhost_plugin), SPANHOST_ABI_MAJOR, SPANHOST_ABI_MINOR, SPANHOST_KIND_EXPORTER,
    SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING,
    "null", "1.0.0", "discards every span (counts them)",
    null_create, NULL, NULL, null_export, NULL, NULL, null_destroy, no_keys, 0, NULL, 0,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
