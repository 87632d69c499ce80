/*
 * OTLP protobuf: ExportTraceServiceRequest decoded straight into a batch arena (string and
 * bytes fields become views into the request bytes), and encoded back out.
 * Field numbers follow opentelemetry-proto trace/v1, common/v1, resource/v1.
 */
#include "spanhost_core.h"
#include "proto_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32 /* nesting limit for AnyValue arrays/kvlists */

typedef struct decoder {
    spanhost_batch *batch;
    char *err;
    size_t err_cap;
    int failed;
    /* High bits of every string decoded: only a request with a non-ASCII string is walked
     * again for its UTF-8 (sh_decode_check_utf8). */
    uint64_t high;
} decoder;

static int fail(decoder *d, const char *what) {
    if (!d->failed && d->err && d->err_cap) snprintf(d->err, d->err_cap, "invalid protobuf: %s", what);
    d->failed = 1;
    return -1;
}

/* A string field: its view, its bytes noted for the UTF-8 check. */
static inline spanhost_str string_field(decoder *d, reader sub) {
    d->high |= sh_high_bits(sub.p, (size_t)(sub.end - sub.p));
    return as_str(sub);
}


/* Repeated fields are decoded in one pass: items go into scratch space on the caller's stack
 * and are copied into the arena at their exact count once the message ends. A list that
 * outgrows its scratch moves into the arena and doubles there. */
typedef struct item_list {
    char *items;
    size_t count, cap, size;
    int in_arena;
} item_list;

#define ITEM_LIST(scratch) {(char *)(scratch), 0, sizeof(scratch) / sizeof((scratch)[0]), sizeof((scratch)[0]), 0}

/* A zeroed slot at the end of the list, or NULL (the decoder failed) when out of memory. */
static int list_grow(decoder *d, item_list *l) {
    char *grown = (char *)sh_arena_alloc_uninit(d->batch, l->cap * 2 * l->size);
    if (!grown) return fail(d, "out of memory");
    memcpy(grown, l->items, l->count * l->size);
    l->items = grown;
    l->cap *= 2;
    l->in_arena = 1;
    return 0;
}

/* A zeroed slot at the end of the list, or NULL (the decoder failed) when out of memory. */
HOT void *list_push(decoder *d, item_list *l) {
    if (l->count == l->cap && list_grow(d, l)) return NULL;
    void *slot = l->items + l->count++ * l->size;
    memset(slot, 0, l->size);
    return slot;
}

/* The items, in the arena; NULL when there are none, or out of memory (the decoder failed). */
static void *list_finish(decoder *d, item_list *l) {
    if (l->count == 0) return NULL;
    if (l->in_arena) return l->items;
    void *out = sh_arena_alloc_uninit(d->batch, l->count * l->size);
    if (!out) {
        fail(d, "out of memory");
        return NULL;
    }
    memcpy(out, l->items, l->count * l->size);
    return out;
}

/* Appends a pointer to a new zeroed struct of `size` bytes; returns the struct. */
static void *push_new(decoder *d, item_list *pointers, size_t size) {
    void **slot = (void **)list_push(d, pointers);
    if (!slot) return NULL;
    if (!(*slot = sh_arena_alloc(d->batch, size))) fail(d, "out of memory");
    return *slot;
}

static int copy_id(decoder *d, reader sub, uint8_t *dst, size_t size, const char *what) {
    size_t n = (size_t)(sub.end - sub.p);
    if (n == 0) return 0; /* absent id stays zero */
    if (n != size) return fail(d, what);
    memcpy(dst, sub.p, size);
    return 0;
}

static int decode_kv(decoder *d, reader r, spanhost_kv *kv, int depth);
static int decode_value(decoder *d, reader r, spanhost_value *v, int depth);

/* AnyValue.array_value (field 5) or kvlist_value (6): a message of repeated field 1. */
static int decode_items(decoder *d, reader r, spanhost_value *v, uint32_t field, int depth) {
    spanhost_kv scratch[8]; /* room for 8 KeyValues, or more AnyValues */
    size_t size = field == 5 ? sizeof(spanhost_value) : sizeof(spanhost_kv);
    item_list list = {(char *)scratch, 0, sizeof scratch / size, size, 0}, *l = &list;
    uint32_t f, w;
    int t;
    reader inner;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_LEN) {
            void *item;
            if (read_len(&r, &inner)) return fail(d, "AnyValue array/kvlist item");
            if (!(item = list_push(d, l))) return -1;
            if (field == 5 ? decode_value(d, inner, (spanhost_value *)item, depth + 1)
                           : decode_kv(d, inner, (spanhost_kv *)item, depth + 1)) return -1;
        } else if (skip_field(&r, w)) {
            return fail(d, "AnyValue array/kvlist");
        }
    }
    if (t < 0) return fail(d, "AnyValue array/kvlist");
    void *items = list_finish(d, l);
    if (l->count && !items) return -1;
    if (field == 5) {
        v->type = SPANHOST_VALUE_ARRAY;
        v->as.array_value.items = (spanhost_value *)items;
        v->as.array_value.count = l->count;
    } else {
        v->type = SPANHOST_VALUE_KVLIST;
        v->as.kvlist_value.items = (spanhost_kv *)items;
        v->as.kvlist_value.count = l->count;
    }
    return 0;
}

static int decode_value(decoder *d, reader r, spanhost_value *v, int depth) {
    if (depth > MAX_DEPTH) return fail(d, "AnyValue nested too deeply");
    uint32_t f, w;
    int t;
    uint64_t x;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        /* A oneof: the last member on the wire wins, and replaces the earlier one whole. */
        if (f >= 1 && f <= 7) memset(v, 0, sizeof *v);
        if (f == 1 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "AnyValue.string_value");
            v->type = SPANHOST_VALUE_STRING;
            v->as.string_value = string_field(d, sub);
        } else if (f == 2 && w == WT_VARINT) {
            if (read_varint(&r, &x)) return fail(d, "AnyValue.bool_value");
            v->type = SPANHOST_VALUE_BOOL;
            v->as.bool_value = x != 0;
        } else if (f == 3 && w == WT_VARINT) {
            if (read_varint(&r, &x)) return fail(d, "AnyValue.int_value");
            v->type = SPANHOST_VALUE_INT;
            v->as.int_value = (int64_t)x;
        } else if (f == 4 && w == WT_I64) {
            if (read_fixed64(&r, &x)) return fail(d, "AnyValue.double_value");
            v->type = SPANHOST_VALUE_DOUBLE;
            memcpy(&v->as.double_value, &x, sizeof(double));
        } else if ((f == 5 || f == 6) && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "AnyValue array/kvlist");
            if (decode_items(d, sub, v, f, depth)) return -1;
        } else if (f == 7 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "AnyValue.bytes_value");
            v->type = SPANHOST_VALUE_BYTES;
            v->as.bytes_value.ptr = sub.p;
            v->as.bytes_value.len = (size_t)(sub.end - sub.p);
        } else if (skip_field(&r, w)) {
            return fail(d, "AnyValue");
        }
    }
    return t < 0 ? fail(d, "AnyValue") : 0;
}

static int decode_kv(decoder *d, reader r, spanhost_kv *kv, int depth) {
    uint32_t f, w;
    int t;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "KeyValue.key");
            kv->key = string_field(d, sub);
        } else if (f == 2 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "KeyValue.value");
            if (decode_value(d, sub, &kv->value, depth)) return -1;
        } else if (skip_field(&r, w)) {
            return fail(d, "KeyValue");
        }
    }
    return t < 0 ? fail(d, "KeyValue") : 0;
}

/* The KeyValue every SDK writes: key (field 1) then value (field 2) holding one scalar, with
 * one-byte lengths. Decodes it as decode_kv would and returns 1, or returns 0 for any other
 * shape (decode_kv then reads it). */
HOT int decode_kv_common(reader r, spanhost_kv *kv) {
    const uint8_t *p = r.p, *end = r.end;
    if (end - p < 4 || p[0] != 0x0a || p[1] >= 0x80 || end - p - 2 < p[1] + 2) return 0;
    spanhost_str key = {(const char *)p + 2, p[1]};
    p += 2 + p[1];
    if (p[0] != 0x12 || p[1] >= 0x80 || end - p - 2 != p[1] || p[1] < 2) return 0;
    reader value = {p + 2, end};
    spanhost_value *v = &kv->value;
    uint64_t x;
    switch (*value.p++) {
    case 0x0a: /* string_value */
        if (value.p[0] >= 0x80 || end - value.p - 1 != value.p[0]) return 0;
        v->type = SPANHOST_VALUE_STRING;
        v->as.string_value.ptr = value.p[0] ? (const char *)value.p + 1 : NULL;
        v->as.string_value.len = value.p[0];
        break;
    case 0x10: /* bool_value */
        if (read_varint(&value, &x) || value.p != end) return 0;
        v->type = SPANHOST_VALUE_BOOL;
        v->as.bool_value = x != 0;
        break;
    case 0x18: /* int_value */
        if (read_varint(&value, &x) || value.p != end) return 0;
        v->type = SPANHOST_VALUE_INT;
        v->as.int_value = (int64_t)x;
        break;
    case 0x21: /* double_value */
        if (read_fixed64(&value, &x) || value.p != end) return 0;
        v->type = SPANHOST_VALUE_DOUBLE;
        memcpy(&v->as.double_value, &x, sizeof(double));
        break;
    default:
        return 0;
    }
    if (key.len == 0) key.ptr = NULL;
    kv->key = key;
    return 1;
}

/* Attributes: a repeated KeyValue field, gathered in `list` and finished into `out`. */
static int add_attribute(decoder *d, reader *r, item_list *list) {
    reader sub;
    spanhost_kv *kv;
    if (read_len(r, &sub)) return fail(d, "attribute");
    if (!(kv = (spanhost_kv *)list_push(d, list))) return -1;
    if (decode_kv_common(sub, kv)) {
        d->high |= sh_high_bits(kv->key.ptr, kv->key.len);
        if (kv->value.type == SPANHOST_VALUE_STRING) d->high |= sh_high_bits(kv->value.as.string_value.ptr, kv->value.as.string_value.len);
        return 0;
    }
    memset(kv, 0, sizeof *kv);
    return decode_kv(d, sub, kv, 0);
}

static int finish_attributes(decoder *d, item_list *list, spanhost_kv_list *out) {
    out->count = list->count;
    out->items = (spanhost_kv *)list_finish(d, list);
    return list->count && !out->items ? -1 : 0;
}

static int decode_event(decoder *d, reader r, spanhost_event *e) {
    e->struct_size = sizeof(*e);
    spanhost_kv scratch[16];
    item_list attrs = ITEM_LIST(scratch);
    uint32_t f, w;
    int t;
    uint64_t x;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_I64) {
            if (read_fixed64(&r, &e->time_unix_nano)) return fail(d, "Event.time_unix_nano");
        } else if (f == 2 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "Event.name");
            e->name = string_field(d, sub);
        } else if (f == 3 && w == WT_LEN) {
            if (add_attribute(d, &r, &attrs)) return -1;
        } else if (f == 4 && w == WT_VARINT) {
            if (read_varint(&r, &x)) return fail(d, "Event.dropped_attributes_count");
            e->dropped_attributes_count = (uint32_t)x;
        } else if (skip_field(&r, w)) {
            return fail(d, "Event");
        }
    }
    if (t < 0) return fail(d, "Event");
    return finish_attributes(d, &attrs, &e->attributes);
}

static int decode_link(decoder *d, reader r, spanhost_link *l) {
    l->struct_size = sizeof(*l);
    spanhost_kv scratch[16];
    item_list attrs = ITEM_LIST(scratch);
    uint32_t f, w;
    int t;
    uint64_t x;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_LEN) {
            if (read_len(&r, &sub) || copy_id(d, sub, l->trace_id, 16, "Link.trace_id must be 16 bytes")) return fail(d, "Link.trace_id");
        } else if (f == 2 && w == WT_LEN) {
            if (read_len(&r, &sub) || copy_id(d, sub, l->span_id, 8, "Link.span_id must be 8 bytes")) return fail(d, "Link.span_id");
        } else if (f == 3 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "Link.trace_state");
            l->trace_state = string_field(d, sub);
        } else if (f == 4 && w == WT_LEN) {
            if (add_attribute(d, &r, &attrs)) return -1;
        } else if (f == 5 && w == WT_VARINT) {
            if (read_varint(&r, &x)) return fail(d, "Link.dropped_attributes_count");
            l->dropped_attributes_count = (uint32_t)x;
        } else if (f == 6 && w == WT_I32) {
            if (read_fixed32(&r, &l->flags)) return fail(d, "Link.flags");
        } else if (skip_field(&r, w)) {
            return fail(d, "Link");
        }
    }
    if (t < 0) return fail(d, "Link");
    return finish_attributes(d, &attrs, &l->attributes);
}

static int decode_status(decoder *d, reader r, spanhost_span *s) {
    uint32_t f, w;
    int t;
    uint64_t x;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 2 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "Status.message");
            s->status_message = string_field(d, sub);
        } else if (f == 3 && w == WT_VARINT) {
            if (read_varint(&r, &x)) return fail(d, "Status.code");
            s->status_code = (uint32_t)x;
        } else if (skip_field(&r, w)) {
            return fail(d, "Status");
        }
    }
    return t < 0 ? fail(d, "Status") : 0;
}

static int decode_span(decoder *d, reader r, spanhost_span *s) {
    s->struct_size = sizeof(*s);
    spanhost_kv attr_scratch[32];
    spanhost_event *event_scratch[4];
    spanhost_link *link_scratch[4];
    item_list attrs = ITEM_LIST(attr_scratch), events = ITEM_LIST(event_scratch), links = ITEM_LIST(link_scratch);
    spanhost_event *event;
    spanhost_link *link;
    uint32_t f, w;
    int t;
    uint64_t x;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        switch (f) {
        case 1:
            if (w != WT_LEN || read_len(&r, &sub) || copy_id(d, sub, s->trace_id, 16, "Span.trace_id must be 16 bytes")) return fail(d, "Span.trace_id");
            continue;
        case 2:
            if (w != WT_LEN || read_len(&r, &sub) || copy_id(d, sub, s->span_id, 8, "Span.span_id must be 8 bytes")) return fail(d, "Span.span_id");
            continue;
        case 3:
            if (w != WT_LEN || read_len(&r, &sub)) return fail(d, "Span.trace_state");
            s->trace_state = string_field(d, sub);
            continue;
        case 4:
            if (w != WT_LEN || read_len(&r, &sub) || copy_id(d, sub, s->parent_span_id, 8, "Span.parent_span_id must be 8 bytes")) return fail(d, "Span.parent_span_id");
            continue;
        case 5:
            if (w != WT_LEN || read_len(&r, &sub)) return fail(d, "Span.name");
            s->name = string_field(d, sub);
            continue;
        case 6:
            if (w != WT_VARINT || read_varint(&r, &x)) return fail(d, "Span.kind");
            s->kind = (uint32_t)x;
            continue;
        case 7:
            if (w != WT_I64 || read_fixed64(&r, &s->start_time_unix_nano)) return fail(d, "Span.start_time_unix_nano");
            continue;
        case 8:
            if (w != WT_I64 || read_fixed64(&r, &s->end_time_unix_nano)) return fail(d, "Span.end_time_unix_nano");
            continue;
        case 9:
            if (w != WT_LEN || add_attribute(d, &r, &attrs)) return fail(d, "Span.attributes");
            continue;
        case 10:
            if (w != WT_VARINT || read_varint(&r, &x)) return fail(d, "Span.dropped_attributes_count");
            s->dropped_attributes_count = (uint32_t)x;
            continue;
        case 11:
            if (w != WT_LEN || read_len(&r, &sub) || !(event = (spanhost_event *)push_new(d, &events, sizeof *event)) ||
                decode_event(d, sub, event)) return fail(d, "Span.events");
            continue;
        case 12:
            if (w != WT_VARINT || read_varint(&r, &x)) return fail(d, "Span.dropped_events_count");
            s->dropped_events_count = (uint32_t)x;
            continue;
        case 13:
            if (w != WT_LEN || read_len(&r, &sub) || !(link = (spanhost_link *)push_new(d, &links, sizeof *link)) ||
                decode_link(d, sub, link)) return fail(d, "Span.links");
            continue;
        case 14:
            if (w != WT_VARINT || read_varint(&r, &x)) return fail(d, "Span.dropped_links_count");
            s->dropped_links_count = (uint32_t)x;
            continue;
        case 15:
            if (w != WT_LEN || read_len(&r, &sub) || decode_status(d, sub, s)) return fail(d, "Span.status");
            continue;
        case 16:
            if (w != WT_I32 || read_fixed32(&r, &s->flags)) return fail(d, "Span.flags");
            continue;
        default:
            if (skip_field(&r, w)) return fail(d, "Span");
        }
    }
    if (t < 0) return fail(d, "Span");
    s->events_count = events.count;
    s->links_count = links.count;
    s->events = (spanhost_event **)list_finish(d, &events);
    s->links = (spanhost_link **)list_finish(d, &links);
    if (finish_attributes(d, &attrs, &s->attributes) || (events.count && !s->events) || (links.count && !s->links)) return -1;
    return 0;
}

static int decode_scope(decoder *d, reader r, spanhost_scope *sc) {
    spanhost_kv scratch[8];
    item_list attrs = ITEM_LIST(scratch);
    uint32_t f, w;
    int t;
    uint64_t x;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "InstrumentationScope.name");
            sc->name = string_field(d, sub);
        } else if (f == 2 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "InstrumentationScope.version");
            sc->version = string_field(d, sub);
        } else if (f == 3 && w == WT_LEN) {
            if (add_attribute(d, &r, &attrs)) return -1;
        } else if (f == 4 && w == WT_VARINT) {
            if (read_varint(&r, &x)) return fail(d, "InstrumentationScope.dropped_attributes_count");
            sc->dropped_attributes_count = (uint32_t)x;
        } else if (skip_field(&r, w)) {
            return fail(d, "InstrumentationScope");
        }
    }
    if (t < 0) return fail(d, "InstrumentationScope");
    return finish_attributes(d, &attrs, &sc->attributes);
}

static int decode_scope_spans(decoder *d, reader r, spanhost_scope_spans *ss) {
    ss->struct_size = sizeof(*ss);
    ss->scope = (spanhost_scope *)sh_arena_alloc(d->batch, sizeof(spanhost_scope));
    if (!ss->scope) return fail(d, "out of memory");
    ss->scope->struct_size = sizeof(spanhost_scope);
    spanhost_span *scratch[64], *span;
    item_list spans = ITEM_LIST(scratch);
    uint32_t f, w;
    int t;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_LEN) {
            if (read_len(&r, &sub) || decode_scope(d, sub, ss->scope)) return fail(d, "ScopeSpans.scope");
        } else if (f == 2 && w == WT_LEN) {
            if (read_len(&r, &sub) || !(span = (spanhost_span *)push_new(d, &spans, sizeof *span)) || decode_span(d, sub, span))
                return fail(d, "ScopeSpans.spans");
        } else if (f == 3 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "ScopeSpans.schema_url");
            ss->schema_url = string_field(d, sub);
        } else if (skip_field(&r, w)) {
            return fail(d, "ScopeSpans");
        }
    }
    if (t < 0) return fail(d, "ScopeSpans");
    ss->spans_count = spans.count;
    ss->spans = (spanhost_span **)list_finish(d, &spans);
    return spans.count && !ss->spans ? -1 : 0;
}

static int decode_resource(decoder *d, reader r, spanhost_resource *res) {
    spanhost_kv scratch[32];
    item_list attrs = ITEM_LIST(scratch);
    uint32_t f, w;
    int t;
    uint64_t x;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_LEN) {
            if (add_attribute(d, &r, &attrs)) return -1;
        } else if (f == 2 && w == WT_VARINT) {
            if (read_varint(&r, &x)) return fail(d, "Resource.dropped_attributes_count");
            res->dropped_attributes_count = (uint32_t)x;
        } else if (skip_field(&r, w)) {
            return fail(d, "Resource");
        }
    }
    if (t < 0) return fail(d, "Resource");
    return finish_attributes(d, &attrs, &res->attributes);
}

static int decode_resource_spans(decoder *d, reader r, spanhost_resource_spans *rs) {
    rs->struct_size = sizeof(*rs);
    rs->resource = (spanhost_resource *)sh_arena_alloc(d->batch, sizeof(spanhost_resource));
    if (!rs->resource) return fail(d, "out of memory");
    rs->resource->struct_size = sizeof(spanhost_resource);
    spanhost_scope_spans *scratch[8], *ss;
    item_list scopes = ITEM_LIST(scratch);
    uint32_t f, w;
    int t;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_LEN) {
            if (read_len(&r, &sub) || decode_resource(d, sub, rs->resource)) return fail(d, "ResourceSpans.resource");
        } else if (f == 2 && w == WT_LEN) {
            if (read_len(&r, &sub) || !(ss = (spanhost_scope_spans *)push_new(d, &scopes, sizeof *ss)) || decode_scope_spans(d, sub, ss))
                return fail(d, "ResourceSpans.scope_spans");
        } else if (f == 3 && w == WT_LEN) {
            if (read_len(&r, &sub)) return fail(d, "ResourceSpans.schema_url");
            rs->schema_url = string_field(d, sub);
        } else if (skip_field(&r, w)) {
            return fail(d, "ResourceSpans");
        }
    }
    if (t < 0) return fail(d, "ResourceSpans");
    rs->scope_spans_count = scopes.count;
    rs->scope_spans = (spanhost_scope_spans **)list_finish(d, &scopes);
    return scopes.count && !rs->scope_spans ? -1 : 0;
}

static int decode_otlp_proto(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap, uint64_t *high) {
    decoder d = {batch, err, err_cap, 0, 0};
    reader r = {data, data + len};
    spanhost_resource_spans *scratch[8], *rs;
    item_list resources = ITEM_LIST(scratch);
    uint32_t f, w;
    int t;
    reader sub;
    while ((t = read_tag(&r, &f, &w)) == 1) {
        if (f == 1 && w == WT_LEN) {
            if (read_len(&r, &sub) || !(rs = (spanhost_resource_spans *)push_new(&d, &resources, sizeof *rs)) ||
                decode_resource_spans(&d, sub, rs)) return fail(&d, "ExportTraceServiceRequest.resource_spans");
        } else if (skip_field(&r, w)) {
            return fail(&d, "ExportTraceServiceRequest");
        }
    }
    if (t < 0) return fail(&d, "ExportTraceServiceRequest");
    batch->resource_spans_count = resources.count;
    batch->resource_spans = (spanhost_resource_spans **)list_finish(&d, &resources);
    *high = d.high;
    return resources.count && !batch->resource_spans ? -1 : 0;
}

/* Every string the request carried must be UTF-8 (proto3 `string`); checked once decoded. */
int sh_decode_otlp_proto(spanhost_batch *batch, const uint8_t *data, size_t len, char *err, size_t err_cap) {
    uint64_t high = 0;
    if (decode_otlp_proto(batch, data, len, err, err_cap, &high)) return -1;
    return high ? sh_decode_check_utf8(batch, "OTLP protobuf", err, err_cap) : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding: sizes first, then bytes, so every length prefix is known before it is written.    */
/* ------------------------------------------------------------------------------------------ */

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Size of a length-delimited field with a payload of n bytes (tags here are one byte). */
static size_t len_field(size_t n) { return 1 + varint_size(n) + n; }
static size_t str_field(spanhost_str s) { return s.len ? len_field(s.len) : 0; }
static size_t varint_field(uint64_t v) { return v ? 1 + varint_size(v) : 0; }

static int id_is_zero(const uint8_t *id, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (id[i]) return 0;
    return 1;
}

static size_t kv_size(const spanhost_kv *kv);

static size_t value_size(const spanhost_value *v) {
    size_t n = 0;
    switch (v->type) {
    case SPANHOST_VALUE_STRING: return len_field(v->as.string_value.len);
    case SPANHOST_VALUE_BOOL: return 2;
    case SPANHOST_VALUE_INT: return 1 + varint_size((uint64_t)v->as.int_value);
    case SPANHOST_VALUE_DOUBLE: return 9;
    case SPANHOST_VALUE_BYTES: return len_field(v->as.bytes_value.len);
    case SPANHOST_VALUE_ARRAY:
        for (size_t i = 0; i < v->as.array_value.count; i++) n += len_field(value_size(&v->as.array_value.items[i]));
        return len_field(n);
    case SPANHOST_VALUE_KVLIST:
        for (size_t i = 0; i < v->as.kvlist_value.count; i++) n += len_field(kv_size(&v->as.kvlist_value.items[i]));
        return len_field(n);
    default: return 0;
    }
}

static size_t kv_size(const spanhost_kv *kv) { return str_field(kv->key) + len_field(value_size(&kv->value)); }

static size_t attrs_size(const spanhost_kv_list *l) {
    size_t n = 0;
    for (size_t i = 0; i < l->count; i++) n += len_field(kv_size(&l->items[i]));
    return n;
}

static size_t event_size(const spanhost_event *e) {
    return (e->time_unix_nano ? 9 : 0) + str_field(e->name) + attrs_size(&e->attributes) +
           varint_field(e->dropped_attributes_count);
}

static size_t link_size(const spanhost_link *l) {
    return len_field(16) + len_field(8) + str_field(l->trace_state) + attrs_size(&l->attributes) +
           varint_field(l->dropped_attributes_count) + (l->flags ? 5 : 0);
}

static size_t status_size(const spanhost_span *s) {
    return str_field(s->status_message) + varint_field(s->status_code);
}

static size_t span_size(const spanhost_span *s) {
    size_t n = len_field(16) + len_field(8) + str_field(s->trace_state) + str_field(s->name) +
               varint_field(s->kind) + (s->start_time_unix_nano ? 9 : 0) +
               (s->end_time_unix_nano ? 9 : 0) + attrs_size(&s->attributes) +
               varint_field(s->dropped_attributes_count) + varint_field(s->dropped_events_count) +
               varint_field(s->dropped_links_count) + (s->flags ? 6 : 0);
    if (!id_is_zero(s->parent_span_id, 8)) n += len_field(8);
    for (size_t i = 0; i < s->events_count; i++) n += len_field(event_size(s->events[i]));
    for (size_t i = 0; i < s->links_count; i++) n += len_field(link_size(s->links[i]));
    size_t st = status_size(s);
    if (st) n += len_field(st);
    return n;
}

static size_t scope_size(const spanhost_scope *sc) {
    return str_field(sc->name) + str_field(sc->version) + attrs_size(&sc->attributes) +
           varint_field(sc->dropped_attributes_count);
}

static size_t resource_size(const spanhost_resource *r) {
    return attrs_size(&r->attributes) + varint_field(r->dropped_attributes_count);
}

typedef struct writer {
    uint8_t *p;
} writer;

static void put_varint(writer *w, uint64_t v) {
    while (v >= 0x80) {
        *w->p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *w->p++ = (uint8_t)v;
}

static void put_tag(writer *w, uint32_t field, uint32_t wire) { put_varint(w, (uint64_t)(field << 3 | wire)); }

static void put_len(writer *w, uint32_t field, size_t n) {
    put_tag(w, field, WT_LEN);
    put_varint(w, n);
}

static void put_bytes(writer *w, uint32_t field, const void *p, size_t n) {
    put_len(w, field, n);
    if (n) memcpy(w->p, p, n);
    w->p += n;
}

static void put_str(writer *w, uint32_t field, spanhost_str s) {
    if (s.len) put_bytes(w, field, s.ptr, s.len);
}

static void put_varint_field(writer *w, uint32_t field, uint64_t v) {
    if (!v) return;
    put_tag(w, field, WT_VARINT);
    put_varint(w, v);
}

static void put_fixed64(writer *w, uint32_t field, uint64_t v) {
    put_tag(w, field, WT_I64);
    for (int i = 0; i < 8; i++) *w->p++ = (uint8_t)(v >> (8 * i));
}

static void put_fixed32(writer *w, uint32_t field, uint32_t v) {
    put_tag(w, field, WT_I32);
    for (int i = 0; i < 4; i++) *w->p++ = (uint8_t)(v >> (8 * i));
}

static void put_kv(writer *w, const spanhost_kv *kv);

static void put_value_body(writer *w, const spanhost_value *v) {
    uint64_t bits;
    switch (v->type) {
    case SPANHOST_VALUE_STRING: put_bytes(w, 1, v->as.string_value.ptr, v->as.string_value.len); break;
    case SPANHOST_VALUE_BOOL: put_tag(w, 2, WT_VARINT); put_varint(w, v->as.bool_value ? 1 : 0); break;
    case SPANHOST_VALUE_INT: put_tag(w, 3, WT_VARINT); put_varint(w, (uint64_t)v->as.int_value); break;
    case SPANHOST_VALUE_DOUBLE:
        memcpy(&bits, &v->as.double_value, 8);
        put_fixed64(w, 4, bits);
        break;
    case SPANHOST_VALUE_BYTES: put_bytes(w, 7, v->as.bytes_value.ptr, v->as.bytes_value.len); break;
    case SPANHOST_VALUE_ARRAY: {
        size_t n = 0;
        for (size_t i = 0; i < v->as.array_value.count; i++) n += len_field(value_size(&v->as.array_value.items[i]));
        put_len(w, 5, n);
        for (size_t i = 0; i < v->as.array_value.count; i++) {
            put_len(w, 1, value_size(&v->as.array_value.items[i]));
            put_value_body(w, &v->as.array_value.items[i]);
        }
        break;
    }
    case SPANHOST_VALUE_KVLIST: {
        size_t n = 0;
        for (size_t i = 0; i < v->as.kvlist_value.count; i++) n += len_field(kv_size(&v->as.kvlist_value.items[i]));
        put_len(w, 6, n);
        for (size_t i = 0; i < v->as.kvlist_value.count; i++) {
            put_len(w, 1, kv_size(&v->as.kvlist_value.items[i]));
            put_kv(w, &v->as.kvlist_value.items[i]);
        }
        break;
    }
    default: break;
    }
}

static void put_kv(writer *w, const spanhost_kv *kv) {
    put_str(w, 1, kv->key);
    put_len(w, 2, value_size(&kv->value));
    put_value_body(w, &kv->value);
}

static void put_attrs(writer *w, uint32_t field, const spanhost_kv_list *l) {
    for (size_t i = 0; i < l->count; i++) {
        put_len(w, field, kv_size(&l->items[i]));
        put_kv(w, &l->items[i]);
    }
}

static void put_span(writer *w, const spanhost_span *s) {
    put_bytes(w, 1, s->trace_id, 16);
    put_bytes(w, 2, s->span_id, 8);
    put_str(w, 3, s->trace_state);
    if (!id_is_zero(s->parent_span_id, 8)) put_bytes(w, 4, s->parent_span_id, 8);
    put_str(w, 5, s->name);
    put_varint_field(w, 6, s->kind);
    if (s->start_time_unix_nano) put_fixed64(w, 7, s->start_time_unix_nano);
    if (s->end_time_unix_nano) put_fixed64(w, 8, s->end_time_unix_nano);
    put_attrs(w, 9, &s->attributes);
    put_varint_field(w, 10, s->dropped_attributes_count);
    for (size_t i = 0; i < s->events_count; i++) {
        const spanhost_event *e = s->events[i];
        put_len(w, 11, event_size(e));
        if (e->time_unix_nano) put_fixed64(w, 1, e->time_unix_nano);
        put_str(w, 2, e->name);
        put_attrs(w, 3, &e->attributes);
        put_varint_field(w, 4, e->dropped_attributes_count);
    }
    put_varint_field(w, 12, s->dropped_events_count);
    for (size_t i = 0; i < s->links_count; i++) {
        const spanhost_link *l = s->links[i];
        put_len(w, 13, link_size(l));
        put_bytes(w, 1, l->trace_id, 16);
        put_bytes(w, 2, l->span_id, 8);
        put_str(w, 3, l->trace_state);
        put_attrs(w, 4, &l->attributes);
        put_varint_field(w, 5, l->dropped_attributes_count);
        if (l->flags) put_fixed32(w, 6, l->flags);
    }
    put_varint_field(w, 14, s->dropped_links_count);
    size_t st = status_size(s);
    if (st) {
        put_len(w, 15, st);
        put_str(w, 2, s->status_message);
        put_varint_field(w, 3, s->status_code);
    }
    if (s->flags) put_fixed32(w, 16, s->flags);
}

int32_t sh_encode_otlp_proto(const spanhost_batch *batch, spanhost_buffer *out);

int32_t sh_encode_otlp_proto(const spanhost_batch *batch, spanhost_buffer *out) {
    /* Every length prefix needs the size of what follows; each span's size is computed once
     * here and kept, rather than again at every level it is nested in. */
    size_t groups = 0, spans = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        groups += rs->scope_spans_count;
        for (size_t j = 0; j < rs->scope_spans_count; j++) spans += rs->scope_spans[j]->spans_count;
    }
    size_t *sizes = (size_t *)malloc((batch->resource_spans_count + groups + spans + 1) * sizeof *sizes);
    if (!sizes) return -1;
    size_t *rs_sizes = sizes, *ss_sizes = rs_sizes + batch->resource_spans_count, *span_sizes = ss_sizes + groups;
    size_t total = 0, g = 0, k = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        size_t rs_size = len_field(resource_size(rs->resource)) + str_field(rs->schema_url);
        for (size_t j = 0; j < rs->scope_spans_count; j++, g++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            size_t ss_size = len_field(scope_size(ss->scope)) + str_field(ss->schema_url);
            for (size_t n = 0; n < ss->spans_count; n++, k++) {
                span_sizes[k] = span_size(ss->spans[n]);
                ss_size += len_field(span_sizes[k]);
            }
            ss_sizes[g] = ss_size;
            rs_size += len_field(ss_size);
        }
        rs_sizes[i] = rs_size;
        total += len_field(rs_size);
    }
    out->data = (uint8_t *)malloc(total ? total : 1);
    out->len = total;
    if (!out->data) {
        free(sizes);
        return -1;
    }
    writer w = {out->data};
    g = k = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        put_len(&w, 1, rs_sizes[i]);
        put_len(&w, 1, resource_size(rs->resource));
        put_attrs(&w, 1, &rs->resource->attributes);
        put_varint_field(&w, 2, rs->resource->dropped_attributes_count);
        for (size_t j = 0; j < rs->scope_spans_count; j++, g++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            put_len(&w, 2, ss_sizes[g]);
            put_len(&w, 1, scope_size(ss->scope));
            put_str(&w, 1, ss->scope->name);
            put_str(&w, 2, ss->scope->version);
            put_attrs(&w, 3, &ss->scope->attributes);
            put_varint_field(&w, 4, ss->scope->dropped_attributes_count);
            for (size_t n = 0; n < ss->spans_count; n++, k++) {
                put_len(&w, 2, span_sizes[k]);
                put_span(&w, ss->spans[n]);
            }
            put_str(&w, 3, ss->schema_url);
        }
        put_str(&w, 3, rs->schema_url);
    }
    free(sizes);
    return w.p == out->data + total ? 0 : -1;
}

int32_t sh_encode_proto_response(int64_t rejected, const char *message, spanhost_buffer *out);
int32_t sh_encode_proto_status(int32_t code, const char *message, spanhost_buffer *out);

int32_t sh_encode_proto_response(int64_t rejected, const char *message, spanhost_buffer *out) {
    spanhost_str msg = {message, message ? strlen(message) : 0};
    size_t inner = varint_field((uint64_t)rejected) + str_field(msg);
    size_t total = (rejected || msg.len) ? len_field(inner) : 0;
    out->data = (uint8_t *)malloc(total ? total : 1);
    out->len = total;
    if (!out->data) return -1;
    writer w = {out->data};
    if (total) {
        put_len(&w, 1, inner);
        put_varint_field(&w, 1, (uint64_t)rejected);
        put_str(&w, 2, msg);
    }
    return 0;
}

int32_t sh_encode_proto_status(int32_t code, const char *message, spanhost_buffer *out) {
    spanhost_str msg = {message, message ? strlen(message) : 0};
    size_t total = varint_field((uint64_t)(int64_t)code) + str_field(msg);
    out->data = (uint8_t *)malloc(total ? total : 1);
    out->len = total;
    if (!out->data) return -1;
    writer w = {out->data};
    put_varint_field(&w, 1, (uint64_t)(int64_t)code);
    put_str(&w, 2, msg);
    return 0;
}
