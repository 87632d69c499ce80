/*
 * Running compiled expressions (ottl.c builds the tree) against one span, event or resource:
 * values, paths with their [index] steps, operators, conditions and statements. Memory a run
 * needs (a converter's result, a map literal) comes from the target's batch, so what a
 * statement writes lives as long as the batch; a target without one gets a batch of the run.
 */
#include "ottl_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

node *ottl_parse_value(const char *text, size_t len, char *err, size_t cap);
void ottl_node_free(node *n);

int ottl_fail(runner *r, const char *fmt, ...) {
    if (r->status && r->status->message && r->status->message_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->status->message, r->status->message_cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

spanhost_batch *ottl_batch(runner *r) {
    if (!r->batch && !r->scratch) r->batch = r->scratch = sh_batch_new();
    return r->batch;
}

void *ottl_alloc(runner *r, size_t size) {
    spanhost_batch *b = ottl_batch(r);
    return b ? sh_arena_alloc(b, size ? size : 1) : NULL;
}

spanhost_str ottl_strdup(runner *r, const char *ptr, size_t len) {
    spanhost_str s = {NULL, 0};
    spanhost_batch *b = ottl_batch(r);
    if (!len) {
        s.ptr = "";
        return s;
    }
    return b ? sh_arena_strdup(b, ptr, len) : s;
}

const char *ottl_type_name(int type) {
    static const char *const names[] = {"nil", "string", "int", "double", "bool", "bytes", "map", "list", "time", "duration", "function"};
    return type >= 0 && type <= V_FUNC ? names[type] : "?";
}

/* --- Values ------------------------------------------------------------------------------ */

static inline void from_value(xvalue *out, const spanhost_value *v) {
    out->type = V_NIL;
    out->id = 0;
    if (!v) return;
    spanhost_value *w = (spanhost_value *)v; /* maps and lists of a batch are edited in place */
    switch (v->type) {
    case SPANHOST_VALUE_STRING: out->type = V_STR; out->s = v->as.string_value; break;
    case SPANHOST_VALUE_INT: out->type = V_INT; out->i = v->as.int_value; break;
    case SPANHOST_VALUE_DOUBLE: out->type = V_DBL; out->d = v->as.double_value; break;
    case SPANHOST_VALUE_BOOL: out->type = V_BOOL; out->i = v->as.bool_value != 0; break;
    case SPANHOST_VALUE_BYTES: out->type = V_BYTES; out->s.ptr = (const char *)v->as.bytes_value.ptr; out->s.len = v->as.bytes_value.len; break;
    case SPANHOST_VALUE_KVLIST: out->type = V_MAP; out->map = &w->as.kvlist_value; break;
    case SPANHOST_VALUE_ARRAY: out->type = V_LIST; out->list = &w->as.array_value; break;
    default: break;
    }
}

void ottl_from_value(xvalue *out, const spanhost_value *v) { from_value(out, v); }

/* A value for a batch: maps and lists are shallow (the batch's setter copies them deep). */
int ottl_to_value(runner *r, const xvalue *x, spanhost_value *v) {
    memset(v, 0, sizeof *v);
    switch (x->type) {
    case V_NIL: return 0;
    case V_STR: v->type = SPANHOST_VALUE_STRING; v->as.string_value = x->s; return 0;
    case V_BYTES: v->type = SPANHOST_VALUE_BYTES; v->as.bytes_value.ptr = (const uint8_t *)x->s.ptr; v->as.bytes_value.len = x->s.len; return 0;
    case V_INT: v->type = SPANHOST_VALUE_INT; v->as.int_value = x->i; return 0;
    case V_DBL: v->type = SPANHOST_VALUE_DOUBLE; v->as.double_value = x->d; return 0;
    case V_BOOL: v->type = SPANHOST_VALUE_BOOL; v->as.bool_value = (int32_t)x->i; return 0;
    case V_MAP: v->type = SPANHOST_VALUE_KVLIST; v->as.kvlist_value = *x->map; return 0;
    case V_LIST: v->type = SPANHOST_VALUE_ARRAY; v->as.array_value = *x->list; return 0;
    default: return ottl_fail(r, "a %s cannot be stored in an attribute", ottl_type_name(x->type));
    }
}

spanhost_value *ottl_find(const spanhost_kv_list *list, spanhost_str key) {
    if (!list) return NULL;
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i].key.len == key.len && (key.len == 0 || !memcmp(list->items[i].key.ptr, key.ptr, key.len))) return &list->items[i].value;
    return NULL;
}

static int hex_id(runner *r, xvalue *v, const uint8_t *id, size_t n) {
    static const char digits[] = "0123456789abcdef";
    char *buf = (char *)ottl_alloc(r, 2 * n);
    if (!buf) return ottl_fail(r, "out of memory");
    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = digits[id[i] >> 4];
        buf[2 * i + 1] = digits[id[i] & 15];
    }
    v->type = V_STR;
    v->s.ptr = buf;
    v->s.len = 2 * n;
    return 0;
}

static void bytes_of(xvalue *v, const uint8_t *id, size_t n) {
    v->type = V_BYTES;
    v->id = 1;
    v->s.ptr = (const char *)id;
    v->s.len = n;
}

/* --- Paths ------------------------------------------------------------------------------- */

static spanhost_kv_list *target_cache(runner *r) {
    const spanhost_expr_target *t = r->t;
    return t->struct_size >= offsetof(spanhost_expr_target, cache) + sizeof t->cache ? t->cache : NULL;
}

static spanhost_event *target_event(runner *r) {
    const spanhost_expr_target *t = r->t; /* only targets that know their size have the event */
    return t->struct_size >= offsetof(spanhost_expr_target, event) + sizeof t->event ? t->event : NULL;
}

static spanhost_kv_list *base_map(runner *r, int field) {
    const spanhost_expr_target *t = r->t;
    switch (field) {
    case P_ATTRS: return t->span ? &t->span->attributes : NULL;
    case P_RES_ATTRS: return t->resource ? &t->resource->attributes : NULL;
    case P_SCOPE_ATTRS: return t->scope ? &t->scope->attributes : NULL;
    case P_EV_ATTRS: return target_event(r) ? &target_event(r)->attributes : NULL;
    case P_CACHE: return target_cache(r);
    }
    return NULL;
}

static const char *trace_state_find(spanhost_str ts, spanhost_str key, size_t *len) {
    const char *p = ts.ptr, *end = ts.ptr + ts.len;
    while (p && p < end) {
        while (p < end && (*p == ' ' || *p == ',')) p++;
        const char *eq = memchr(p, '=', (size_t)(end - p)), *comma = memchr(p, ',', (size_t)(end - p));
        if (!comma) comma = end;
        if (eq && eq < comma && (size_t)(eq - p) == key.len && !memcmp(p, key.ptr, key.len)) {
            *len = (size_t)(comma - eq - 1);
            return eq + 1;
        }
        p = comma;
    }
    return NULL;
}

/* The value a path names before its index steps. */
static int field_get(runner *r, int field, xvalue *out) {
    const spanhost_expr_target *t = r->t;
    const spanhost_span *span = t->span;
    const spanhost_event *ev = target_event(r);
    out->type = V_NIL;
    switch (field) {
    case P_ATTRS: case P_RES_ATTRS: case P_SCOPE_ATTRS: case P_EV_ATTRS: case P_CACHE:
        if ((out->map = base_map(r, field))) out->type = V_MAP;
        return 0;
    case P_RES_DROPPED: if (t->resource) { out->type = V_INT; out->i = t->resource->dropped_attributes_count; } return 0;
    case P_SCOPE_NAME: if (t->scope) { out->type = V_STR; out->s = t->scope->name; } return 0;
    case P_SCOPE_VERSION: if (t->scope) { out->type = V_STR; out->s = t->scope->version; } return 0;
    case P_SCOPE_DROPPED: if (t->scope) { out->type = V_INT; out->i = t->scope->dropped_attributes_count; } return 0;
    case P_EV_NAME: if (ev) { out->type = V_STR; out->s = ev->name; } return 0;
    case P_EV_TIME_NS: if (ev) { out->type = V_INT; out->i = (int64_t)ev->time_unix_nano; } return 0;
    case P_EV_TIME: if (ev) { out->type = V_TIME; out->i = (int64_t)ev->time_unix_nano; } return 0;
    case P_EV_DROPPED: if (ev) { out->type = V_INT; out->i = ev->dropped_attributes_count; } return 0;
    case P_EV_INDEX:
        if (ev && span)
            for (size_t i = 0; i < span->events_count; i++)
                if (span->events[i] == ev) { out->type = V_INT; out->i = (int64_t)i; }
        return 0;
    }
    if (!span) return 0;
    switch (field) {
    case P_NAME: out->type = V_STR; out->s = span->name; return 0;
    case P_KIND: out->type = V_INT; out->i = span->kind; return 0;
    case P_KIND_STRING: {
        static const char *const kinds[] = {"Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"};
        out->type = V_STR;
        out->s.ptr = span->kind < 6 ? kinds[span->kind] : "";
        out->s.len = strlen(out->s.ptr);
        return 0;
    }
    case P_STATUS_CODE: out->type = V_INT; out->i = span->status_code; return 0;
    case P_STATUS_MSG: out->type = V_STR; out->s = span->status_message; return 0;
    case P_TRACE_ID: bytes_of(out, span->trace_id, 16); return 0;
    case P_SPAN_ID: bytes_of(out, span->span_id, 8); return 0;
    case P_PARENT_ID: bytes_of(out, span->parent_span_id, 8); return 0;
    case P_TRACE_ID_STR: return hex_id(r, out, span->trace_id, 16);
    case P_SPAN_ID_STR: return hex_id(r, out, span->span_id, 8);
    case P_PARENT_ID_STR: {
        static const uint8_t zero[8];
        if (!memcmp(span->parent_span_id, zero, 8)) { out->type = V_STR; out->s.ptr = ""; out->s.len = 0; return 0; }
        return hex_id(r, out, span->parent_span_id, 8);
    }
    case P_TRACE_STATE: out->type = V_STR; out->s = span->trace_state; return 0;
    case P_START_NS: out->type = V_INT; out->i = (int64_t)span->start_time_unix_nano; return 0;
    case P_END_NS: out->type = V_INT; out->i = (int64_t)span->end_time_unix_nano; return 0;
    case P_START: out->type = V_TIME; out->i = (int64_t)span->start_time_unix_nano; return 0;
    case P_END: out->type = V_TIME; out->i = (int64_t)span->end_time_unix_nano; return 0;
    case P_DURATION:
        out->type = V_INT;
        out->i = span->end_time_unix_nano > span->start_time_unix_nano ? (int64_t)(span->end_time_unix_nano - span->start_time_unix_nano) : 0;
        return 0;
    case P_FLAGS: out->type = V_INT; out->i = span->flags; return 0;
    case P_DROPPED_ATTRS: out->type = V_INT; out->i = span->dropped_attributes_count; return 0;
    case P_DROPPED_EVENTS: out->type = V_INT; out->i = span->dropped_events_count; return 0;
    case P_DROPPED_LINKS: out->type = V_INT; out->i = span->dropped_links_count; return 0;
    }
    return 0;
}

static int eval(runner *r, const node *n, xvalue *out);

/* The value of an operand: a literal's own, without a copy. */
static int path_get(runner *r, const node *n, xvalue *out);

static inline int operand(runner *r, const node *n, xvalue *scratch, const xvalue **out) {
    if (n->op == N_LIT) {
        *out = &n->lit;
        return 0;
    }
    *out = scratch;
    if (n->op == N_PATH) {
        scratch->type = V_NIL;
        scratch->id = 0;
        return path_get(r, n, scratch);
    }
    return eval(r, n, scratch);
}

/* One [index] step: a map by a string key, a list by an int position. */
static int step(runner *r, xvalue *cur, const xvalue *idx, int trace_state) {
    if (trace_state && cur->type == V_STR) {
        if (idx->type != V_STR) return ottl_fail(r, "trace_state is indexed by a string key");
        size_t len = 0;
        const char *v = trace_state_find(cur->s, idx->s, &len);
        if (!v) { cur->type = V_NIL; return 0; }
        cur->s.ptr = v;
        cur->s.len = len;
        return 0;
    }
    switch (cur->type) {
    case V_NIL: return 0; /* indexing what is missing gives nil */
    case V_MAP:
        if (idx->type != V_STR) return ottl_fail(r, "unable to resolve a string index in map: invalid key type (%s)", ottl_type_name(idx->type));
        ottl_from_value(cur, ottl_find(cur->map, idx->s));
        return 0;
    case V_LIST:
        if (idx->type != V_INT)
            return ottl_fail(r, "unable to resolve an integer index in slice: could not resolve key for map/slice, expecting 'int64' but got '%s'",
                             idx->type == V_DBL ? "float64" : ottl_type_name(idx->type));
        if (idx->i < 0 || (uint64_t)idx->i >= cur->list->count)
            return ottl_fail(r, "index %lld out of bounds (the list has %zu items)", (long long)idx->i, cur->list->count);
        ottl_from_value(cur, &cur->list->items[idx->i]);
        return 0;
    default: return ottl_fail(r, "a %s cannot be indexed", ottl_type_name(cur->type));
    }
}

static int path_get(runner *r, const node *n, xvalue *out) {
    if (n->map_key) {
        from_value(out, ottl_find(base_map(r, n->sub), n->kids[0]->lit.s));
        return 0;
    }
    if (field_get(r, n->sub, out) != 0) return -1;
    for (size_t i = 0; i < n->nkids; i++) {
        xvalue scratch;
        const xvalue *idx;
        if (operand(r, n->kids[i], &scratch, &idx) != 0 || step(r, out, idx, n->sub == P_TRACE_STATE) != 0) return -1;
    }
    return 0;
}

/* --- Writing ----------------------------------------------------------------------------- */

static int set_text(runner *r, spanhost_str *field, const xvalue *value, int lent, const char *what) {
    if (value->type != V_STR) return ottl_fail(r, "%s must be set to a string, not a %s", what, ottl_type_name(value->type));
    spanhost_str s = lent ? value->s : ottl_strdup(r, value->s.ptr, value->s.len);
    if (value->s.len && !s.ptr) return ottl_fail(r, "out of memory");
    *field = s;
    return 1;
}

static int set_id(runner *r, uint8_t *id, size_t n, const xvalue *value, const char *what) {
    if (value->type != V_BYTES || value->s.len != n) return ottl_fail(r, "%s must be set to %zu bytes (%s(0x...))", what, n, n == 16 ? "TraceID" : "SpanID");
    memcpy(id, value->s.ptr, n);
    return 1;
}

static int set_count(runner *r, uint32_t *field, const xvalue *value, const char *what) {
    if (value->type != V_INT || value->i < 0 || value->i > UINT32_MAX) return ottl_fail(r, "%s must be set to a count", what);
    *field = (uint32_t)value->i;
    return 1;
}

/* Replaces a whole map (set(attributes, {...})). */
static int set_map(runner *r, spanhost_kv_list *list, const xvalue *value) {
    if (value->type != V_MAP) return ottl_fail(r, "a map must be set to a map, not a %s", ottl_type_name(value->type));
    spanhost_kv_list fresh = {NULL, 0};
    for (size_t i = 0; i < value->map->count; i++)
        if (sh_set_attribute(ottl_batch(r), &fresh, value->map->items[i].key, &value->map->items[i].value) != 0) return ottl_fail(r, "out of memory");
    *list = fresh;
    return 1;
}

static int field_set(runner *r, int field, const xvalue *value, int lent) {
    spanhost_span *span = r->t->span;
    spanhost_event *ev = target_event(r);
    spanhost_kv_list *map = base_map(r, field);
    if (map) return set_map(r, map, value);
    if (field == P_EV_NAME) return ev ? set_text(r, &ev->name, value, lent, "name") : 0;
    if (field == P_EV_TIME_NS || field == P_EV_TIME) {
        if (!ev) return 0;
        if (value->type != (field == P_EV_TIME ? V_TIME : V_INT)) return ottl_fail(r, "time must be set to a %s", field == P_EV_TIME ? "time" : "int");
        ev->time_unix_nano = (uint64_t)value->i;
        return 1;
    }
    if (field == P_SCOPE_NAME || field == P_SCOPE_VERSION)
        return r->t->scope ? set_text(r, field == P_SCOPE_NAME ? &r->t->scope->name : &r->t->scope->version, value, lent, "scope.name") : 0;
    if (!span) return 0;
    switch (field) {
    case P_NAME: return set_text(r, &span->name, value, lent, "name");
    case P_STATUS_MSG: return set_text(r, &span->status_message, value, lent, "status.message");
    case P_TRACE_STATE: return set_text(r, &span->trace_state, value, lent, "trace_state");
    case P_STATUS_CODE:
        if (value->type != V_INT || value->i < 0 || value->i > 2) return ottl_fail(r, "status.code must be set to 0, 1 or 2");
        span->status_code = (uint32_t)value->i;
        return 1;
    case P_KIND:
        if (value->type != V_INT || value->i < 0 || value->i > 5) return ottl_fail(r, "kind must be set to a SPAN_KIND_ value (0 to 5)");
        span->kind = (uint32_t)value->i;
        return 1;
    case P_TRACE_ID: return set_id(r, span->trace_id, 16, value, "trace_id");
    case P_SPAN_ID: return set_id(r, span->span_id, 8, value, "span_id");
    case P_PARENT_ID: return set_id(r, span->parent_span_id, 8, value, "parent_span_id");
    case P_START_NS: case P_END_NS: case P_START: case P_END: {
        int time = field == P_START || field == P_END;
        if (value->type != (time ? V_TIME : V_INT)) return ottl_fail(r, "%s must be set to a%s", time ? "a time" : "a timestamp", time ? " time" : "n int");
        if (field == P_START || field == P_START_NS) span->start_time_unix_nano = (uint64_t)value->i;
        else span->end_time_unix_nano = (uint64_t)value->i;
        return 1;
    }
    case P_DROPPED_ATTRS: return set_count(r, &span->dropped_attributes_count, value, "dropped_attributes_count");
    case P_DROPPED_EVENTS: return set_count(r, &span->dropped_events_count, value, "dropped_events_count");
    case P_DROPPED_LINKS: return set_count(r, &span->dropped_links_count, value, "dropped_links_count");
    }
    return ottl_fail(r, "this path cannot be set");
}

/* Writes `value` where `target` (a path) points. 1 when written, 0 when there was nothing to
 * write to, -1 on error. `lent`: the value's text is kept literal text, which batches may point
 * at without a copy. Missing maps on the way are created, as in the Collector. */
int ottl_assign(runner *r, const node *target, const xvalue *value, int lent) {
    if (target->op != N_PATH) return ottl_fail(r, "the target must be a path");
    if (value->type == V_NIL) return 0; /* nil sets nothing */
    if (target->nkids == 0) return field_set(r, target->sub, value, lent);
    spanhost_kv_list *map = base_map(r, target->sub);
    spanhost_value_array *list = NULL;
    if (!map) {
        if (target->sub != P_TRACE_STATE) return target->sub == P_ATTRS || target->sub == P_EV_ATTRS ? 0 : ottl_fail(r, "this path cannot be indexed");
        return ottl_fail(r, "setting one key of trace_state is not supported yet: set trace_state whole");
    }
    spanhost_batch *b = ottl_batch(r);
    for (size_t i = 0; i < target->nkids; i++) {
        xvalue scratch;
        const xvalue *index;
        if (operand(r, target->kids[i], &scratch, &index) != 0) return -1;
        const xvalue idx = *index;
        int last = i + 1 == target->nkids;
        spanhost_value *slot;
        if (map) {
            if (idx.type != V_STR) return ottl_fail(r, "unable to resolve a string index in map: invalid key type (%s)", ottl_type_name(idx.type));
            int literal_key = target->kids[i]->op == N_LIT;
            if (last) {
                spanhost_value v;
                if (ottl_to_value(r, value, &v) != 0) return -1;
                int32_t rc = literal_key ? sh_set_attribute_lent(b, map, idx.s, &v, lent) : sh_set_attribute(b, map, idx.s, &v);
                return rc == 0 ? 1 : ottl_fail(r, "out of memory");
            }
            if (!(slot = ottl_find(map, idx.s))) {
                spanhost_value empty;
                memset(&empty, 0, sizeof empty);
                empty.type = SPANHOST_VALUE_KVLIST;
                int32_t rc = literal_key ? sh_set_attribute_lent(b, map, idx.s, &empty, 1) : sh_set_attribute(b, map, idx.s, &empty);
                if (rc != 0 || !(slot = ottl_find(map, idx.s))) return ottl_fail(r, "out of memory");
            }
        } else {
            if (idx.type != V_INT)
                return ottl_fail(r, "unable to resolve an integer index in slice: could not resolve key for map/slice, expecting 'int64' but got '%s'",
                                 idx.type == V_DBL ? "float64" : ottl_type_name(idx.type));
            if (idx.i < 0 || (uint64_t)idx.i >= list->count) return ottl_fail(r, "index %lld out of bounds (the list has %zu items)", (long long)idx.i, list->count);
            slot = &list->items[idx.i];
            if (last) {
                spanhost_value v;
                spanhost_kv_list holder = {NULL, 0};
                spanhost_str key = {"", 0};
                /* a deep copy of the value, through the batch's setter */
                if (ottl_to_value(r, value, &v) != 0) return -1;
                if (sh_set_attribute(b, &holder, key, &v) != 0) return ottl_fail(r, "out of memory");
                *slot = holder.items[0].value;
                return 1;
            }
        }
        if (slot->type == SPANHOST_VALUE_KVLIST) {
            map = &slot->as.kvlist_value;
            list = NULL;
        } else if (slot->type == SPANHOST_VALUE_ARRAY) {
            list = &slot->as.array_value;
            map = NULL;
        } else {
            xvalue next;
            ottl_from_value(&next, slot);
            return ottl_fail(r, "a %s cannot be indexed", ottl_type_name(next.type));
        }
    }
    return 0;
}

/* --- Operators --------------------------------------------------------------------------- */

static int values_equal(const spanhost_value *a, const spanhost_value *b);

static int maps_equal(const spanhost_kv_list *a, const spanhost_kv_list *b) {
    if (a->count != b->count) return 0;
    for (size_t i = 0; i < a->count; i++) {
        const spanhost_value *other = ottl_find((spanhost_kv_list *)b, a->items[i].key);
        if (!other || !values_equal(&a->items[i].value, other)) return 0;
    }
    return 1;
}

static int lists_equal(const spanhost_value_array *a, const spanhost_value_array *b) {
    if (a->count != b->count) return 0;
    for (size_t i = 0; i < a->count; i++)
        if (!values_equal(&a->items[i], &b->items[i])) return 0;
    return 1;
}

static int values_equal(const spanhost_value *a, const spanhost_value *b) {
    xvalue x, y;
    ottl_from_value(&x, a);
    ottl_from_value(&y, b);
    return ottl_compare(CMP_EQ, &x, &y);
}

int ottl_compare(int op, const xvalue *a, const xvalue *b) {
    int order; /* <0, 0, >0; 2 when the two cannot be ordered, 3 when they differ unordered */
    if (a->type == V_NIL || b->type == V_NIL) {
        if (op == CMP_EQ) return a->type == b->type;
        if (op == CMP_NE) return a->type != b->type;
        return 0;
    }
    if ((a->type == V_INT || a->type == V_DBL) && (b->type == V_INT || b->type == V_DBL)) {
        if (a->type == V_INT && b->type == V_INT) order = a->i < b->i ? -1 : a->i > b->i;
        else {
            double x = a->type == V_INT ? (double)a->i : a->d, y = b->type == V_INT ? (double)b->i : b->d;
            order = x < y ? -1 : x > y ? 1 : x == y ? 0 : 3;
        }
    } else if ((a->type == V_STR || a->type == V_BYTES) && a->type == b->type) {
        size_t n = a->s.len < b->s.len ? a->s.len : b->s.len;
        int c = n ? memcmp(a->s.ptr, b->s.ptr, n) : 0;
        order = c ? (c < 0 ? -1 : 1) : (a->s.len < b->s.len ? -1 : a->s.len > b->s.len);
    } else if (a->type == b->type && (a->type == V_BOOL || a->type == V_TIME || a->type == V_DUR)) {
        order = a->i < b->i ? -1 : a->i > b->i;
    } else if (a->type == V_MAP && b->type == V_MAP) {
        order = maps_equal(a->map, b->map) ? 0 : 3;
    } else if (a->type == V_LIST && b->type == V_LIST) {
        order = lists_equal(a->list, b->list) ? 0 : 3;
    } else {
        order = 3;
    }
    switch (op) {
    case CMP_EQ: return order == 0;
    case CMP_NE: return order != 0;
    case CMP_LT: return order == -1;
    case CMP_LE: return order == -1 || order == 0;
    case CMP_GT: return order == 1;
    default: return order == 1 || order == 0;
    }
}

static int math(runner *r, int op, const xvalue *a, const xvalue *b, xvalue *out) {
    memset(out, 0, sizeof *out);
    if (a->type == V_INT && b->type == V_INT) {
        int64_t x = a->i, y = b->i, z;
        out->type = V_INT;
        switch (op) {
        case '+': if (__builtin_add_overflow(x, y, &z)) return ottl_fail(r, "integer overflow in +"); break;
        case '-': if (__builtin_sub_overflow(x, y, &z)) return ottl_fail(r, "integer overflow in -"); break;
        case '*': if (__builtin_mul_overflow(x, y, &z)) return ottl_fail(r, "integer overflow in *"); break;
        default:
            if (y == 0) return ottl_fail(r, "attempted to divide by 0");
            if (x == INT64_MIN && y == -1) return ottl_fail(r, "integer overflow in /");
            z = x / y;
        }
        out->i = z;
        return 0;
    }
    if ((a->type == V_INT || a->type == V_DBL) && (b->type == V_INT || b->type == V_DBL)) {
        double x = a->type == V_INT ? (double)a->i : a->d, y = b->type == V_INT ? (double)b->i : b->d;
        out->type = V_DBL;
        if (op == '/' && y == 0) return ottl_fail(r, "attempted to divide by 0");
        out->d = op == '+' ? x + y : op == '-' ? x - y : op == '*' ? x * y : x / y;
        return 0;
    }
    int timed = (a->type == V_TIME && b->type == V_TIME && op == '-') ||
                ((a->type == V_TIME || a->type == V_DUR) && b->type == V_DUR && (op == '+' || op == '-'));
    if (timed) {
        out->type = a->type == V_TIME && b->type == V_TIME ? V_DUR : a->type;
        if (op == '+' ? __builtin_add_overflow(a->i, b->i, &out->i) : __builtin_sub_overflow(a->i, b->i, &out->i))
            return ottl_fail(r, "the time is out of range (1678 to 2262)");
        return 0;
    }
    return ottl_fail(r, "cannot compute %s %c %s", ottl_type_name(a->type), op, ottl_type_name(b->type));
}

int ottl_match(const node *call, const regex_t *re, spanhost_str s, size_t groups, regmatch_t *m) {
    /* REG_STARTEND takes the bounds from m[0] instead of stopping at a NUL, so "a\0token=secret"
     * cannot hide its tail from a pattern meant to redact it. Offsets count from s.ptr. */
    regmatch_t whole[1];
    if (call && call->has_re && re == &call->re && call->literal != RX_REGEX && !m) return ottl_literal_match(call->literal, call->lit_text, s);
    if (!m || groups == 0) {
        m = whole;
        groups = 1;
    }
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)s.len;
    return regexec(re, s.ptr ? s.ptr : "", groups, m, REG_STARTEND) == 0;
}

/* --- Evaluation -------------------------------------------------------------------------- */

static int eval_call(runner *r, const node *n, xvalue *out) {
    xvalue args[8];
    size_t nargs = n->nkids < 8 ? n->nkids : 8;
    for (size_t i = 0; i < nargs; i++) {
        args[i].type = -1; /* not given */
        args[i].id = 0;
        const node *k = n->kids[i];
        if (!k || (i == 0 && n->builtin && n->builtin->target_unread)) continue;
        /* literals and paths, the usual arguments, without the general evaluator */
        if (k->op == N_LIT) args[i] = k->lit;
        else if ((k->op == N_PATH ? path_get(r, k, &args[i]) : eval(r, k, &args[i])) != 0) return -1;
    }
    if (n->fn) return ottl_run_plugin_function(r, n, args, out);
    return n->builtin->run(r, n, args, out);
}

static int eval(runner *r, const node *n, xvalue *out) {
    xvalue a, b;
    const xvalue *x1, *x2;
    out->type = V_NIL;
    out->id = 0;
    switch (n->op) {
    case N_LIT: *out = n->lit; return 0;
    case N_PATH: return path_get(r, n, out);
    case N_CALL: return eval_call(r, n, out);
    case N_INDEX:
        if (eval(r, n->kids[0], out) != 0) return -1;
        for (size_t i = 1; i < n->nkids; i++)
            if (eval(r, n->kids[i], &a) != 0 || step(r, out, &a, 0) != 0) return -1;
        return 0;
    case N_LIST: {
        if (n->constant) {
            *out = n->lit;
            return 0;
        }
        spanhost_value_array *list = (spanhost_value_array *)ottl_alloc(r, sizeof *list);
        spanhost_value *items = (spanhost_value *)ottl_alloc(r, n->nkids * sizeof *items);
        if (!list || !items) return ottl_fail(r, "out of memory");
        for (size_t i = 0; i < n->nkids; i++) /* nil items are empty values, as in the Collector */
            if (eval(r, n->kids[i], &a) != 0 || ottl_to_value(r, &a, &items[i]) != 0) return -1;
        list->items = items;
        list->count = n->nkids;
        out->type = V_LIST;
        out->list = list;
        return 0;
    }
    case N_MAP: {
        if (n->constant) {
            *out = n->lit;
            return 0;
        }
        spanhost_kv_list *map = (spanhost_kv_list *)ottl_alloc(r, sizeof *map);
        if (!map) return ottl_fail(r, "out of memory");
        for (size_t i = 0; i < n->nkids; i++) {
            spanhost_value v;
            if (eval(r, n->kids[i], &a) != 0 || ottl_to_value(r, &a, &v) != 0) return -1;
            if (sh_set_attribute_lent(ottl_batch(r), map, n->keys[i], &v, 1) != 0) return ottl_fail(r, "out of memory");
        }
        out->type = V_MAP;
        out->map = map;
        return 0;
    }
    case N_MATH:
        if (eval(r, n->kids[0], &a) != 0 || eval(r, n->kids[1], &b) != 0) return -1;
        return math(r, n->sub, &a, &b, out);
    }
    /* Conditions: a bool. */
    int x;
    switch (n->op) {
    case N_OR:
    case N_AND:
        if (eval(r, n->kids[0], &a) != 0) return -1;
        x = a.type == V_BOOL && a.i;
        if (n->op == N_OR ? !x : x) {
            if (eval(r, n->kids[1], &a) != 0) return -1;
            x = a.type == V_BOOL && a.i;
        }
        break;
    case N_NOT:
        if (eval(r, n->kids[0], &a) != 0) return -1;
        x = !(a.type == V_BOOL && a.i);
        break;
    case N_CMP:
        if (operand(r, n->kids[0], &a, &x1) != 0 || operand(r, n->kids[1], &b, &x2) != 0) return -1;
        x = ottl_compare(n->sub, x1, x2);
        break;
    default: return ottl_fail(r, "unknown node");
    }
    out->type = V_BOOL;
    out->i = x;
    return 0;
}

int ottl_call_function(runner *r, const ottl_builtin *fn, xvalue *arg, xvalue *out) {
    node call;
    memset(&call, 0, sizeof call);
    call.op = N_CALL;
    call.builtin = fn;
    return fn->run(r, &call, arg, out);
}

static void end_run(runner *r) {
    if (r->scratch) sh_batch_release(r->scratch);
}

int32_t sh_expr_run(const spanhost_expr *e, const spanhost_expr_target *t, spanhost_status *status) {
    if (!e || !t) return -1;
    runner r = {t, status, t->batch, NULL};
    const node *root = e->root;
    xvalue v;
    int rc;
    if (e->kind == SPANHOST_EXPR_CONDITION) {
        rc = eval(&r, root, &v);
        end_run(&r);
        return rc != 0 ? -1 : v.type == V_BOOL && v.i;
    }
    if (root->where) {
        rc = eval(&r, root->where, &v);
        if (rc != 0 || !(v.type == V_BOOL && v.i)) {
            end_run(&r);
            return rc != 0 ? -1 : 0;
        }
    }
    v.type = V_NIL;
    v.id = 0;
    rc = eval_call(&r, root, &v); /* a statement is its editor's call */
    end_run(&r);
    return rc < 0 ? -1 : 1;
}

int sh_expr_call(const char *text, size_t len, char *out, size_t cap) {
    node *n = ottl_parse_value(text, len, out, cap);
    if (!n) return -1;
    spanhost_expr_target target;
    memset(&target, 0, sizeof target);
    target.struct_size = sizeof target;
    spanhost_status status = {sizeof status, 0, out, cap};
    runner r = {&target, &status, NULL, NULL};
    xvalue v;
    int rc = eval(&r, n, &v);
    ottl_node_free(n);
    if (rc == 0) {
        spanhost_str s;
        if (v.type == V_STR || v.type == V_BYTES) snprintf(out, cap, "\"%.*s\"", (int)v.s.len, v.s.ptr ? v.s.ptr : "");
        else if (v.type == V_INT) snprintf(out, cap, "%lld", (long long)v.i);
        else if (v.type == V_DBL) snprintf(out, cap, "%.17g", v.d);
        else if (v.type == V_BOOL) snprintf(out, cap, "%s", v.i ? "true" : "false");
        else if (v.type == V_NIL) snprintf(out, cap, "nil");
        else if (ottl_to_text(&r, &v, &s) == 0) snprintf(out, cap, "%.*s", (int)s.len, s.ptr);
        else rc = -1;
    }
    end_run(&r);
    return rc == 0 ? 0 : -1;
}
