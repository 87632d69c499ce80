/* Batches: a reference count, an arena of chunks, and the public spanhost_batch inside. */
#include "spanhost_core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Chunks start small and double up to the largest size: a batch holding one span (a trace
 * held by tail sampling) takes about what it holds, a decoded request quickly reaches 8 KiB
 * chunks. Sizes count the chunk's header, so each is one block of the slab pool (pool.c). */
#define SH_CHUNK_SIZE (8u * 1024u)
#define SH_FIRST_CHUNK_SIZE 1024u
#define SH_ALIGN 8u

typedef struct sh_chunk {
    struct sh_chunk *next;
    size_t size; /* of the block, header included */
    size_t cap;
    size_t used;
    /* data follows */
} sh_chunk;

typedef struct sh_adopted {
    struct sh_adopted *next;
    void *block;
    size_t size;
} sh_adopted;

/* The public batch is the first member so a spanhost_batch * converts back to the impl. */
typedef struct sh_batch_impl {
    spanhost_batch pub;
    atomic_int refs;
    sh_chunk *chunks;
    /* The size of the next small-allocation chunk. */
    size_t next_chunk;
    /* Spans copied in with sh_batch_add_span, and the strings those copies share (keys, common
     * values, names), made once a batch holds a few copies: a held trace repeats the same
     * attribute keys in every span. Open addressing; a pool block, counted in `bytes`. */
    size_t copied_spans;
    spanhost_str *interned;
    size_t interned_cap, interned_count;
    sh_adopted *adopted;
    size_t bytes;
    /* While decoding: the arena may not grow past this (0: no limit); set when it tried. */
    size_t limit;
    int over_limit;
} sh_batch_impl;

static sh_batch_impl *impl(const spanhost_batch *b) { return (sh_batch_impl *)(uintptr_t)b; }

/* Bytes held by all live batches of the process, for the memory limiter. */
static atomic_size_t live_bytes;

size_t sh_live_batch_bytes(void) { return atomic_load_explicit(&live_bytes, memory_order_relaxed); }

size_t sh_batch_bytes(const spanhost_batch *batch) { return impl(batch)->bytes; }

static void account(sh_batch_impl *b, size_t n) {
    b->bytes += n;
    atomic_fetch_add_explicit(&live_bytes, n, memory_order_relaxed);
}

/* False (and remembered) when growing the arena by n bytes would pass its limit. */
static int may_grow(sh_batch_impl *b, size_t n) {
    if (b->limit && (n > b->limit || b->bytes > b->limit - n)) {
        b->over_limit = 1;
        return 0;
    }
    return 1;
}

void sh_batch_set_limit(spanhost_batch *batch, size_t limit) {
    impl(batch)->limit = limit;
    impl(batch)->over_limit = 0;
}

int sh_batch_over_limit(const spanhost_batch *batch) { return impl(batch)->over_limit; }

/* A chunk in a block of `size` bytes, its header included. */
static sh_chunk *chunk_new(size_t size) {
    sh_chunk *c = (sh_chunk *)sh_pool_alloc(size);
    if (!c) return NULL;
    c->next = NULL;
    c->size = size;
    c->cap = size - sizeof(sh_chunk);
    c->used = 0;
    return c;
}

spanhost_batch *sh_batch_new(void) {
    sh_batch_impl *b = (sh_batch_impl *)sh_pool_alloc(sizeof(sh_batch_impl));
    if (!b) return NULL;
    memset(b, 0, sizeof *b);
    b->pub.struct_size = sizeof(spanhost_batch);
    atomic_init(&b->refs, 1);
    b->bytes = sh_pool_block_size(sizeof(sh_batch_impl));
    atomic_fetch_add_explicit(&live_bytes, b->bytes, memory_order_relaxed);
    return &b->pub;
}

void sh_batch_retain(const spanhost_batch *batch) {
    atomic_fetch_add_explicit(&impl(batch)->refs, 1, memory_order_relaxed);
}

void sh_batch_release(const spanhost_batch *batch) {
    sh_batch_impl *b = impl(batch);
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) return;
    atomic_fetch_sub_explicit(&live_bytes, b->bytes, memory_order_relaxed);
    for (sh_chunk *c = b->chunks; c;) {
        sh_chunk *n = c->next;
        sh_pool_free(c, c->size);
        c = n;
    }
    sh_pool_free(b->interned, b->interned_cap * sizeof(spanhost_str));
    for (sh_adopted *a = b->adopted; a;) {
        sh_adopted *n = a->next;
        free(a->block);
        free(a);
        a = n;
    }
    sh_pool_free(b, sizeof(sh_batch_impl));
}

void *sh_arena_alloc(spanhost_batch *batch, size_t size) {
    void *p = sh_arena_alloc_uninit(batch, size);
    if (p) memset(p, 0, size);
    return p;
}

void *sh_arena_alloc_uninit(spanhost_batch *batch, size_t size) {
    sh_batch_impl *b = impl(batch);
    size = (size + (SH_ALIGN - 1)) & ~(size_t)(SH_ALIGN - 1);
    if (size == 0) size = SH_ALIGN;
    sh_chunk *c = b->chunks;
    if (!c || c->cap - c->used < size) {
        if (size > SH_CHUNK_SIZE / 4) {
            /* Large blocks get a chunk of their own behind the current one, so the current
             * chunk keeps serving small allocations. */
            size_t block = sizeof(sh_chunk) + size;
            if (!may_grow(b, block)) return NULL;
            sh_chunk *big = chunk_new(block);
            if (!big) return NULL;
            big->used = size;
            account(b, sh_pool_block_size(block));
            if (c) {
                big->next = c->next;
                c->next = big;
            } else {
                b->chunks = big;
            }
            return (char *)(big + 1);
        }
        size_t block = b->next_chunk ? b->next_chunk : SH_FIRST_CHUNK_SIZE;
        while (block - sizeof(sh_chunk) < size) block *= 2;
        if (!may_grow(b, block)) return NULL;
        c = chunk_new(block);
        if (!c) return NULL;
        c->next = b->chunks;
        b->chunks = c;
        account(b, block);
        b->next_chunk = block < SH_CHUNK_SIZE ? block * 2 : SH_CHUNK_SIZE;
    }
    void *p = (char *)(c + 1) + c->used;
    c->used += size;
    return p;
}

spanhost_str sh_arena_strdup(spanhost_batch *batch, const char *ptr, size_t len) {
    spanhost_str s = {NULL, 0};
    if (len == 0) return s;
    char *p = (char *)sh_arena_alloc_uninit(batch, len);
    if (!p) return s;
    memcpy(p, ptr, len);
    s.ptr = p;
    s.len = len;
    return s;
}

/* Strings copied into a batch that already holds a few copied spans are shared: equal short
 * strings are stored once. Spans are views, never written through, so sharing is invisible. */
#define SH_INTERN_AFTER_SPANS 2u
#define SH_INTERN_MAX_LEN 64u
#define SH_INTERN_MAX_SLOTS 4096u

static uint64_t hash_bytes(const char *p, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* The slot holding `ptr/len`, or the empty slot where it belongs. */
static spanhost_str *intern_slot(spanhost_str *slots, size_t cap, const char *ptr, size_t len) {
    for (size_t i = hash_bytes(ptr, len) & (cap - 1);; i = (i + 1) & (cap - 1)) {
        spanhost_str *slot = &slots[i];
        if (!slot->ptr || (slot->len == len && memcmp(slot->ptr, ptr, len) == 0)) return slot;
    }
}

/* Makes room for one more entry; 0 when the table is at its size limit (or memory is short). */
static int intern_reserve(sh_batch_impl *b) {
    if (b->interned && (b->interned_count + 1) * 2 <= b->interned_cap) return 1;
    size_t cap = b->interned ? b->interned_cap * 2 : 64;
    if (cap > SH_INTERN_MAX_SLOTS || !may_grow(b, cap * sizeof(spanhost_str))) return 0;
    spanhost_str *slots = (spanhost_str *)sh_pool_alloc(cap * sizeof(spanhost_str));
    if (!slots) return 0;
    memset(slots, 0, cap * sizeof(spanhost_str));
    for (size_t i = 0; i < b->interned_cap; i++)
        if (b->interned[i].ptr) *intern_slot(slots, cap, b->interned[i].ptr, b->interned[i].len) = b->interned[i];
    account(b, (cap - b->interned_cap) * sizeof(spanhost_str));
    sh_pool_free(b->interned, b->interned_cap * sizeof(spanhost_str));
    b->interned = slots;
    b->interned_cap = cap;
    return 1;
}

static spanhost_str copy_str(spanhost_batch *batch, const char *ptr, size_t len) {
    sh_batch_impl *b = impl(batch);
    if (len == 0 || len > SH_INTERN_MAX_LEN || b->copied_spans < SH_INTERN_AFTER_SPANS || !intern_reserve(b))
        return sh_arena_strdup(batch, ptr, len);
    spanhost_str *slot = intern_slot(b->interned, b->interned_cap, ptr, len);
    if (!slot->ptr) {
        *slot = sh_arena_strdup(batch, ptr, len);
        if (slot->ptr) b->interned_count++;
        else return *slot;
    }
    return *slot;
}

const uint8_t *sh_arena_copy(spanhost_batch *batch, const void *ptr, size_t len) {
    /* Not via sh_arena_alloc: no need to zero what we overwrite at once. */
    sh_batch_impl *b = impl(batch);
    uint8_t *p = (uint8_t *)malloc(len ? len : 1);
    if (!p) return NULL;
    if (len) memcpy(p, ptr, len);
    if (sh_arena_adopt(&b->pub, p, len) != 0) return NULL;
    return p;
}

int sh_arena_adopt(spanhost_batch *batch, void *block, size_t size) {
    sh_batch_impl *b = impl(batch);
    sh_adopted *a = (sh_adopted *)malloc(sizeof(sh_adopted));
    if (!a) {
        free(block);
        return -1;
    }
    a->block = block;
    a->size = size;
    a->next = b->adopted;
    b->adopted = a;
    account(b, size);
    return 0;
}

int sh_arena_contains(const spanhost_batch *batch, const void *ptr, size_t len) {
    const sh_batch_impl *b = impl(batch);
    const char *p = (const char *)ptr;
    for (const sh_chunk *c = b->chunks; c; c = c->next) {
        const char *data = (const char *)(c + 1);
        if (p >= data && len <= c->used && (size_t)(p - data) <= c->used - len) return 1;
    }
    for (const sh_adopted *a = b->adopted; a; a = a->next) {
        const char *data = (const char *)a->block;
        if (p >= data && len <= a->size && (size_t)(p - data) <= a->size - len) return 1;
    }
    return 0;
}

/* --- Attributes -------------------------------------------------------------------------- */

static int str_eq(spanhost_str a, spanhost_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Deep-copies a value into the arena. Returns 0 or -1. */
static int copy_value(spanhost_batch *batch, spanhost_value *dst, const spanhost_value *src);

static int copy_kv_list(spanhost_batch *batch, spanhost_kv_list *dst, const spanhost_kv_list *src) {
    dst->items = NULL;
    dst->count = 0;
    if (src->count == 0) return 0;
    spanhost_kv *items = (spanhost_kv *)sh_arena_alloc(batch, src->count * sizeof(spanhost_kv));
    if (!items) return -1;
    for (size_t i = 0; i < src->count; i++) {
        items[i].key = copy_str(batch, src->items[i].key.ptr, src->items[i].key.len);
        if (copy_value(batch, &items[i].value, &src->items[i].value) != 0) return -1;
    }
    dst->items = items;
    dst->count = src->count;
    return 0;
}

static int copy_value(spanhost_batch *batch, spanhost_value *dst, const spanhost_value *src) {
    *dst = *src;
    switch (src->type) {
    case SPANHOST_VALUE_STRING:
        dst->as.string_value = copy_str(batch, src->as.string_value.ptr, src->as.string_value.len);
        return 0;
    case SPANHOST_VALUE_BYTES: {
        spanhost_str s = sh_arena_strdup(batch, (const char *)src->as.bytes_value.ptr, src->as.bytes_value.len);
        dst->as.bytes_value.ptr = (const uint8_t *)s.ptr;
        dst->as.bytes_value.len = s.len;
        return 0;
    }
    case SPANHOST_VALUE_ARRAY: {
        size_t n = src->as.array_value.count;
        dst->as.array_value.items = NULL;
        dst->as.array_value.count = 0;
        if (n == 0) return 0;
        spanhost_value *items = (spanhost_value *)sh_arena_alloc(batch, n * sizeof(spanhost_value));
        if (!items) return -1;
        for (size_t i = 0; i < n; i++)
            if (copy_value(batch, &items[i], &src->as.array_value.items[i]) != 0) return -1;
        dst->as.array_value.items = items;
        dst->as.array_value.count = n;
        return 0;
    }
    case SPANHOST_VALUE_KVLIST:
        return copy_kv_list(batch, &dst->as.kvlist_value, &src->as.kvlist_value);
    default:
        return 0;
    }
}

static inline int32_t set_attribute(spanhost_batch *batch, spanhost_kv_list *attributes, spanhost_str key,
                             const spanhost_value *value, int key_lent, int value_lent) {
    spanhost_value copy = *value;
    if (!value_lent && copy_value(batch, &copy, value) != 0) return -1;
    for (size_t i = 0; i < attributes->count; i++) {
        if (str_eq(attributes->items[i].key, key)) {
            attributes->items[i].value = copy;
            return 0;
        }
    }
    spanhost_kv *items = (spanhost_kv *)sh_arena_alloc_uninit(batch, (attributes->count + 1) * sizeof(spanhost_kv));
    if (!items) return -1;
    if (attributes->count) memcpy(items, attributes->items, attributes->count * sizeof(spanhost_kv));
    items[attributes->count].key = key_lent ? key : copy_str(batch, key.ptr, key.len);
    items[attributes->count].value = copy;
    attributes->items = items;
    attributes->count += 1;
    return 0;
}

int32_t sh_set_attribute(spanhost_batch *batch, spanhost_kv_list *attributes, spanhost_str key,
                         const spanhost_value *value) {
    return set_attribute(batch, attributes, key, value, 0, 0);
}

int32_t sh_set_attribute_lent(spanhost_batch *batch, spanhost_kv_list *attributes, spanhost_str key,
                              const spanhost_value *value, int value_lent) {
    return set_attribute(batch, attributes, key, value, 1, value_lent);
}

int32_t sh_batch_set_client_metadata(spanhost_batch *batch, const char *key, size_t key_len, const char *value, size_t value_len) {
    spanhost_value v;
    memset(&v, 0, sizeof v);
    v.type = SPANHOST_VALUE_STRING;
    v.as.string_value.ptr = value;
    v.as.string_value.len = value_len;
    spanhost_str k = {key, key_len};
    return set_attribute(batch, &batch->client_metadata, k, &v, 0, 0);
}

int32_t sh_batch_copy_client_metadata(spanhost_batch *dst, const spanhost_batch *src) {
    for (size_t i = 0; i < src->client_metadata.count; i++) {
        const spanhost_kv *kv = &src->client_metadata.items[i];
        if (set_attribute(dst, &dst->client_metadata, kv->key, &kv->value, 0, 0) != 0) return -1;
    }
    return 0;
}

int32_t sh_remove_attribute(spanhost_batch *batch, spanhost_kv_list *attributes, spanhost_str key) {
    (void)batch;
    for (size_t i = 0; i < attributes->count; i++) {
        if (str_eq(attributes->items[i].key, key)) {
            memmove(&attributes->items[i], &attributes->items[i + 1],
                    (attributes->count - i - 1) * sizeof(spanhost_kv));
            attributes->count -= 1;
            return 1;
        }
    }
    return 0;
}

/* --- Building batches ------------------------------------------------------------------- */

/* Appends `item` to a pointer array in the arena. Capacity is implicit: 4, then doubling,
 * so the array is full exactly when count is 0 or a power of two of at least 4. */
static int push_ptr(spanhost_batch *batch, void ***array, size_t *count, void *item) {
    size_t n = *count;
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
        size_t cap = n ? n * 2 : 4;
        void **grown = (void **)sh_arena_alloc(batch, cap * sizeof(void *));
        if (!grown) return -1;
        if (n) memcpy(grown, *array, n * sizeof(void *));
        *array = grown;
    }
    (*array)[n] = item;
    *count = n + 1;
    return 0;
}

/* Deep equality of values and attribute lists (order matters), to find the group a copied span
 * belongs to. Groups are matched by content, never by pointer: a source batch may be freed and
 * its address reused by another. */
static int values_equal(const spanhost_value *a, const spanhost_value *b);

static int kv_lists_equal(const spanhost_kv_list *a, const spanhost_kv_list *b) {
    if (a->count != b->count) return 0;
    for (size_t i = 0; i < a->count; i++)
        if (!str_eq(a->items[i].key, b->items[i].key) || !values_equal(&a->items[i].value, &b->items[i].value)) return 0;
    return 1;
}

static int values_equal(const spanhost_value *a, const spanhost_value *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case SPANHOST_VALUE_STRING: return str_eq(a->as.string_value, b->as.string_value);
    case SPANHOST_VALUE_BOOL: return a->as.bool_value == b->as.bool_value;
    case SPANHOST_VALUE_INT: return a->as.int_value == b->as.int_value;
    case SPANHOST_VALUE_DOUBLE: return memcmp(&a->as.double_value, &b->as.double_value, sizeof(double)) == 0;
    case SPANHOST_VALUE_BYTES:
        return a->as.bytes_value.len == b->as.bytes_value.len &&
               (a->as.bytes_value.len == 0 || !memcmp(a->as.bytes_value.ptr, b->as.bytes_value.ptr, a->as.bytes_value.len));
    case SPANHOST_VALUE_ARRAY:
        if (a->as.array_value.count != b->as.array_value.count) return 0;
        for (size_t i = 0; i < a->as.array_value.count; i++)
            if (!values_equal(&a->as.array_value.items[i], &b->as.array_value.items[i])) return 0;
        return 1;
    case SPANHOST_VALUE_KVLIST: return kv_lists_equal(&a->as.kvlist_value, &b->as.kvlist_value);
    default: return 1;
    }
}

static const spanhost_kv_list empty_list = {NULL, 0};

static int resource_matches(const spanhost_resource_spans *rs, const spanhost_resource *r, spanhost_str schema_url) {
    return str_eq(rs->schema_url, schema_url) &&
           rs->resource->dropped_attributes_count == (r ? r->dropped_attributes_count : 0) &&
           kv_lists_equal(&rs->resource->attributes, r ? &r->attributes : &empty_list);
}

static int scope_matches(const spanhost_scope_spans *ss, const spanhost_scope *sc, spanhost_str schema_url) {
    static const spanhost_str none = {NULL, 0};
    return str_eq(ss->schema_url, schema_url) && str_eq(ss->scope->name, sc ? sc->name : none) &&
           str_eq(ss->scope->version, sc ? sc->version : none) &&
           ss->scope->dropped_attributes_count == (sc ? sc->dropped_attributes_count : 0) &&
           kv_lists_equal(&ss->scope->attributes, sc ? &sc->attributes : &empty_list);
}

static spanhost_str dup_str(spanhost_batch *b, spanhost_str s) { return copy_str(b, s.ptr, s.len); }

spanhost_span *sh_batch_add_span(spanhost_batch *batch, const spanhost_resource *resource,
                                 spanhost_str resource_schema_url, const spanhost_scope *scope,
                                 spanhost_str scope_schema_url, const spanhost_span *span) {
    spanhost_resource_spans *rs = NULL;
    for (size_t i = batch->resource_spans_count; i-- > 0 && !rs;)
        if (resource_matches(batch->resource_spans[i], resource, resource_schema_url)) rs = batch->resource_spans[i];
    if (!rs) {
        rs = (spanhost_resource_spans *)sh_arena_alloc(batch, sizeof(*rs));
        spanhost_resource *r = (spanhost_resource *)sh_arena_alloc(batch, sizeof(*r));
        if (!rs || !r) return NULL;
        r->struct_size = sizeof(*r);
        if (resource) {
            r->dropped_attributes_count = resource->dropped_attributes_count;
            if (copy_kv_list(batch, &r->attributes, &resource->attributes) != 0) return NULL;
        }
        rs->struct_size = sizeof(*rs);
        rs->resource = r;
        rs->schema_url = dup_str(batch, resource_schema_url);
        if (push_ptr(batch, (void ***)&batch->resource_spans, &batch->resource_spans_count, rs) != 0) return NULL;
    }
    spanhost_scope_spans *ss = NULL;
    for (size_t i = rs->scope_spans_count; i-- > 0 && !ss;)
        if (scope_matches(rs->scope_spans[i], scope, scope_schema_url)) ss = rs->scope_spans[i];
    if (!ss) {
        ss = (spanhost_scope_spans *)sh_arena_alloc(batch, sizeof(*ss));
        spanhost_scope *sc = (spanhost_scope *)sh_arena_alloc(batch, sizeof(*sc));
        if (!ss || !sc) return NULL;
        sc->struct_size = sizeof(*sc);
        if (scope) {
            sc->name = dup_str(batch, scope->name);
            sc->version = dup_str(batch, scope->version);
            sc->dropped_attributes_count = scope->dropped_attributes_count;
            if (copy_kv_list(batch, &sc->attributes, &scope->attributes) != 0) return NULL;
        }
        ss->struct_size = sizeof(*ss);
        ss->scope = sc;
        ss->schema_url = dup_str(batch, scope_schema_url);
        if (push_ptr(batch, (void ***)&rs->scope_spans, &rs->scope_spans_count, ss) != 0) return NULL;
    }

    spanhost_span *copy = (spanhost_span *)sh_arena_alloc(batch, sizeof(*copy));
    if (!copy) return NULL;
    impl(batch)->copied_spans++;
    size_t n = span->struct_size < sizeof(*copy) ? span->struct_size : sizeof(*copy);
    memcpy(copy, span, n);
    copy->struct_size = sizeof(*copy);
    copy->host_flags = 0;
    copy->trace_state = dup_str(batch, span->trace_state);
    copy->name = dup_str(batch, span->name);
    copy->status_message = dup_str(batch, span->status_message);
    if (copy_kv_list(batch, &copy->attributes, &span->attributes) != 0) return NULL;
    copy->events = NULL;
    copy->links = NULL;
    if (span->events_count) {
        copy->events = (spanhost_event **)sh_arena_alloc(batch, span->events_count * sizeof(void *));
        if (!copy->events) return NULL;
        for (size_t i = 0; i < span->events_count; i++) {
            const spanhost_event *src = span->events[i];
            spanhost_event *e = (spanhost_event *)sh_arena_alloc(batch, sizeof(*e));
            if (!e) return NULL;
            e->struct_size = sizeof(*e);
            e->time_unix_nano = src->time_unix_nano;
            e->dropped_attributes_count = src->dropped_attributes_count;
            e->name = dup_str(batch, src->name);
            if (copy_kv_list(batch, &e->attributes, &src->attributes) != 0) return NULL;
            copy->events[i] = e;
        }
    }
    if (span->links_count) {
        copy->links = (spanhost_link **)sh_arena_alloc(batch, span->links_count * sizeof(void *));
        if (!copy->links) return NULL;
        for (size_t i = 0; i < span->links_count; i++) {
            const spanhost_link *src = span->links[i];
            spanhost_link *l = (spanhost_link *)sh_arena_alloc(batch, sizeof(*l));
            if (!l) return NULL;
            size_t ln = src->struct_size < sizeof(*l) ? src->struct_size : sizeof(*l);
            memcpy(l, src, ln);
            l->struct_size = sizeof(*l);
            l->trace_state = dup_str(batch, src->trace_state);
            if (copy_kv_list(batch, &l->attributes, &src->attributes) != 0) return NULL;
            copy->links[i] = l;
        }
    }
    if (push_ptr(batch, (void ***)&ss->spans, &ss->spans_count, copy) != 0) return NULL;
    return copy;
}

size_t sh_batch_span_count(const spanhost_batch *batch) {
    size_t n = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        for (size_t j = 0; j < rs->scope_spans_count; j++) n += rs->scope_spans[j]->spans_count;
    }
    return n;
}

size_t sh_batch_most_attributes(const spanhost_batch *batch) {
    size_t most = 0;
#define SH_MOST(list) do { if ((list).count > most) most = (list).count; } while (0)
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        const spanhost_resource_spans *rs = batch->resource_spans[i];
        if (rs->resource) SH_MOST(rs->resource->attributes);
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            const spanhost_scope_spans *ss = rs->scope_spans[j];
            if (ss->scope) SH_MOST(ss->scope->attributes);
            for (size_t k = 0; k < ss->spans_count; k++) {
                const spanhost_span *span = ss->spans[k];
                SH_MOST(span->attributes);
                for (size_t e = 0; e < span->events_count; e++) SH_MOST(span->events[e]->attributes);
                for (size_t l = 0; l < span->links_count; l++) SH_MOST(span->links[l]->attributes);
            }
        }
    }
#undef SH_MOST
    return most;
}

size_t sh_batch_compact(spanhost_batch *batch) {
    size_t removed = 0, rkeep = 0;
    for (size_t i = 0; i < batch->resource_spans_count; i++) {
        spanhost_resource_spans *rs = batch->resource_spans[i];
        size_t skeep = 0;
        for (size_t j = 0; j < rs->scope_spans_count; j++) {
            spanhost_scope_spans *ss = rs->scope_spans[j];
            size_t keep = 0;
            for (size_t k = 0; k < ss->spans_count; k++) {
                uint32_t flags = ss->spans[k]->host_flags;
                if (flags & SPANHOST_SPAN_DROP) removed++;
                if (!(flags & (SPANHOST_SPAN_DROP | SPANHOST_SPAN_TAKEN))) ss->spans[keep++] = ss->spans[k];
            }
            ss->spans_count = keep;
            if (keep) rs->scope_spans[skeep++] = ss;
        }
        rs->scope_spans_count = skeep;
        if (skeep) batch->resource_spans[rkeep++] = rs;
    }
    batch->resource_spans_count = rkeep;
    return removed;
}

spanhost_notification *sh_notification_copy(spanhost_batch *arena, const spanhost_notification *src) {
    spanhost_notification *n = (spanhost_notification *)sh_arena_alloc(arena, sizeof *n);
    if (!n) return NULL;
    memset(n, 0, sizeof *n);
    /* Read only the part the sender knew about; the rest stays zero. */
    size_t known = src->struct_size < sizeof *n ? src->struct_size : sizeof *n;
    memcpy(n, src, known);
    n->struct_size = (uint32_t)sizeof *n;
    n->kind = dup_str(arena, n->kind);
    n->source = dup_str(arena, n->source);
    n->key = dup_str(arena, n->key);
    n->summary = dup_str(arena, n->summary);
    spanhost_kv_list attributes = n->attributes;
    if (copy_kv_list(arena, &n->attributes, &attributes) != 0) return NULL;
    if (n->count == 0) n->count = 1;
    return n;
}

static uint64_t key_hash(spanhost_str k) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < k.len; i++) h = (h ^ (uint8_t)k.ptr[i]) * 1099511628211ull;
    return h;
}

int sh_dedupe_by_key(spanhost_batch *batch, void *items, size_t *count, size_t item_size) {
    if (*count < 2) return 0;
    size_t size = 16;
    while (size < *count * 2) size *= 2;
    size_t *slots = (size_t *)sh_arena_alloc(batch, size * sizeof(size_t)); /* index + 1; 0 is empty */
    if (!slots) return -1;
    uint8_t *base = (uint8_t *)items;
    size_t kept = 0;
    for (size_t i = 0; i < *count; i++) {
        uint8_t *item = base + i * item_size;
        spanhost_str key;
        memcpy(&key, item, sizeof key);
        for (size_t h = (size_t)key_hash(key) & (size - 1);; h = (h + 1) & (size - 1)) {
            if (!slots[h]) {
                if (kept != i) memmove(base + kept * item_size, item, item_size);
                slots[h] = ++kept;
                break;
            }
            uint8_t *prev = base + (slots[h] - 1) * item_size;
            spanhost_str other;
            memcpy(&other, prev, sizeof other);
            if (other.len == key.len && (!key.len || !memcmp(other.ptr, key.ptr, key.len))) {
                memmove(prev, item, item_size);
                break;
            }
        }
    }
    *count = kept;
    return 0;
}
