/* libFuzzer harness for one C decoder, chosen at build time with -DDECODER=<name>:
 * otlp_proto, otlp_json, zipkin, zipkin_proto, zipkin_v1, omegi, jaeger (the first byte picks the form: 0 an HTTP
 * batch, 1 a compact agent message, 2 a binary one; the rest is the payload), or ottl (the expression engine: each input is compiled
 * as a condition and as a statement, in every context, and what compiles runs on a span). Each input is decoded into a batch capped as the host
 * caps it (16x the input plus 1 MiB); what decodes is encoded again as OTLP protobuf and JSON
 * and the protobuf decoded once more, and encoded as Zipkin JSON and read back, so the encoders and the round trip run under the
 * sanitizers too. Every span is also copied into a batch of its own making, as processors that
 * hold traces copy them (groups matched by content, equal short strings shared). Built and run
 * by `make fuzz` (and briefly by `make test`). */
#include "spanhost_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The oracle: what decodes is structurally sound, and encoding it, decoding that and encoding
 * again gives the same bytes. */
static void check(const spanhost_batch *b, const void *input, size_t size, const char *what) {
    char err[256];
    if (sh_batch_validate(b, input, size, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", what, err);
        abort();
    }
}

#if defined(DECODER_ottl)
static const char span_json[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":\"shop\"}}]},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"lib\"},\"spans\":[{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\","
    "\"spanId\":\"1112131415161718\",\"name\":\"GET /api\",\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"9\","
    "\"attributes\":[{\"key\":\"http.url\",\"value\":{\"stringValue\":\"https://x/?token=abc&a=b\"}},"
    "{\"key\":\"http.status_code\",\"value\":{\"intValue\":\"503\"}},{\"key\":\"d\",\"value\":{\"doubleValue\":1.5}},"
    "{\"key\":\"b\",\"value\":{\"boolValue\":true}}],\"events\":[{\"timeUnixNano\":\"5\",\"name\":\"exception\","
    "\"attributes\":[{\"key\":\"exception.type\",\"value\":{\"stringValue\":\"E\"}}]}]}]}]}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256], message[256];
    spanhost_status status = {sizeof status, 0, message, sizeof message};
    /* The flat form's context inference reads the same text; what it infers must be a context. */
    uint32_t inferred = sh_expr_infer_context((const char *)data, size, err, sizeof err);
    if (inferred > SPANHOST_CONTEXT_SPANEVENT) abort();
    for (uint32_t kind = SPANHOST_EXPR_CONDITION; kind <= SPANHOST_EXPR_STATEMENT; kind++)
        for (uint32_t context = SPANHOST_CONTEXT_SPAN; context <= SPANHOST_CONTEXT_SPANEVENT; context++) {
            spanhost_expr *e = sh_expr_compile((const char *)data, size, kind, context, err, sizeof err);
            if (!e) continue;
            spanhost_batch *b = sh_batch_new();
            if (b && sh_decode_otlp_json(b, (const uint8_t *)span_json, sizeof span_json - 1, err, sizeof err) == 0) {
                spanhost_resource_spans *rs = b->resource_spans[0];
                spanhost_span *span = rs->scope_spans[0]->spans[0];
                spanhost_kv_list cache = {NULL, 0};
                spanhost_expr_target t = {sizeof t, b, rs->resource, rs->scope_spans[0]->scope,
                                          context == SPANHOST_CONTEXT_RESOURCE ? NULL : span,
                                          context == SPANHOST_CONTEXT_SPANEVENT ? span->events[0] : NULL, &cache};
                int rc = sh_expr_run(e, &t, &status);
                if (rc < -1 || rc > 1) abort();
                check(b, span_json, sizeof span_json - 1, "batch changed by the expression");
                /* A batch outlives the expression that changed it (queued across a reload):
                 * what it points at must still be there. */
                sh_expr_free(e);
                e = NULL;
                spanhost_buffer out = {0};
                if (sh_encode_batch(b, SPANHOST_ENCODING_OTLP_PROTO, &out) == 0) sh_buffer_free(&out);
            }
            if (b) sh_batch_release(b);
            sh_expr_free(e);
        }
    return 0;
}
#else
static int decode(spanhost_batch *b, const uint8_t *data, size_t size, char *err, size_t cap) {
#if defined(DECODER_otlp_proto)
    return sh_decode_otlp_proto(b, data, size, err, cap);
#elif defined(DECODER_otlp_json)
    return sh_decode_otlp_json(b, data, size, err, cap);
#elif defined(DECODER_zipkin)
    return sh_decode_zipkin_json(b, data, size, err, cap);
#elif defined(DECODER_zipkin_v1)
    return sh_decode_zipkin_v1_json(b, data, size, 1700000000000000, err, cap);
#elif defined(DECODER_zipkin_proto)
    return sh_decode_zipkin_proto(b, data, size, err, cap);
#elif defined(DECODER_omegi)
    return sh_decode_omegi_json(b, data, size, 9 * 3600, err, cap);
#elif defined(DECODER_jaeger)
    if (!size) return -1;
    return sh_decode_jaeger_thrift(b, data + 1, size - 1, data[0] % 3u, err, cap);
#else
#error "build with -DDECODER_otlp_proto, -DDECODER_otlp_json, -DDECODER_zipkin, -DDECODER_omegi or -DDECODER_jaeger"
#endif
}

#if defined(DECODER_otlp_proto)
#include "proto_mutator.c"
#endif

/* Whether an event name or a link's trace state holds '|', the Zipkin annotation and link
 * separator. */
static int has_bar(const spanhost_batch *b) {
    for (size_t i = 0; i < b->resource_spans_count; i++)
        for (size_t j = 0; j < b->resource_spans[i]->scope_spans_count; j++) {
            const spanhost_scope_spans *ss = b->resource_spans[i]->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count; k++) {
                const spanhost_span *s = ss->spans[k];
                for (size_t e = 0; e < s->events_count; e++)
                    if (s->events[e]->name.len && memchr(s->events[e]->name.ptr, '|', s->events[e]->name.len)) return 1;
                for (size_t l = 0; l < s->links_count; l++)
                    if (s->links[l]->trace_state.len && memchr(s->links[l]->trace_state.ptr, '|', s->links[l]->trace_state.len)) return 1;
            }
        }
    return 0;
}

/* Copies every span of `b` into a new batch, as tail sampling does, and checks the copy. */
static void copy_every_span(const spanhost_batch *b) {
    spanhost_batch *copy = sh_batch_new();
    if (!copy) return;
    size_t copied = 0;
    for (size_t i = 0; i < b->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = b->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            for (size_t k = 0; k < ss->spans_count; k++) {
                if (!sh_batch_add_span(copy, rs->resource, rs->schema_url, ss->scope, ss->schema_url, ss->spans[k])) abort();
                copied++;
            }
        }
    }
    if (sh_batch_span_count(copy) != copied) abort();
    check(copy, NULL, 0, "copied spans");
    spanhost_buffer out = {0};
    if (sh_encode_batch(copy, SPANHOST_ENCODING_OTLP_JSON, &out) == 0) sh_buffer_free(&out);
    sh_batch_release(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spanhost_batch *b = sh_batch_new();
    if (!b) return 0;
    sh_batch_set_limit(b, size * 16 + (1u << 20));
    char err[256];
    if (decode(b, data, size, err, sizeof err) == 0) {
        sh_batch_set_limit(b, 0);
        check(b, data, size, "decoded batch");
        spanhost_buffer proto = {0}, json = {0};
        if (sh_encode_batch(b, SPANHOST_ENCODING_OTLP_PROTO, &proto) == 0) {
            spanhost_batch *again = sh_batch_new();
            if (again) {
                /* What the host encodes, it must decode, to the same thing. */
                if (sh_decode_otlp_proto(again, proto.data, proto.len, err, sizeof err) != 0) {
                    fprintf(stderr, "re-decoding the encoded batch: %s\n", err);
                    abort();
                }
                check(again, proto.data, proto.len, "re-decoded batch");
                if (sh_batch_span_count(again) != sh_batch_span_count(b)) abort();
                spanhost_buffer twice = {0};
                if (sh_encode_batch(again, SPANHOST_ENCODING_OTLP_PROTO, &twice) == 0) {
                    if (twice.len != proto.len || memcmp(twice.data, proto.data, proto.len) != 0) {
                        fprintf(stderr, "encode(decode(encode(batch))) differs from encode(batch)\n");
                        abort();
                    }
                    sh_buffer_free(&twice);
                }
                sh_batch_release(again);
            }
            sh_buffer_free(&proto);
        }
        if (sh_encode_batch(b, SPANHOST_ENCODING_OTLP_JSON, &json) == 0) {
            /* The JSON the host writes is valid UTF-8 and reads back as OTLP JSON. */
            if (!sh_utf8_valid((const char *)json.data, json.len)) abort();
            spanhost_batch *from_json = sh_batch_new();
            if (from_json) {
                if (sh_decode_otlp_json(from_json, json.data, json.len, err, sizeof err) != 0) {
                    fprintf(stderr, "re-decoding the JSON encoding: %s\n", err);
                    abort();
                }
                if (sh_batch_span_count(from_json) != sh_batch_span_count(b)) abort();
                sh_batch_release(from_json);
            }
            sh_buffer_free(&json);
        }
        /* What the zipkin exporter writes, the zipkin receiver reads, every span of it (a
         * batch with an all-zero id is refused by the encoder, as by the Collector's; an event
         * name or link trace state with '|' cannot be told from the format's separators, in
         * the Collector as here). */
        spanhost_buffer zipkin = {0};
        if (!has_bar(b) && sh_encode_batch(b, SPANHOST_ENCODING_ZIPKIN_JSON, &zipkin) == 0) {
            spanhost_batch *from_zipkin = sh_batch_new();
            if (from_zipkin) {
                if (sh_decode_zipkin_json(from_zipkin, zipkin.data, zipkin.len, err, sizeof err) != 0) {
                    fprintf(stderr, "re-decoding the Zipkin JSON encoding: %s\n", err);
                    abort();
                }
                check(from_zipkin, zipkin.data, zipkin.len, "batch decoded from the Zipkin encoding");
                if (sh_batch_span_count(from_zipkin) != sh_batch_span_count(b)) abort();
                sh_batch_release(from_zipkin);
            }
            sh_buffer_free(&zipkin);
        }
        copy_every_span(b);
    }
    sh_batch_release(b);
    return 0;
}
#endif
