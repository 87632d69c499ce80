/* A minimal processor: marks every span with `example.processed = true` and drops spans named
 * "drop-me". Build: cc -shared -fPIC -I../include -o example_processor.so example_processor.c */
#include <spanhost/spanhost.h>

#include <string.h>

static const spanhost_host_api *host;

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **state, spanhost_status *status) {
    (void)config;
    (void)status;
    *state = instance; /* no state of our own: keep the host handle */
    return SPANHOST_OK;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    (void)status;
    spanhost_str key = {"example.processed", 17};
    spanhost_value yes;
    memset(&yes, 0, sizeof yes);
    yes.type = SPANHOST_VALUE_BOOL;
    yes.as.bool_value = 1;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        spanhost_resource_spans *rs = batch->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            spanhost_scope_spans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count; k++) {
                spanhost_span *span = ss->spans[k];
                if (span->name.len == 7 && memcmp(span->name.ptr, "drop-me", 7) == 0) {
                    span->host_flags |= SPANHOST_SPAN_DROP; /* the host removes it after we return */
                    host->counter_add((spanhost_instance *)state, "dropped_by_name", 1);
                    continue;
                }
                if (host->set_attribute(batch, &span->attributes, key, &yes) != 0) return SPANHOST_RETRYABLE;
            }
        }
    }
    return SPANHOST_OK;
}

static void destroy(void *state) { (void)state; }

/* No settings: an empty schema makes the host refuse any key given to it. */
static const spanhost_config_key no_keys[1] = {{NULL, 0, 0, NULL, NULL}};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .flags = SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_NONBLOCKING,
    .name = "example_processor",
    .version = "0.1.0",
    .description = "tags spans and drops ones named drop-me",
    .create = create,
    .process = process,
    .destroy = destroy,
    .config_schema = no_keys,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
