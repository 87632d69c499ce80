/*
 * spanhost_core.h -- the host's C core, private to spanhostd (plugins never see it).
 *
 * Batches are reference-counted arenas holding the public span structs of spanhost.h.
 * Receivers decode OTLP straight into them; exporters encode out of them.
 */
#ifndef SPANHOST_CORE_H
#define SPANHOST_CORE_H

#include <spanhost/spanhost.h>

#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- Batches and their arena ------------------------------------------------------------ */

/* A new empty batch with one reference. NULL when out of memory. */
spanhost_batch *sh_batch_new(void);
void sh_batch_retain(const spanhost_batch *batch);
void sh_batch_release(const spanhost_batch *batch);

/* Zeroed memory from the batch's arena. */
void *sh_arena_alloc(spanhost_batch *batch, size_t size);
/* The same, not zeroed: for blocks the caller fills whole at once. */
void *sh_arena_alloc_uninit(spanhost_batch *batch, size_t size);
spanhost_str sh_arena_strdup(spanhost_batch *batch, const char *ptr, size_t len);
/* Copies `len` bytes into the arena; decoded string views may then point into the copy. */
const uint8_t *sh_arena_copy(spanhost_batch *batch, const void *ptr, size_t len);
/* Hands a malloc'd block of `size` bytes to the batch, which frees it with the batch. Returns
 * 0, or -1 (then the block has been freed). */
int sh_arena_adopt(spanhost_batch *batch, void *block, size_t size);
/* Bytes held by every live batch of the process. */
size_t sh_live_batch_bytes(void);
/* 1 when [ptr, ptr+len) lies inside one block of the batch's arena or one block it adopted. */
int sh_arena_contains(const spanhost_batch *batch, const void *ptr, size_t len);

/* --- Checks on a whole batch (validate.c) --------------------------------------------------- */

/* The high bits of the bytes of p (0 when all are ASCII), read a word at a time and the tail
 * with overlapping reads: cheap enough to run on every string a decoder makes. */
static inline uint64_t sh_high_bits(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t seen = 0, word;
    uint32_t half, other;
    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8) {
            memcpy(&word, b + i, 8);
            seen |= word;
        }
        memcpy(&word, b + n - 8, 8);
        seen |= word;
    } else if (n >= 4) {
        memcpy(&half, b, 4);
        memcpy(&other, b + n - 4, 4);
        seen = half | other;
    } else if (n > 0) {
        seen = (uint64_t)(b[0] | b[n / 2] | b[n - 1]);
    }
    return seen & 0x8080808080808080ull;
}

/* 1 when the bytes are valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
int sh_utf8_valid(const char *s, size_t n);
/* How many leading bytes of s form valid UTF-8. */
size_t sh_utf8_valid_prefix(const char *s, size_t n);
/* Copies `in` to `out` (room for 3 * n bytes), each byte that starts no valid sequence written
 * as U+FFFD; returns the length written. */
size_t sh_utf8_repair(const char *in, size_t n, char *out);
/* 0 when every string field of the batch is valid UTF-8; else -1 and `err` names the field,
 * e.g. "resourceSpans[0].scopeSpans[0].spans[2].name is not valid UTF-8". */
int sh_batch_check_utf8(const spanhost_batch *batch, char *err, size_t err_cap);
/* The structural check: types match their union members, counts and pointers lie inside the
 * batch's arena, its adopted blocks, `input` (may be NULL), static data of a loaded image or
 * kept expression literals; required structs are present; strings are UTF-8. 0 or -1 with
 * `err` naming the field. For fuzzing and debug builds: it walks every block per pointer. */
/* The decoders' last step: sh_batch_check_utf8, with "invalid <format>: <field> is not valid
 * UTF-8 (strings must be UTF-8)" in `err`. */
int sh_decode_check_utf8(const spanhost_batch *batch, const char *format, char *err, size_t err_cap);
int sh_batch_validate(const spanhost_batch *batch, const void *input, size_t input_len, char *err, size_t err_cap);
/* Gives free pages back to the system (after a burst was freed): the slab pool's cached empty
 * slabs and the allocator's free pages. */
void sh_release_free_memory(void);

/* --- The slab pool batches take their blocks from (pool.c) ------------------------------- */

/* A block of at least `size` bytes: up to 8 KiB from a slab of blocks of one size, larger from
 * malloc. Not zeroed. NULL when out of memory. Thread-safe. */
void *sh_pool_alloc(size_t size);
/* Frees a block from sh_pool_alloc; `size` is the size it was asked for. */
void sh_pool_free(void *block, size_t size);
/* The bytes a block asked for with `size` really takes. */
size_t sh_pool_block_size(size_t size);
/* Unmaps the empty slabs kept for reuse. */
void sh_pool_release_cached(void);
/* Bytes of slabs mapped now. */
size_t sh_pool_mapped_bytes(void);
/* Bytes held by one batch's arena (and the blocks it adopted). */
size_t sh_batch_bytes(const spanhost_batch *batch);
/* Caps the arena at `limit` bytes (0: no cap) while a request is decoded, so a small body cannot
 * build a huge batch; past it allocations fail and sh_batch_over_limit says why. */
void sh_batch_set_limit(spanhost_batch *batch, size_t limit);
int sh_batch_over_limit(const spanhost_batch *batch);

int32_t sh_set_attribute(spanhost_batch *batch, spanhost_kv_list *attributes, spanhost_str key,
                         const spanhost_value *value);
/* sh_set_attribute without copying `key` (nor the value's text when `value_lent`): they must
 * outlive the batch (the expression engine's kept literal text). */
int32_t sh_set_attribute_lent(spanhost_batch *batch, spanhost_kv_list *attributes, spanhost_str key,
                              const spanhost_value *value, int value_lent);
int32_t sh_remove_attribute(spanhost_batch *batch, spanhost_kv_list *attributes, spanhost_str key);
/* Sets `key` to the string `value` in the batch's client_metadata (both copied into its arena).
 * 0, or -1 when out of memory. */
int32_t sh_batch_set_client_metadata(spanhost_batch *batch, const char *key, size_t key_len, const char *value, size_t value_len);
/* Copies src's client_metadata into dst. 0, or -1 when out of memory. */
int32_t sh_batch_copy_client_metadata(spanhost_batch *dst, const spanhost_batch *src);
spanhost_span *sh_batch_add_span(spanhost_batch *batch, const spanhost_resource *resource,
                                 spanhost_str resource_schema_url, const spanhost_scope *scope,
                                 spanhost_str scope_schema_url, const spanhost_span *span);

/* 1 with `*out` when the text is a whole decimal int64 ("+" or "-" allowed, nothing else, as Go's
 * strconv.ParseInt(s, 10, 64) reads it); 0 otherwise. */
int sh_parse_decimal(const char *text, size_t len, int64_t *out);

/* Removes repeated keys from an array of `*count` items of `item_size` bytes that each start
 * with a spanhost_str key: a repeated key keeps its first place and takes the last item's
 * contents, as a map's Put does. Its table comes from the batch's arena. 0, or -1 when out of
 * memory. */
int sh_dedupe_by_key(spanhost_batch *batch, void *items, size_t *count, size_t item_size);

size_t sh_batch_span_count(const spanhost_batch *batch);
/* The largest attribute count of any resource, scope, span, event or link in the batch. */
size_t sh_batch_most_attributes(const spanhost_batch *batch);
/* Removes spans marked SPANHOST_SPAN_DROP or SPANHOST_SPAN_TAKEN, and empty groups. Returns
 * how many were dropped (TAKEN spans are not counted). */
size_t sh_batch_compact(spanhost_batch *batch);

/* --- Expressions (ottl.c) ---------------------------------------------------------------- */

/* spanhost_host_api.expr_compile: NULL with "column N: ..." in err on failure. */
spanhost_expr *sh_expr_compile(const char *text, size_t len, uint32_t kind, uint32_t context, char *err, size_t err_cap);
/* The context of a statement or condition in the Collector's flat form, from its path prefixes;
 * 0 with the reason in err when it has none the engine runs. */
uint32_t sh_expr_infer_context(const char *text, size_t len, char *err, size_t err_cap);
/* spanhost_host_api.expr_run. */
int32_t sh_expr_run(const spanhost_expr *expr, const spanhost_expr_target *target, spanhost_status *status);
void sh_expr_free(spanhost_expr *expr);
/* 1 when [ptr, ptr+len) is kept literal text of a compiled expression (lent to batches by set). */
int sh_expr_literal_contains(const void *ptr, size_t len);
/* Makes a plugin's function callable from expressions compiled from now on (a later one of the
 * same name wins); its libffi call interface is built here. 0, or -1 with a message in err. */
/* Every struct of spanhost.h with its size, alignment and field offsets, and the host table's
 * order, as one JSON object (`spanhost abi --json`). 0, or -1 when out of memory. */
int32_t sh_abi_layout_json(spanhost_buffer *out);
int sh_function_register(const spanhost_function *function, const char *library, char *err, size_t err_cap);
/* Evaluates one value expression with no span (`f("x", 3)`), for `spanhost plugin-test --call`:
 * 0 with the result as text in out ("\"KR\"", 3, true, nil), or -1 with the error there. */
int sh_expr_call(const char *text, size_t len, char *out, size_t cap);
/* "name(string, int) -> string  [library]  description" for a registered function; -1 if none. */
int sh_function_signature(const char *name, char *out, size_t cap);

/* --- Notifications ----------------------------------------------------------------------- */

/* Deep-copies `notification` into `arena` (a batch used only as an arena), so it outlives the
 * raise call. Reads only `struct_size` bytes of the source. NULL when out of memory. */
spanhost_notification *sh_notification_copy(spanhost_batch *arena, const spanhost_notification *notification);
/* The JSON form documented at spanhost_host_api.encode_notification. Returns 0 or -1. */
int32_t sh_encode_notification_json(const spanhost_notification *notification, spanhost_buffer *out);
/* One value as plain JSON (spanhost_host_api.encode_value). Returns 0 or -1. */
int32_t sh_encode_value_json(const spanhost_value *value, spanhost_buffer *out);

/* --- OTLP codecs ----------------------------------------------------------------------- */

/* Decode an ExportTraceServiceRequest into `batch`. The bytes must live as long as the batch
 * (copy them with sh_arena_copy first). Return 0, or -1 with a message in `err`. */
int sh_decode_otlp_proto(spanhost_batch *batch, const uint8_t *data, size_t len, char *err,
                         size_t err_cap);
int sh_decode_otlp_json(spanhost_batch *batch, const uint8_t *data, size_t len, char *err,
                        size_t err_cap);
/* Decode a Zipkin v2 JSON array of spans (POST /api/v2/spans). */
int sh_decode_zipkin_json(spanhost_batch *batch, const uint8_t *data, size_t len, char *err,
                          size_t err_cap);
/* Decode a Zipkin v1 JSON array of spans (POST /api/v1/spans); a span with no time at all gets
 * `now_us` (microseconds since the epoch), as the Collector gives it the time it arrived. */
int sh_decode_zipkin_v1_json(spanhost_batch *batch, const uint8_t *data, size_t len, int64_t now_us, char *err,
                             size_t err_cap);
/* Decode a Zipkin v2 protobuf ListOfSpans (POST /api/v2/spans, application/x-protobuf). */
int sh_decode_zipkin_proto(spanhost_batch *batch, const uint8_t *data, size_t len, char *err,
                           size_t err_cap);

/* Decode Jaeger Thrift spans (jaeger_thrift.c): a `Batch` in the binary protocol (POST
 * /api/traces), or the agent's `emitBatch` message in the compact (UDP 6831) or binary (UDP 6832)
 * protocol. */
#define SH_JAEGER_BATCH_BINARY 0u
#define SH_JAEGER_AGENT_COMPACT 1u
#define SH_JAEGER_AGENT_BINARY 2u
int sh_decode_jaeger_thrift(spanhost_batch *batch, const uint8_t *data, size_t len, uint32_t form, char *err,
                            size_t err_cap);

/* Decode one Omegi agent message (Kafka `error` or `flow` topic); see omegi_json.c for the
 * mapping. Its times are local at `utc_offset_seconds` east of UTC. */
int sh_decode_omegi_json(spanhost_batch *batch, const uint8_t *data, size_t len, int32_t utc_offset_seconds,
                         char *err, size_t err_cap);

/* Encode a batch (SPANHOST_ENCODING_*). Returns 0 or -1. */
int32_t sh_encode_batch(const spanhost_batch *batch, uint32_t encoding, spanhost_buffer *out);
void sh_buffer_free(spanhost_buffer *buffer);

/* Encode the OTLP response bodies. rejected == 0 and message == NULL gives an empty success. */
int32_t sh_encode_export_response(uint32_t encoding, int64_t rejected, const char *message,
                                  spanhost_buffer *out);
/* google.rpc.Status body for error answers. */
int32_t sh_encode_rpc_status(uint32_t encoding, int32_t code, const char *message,
                             spanhost_buffer *out);

/* --- Support --------------------------------------------------------------------------- */

#define SH_GUNZIP_OK 0
#define SH_GUNZIP_CORRUPT -1
#define SH_GUNZIP_TOO_LARGE -2
/* Inflate gzip (or zlib) data, refusing to produce more than `limit` bytes. On success *out is
 * a malloc'd block (free with free() or hand to sh_arena_adopt). */
int sh_gunzip(const uint8_t *data, size_t len, size_t limit, uint8_t **out, size_t *out_len);
/* Deflate into gzip. Returns 0 or -1. */
int32_t sh_gzip(const uint8_t *data, size_t len, spanhost_buffer *out);

/* zlib's CRC-32, continuing from `crc` (0 to start). */
uint32_t sh_crc32(uint32_t crc, const void *data, size_t len);
/* The CRC-32 of A then B, from crc_a, crc_b and B's length (zlib's crc32_combine). */
uint32_t sh_crc32_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b);

/* SHA-256 of a file as 64 lowercase hex characters plus NUL. Returns 0 or -1. */
int sh_sha256_file(const char *path, char out_hex[65]);

/* --- Crash records ------------------------------------------------------------------------
 * When a plugin crashes the process, a signal handler writes which plugin was running to a
 * file opened beforehand, so whoever restarts the process can name it. Everything the
 * handler touches is prepared before the call: it only copies bytes with write(2). */

/* What a plugin call is: text lines "key=value\n" (plugin, version, file, sha256, component),
 * kept by the instance for its whole life. */
typedef struct sh_crash_context {
    const char *text;
    size_t len;
} sh_crash_context;

/* Installs handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT that append the running
 * call's record to `fd`, then die of the same signal. Call once; `fd` stays open. */
void sh_crash_records_install(int fd);

/* Marks this thread as inside a plugin call (`hook` a static string such as "export_batch").
 * Returns the record it replaces (calls nest: process -> emit -> process), for sh_crash_leave.
 * The first call on a thread also gives it an alternate signal stack. */
const void *sh_crash_enter(const sh_crash_context *context, const char *hook);
void sh_crash_leave(const void *previous);

/* The persistent-queue record this thread is exporting (its sequence number), or -1. */
void sh_crash_set_record(int64_t seq);

/* --- Processes (the supervisor and its worker) --------------------------------------------- */

/* A listening TCP socket on host:port (close-on-exec), or -1 with a message in `err`. */
int sh_listen_tcp(const char *host, int port, int backlog, char *err, size_t err_cap);
/* Starts `path` with `argv` and `envp`, giving it fds[i] as descriptor 3+i. Returns the pid, or
 * -1 with errno set. */
int sh_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds);
/* This process gets SIGTERM when the process that started it dies. */
void sh_die_with_parent(void);
/* This process is killed (SIGKILL) when the process that started it dies: for children with
 * nothing to drain, such as a config check blocked in a plugin's create. */
void sh_killed_with_parent(void);

#ifdef __cplusplus
}
#endif
#endif
