/* probabilistic_sampler processor: keeps a fixed percentage of traces, decided from the trace
 * id alone, so every span of a trace, on every instance and every service, gets the same
 * decision when the seed is the same.
 *
 * Config:
 *   sampling_percentage: 10    0..100 (fractions allowed)
 *   hash_seed: 0               any integer; instances that must agree use the same seed
 *
 * Decision: h = FNV-1a 32-bit over the 4 seed bytes (little-endian) then the 16 trace id bytes;
 * keep when (h & 0x3fff) < percentage / 100 * 0x4000 (14 bits of resolution, as the Collector's
 * hash_seed mode). Counters: kept_spans, dropped_spans.
 */
#include <spanhost/spanhost.h>

#include <stdio.h>
#include <stdlib.h>

static const spanhost_host_api *host;

typedef struct sampler {
    spanhost_instance *instance;
    uint32_t seed;
    uint32_t threshold; /* keep when (hash & 0x3fff) < threshold */
} sampler;

static uint32_t trace_hash(uint32_t seed, const uint8_t id[16]) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < 4; i++) h = (h ^ ((seed >> (8 * i)) & 0xff)) * 16777619u;
    for (int i = 0; i < 16; i++) h = (h ^ id[i]) * 16777619u;
    /* FNV's low bits mix poorly; fold the high half in. */
    return h ^ (h >> 16);
}

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    double pct = 0;
    int64_t seed = 0;
    uint32_t rc = host->config_double(config, "sampling_percentage", &pct);
    if (rc != SPANHOST_CONFIG_FOUND || pct < 0 || pct > 100) {
        snprintf(status->message, status->message_cap, "sampling_percentage: required, a number from 0 to 100");
        return SPANHOST_PERMANENT;
    }
    if (host->config_int(config, "hash_seed", &seed) == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "hash_seed: must be an integer");
        return SPANHOST_PERMANENT;
    }
    sampler *s = (sampler *)calloc(1, sizeof *s);
    if (!s) return SPANHOST_PERMANENT;
    s->instance = instance;
    s->seed = (uint32_t)seed;
    s->threshold = (uint32_t)(pct / 100.0 * 0x4000 + 0.5);
    *out = s;
    return SPANHOST_OK;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    (void)status;
    sampler *s = (sampler *)state;
    int64_t kept = 0, dropped = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        spanhost_resource_spans *rs = batch->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            spanhost_scope_spans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count; k++) {
                spanhost_span *span = ss->spans[k];
                if ((trace_hash(s->seed, span->trace_id) & 0x3fff) < s->threshold) {
                    kept++;
                } else {
                    span->host_flags |= SPANHOST_SPAN_DROP;
                    dropped++;
                }
            }
        }
    }
    host->counter_add(s->instance, "kept_spans", kept);
    host->counter_add(s->instance, "dropped_spans", dropped);
    return SPANHOST_OK;
}

static void destroy(void *state) { free(state); }

static const spanhost_config_key config_keys[] = {
    {"sampling_percentage", SPANHOST_TYPE_DOUBLE, 1, NULL, "0 to 100 (fractions allowed)"},
    {"hash_seed", SPANHOST_TYPE_INT, 0, "0", "instances that must agree use the same seed"},
};

static const spanhost_plugin plugin = {
    sizeof(spanhost_plugin), SPANHOST_ABI_MAJOR, SPANHOST_ABI_MINOR, SPANHOST_KIND_PROCESSOR,
    SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING, "probabilistic_sampler", "1.0.0",
    "keeps a percentage of traces, decided by a seeded hash of the trace id",
    create, NULL, process, NULL, NULL, NULL, destroy, SPANHOST_SCHEMA(config_keys), NULL, 0,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
