/* The layout of every struct in spanhost.h as this compiler lays it out: what `spanhost abi
 * --json` prints, so plugins in other languages can check the mirrors they write by hand. Each
 * field is listed with offsetof, so a field renamed or moved in the header fails to compile
 * here instead of drifting. */
#include "spanhost_core.h"
#include "json_writer.h"

#include <stdalign.h>
#include <stddef.h>

typedef struct abi_field {
    const char *name;
    size_t offset, size;
} abi_field;

#define F(T, f) {#f, offsetof(T, f), sizeof(((T *)0)->f)}

static const abi_field status_fields[] = {F(spanhost_status, struct_size), F(spanhost_status, retry_after_ms),
                                          F(spanhost_status, message), F(spanhost_status, message_cap)};
static const abi_field str_fields[] = {F(spanhost_str, ptr), F(spanhost_str, len)};
static const abi_field bytes_fields[] = {F(spanhost_bytes, ptr), F(spanhost_bytes, len)};
static const abi_field value_array_fields[] = {F(spanhost_value_array, items), F(spanhost_value_array, count)};
static const abi_field kv_list_fields[] = {F(spanhost_kv_list, items), F(spanhost_kv_list, count)};
static const abi_field value_fields[] = {F(spanhost_value, type), F(spanhost_value, reserved), F(spanhost_value, as)};
static const abi_field kv_fields[] = {F(spanhost_kv, key), F(spanhost_kv, value)};
static const abi_field event_fields[] = {F(spanhost_event, struct_size), F(spanhost_event, dropped_attributes_count),
                                         F(spanhost_event, time_unix_nano), F(spanhost_event, name), F(spanhost_event, attributes)};
static const abi_field link_fields[] = {F(spanhost_link, struct_size), F(spanhost_link, dropped_attributes_count),
                                        F(spanhost_link, trace_id), F(spanhost_link, span_id), F(spanhost_link, trace_state),
                                        F(spanhost_link, attributes), F(spanhost_link, flags), F(spanhost_link, reserved)};
static const abi_field span_fields[] = {
    F(spanhost_span, struct_size), F(spanhost_span, flags), F(spanhost_span, trace_id), F(spanhost_span, span_id),
    F(spanhost_span, parent_span_id), F(spanhost_span, trace_state), F(spanhost_span, name), F(spanhost_span, kind),
    F(spanhost_span, status_code), F(spanhost_span, status_message), F(spanhost_span, start_time_unix_nano),
    F(spanhost_span, end_time_unix_nano), F(spanhost_span, attributes), F(spanhost_span, events), F(spanhost_span, events_count),
    F(spanhost_span, links), F(spanhost_span, links_count), F(spanhost_span, dropped_attributes_count),
    F(spanhost_span, dropped_events_count), F(spanhost_span, dropped_links_count), F(spanhost_span, host_flags)};
static const abi_field scope_fields[] = {F(spanhost_scope, struct_size), F(spanhost_scope, dropped_attributes_count),
                                         F(spanhost_scope, name), F(spanhost_scope, version), F(spanhost_scope, attributes)};
static const abi_field resource_fields[] = {F(spanhost_resource, struct_size), F(spanhost_resource, dropped_attributes_count),
                                            F(spanhost_resource, attributes)};
static const abi_field scope_spans_fields[] = {F(spanhost_scope_spans, struct_size), F(spanhost_scope_spans, reserved),
                                               F(spanhost_scope_spans, scope), F(spanhost_scope_spans, schema_url),
                                               F(spanhost_scope_spans, spans), F(spanhost_scope_spans, spans_count)};
static const abi_field resource_spans_fields[] = {F(spanhost_resource_spans, struct_size), F(spanhost_resource_spans, reserved),
                                                  F(spanhost_resource_spans, resource), F(spanhost_resource_spans, schema_url),
                                                  F(spanhost_resource_spans, scope_spans), F(spanhost_resource_spans, scope_spans_count)};
static const abi_field batch_fields[] = {F(spanhost_batch, struct_size), F(spanhost_batch, reserved), F(spanhost_batch, resource_spans),
                                         F(spanhost_batch, resource_spans_count), F(spanhost_batch, client_metadata)};
static const abi_field notification_fields[] = {
    F(spanhost_notification, struct_size), F(spanhost_notification, severity), F(spanhost_notification, kind),
    F(spanhost_notification, source), F(spanhost_notification, key), F(spanhost_notification, summary),
    F(spanhost_notification, attributes), F(spanhost_notification, trace_id), F(spanhost_notification, time_unix_nano),
    F(spanhost_notification, count)};
static const abi_field buffer_fields[] = {F(spanhost_buffer, data), F(spanhost_buffer, len)};
static const abi_field expr_target_fields[] = {F(spanhost_expr_target, struct_size), F(spanhost_expr_target, batch),
                                               F(spanhost_expr_target, resource), F(spanhost_expr_target, scope),
                                               F(spanhost_expr_target, span), F(spanhost_expr_target, event),
                                               F(spanhost_expr_target, cache)};
/* In table order: the order a language without this header must declare the pointers in. */
static const abi_field host_api_fields[] = {
    F(spanhost_host_api, struct_size), F(spanhost_host_api, abi_major), F(spanhost_host_api, abi_minor),
    F(spanhost_host_api, log), F(spanhost_host_api, config_string), F(spanhost_host_api, config_int),
    F(spanhost_host_api, config_double), F(spanhost_host_api, config_bool), F(spanhost_host_api, config_count),
    F(spanhost_host_api, config_key), F(spanhost_host_api, arena_alloc), F(spanhost_host_api, arena_strdup),
    F(spanhost_host_api, set_attribute), F(spanhost_host_api, remove_attribute), F(spanhost_host_api, batch_new),
    F(spanhost_host_api, batch_retain), F(spanhost_host_api, batch_release), F(spanhost_host_api, batch_add_span),
    F(spanhost_host_api, emit), F(spanhost_host_api, raise), F(spanhost_host_api, counter_add),
    F(spanhost_host_api, encode_batch), F(spanhost_host_api, buffer_free), F(spanhost_host_api, gzip),
    F(spanhost_host_api, encode_notification), F(spanhost_host_api, encode_value), F(spanhost_host_api, config_duration),
    F(spanhost_host_api, config_bytes), F(spanhost_host_api, config_string_list), F(spanhost_host_api, gauge_set),
    F(spanhost_host_api, expr_compile), F(spanhost_host_api, expr_run), F(spanhost_host_api, expr_free),
    F(spanhost_host_api, release_trace), F(spanhost_host_api, expr_infer_context), F(spanhost_host_api, counter_declare),
    F(spanhost_host_api, counter_add_id), F(spanhost_host_api, gauge_declare), F(spanhost_host_api, gauge_set_id),
    F(spanhost_host_api, set_attribute_lent)};
static const abi_field config_key_fields[] = {F(spanhost_config_key, path), F(spanhost_config_key, type),
                                              F(spanhost_config_key, required), F(spanhost_config_key, default_value),
                                              F(spanhost_config_key, doc)};
static const abi_field function_fields[] = {F(spanhost_function, struct_size), F(spanhost_function, name),
                                            F(spanhost_function, result), F(spanhost_function, arg_count),
                                            F(spanhost_function, args), F(spanhost_function, fn), F(spanhost_function, description)};
static const abi_field plugin_fields[] = {
    F(spanhost_plugin, struct_size), F(spanhost_plugin, abi_major), F(spanhost_plugin, abi_minor), F(spanhost_plugin, kind),
    F(spanhost_plugin, flags), F(spanhost_plugin, name), F(spanhost_plugin, version), F(spanhost_plugin, description),
    F(spanhost_plugin, create), F(spanhost_plugin, start), F(spanhost_plugin, process), F(spanhost_plugin, export_batch),
    F(spanhost_plugin, notify), F(spanhost_plugin, flush), F(spanhost_plugin, destroy), F(spanhost_plugin, config_schema),
    F(spanhost_plugin, config_schema_count), F(spanhost_plugin, functions), F(spanhost_plugin, functions_count),
    F(spanhost_plugin, validate)};

typedef struct abi_struct {
    const char *name;
    size_t size, align;
    const abi_field *fields;
    size_t count;
} abi_struct;

#define S(T, fields) {#T, sizeof(T), alignof(T), fields, sizeof(fields) / sizeof(fields[0])}

static const abi_struct structs[] = {
    S(spanhost_status, status_fields), S(spanhost_str, str_fields), S(spanhost_bytes, bytes_fields),
    S(spanhost_value_array, value_array_fields), S(spanhost_kv_list, kv_list_fields), S(spanhost_value, value_fields),
    S(spanhost_kv, kv_fields), S(spanhost_event, event_fields), S(spanhost_link, link_fields), S(spanhost_span, span_fields),
    S(spanhost_scope, scope_fields), S(spanhost_resource, resource_fields), S(spanhost_scope_spans, scope_spans_fields),
    S(spanhost_resource_spans, resource_spans_fields), S(spanhost_batch, batch_fields),
    S(spanhost_notification, notification_fields), S(spanhost_buffer, buffer_fields),
    S(spanhost_expr_target, expr_target_fields), S(spanhost_host_api, host_api_fields),
    S(spanhost_config_key, config_key_fields), S(spanhost_function, function_fields), S(spanhost_plugin, plugin_fields)};

static void out_cstr(jbuf *b, const char *s) { out_str(b, s, strlen(s)); }

static void out_size(jbuf *b, size_t n) {
    char digits[24];
    out(b, digits, (size_t)snprintf(digits, sizeof digits, "%zu", n));
}

int32_t sh_abi_layout_json(spanhost_buffer *o) {
    jbuf b = {0};
    OUTS(&b, "{\"abi_major\":");
    out_size(&b, SPANHOST_ABI_MAJOR);
    OUTS(&b, ",\"abi_minor\":");
    out_size(&b, SPANHOST_ABI_MINOR);
    OUTS(&b, ",\"structs\":[");
    for (size_t i = 0; i < sizeof structs / sizeof structs[0]; i++) {
        const abi_struct *s = &structs[i];
        if (i) OUTS(&b, ",");
        OUTS(&b, "{\"name\":");
        out_cstr(&b, s->name);
        OUTS(&b, ",\"size\":");
        out_size(&b, s->size);
        OUTS(&b, ",\"align\":");
        out_size(&b, s->align);
        OUTS(&b, ",\"fields\":[");
        for (size_t j = 0; j < s->count; j++) {
            if (j) OUTS(&b, ",");
            OUTS(&b, "{\"name\":");
            out_cstr(&b, s->fields[j].name);
            OUTS(&b, ",\"offset\":");
            out_size(&b, s->fields[j].offset);
            OUTS(&b, ",\"size\":");
            out_size(&b, s->fields[j].size);
            OUTS(&b, "}");
        }
        OUTS(&b, "]}");
    }
    OUTS(&b, "]}");
    return jbuf_finish(&b, o);
}
