/*
 * spanhost.h -- the Spanhost plugin ABI, version 1.8.
 *   1.1 added host->encode_notification and encode_value.
 *   1.2 added config schemas in the descriptor, host->config_duration, config_bytes,
 *   config_string_list and gauge_set, and labels in counter and gauge names.
 *   1.3 added SPANHOST_PLUGIN_NONBLOCKING, expressions (host->expr_compile, expr_run,
 *   expr_free) and functions that plugins add to them (spanhost_function).
 *   1.4 added host->release_trace and expr_infer_context; 1.5 the expression cache; 1.6
 *   SPANHOST_ENCODING_ZIPKIN_JSON; 1.7 spanhost_batch.client_metadata.
 *   1.8 added counters and gauges by handle (host->counter_declare, counter_add_id,
 *   gauge_declare, gauge_set_id), host->set_attribute_lent, the descriptor's `validate` hook,
 *   SPANHOST_PLUGIN_READONLY and SPANHOST_PLUGIN_TRACE_EVENTS, and the host keys rule.
 *
 * This header is the whole contract between the Spanhost host (spanhostd) and its plugins.
 * A plugin includes it, implements one exported entry function, and links against nothing of
 * the host: every host service arrives as a table of function pointers (spanhost_host_api).
 *
 * Versions: one model, SQLite's. A plugin built against any 1.x header loads into any 1.x host,
 * older or newer than the header it was built with; SPANHOST_ABI_MAJOR must match exactly.
 * `struct_size` is the only thing either side checks; abi_minor is for people (logs, listings):
 *   - Every struct that may grow starts with `uint32_t struct_size` and only grows at its end.
 *     Readers look only at min(struct_size, sizeof) bytes and treat the rest as zero: a host
 *     ignores descriptor fields added after it was built, and sees fields the plugin's header
 *     did not have as zero (NULL hooks, no flags).
 *   - A plugin calls a host function added after 1.0 only when SPANHOST_HOST_HAS(host, member)
 *     holds, or returns NULL from its entry function when it cannot do without it (the host
 *     then refuses the file, naming it). Flags and result codes a host does not know are
 *     ignored (flags) or read as SPANHOST_PERMANENT (results), so new ones are only ever hints
 *     or refusals.
 *   - A few small value types are marked FROZEN: they never change, so arrays of them are safe.
 *     Arrays of growable structs (spanhost_function) are walked by their first element's
 *     struct_size.
 *   - Integers inside structs are fixed-width; enumerations are uint32_t with #defined values.
 *   - Strings and bytes are (pointer, length) views and are NOT NUL-terminated unless a field
 *     says so.
 *   - Every pointer says who owns it and how long it lives (OWNERSHIP lines). The default rule:
 *     what the host passes into a plugin callback is borrowed and valid only until that callback
 *     returns; a plugin that keeps anything copies it. Memory that a plugin hands to the host
 *     comes from the host's allocators in the table.
 *
 * Threading: the host calls one plugin instance from one thread at a time unless the plugin
 * sets SPANHOST_PLUGIN_CONCURRENT. Different instances may be called concurrently from different
 * threads. Functions of the host table may be called from any thread unless noted.
 *
 * The header compiles as C99 and C++ and holds nothing of the host's internals.
 */
#ifndef SPANHOST_SPANHOST_H
#define SPANHOST_SPANHOST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPANHOST_ABI_MAJOR 1
#define SPANHOST_ABI_MINOR 8

/* Name of the one function every plugin exports (see spanhost_plugin_entry_fn). */
#define SPANHOST_PLUGIN_ENTRY_SYMBOL "spanhost_plugin_entry"

#if defined(_WIN32)
#define SPANHOST_EXPORT __declspec(dllexport)
#else
#define SPANHOST_EXPORT __attribute__((visibility("default")))
#endif

/* ------------------------------------------------------------------------------------------ */
/* Result codes                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* Every plugin hook returns one of these. Any other value is treated as SPANHOST_PERMANENT. */
#define SPANHOST_OK 0          /* done */
#define SPANHOST_RETRYABLE 1   /* failed for now; the host retries with backoff (see retry_after_ms) */
#define SPANHOST_PERMANENT 2   /* failed for good; the host drops the batch and counts it */
#define SPANHOST_CONSUMED 3    /* processors only: the batch is not forwarded; the plugin has
                                  emitted (or will emit) what follows it through host->emit */

/*
 * Filled by a plugin hook that does not return SPANHOST_OK. The host allocates it and zeroes
 * it before each call.
 */
typedef struct spanhost_status {
    uint32_t struct_size;
    /* For SPANHOST_RETRYABLE: wait at least this long before retrying; 0 = host's backoff. */
    uint32_t retry_after_ms;
    /* Human-readable reason. Write a NUL-terminated string of at most message_cap bytes
     * (including the NUL); snprintf(status->message, status->message_cap, ...) does it.
     * message_cap is at least 256.
     * OWNERSHIP: host; valid for the duration of the call that received the status. */
    char *message;
    size_t message_cap;
} spanhost_status;

/* ------------------------------------------------------------------------------------------ */
/* Views                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* FROZEN. A UTF-8 string view; not NUL-terminated. An absent string is {NULL, 0}. */
typedef struct spanhost_str {
    const char *ptr;
    size_t len;
} spanhost_str;

/* FROZEN. A byte string view. */
typedef struct spanhost_bytes {
    const uint8_t *ptr;
    size_t len;
} spanhost_bytes;

/* ------------------------------------------------------------------------------------------ */
/* Attribute values (OTLP AnyValue)                                                             */
/* ------------------------------------------------------------------------------------------ */

#define SPANHOST_VALUE_EMPTY 0
#define SPANHOST_VALUE_STRING 1
#define SPANHOST_VALUE_BOOL 2
#define SPANHOST_VALUE_INT 3
#define SPANHOST_VALUE_DOUBLE 4
#define SPANHOST_VALUE_ARRAY 5
#define SPANHOST_VALUE_KVLIST 6
#define SPANHOST_VALUE_BYTES 7

struct spanhost_value;
struct spanhost_kv;

/* FROZEN. An array of values (OTLP ArrayValue). */
typedef struct spanhost_value_array {
    struct spanhost_value *items; /* OWNERSHIP: the batch arena; lives as long as the batch */
    size_t count;
} spanhost_value_array;

/* FROZEN. A list of key-value pairs: attributes, or OTLP KeyValueList. */
typedef struct spanhost_kv_list {
    struct spanhost_kv *items; /* OWNERSHIP: the batch arena; lives as long as the batch */
    size_t count;
} spanhost_kv_list;

/* FROZEN. A typed value; `type` is one of SPANHOST_VALUE_*. */
typedef struct spanhost_value {
    uint32_t type;
    uint32_t reserved; /* zero */
    union {
        spanhost_str string_value;
        int32_t bool_value; /* 0 or 1 */
        int64_t int_value;
        double double_value;
        spanhost_value_array array_value;
        spanhost_kv_list kvlist_value;
        spanhost_bytes bytes_value;
    } as;
} spanhost_value;

/* FROZEN. One attribute. Keys and string values point into the batch arena or into the request
 * body the batch was decoded from; both live as long as the batch. */
typedef struct spanhost_kv {
    spanhost_str key;
    spanhost_value value;
} spanhost_kv;

/* ------------------------------------------------------------------------------------------ */
/* The span model (OTLP trace data)                                                             */
/* ------------------------------------------------------------------------------------------ */

#define SPANHOST_SPAN_KIND_UNSPECIFIED 0
#define SPANHOST_SPAN_KIND_INTERNAL 1
#define SPANHOST_SPAN_KIND_SERVER 2
#define SPANHOST_SPAN_KIND_CLIENT 3
#define SPANHOST_SPAN_KIND_PRODUCER 4
#define SPANHOST_SPAN_KIND_CONSUMER 5

#define SPANHOST_STATUS_UNSET 0
#define SPANHOST_STATUS_OK 1
#define SPANHOST_STATUS_ERROR 2

/* A timed event inside a span. */
typedef struct spanhost_event {
    uint32_t struct_size;
    uint32_t dropped_attributes_count;
    uint64_t time_unix_nano;
    spanhost_str name;
    spanhost_kv_list attributes;
} spanhost_event;

/* A link from a span to another span. */
typedef struct spanhost_link {
    uint32_t struct_size;
    uint32_t dropped_attributes_count;
    uint8_t trace_id[16];
    uint8_t span_id[8];
    spanhost_str trace_state;
    spanhost_kv_list attributes;
    uint32_t flags;
    uint32_t reserved; /* zero */
} spanhost_link;

/* Set in spanhost_span.host_flags by a processor to remove the span from the batch.
 * DROP: the span is discarded (counted as dropped, reported to the client as partial success).
 * TAKEN: the processor keeps a copy to emit later (buffering, tail sampling); not a drop. It
 *        emits the copy, or releases its trace with release_trace (1.4) when it drops it. */
#define SPANHOST_SPAN_DROP 1u
#define SPANHOST_SPAN_TAKEN 2u

/* One span. All-zero parent_span_id means a root span. */
typedef struct spanhost_span {
    uint32_t struct_size;
    uint32_t flags; /* W3C trace flags and OTLP span flags, as received */
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_span_id[8];
    spanhost_str trace_state;
    spanhost_str name;
    uint32_t kind;        /* SPANHOST_SPAN_KIND_* */
    uint32_t status_code; /* SPANHOST_STATUS_* */
    spanhost_str status_message;
    uint64_t start_time_unix_nano;
    uint64_t end_time_unix_nano;
    spanhost_kv_list attributes;
    /* OWNERSHIP: arrays of pointers in the batch arena; elements live as long as the batch. */
    spanhost_event **events;
    size_t events_count;
    spanhost_link **links;
    size_t links_count;
    uint32_t dropped_attributes_count;
    uint32_t dropped_events_count;
    uint32_t dropped_links_count;
    /* Host bookkeeping a processor may set: SPANHOST_SPAN_DROP or _TAKEN. Zero when received. */
    uint32_t host_flags;
} spanhost_span;

/* The instrumentation scope that produced a group of spans. */
typedef struct spanhost_scope {
    uint32_t struct_size;
    uint32_t dropped_attributes_count;
    spanhost_str name;
    spanhost_str version;
    spanhost_kv_list attributes;
} spanhost_scope;

/* The entity (service, host, process) that produced spans. */
typedef struct spanhost_resource {
    uint32_t struct_size;
    uint32_t dropped_attributes_count;
    spanhost_kv_list attributes;
} spanhost_resource;

/* Spans of one scope (OTLP ScopeSpans). */
typedef struct spanhost_scope_spans {
    uint32_t struct_size;
    uint32_t reserved; /* zero */
    spanhost_scope *scope;      /* OWNERSHIP: batch arena; never NULL */
    spanhost_str schema_url;
    spanhost_span **spans;      /* OWNERSHIP: batch arena; `spans_count` pointers */
    size_t spans_count;
} spanhost_scope_spans;

/* Spans of one resource (OTLP ResourceSpans). */
typedef struct spanhost_resource_spans {
    uint32_t struct_size;
    uint32_t reserved; /* zero */
    spanhost_resource *resource;       /* OWNERSHIP: batch arena; never NULL */
    spanhost_str schema_url;
    spanhost_scope_spans **scope_spans; /* OWNERSHIP: batch arena */
    size_t scope_spans_count;
} spanhost_resource_spans;

/*
 * A batch of spans grouped by resource and scope, as in one OTLP ExportTraceServiceRequest.
 * Everything reachable from a batch lives in the batch's arena (or in the request body the
 * arena keeps alive) and is freed together when the last reference to the batch goes.
 *
 * A processor receives the batch writable: it may change fields in place, point them at memory
 * from host->arena_alloc / host->arena_strdup, reorder or shorten arrays, and set
 * SPANHOST_SPAN_DROP. Exporters and notifiers receive it read-only: it may be shared by several
 * exporters at once and must not be changed.
 */
typedef struct spanhost_batch {
    uint32_t struct_size;
    uint32_t reserved; /* zero */
    spanhost_resource_spans **resource_spans; /* OWNERSHIP: batch arena */
    size_t resource_spans_count;
    /* 1.7: what the receiver knew of the request that brought these spans, as string values:
     * `client.address` (the sender's IP), and `metadata.<name>` for each request header when the
     * receiver sets include_metadata (names in lowercase; a header given twice has its values
     * joined with ";"). Empty for batches no request made (those a processor emits, replayed
     * ones); a batch merged from several requests in an exporter's queue keeps only the batch
     * processor's metadata_keys. The Collector's attributes processor reads it with from_context.
     * OWNERSHIP: batch arena. */
    spanhost_kv_list client_metadata;
} spanhost_batch;

/* ------------------------------------------------------------------------------------------ */
/* Events for notifiers                                                                         */
/* ------------------------------------------------------------------------------------------ */

#define SPANHOST_SEVERITY_INFO 0
#define SPANHOST_SEVERITY_WARNING 1
#define SPANHOST_SEVERITY_ERROR 2
#define SPANHOST_SEVERITY_CRITICAL 3

/*
 * Something a notifier should tell people about: an error span, a rule that fired or resolved,
 * or an event raised by a processor.
 * OWNERSHIP: when passed to `notify`, every view is borrowed until the hook returns. When passed
 * to host->raise, the host copies what it keeps before raise returns; the caller keeps its own.
 * Notifiers are called on host threads, never on the thread that raised the event, so a slow
 * notifier delays no pipeline.
 */
typedef struct spanhost_notification {
    uint32_t struct_size;
    uint32_t severity;        /* SPANHOST_SEVERITY_* */
    spanhost_str kind;        /* e.g. "error_span", "error_rate", "resolved", or a plugin's own */
    spanhost_str source;      /* the component or rule that raised it */
    spanhost_str key;         /* deduplication key, e.g. service name */
    spanhost_str summary;     /* one line for humans */
    spanhost_kv_list attributes; /* details: service.name, exception.type, ... */
    uint8_t trace_id[16];     /* all zero if not about one trace */
    uint64_t time_unix_nano;
    uint64_t count;           /* how many occurrences this notification stands for (>= 1) */
} spanhost_notification;

/* ------------------------------------------------------------------------------------------ */
/* The host table                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Opaque handles owned by the host. */
typedef struct spanhost_config spanhost_config;     /* one instance's config; see config_* */
typedef struct spanhost_instance spanhost_instance; /* the host's side of one plugin instance */

#define SPANHOST_LOG_DEBUG 0
#define SPANHOST_LOG_INFO 1
#define SPANHOST_LOG_WARN 2
#define SPANHOST_LOG_ERROR 3

/* Results of the config getters. */
#define SPANHOST_CONFIG_FOUND 0
#define SPANHOST_CONFIG_MISSING 1    /* no value at that path: use your default */
#define SPANHOST_CONFIG_WRONG_TYPE 2 /* a value exists but cannot be read as the asked type */

/* Formats for encode_batch. */
#define SPANHOST_ENCODING_OTLP_PROTO 0 /* ExportTraceServiceRequest, protobuf */
#define SPANHOST_ENCODING_OTLP_JSON 1  /* ExportTraceServiceRequest, OTLP JSON (one line) */
/* 1.6: a Zipkin v2 JSON array of spans, mapped as the Collector's zipkin exporter maps them
 * (resource and scope to tags and localEndpoint, status to otel.status_code and error, events
 * to annotations, links to otlp.link.N tags). A resource without a service name is written
 * with the serviceName "OTLPResourceNoServiceName". Older hosts refuse it (-1). */
#define SPANHOST_ENCODING_ZIPKIN_JSON 2

/* A block of bytes allocated by the host. Release it with host->buffer_free. */
typedef struct spanhost_buffer {
    uint8_t *data; /* OWNERSHIP: host allocator; until buffer_free */
    size_t len;
} spanhost_buffer;

/*
 * Expressions (1.3): conditions and statements in the OpenTelemetry Transformation Language
 * (OTTL), compiled once by the host and run against the span structs in place. One engine
 * serves every plugin and the host's own rules, with the functions that plugins add (see
 * spanhost_function). The grammar the host accepts is listed in README ("Expressions").
 */
typedef struct spanhost_expr spanhost_expr; /* opaque: from expr_compile, freed by expr_free */

#define SPANHOST_EXPR_CONDITION 1 /* a boolean: `attributes["http.status_code"] >= 500` */
#define SPANHOST_EXPR_STATEMENT 2 /* an editor call: `set(attributes["x"], "y") where name == "GET"` */

/* What `attributes` and the bare field names refer to. */
#define SPANHOST_CONTEXT_SPAN 1     /* the span; its resource as resource.attributes */
#define SPANHOST_CONTEXT_RESOURCE 2 /* the resource: attributes are the resource's */
#define SPANHOST_CONTEXT_SPANEVENT 3 /* a span event: attributes, name and time_unix_nano are the
                                      * event's; span.name, span.attributes["k"]... its span's */

/* Where an expression runs. OWNERSHIP: the caller's, borrowed for the call. */
typedef struct spanhost_expr_target {
    uint32_t struct_size;
    spanhost_batch *batch;       /* what a statement or a function returns is copied into its arena */
    spanhost_resource *resource; /* may be NULL */
    spanhost_scope *scope;       /* may be NULL */
    spanhost_span *span;         /* NULL in the resource context */
    spanhost_event *event;       /* the spanevent context's event (of `span`); NULL otherwise */
    /* Added in 1.5. The `cache` path: a map the statements of one context share for one span
     * (or event, or resource), as in the Collector's transform processor. The caller's; may be
     * NULL (then cache reads nil and writes nothing). Start each span with an empty one. */
    spanhost_kv_list *cache;
} spanhost_expr_target;

/*
 * Services the host offers. Passed to the entry function; valid for the life of the process.
 * Check SPANHOST_HOST_HAS before using a function added after 1.0.
 * Unless a function says otherwise: pointer parameters are borrowed for the call (the host
 * copies what it keeps before returning), may not be NULL, and out-parameters are written only
 * on success.
 */
typedef struct spanhost_host_api {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /* Writes one log line attributed to `instance` (may be NULL outside an instance). `message`
     * is `len` bytes and need not be NUL-terminated; the host copies it before returning and
     * ends the line itself (do not add a newline). */
    void (*log)(spanhost_instance *instance, uint32_t level, const char *message, size_t len);

    /* --- Config getters. `path` is a NUL-terminated dotted path into the instance's config:
     * "topic", "retry.max_elapsed", "actions.0.key" (list items by index). A map key that
     * contains dots matches whole ("properties.sasl.mechanism" finds the key "sasl.mechanism"
     * under "properties"; the longest matching key wins). Strings returned
     * are OWNED by the host and live as long as the config handle, which is the instance's
     * life: `config` and the strings may be kept after create. A returned string is also
     * NUL-terminated (ptr[len] == 0, not counted in len). Keys are checked against the
     * plugin's config schema before create (1.2); after create, any key create never read is
     * refused as a typo (free-form parts of a schema included), so read every key you accept. */
    uint32_t (*config_string)(const spanhost_config *config, const char *path, spanhost_str *out);
    uint32_t (*config_int)(const spanhost_config *config, const char *path, int64_t *out);
    uint32_t (*config_double)(const spanhost_config *config, const char *path, double *out);
    uint32_t (*config_bool)(const spanhost_config *config, const char *path, int32_t *out);
    /* Number of items of a list, or of keys of a map, at `path` ("" is the root map). */
    uint32_t (*config_count)(const spanhost_config *config, const char *path, size_t *out);
    /* The `index`-th key of the map at `path`, in config file order. */
    uint32_t (*config_key)(const spanhost_config *config, const char *path, size_t index,
                           spanhost_str *out);

    /* --- Batch memory. Valid only while the caller holds the batch writable (inside a
     * processor's process hook, or on a batch it created with batch_new and has not emitted).
     * Memory is freed with the batch; never free it yourself. Returns NULL when out of memory.
     * Blocks are zeroed and aligned to 8 bytes. */
    void *(*arena_alloc)(spanhost_batch *batch, size_t size);
    /* Copies `len` bytes into the arena and returns a view of the copy (not NUL-terminated).
     * Returns {NULL, 0} when out of memory, and for len 0. Copies may share memory with equal
     * strings already in the batch: never write through a view. */
    spanhost_str (*arena_strdup)(spanhost_batch *batch, const char *ptr, size_t len);
    /* Sets `key` to `value` in `attributes` (replacing an existing key), growing the list in
     * the arena when needed. The key and the value are copied deeply into the arena (arrays
     * and maps included): the caller's may be freed afterwards. Returns 0 on success, -1 when
     * out of memory (the list is then unchanged). To avoid the copy of a string that already
     * outlives the batch, see set_attribute_lent (1.8). */
    int32_t (*set_attribute)(spanhost_batch *batch, spanhost_kv_list *attributes,
                             spanhost_str key, const spanhost_value *value);
    /* Removes `key` from `attributes`, keeping the order of the others; returns 1 if it was
     * present, else 0. */
    int32_t (*remove_attribute)(spanhost_batch *batch, spanhost_kv_list *attributes,
                                spanhost_str key);

    /* --- Batch lifetime. A plugin that keeps a batch after its hook returns (to buffer or emit
     * it later) retains it; every retain and every batch_new is matched by one release.
     * retain and release may be called from any thread at once. Everything that writes a batch
     * (arena_*, set_attribute, remove_attribute, batch_add_span) is NOT thread-safe: one
     * thread at a time per batch, the plugin's own lock if it shares a batch it made. */
    spanhost_batch *(*batch_new)(void);
    void (*batch_retain)(const spanhost_batch *batch);
    void (*batch_release)(const spanhost_batch *batch);
    /* Appends a copy of `span` (deep copy into `batch`'s arena) under the given resource and
     * scope. Spans whose resource and scope are equal in content share one group; other groups
     * are created as needed. Returns the copy, or NULL when out of memory. */
    spanhost_span *(*batch_add_span)(spanhost_batch *batch, const spanhost_resource *resource,
                                     spanhost_str resource_schema_url, const spanhost_scope *scope,
                                     spanhost_str scope_schema_url, const spanhost_span *span);

    /* --- Output. Processors only: hands `batch` to the part of the pipeline after `instance`.
     * The host takes its own reference; the caller still releases its own. May be called from
     * any thread, also outside process (timers). The rest of the pipeline (later processors,
     * then the exporters' queues) runs on the calling thread before emit returns, so do not
     * hold a lock that process also takes while emitting. Returns:
     *   SPANHOST_OK         taken: delivered, queued, or dropped by a later processor on purpose.
     *   SPANHOST_RETRYABLE  not taken for now (an exporter queue is full, memory is short): keep
     *                       the batch and emit it again later, in order. A processor that holds
     *                       spans bounds what it keeps and, when full, answers RETRYABLE from
     *                       process itself, so clients get 503 and retry instead of losing data.
     *   SPANHOST_PERMANENT  rejected for good by a later stage; the host counts its spans as
     *                       lost (counter `lost_spans` of this instance). Release it.
     * While the host flushes processors for a shutdown or reload, every emit is taken (the
     * exporters' queues then deliver, keep on disk, or count as lost what they cannot send).
     * Spans a processor took and must drop for another reason (out of memory, destroyed
     * without flush) are added to its counter `lost_spans` with counter_add: the host reports
     * them as lost and the process exits non-zero. */
    int32_t (*emit)(spanhost_instance *instance, const spanhost_batch *batch);
    /* Raises a notification to the notifiers of every pipeline this instance belongs to.
     * `notification` is borrowed for the call (the host copies it). Returns SPANHOST_OK when
     * the host took it (it may still be folded into a repeat, see notifier rules), PERMANENT
     * when the instance belongs to no pipeline yet (inside create) or the event is invalid. */
    int32_t (*raise)(spanhost_instance *instance, const spanhost_notification *notification);
    /* Adds `delta` to the instance's counter `name` (NUL-terminated), shown at /status and at
     * /metrics as spanhost_<kind>_<name>_total. A counter only grows: for a level that goes up
     * and down use gauge_set (1.2). Labels: a name may end in Prometheus' label form,
     * `requests{status="500",method="GET"}`; each distinct label set is its own series of the
     * counter `requests`, and /metrics carries the labels as labels. Label names are
     * [a-zA-Z_][a-zA-Z0-9_]*; values may not contain `"`, `\` or a newline. Keep the number of
     * distinct label values small (tens, not one per trace). `name` is borrowed for the call.
     * Each call looks the name up; per-batch counters are cheaper by handle (counter_declare). */
    void (*counter_add)(spanhost_instance *instance, const char *name, int64_t delta);

    /* --- Encoding. Serializes `batch` in `encoding` (SPANHOST_ENCODING_*) into a new host
     * buffer. Returns 0 on success, -1 on failure. OWNERSHIP: *out is the caller's on success;
     * release it with buffer_free (which accepts an empty buffer). */
    int32_t (*encode_batch)(const spanhost_batch *batch, uint32_t encoding, spanhost_buffer *out);
    void (*buffer_free)(spanhost_buffer *buffer);
    /* Compresses `len` bytes at `data` as gzip into a new host buffer. Returns 0 or -1. */
    int32_t (*gzip)(const uint8_t *data, size_t len, spanhost_buffer *out);

    /* --- Added in 1.1 ----------------------------------------------------------------- */

    /* Serializes `notification` as one line of JSON into a new host buffer:
     *   {"kind":..,"severity":"error","source":..,"key":..,"summary":..,"trace_id":"<hex>"|null,
     *    "time":"<RFC 3339>","time_unix_nano":..,"count":..,"attributes":{..}}
     * Attribute values become plain JSON (strings, numbers, booleans, arrays, objects; bytes
     * as base64). Returns 0 or -1. Release the buffer with buffer_free. */
    int32_t (*encode_notification)(const spanhost_notification *notification, spanhost_buffer *out);
    /* Serializes one value as plain JSON, as encode_notification writes attribute values.
     * Returns 0 or -1. Release the buffer with buffer_free. */
    int32_t (*encode_value)(const spanhost_value *value, spanhost_buffer *out);

    /* --- Added in 1.2 ----------------------------------------------------------------- */

    /* A duration in the host's grammar: a number and a unit, possibly repeated: "1m30s",
     * "250ms", "10us", "1.5h" (units ns, us, ms, s, m, h); a bare number is seconds. Stores
     * nanoseconds in *out_ns. WRONG_TYPE for anything else, negative durations included. */
    uint32_t (*config_duration)(const spanhost_config *config, const char *path, int64_t *out_ns);
    /* A size in bytes: an integer, or a number with a unit: "512KiB", "64MiB", "1GiB", "10MB"
     * (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024). Stores bytes in *out. */
    uint32_t (*config_bytes)(const spanhost_config *config, const char *path, int64_t *out);
    /* A list of strings (a single string counts as a list of one). Stores an array of `*count`
     * views in *out. OWNERSHIP: host; the array and its strings live as long as the config
     * handle (the instance's life); each string is NUL-terminated past its len. WRONG_TYPE when
     * an item is not a string. */
    uint32_t (*config_string_list)(const spanhost_config *config, const char *path,
                                   const spanhost_str **out, size_t *count);
    /* Sets the instance's gauge `name` (NUL-terminated; labels as for counter_add) to `value`:
     * a level that goes up and down (items held, queue depth). Shown at /status under
     * "gauges" and at /metrics as spanhost_<kind>_<name>. `name` is borrowed for the call. */
    void (*gauge_set)(spanhost_instance *instance, const char *name, int64_t value);

    /* --- Added in 1.3 ----------------------------------------------------------------- */

    /* Compiles `text` (`len` bytes, borrowed for the call; the compiled form keeps its own
     * copy) as a SPANHOST_EXPR_* in a SPANHOST_CONTEXT_*. On success stores the compiled form
     * in *out and returns SPANHOST_OK; otherwise PERMANENT with "column N: what is wrong" in
     * status. `status` may be NULL (the reason is then lost). Unknown functions, wrong argument
     * counts and argument types are errors here, not later. OWNERSHIP: *out is the caller's;
     * free it with expr_free. A compiled expression may be run from several threads at once. */
    int32_t (*expr_compile)(const char *text, size_t len, uint32_t kind, uint32_t context,
                            spanhost_expr **out, spanhost_status *status);
    /* Runs a compiled expression on one target. A condition: 1 when it holds, 0 when not. A
     * statement: 1 when it ran, 0 when its `where` clause did not hold. -1 when it failed (a
     * function returned an error, a value had the wrong type): the message is in status, which
     * may be NULL. Runs on the caller's thread and never blocks (plugin functions must not). */
    int32_t (*expr_run)(const spanhost_expr *expr, const spanhost_expr_target *target,
                        spanhost_status *status);
    void (*expr_free)(spanhost_expr *expr);

    /* --- Added in 1.4 ----------------------------------------------------------------- */

    /* Processors that hold spans (mark them SPANHOST_SPAN_TAKEN, or return SPANHOST_CONSUMED):
     * says the instance is done with the trace `trace_id` (16 bytes, borrowed for the call):
     * what it keeps of the trace it has emitted (emit returned), the rest it drops on purpose
     * (not sampled, over a limit). Call it after those emits, never before.
     * Why: when a pipeline has an exporter with a persistent queue (sending_queue.storage), the
     * host writes what the pipeline's processors hold to a journal on disk before the client is
     * answered, so a kill -9 loses none of it. At the next start the journal is fed to the
     * processor again: at least once, so what it emitted just before the kill may go out twice.
     * A held span leaves the journal when the instance emits it (emit returns OK or PERMANENT)
     * or releases its trace; a flush before a shutdown or reload empties the journal. Spans a
     * holding processor drops without releasing stay in the journal until its next flush (the
     * instance's gauge `journal_spans` counts them). Releasing a trace twice, or one it never
     * held, does nothing. */
    void (*release_trace)(spanhost_instance *instance, const uint8_t *trace_id);

    /* The context (SPANHOST_CONTEXT_*) a statement or condition written in the Collector's flat
     * form runs in, inferred from the prefixes of its paths as the Collector does: the most
     * specific of `spanevent.`, `span.` and `resource.` that it uses. A plugin taking the flat
     * form compiles the text in that context with expr_compile. Returns 0, with the reason in
     * status, when the text names no context the host runs (no prefix, or `scope.` only).
     * `status` may be NULL. */
    uint32_t (*expr_infer_context)(const char *text, size_t len, spanhost_status *status);

    /* --- Added in 1.8 ----------------------------------------------------------------- */

    /* Counters and gauges by handle: declare each once (in create or start), then add or set
     * by handle on the data path, which costs one atomic add and no lookup. `name` is as for
     * counter_add (labels included), borrowed for the call; declaring a name twice returns the
     * same handle. Returns 0 when the instance has too many distinct series (more than 4096):
     * adding to handle 0 does nothing. A counter and a gauge never share a name's series. */
    uint32_t (*counter_declare)(spanhost_instance *instance, const char *name);
    void (*counter_add_id)(spanhost_instance *instance, uint32_t counter, int64_t delta);
    uint32_t (*gauge_declare)(spanhost_instance *instance, const char *name);
    void (*gauge_set_id)(spanhost_instance *instance, uint32_t gauge, int64_t value);

    /* set_attribute without copying: the list keeps the views `key` and `value` (a string or
     * bytes value; other types are copied as by set_attribute) as they are. SQLite's
     * SQLITE_STATIC. OWNERSHIP: lent; the memory must outlive the batch: a string literal,
     * memory of the same batch's arena, or a table the plugin frees only after every batch
     * is gone (after destroy). Returns 0, or -1 when out of memory (the list is unchanged). */
    int32_t (*set_attribute_lent)(spanhost_batch *batch, spanhost_kv_list *attributes,
                                  spanhost_str key, const spanhost_value *value);
} spanhost_host_api;

/* True when `host` has `member`, a function added after 1.0. A host older than the plugin's
 * header lacks the members added since:
 *   if (SPANHOST_HOST_HAS(host, counter_declare)) ... else fall back to counter_add
 * A plugin that cannot do without a member returns NULL from its entry function when this is
 * false: the host then refuses the file, naming it. */
#define SPANHOST_HOST_HAS(host, member) \
    ((host)->struct_size >= offsetof(spanhost_host_api, member) + sizeof((host)->member))

/* ------------------------------------------------------------------------------------------ */
/* The plugin                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Types of the keys of a config schema (1.2). */
#define SPANHOST_TYPE_STRING 1
#define SPANHOST_TYPE_INT 2         /* an integer */
#define SPANHOST_TYPE_DOUBLE 3      /* a number (an integer is accepted) */
#define SPANHOST_TYPE_BOOL 4
#define SPANHOST_TYPE_DURATION 5    /* read with config_duration: "1m30s", "250ms" */
#define SPANHOST_TYPE_BYTES 6       /* read with config_bytes: 1048576, "64MiB" */
#define SPANHOST_TYPE_LIST 7        /* a list; its items are described by keys "<path>.*" */
#define SPANHOST_TYPE_MAP 8         /* a map; keys "<path>.<key>", or "<path>.*" for any key */
#define SPANHOST_TYPE_STRING_LIST 9 /* read with config_string_list: [a, b] or one string */
#define SPANHOST_TYPE_SCALAR 10     /* a string, number or boolean, read as the plugin chooses */

/*
 * One key of a plugin's config schema (1.2). The host checks an instance's settings against the
 * schema before calling create: a key not in the schema is refused with the valid keys listed,
 * a value of the wrong type is refused naming the key and the type, a required key that is
 * missing is refused. A LIST or MAP with no keys declared below it accepts any content (the
 * plugin checks it in create). Keys of list items and of maps with free-form keys use "*":
 *   {"headers", SPANHOST_TYPE_MAP}, {"headers.*", SPANHOST_TYPE_STRING}
 *   {"actions", SPANHOST_TYPE_LIST}, {"actions.*.key", SPANHOST_TYPE_STRING}
 * Parents are implied: "retry.max_elapsed" alone makes "retry" a map. A key declared with a
 * plain type and with keys below takes either form (1.4): {"statements.*", STRING} beside
 * {"statements.*.context", STRING} accepts an item that is a string or a map with context.
 * FROZEN: an array element; new information goes into new descriptor fields instead.
 * OWNERSHIP: every string is the plugin's, NUL-terminated, static for the image's life.
 */
typedef struct spanhost_config_key {
    const char *path;          /* dotted path, "*" for any list item or map key */
    uint32_t type;             /* SPANHOST_TYPE_* */
    uint32_t required;         /* 1: the settings must have it */
    const char *default_value; /* the default as text, for documentation; NULL: none */
    const char *doc;           /* one line saying what it does */
} spanhost_config_key;

/* The schema fields of a descriptor from a static array of keys, in a designated initializer:
 *   static const spanhost_config_key keys[] = {{"path", SPANHOST_TYPE_STRING, 1, NULL, "..."}};
 *   static const spanhost_plugin plugin = {..., .destroy = destroy, SPANHOST_CONFIG_SCHEMA(keys)};
 * (SPANHOST_SCHEMA is the same two values for positional initializers, which -Wextra refuses
 * once the descriptor grows: prefer designated ones.) */
#define SPANHOST_CONFIG_SCHEMA(keys) .config_schema = (keys), .config_schema_count = (sizeof(keys) / sizeof((keys)[0]))
#define SPANHOST_SCHEMA(keys) (keys), (sizeof(keys) / sizeof((keys)[0]))

#define SPANHOST_KIND_EXPORTER 1
#define SPANHOST_KIND_PROCESSOR 2
#define SPANHOST_KIND_NOTIFIER 3

/* The host may call this instance's hooks from several threads at once. */
#define SPANHOST_PLUGIN_CONCURRENT 1u
/* The image holds no state that outlives its instances; the host may dlclose it. */
#define SPANHOST_PLUGIN_UNLOADABLE 2u
/* (1.3) The data hook (process or export_batch) never waits: no network or disk I/O, no
 * sleeping, no waiting on other threads beyond short critical sections. The host may then run
 * a processor on the thread that read the request, and call an exporter with nothing queued
 * right away instead of waking a queue worker (a failed call goes to the queue and is retried
 * there as usual). A plugin that sets this flag and then blocks stalls the host's I/O threads:
 * leave it unset when in doubt. Older hosts ignore it. */
#define SPANHOST_PLUGIN_NONBLOCKING 4u
/* (1.8) The processor only reads the batches it is given: it changes no field, attribute or
 * host flag, and returns OK (not CONSUMED). When a receiver feeds several pipelines, the host
 * hands such a processor the shared batch instead of a copy of its own (the Collector's
 * MutatesData, inverted so that plugins without the flag stay safe). A plugin that sets it and
 * then writes corrupts what other pipelines see. Older hosts ignore it. */
#define SPANHOST_PLUGIN_READONLY 8u
/* (1.8) The processor raises one notification per failing trace, with that trace's trace_id
 * (the error_flow processor does): the host's error_span rules in the same pipeline then hold
 * the trace's error spans for their fold_wait and fold them into that notification (its
 * attribute error_spans) instead of notifying them one by one. Older hosts ignore it. */
#define SPANHOST_PLUGIN_TRACE_EVENTS 16u

/*
 * Host keys. These keys of a component's config section are the host's: it reads them, strips
 * nothing (a plugin may read them too), and refuses a plugin whose config schema declares one.
 *   every kind: call_timeout, circuit_breaker, on_quarantine, isolation
 *   exporters and notifiers also: sending_queue, retry_on_failure
 * The list is frozen for ABI 1.x. A key the host adds later in 1.x starts with "spanhost_",
 * which no plugin may use: plugin keys and host keys never collide.
 */
#define SPANHOST_HOST_KEY_PREFIX "spanhost_"

#define SPANHOST_KIND_FUNCTIONS 4 /* (1.3) only adds functions to expressions; no hooks */

/*
 * A function that expressions may call (1.3), like `geo_country(attributes["client.ip"])`.
 * The host walks the `functions` array with the stride of functions[0].struct_size, so this
 * struct may grow: set struct_size = sizeof(spanhost_function) in every element.
 * Types of arguments and results, and how each is passed to the C function:
 */
#define SPANHOST_ARG_STRING 1 /* spanhost_str, a view */
#define SPANHOST_ARG_INT 2    /* int64_t */
#define SPANHOST_ARG_DOUBLE 3 /* double */
#define SPANHOST_ARG_BOOL 4   /* int32_t, 0 or 1 */
#define SPANHOST_ARG_BYTES 5  /* spanhost_bytes, a view */
/*
 * The C function takes the arguments by value in order, then a pointer to the result, then
 * the status, and returns SPANHOST_OK or an error code with a message in status:
 *   int32_t geo_country(spanhost_str ip, spanhost_str *result, spanhost_status *status);
 *   int32_t hash_bucket(spanhost_str s, int64_t n, int64_t *result, spanhost_status *status);
 * The host calls it through libffi with a call interface built once at load; a wrong count or
 * type of arguments in an expression is refused when the expression is compiled.
 * A string or bytes argument that is missing (nil: an attribute the span lacks) arrives as
 * {NULL, 0}; an empty one has a non-NULL pointer and length 0.
 * OWNERSHIP: string and bytes arguments are borrowed for the call. A string or bytes result
 * may point to memory the function owns; the host copies it into the batch arena before the
 * next call on the same thread. The function may be called from several threads at once,
 * including the host's I/O threads: it must not block (no I/O, no sleeping; load tables in the
 * entry function).
 */
typedef struct spanhost_function {
    uint32_t struct_size;        /* sizeof(spanhost_function) as the plugin was compiled */
    const char *name;            /* NUL-terminated; how expressions call it */
    uint32_t result;             /* SPANHOST_ARG_* */
    uint32_t arg_count;          /* at most 8 */
    const uint32_t *args;        /* arg_count SPANHOST_ARG_* */
    void (*fn)(void);            /* cast from the function's real type */
    const char *description;     /* NUL-terminated one line; may be NULL */
} spanhost_function;

/*
 * What a plugin is and how to drive it. The entry function returns a pointer to one of these.
 * OWNERSHIP: the plugin; must stay valid and unchanged while the image is loaded (a static
 * const struct is the usual way).
 *
 * Lifecycle of an instance, all hooks called by the host:
 *   create -> start -> (process | export_batch | notify)* -> flush? -> destroy
 * destroy is called exactly once for every instance whose create returned SPANHOST_OK, also
 * when start failed. If a call into the instance never returns (a hung export), the host stops
 * calling it, waits one call timeout for it in destroy, then gives up on destroy: the instance
 * is leaked rather than freed under a running call.
 *
 * Which hooks a kind provides: a processor `process`, an exporter `export_batch`, a notifier
 * `notify`; every kind `create` and `destroy`; `start` and `flush` may be NULL. The host
 * refuses a descriptor missing a hook its kind needs.
 *
 * Values a plugin does not know (a SPANHOST_VALUE_* type, span kind or status code from a newer
 * host) are to be passed through untouched by processors and skipped, not treated as errors,
 * by exporters and notifiers. To validate a config (`spanhostd --check`) the host calls
 * `validate` (1.8) when the plugin has one; otherwise create then destroy, never start, in a
 * short-lived child process: create reads and checks settings and allocates; files,
 * connections and threads belong in start.
 */
typedef struct spanhost_plugin {
    uint32_t struct_size;      /* sizeof(spanhost_plugin) as the plugin was compiled */
    uint16_t abi_major;        /* SPANHOST_ABI_MAJOR as the plugin was compiled */
    uint16_t abi_minor;        /* SPANHOST_ABI_MINOR as the plugin was compiled */
    uint32_t kind;             /* SPANHOST_KIND_* */
    uint32_t flags;            /* SPANHOST_PLUGIN_* */
    const char *name;          /* NUL-terminated; the component type in the config, e.g. "file" */
    const char *version;       /* NUL-terminated; the plugin's own version, e.g. "1.2.0" */
    const char *description;   /* NUL-terminated one line; may be NULL */

    /* Creates an instance from its config. Validate the config here and fail with a message
     * naming the key. `instance` is the host's handle to pass to host functions; it lives
     * until destroy returns. Store your state in *out_state. Called on a host thread while a
     * generation is built; may be slow (connects, opens files). */
    int32_t (*create)(const spanhost_config *config, spanhost_instance *instance,
                      void **out_state, spanhost_status *status);
    /* Starts background work (threads, timers). May be NULL. */
    int32_t (*start)(void *state, spanhost_status *status);
    /* Processors: transforms `batch` in place (writable, see spanhost_batch). Return OK to pass
     * it on, CONSUMED to stop it here, RETRYABLE or PERMANENT to refuse it. */
    int32_t (*process)(void *state, spanhost_batch *batch, spanhost_status *status);
    /* Exporters: delivers `batch` (read-only, borrowed until return). Return OK only when the
     * destination has accepted it. */
    int32_t (*export_batch)(void *state, const spanhost_batch *batch, spanhost_status *status);
    /* Notifiers: delivers `notification` (borrowed until return). */
    int32_t (*notify)(void *state, const spanhost_notification *notification,
                      spanhost_status *status);
    /* Pushes out anything buffered. Called before destroy on shutdown or reload. May be NULL. */
    int32_t (*flush)(void *state, spanhost_status *status);
    /* Stops background work and frees the instance. No hook is called after it. */
    void (*destroy)(void *state);

    /* --- Added in 1.2 ----------------------------------------------------------------- */

    /* The keys create reads (see spanhost_config_key). NULL: no schema; the host then refuses
     * only keys create never asked for. A non-NULL array with a count of 0: the plugin takes no
     * settings. OWNERSHIP: plugin, static for the image's life. */
    const spanhost_config_key *config_schema;
    size_t config_schema_count;

    /* --- Added in 1.3 ----------------------------------------------------------------- */

    /* Functions this plugin adds to expressions; NULL and 0 for none. A SPANHOST_KIND_FUNCTIONS
     * plugin has only these (its hooks are NULL) and is loaded when `plugins.functions` names
     * it. OWNERSHIP: plugin, static for the image's life. */
    const spanhost_function *functions;
    size_t functions_count;

    /* --- Added in 1.8 ----------------------------------------------------------------- */

    /* Checks `config` as create would, with no side effects: no files, connections, threads or
     * memory kept. Read every key you accept (as in create: a key never read is refused as a
     * typo) and fail with a message naming the key. May be NULL. With it, `spanhostd --check`,
     * `spanhost validate` and a reload's check call validate instead of create and destroy (in
     * the check's child process still, so a crash is reported, never fatal to the host). May
     * be called from any thread, concurrently. */
    int32_t (*validate)(const spanhost_config *config, spanhost_status *status);
} spanhost_plugin;

/*
 * The one exported function of a plugin, named SPANHOST_PLUGIN_ENTRY_SYMBOL:
 *
 *   SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *host);
 *
 * Keep `host` in a static variable: it is valid for the life of the process. Return NULL to
 * refuse loading (for example when !SPANHOST_HOST_HAS(host, member) for a member the plugin
 * needs). The host refuses a plugin whose abi_major differs from its own; any minor loads.
 */
typedef const spanhost_plugin *(*spanhost_plugin_entry_fn)(const spanhost_host_api *host);

/* Declared here, inside the header's extern "C" block, so that a C++ file defining it gets C
 * linkage (the unmangled name the host looks up) without writing extern "C" itself. Defined
 * by the plugin, never by the host. */
SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *host);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPANHOST_SPANHOST_H */
