/* ottl.h -- OTTL conditions on spans (the subset the Collector's filter processor users write),
 * compiled once into a tree and evaluated against the C span structs with no allocation.
 * Header-only, like plugin_util.h.
 *
 * Grammar:
 *   condition := or;  or := and ("or" and)*;  and := not ("and" not)*;  not := "not" not | compare
 *   compare   := operand [("==" | "!=" | "<" | "<=" | ">" | ">=") operand]
 *   operand   := path | literal | IsMatch(operand, "regex") | "(" condition ")"
 *   path      := attributes["key"] | resource.attributes["key"] | name | kind | status.code
 *              | status.message | trace_id.string | span_id.string | parent_span_id.string
 *              | start_time_unix_nano | end_time_unix_nano | duration (end - start, in ns)
 *              | instrumentation_scope.name
 *   literal   := "string" | 42 | 4.2 | true | false | nil | SPAN_KIND_SERVER ... | STATUS_CODE_ERROR ...
 * A missing attribute is nil: it equals only nil, and ordering comparisons with nil are false.
 * Numbers compare as numbers (int with double too), strings as bytes; other mixes are unequal.
 */
#ifndef SPANHOST_OTTL_H
#define SPANHOST_OTTL_H

#include "plugin_util.h"

#include <ctype.h>

enum { OTTL_O_OR, OTTL_O_AND, OTTL_O_NOT, OTTL_O_CMP, OTTL_O_ISMATCH, OTTL_O_ATTR, OTTL_O_RES_ATTR, OTTL_O_FIELD, OTTL_O_LIT };
enum { OTTL_F_NAME, OTTL_F_KIND, OTTL_F_STATUS_CODE, OTTL_F_STATUS_MSG, OTTL_F_TRACE_ID, OTTL_F_SPAN_ID, OTTL_F_PARENT_ID, OTTL_F_START, OTTL_F_END, OTTL_F_DURATION, OTTL_F_SCOPE };
enum { OTTL_CMP_EQ, OTTL_CMP_NE, OTTL_CMP_LT, OTTL_CMP_LE, OTTL_CMP_GT, OTTL_CMP_GE };
enum { OTTL_V_NIL, OTTL_V_STR, OTTL_V_INT, OTTL_V_DBL, OTTL_V_BOOL };

typedef struct ottl_value {
    int type;
    spanhost_str s;
    int64_t i;
    double d;
    char buf[33]; /* hex ids */
} ottl_value;

typedef struct ottl_node {
    int op, sub; /* sub: CMP_* or F_* */
    struct ottl_node *a, *b;
    ottl_value lit;   /* OTTL_O_LIT; OTTL_O_ATTR/OTTL_O_RES_ATTR: the key in lit.s */
    regex_t re;       /* OTTL_O_ISMATCH */
    int has_re;
    char *owned;      /* a literal's unescaped text */
} ottl_node;

typedef struct ottl_parser {
    const char *text, *p, *end;
    char *err;
    size_t err_cap;
} ottl_parser;

static inline void ottl_free(ottl_node *n) {
    if (!n) return;
    ottl_free(n->a);
    ottl_free(n->b);
    if (n->has_re) regfree(&n->re);
    free(n->owned);
    free(n);
}

static inline ottl_node *ottl_fail(ottl_parser *ps, const char *what) {
    snprintf(ps->err, ps->err_cap, "column %d: %s", (int)(ps->p - ps->text) + 1, what);
    return NULL;
}

static inline void ottl_space(ottl_parser *ps) {
    while (ps->p < ps->end && isspace((unsigned char)*ps->p)) ps->p++;
}

/* Consumes `word` (a keyword or punctuation) if it comes next. */
static inline int ottl_eat(ottl_parser *ps, const char *word) {
    ottl_space(ps);
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n)) return 0;
    if (isalpha((unsigned char)word[0]) && ps->p + n < ps->end && (isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_')) return 0;
    ps->p += n;
    return 1;
}

static inline ottl_node *ottl_new(int op) {
    ottl_node *n = (ottl_node *)calloc(1, sizeof *n);
    if (n) n->op = op;
    return n;
}

/* A "quoted" string with \" and \\ escapes, into n->owned. */
static inline int ottl_string(ottl_parser *ps, ottl_node *n) {
    ottl_space(ps);
    if (ps->p >= ps->end || *ps->p != '"') return 0;
    ps->p++;
    char *out = (char *)malloc((size_t)(ps->end - ps->p) + 1);
    size_t len = 0;
    if (!out) return 0;
    while (ps->p < ps->end && *ps->p != '"') {
        if (*ps->p == '\\' && ps->p + 1 < ps->end) ps->p++;
        out[len++] = *ps->p++;
    }
    if (ps->p >= ps->end) { free(out); return 0; }
    ps->p++;
    free(n->owned);
    n->owned = out;
    n->lit.type = OTTL_V_STR;
    n->lit.s.ptr = out;
    n->lit.s.len = len;
    return 1;
}

static ottl_node *ottl_or(ottl_parser *ps);

static inline ottl_node *ottl_operand(ottl_parser *ps) {
    static const struct { const char *name; int field; } fields[] = {
        {"status.code", OTTL_F_STATUS_CODE}, {"status.message", OTTL_F_STATUS_MSG}, {"trace_id.string", OTTL_F_TRACE_ID},
        {"span_id.string", OTTL_F_SPAN_ID}, {"parent_span_id.string", OTTL_F_PARENT_ID}, {"start_time_unix_nano", OTTL_F_START},
        {"end_time_unix_nano", OTTL_F_END}, {"duration", OTTL_F_DURATION}, {"instrumentation_scope.name", OTTL_F_SCOPE}, {"name", OTTL_F_NAME}, {"kind", OTTL_F_KIND}};
    static const struct { const char *name; int64_t value; } constants[] = {
        {"SPAN_KIND_UNSPECIFIED", 0}, {"SPAN_KIND_INTERNAL", 1}, {"SPAN_KIND_SERVER", 2}, {"SPAN_KIND_CLIENT", 3},
        {"SPAN_KIND_PRODUCER", 4}, {"SPAN_KIND_CONSUMER", 5}, {"STATUS_CODE_UNSET", 0}, {"STATUS_CODE_OK", 1},
        {"STATUS_CODE_ERROR", 2}};
    ottl_space(ps);
    if (ottl_eat(ps, "(")) {
        ottl_node *n = ottl_or(ps);
        if (!n) return NULL;
        if (!ottl_eat(ps, ")")) { ottl_free(n); return ottl_fail(ps, "expected ')'"); }
        return n;
    }
    if (ottl_eat(ps, "IsMatch")) {
        ottl_node *n = ottl_new(OTTL_O_ISMATCH), pattern;
        memset(&pattern, 0, sizeof pattern);
        if (!n) return ottl_fail(ps, "out of memory");
        if (!ottl_eat(ps, "(") || !(n->a = ottl_operand(ps))) { ottl_free(n); return ps->err[0] ? NULL : ottl_fail(ps, "expected IsMatch(target, \"pattern\")"); }
        if (!ottl_eat(ps, ",") || !ottl_string(ps, &pattern) || !ottl_eat(ps, ")")) {
            free(pattern.owned);
            ottl_free(n);
            return ottl_fail(ps, "expected IsMatch(target, \"pattern\")");
        }
        char err[160];
        if (util_regcomp(&n->re, pattern.lit.s, NULL, 0, err, sizeof err)) {
            free(pattern.owned);
            ottl_free(n);
            return ottl_fail(ps, err);
        }
        free(pattern.owned);
        n->has_re = 1;
        return n;
    }
    int resource = ottl_eat(ps, "resource.attributes");
    if (resource || ottl_eat(ps, "attributes")) {
        ottl_node *n = ottl_new(resource ? OTTL_O_RES_ATTR : OTTL_O_ATTR);
        if (!n) return ottl_fail(ps, "out of memory");
        if (!ottl_eat(ps, "[") || !ottl_string(ps, n) || !ottl_eat(ps, "]")) { ottl_free(n); return ottl_fail(ps, "expected attributes[\"key\"]"); }
        return n;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (ottl_eat(ps, fields[i].name)) {
            ottl_node *n = ottl_new(OTTL_O_FIELD);
            if (!n) return ottl_fail(ps, "out of memory");
            n->sub = fields[i].field;
            return n;
        }
    ottl_node *n = ottl_new(OTTL_O_LIT);
    if (!n) return ottl_fail(ps, "out of memory");
    if (ottl_string(ps, n)) return n;
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (ottl_eat(ps, constants[i].name)) { n->lit.type = OTTL_V_INT; n->lit.i = constants[i].value; return n; }
    if (ottl_eat(ps, "true")) { n->lit.type = OTTL_V_BOOL; n->lit.i = 1; return n; }
    if (ottl_eat(ps, "false")) { n->lit.type = OTTL_V_BOOL; n->lit.i = 0; return n; }
    if (ottl_eat(ps, "nil")) { n->lit.type = OTTL_V_NIL; return n; }
    ottl_space(ps);
    if (ps->p < ps->end && (isdigit((unsigned char)*ps->p) || *ps->p == '-')) {
        char buf[64], *stop;
        size_t len = 0;
        while (ps->p + len < ps->end && len < sizeof buf - 1 && (isalnum((unsigned char)ps->p[len]) || strchr(".-+", ps->p[len]))) len++;
        memcpy(buf, ps->p, len);
        buf[len] = 0;
        if (strpbrk(buf, ".eE")) { n->lit.type = OTTL_V_DBL; n->lit.d = strtod(buf, &stop); }
        else { n->lit.type = OTTL_V_INT; n->lit.i = strtoll(buf, &stop, 10); }
        if (*stop) { ottl_free(n); return ottl_fail(ps, "not a number"); }
        ps->p += len;
        return n;
    }
    ottl_free(n);
    return ottl_fail(ps, "expected a path (attributes[\"k\"], name, kind, status.code...), a literal, IsMatch(...) or '('");
}

static inline ottl_node *ottl_compare(ottl_parser *ps) {
    static const struct { const char *text; int op; } ops[] = {{"==", OTTL_CMP_EQ}, {"!=", OTTL_CMP_NE}, {"<=", OTTL_CMP_LE}, {">=", OTTL_CMP_GE}, {"<", OTTL_CMP_LT}, {">", OTTL_CMP_GT}};
    ottl_node *left = ottl_operand(ps);
    if (!left) return NULL;
    for (size_t i = 0; i < 6; i++)
        if (ottl_eat(ps, ops[i].text)) {
            ottl_node *n = ottl_new(OTTL_O_CMP);
            if (!n) { ottl_free(left); return ottl_fail(ps, "out of memory"); }
            n->sub = ops[i].op;
            n->a = left;
            if (!(n->b = ottl_operand(ps))) { ottl_free(n); return NULL; }
            return n;
        }
    return left; /* a bare operand: IsMatch(...), true/false, or a parenthesized condition */
}

static inline ottl_node *ottl_not(ottl_parser *ps) {
    if (ottl_eat(ps, "not")) {
        ottl_node *n = ottl_new(OTTL_O_NOT);
        if (!n) return ottl_fail(ps, "out of memory");
        if (!(n->a = ottl_not(ps))) { ottl_free(n); return NULL; }
        return n;
    }
    return ottl_compare(ps);
}

static inline ottl_node *ottl_binary(ottl_parser *ps, const char *word, int op, ottl_node *(*next)(ottl_parser *)) {
    ottl_node *left = next(ps);
    while (left && ottl_eat(ps, word)) {
        ottl_node *n = ottl_new(op);
        if (!n) { ottl_free(left); return ottl_fail(ps, "out of memory"); }
        n->a = left;
        if (!(n->b = next(ps))) { ottl_free(n); return NULL; }
        left = n;
    }
    return left;
}

static inline ottl_node *ottl_and(ottl_parser *ps) { return ottl_binary(ps, "and", OTTL_O_AND, ottl_not); }
static ottl_node *ottl_or(ottl_parser *ps) { return ottl_binary(ps, "or", OTTL_O_OR, ottl_and); }

/* Compiles `text`; NULL with "column N: what" in err. */
static inline ottl_node *ottl_compile(spanhost_str text, char *err, size_t err_cap) {
    ottl_parser ps = {text.ptr, text.ptr, text.ptr + text.len, err, err_cap};
    err[0] = 0;
    ottl_node *n = ottl_or(&ps);
    ottl_space(&ps);
    if (n && ps.p != ps.end) {
        ottl_free(n);
        return ottl_fail(&ps, "unexpected text after the condition");
    }
    return n;
}

static inline void ottl_hex(ottl_value *v, const uint8_t *id, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        v->buf[2 * i] = digits[id[i] >> 4];
        v->buf[2 * i + 1] = digits[id[i] & 15];
    }
    v->type = OTTL_V_STR;
    v->s.ptr = v->buf;
    v->s.len = 2 * n;
}

static inline void ottl_from(ottl_value *out, const spanhost_value *v) {
    out->type = OTTL_V_NIL;
    if (!v) return;
    switch (v->type) {
    case SPANHOST_VALUE_STRING: out->type = OTTL_V_STR; out->s = v->as.string_value; break;
    case SPANHOST_VALUE_INT: out->type = OTTL_V_INT; out->i = v->as.int_value; break;
    case SPANHOST_VALUE_DOUBLE: out->type = OTTL_V_DBL; out->d = v->as.double_value; break;
    case SPANHOST_VALUE_BOOL: out->type = OTTL_V_BOOL; out->i = v->as.bool_value != 0; break;
    default: break; /* arrays, maps, bytes: compared as nil */
    }
}

/* The value of an operand node (not a condition). */
static inline void ottl_value_of(const ottl_node *n, const spanhost_span *span, const spanhost_resource *res,
                                 const spanhost_scope *scope, ottl_value *out) {
    memset(out, 0, sizeof *out);
    switch (n->op) {
    case OTTL_O_LIT: *out = n->lit; return;
    case OTTL_O_ATTR: ottl_from(out, util_find(&span->attributes, n->lit.s)); return;
    case OTTL_O_RES_ATTR: ottl_from(out, res ? util_find(&res->attributes, n->lit.s) : NULL); return;
    case OTTL_O_FIELD:
        switch (n->sub) {
        case OTTL_F_NAME: out->type = OTTL_V_STR; out->s = span->name; return;
        case OTTL_F_KIND: out->type = OTTL_V_INT; out->i = span->kind; return;
        case OTTL_F_STATUS_CODE: out->type = OTTL_V_INT; out->i = span->status_code; return;
        case OTTL_F_STATUS_MSG: out->type = OTTL_V_STR; out->s = span->status_message; return;
        case OTTL_F_TRACE_ID: ottl_hex(out, span->trace_id, 16); return;
        case OTTL_F_SPAN_ID: ottl_hex(out, span->span_id, 8); return;
        case OTTL_F_PARENT_ID: ottl_hex(out, span->parent_span_id, 8); return;
        case OTTL_F_START: out->type = OTTL_V_INT; out->i = (int64_t)span->start_time_unix_nano; return;
        case OTTL_F_END: out->type = OTTL_V_INT; out->i = (int64_t)span->end_time_unix_nano; return;
        case OTTL_F_DURATION:
            out->type = OTTL_V_INT;
            out->i = span->end_time_unix_nano > span->start_time_unix_nano ? (int64_t)(span->end_time_unix_nano - span->start_time_unix_nano) : 0;
            return;
        case OTTL_F_SCOPE: if (scope) { out->type = OTTL_V_STR; out->s = scope->name; } return;
        }
        return;
    default: return;
    }
}

static inline int ottl_eval(const ottl_node *n, const spanhost_span *span, const spanhost_resource *res, const spanhost_scope *scope);

static inline int ottl_compare_values(int op, const ottl_value *a, const ottl_value *b) {
    int order; /* <0, 0, >0; 2 when the two cannot be ordered */
    if (a->type == OTTL_V_NIL || b->type == OTTL_V_NIL) {
        if (op == OTTL_CMP_EQ) return a->type == b->type;
        if (op == OTTL_CMP_NE) return a->type != b->type;
        return 0;
    }
    if ((a->type == OTTL_V_INT || a->type == OTTL_V_DBL) && (b->type == OTTL_V_INT || b->type == OTTL_V_DBL)) {
        if (a->type == OTTL_V_INT && b->type == OTTL_V_INT) order = a->i < b->i ? -1 : a->i > b->i;
        else {
            double x = a->type == OTTL_V_INT ? (double)a->i : a->d, y = b->type == OTTL_V_INT ? (double)b->i : b->d;
            order = x < y ? -1 : x > y;
        }
    } else if (a->type == OTTL_V_STR && b->type == OTTL_V_STR) {
        size_t n = a->s.len < b->s.len ? a->s.len : b->s.len;
        int c = n ? memcmp(a->s.ptr, b->s.ptr, n) : 0;
        order = c ? (c < 0 ? -1 : 1) : (a->s.len < b->s.len ? -1 : a->s.len > b->s.len);
    } else if (a->type == OTTL_V_BOOL && b->type == OTTL_V_BOOL) {
        order = a->i == b->i ? 0 : 2;
    } else {
        order = 2;
    }
    switch (op) {
    case OTTL_CMP_EQ: return order == 0;
    case OTTL_CMP_NE: return order != 0;
    case OTTL_CMP_LT: return order == -1;
    case OTTL_CMP_LE: return order == -1 || order == 0;
    case OTTL_CMP_GT: return order == 1;
    default: return order == 1 || order == 0;
    }
}

/* Whether the condition holds for the span. */
static inline int ottl_eval(const ottl_node *n, const spanhost_span *span, const spanhost_resource *res, const spanhost_scope *scope) {
    ottl_value a, b;
    switch (n->op) {
    case OTTL_O_OR: return ottl_eval(n->a, span, res, scope) || ottl_eval(n->b, span, res, scope);
    case OTTL_O_AND: return ottl_eval(n->a, span, res, scope) && ottl_eval(n->b, span, res, scope);
    case OTTL_O_NOT: return !ottl_eval(n->a, span, res, scope);
    case OTTL_O_CMP:
        if (n->a->op <= OTTL_O_ISMATCH) a.type = OTTL_V_BOOL, a.i = ottl_eval(n->a, span, res, scope); else ottl_value_of(n->a, span, res, scope, &a);
        if (n->b->op <= OTTL_O_ISMATCH) b.type = OTTL_V_BOOL, b.i = ottl_eval(n->b, span, res, scope); else ottl_value_of(n->b, span, res, scope, &b);
        return ottl_compare_values(n->sub, &a, &b);
    case OTTL_O_ISMATCH: {
        ottl_value_of(n->a, span, res, scope, &a);
        char buf[64];
        if (a.type == OTTL_V_STR) return util_regmatch(&n->re, a.s.ptr, a.s.len);
        if (a.type == OTTL_V_INT) return util_regmatch(&n->re, buf, (size_t)snprintf(buf, sizeof buf, "%lld", (long long)a.i));
        return 0;
    }
    default:
        ottl_value_of(n, span, res, scope, &a);
        return a.type == OTTL_V_BOOL && a.i;
    }
}

#endif
