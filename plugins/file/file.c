/* file exporter: appends each batch as one OTLP JSON ExportTraceServiceRequest per line, the
 * way the Collector's file exporter writes.
 *
 * Config:
 *   path: FILE   (required) created if missing, appended to otherwise
 */
#include <spanhost/spanhost.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const spanhost_host_api *host;

typedef struct file_state {
    FILE *f;
    char path[4096];
} file_state;

static int32_t file_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    (void)instance;
    spanhost_str path;
    if (host->config_string(config, "path", &path) != SPANHOST_CONFIG_FOUND || path.len == 0) {
        snprintf(status->message, status->message_cap, "path: required (the file to append spans to)");
        return SPANHOST_PERMANENT;
    }
    file_state *s = (file_state *)calloc(1, sizeof *s);
    if (!s) return SPANHOST_PERMANENT;
    if (path.len >= sizeof s->path) {
        snprintf(status->message, status->message_cap, "path: longer than %zu bytes", sizeof s->path - 1);
        free(s);
        return SPANHOST_PERMANENT;
    }
    memcpy(s->path, path.ptr, path.len);
    s->f = fopen(s->path, "ab");
    if (!s->f) {
        snprintf(status->message, status->message_cap, "path: cannot open %s: %s", s->path, strerror(errno));
        free(s);
        return SPANHOST_PERMANENT;
    }
    *out = s;
    return SPANHOST_OK;
}

static int32_t file_export(void *state, const spanhost_batch *batch, spanhost_status *status) {
    file_state *s = (file_state *)state;
    spanhost_buffer buf;
    if (host->encode_batch(batch, SPANHOST_ENCODING_OTLP_JSON, &buf) != 0) {
        snprintf(status->message, status->message_cap, "encoding the batch failed");
        return SPANHOST_RETRYABLE;
    }
    size_t written = fwrite(buf.data, 1, buf.len, s->f);
    int ok = written == buf.len && fputc('\n', s->f) != EOF && fflush(s->f) == 0;
    host->buffer_free(&buf);
    if (!ok) {
        snprintf(status->message, status->message_cap, "writing %s: %s", s->path, strerror(errno));
        return SPANHOST_RETRYABLE;
    }
    return SPANHOST_OK;
}

static int32_t file_flush(void *state, spanhost_status *status) {
    (void)status;
    return fflush(((file_state *)state)->f) == 0 ? SPANHOST_OK : SPANHOST_RETRYABLE;
}

static void file_destroy(void *state) {
    file_state *s = (file_state *)state;
    fclose(s->f);
    free(s);
}

static const spanhost_plugin plugin = {
    sizeof(spanhost_plugin), SPANHOST_ABI_MAJOR, SPANHOST_ABI_MINOR, SPANHOST_KIND_EXPORTER,
    SPANHOST_PLUGIN_UNLOADABLE, "file", "1.0.0", "appends batches to a file as OTLP JSON lines",
    file_create, NULL, NULL, file_export, NULL, file_flush, file_destroy,
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
