/* file exporter: appends each batch to a file, the way the Collector's file exporter writes.
 *
 * Config:
 *   path: FILE                 (required) created if missing, appended to otherwise
 *   format: json | proto       json (default): one OTLP JSON ExportTraceServiceRequest per line
 *                              proto: protobuf ExportTraceServiceRequests, each preceded by its
 *                              length as a varint (protobuf's length-delimited stream framing)
 *   rotation:                  optional; rotate when the file would grow past max_megabytes
 *     max_megabytes: 100       (a number; fractions allowed)
 *     max_backups: 100         keep FILE.1 (newest) .. FILE.N; older ones are deleted
 */
#include <spanhost/spanhost.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const spanhost_host_api *host;

typedef struct file_state {
    spanhost_instance *instance;
    FILE *f;
    int proto;
    long size;          /* bytes in the current file */
    long max_bytes;     /* 0: no rotation */
    long max_backups;
    char path[4096];
} file_state;

#define FAIL(...) do { snprintf(status->message, status->message_cap, __VA_ARGS__); free(s); return SPANHOST_PERMANENT; } while (0)

static int open_file(file_state *s) {
    s->f = fopen(s->path, "ab");
    if (!s->f) return -1;
    fseek(s->f, 0, SEEK_END);
    s->size = ftell(s->f);
    return 0;
}

static int32_t file_create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    file_state *s = (file_state *)calloc(1, sizeof *s);
    if (!s) return SPANHOST_PERMANENT;
    s->instance = instance;
    spanhost_str path, format;
    if (host->config_string(config, "path", &path) != SPANHOST_CONFIG_FOUND || path.len == 0)
        FAIL("path: required (the file to append spans to)");
    if (path.len >= sizeof s->path - 16) FAIL("path: longer than %zu bytes", sizeof s->path - 17);
    memcpy(s->path, path.ptr, path.len);
    if (host->config_string(config, "format", &format) == SPANHOST_CONFIG_FOUND) {
        if (format.len == 5 && !memcmp(format.ptr, "proto", 5)) s->proto = 1;
        else if (!(format.len == 4 && !memcmp(format.ptr, "json", 4))) FAIL("format: '%.*s' is not json or proto", (int)format.len, format.ptr);
    }
    size_t n;
    if (host->config_count(config, "rotation", &n) == SPANHOST_CONFIG_FOUND) {
        double mb = 100;
        int64_t backups = 100;
        uint32_t rc = host->config_double(config, "rotation.max_megabytes", &mb);
        if (rc == SPANHOST_CONFIG_WRONG_TYPE || mb <= 0) FAIL("rotation.max_megabytes: must be a positive number");
        rc = host->config_int(config, "rotation.max_backups", &backups);
        if (rc == SPANHOST_CONFIG_WRONG_TYPE || backups < 0) FAIL("rotation.max_backups: must be a number >= 0");
        s->max_bytes = (long)(mb * 1024 * 1024);
        if (s->max_bytes < 1) s->max_bytes = 1;
        s->max_backups = (long)backups;
    }
    /* The file itself is opened by start: create only checks, so validating a config
     * (spanhostd --check) creates no file. */
    char dir[4096];
    const char *slash = strrchr(s->path, '/');
    size_t dlen = slash ? (size_t)(slash - s->path) : 0;
    if (dlen == 0) snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
    else snprintf(dir, sizeof dir, "%.*s", (int)dlen, s->path);
    if (access(dir, W_OK) != 0) FAIL("path: cannot write in %s: %s", dir, strerror(errno));
    *out = s;
    return SPANHOST_OK;
}

static int32_t file_start(void *state, spanhost_status *status) {
    file_state *s = (file_state *)state;
    if (open_file(s) != 0) {
        snprintf(status->message, status->message_cap, "path: cannot open %s: %s", s->path, strerror(errno));
        return SPANHOST_PERMANENT;
    }
    return SPANHOST_OK;
}

/* FILE -> FILE.1 -> FILE.2 ... ; the oldest past max_backups is removed. */
static int rotate(file_state *s) {
    char from[4200], to[4200];
    fclose(s->f);
    s->f = NULL;
    if (s->max_backups == 0) {
        remove(s->path);
    } else {
        snprintf(to, sizeof to, "%s.%ld", s->path, s->max_backups);
        remove(to);
        for (long i = s->max_backups - 1; i >= 1; i--) {
            snprintf(from, sizeof from, "%s.%ld", s->path, i);
            snprintf(to, sizeof to, "%s.%ld", s->path, i + 1);
            rename(from, to); /* a missing backup is fine */
        }
        snprintf(to, sizeof to, "%s.1", s->path);
        if (rename(s->path, to) != 0) return -1;
    }
    host->counter_add(s->instance, "rotations", 1);
    return open_file(s);
}

static int32_t file_export(void *state, const spanhost_batch *batch, spanhost_status *status) {
    file_state *s = (file_state *)state;
    if (!s->f && open_file(s) != 0) {
        snprintf(status->message, status->message_cap, "cannot open %s: %s", s->path, strerror(errno));
        return SPANHOST_RETRYABLE;
    }
    spanhost_buffer buf;
    if (host->encode_batch(batch, s->proto ? SPANHOST_ENCODING_OTLP_PROTO : SPANHOST_ENCODING_OTLP_JSON, &buf) != 0) {
        snprintf(status->message, status->message_cap, "encoding the batch failed");
        return SPANHOST_RETRYABLE;
    }
    unsigned char frame[10];
    size_t frame_len = 0;
    if (s->proto) {
        size_t v = buf.len;
        do {
            frame[frame_len++] = (unsigned char)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
            v >>= 7;
        } while (v);
    } else {
        frame[0] = '\n';
    }
    long record = (long)(buf.len + (s->proto ? frame_len : 1));
    if (s->max_bytes && s->size > 0 && s->size + record > s->max_bytes && rotate(s) != 0) {
        host->buffer_free(&buf);
        snprintf(status->message, status->message_cap, "rotating %s: %s", s->path, strerror(errno));
        return SPANHOST_RETRYABLE;
    }
    int ok = s->proto ? fwrite(frame, 1, frame_len, s->f) == frame_len && fwrite(buf.data, 1, buf.len, s->f) == buf.len
                      : fwrite(buf.data, 1, buf.len, s->f) == buf.len && fputc('\n', s->f) != EOF;
    ok = ok && fflush(s->f) == 0;
    host->buffer_free(&buf);
    if (!ok) {
        snprintf(status->message, status->message_cap, "writing %s: %s", s->path, strerror(errno));
        return SPANHOST_RETRYABLE;
    }
    s->size += record;
    return SPANHOST_OK;
}

static int32_t file_flush(void *state, spanhost_status *status) {
    (void)status;
    file_state *s = (file_state *)state;
    return !s->f || fflush(s->f) == 0 ? SPANHOST_OK : SPANHOST_RETRYABLE;
}

static void file_destroy(void *state) {
    file_state *s = (file_state *)state;
    if (s->f) fclose(s->f);
    free(s);
}

static const spanhost_config_key config_keys[] = {
    {"path", SPANHOST_TYPE_STRING, 1, NULL, "the file; created if missing, appended to otherwise"},
    {"format", SPANHOST_TYPE_STRING, 0, "json", "json (OTLP JSON lines) or proto (length-delimited protobuf)"},
    {"rotation", SPANHOST_TYPE_MAP, 0, NULL, "rotate when the file would grow past max_megabytes"},
    {"rotation.max_megabytes", SPANHOST_TYPE_DOUBLE, 0, "100", "size that triggers a rotation"},
    {"rotation.max_backups", SPANHOST_TYPE_INT, 0, "100", "rotated files kept (FILE.1 is the newest)"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_EXPORTER,
    .flags = SPANHOST_PLUGIN_UNLOADABLE,
    .name = "file",
    .version = "1.1.0",
    .description = "appends batches to a file as OTLP JSON lines or length-delimited protobuf",
    .create = file_create,
    .start = file_start,
    .export_batch = file_export,
    .flush = file_flush,
    .destroy = file_destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
