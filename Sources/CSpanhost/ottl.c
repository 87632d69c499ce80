/*
 * OTTL, the expression language of the Collector's filter and transform processors, compiled
 * once into a tree (this file) and run against the span structs (ottl_eval.c). One engine for
 * every plugin (through the host table) and for the host's own rules. Functions that plugins
 * add are called through libffi with a call interface built when they register.
 *
 *   statement := editor "(" args ")" ["where" condition]   editor: set, delete_key, flatten...
 *   condition := or;  or := and ("or" and)*;  and := not ("and" not)*;  not := "not" not | cmp
 *   cmp       := sum [("==" | "!=" | "<" | "<=" | ">" | ">=") sum]
 *   sum       := product (("+" | "-") product)*;  product := primary (("*" | "/") primary)*
 *   primary   := "(" condition ")" | list | map | literal | ENUM | Converter | call [index]*
 *              | path [index]*
 *   call      := Name "(" [value ("," value)*] [name "=" value ...] ")"
 *   path      := [context "."] field      context: span, spanevent, resource, scope
 *   index     := "[" sum "]"             a map key (string) or a list position (int)
 *   literal   := "string" | 42 | -4.2 | 0x0102 (bytes) | true | false | nil
 *   list      := "[" [value ("," value)*] "]";  map := "{" ["\"k\"" ":" value ...] "}"
 * A missing attribute is nil: it equals only nil, and ordering comparisons with nil are false.
 */
#define _GNU_SOURCE /* memmem, strndup */
#include "ottl_internal.h"

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
const char *ottl_keep_literal(const char *text, size_t len) {
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

/* --- Patterns ------------------------------------------------------------------------ */

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
 * POSIX terms, (?: groups become plain ones and (?P<name> groups are recorded by number in
 * `names` (malloc'd, NULL entries for unnamed groups), so those patterns work here unchanged.
 * Returns a malloc'd pattern for regcomp. */
static char *posix_pattern(const char *re2, char ***names, size_t *ngroups) {
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
        if (!in_bracket && *p == '(') {
            const char *name = NULL;
            size_t name_len = 0;
            if (p[1] == '?' && (p[2] == 'P' || p[2] == '<')) {
                name = p + (p[2] == 'P' ? 4 : 3);
                const char *close = strchr(name, '>');
                if (close) {
                    name_len = (size_t)(close - name);
                    p = close;
                } else {
                    name = NULL;
                }
            }
            if (names) {
                char **grown = (char **)realloc(*names, (*ngroups + 1) * sizeof *grown);
                if (!grown) { free(out); return NULL; }
                *names = grown;
                grown[(*ngroups)++] = name ? strndup(name, name_len) : NULL;
            }
            *o++ = '(';
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

int ottl_literal_match(int kind, spanhost_str want, spanhost_str s) {
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

/* --- The tree ---------------------------------------------------------------------------- */

static void node_free(node *n) {
    if (!n) return;
    if (n->constant && n->op == N_LIST) {
        free(n->lit.list->items);
        free(n->lit.list);
    }
    if (n->constant && n->op == N_MAP) {
        free(n->lit.map->items);
        free(n->lit.map);
    }
    for (size_t i = 0; i < n->nkids; i++) node_free(n->kids[i]);
    free(n->kids);
    free(n->keys);
    node_free(n->where);
    if (n->has_re) regfree(&n->re);
    for (size_t i = 0; i < n->ngroups; i++) free(n->group_names[i]);
    free(n->group_names);
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

static node *fail_at(parser *ps, const char *at, const char *what) {
    if (!ps->failed) snprintf(ps->err, ps->err_cap, "column %d: %s", (int)(at - ps->text) + 1, what);
    ps->failed = 1;
    return NULL;
}

static node *parse_fail(parser *ps, const char *what) { return fail_at(ps, ps->p, what); }

static void space(parser *ps) {
    while (ps->p < ps->end && isspace((unsigned char)*ps->p)) ps->p++;
}

static int is_word(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Consumes `word` (a keyword or punctuation) if it comes next. */
static int eat(parser *ps, const char *word) {
    space(ps);
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n)) return 0;
    if (is_word(word[0]) && ps->p + n < ps->end && is_word(ps->p[n])) return 0;
    if (word[0] == '=' && n == 1 && ps->p + 1 < ps->end && ps->p[1] == '=') return 0;
    ps->p += n;
    return 1;
}

static int peek(parser *ps, char c) {
    space(ps);
    return ps->p < ps->end && *ps->p == c;
}

static node *new_node(parser *ps, int op) {
    node *n = (node *)calloc(1, sizeof *n);
    if (!n) return parse_fail(ps, "out of memory");
    n->op = op;
    n->height = 1;
    return n;
}

/* Appends `kid` (NULL allowed only when `optional`: a call argument not given). */
static int add_kid_maybe(parser *ps, node *n, node *kid, int optional) {
    if (!kid && !optional) return -1;
    node **grown = (node **)realloc(n->kids, (n->nkids + 1) * sizeof *grown);
    if (!grown) {
        node_free(kid);
        parse_fail(ps, "out of memory");
        return -1;
    }
    n->kids = grown;
    n->kids[n->nkids++] = kid;
    if (kid && kid->height + 1 > n->height) n->height = kid->height + 1;
    if (n->height > OTTL_MAX_HEIGHT) {
        parse_fail(ps, "expression too long: more than 1000 operators nested in one another");
        return -1;
    }
    return 0;
}

static int add_kid(parser *ps, node *n, node *kid) { return add_kid_maybe(ps, n, kid, 0); }

/* A "quoted" string with the escapes \" \\ \n \t \r into `out`, as kept literal text. */
static int quoted(parser *ps, spanhost_str *out) {
    space(ps);
    if (ps->p >= ps->end || *ps->p != '"') return 0;
    ps->p++;
    char *buf = (char *)malloc((size_t)(ps->end - ps->p) + 1);
    size_t len = 0;
    if (!buf) return parse_fail(ps, "out of memory"), 0;
    while (ps->p < ps->end && *ps->p != '"') {
        if (*ps->p == '\\' && ps->p + 1 < ps->end) {
            ps->p++;
            char c = *ps->p++;
            buf[len++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
            continue;
        }
        buf[len++] = *ps->p++;
    }
    if (ps->p >= ps->end) {
        free(buf);
        parse_fail(ps, "unterminated string");
        return 0;
    }
    ps->p++;
    const char *kept = ottl_keep_literal(buf, len);
    free(buf);
    if (!kept) return parse_fail(ps, "out of memory"), 0;
    out->ptr = kept;
    out->len = len;
    return 1;
}

static node *parse_or(parser *ps);
static node *parse_sum(parser *ps);

static const struct { const char *name; int64_t value; } enums[] = {
    {"SPAN_KIND_UNSPECIFIED", 0}, {"SPAN_KIND_INTERNAL", 1}, {"SPAN_KIND_SERVER", 2}, {"SPAN_KIND_CLIENT", 3},
    {"SPAN_KIND_PRODUCER", 4}, {"SPAN_KIND_CONSUMER", 5}, {"STATUS_CODE_UNSET", 0}, {"STATUS_CODE_OK", 1},
    {"STATUS_CODE_ERROR", 2}};

/* A number, string, bytes (0x...), true, false or nil; NULL without failing when none comes. */
static node *parse_literal(parser *ps) {
    node *n = new_node(ps, N_LIT);
    if (!n) return NULL;
    if (quoted(ps, &n->lit.s)) {
        n->lit.type = V_STR;
        return n;
    }
    if (ps->failed) return node_free(n), NULL;
    if (eat(ps, "true") || eat(ps, "false")) {
        n->lit.type = V_BOOL;
        n->lit.i = ps->p[-2] == 'u'; /* tr(u)e, fal(s)e */
        return n;
    }
    if (eat(ps, "nil")) return n;
    space(ps);
    const char *at = ps->p;
    if (ps->end - at > 2 && at[0] == '0' && (at[1] == 'x' || at[1] == 'X') && isxdigit((unsigned char)at[2])) {
        size_t digits = 0;
        while (at + 2 + digits < ps->end && isxdigit((unsigned char)at[2 + digits])) digits++;
        if (digits % 2) return node_free(n), parse_fail(ps, "a bytes literal has an even number of hex digits");
        uint8_t *bytes = (uint8_t *)malloc(digits / 2 + 1);
        if (!bytes) return node_free(n), parse_fail(ps, "out of memory");
        for (size_t i = 0; i < digits / 2; i++) {
            char pair[3] = {at[2 + 2 * i], at[3 + 2 * i], 0};
            bytes[i] = (uint8_t)strtoul(pair, NULL, 16);
        }
        n->lit.type = V_BYTES;
        n->lit.s.ptr = ottl_keep_literal((const char *)bytes, digits / 2);
        n->lit.s.len = digits / 2;
        free(bytes);
        if (!n->lit.s.ptr) return node_free(n), parse_fail(ps, "out of memory");
        ps->p = at + 2 + digits;
        return n;
    }
    const char *q = at;
    if (q < ps->end && (*q == '-' || *q == '+')) q++;
    if (q < ps->end && (isdigit((unsigned char)*q) || (*q == '.' && q + 1 < ps->end && isdigit((unsigned char)q[1])))) {
        int real = 0;
        while (q < ps->end && isdigit((unsigned char)*q)) q++;
        if (q < ps->end && *q == '.') {
            real = 1;
            q++;
            while (q < ps->end && isdigit((unsigned char)*q)) q++;
        }
        if (q < ps->end && (*q == 'e' || *q == 'E')) {
            const char *e = q + 1;
            if (e < ps->end && (*e == '+' || *e == '-')) e++;
            if (e < ps->end && isdigit((unsigned char)*e)) {
                real = 1;
                q = e;
                while (q < ps->end && isdigit((unsigned char)*q)) q++;
            }
        }
        if (q < ps->end && is_word(*q)) return node_free(n), parse_fail(ps, "not a number");
        char buf[80];
        size_t len = (size_t)(q - at);
        if (len >= sizeof buf) return node_free(n), parse_fail(ps, "number literal too long");
        memcpy(buf, at, len);
        buf[len] = 0;
        errno = 0;
        if (real) {
            n->lit.type = V_DBL;
            n->lit.d = strtod(buf, NULL);
            if (errno == ERANGE && (n->lit.d > 1 || n->lit.d < -1))
                return node_free(n), parse_fail(ps, "number literal out of range (a double)");
        } else {
            n->lit.type = V_INT;
            n->lit.i = strtoll(buf, NULL, 10);
            if (errno == ERANGE) return node_free(n), parse_fail(ps, "integer literal out of range (-9223372036854775808 to 9223372036854775807)");
        }
        ps->p = q;
        return n;
    }
    node_free(n);
    return NULL;
}

/* --- Paths ------------------------------------------------------------------------------ */

static const struct { const char *name; int path; } span_fields[] = {
    {"attributes", P_ATTRS}, {"name", P_NAME}, {"kind", P_KIND}, {"kind.string", P_KIND_STRING},
    {"status.code", P_STATUS_CODE}, {"status.message", P_STATUS_MSG}, {"trace_id", P_TRACE_ID},
    {"trace_id.string", P_TRACE_ID_STR}, {"span_id", P_SPAN_ID}, {"span_id.string", P_SPAN_ID_STR},
    {"parent_span_id", P_PARENT_ID}, {"parent_span_id.string", P_PARENT_ID_STR}, {"trace_state", P_TRACE_STATE},
    {"start_time_unix_nano", P_START_NS}, {"end_time_unix_nano", P_END_NS}, {"start_time", P_START},
    {"end_time", P_END}, {"duration", P_DURATION}, {"flags", P_FLAGS}, {"dropped_attributes_count", P_DROPPED_ATTRS},
    {"dropped_events_count", P_DROPPED_EVENTS}, {"dropped_links_count", P_DROPPED_LINKS}};
static const struct { const char *name; int path; } event_fields[] = {
    {"attributes", P_EV_ATTRS}, {"name", P_EV_NAME}, {"time_unix_nano", P_EV_TIME_NS}, {"time", P_EV_TIME},
    {"dropped_attributes_count", P_EV_DROPPED}, {"event_index", P_EV_INDEX}};
static const struct { const char *name; int path; } resource_fields[] = {
    {"attributes", P_RES_ATTRS}, {"dropped_attributes_count", P_RES_DROPPED}};
static const struct { const char *name; int path; } scope_fields[] = {
    {"attributes", P_SCOPE_ATTRS}, {"name", P_SCOPE_NAME}, {"version", P_SCOPE_VERSION},
    {"dropped_attributes_count", P_SCOPE_DROPPED}};

#define FIND_FIELD(table, word, len)                                                                           \
    do {                                                                                                       \
        for (size_t i_ = 0; i_ < sizeof table / sizeof table[0]; i_++)                                         \
            if (strlen(table[i_].name) == (len) && !memcmp(table[i_].name, (word), (len))) return table[i_].path; \
    } while (0)

static int starts(const char *word, size_t len, const char *prefix, size_t *rest) {
    size_t n = strlen(prefix);
    if (len <= n || memcmp(word, prefix, n)) return 0;
    *rest = n;
    return 1;
}

/* The field a dotted path names in `context`, or -1. The Collector's context prefixes (span.,
 * spanevent., resource., scope.) are accepted, and may be left out for the context's own. */
static int path_field(const char *w, size_t len, uint32_t context) {
    size_t skip;
    if (len == 5 && !memcmp(w, "cache", 5)) return P_CACHE;
    if (starts(w, len, "resource.", &skip)) FIND_FIELD(resource_fields, w + skip, len - skip);
    if (starts(w, len, "scope.", &skip) || starts(w, len, "instrumentation_scope.", &skip))
        FIND_FIELD(scope_fields, w + skip, len - skip);
    switch (context) {
    case SPANHOST_CONTEXT_RESOURCE: FIND_FIELD(resource_fields, w, len); return -1;
    case SPANHOST_CONTEXT_SPAN:
        if (starts(w, len, "span.", &skip)) FIND_FIELD(span_fields, w + skip, len - skip);
        FIND_FIELD(span_fields, w, len);
        return -1;
    case SPANHOST_CONTEXT_SPANEVENT:
        if (starts(w, len, "span.", &skip)) FIND_FIELD(span_fields, w + skip, len - skip);
        if (starts(w, len, "spanevent.", &skip)) FIND_FIELD(event_fields, w + skip, len - skip);
        FIND_FIELD(event_fields, w, len);
        return -1;
    }
    return -1;
}

/* [index] steps after a path or a call, into `n`'s kids. */
static int parse_indexes(parser *ps, node *n) {
    while (peek(ps, '[')) {
        ps->p++;
        if (add_kid(ps, n, parse_sum(ps)) != 0) return -1;
        if (!eat(ps, "]")) return parse_fail(ps, "expected ']'"), -1;
    }
    return 0;
}

static node *parse_path(parser *ps, const char *word, size_t len) {
    int field = path_field(word, len, ps->context);
    static const char *const later[] = {"events", "links", "span.events", "span.links", "status", "span.status", "resource",
                                        "instrumentation_scope", "scope"};
    for (size_t i = 0; field < 0 && i < sizeof later / sizeof later[0]; i++)
        if (strlen(later[i]) == len && !memcmp(later[i], word, len)) {
            char what[200];
            snprintf(what, sizeof what, "the Collector's path '%s' is not supported yet (README, \"Expressions\", lists the paths)", later[i]);
            return fail_at(ps, word, what);
        }
    if (field < 0) {
        char what[300];
        snprintf(what, sizeof what, "unknown path '%.*s' in the %s context%s", (int)(len > 100 ? 100 : len), word,
                 ps->context == SPANHOST_CONTEXT_RESOURCE ? "resource" : ps->context == SPANHOST_CONTEXT_SPANEVENT ? "spanevent" : "span",
                 ps->context == SPANHOST_CONTEXT_RESOURCE ? " (it has attributes, dropped_attributes_count and cache)" :
                 ps->context == SPANHOST_CONTEXT_SPANEVENT ? " (it has attributes, name, time_unix_nano, time, event_index, span.*, resource.*, scope.*)" :
                 " (README, \"Expressions\", lists the paths)");
        return fail_at(ps, word, what);
    }
    node *n = new_node(ps, N_PATH);
    if (!n) return NULL;
    n->sub = field;
    if (parse_indexes(ps, n) != 0) return node_free(n), NULL;
    n->map_key = (field == P_ATTRS || field == P_RES_ATTRS || field == P_EV_ATTRS || field == P_SCOPE_ATTRS) && n->nkids == 1 &&
                 n->kids[0]->op == N_LIT && n->kids[0]->lit.type == V_STR;
    return n;
}

/* --- Calls ------------------------------------------------------------------------------ */

/* A function of the Collector's OTTL that the engine does not have: refused as "not supported
 * yet" rather than "unknown". */
static int collector_function(const char *name, size_t len) {
    static const char *const names[] = {
        "truncate", "ConvertAttributesToElementsXML", "ConvertTextToElementsXML",
        "ExtractGrokPatterns", "GetXML", "InsertXML", "ParseSimplifiedXML", "ParseXML", "ProfileID", "RemoveXML",
        "URL", "UUIDv7", "UserAgent", "CommunityID", "XXH128", "XXH3", "ParseInt", "ParseSeverity", "Base64Encode",
        "Encode"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], name, len)) return 1;
    return 0;
}

static int param_is_pattern(const char *param) { return param[0] == '*'; }
static const char *param_name(const char *param) { return param + (param[0] == '*'); }
static size_t param_len(const char *param) { return strcspn(param_name(param), "?:"); }
static int param_optional(const char *param) { return strchr(param, '?') != NULL; }

/* Glob (gobwas/glob, as replace_match uses) to an anchored POSIX pattern; malloc'd. */
static char *glob_pattern(const char *glob) {
    size_t len = strlen(glob);
    char *out = (char *)malloc(len * 2 + 3), *o = out;
    if (!out) return NULL;
    *o++ = '^';
    int alternatives = 0;
    for (const char *p = glob; *p; p++) {
        switch (*p) {
        case '*': *o++ = '.'; *o++ = '*'; break;
        case '?': *o++ = '.'; break;
        case '[':
            *o++ = '[';
            if (p[1] == '!') { *o++ = '^'; p++; }
            break;
        case '{': *o++ = '('; alternatives++; break;
        case '}': if (alternatives) { *o++ = ')'; alternatives--; } else { *o++ = '\\'; *o++ = '}'; } break;
        case ',': *o++ = alternatives ? '|' : ','; break;
        case '\\': if (p[1]) { *o++ = '\\'; *o++ = *++p; } break;
        case '.': case '(': case ')': case '+': case '|': case '^': case '$':
            *o++ = '\\'; *o++ = *p; break;
        default: *o++ = *p;
        }
    }
    *o++ = '$';
    *o = 0;
    return out;
}

/* Compiles the pattern argument of a call (literal text only: others are compiled per run). */
static int compile_pattern(parser *ps, node *n, const char *pattern, int glob) {
    if (!glob) {
        const char *untamed = untamed_pattern(pattern);
        if (untamed) return parse_fail(ps, untamed), -1;
    }
    char *posix = glob ? glob_pattern(pattern) : posix_pattern(pattern, &n->group_names, &n->ngroups);
    if (!posix) return parse_fail(ps, "out of memory"), -1;
    int rc = regcomp(&n->re, posix, REG_EXTENDED);
    free(posix);
    if (rc) {
        char what[160], msg[120];
        regerror(rc, &n->re, msg, sizeof msg);
        snprintf(what, sizeof what, "bad %s: %s", glob ? "glob pattern" : "regular expression", msg);
        return parse_fail(ps, what), -1;
    }
    n->has_re = 1;
    if (!glob) n->literal = literal_pattern(pattern, &n->lit_text);
    return 0;
}

static node *parse_value(parser *ps);

/* Arguments of a built-in, into its parameter order: positional ones first, then name=value. */
static node *parse_builtin_args(parser *ps, node *n, const char *name, size_t len) {
    const ottl_builtin *b = n->builtin;
    size_t nparams = 0, positional = 0;
    while (nparams < 6 && b->params[nparams]) nparams++;
    node *given[6] = {0};
    int named = 0;
    char what[240];
    if (!eat(ps, ")")) {
        do {
            space(ps);
            const char *at = ps->p, *q = ps->p;
            while (q < ps->end && is_word(*q)) q++;
            const char *after = q;
            while (after < ps->end && isspace((unsigned char)*after)) after++;
            int is_named = q > at && after < ps->end && *after == '=' && !(after + 1 < ps->end && after[1] == '=');
            size_t slot = positional;
            if (is_named) {
                slot = nparams;
                for (size_t i = 0; i < nparams; i++)
                    if (param_len(b->params[i]) == (size_t)(q - at) && !memcmp(param_name(b->params[i]), at, (size_t)(q - at))) slot = i;
                if (slot == nparams) {
                    snprintf(what, sizeof what, "%.*s has no parameter '%.*s'", (int)len, name, (int)(q - at > 60 ? 60 : q - at), at);
                    fail_at(ps, at, what);
                    goto fail;
                }
                if (given[slot]) {
                    fail_at(ps, at, "an argument is given twice");
                    goto fail;
                }
                named = 1;
                ps->p = after + 1;
            } else {
                if (named) {
                    fail_at(ps, at, "positional arguments come before named ones");
                    goto fail;
                }
                if (positional >= nparams) {
                    snprintf(what, sizeof what, "%.*s takes at most %zu argument%s", (int)len, name, nparams, nparams == 1 ? "" : "s");
                    fail_at(ps, at, what);
                    goto fail;
                }
                positional++;
            }
            if (!(given[slot] = parse_value(ps))) goto fail;
        } while (eat(ps, ","));
        if (!eat(ps, ")")) {
            parse_fail(ps, "expected ',' or ')'");
            goto fail;
        }
    }
    for (size_t i = 0; i < nparams; i++)
        if (!given[i] && !param_optional(b->params[i])) {
            snprintf(what, sizeof what, "%.*s: the argument '%.*s' is missing", (int)len, name, (int)param_len(b->params[i]),
                     param_name(b->params[i]));
            parse_fail(ps, what);
            goto fail;
        }
    for (size_t i = 0; i < nparams; i++) {
        node *kid = given[i];
        given[i] = NULL;
        if (add_kid_maybe(ps, n, kid, 1) != 0) goto fail;
    }
    for (size_t i = 0; i < nparams; i++) {
        node *k = n->kids[i];
        if (!param_is_pattern(b->params[i]) || !k || k->op != N_LIT) continue;
        if (k->lit.type != V_STR) {
            parse_fail(ps, "the pattern must be a \"string\"");
            goto fail;
        }
        size_t nl = strlen(b->name);
        int glob = (nl > 6 && !strcmp(b->name + nl - 6, "_match")) || (nl > 8 && !strcmp(b->name + nl - 8, "_matches"));
        if (compile_pattern(ps, n, k->lit.s.ptr, glob) != 0) goto fail;
    }
    const char *wrong = ottl_check_call(n);
    if (wrong) {
        snprintf(what, sizeof what, "%.*s: %s", (int)len, name, wrong);
        parse_fail(ps, what);
        goto fail;
    }
    return n;
fail:
    for (size_t i = 0; i < 6; i++) node_free(given[i]);
    node_free(n);
    return NULL;
}

static node *parse_plugin_args(parser *ps, node *n, const char *name, size_t len) {
    const sh_function *f = n->fn;
    if (!eat(ps, ")")) {
        do {
            if (add_kid(ps, n, parse_value(ps)) != 0) return node_free(n), NULL;
        } while (eat(ps, ","));
        if (!eat(ps, ")")) return node_free(n), parse_fail(ps, "expected ',' or ')'");
    }
    if (n->nkids != f->nargs) {
        char what[120];
        snprintf(what, sizeof what, "%.*s takes %u argument%s, not %zu", (int)len, name, f->nargs, f->nargs == 1 ? "" : "s", n->nkids);
        return node_free(n), parse_fail(ps, what);
    }
    for (size_t i = 0; i < n->nkids; i++) { /* literal arguments are checked now; others when they are read */
        node *k = n->kids[i];
        int want = (int)f->args[i], t = k->op == N_LIT ? k->lit.type : -1;
        int ok = t < 0 || (want == SPANHOST_ARG_STRING && t == V_STR) || (want == SPANHOST_ARG_BYTES && (t == V_STR || t == V_BYTES)) ||
                 (want == SPANHOST_ARG_INT && t == V_INT) || (want == SPANHOST_ARG_DOUBLE && (t == V_DBL || t == V_INT)) ||
                 (want == SPANHOST_ARG_BOOL && t == V_BOOL);
        if (!ok) {
            char what[120];
            snprintf(what, sizeof what, "%s: argument %zu must be %s", f->name, i + 1, type_name(f->args[i]));
            return node_free(n), parse_fail(ps, what);
        }
    }
    return n;
}

/* name(args...) with the name read and '(' next; `statement` for a statement's editor. */
static node *parse_call(parser *ps, const char *name, size_t len, int statement) {
    node *n = new_node(ps, N_CALL);
    if (!n) return NULL;
    n->builtin = ottl_find_builtin(name, len);
    if (!n->builtin && !(n->fn = find_function(name, len))) {
        char what[200];
        if (collector_function(name, len))
            snprintf(what, sizeof what, "the Collector's function '%.*s' is not supported yet (README, \"Expressions\", lists what is)", (int)len, name);
        else
            snprintf(what, sizeof what, "unknown function '%.*s' (README, \"Expressions\", lists the built-in ones; others come from "
                     "plugins.functions)", (int)len, name);
        return node_free(n), fail_at(ps, name, what);
    }
    int editor = n->builtin && n->builtin->editor;
    if (statement && !editor) return node_free(n), fail_at(ps, name, "a statement calls an editor: set, delete_key, replace_pattern, merge_maps...");
    if (!statement && editor) return node_free(n), fail_at(ps, name, "editors (set, delete_key...) are statements, not values");
    if (!eat(ps, "(")) return node_free(n), parse_fail(ps, "expected '('");
    return n->builtin ? parse_builtin_args(ps, n, name, len) : parse_plugin_args(ps, n, name, len);
}

/* --- Values and conditions -------------------------------------------------------------- */

static node *parse_value(parser *ps) {
    if (++ps->depth > OTTL_MAX_NESTING) return parse_fail(ps, "nested too deeply: more than 64 levels of parentheses, calls or not");
    node *n = parse_or(ps);
    ps->depth--;
    return n;
}

/* A constant item of a list or map literal as a value; 0 when it is not one. */
static int constant_value(const node *k, spanhost_value *v) {
    memset(v, 0, sizeof *v);
    if (k->op == N_LIST && k->constant) { v->type = SPANHOST_VALUE_ARRAY; v->as.array_value = *k->lit.list; return 1; }
    if (k->op == N_MAP && k->constant) { v->type = SPANHOST_VALUE_KVLIST; v->as.kvlist_value = *k->lit.map; return 1; }
    if (k->op != N_LIT) return 0;
    switch (k->lit.type) {
    case V_NIL: return 1;
    case V_STR: v->type = SPANHOST_VALUE_STRING; v->as.string_value = k->lit.s; return 1;
    case V_BYTES: v->type = SPANHOST_VALUE_BYTES; v->as.bytes_value.ptr = (const uint8_t *)k->lit.s.ptr; v->as.bytes_value.len = k->lit.s.len; return 1;
    case V_INT: v->type = SPANHOST_VALUE_INT; v->as.int_value = k->lit.i; return 1;
    case V_DBL: v->type = SPANHOST_VALUE_DOUBLE; v->as.double_value = k->lit.d; return 1;
    case V_BOOL: v->type = SPANHOST_VALUE_BOOL; v->as.bool_value = (int32_t)k->lit.i; return 1;
    default: return 0;
    }
}

/* A list or map literal of constants is built once, here, not on every run (statements like
 * limit(attributes, 64, ["service.name"]) run on every span). Nothing writes through it: a
 * statement that stores it copies it into the batch. */
static void fold_constant(node *n) {
    spanhost_value *values = (spanhost_value *)calloc(n->nkids ? n->nkids : 1, sizeof *values);
    if (!values) return;
    for (size_t i = 0; i < n->nkids; i++)
        if (!constant_value(n->kids[i], &values[i])) {
            free(values);
            return;
        }
    if (n->op == N_LIST) {
        spanhost_value_array *list = (spanhost_value_array *)malloc(sizeof *list);
        if (!list) { free(values); return; }
        list->items = values;
        list->count = n->nkids;
        n->lit.type = V_LIST;
        n->lit.list = list;
    } else {
        spanhost_kv_list *map = (spanhost_kv_list *)malloc(sizeof *map);
        spanhost_kv *items = (spanhost_kv *)calloc(n->nkids ? n->nkids : 1, sizeof *items);
        if (!map || !items) { free(map); free(items); free(values); return; }
        size_t count = 0;
        for (size_t i = 0; i < n->nkids; i++) { /* a key given twice keeps its last value */
            size_t at = count;
            for (size_t j = 0; j < count; j++)
                if (items[j].key.len == n->keys[i].len && !memcmp(items[j].key.ptr, n->keys[i].ptr, n->keys[i].len)) at = j;
            items[at].key = n->keys[i];
            items[at].value = values[i];
            if (at == count) count++;
        }
        free(values);
        map->items = items;
        map->count = count;
        n->lit.type = V_MAP;
        n->lit.map = map;
    }
    n->constant = 1;
}

static node *parse_list(parser *ps) {
    node *n = new_node(ps, N_LIST);
    if (!n) return NULL;
    if (!eat(ps, "]")) {
        do {
            if (add_kid(ps, n, parse_value(ps)) != 0) return node_free(n), NULL;
        } while (eat(ps, ","));
        if (!eat(ps, "]")) return node_free(n), parse_fail(ps, "expected ',' or ']'");
    }
    fold_constant(n);
    return n;
}

static node *parse_map(parser *ps) {
    node *n = new_node(ps, N_MAP);
    if (!n) return NULL;
    if (!eat(ps, "}")) {
        do {
            spanhost_str key;
            if (!quoted(ps, &key)) return node_free(n), ps->failed ? NULL : parse_fail(ps, "a map key is a \"string\"");
            if (!eat(ps, ":")) return node_free(n), parse_fail(ps, "expected ':'");
            spanhost_str *keys = (spanhost_str *)realloc(n->keys, (n->nkids + 1) * sizeof *keys);
            if (!keys) return node_free(n), parse_fail(ps, "out of memory");
            n->keys = keys;
            n->keys[n->nkids] = key;
            if (add_kid(ps, n, parse_value(ps)) != 0) return node_free(n), NULL;
        } while (eat(ps, ","));
        if (!eat(ps, "}")) return node_free(n), parse_fail(ps, "expected ',' or '}'");
    }
    fold_constant(n);
    return n;
}

static node *parse_primary(parser *ps) {
    space(ps);
    if (eat(ps, "(")) {
        node *n = parse_value(ps);
        if (n && !eat(ps, ")")) return node_free(n), parse_fail(ps, "expected ')'");
        return n;
    }
    if (eat(ps, "[")) return parse_list(ps);
    if (eat(ps, "{")) return parse_map(ps);
    node *n = parse_literal(ps);
    if (n || ps->failed) return n;
    const char *start = ps->p;
    while (ps->p < ps->end && (is_word(*ps->p) || (*ps->p == '.' && ps->p > start))) ps->p++;
    size_t len = (size_t)(ps->p - start);
    if (!len) return parse_fail(ps, "expected a path (attributes[\"k\"], name, kind, status.code...), a literal, a function call or '('");
    if (peek(ps, '(') && !memchr(start, '.', len)) {
        node *call = parse_call(ps, start, len, 0);
        if (!call || !peek(ps, '[')) return call;
        node *index = new_node(ps, N_INDEX);
        if (!index) return node_free(call), NULL;
        if (add_kid(ps, index, call) != 0) return node_free(index), NULL; /* holds the call unless it was freed */
        if (parse_indexes(ps, index) != 0) return node_free(index), NULL;
        return index;
    }
    if (isupper((unsigned char)start[0])) {
        for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++)
            if (strlen(enums[i].name) == len && !memcmp(enums[i].name, start, len)) {
                if (!(n = new_node(ps, N_LIT))) return NULL;
                n->lit.type = V_INT;
                n->lit.i = enums[i].value;
                return n;
            }
        const ottl_builtin *b = ottl_find_builtin(start, len);
        if (b && !b->editor) {
            if (!(n = new_node(ps, N_LIT))) return NULL;
            n->lit.type = V_FUNC;
            n->lit.fn = b;
            return n;
        }
        char what[160];
        snprintf(what, sizeof what, "unknown enum or function '%.*s'", (int)(len > 80 ? 80 : len), start);
        return fail_at(ps, start, what);
    }
    return parse_path(ps, start, len);
}

static node *parse_binary_math(parser *ps, const char *ops, node *(*next)(parser *)) {
    node *left = next(ps);
    while (left) {
        space(ps);
        if (ps->p >= ps->end || !strchr(ops, *ps->p)) break;
        int op = *ps->p++;
        node *n = new_node(ps, N_MATH);
        if (!n) return node_free(left), NULL;
        n->sub = op;
        if (add_kid(ps, n, left) != 0 || add_kid(ps, n, next(ps)) != 0) return node_free(n), NULL;
        left = n;
    }
    return left;
}

static node *parse_product(parser *ps) { return parse_binary_math(ps, "*/", parse_primary); }
static node *parse_sum(parser *ps) { return parse_binary_math(ps, "+-", parse_product); }

static node *parse_compare(parser *ps) {
    static const struct { const char *text; int op; } ops[] = {
        {"==", CMP_EQ}, {"!=", CMP_NE}, {"<=", CMP_LE}, {">=", CMP_GE}, {"<", CMP_LT}, {">", CMP_GT}};
    node *left = parse_sum(ps);
    if (!left) return NULL;
    for (size_t i = 0; i < 6; i++)
        if (eat(ps, ops[i].text)) {
            node *n = new_node(ps, N_CMP);
            if (!n) return node_free(left), NULL;
            n->sub = ops[i].op;
            if (add_kid(ps, n, left) != 0 || add_kid(ps, n, parse_sum(ps)) != 0) return node_free(n), NULL;
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
    while (ps->p < ps->end && is_word(*ps->p)) ps->p++;
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
        if (i > 0 && (is_word(text[i - 1]) || text[i - 1] == '.')) continue;
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
    node *root = kind == SPANHOST_EXPR_STATEMENT ? parse_statement(&ps) : kind == SPANHOST_EXPR_CONDITION ? parse_value(&ps) : NULL;
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


/* One value expression with no span, for sh_expr_call: the tree, or NULL with the error. */
node *ottl_parse_value(const char *text, size_t len, char *err, size_t cap) {
    parser ps = {text, text, text + len, SPANHOST_CONTEXT_SPAN, err, cap, 0, 0};
    err[0] = 0;
    node *n = parse_value(&ps);
    space(&ps);
    if (n && ps.p != ps.end) {
        node_free(n);
        n = parse_fail(&ps, "unexpected text after the call");
    }
    return n;
}

void ottl_node_free(node *n) { node_free(n); }

/* --- Calling a plugin's function --------------------------------------------------------- */

int ottl_run_plugin_function(runner *r, const node *n, xvalue *args, xvalue *out) {
    const sh_function *f = n->fn;
    union { spanhost_str s; int64_t i; double d; int32_t b; } values[MAX_ARGS], result;
    void *ptrs[MAX_ARGS + 2];
    memset(&result, 0, sizeof result);
    for (size_t i = 0; i < n->nkids; i++) {
        xvalue *a = &args[i];
        switch (f->args[i]) {
        case SPANHOST_ARG_STRING:
        case SPANHOST_ARG_BYTES:
            if (a->type == V_NIL) a->s.ptr = NULL, a->s.len = 0; /* missing: {NULL, 0} */
            else if (a->type != V_STR && a->type != V_BYTES) return ottl_fail(r, "%s: argument %zu is not a string", f->name, i + 1);
            else if (!a->s.ptr) a->s.ptr = ""; /* present but empty: never NULL, so it differs from missing */
            values[i].s = a->s;
            break;
        case SPANHOST_ARG_INT:
            if (a->type != V_INT) return ottl_fail(r, "%s: argument %zu is not an int", f->name, i + 1);
            values[i].i = a->i;
            break;
        case SPANHOST_ARG_DOUBLE:
            if (a->type != V_DBL && a->type != V_INT) return ottl_fail(r, "%s: argument %zu is not a number", f->name, i + 1);
            values[i].d = a->type == V_INT ? (double)a->i : a->d;
            break;
        case SPANHOST_ARG_BOOL:
            if (a->type != V_BOOL) return ottl_fail(r, "%s: argument %zu is not a bool", f->name, i + 1);
            values[i].b = (int32_t)a->i;
            break;
        }
        ptrs[i] = &values[i];
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
    case SHAPE_S: rc = ((call_s)f->fn)(values[0].s, &result, &status); break;
    case SHAPE_I: rc = ((call_i)f->fn)(values[0].i, &result, &status); break;
    case SHAPE_SS: rc = ((call_ss)f->fn)(values[0].s, values[1].s, &result, &status); break;
    case SHAPE_SI: rc = ((call_si)f->fn)(values[0].s, values[1].i, &result, &status); break;
    case SHAPE_IS: rc = ((call_is)f->fn)(values[0].i, values[1].s, &result, &status); break;
    case SHAPE_II: rc = ((call_ii)f->fn)(values[0].i, values[1].i, &result, &status); break;
    default: {
        void *result_ptr = &result, *status_ptr = &status;
        ffi_arg ret = 0;
        ptrs[n->nkids] = &result_ptr;
        ptrs[n->nkids + 1] = &status_ptr;
        ffi_call((ffi_cif *)&f->cif, f->fn, &ret, ptrs);
        rc = (int32_t)ret;
    }
    }
    if (rc != SPANHOST_OK) return ottl_fail(r, "%s failed: %s", f->name, message[0] ? message : "no message");
    switch (f->result) {
    case SPANHOST_ARG_STRING:
    case SPANHOST_ARG_BYTES:
        out->type = f->result == SPANHOST_ARG_STRING ? V_STR : V_BYTES;
        /* The function's memory is good until its next call: keep a copy in the batch, and a
         * string result that is not UTF-8 is repaired, as every string in a batch is. */
        if (f->result == SPANHOST_ARG_STRING && sh_high_bits(result.s.ptr, result.s.len) && !sh_utf8_valid(result.s.ptr, result.s.len)) {
            char *fixed = (char *)ottl_alloc(r, result.s.len * 3);
            if (!fixed) return ottl_fail(r, "%s: out of memory", f->name);
            out->s.len = sh_utf8_repair(result.s.ptr, result.s.len, fixed);
            out->s.ptr = fixed;
            return 0;
        }
        out->s = ottl_strdup(r, result.s.ptr, result.s.len);
        if (result.s.len && !out->s.ptr) return ottl_fail(r, "%s: out of memory", f->name);
        return 0;
    case SPANHOST_ARG_INT: out->type = V_INT; out->i = result.i; return 0;
    case SPANHOST_ARG_DOUBLE: out->type = V_DBL; out->d = result.d; return 0;
    case SPANHOST_ARG_BOOL: out->type = V_BOOL; out->i = result.b != 0; return 0;
    }
    return 0;
}
