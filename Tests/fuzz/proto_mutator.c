/* A structure-aware mutator for the otlp_proto target, included by fuzz_decoder.c.
 *
 * Byte mutations of a protobuf request mostly break a length prefix, so the decoder stops at
 * the first message. This mutator reads the input as a tree of fields (a length-delimited field
 * whose payload reads whole as fields is a message), changes the tree and writes it back with
 * every length right: it deletes, duplicates or grafts fields (an attribute into a span, a span
 * into a scope, a value inside a value), renumbers them, changes wire types, sets varints to edge
 * values and mutates strings and bytes in place (invalid UTF-8 included). It starts from the
 * committed corpus, requests the OpenTelemetry SDK made. Half the time libFuzzer's own byte
 * mutations run instead. */

#define PM_MAX_NODES 4096
#define PM_MAX_DEPTH 24
#define PM_NONE (-1)

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

typedef struct pm_node {
    uint32_t field, wire;
    uint64_t number;       /* varint, fixed64 or fixed32 value */
    const uint8_t *data;   /* a length-delimited field that is not a message: its bytes */
    size_t len;
    int is_message;
    int first_child, next;
} pm_node;

typedef struct pm_tree {
    pm_node nodes[PM_MAX_NODES];
    int count;
    int root; /* a message node holding the top-level fields */
    /* Bytes of mutated payloads, for this call only. */
    uint8_t scratch[1 << 16];
    size_t scratch_used;
} pm_tree;

static pm_tree pm;

static int pm_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *out = v; return 0; }
    }
    return -1;
}

static int pm_new(void) {
    if (pm.count >= PM_MAX_NODES) return PM_NONE;
    pm_node *n = &pm.nodes[pm.count];
    memset(n, 0, sizeof *n);
    n->first_child = n->next = PM_NONE;
    return pm.count++;
}

/* Reads [p, end) as fields under `parent`; -1 when the bytes are not a message. */
static int pm_parse(int parent, const uint8_t *p, const uint8_t *end, int depth) {
    int last = PM_NONE;
    while (p < end) {
        uint64_t tag, v;
        if (pm_varint(&p, end, &tag)) return -1;
        uint32_t field = (uint32_t)(tag >> 3), wire = (uint32_t)(tag & 7);
        if (field == 0 || field > 64) return -1;
        int n = pm_new();
        if (n == PM_NONE) return -1;
        pm.nodes[n].field = field;
        pm.nodes[n].wire = wire;
        if (wire == 0) {
            if (pm_varint(&p, end, &v)) return -1;
            pm.nodes[n].number = v;
        } else if (wire == 1 || wire == 5) {
            size_t k = wire == 1 ? 8 : 4;
            if ((size_t)(end - p) < k) return -1;
            v = 0;
            memcpy(&v, p, k);
            pm.nodes[n].number = v;
            p += k;
        } else if (wire == 2) {
            if (pm_varint(&p, end, &v) || v > (uint64_t)(end - p)) return -1;
            pm.nodes[n].data = p;
            pm.nodes[n].len = (size_t)v;
            int mark = pm.count;
            if (depth < PM_MAX_DEPTH && v > 0 && pm_parse(n, p, p + v, depth + 1) == 0) {
                pm.nodes[n].is_message = 1;
            } else {
                pm.count = mark; /* not a message: drop what the attempt made */
                pm.nodes[n].first_child = PM_NONE;
            }
            p += v;
        } else {
            return -1;
        }
        if (last == PM_NONE) pm.nodes[parent].first_child = n;
        else pm.nodes[last].next = n;
        last = n;
    }
    return 0;
}

static size_t pm_put_varint(uint8_t *out, uint64_t v) {
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        out[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static size_t pm_size(int n, int depth);

/* Depth guards the recursion only: mutations copy subtrees whole, so the tree has no cycles. */
static size_t pm_children_size(int n, int depth) {
    size_t total = 0;
    if (depth > PM_MAX_DEPTH * 2) return 0;
    for (int c = pm.nodes[n].first_child; c != PM_NONE; c = pm.nodes[c].next) total += pm_size(c, depth);
    return total;
}

static size_t pm_payload(int n, int depth) {
    return pm.nodes[n].is_message ? pm_children_size(n, depth + 1) : pm.nodes[n].len;
}

static size_t pm_size(int n, int depth) {
    uint8_t tmp[10];
    const pm_node *x = &pm.nodes[n];
    size_t size = pm_put_varint(tmp, (uint64_t)x->field << 3 | x->wire);
    switch (x->wire) {
    case 0: return size + pm_put_varint(tmp, x->number);
    case 1: return size + 8;
    case 5: return size + 4;
    default: {
        size_t payload = pm_payload(n, depth);
        return size + pm_put_varint(tmp, payload) + payload;
    }
    }
}

/* Writes the fields under n (the caller checked the room with pm_children_size). */
static size_t pm_write_children(int n, uint8_t *out, int depth);

static size_t pm_write(int n, uint8_t *out, int depth) {
    const pm_node *x = &pm.nodes[n];
    size_t k = pm_put_varint(out, (uint64_t)x->field << 3 | x->wire);
    if (x->wire == 0) return k + pm_put_varint(out + k, x->number);
    if (x->wire == 1 || x->wire == 5) {
        size_t w = x->wire == 1 ? 8 : 4;
        memcpy(out + k, &x->number, w);
        return k + w;
    }
    size_t payload = pm_payload(n, depth);
    k += pm_put_varint(out + k, payload);
    if (x->is_message) return k + pm_write_children(n, out + k, depth + 1);
    if (payload) memcpy(out + k, x->data, payload);
    return k + payload;
}

static size_t pm_write_children(int n, uint8_t *out, int depth) {
    size_t used = 0;
    if (depth > PM_MAX_DEPTH * 2) return 0;
    for (int c = pm.nodes[n].first_child; c != PM_NONE; c = pm.nodes[c].next) used += pm_write(c, out + used, depth);
    return used;
}

/* A copy of the subtree at n (its siblings not included), or PM_NONE when out of nodes. */
static int pm_copy(int n) {
    int copy = pm_new();
    if (copy == PM_NONE) return PM_NONE;
    pm.nodes[copy] = pm.nodes[n];
    pm.nodes[copy].next = pm.nodes[copy].first_child = PM_NONE;
    int last = PM_NONE;
    for (int c = pm.nodes[n].first_child; c != PM_NONE; c = pm.nodes[c].next) {
        int child = pm_copy(c);
        if (child == PM_NONE) break;
        if (last == PM_NONE) pm.nodes[copy].first_child = child;
        else pm.nodes[last].next = child;
        last = child;
    }
    return copy;
}

/* The parent of node n (the root's children included), or PM_NONE. */
static int pm_parent(int n) {
    for (int i = 0; i < pm.count; i++)
        for (int c = pm.nodes[i].first_child; c != PM_NONE; c = pm.nodes[c].next)
            if (c == n) return i;
    return PM_NONE;
}

static int pm_random_message(unsigned *seed) {
    for (int tries = 0; tries < 16; tries++) {
        int n = (int)(rand_r(seed) % (unsigned)pm.count);
        if (pm.nodes[n].is_message) return n;
    }
    return pm.root;
}

static void pm_mutate(unsigned *seed) {
    int n = 1 + (int)(rand_r(seed) % (unsigned)(pm.count - 1)); /* never the root */
    pm_node *x = &pm.nodes[n];
    static const uint64_t edges[] = {0, 1, 2, 0x7f, 0x80, 0x7fffffff, 0xffffffff, 0x8000000000000000ull, ~0ull};
    switch (rand_r(seed) % 7) {
    case 0: { /* delete */
        int parent = pm_parent(n);
        if (parent == PM_NONE) break;
        if (pm.nodes[parent].first_child == n) pm.nodes[parent].first_child = x->next;
        else
            for (int c = pm.nodes[parent].first_child; c != PM_NONE; c = pm.nodes[c].next)
                if (pm.nodes[c].next == n) { pm.nodes[c].next = x->next; break; }
        break;
    }
    case 1: { /* duplicate in place: a repeated field, or a singular one given twice */
        int copy = pm_copy(n);
        if (copy == PM_NONE) break;
        pm.nodes[copy].next = pm.nodes[n].next;
        pm.nodes[n].next = copy;
        break;
    }
    case 2: { /* graft a copy of n into another message, first */
        int target = pm_random_message(seed), copy = pm_copy(n);
        if (copy == PM_NONE) break;
        pm.nodes[copy].next = pm.nodes[target].first_child;
        pm.nodes[target].first_child = copy;
        break;
    }
    case 3: x->field = 1 + rand_r(seed) % 16; break;
    case 4: { /* another wire type; a message keeps its children for when it turns back */
        static const uint32_t wires[] = {0, 1, 2, 5};
        x->wire = wires[rand_r(seed) % 4];
        break;
    }
    case 5: x->number = edges[rand_r(seed) % (sizeof edges / sizeof edges[0])]; break;
    default: /* change a string or bytes payload */
        if (x->wire == 2 && !x->is_message) {
            size_t room = sizeof pm.scratch - pm.scratch_used, max = x->len * 2 + 16;
            if (max > room) break;
            uint8_t *buf = pm.scratch + pm.scratch_used;
            if (x->len) memcpy(buf, x->data, x->len);
            size_t len = LLVMFuzzerMutate(buf, x->len, max);
            pm.scratch_used += max;
            x->data = buf;
            x->len = len;
        } else {
            x->number = x->number ^ (1ull << (rand_r(seed) % 64));
        }
        break;
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    if (seed % 2 == 0) return LLVMFuzzerMutate(data, size, max_size);
    pm.count = 0;
    pm.scratch_used = 0;
    pm.root = pm_new();
    pm.nodes[pm.root].is_message = 1;
    if (pm_parse(pm.root, data, data + size, 0) != 0 || pm.count < 2) return LLVMFuzzerMutate(data, size, max_size);
    int rounds = 1 + (int)(seed % 4);
    for (int i = 0; i < rounds; i++) pm_mutate(&seed);
    /* Payloads point into `data`, which the result overwrites: write to a copy first. */
    static uint8_t out[1 << 20];
    size_t n = pm_children_size(pm.root, 0);
    if (n > max_size || n > sizeof out) return LLVMFuzzerMutate(data, size, max_size);
    if (pm_write_children(pm.root, out, 0) != n) abort();
    memcpy(data, out, n);
    return n;
}
