/*
 * OTTL, the expression language of the Collector's filter and transform processors: the subset
 * README ("Expressions") lists, compiled once into a tree and run against the span structs.
 * One engine for every plugin (through the host table) and for the host's own rules. Functions
 * that plugins add are called through libffi with a call interface built when they register.
 *
 *   condition := or;  or := and ("or" and)*;  and := not ("and" not)*;  not := "not" not | cmp
 *   cmp       := value [("==" | "!=" | "<" | "<=" | ">" | ">=") value]
 *   value     := path | literal | list | call | "(" condition ")"
 *   statement := call ["where" condition]      (an editor: set, delete_key, replace_pattern,
 *                                               truncate_all, limit)
 *   path      := attributes["k"] | attributes | resource.attributes["k"] | resource.attributes
 *              | name | kind | status.code | status.message | trace_id.string | span_id.string
 *              | parent_span_id.string | start_time_unix_nano | end_time_unix_nano | duration
 *              | instrumentation_scope.name
 *              in the spanevent context: attributes["k"] | attributes | name | time_unix_nano
 *              (the event's) | span.<a span path> | resource.attributes["k"]
 *   literal   := "string" | 42 | 4.2 | true | false | nil | SPAN_KIND_* | STATUS_CODE_*
 *   list      := "[" [literal ("," literal)*] "]"
 * A missing attribute is nil: it equals only nil, and ordering comparisons with nil are false.
 */
#include "spanhost_core.h"

#include <ctype.h>
#include <errno.h>
#include <ffi.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- Functions plugins add --------------------------------------------------------------- */

#define MAX_ARGS 8

/* Every function has a libffi call interface. Signatures of at most two string (or bytes)
 * and int arguments are called instead through a pointer of their exact C type: ffi_call
 * costs about 850 instructions a call on x86-64 (`make bench` shows what that does to a
 * condition run per span), a typed call a handful. Results and the status are pointers, so
 * only the arguments make the shape. */
enum { SHAPE_FFI, SHAPE_NONE, SHAPE_S, SHAPE_I, SHAPE_SS, SHAPE_SI, SHAPE_IS, SHAPE_II };

typedef int32_t (*call_none)(void *, spanhost_status *);
typedef int32_t (*call_s)(spanhost_str, void *, spanhost_status *);
typedef int32_t (*call_i)(int64_t, void *, spanhost_status *);
typedef int32_t (*call_ss)(spanhost_str, spanhost_str, void *, spanhost_status *);
typedef int32_t (*call_si)(spanhost_str, int64_t, void *, spanhost_status *);
typedef int32_t (*call_is)(int64_t, spanhost_str, void *, spanhost_status *);
typedef int32_t (*call_ii)(int64_t, int64_t, void *, spanhost_status *);

typedef struct sh_function {
    char *name, *library, *description;
    uint32_t result, nargs, args[MAX_ARGS];
    void (*fn)(void);
    int shape;
    ffi_cif cif;
    ffi_type *types[MAX_ARGS + 2];
    struct sh_function *next;
} sh_function;

/* Newest first; entries are never freed: expressions compiled earlier keep calling the
 * version they were compiled against (its image stays loaded). */
static sh_function *functions;
static pthread_mutex_t functions_lock = PTHREAD_MUTEX_INITIALIZER;

/* spanhost_str and spanhost_bytes pass by value as {pointer, size_t}. */
static ffi_type str_type, *str_elements[] = {&ffi_type_pointer, &ffi_type_uint64, NULL};

static void init_str_type(void) {
    str_type.size = 0;
    str_type.alignment = 0;
    str_type.type = FFI_TYPE_STRUCT;
    str_type.elements = str_elements;
}

static ffi_type *ffi_type_of(uint32_t t) {
    switch (t) {
    case SPANHOST_ARG_STRING:
    case SPANHOST_ARG_BYTES: return &str_type;
    case SPANHOST_ARG_INT: return &ffi_type_sint64;
    case SPANHOST_ARG_DOUBLE: return &ffi_type_double;
    case SPANHOST_ARG_BOOL: return &ffi_type_sint32;
    default: return NULL;
    }
}

static const char *type_name(uint32_t t) {
    switch (t) {
    case SPANHOST_ARG_STRING: return "string";
    case SPANHOST_ARG_INT: return "int";
    case SPANHOST_ARG_DOUBLE: return "double";
    case SPANHOST_ARG_BOOL: return "bool";
    case SPANHOST_ARG_BYTES: return "bytes";
    default: return "?";
    }
}

int sh_function_register(const spanhost_function *f, const char *library, char *err, size_t err_cap) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_str_type);
    if (!f->name || !f->fn || f->arg_count > MAX_ARGS || (f->arg_count && !f->args) || !ffi_type_of(f->result)) {
        snprintf(err, err_cap, "function %s: needs a name, a function, at most %d arguments and known types",
                 f->name ? f->name : "(unnamed)", MAX_ARGS);
        return -1;
    }
    for (size_t i = 0; f->name[i]; i++)
        if (!(isalnum((unsigned char)f->name[i]) || f->name[i] == '_')) {
            snprintf(err, err_cap, "function '%s': names are letters, digits and _", f->name);
            return -1;
        }
    sh_function *e = (sh_function *)calloc(1, sizeof *e);
    if (!e) return -1;
    e->name = strdup(f->name);
    e->library = strdup(library);
    e->description = f->description ? strdup(f->description) : NULL;
    e->result = f->result;
    e->nargs = f->arg_count;
    e->fn = f->fn;
    for (uint32_t i = 0; i < f->arg_count; i++) {
        if (!(e->types[i] = ffi_type_of(f->args[i]))) {
            snprintf(err, err_cap, "function %s: argument %u has an unknown type %u", f->name, i + 1, f->args[i]);
            return -1; /* the entry leaks: registration failures are rare and final */
        }
        e->args[i] = f->args[i];
    }
    e->types[e->nargs] = &ffi_type_pointer;     /* result */
    e->types[e->nargs + 1] = &ffi_type_pointer; /* status */
    if (ffi_prep_cif(&e->cif, FFI_DEFAULT_ABI, e->nargs + 2, &ffi_type_sint32, e->types) != FFI_OK) {
        snprintf(err, err_cap, "function %s: libffi cannot build its call interface", f->name);
        return -1;
    }
    int kinds[2] = {0, 0}; /* 1 string, 2 int, 3 other */
    for (uint32_t i = 0; i < e->nargs && i < 2; i++)
        kinds[i] = e->args[i] == SPANHOST_ARG_STRING || e->args[i] == SPANHOST_ARG_BYTES ? 1 : e->args[i] == SPANHOST_ARG_INT ? 2 : 3;
    if (e->nargs == 0) e->shape = SHAPE_NONE;
    else if (e->nargs == 1 && kinds[0] < 3) e->shape = kinds[0] == 1 ? SHAPE_S : SHAPE_I;
    else if (e->nargs == 2 && kinds[0] < 3 && kinds[1] < 3)
        e->shape = kinds[0] == 1 ? (kinds[1] == 1 ? SHAPE_SS : SHAPE_SI) : (kinds[1] == 1 ? SHAPE_IS : SHAPE_II);
    else e->shape = SHAPE_FFI;
    pthread_mutex_lock(&functions_lock);
    e->next = functions;
    functions = e;
    pthread_mutex_unlock(&functions_lock);
    return 0;
}

static const sh_function *find_function(const char *name, size_t len) {
    static pthread_once_t builtins = PTHREAD_ONCE_INIT;
    pthread_once(&builtins, sh_register_builtin_functions);
    pthread_mutex_lock(&functions_lock);
    const sh_function *f = functions;
    while (f && !(strlen(f->name) == len && !memcmp(f->name, name, len))) f = f->next;
    pthread_mutex_unlock(&functions_lock);
    return f;
}

int sh_function_signature(const char *name, char *out, size_t cap) {
    const sh_function *f = find_function(name, strlen(name));
    if (!f) return -1;
    size_t n = (size_t)snprintf(out, cap, "%s(", f->name);
    for (uint32_t i = 0; i < f->nargs && n < cap; i++) n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", type_name(f->args[i]));
    if (n < cap) snprintf(out + n, cap - n, ") -> %s  [%s]%s%s", type_name(f->result), f->library,
                          f->description ? "  " : "", f->description ? f->description : "");
    return 0;
}

/* --- Literal text ----------------------------------------------------------------------- */

/* The text of string literals lives as long as the process, one copy for equal literals. A
 * `set` then lends it to batches instead of copying it into each one, and a batch that
 * outlives its expression (queued for an exporter across a reload) still points at it. It
 * grows only with the distinct literals ever compiled. */
typedef struct literal {
    struct literal *next;
    size_t len;
    char text[];
} literal;

static literal *literals[256];
static pthread_mutex_t literals_lock = PTHREAD_MUTEX_INITIALIZER;

/* The kept, NUL-terminated copy of `text`; NULL when out of memory. */
static const char *keep_literal(const char *text, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)text[i]) * 16777619u;
    pthread_mutex_lock(&literals_lock);
    literal **bucket = &literals[h & 255], *l = *bucket;
    while (l && !(l->len == len && !memcmp(l->text, text, len))) l = l->next;
    if (!l && (l = (literal *)malloc(sizeof *l + len + 1))) {
        l->len = len;
        memcpy(l->text, text, len);
        l->text[len] = 0;
        l->next = *bucket;
        *bucket = l;
    }
    pthread_mutex_unlock(&literals_lock);
    return l ? l->text : NULL;
}

int sh_expr_literal_contains(const void *ptr, size_t len) {
    const char *p = (const char *)ptr;
    int found = 0;
    pthread_mutex_lock(&literals_lock);
    for (size_t i = 0; i < 256 && !found; i++)
        for (const literal *l = literals[i]; l && !found; l = l->next)
            found = p >= l->text && len <= l->len && (size_t)(p - l->text) <= l->len - len;
    pthread_mutex_unlock(&literals_lock);
    return found;
}

/* --- Values and the tree ---------------------------------------------------------------- */

enum { V_NIL, V_STR, V_INT, V_DBL, V_BOOL, V_BYTES, V_MAP, V_LIST };

typedef struct xvalue {
    int type;
    spanhost_str s;          /* V_STR, V_BYTES */
    int64_t i;               /* V_INT, V_BOOL */
    double d;                /* V_DBL */
    spanhost_kv_list *map;   /* V_MAP: a whole attribute map (editors' target) */
    const struct node *list; /* V_LIST: the list node */
    char buf[33];            /* hex ids */
} xvalue;

enum { N_OR, N_AND, N_NOT, N_CMP, N_LIT, N_PATH, N_LIST, N_ISMATCH, N_CALL, N_EDITOR };
enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };
enum { P_ATTR, P_ATTRS, P_RES_ATTR, P_RES_ATTRS, P_NAME, P_KIND, P_STATUS_CODE, P_STATUS_MSG, P_TRACE_ID, P_SPAN_ID,
       P_PARENT_ID, P_START, P_END, P_DURATION, P_SCOPE, P_EV_ATTR, P_EV_ATTRS, P_EV_NAME, P_EV_TIME };
enum { E_SET, E_DELETE_KEY, E_REPLACE_PATTERN, E_TRUNCATE_ALL, E_LIMIT };
enum { RX_REGEX, RX_CONTAINS, RX_PREFIX, RX_SUFFIX, RX_EXACT };

/* Patterns like "^/api/" are plain text with anchors: they are matched with memcmp, which
 * costs a fraction of regexec. Returns RX_REGEX for anything else. */
static int literal_pattern(const char *pattern, spanhost_str *text) {
    size_t len = strlen(pattern);
    int head = len > 0 && pattern[0] == '^', tail = len > (size_t)head && pattern[len - 1] == '$';
    text->ptr = pattern + head;
    text->len = len - (size_t)head - (size_t)tail;
    for (size_t i = 0; i < text->len; i++)
        if (strchr(".[]()*+?{}|\\^$", text->ptr[i])) return RX_REGEX;
    return head && tail ? RX_EXACT : head ? RX_PREFIX : tail ? RX_SUFFIX : RX_CONTAINS;
}

/* glibc's regcomp copies a repeated group once per repetition, and stacked quantifiers
 * ("a++++") multiply that: a short pattern could take gigabytes to compile. Patterns are kept
 * to what a condition needs: no quantifier right after another, and the {n,m} bounds of the
 * whole pattern multiplied together at most 1000. NULL when fine, else why not. */
static const char *untamed_pattern(const char *pattern) {
    double product = 1;
    int after_quantifier = 0;
    if (strlen(pattern) > 4096) return "a pattern is at most 4096 bytes";
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            after_quantifier = 0;
            continue;
        }
        if (*p == '[') { /* a bracket expression is one atom: skip to its ']' */
            p++;
            if (*p == '^') p++;
            if (*p == ']') p++;
            while (*p && *p != ']') p++;
            if (!*p) break;
            after_quantifier = 0;
            continue;
        }
        int quantifier = *p == '*' || *p == '+' || *p == '?' || *p == '{';
        if (quantifier && after_quantifier) return "a quantifier may not follow another (like \"a++\")";
        if (*p == '{') {
            char *end;
            long low = strtol(p + 1, &end, 10), high = low;
            if (*end == ',') high = end[1] == '}' ? 1000 : strtol(end + 1, &end, 10);
            if (high < low) high = low;
            product *= (double)(high > 0 ? high : 1);
            if (product > 1000) return "repetition bounds {n,m} may multiply to at most 1000";
            while (*p && *p != '}') p++;
            if (!*p) break;
        }
        after_quantifier = quantifier;
    }
    return NULL;
}

/* Collector configs write RE2 patterns: the classes \d \s \w (and \D \S \W) are rewritten in
 * POSIX terms, and (?: groups become plain ones, so those patterns work here unchanged.
 * Returns a malloc'd pattern for regcomp. */
static char *posix_pattern(const char *re2) {
    size_t len = strlen(re2);
    char *out = (char *)malloc(len * 14 + 1), *o = out; /* "\S" becomes the longest: [^[:space:]] */
    int in_bracket = 0;
    if (!out) return NULL;
    for (const char *p = re2; *p; p++) {
        if (*p == '\\' && p[1] && strchr("dDsSwW", p[1])) {
            static const char *classes[] = {"0-9", "[:space:]", "[:alnum:]_"};
            int kind = p[1] == 'd' || p[1] == 'D' ? 0 : p[1] == 's' || p[1] == 'S' ? 1 : 2, negated = isupper((unsigned char)p[1]);
            if (!in_bracket) o += sprintf(o, "[%s%s]", negated ? "^" : "", classes[kind]);
            else if (!negated) o += sprintf(o, "%s", classes[kind]);
            else o += sprintf(o, "\\%c", p[1]); /* no POSIX form inside [...]: left as written */
            p++;
            continue;
        }
        if (*p == '\\' && p[1]) {
            *o++ = *p++;
            *o++ = *p;
            continue;
        }
        if (!in_bracket && *p == '(' && p[1] == '?' && p[2] == ':') {
            *o++ = '(';
            p += 2;
            continue;
        }
        if (*p == '[' && !in_bracket) {
            in_bracket = 1;
            *o++ = *p;
            if (p[1] == '^') *o++ = *++p;
            if (p[1] == ']') *o++ = *++p;
            continue;
        }
        if (*p == ']' && in_bracket) in_bracket = 0;
        *o++ = *p;
    }
    *o = 0;
    return out;
}

static int literal_match(int kind, spanhost_str want, spanhost_str s) {
    if (s.len < want.len) return 0;
    switch (kind) {
    case RX_EXACT: return s.len == want.len && (!want.len || !memcmp(s.ptr, want.ptr, want.len));
    case RX_PREFIX: return !want.len || !memcmp(s.ptr, want.ptr, want.len);
    case RX_SUFFIX: return !want.len || !memcmp(s.ptr + s.len - want.len, want.ptr, want.len);
    default:
        for (size_t i = 0; i + want.len <= s.len; i++)
            if (!want.len || (s.ptr[i] == want.ptr[0] && !memcmp(s.ptr + i, want.ptr, want.len))) return 1;
        return 0;
    }
}

typedef struct node {
    int op, sub;
    int height;         /* 1 for a leaf: the evaluator recurses this deep */
    struct node **kids; /* operands, arguments or list items */
    size_t nkids;
    xvalue lit;         /* N_LIT; N_PATH: the key of attributes["key"] in lit.s (kept text) */
    regex_t re;         /* N_ISMATCH, replace_pattern */
    int has_re;
    int literal;        /* N_ISMATCH: a pattern of plain characters, matched with memcmp (RX_*) */
    spanhost_str lit_text;
    const sh_function *fn;
    struct node *where; /* N_EDITOR */
} node;

struct spanhost_expr {
    uint32_t kind, context;
    node *root;
};

static void node_free(node *n) {
    if (!n) return;
    for (size_t i = 0; i < n->nkids; i++) node_free(n->kids[i]);
    free(n->kids);
    node_free(n->where);
    if (n->has_re) regfree(&n->re);
    free(n);
}

/* --- Parsing ---------------------------------------------------------------------------- */

typedef struct parser {
    const char *text, *p, *end;
    uint32_t context;
    char *err;
    size_t err_cap;
    int failed;
    int depth; /* nesting of the parser's own recursion: parentheses, `not`, call arguments */
} parser;

/* Nesting past these is refused at compile: the parser, the evaluator and node_free recurse, so
 * a condition of 100,000 parentheses (or a chain of 100,000 `and`) must not reach the stack. */
#define OTTL_MAX_NESTING 64
#define OTTL_MAX_HEIGHT 1000

static node *parse_fail(parser *ps, const char *what) {
    if (!ps->failed) snprintf(ps->err, ps->err_cap, "column %d: %s", (int)(ps->p - ps->text) + 1, what);
    ps->failed = 1;
    return NULL;
}

static void space(parser *ps) {
    while (ps->p < ps->end && isspace((unsigned char)*ps->p)) ps->p++;
}

/* Consumes `word` (a keyword or punctuation) if it comes next. */
static int eat(parser *ps, const char *word) {
    space(ps);
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n)) return 0;
    if (isalpha((unsigned char)word[0]) && ps->p + n < ps->end && (isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_')) return 0;
    ps->p += n;
    return 1;
}

static node *new_node(parser *ps, int op) {
    node *n = (node *)calloc(1, sizeof *n);
    if (!n) return parse_fail(ps, "out of memory");
    n->op = op;
    n->height = 1;
    return n;
}

static int add_kid(parser *ps, node *n, node *kid) {
    if (!kid) return -1;
    node **grown = (node **)realloc(n->kids, (n->nkids + 1) * sizeof *grown);
    if (!grown) {
        node_free(kid);
        parse_fail(ps, "out of memory");
        return -1;
    }
    n->kids = grown;
    n->kids[n->nkids++] = kid;
    if (kid->height + 1 > n->height) n->height = kid->height + 1;
    if (n->height > OTTL_MAX_HEIGHT) {
        parse_fail(ps, "expression too long: more than 1000 operators nested in one another");
        return -1;
    }
    return 0;
}

/* A "quoted" string with \" and \\ escapes into n->lit, as kept literal text. */
static int quoted(parser *ps, node *n) {
    space(ps);
    if (ps->p >= ps->end || *ps->p != '"') return 0;
    ps->p++;
    char *out = (char *)malloc((size_t)(ps->end - ps->p) + 1);
    size_t len = 0;
    if (!out) return 0;
    while (ps->p < ps->end && *ps->p != '"') {
        if (*ps->p == '\\' && ps->p + 1 < ps->end) ps->p++;
        out[len++] = *ps->p++;
    }
    if (ps->p >= ps->end) {
        free(out);
        parse_fail(ps, "unterminated string");
        return 0;
    }
    ps->p++;
    const char *kept = keep_literal(out, len);
    free(out);
    if (!kept) {
        parse_fail(ps, "out of memory");
        return 0;
    }
    n->lit.type = V_STR;
    n->lit.s.ptr = kept;
    n->lit.s.len = len;
    return 1;
}

static node *parse_or(parser *ps);
static node *parse_value(parser *ps);

static node *parse_literal(parser *ps) {
    static const struct { const char *name; int64_t value; } constants[] = {
        {"SPAN_KIND_UNSPECIFIED", 0}, {"SPAN_KIND_INTERNAL", 1}, {"SPAN_KIND_SERVER", 2}, {"SPAN_KIND_CLIENT", 3},
        {"SPAN_KIND_PRODUCER", 4}, {"SPAN_KIND_CONSUMER", 5}, {"STATUS_CODE_UNSET", 0}, {"STATUS_CODE_OK", 1},
        {"STATUS_CODE_ERROR", 2}};
    node *n = new_node(ps, N_LIT);
    if (!n) return NULL;
    if (quoted(ps, n)) return n;
    if (ps->failed) return node_free(n), NULL;
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (eat(ps, constants[i].name)) {
            n->lit.type = V_INT;
            n->lit.i = constants[i].value;
            return n;
        }
    if (eat(ps, "true") || eat(ps, "false")) {
        n->lit.type = V_BOOL;
        n->lit.i = ps->p[-2] == 'u'; /* tr(u)e, fal(s)e */
        return n;
    }
    if (eat(ps, "nil")) return n;
    space(ps);
    if (ps->p < ps->end && (isdigit((unsigned char)*ps->p) || *ps->p == '-')) {
        char buf[64], *stop;
        size_t len = 0;
        while (ps->p + len < ps->end && len < sizeof buf - 1 && (isalnum((unsigned char)ps->p[len]) || strchr(".-+", ps->p[len]))) len++;
        memcpy(buf, ps->p, len);
        buf[len] = 0;
        errno = 0;
        if (strpbrk(buf, ".eE")) {
            n->lit.type = V_DBL;
            n->lit.d = strtod(buf, &stop);
        } else {
            n->lit.type = V_INT;
            n->lit.i = strtoll(buf, &stop, 10);
        }
        if (*stop) return node_free(n), parse_fail(ps, "not a number");
        if (errno == ERANGE && n->lit.type == V_INT)
            return node_free(n), parse_fail(ps, "integer literal out of range (-9223372036854775808 to 9223372036854775807)");
        if (errno == ERANGE && (n->lit.d > 1 || n->lit.d < -1))
            return node_free(n), parse_fail(ps, "number literal out of range (a double)");
        ps->p += len;
        return n;
    }
    node_free(n);
    return NULL;
}

/* The text at the parser starts with `prefix` (a context name and its dot). */
static int has_prefix(const parser *ps, const char *prefix) {
    size_t n = strlen(prefix);
    return (size_t)(ps->end - ps->p) > n && !memcmp(ps->p, prefix, n);
}

static node *parse_path(parser *ps) {
    static const struct { const char *name; int path; } fields[] = {
        {"status.code", P_STATUS_CODE}, {"status.message", P_STATUS_MSG}, {"trace_id.string", P_TRACE_ID},
        {"span_id.string", P_SPAN_ID}, {"parent_span_id.string", P_PARENT_ID}, {"start_time_unix_nano", P_START},
        {"end_time_unix_nano", P_END}, {"duration", P_DURATION}, {"instrumentation_scope.name", P_SCOPE}, {"scope.name", P_SCOPE},
        {"name", P_NAME}, {"kind", P_KIND}};
    int resource = eat(ps, "resource.attributes");
    /* The Collector's context prefixes: `span.name` in the span context is `name`, and
     * `spanevent.name` in the spanevent context the event's `name`. */
    space(ps);
    if (!resource && ps->context == SPANHOST_CONTEXT_SPAN && has_prefix(ps, "span.")) {
        ps->p += 5;
        node *n = parse_path(ps);
        return n || ps->failed ? n : parse_fail(ps, "expected a span path after span.");
    }
    if (!resource && ps->context == SPANHOST_CONTEXT_SPANEVENT && has_prefix(ps, "spanevent.")) ps->p += 10;
    if (!resource && ps->context == SPANHOST_CONTEXT_SPANEVENT) {
        space(ps);
        if (has_prefix(ps, "span.")) {
            /* span.<path>: the event's span, read as in the span context. */
            ps->p += 5;
            ps->context = SPANHOST_CONTEXT_SPAN;
            node *n = parse_path(ps);
            ps->context = SPANHOST_CONTEXT_SPANEVENT;
            return n || ps->failed ? n : parse_fail(ps, "expected a span path after span.");
        }
        int sub = eat(ps, "attributes") ? P_EV_ATTR : eat(ps, "name") ? P_EV_NAME : eat(ps, "time_unix_nano") ? P_EV_TIME : -1;
        if (sub < 0) {
            const char *at = ps->p;
            while (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || *ps->p == '_' || *ps->p == '.')) ps->p++;
            int word = ps->p > at && ps->p < ps->end && *ps->p != '(';
            ps->p = at;
            return word ? parse_fail(ps, "the spanevent context has attributes, name, time_unix_nano, span.* and resource.attributes") : NULL;
        }
        node *n = new_node(ps, N_PATH);
        if (!n) return NULL;
        n->sub = sub;
        if (sub == P_EV_ATTR) {
            if (!eat(ps, "[")) n->sub = P_EV_ATTRS;
            else if (!quoted(ps, n) || !eat(ps, "]")) return node_free(n), parse_fail(ps, "expected attributes[\"key\"]");
        }
        return n;
    }
    if (resource || eat(ps, "attributes")) {
        /* In the resource context, `attributes` are the resource's. */
        int res = resource || ps->context == SPANHOST_CONTEXT_RESOURCE;
        node *n = new_node(ps, N_PATH);
        if (!n) return NULL;
        if (!eat(ps, "[")) {
            n->sub = res ? P_RES_ATTRS : P_ATTRS;
            return n;
        }
        n->sub = res ? P_RES_ATTR : P_ATTR;
        if (!quoted(ps, n) || !eat(ps, "]")) return node_free(n), parse_fail(ps, "expected attributes[\"key\"]");
        return n;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (eat(ps, fields[i].name)) {
            if (ps->context == SPANHOST_CONTEXT_RESOURCE) return parse_fail(ps, "the resource context has only attributes");
            node *n = new_node(ps, N_PATH);
            if (n) n->sub = fields[i].path;
            return n;
        }
    return NULL;
}

/* A function of the Collector's OTTL (pkg/ottl/ottlfuncs and the transform processor) that the
 * engine does not have yet: refused as "not supported yet" rather than "unknown". */
static int collector_function(const char *name, size_t len) {
    static const char *const names[] = {
        "append", "delete_matching_keys", "flatten", "keep_keys", "keep_matching_keys", "merge_maps", "replace_all_matches",
        "replace_all_patterns", "replace_match", "set_semconv_span_name", "truncate", "Base64Decode", "Concat", "ContainsValue",
        "ConvertCase", "Day", "Decode", "Double", "Duration", "ExtractGrokPatterns", "ExtractPatterns", "Format", "FormatTime",
        "GetXML", "Hex", "Hour", "Hours", "Index", "InsertXML", "Int", "IsBool", "IsDouble", "IsInt", "IsList", "IsMap", "IsRootSpan",
        "IsString", "Keys", "Len", "Log", "Microseconds", "Milliseconds", "Minute", "Minutes", "Month", "Murmur3Hash",
        "Murmur3Hash128", "Nanosecond", "Nanoseconds", "Now", "ParseCSV", "ParseJSON", "ParseKeyValue", "ParseSimplifiedXML",
        "ParseXML", "ProfileID", "RemoveXML", "Second", "Seconds", "SliceToMap", "Sort", "SpanID", "Split", "String", "Time",
        "ToCamelCase", "ToKeyValueString", "ToSnakeCase", "TraceID", "TrimPrefix", "TrimSuffix", "TruncateTime", "URL", "UUID",
        "UUIDv7", "UnixMicro", "UnixMilli", "UnixNano", "UnixSeconds", "UserAgent", "Values", "Weekday", "Year", "CommunityID",
        "IsValidLuhn", "XXH128", "XXH3", "Unix"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], name, len)) return 1;
    return 0;
}

/* name(args...) after the name has been read; `editor` for a statement's outer call. */
static node *parse_call(parser *ps, const char *name, size_t len, int editor) {
    static const struct { const char *name; int editor, min, max; } editors[] = {
        {"set", E_SET, 2, 2}, {"delete_key", E_DELETE_KEY, 2, 2}, {"replace_pattern", E_REPLACE_PATTERN, 3, 3},
        {"truncate_all", E_TRUNCATE_ALL, 2, 2}, {"limit", E_LIMIT, 3, 3}};
    node *n = new_node(ps, N_CALL);
    if (!n) return NULL;
    int ed = -1, min = 0, max = MAX_ARGS;
    for (size_t i = 0; i < sizeof editors / sizeof editors[0]; i++)
        if (strlen(editors[i].name) == len && !memcmp(editors[i].name, name, len)) ed = (int)i;
    if (ed >= 0) {
        if (!editor) return node_free(n), parse_fail(ps, "editors (set, delete_key...) are statements, not values");
        n->op = N_EDITOR;
        n->sub = editors[ed].editor;
        min = editors[ed].min;
        max = editors[ed].max;
    } else if (len == 7 && !memcmp(name, "IsMatch", 7)) {
        n->op = N_ISMATCH;
        min = max = 2;
    } else if (!(n->fn = find_function(name, len))) {
        char what[200];
        if (collector_function(name, len))
            snprintf(what, sizeof what, "the Collector's function '%.*s' is not supported yet (README, \"Expressions\", lists what is)", (int)len, name);
        else
            snprintf(what, sizeof what, "unknown function '%.*s' (README, \"Expressions\", lists the built-in ones; others come from "
                     "plugins.functions)", (int)len, name);
        return node_free(n), parse_fail(ps, what);
    } else {
        min = max = (int)n->fn->nargs;
    }
    if (editor && ed < 0) return node_free(n), parse_fail(ps, "a statement calls an editor: set, delete_key, replace_pattern, truncate_all or limit");
    if (!eat(ps, "(")) return node_free(n), parse_fail(ps, "expected '('");
    if (!eat(ps, ")")) {
        do {
            if (add_kid(ps, n, parse_value(ps)) != 0) return node_free(n), NULL;
        } while (eat(ps, ","));
        if (!eat(ps, ")")) return node_free(n), parse_fail(ps, "expected ',' or ')'");
    }
    if ((int)n->nkids < min || (int)n->nkids > max) {
        char what[120];
        snprintf(what, sizeof what, "%.*s takes %d argument%s, not %zu", (int)len, name, max, max == 1 ? "" : "s", n->nkids);
        return node_free(n), parse_fail(ps, what);
    }
    if (n->fn) /* literal arguments are checked now; paths when they are read */
        for (size_t i = 0; i < n->nkids; i++) {
            node *k = n->kids[i];
            int want = (int)n->fn->args[i], t = k->op == N_LIT ? k->lit.type : -1;
            int ok = t < 0 || (want == SPANHOST_ARG_STRING && t == V_STR) || (want == SPANHOST_ARG_BYTES && t == V_STR) ||
                     (want == SPANHOST_ARG_INT && t == V_INT) || (want == SPANHOST_ARG_DOUBLE && (t == V_DBL || t == V_INT)) ||
                     (want == SPANHOST_ARG_BOOL && t == V_BOOL);
            if (!ok) {
                char what[120];
                snprintf(what, sizeof what, "%s: argument %zu must be %s", n->fn->name, i + 1, type_name(n->fn->args[i]));
                return node_free(n), parse_fail(ps, what);
            }
        }
    /* Regular expressions are compiled once, here. */
    int pattern = n->op == N_ISMATCH ? 1 : n->op == N_EDITOR && n->sub == E_REPLACE_PATTERN ? 1 : -1;
    if (pattern > 0) {
        node *p = n->kids[pattern];
        if (p->op != N_LIT || p->lit.type != V_STR) return node_free(n), parse_fail(ps, "the pattern must be a \"string\"");
        const char *untamed = untamed_pattern(p->lit.s.ptr);
        if (untamed) return node_free(n), parse_fail(ps, untamed);
        char *posix = posix_pattern(p->lit.s.ptr);
        if (!posix) return node_free(n), parse_fail(ps, "out of memory");
        int rc = regcomp(&n->re, posix, REG_EXTENDED);
        free(posix);
        if (rc) {
            char what[160], msg[120];
            regerror(rc, &n->re, msg, sizeof msg);
            snprintf(what, sizeof what, "bad regular expression: %s", msg);
            return node_free(n), parse_fail(ps, what);
        }
        n->has_re = 1;
        if (n->op == N_ISMATCH) n->literal = literal_pattern(p->lit.s.ptr, &n->lit_text);
    }
    if (n->op == N_EDITOR) {
        node *target = n->kids[0];
        int map = n->sub == E_TRUNCATE_ALL || n->sub == E_LIMIT || n->sub == E_DELETE_KEY;
        int sub = target->op == N_PATH ? target->sub : -1;
        int is_map = sub == P_ATTRS || sub == P_RES_ATTRS || sub == P_EV_ATTRS;
        int text = sub == P_ATTR || sub == P_RES_ATTR || sub == P_NAME || sub == P_STATUS_MSG || sub == P_EV_ATTR || sub == P_EV_NAME;
        int settable = text || sub == P_STATUS_CODE;
        if (map ? !is_map : !settable || (n->sub == E_REPLACE_PATTERN && !text))
            return node_free(n), parse_fail(ps, map ? "the first argument must be attributes" :
                                                     "the first argument must be attributes[\"key\"], name, status.code or status.message");
        if (n->sub == E_DELETE_KEY && (n->kids[1]->op != N_LIT || n->kids[1]->lit.type != V_STR))
            return node_free(n), parse_fail(ps, "delete_key(attributes, \"key\")");
        if ((n->sub == E_TRUNCATE_ALL || n->sub == E_LIMIT) && (n->kids[1]->op != N_LIT || n->kids[1]->lit.type != V_INT || n->kids[1]->lit.i < 0))
            return node_free(n), parse_fail(ps, "the limit must be a whole number of at least 0");
        if (n->sub == E_LIMIT && n->kids[2]->op != N_LIST) return node_free(n), parse_fail(ps, "limit's third argument is a list of keys: [\"k\"]");
        if (n->sub == E_REPLACE_PATTERN && (n->kids[2]->op != N_LIT || n->kids[2]->lit.type != V_STR))
            return node_free(n), parse_fail(ps, "the replacement must be a \"string\"");
    }
    return n;
}

static node *parse_value_nested(parser *ps);

static node *parse_value(parser *ps) {
    if (++ps->depth > OTTL_MAX_NESTING) return parse_fail(ps, "nested too deeply: more than 64 levels of parentheses, calls or not");
    node *n = parse_value_nested(ps);
    ps->depth--;
    return n;
}

static node *parse_value_nested(parser *ps) {
    space(ps);
    if (eat(ps, "(")) {
        node *n = parse_or(ps);
        if (n && !eat(ps, ")")) return node_free(n), parse_fail(ps, "expected ')'");
        return n;
    }
    if (eat(ps, "[")) {
        node *n = new_node(ps, N_LIST);
        if (!n) return NULL;
        if (!eat(ps, "]")) {
            do {
                node *item = parse_literal(ps);
                if (!item) return node_free(n), parse_fail(ps, "list items are literals");
                if (add_kid(ps, n, item) != 0) return node_free(n), NULL;
            } while (eat(ps, ","));
            if (!eat(ps, "]")) return node_free(n), parse_fail(ps, "expected ',' or ']'");
        }
        return n;
    }
    node *n = parse_path(ps);
    if (n || ps->failed) return n;
    if ((n = parse_literal(ps)) || ps->failed) return n;
    const char *start = ps->p;
    while (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || *ps->p == '_')) ps->p++;
    if (ps->p > start) {
        size_t len = (size_t)(ps->p - start);
        space(ps);
        if (ps->p < ps->end && *ps->p == '(') return parse_call(ps, start, len, 0);
        ps->p = start;
    }
    return parse_fail(ps, "expected a path (attributes[\"k\"], name, kind, status.code...), a literal, a function call or '('");
}

static node *parse_compare(parser *ps) {
    static const struct { const char *text; int op; } ops[] = {
        {"==", CMP_EQ}, {"!=", CMP_NE}, {"<=", CMP_LE}, {">=", CMP_GE}, {"<", CMP_LT}, {">", CMP_GT}};
    node *left = parse_value(ps);
    if (!left) return NULL;
    for (size_t i = 0; i < 6; i++)
        if (eat(ps, ops[i].text)) {
            node *n = new_node(ps, N_CMP);
            if (!n) return node_free(left), NULL;
            n->sub = ops[i].op;
            if (add_kid(ps, n, left) != 0 || add_kid(ps, n, parse_value(ps)) != 0) return node_free(n), NULL;
            return n;
        }
    return left; /* a bare value: IsMatch(...), a bool function, true/false, (condition) */
}

static node *parse_not(parser *ps) {
    if (eat(ps, "not")) {
        if (++ps->depth > OTTL_MAX_NESTING) return parse_fail(ps, "nested too deeply: more than 64 levels of parentheses, calls or not");
        node *n = new_node(ps, N_NOT);
        if (!n || add_kid(ps, n, parse_not(ps)) != 0) return node_free(n), NULL;
        ps->depth--;
        return n;
    }
    return parse_compare(ps);
}

static node *parse_binary(parser *ps, const char *word, int op, node *(*next)(parser *)) {
    node *left = next(ps);
    while (left && eat(ps, word)) {
        node *n = new_node(ps, op);
        if (!n) return node_free(left), NULL;
        if (add_kid(ps, n, left) != 0 || add_kid(ps, n, next(ps)) != 0) return node_free(n), NULL;
        left = n;
    }
    return left;
}

static node *parse_and(parser *ps) { return parse_binary(ps, "and", N_AND, parse_not); }
static node *parse_or(parser *ps) { return parse_binary(ps, "or", N_OR, parse_and); }

static node *parse_statement(parser *ps) {
    space(ps);
    const char *start = ps->p;
    while (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || *ps->p == '_')) ps->p++;
    if (ps->p == start) return parse_fail(ps, "a statement starts with an editor: set(...), delete_key(...)...");
    node *n = parse_call(ps, start, (size_t)(ps->p - start), 1);
    if (n && eat(ps, "where") && !(n->where = parse_or(ps))) return node_free(n), NULL;
    return n;
}

uint32_t sh_expr_infer_context(const char *text, size_t len, char *err, size_t err_cap) {
    /* The most specific context whose prefix a path outside string literals carries. */
    int spanevent = 0, span = 0, resource = 0, scope = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '"') {
            for (i++; i < len && text[i] != '"'; i++)
                if (text[i] == '\\') i++;
            continue;
        }
        if (i > 0 && (isalnum((unsigned char)text[i - 1]) || text[i - 1] == '_' || text[i - 1] == '.')) continue;
#define SH_PREFIX(word) (len - i > sizeof(word) - 1 && !memcmp(text + i, word, sizeof(word) - 1))
        if (SH_PREFIX("spanevent.")) spanevent = 1;
        else if (SH_PREFIX("span.")) span = 1;
        else if (SH_PREFIX("resource.")) resource = 1;
        else if (SH_PREFIX("scope.") || SH_PREFIX("instrumentation_scope.")) scope = 1;
#undef SH_PREFIX
    }
    if (spanevent) return SPANHOST_CONTEXT_SPANEVENT;
    if (span) return SPANHOST_CONTEXT_SPAN;
    if (scope) {
        snprintf(err, err_cap, "the scope context is not supported yet: add a span. path (the statement then runs for each span), "
                 "or use a context: span group");
        return 0;
    }
    if (resource) return SPANHOST_CONTEXT_RESOURCE;
    snprintf(err, err_cap, "no context: prefix its paths with span., spanevent. or resource. (span.attributes[\"k\"]), "
             "or put it in a group with context:");
    return 0;
}

spanhost_expr *sh_expr_compile(const char *text, size_t len, uint32_t kind, uint32_t context, char *err, size_t err_cap) {
    parser ps = {text, text, text + len, context, err, err_cap, 0, 0};
    err[0] = 0;
    /* Its string literals go into batches, where every string is UTF-8. */
    size_t valid = sh_utf8_valid_prefix(text, len);
    if (valid != len) {
        snprintf(err, err_cap, "column %d: not valid UTF-8", (int)valid + 1);
        return NULL;
    }
    if (context != SPANHOST_CONTEXT_SPAN && context != SPANHOST_CONTEXT_RESOURCE && context != SPANHOST_CONTEXT_SPANEVENT) {
        snprintf(err, err_cap, "unknown context %u", context);
        return NULL;
    }
    node *root = kind == SPANHOST_EXPR_STATEMENT ? parse_statement(&ps) : kind == SPANHOST_EXPR_CONDITION ? parse_or(&ps) : NULL;
    if (!root) {
        if (!ps.failed) snprintf(err, err_cap, "unknown expression kind %u", kind);
        return NULL;
    }
    space(&ps);
    if (ps.p != ps.end) {
        node_free(root);
        parse_fail(&ps, kind == SPANHOST_EXPR_STATEMENT ? "unexpected text after the statement" : "unexpected text after the condition");
        return NULL;
    }
    spanhost_expr *e = (spanhost_expr *)malloc(sizeof *e);
    if (!e) {
        node_free(root);
        snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    e->kind = kind;
    e->context = context;
    e->root = root;
    return e;
}

void sh_expr_free(spanhost_expr *e) {
    if (!e) return;
    node_free(e->root);
    free(e);
}

/* --- Running ----------------------------------------------------------------------------- */

typedef struct runner {
    const spanhost_expr_target *t;
    spanhost_status *status;
} runner;

static int run_fail(runner *r, const char *fmt, const char *detail) {
    if (r->status && r->status->message && r->status->message_cap) snprintf(r->status->message, r->status->message_cap, fmt, detail);
    return -1;
}

static spanhost_value *find_attr(spanhost_kv_list *list, spanhost_str key) {
    if (!list) return NULL;
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i].key.len == key.len && (key.len == 0 || !memcmp(list->items[i].key.ptr, key.ptr, key.len))) return &list->items[i].value;
    return NULL;
}

static void from_value(xvalue *out, const spanhost_value *v) {
    out->type = V_NIL;
    if (!v) return;
    switch (v->type) {
    case SPANHOST_VALUE_STRING: out->type = V_STR; out->s = v->as.string_value; break;
    case SPANHOST_VALUE_INT: out->type = V_INT; out->i = v->as.int_value; break;
    case SPANHOST_VALUE_DOUBLE: out->type = V_DBL; out->d = v->as.double_value; break;
    case SPANHOST_VALUE_BOOL: out->type = V_BOOL; out->i = v->as.bool_value != 0; break;
    case SPANHOST_VALUE_BYTES: out->type = V_BYTES; out->s.ptr = (const char *)v->as.bytes_value.ptr; out->s.len = v->as.bytes_value.len; break;
    default: break; /* arrays and maps compare as nil */
    }
}

static void hex(xvalue *v, const uint8_t *id, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        v->buf[2 * i] = digits[id[i] >> 4];
        v->buf[2 * i + 1] = digits[id[i] & 15];
    }
    v->type = V_STR;
    v->s.ptr = v->buf;
    v->s.len = 2 * n;
}

static spanhost_kv_list *attrs_of(runner *r, int resource) {
    if (resource) return r->t->resource ? &r->t->resource->attributes : NULL;
    return r->t->span ? &r->t->span->attributes : NULL;
}

static spanhost_kv_list *event_attrs(runner *r) {
    /* Only targets that know their size have the event. */
    const spanhost_expr_target *t = r->t;
    if (t->struct_size < sizeof *t || !t->event) return NULL;
    return &t->event->attributes;
}

static int eval_cond(runner *r, const node *n);

static int eval_value(runner *r, const node *n, xvalue *out) {
    out->type = V_NIL; /* the other members are read only for the type set */
    const spanhost_span *span = r->t->span;
    switch (n->op) {
    case N_LIT: *out = n->lit; return 0;
    case N_LIST: out->type = V_LIST; out->list = n; return 0;
    case N_PATH:
        switch (n->sub) {
        case P_ATTR: from_value(out, find_attr(attrs_of(r, 0), n->lit.s)); return 0;
        case P_RES_ATTR: from_value(out, find_attr(attrs_of(r, 1), n->lit.s)); return 0;
        case P_ATTRS: out->type = (out->map = attrs_of(r, 0)) ? V_MAP : V_NIL; return 0;
        case P_RES_ATTRS: out->type = (out->map = attrs_of(r, 1)) ? V_MAP : V_NIL; return 0;
        case P_SCOPE: if (r->t->scope) { out->type = V_STR; out->s = r->t->scope->name; } return 0;
        case P_EV_ATTR: from_value(out, find_attr(event_attrs(r), n->lit.s)); return 0;
        case P_EV_ATTRS: out->type = (out->map = event_attrs(r)) ? V_MAP : V_NIL; return 0;
        case P_EV_NAME: if (r->t->event) { out->type = V_STR; out->s = r->t->event->name; } return 0;
        case P_EV_TIME: if (r->t->event) { out->type = V_INT; out->i = (int64_t)r->t->event->time_unix_nano; } return 0;
        }
        if (!span) return 0;
        switch (n->sub) {
        case P_NAME: out->type = V_STR; out->s = span->name; return 0;
        case P_KIND: out->type = V_INT; out->i = span->kind; return 0;
        case P_STATUS_CODE: out->type = V_INT; out->i = span->status_code; return 0;
        case P_STATUS_MSG: out->type = V_STR; out->s = span->status_message; return 0;
        case P_TRACE_ID: hex(out, span->trace_id, 16); return 0;
        case P_SPAN_ID: hex(out, span->span_id, 8); return 0;
        case P_PARENT_ID: hex(out, span->parent_span_id, 8); return 0;
        case P_START: out->type = V_INT; out->i = (int64_t)span->start_time_unix_nano; return 0;
        case P_END: out->type = V_INT; out->i = (int64_t)span->end_time_unix_nano; return 0;
        case P_DURATION:
            out->type = V_INT;
            out->i = span->end_time_unix_nano > span->start_time_unix_nano ? (int64_t)(span->end_time_unix_nano - span->start_time_unix_nano) : 0;
            return 0;
        }
        return 0;
    case N_CALL: {
        const sh_function *f = n->fn;
        union { spanhost_str s; int64_t i; double d; int32_t b; } args[MAX_ARGS], result;
        void *ptrs[MAX_ARGS + 2];
        memset(&result, 0, sizeof result);
        for (size_t i = 0; i < n->nkids; i++) {
            xvalue a;
            if (eval_value(r, n->kids[i], &a) != 0) return -1;
            switch (f->args[i]) {
            case SPANHOST_ARG_STRING:
            case SPANHOST_ARG_BYTES:
                if (a.type == V_NIL) a.s.ptr = NULL, a.s.len = 0; /* a missing attribute passes as "" */
                else if (a.type != V_STR && a.type != V_BYTES) return run_fail(r, "%s: an argument is not a string", f->name);
                args[i].s = a.s;
                break;
            case SPANHOST_ARG_INT:
                if (a.type != V_INT) return run_fail(r, "%s: an argument is not an int", f->name);
                args[i].i = a.i;
                break;
            case SPANHOST_ARG_DOUBLE:
                if (a.type != V_DBL && a.type != V_INT) return run_fail(r, "%s: an argument is not a number", f->name);
                args[i].d = a.type == V_INT ? (double)a.i : a.d;
                break;
            case SPANHOST_ARG_BOOL:
                if (a.type != V_BOOL) return run_fail(r, "%s: an argument is not a bool", f->name);
                args[i].b = (int32_t)a.i;
                break;
            }
            ptrs[i] = &args[i];
        }
        spanhost_status status;
        char message[256];
        message[0] = 0;
        status.struct_size = sizeof status;
        status.retry_after_ms = 0;
        status.message = message;
        status.message_cap = sizeof message;
        int32_t rc;
        switch (f->shape) {
        case SHAPE_NONE: rc = ((call_none)f->fn)(&result, &status); break;
        case SHAPE_S: rc = ((call_s)f->fn)(args[0].s, &result, &status); break;
        case SHAPE_I: rc = ((call_i)f->fn)(args[0].i, &result, &status); break;
        case SHAPE_SS: rc = ((call_ss)f->fn)(args[0].s, args[1].s, &result, &status); break;
        case SHAPE_SI: rc = ((call_si)f->fn)(args[0].s, args[1].i, &result, &status); break;
        case SHAPE_IS: rc = ((call_is)f->fn)(args[0].i, args[1].s, &result, &status); break;
        case SHAPE_II: rc = ((call_ii)f->fn)(args[0].i, args[1].i, &result, &status); break;
        default: {
            void *result_ptr = &result, *status_ptr = &status;
            ffi_arg ret = 0;
            ptrs[n->nkids] = &result_ptr;
            ptrs[n->nkids + 1] = &status_ptr;
            ffi_call((ffi_cif *)&f->cif, f->fn, &ret, ptrs);
            rc = (int32_t)ret;
        }
        }
        if (rc != SPANHOST_OK) {
            if (r->status && r->status->message_cap)
                snprintf(r->status->message, r->status->message_cap, "%s failed: %s", f->name, message[0] ? message : "no message");
            return -1;
        }
        switch (f->result) {
        case SPANHOST_ARG_STRING:
        case SPANHOST_ARG_BYTES:
            out->type = f->result == SPANHOST_ARG_STRING ? V_STR : V_BYTES;
            /* The function's memory is good until its next call: keep a copy in the batch,
             * and a string result that is not UTF-8 is repaired, as every string in a batch is. */
            if (f->result == SPANHOST_ARG_STRING && sh_high_bits(result.s.ptr, result.s.len) && !sh_utf8_valid(result.s.ptr, result.s.len) && r->t->batch) {
                char *fixed = (char *)sh_arena_alloc_uninit(r->t->batch, result.s.len * 3);
                if (!fixed) return run_fail(r, "%s: out of memory", f->name);
                out->s.len = sh_utf8_repair(result.s.ptr, result.s.len, fixed);
                out->s.ptr = fixed;
                return 0;
            }
            out->s = result.s.len && r->t->batch ? sh_arena_strdup(r->t->batch, result.s.ptr, result.s.len) : result.s;
            if (result.s.len && !out->s.ptr) return run_fail(r, "%s: out of memory", f->name);
            return 0;
        case SPANHOST_ARG_INT: out->type = V_INT; out->i = result.i; return 0;
        case SPANHOST_ARG_DOUBLE: out->type = V_DBL; out->d = result.d; return 0;
        case SPANHOST_ARG_BOOL: out->type = V_BOOL; out->i = result.b != 0; return 0;
        }
        return 0;
    }
    default: {
        int b = eval_cond(r, n);
        if (b < 0) return -1;
        out->type = V_BOOL;
        out->i = b;
        return 0;
    }
    }
}

static int compare(int op, const xvalue *a, const xvalue *b) {
    int order; /* <0, 0, >0; 2 when the two cannot be ordered */
    if (a->type == V_NIL || b->type == V_NIL) {
        if (op == CMP_EQ) return a->type == b->type;
        if (op == CMP_NE) return a->type != b->type;
        return 0;
    }
    if ((a->type == V_INT || a->type == V_DBL) && (b->type == V_INT || b->type == V_DBL)) {
        if (a->type == V_INT && b->type == V_INT) order = a->i < b->i ? -1 : a->i > b->i;
        else {
            double x = a->type == V_INT ? (double)a->i : a->d, y = b->type == V_INT ? (double)b->i : b->d;
            order = x < y ? -1 : x > y;
        }
    } else if ((a->type == V_STR || a->type == V_BYTES) && a->type == b->type) {
        size_t n = a->s.len < b->s.len ? a->s.len : b->s.len;
        int c = n ? memcmp(a->s.ptr, b->s.ptr, n) : 0;
        order = c ? (c < 0 ? -1 : 1) : (a->s.len < b->s.len ? -1 : a->s.len > b->s.len);
    } else if (a->type == V_BOOL && b->type == V_BOOL) {
        order = a->i == b->i ? 0 : 2;
    } else {
        order = 2;
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

/* Matches `re` against the whole view, NUL bytes included: REG_STARTEND takes the bounds from
 * m[0] instead of stopping at a NUL, so "a\0token=secret" cannot hide its tail from a pattern
 * meant to redact it. Offsets in `m` count from s.ptr. */
static int regex_match(const regex_t *re, spanhost_str s, size_t groups, regmatch_t *m) {
    regmatch_t whole[1];
    if (!m || groups == 0) {
        m = whole;
        groups = 1;
    }
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)s.len;
    return regexec(re, s.ptr ? s.ptr : "", groups, m, REG_STARTEND) == 0;
}

static int eval_cond(runner *r, const node *n) {
    xvalue a, b;
    int x;
    switch (n->op) {
    case N_OR:
        if ((x = eval_cond(r, n->kids[0])) != 0) return x;
        return eval_cond(r, n->kids[1]);
    case N_AND:
        if ((x = eval_cond(r, n->kids[0])) <= 0) return x;
        return eval_cond(r, n->kids[1]);
    case N_NOT: return (x = eval_cond(r, n->kids[0])) < 0 ? x : !x;
    case N_CMP:
        if (eval_value(r, n->kids[0], &a) != 0 || eval_value(r, n->kids[1], &b) != 0) return -1;
        return compare(n->sub, &a, &b);
    case N_ISMATCH: {
        if (eval_value(r, n->kids[0], &a) != 0) return -1;
        char buf[32];
        if (a.type == V_INT) {
            a.s.ptr = buf;
            a.s.len = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)a.i);
        } else if (a.type != V_STR) {
            return 0;
        }
        if (n->literal != RX_REGEX) return literal_match(n->literal, n->lit_text, a.s);
        return regex_match(&n->re, a.s, 0, NULL);
    }
    default:
        if (eval_value(r, n, &a) != 0) return -1;
        return a.type == V_BOOL && a.i;
    }
}

/* --- Editors ----------------------------------------------------------------------------- */

static int to_value(const xvalue *x, spanhost_value *v) {
    memset(v, 0, sizeof *v);
    switch (x->type) {
    case V_STR: v->type = SPANHOST_VALUE_STRING; v->as.string_value = x->s; return 0;
    case V_BYTES: v->type = SPANHOST_VALUE_BYTES; v->as.bytes_value.ptr = (const uint8_t *)x->s.ptr; v->as.bytes_value.len = x->s.len; return 0;
    case V_INT: v->type = SPANHOST_VALUE_INT; v->as.int_value = x->i; return 0;
    case V_DBL: v->type = SPANHOST_VALUE_DOUBLE; v->as.double_value = x->d; return 0;
    case V_BOOL: v->type = SPANHOST_VALUE_BOOL; v->as.bool_value = (int32_t)x->i; return 0;
    default: return -1;
    }
}

/* Writes `value` to a settable path. `lent`: its text is kept literal text, which batches may
 * point at without a copy (the attribute key always is). */
static int assign(runner *r, const node *target, const xvalue *value, int lent) {
    spanhost_batch *batch = r->t->batch;
    spanhost_span *span = r->t->span;
    if (target->sub == P_ATTR || target->sub == P_RES_ATTR || target->sub == P_EV_ATTR) {
        spanhost_kv_list *list = target->sub == P_EV_ATTR ? event_attrs(r) : attrs_of(r, target->sub == P_RES_ATTR);
        spanhost_value v;
        if (!list || value->type == V_NIL) return 0; /* nil sets nothing */
        if (value->type == V_LIST) {
            /* A list literal becomes an array; its nil items are empty values, as in the Collector. */
            const node *items = value->list;
            memset(&v, 0, sizeof v);
            v.type = SPANHOST_VALUE_ARRAY;
            v.as.array_value.count = items->nkids;
            spanhost_value *array = items->nkids ? (spanhost_value *)sh_arena_alloc(batch, items->nkids * sizeof *array) : NULL;
            if (items->nkids && !array) return run_fail(r, "%s", "out of memory");
            for (size_t i = 0; i < items->nkids; i++)
                if (items->kids[i]->lit.type != V_NIL) to_value(&items->kids[i]->lit, &array[i]);
            v.as.array_value.items = array;
        } else if (to_value(value, &v) != 0) {
            return run_fail(r, "%s", "setting an attribute to a map is not supported yet");
        }
        return sh_set_attribute_lent(batch, list, target->lit.s, &v, lent) == 0 ? 1 : run_fail(r, "%s", "out of memory");
    }
    if (target->sub == P_EV_NAME) {
        spanhost_kv_list *attrs = event_attrs(r); /* non-NULL exactly when there is an event */
        if (!attrs) return 0;
        if (value->type != V_STR) return run_fail(r, "%s", "name must be set to a string");
        spanhost_str s = lent ? value->s : sh_arena_strdup(batch, value->s.ptr, value->s.len);
        if (value->s.len && !s.ptr) return run_fail(r, "%s", "out of memory");
        r->t->event->name = s;
        return 1;
    }
    if (!span) return 0;
    switch (target->sub) {
    case P_NAME:
    case P_STATUS_MSG: {
        if (value->type != V_STR) return run_fail(r, "%s must be set to a string", target->sub == P_NAME ? "name" : "status.message");
        spanhost_str s = lent ? value->s : sh_arena_strdup(batch, value->s.ptr, value->s.len);
        if (value->s.len && !s.ptr) return run_fail(r, "%s", "out of memory");
        if (target->sub == P_NAME) span->name = s; else span->status_message = s;
        return 1;
    }
    case P_STATUS_CODE:
        if (value->type != V_INT || value->i < 0 || value->i > 2) return run_fail(r, "%s", "status.code must be set to 0, 1 or 2");
        span->status_code = (uint32_t)value->i;
        return 1;
    }
    return 0;
}

/* Go's regexp expansion of $1 / ${1} in a replacement, for one match. */
static size_t expand(char *out, size_t cap, spanhost_str repl, const char *text, const regmatch_t *m, size_t groups) {
    size_t n = 0;
    for (size_t i = 0; i < repl.len; i++) {
        const char *c = repl.ptr + i;
        if (*c == '$' && i + 1 < repl.len && (isdigit((unsigned char)c[1]) || c[1] == '{')) {
            size_t j = i + 1, g = 0;
            int braced = c[1] == '{';
            if (braced) j++;
            while (j < repl.len && isdigit((unsigned char)repl.ptr[j])) g = g * 10 + (size_t)(repl.ptr[j++] - '0');
            if (braced && (j >= repl.len || repl.ptr[j] != '}')) goto literal;
            if (braced) j++;
            if (g < groups && m[g].rm_so >= 0)
                for (regoff_t k = m[g].rm_so; k < m[g].rm_eo; k++) {
                    if (n < cap) out[n] = text[k];
                    n++;
                }
            i = j - 1;
            continue;
        }
    literal:
        if (n < cap) out[n] = *c;
        n++;
    }
    return n;
}

static int replace_pattern(runner *r, const node *n) {
    xvalue cur;
    if (eval_value(r, n->kids[0], &cur) != 0) return -1;
    if (cur.type != V_STR) return 0; /* nothing to replace in */
    spanhost_str repl = n->kids[2]->lit.s;
    regmatch_t m[10];
    size_t cap = cur.s.len * 2 + 64, len = 0, at = 0;
    char *out = (char *)malloc(cap);
    int changed = 0;
    if (!out) return run_fail(r, "%s", "out of memory");
    spanhost_str rest = cur.s;
    while (at <= cur.s.len) {
        rest.ptr = cur.s.ptr + at;
        rest.len = cur.s.len - at;
        if (!regex_match(&n->re, rest, 10, m)) break;
        size_t need = (size_t)m[0].rm_so + expand(NULL, 0, repl, rest.ptr, m, 10);
        if (len + need + (cur.s.len - at) + 1 > cap) {
            cap = (len + need + cur.s.len) * 2;
            char *grown = (char *)realloc(out, cap);
            if (!grown) { free(out); return run_fail(r, "%s", "out of memory"); }
            out = grown;
        }
        memcpy(out + len, rest.ptr, (size_t)m[0].rm_so);
        len += (size_t)m[0].rm_so;
        len += expand(out + len, cap - len, repl, rest.ptr, m, 10);
        changed = 1;
        if (m[0].rm_eo == m[0].rm_so) { /* an empty match: step over one byte */
            if (at + (size_t)m[0].rm_eo < cur.s.len) out[len++] = rest.ptr[m[0].rm_eo];
            at += (size_t)m[0].rm_eo + 1;
        } else {
            at += (size_t)m[0].rm_eo;
        }
    }
    if (!changed) { free(out); return 1; }
    if (at < cur.s.len) {
        memcpy(out + len, cur.s.ptr + at, cur.s.len - at);
        len += cur.s.len - at;
    }
    /* A pattern matches bytes: replacing part of a multi-byte character leaves bytes that are
     * not UTF-8, written as U+FFFD. */
    if (sh_high_bits(out, len) && !sh_utf8_valid(out, len)) {
        char *fixed = (char *)malloc(len * 3 + 1);
        if (!fixed) { free(out); return run_fail(r, "%s", "out of memory"); }
        len = sh_utf8_repair(out, len, fixed);
        free(out);
        out = fixed;
    }
    xvalue v;
    memset(&v, 0, sizeof v);
    v.type = V_STR;
    v.s.ptr = out;
    v.s.len = len;
    int rc = assign(r, n->kids[0], &v, 0); /* copies the text into the batch */
    free(out);
    return rc < 0 ? -1 : 1;
}

static int in_list(const node *list, spanhost_str key) {
    for (size_t i = 0; i < list->nkids; i++) {
        const xvalue *k = &list->kids[i]->lit;
        if (k->type == V_STR && k->s.len == key.len && (key.len == 0 || !memcmp(k->s.ptr, key.ptr, key.len))) return 1;
    }
    return 0;
}

static int run_editor(runner *r, const node *n) {
    xvalue target, arg;
    switch (n->sub) {
    case E_SET:
        if (eval_value(r, n->kids[1], &arg) != 0) return -1;
        return assign(r, n->kids[0], &arg, n->kids[1]->op == N_LIT || n->kids[1]->op == N_LIST);
    case E_REPLACE_PATTERN: return replace_pattern(r, n);
    default: break;
    }
    if (eval_value(r, n->kids[0], &target) != 0) return -1;
    if (target.type != V_MAP) return 1;
    spanhost_kv_list *list = target.map;
    switch (n->sub) {
    case E_DELETE_KEY:
        sh_remove_attribute(r->t->batch, list, n->kids[1]->lit.s);
        return 1;
    case E_TRUNCATE_ALL: {
        size_t limit = (size_t)n->kids[1]->lit.i;
        for (size_t i = 0; i < list->count; i++) {
            spanhost_value *v = &list->items[i].value;
            if (v->type != SPANHOST_VALUE_STRING || v->as.string_value.len <= limit) continue;
            size_t cut = limit; /* never inside a UTF-8 sequence */
            while (cut > 0 && ((unsigned char)v->as.string_value.ptr[cut] & 0xC0) == 0x80) cut--;
            v->as.string_value.len = cut;
        }
        return 1;
    }
    case E_LIMIT: {
        /* Keeps at most `limit` attributes: the listed keys first, then the others in order. */
        size_t limit = (size_t)n->kids[1]->lit.i, kept = 0;
        if (list->count <= limit) return 1;
        spanhost_kv *items = (spanhost_kv *)sh_arena_alloc(r->t->batch, list->count * sizeof *items);
        if (!items) return run_fail(r, "%s", "out of memory");
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < list->count && kept < limit; i++)
                if (in_list(n->kids[2], list->items[i].key) == !pass) items[kept++] = list->items[i];
        /* Kept items in their original order. */
        size_t out = 0;
        for (size_t i = 0; i < list->count; i++)
            for (size_t j = 0; j < kept; j++)
                if (items[j].key.ptr == list->items[i].key.ptr && items[j].key.len == list->items[i].key.len) {
                    list->items[out++] = list->items[i];
                    break;
                }
        list->count = out;
        return 1;
    }
    }
    return 1;
}

int32_t sh_expr_run(const spanhost_expr *e, const spanhost_expr_target *t, spanhost_status *status) {
    if (!e || !t) return -1;
    runner r = {t, status};
    if (e->kind == SPANHOST_EXPR_CONDITION) return eval_cond(&r, e->root);
    if (e->root->where) {
        int x = eval_cond(&r, e->root->where);
        if (x <= 0) return x;
    }
    int rc = run_editor(&r, e->root);
    return rc < 0 ? -1 : 1;
}

int sh_expr_call(const char *text, size_t len, char *out, size_t cap) {
    parser ps = {text, text, text + len, SPANHOST_CONTEXT_SPAN, out, cap, 0, 0};
    out[0] = 0;
    node *n = parse_value(&ps);
    space(&ps);
    if (n && ps.p != ps.end) {
        node_free(n);
        n = parse_fail(&ps, "unexpected text after the call");
    }
    if (!n) return -1;
    spanhost_expr_target target = {sizeof target, NULL, NULL, NULL, NULL, NULL};
    spanhost_status status = {sizeof status, 0, out, cap};
    runner r = {&target, &status};
    xvalue v;
    int rc = eval_value(&r, n, &v);
    node_free(n);
    if (rc != 0) return -1;
    switch (v.type) {
    case V_STR:
    case V_BYTES: snprintf(out, cap, "\"%.*s\"", (int)v.s.len, v.s.ptr ? v.s.ptr : ""); break;
    case V_INT: snprintf(out, cap, "%lld", (long long)v.i); break;
    case V_DBL: snprintf(out, cap, "%.17g", v.d); break;
    case V_BOOL: snprintf(out, cap, "%s", v.i ? "true" : "false"); break;
    default: snprintf(out, cap, "nil"); break;
    }
    return 0;
}
