/* Arena blocks of 128 B to 8 KiB come from 256 KiB slabs mapped for them alone, one size per
 * slab. A slab whose blocks are all free goes back to the system (a few stay cached for the
 * next requests), so the memory a burst of held traces took is returned once they are decided,
 * whichever thread frees them. With malloc the same blocks stayed in the allocator's per-thread
 * heaps, pinned by the odd live allocation between them. */
#include "spanhost_core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Under AddressSanitizer free and never-used blocks are poisoned, so the fuzzers still catch a
 * read past a block or after its batch was released. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SH_POOL_ASAN 1
#endif
#elif defined(__SANITIZE_ADDRESS__)
#define SH_POOL_ASAN 1
#endif
#ifdef SH_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SLAB_SIZE (256u * 1024u)
#define MIN_SHIFT 7u  /* 128 B */
#define MAX_SHIFT 13u /* 8 KiB */
#define CLASSES (MAX_SHIFT - MIN_SHIFT + 1u)
/* Empty slabs a class keeps for reuse before unmapping; sh_pool_release_cached drops them. */
#define CACHED_EMPTY_SLABS 16u

typedef struct pool_block {
    struct pool_block *next;
} pool_block;

/* The header at the start of every slab; blocks follow it. Slabs are SLAB_SIZE-aligned, so a
 * block's slab is its address rounded down. */
typedef struct pool_slab {
    struct pool_slab *prev, *next; /* in its class's partial or empty list (NULL links when full) */
    pool_block *free;
    uint32_t cls;
    uint32_t used;      /* blocks handed out */
    uint32_t capacity;  /* blocks in the slab */
    uint32_t untouched; /* blocks never handed out start at this index */
    int listed;         /* on the partial (1) or empty (2) list, or full (0) */
} pool_slab;

typedef struct pool_class {
    pthread_mutex_t lock;
    pool_slab *partial; /* some blocks used, some free */
    pool_slab *empty;   /* no block used; kept for reuse */
    size_t empty_count;
} pool_class;

static pool_class classes[CLASSES] = {
#define SH_CLASS_INIT {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0}
    SH_CLASS_INIT, SH_CLASS_INIT, SH_CLASS_INIT, SH_CLASS_INIT, SH_CLASS_INIT, SH_CLASS_INIT, SH_CLASS_INIT,
#undef SH_CLASS_INIT
};

static atomic_size_t mapped_bytes;

size_t sh_pool_mapped_bytes(void) { return atomic_load_explicit(&mapped_bytes, memory_order_relaxed); }

static size_t block_size(uint32_t cls) { return (size_t)1 << (cls + MIN_SHIFT); }

/* The first block starts after the header, at the block size (so blocks stay aligned to it). */
static size_t first_block_offset(uint32_t cls) {
    size_t size = block_size(cls);
    return size >= sizeof(pool_slab) ? size : ((sizeof(pool_slab) + size - 1) / size) * size;
}

static int class_of(size_t size, uint32_t *cls) {
    if (size > ((size_t)1 << MAX_SHIFT)) return 0;
    uint32_t c = 0;
    while (block_size(c) < size) c++;
    *cls = c;
    return 1;
}

size_t sh_pool_block_size(size_t size) {
    uint32_t cls;
    return class_of(size, &cls) ? block_size(cls) : size;
}

static void unlink_slab(pool_slab **list, pool_slab *s) {
    if (s->prev) s->prev->next = s->next; else *list = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static void push_slab(pool_slab **list, pool_slab *s) {
    s->prev = NULL;
    s->next = *list;
    if (*list) (*list)->prev = s;
    *list = s;
}

/* A new slab aligned to its size: map twice the size and unmap what lies outside. */
static pool_slab *map_slab(uint32_t cls) {
    size_t len = 2 * (size_t)SLAB_SIZE;
    char *raw = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uintptr_t start = ((uintptr_t)raw + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1);
    size_t head = start - (uintptr_t)raw;
    if (head) munmap(raw, head);
    if (len - head - SLAB_SIZE) munmap((char *)start + SLAB_SIZE, len - head - SLAB_SIZE);
    atomic_fetch_add_explicit(&mapped_bytes, SLAB_SIZE, memory_order_relaxed);
    pool_slab *s = (pool_slab *)start; /* fresh pages are zero */
    s->cls = cls;
    s->capacity = (uint32_t)((SLAB_SIZE - first_block_offset(cls)) / block_size(cls));
    POISON((char *)s + first_block_offset(cls), SLAB_SIZE - first_block_offset(cls));
    return s;
}

static void unmap_slab(pool_slab *s) {
    UNPOISON(s, SLAB_SIZE);
    munmap(s, SLAB_SIZE);
    atomic_fetch_sub_explicit(&mapped_bytes, SLAB_SIZE, memory_order_relaxed);
}

void *sh_pool_alloc(size_t size) {
    uint32_t cls;
    if (!class_of(size, &cls)) return malloc(size);
    pool_class *pc = &classes[cls];
    pthread_mutex_lock(&pc->lock);
    pool_slab *s = pc->partial;
    if (!s) {
        s = pc->empty;
        if (s) {
            unlink_slab(&pc->empty, s);
            pc->empty_count--;
        } else if (!(s = map_slab(cls))) {
            pthread_mutex_unlock(&pc->lock);
            return NULL;
        }
        push_slab(&pc->partial, s);
        s->listed = 1;
    }
    void *p;
    if (s->free) {
        p = s->free;
        UNPOISON(p, block_size(cls));
        s->free = s->free->next;
    } else {
        p = (char *)s + first_block_offset(cls) + (size_t)s->untouched * block_size(cls);
        s->untouched++;
        UNPOISON(p, block_size(cls));
    }
    if (++s->used == s->capacity) {
        unlink_slab(&pc->partial, s);
        s->listed = 0;
    }
    pthread_mutex_unlock(&pc->lock);
    return p;
}

void sh_pool_free(void *p, size_t size) {
    if (!p) return;
    uint32_t cls;
    if (!class_of(size, &cls)) {
        free(p);
        return;
    }
    pool_slab *s = (pool_slab *)((uintptr_t)p & ~(uintptr_t)(SLAB_SIZE - 1));
    pool_class *pc = &classes[cls];
    pool_slab *unmap = NULL;
    pthread_mutex_lock(&pc->lock);
    pool_block *b = (pool_block *)p;
    b->next = s->free;
    s->free = b;
    POISON(b, block_size(cls));
    if (s->listed == 0) {
        push_slab(&pc->partial, s);
        s->listed = 1;
    }
    if (--s->used == 0) {
        unlink_slab(&pc->partial, s);
        if (pc->empty_count < CACHED_EMPTY_SLABS) {
            push_slab(&pc->empty, s);
            s->listed = 2;
            pc->empty_count++;
        } else {
            unmap = s;
        }
    }
    pthread_mutex_unlock(&pc->lock);
    if (unmap) unmap_slab(unmap);
}

void sh_pool_release_cached(void) {
    for (uint32_t cls = 0; cls < CLASSES; cls++) {
        pool_class *pc = &classes[cls];
        pthread_mutex_lock(&pc->lock);
        pool_slab *list = pc->empty;
        pc->empty = NULL;
        pc->empty_count = 0;
        pthread_mutex_unlock(&pc->lock);
        while (list) {
            pool_slab *next = list->next;
            unmap_slab(list);
            list = next;
        }
    }
}
