/* log notifier: writes each event as one line to stderr or stdout.
 *
 * Config:
 *   output: stderr | stdout     default stderr
 *   format: json | text         json (default) is the host's event JSON; text is
 *                               "<time> <SEVERITY> <kind> <summary> count=<n> trace_id=<hex>"
 */
#include <spanhost/spanhost.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin_util.h"

static const spanhost_host_api *host;

typedef struct log_state {
    FILE *out;
    int text;
} log_state;

static int32_t log_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    (void)instance;
    spanhost_str output = {NULL, 0}, format = {NULL, 0};
    host->config_string(config, "output", &output);
    host->config_string(config, "format", &format);
    log_state *s = (log_state *)calloc(1, sizeof *s);
    if (!s) return SPANHOST_PERMANENT;
    if (!output.len || util_str_is(output, "stderr")) s->out = stderr;
    else if (util_str_is(output, "stdout")) s->out = stdout;
    else {
        snprintf(status->message, status->message_cap, "output: '%.*s' is not stderr or stdout", (int)output.len, output.ptr);
        free(s);
        return SPANHOST_PERMANENT;
    }
    if (!format.len || util_str_is(format, "json")) s->text = 0;
    else if (util_str_is(format, "text")) s->text = 1;
    else {
        snprintf(status->message, status->message_cap, "format: '%.*s' is not json or text", (int)format.len, format.ptr);
        free(s);
        return SPANHOST_PERMANENT;
    }
    if (host->struct_size < offsetof(spanhost_host_api, encode_notification) + sizeof(void *)) {
        snprintf(status->message, status->message_cap, "needs a host with ABI 1.1 or newer");
        free(s);
        return SPANHOST_PERMANENT;
    }
    *out = s;
    return SPANHOST_OK;
}

/* Writes text from span data so that it stays on one line and cannot drive a terminal:
 * control characters (newlines, ESC...) and DEL become escapes, and a backslash is doubled. */
static void write_escaped(FILE *out, const char *text, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        switch (c) {
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\\': fputs("\\\\", out); break;
        default:
            if (c < 0x20 || c == 0x7f) fprintf(out, "\\x%02x", c);
            else fputc(c, out);
        }
    }
}

static int32_t log_notify(void *state, const spanhost_notification *n, spanhost_status *status) {
    log_state *s = (log_state *)state;
    if (!s->text) {
        spanhost_buffer json = {NULL, 0};
        if (host->encode_notification(n, &json) != 0) {
            snprintf(status->message, status->message_cap, "could not encode the event");
            return SPANHOST_PERMANENT;
        }
        fprintf(s->out, "%.*s\n", (int)json.len, (const char *)json.data);
        host->buffer_free(&json);
    } else {
        static const char *const severities[] = {"INFO", "WARNING", "ERROR", "CRITICAL"};
        char when[32];
        time_t seconds = (time_t)(n->time_unix_nano / 1000000000ull);
        struct tm tm;
        gmtime_r(&seconds, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        fprintf(s->out, "%s %s ", when, severities[n->severity < 4 ? n->severity : 2]);
        write_escaped(s->out, n->kind.ptr ? n->kind.ptr : "", n->kind.ptr ? n->kind.len : 0);
        fputc(' ', s->out);
        write_escaped(s->out, n->summary.ptr ? n->summary.ptr : "", n->summary.ptr ? n->summary.len : 0);
        fprintf(s->out, " count=%llu", (unsigned long long)n->count);
        int any = 0;
        for (int i = 0; i < 16; i++) any |= n->trace_id[i];
        if (any) {
            fputs(" trace_id=", s->out);
            for (int i = 0; i < 16; i++) fprintf(s->out, "%02x", n->trace_id[i]);
        }
        fputc('\n', s->out);
    }
    fflush(s->out);
    return SPANHOST_OK;
}

static void log_destroy(void *state) { free(state); }

static const spanhost_config_key config_keys[] = {
    {"output", SPANHOST_TYPE_STRING, 0, "stderr", "stderr or stdout"},
    {"format", SPANHOST_TYPE_STRING, 0, "json", "json or text"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_NOTIFIER,
    .flags = SPANHOST_PLUGIN_UNLOADABLE,
    .name = "log",
    .version = "1.0.0",
    .description = "writes events as lines to stderr or stdout",
    .create = log_create,
    .notify = log_notify,
    .destroy = log_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
