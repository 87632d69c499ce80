/* debug exporter: prints batches readably.
 *
 * Config:
 *   verbosity: basic | normal | detailed   (default normal)
 *     basic    - one line per batch with span counts
 *     normal   - one line per span: service, name, ids, duration, status
 *     detailed - every field: resource, scope, attributes, events, links
 *   output: stdout | stderr                (default stdout)
 */
#include <spanhost/spanhost.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const spanhost_host_api *host;

#define BASIC 0
#define NORMAL 1
#define DETAILED 2

typedef struct debug_state {
    spanhost_instance *instance;
    int verbosity;
    FILE *out;
} debug_state;

static int str_is(spanhost_str s, const char *lit) { return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0; }

static int32_t debug_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    debug_state *s = (debug_state *)calloc(1, sizeof *s);
    if (!s) return SPANHOST_PERMANENT;
    s->instance = instance;
    s->verbosity = NORMAL;
    s->out = stdout;
    spanhost_str v;
    if (host->config_string(config, "verbosity", &v) == SPANHOST_CONFIG_FOUND) {
        if (str_is(v, "basic")) s->verbosity = BASIC;
        else if (str_is(v, "normal")) s->verbosity = NORMAL;
        else if (str_is(v, "detailed")) s->verbosity = DETAILED;
        else {
            snprintf(status->message, status->message_cap, "verbosity: '%.*s' is not basic, normal or detailed", (int)v.len, v.ptr);
            free(s);
            return SPANHOST_PERMANENT;
        }
    }
    if (host->config_string(config, "output", &v) == SPANHOST_CONFIG_FOUND) {
        if (str_is(v, "stderr")) s->out = stderr;
        else if (!str_is(v, "stdout")) {
            snprintf(status->message, status->message_cap, "output: '%.*s' is not stdout or stderr", (int)v.len, v.ptr);
            free(s);
            return SPANHOST_PERMANENT;
        }
    }
    *out = s;
    return SPANHOST_OK;
}

static void print_hex(FILE *f, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
}

static void print_attrs(FILE *f, const spanhost_kv_list *l);

static void print_value(FILE *f, const spanhost_value *v) {
    switch (v->type) {
    case SPANHOST_VALUE_STRING: fprintf(f, "\"%.*s\"", (int)v->as.string_value.len, v->as.string_value.ptr ? v->as.string_value.ptr : ""); break;
    case SPANHOST_VALUE_BOOL: fputs(v->as.bool_value ? "true" : "false", f); break;
    case SPANHOST_VALUE_INT: fprintf(f, "%" PRId64, v->as.int_value); break;
    case SPANHOST_VALUE_DOUBLE: fprintf(f, "%g", v->as.double_value); break;
    case SPANHOST_VALUE_BYTES: fputs("0x", f); print_hex(f, v->as.bytes_value.ptr, v->as.bytes_value.len); break;
    case SPANHOST_VALUE_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < v->as.array_value.count; i++) {
            if (i) fputs(", ", f);
            print_value(f, &v->as.array_value.items[i]);
        }
        fputc(']', f);
        break;
    case SPANHOST_VALUE_KVLIST: print_attrs(f, &v->as.kvlist_value); break;
    default: fputs("(empty)", f);
    }
}

static void print_attrs(FILE *f, const spanhost_kv_list *l) {
    fputc('{', f);
    for (size_t i = 0; i < l->count; i++) {
        fprintf(f, "%s%.*s=", i ? ", " : "", (int)l->items[i].key.len, l->items[i].key.ptr ? l->items[i].key.ptr : "");
        print_value(f, &l->items[i].value);
    }
    fputc('}', f);
}

static const char *kind_name(uint32_t k) {
    static const char *names[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
    return k < 6 ? names[k] : "UNKNOWN";
}

static const char *status_name(uint32_t c) { return c == SPANHOST_STATUS_OK ? "OK" : c == SPANHOST_STATUS_ERROR ? "ERROR" : "UNSET"; }

static spanhost_str service_name(const spanhost_resource *r) {
    spanhost_str none = {"unknown_service", 15};
    for (size_t i = 0; i < r->attributes.count; i++)
        if (str_is(r->attributes.items[i].key, "service.name") && r->attributes.items[i].value.type == SPANHOST_VALUE_STRING)
            return r->attributes.items[i].value.as.string_value;
    return none;
}

static int32_t debug_export(void *state, const spanhost_batch *batch, spanhost_status *status) {
    (void)status;
    debug_state *s = (debug_state *)state;
    FILE *f = s->out;
    size_t spans = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) spans += rs->scope_spans[j]->spans_count;
    }
    fprintf(f, "batch: %zu resource(s), %zu span(s)\n", batch->resource_spans_count, spans);
    if (s->verbosity == BASIC) {
        fflush(f);
        return SPANHOST_OK;
    }
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        spanhost_str svc = service_name(rs->resource);
        if (s->verbosity == DETAILED) {
            fputs("resource ", f);
            print_attrs(f, &rs->resource->attributes);
            fputc('\n', f);
        }
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            if (s->verbosity == DETAILED)
                fprintf(f, "  scope %.*s %.*s\n", (int)ss->scope->name.len, ss->scope->name.ptr ? ss->scope->name.ptr : "",
                        (int)ss->scope->version.len, ss->scope->version.ptr ? ss->scope->version.ptr : "");
            for (size_t k = 0; k < ss->spans_count; k++) {
                const spanhost_span *sp = ss->spans[k];
                double ms = sp->end_time_unix_nano >= sp->start_time_unix_nano
                                ? (double)(sp->end_time_unix_nano - sp->start_time_unix_nano) / 1e6 : 0;
                fprintf(f, "  span %.*s %.*s trace=", (int)svc.len, svc.ptr, (int)sp->name.len, sp->name.ptr ? sp->name.ptr : "");
                print_hex(f, sp->trace_id, 16);
                fputs(" id=", f);
                print_hex(f, sp->span_id, 8);
                fputs(" parent=", f);
                print_hex(f, sp->parent_span_id, 8);
                fprintf(f, " kind=%s %.3fms status=%s", kind_name(sp->kind), ms, status_name(sp->status_code));
                if (sp->status_message.len) fprintf(f, " (%.*s)", (int)sp->status_message.len, sp->status_message.ptr);
                fputc('\n', f);
                if (s->verbosity != DETAILED) continue;
                fputs("    attributes ", f);
                print_attrs(f, &sp->attributes);
                fputc('\n', f);
                for (size_t e = 0; e < sp->events_count; e++) {
                    fprintf(f, "    event %.*s t=%" PRIu64 " ", (int)sp->events[e]->name.len,
                            sp->events[e]->name.ptr ? sp->events[e]->name.ptr : "", sp->events[e]->time_unix_nano);
                    print_attrs(f, &sp->events[e]->attributes);
                    fputc('\n', f);
                }
                for (size_t l = 0; l < sp->links_count; l++) {
                    fputs("    link trace=", f);
                    print_hex(f, sp->links[l]->trace_id, 16);
                    fputs(" span=", f);
                    print_hex(f, sp->links[l]->span_id, 8);
                    fputc(' ', f);
                    print_attrs(f, &sp->links[l]->attributes);
                    fputc('\n', f);
                }
            }
        }
    }
    fflush(f);
    return SPANHOST_OK;
}

static void debug_destroy(void *state) { free(state); }

static const spanhost_config_key config_keys[] = {
    {"verbosity", SPANHOST_TYPE_STRING, 0, "normal", "basic, normal or detailed"},
    {"output", SPANHOST_TYPE_STRING, 0, "stdout", "stdout or stderr"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_EXPORTER,
    .flags = SPANHOST_PLUGIN_UNLOADABLE,
    .name = "debug",
    .version = "1.0.0",
    .description = "prints spans readably (verbosity basic|normal|detailed)",
    .create = debug_create,
    .export_batch = debug_export,
    .destroy = debug_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
