/*
 * The expression engine's own types, shared by its files (private to CSpanhost):
 *   ottl.c            functions plugins add (libffi), kept literal text, patterns, the parser
 *   ottl_eval.c       values, paths, operators, conditions and statements run against spans
 *   ottl_functions.c  the Collector's editors and converters built in
 */
#ifndef SPANHOST_OTTL_INTERNAL_H
#define SPANHOST_OTTL_INTERNAL_H

#include "spanhost_core.h"

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

/* Run-time values. V_MAP and V_LIST point at live data (a span's attributes, a nested value) or
 * at memory of the run; V_TIME is nanoseconds since 1970 (UTC), V_DUR nanoseconds. V_FUNC is a
 * converter passed by name, as in replace_pattern(..., SHA256). */
enum { V_NIL, V_STR, V_INT, V_DBL, V_BOOL, V_BYTES, V_MAP, V_LIST, V_TIME, V_DUR, V_FUNC };

struct ottl_builtin;

typedef struct xvalue {
    int type;
    int id; /* V_BYTES: an id (trace_id, SpanID(...)), whose text is a list of its bytes */
    union {
        spanhost_str s;              /* V_STR, V_BYTES */
        int64_t i;                   /* V_INT, V_BOOL, V_TIME, V_DUR */
        double d;                    /* V_DBL */
        spanhost_kv_list *map;       /* V_MAP */
        spanhost_value_array *list;  /* V_LIST */
        const struct ottl_builtin *fn; /* V_FUNC */
    };
} xvalue;

enum { N_OR, N_AND, N_NOT, N_CMP, N_MATH, N_LIT, N_PATH, N_LIST, N_MAP, N_CALL, N_INDEX };
enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };

/* The field a path starts at; its [index] steps are the node's kids. */
enum {
    P_ATTRS, P_RES_ATTRS, P_SCOPE_ATTRS, P_EV_ATTRS, P_CACHE,
    P_NAME, P_KIND, P_KIND_STRING, P_STATUS_CODE, P_STATUS_MSG,
    P_TRACE_ID, P_TRACE_ID_STR, P_SPAN_ID, P_SPAN_ID_STR, P_PARENT_ID, P_PARENT_ID_STR, P_TRACE_STATE,
    P_START_NS, P_END_NS, P_START, P_END, P_DURATION, P_FLAGS,
    P_DROPPED_ATTRS, P_DROPPED_EVENTS, P_DROPPED_LINKS, P_RES_DROPPED, P_SCOPE_DROPPED,
    P_SCOPE_NAME, P_SCOPE_VERSION,
    P_EV_NAME, P_EV_TIME_NS, P_EV_TIME, P_EV_DROPPED, P_EV_INDEX
};

/* Patterns that are plain text with anchors are matched with memcmp (ottl.c). */
enum { RX_REGEX, RX_CONTAINS, RX_PREFIX, RX_SUFFIX, RX_EXACT };

typedef struct node {
    int op, sub;
    int height;         /* 1 for a leaf: the evaluator recurses this deep */
    struct node **kids; /* operands, call arguments in parameter order (NULL: not given), list
                           items, map values, a path's index steps */
    size_t nkids;
    spanhost_str *keys; /* N_MAP: the key of each kid (kept literal text) */
    xvalue lit;         /* N_LIT; N_LIST and N_MAP of constants: their value, built once */
    int constant;       /* N_LIST, N_MAP: `lit` holds the value (its arrays are the node's) */
    int map_key;        /* N_PATH: one literal string key into an attribute map (the common case) */
    regex_t re;         /* N_CALL: the pattern argument, compiled once */
    int has_re;
    int literal;        /* RX_*: a pattern of plain characters */
    spanhost_str lit_text;
    char **group_names; /* N_CALL: names of the pattern's (?P<name>) groups, by group number */
    size_t ngroups;
    const struct ottl_builtin *builtin; /* N_CALL: a built-in editor or converter */
    const struct sh_function *fn;       /* N_CALL: a function a plugin added */
    struct node *where;
} node;

struct spanhost_expr {
    uint32_t kind, context;
    node *root;
};

typedef struct runner {
    const spanhost_expr_target *t;
    spanhost_status *status;
    spanhost_batch *batch;   /* the target's, or one of the run's own (released after it) */
    spanhost_batch *scratch; /* that one of its own, if any */
} runner;

/* A built-in function. `params` names its parameters in order, "name?" for an optional one,
 * "*name" for a pattern compiled when the call is (a regular expression, or a glob for names
 * ending in "_match"/"_matches"), "name:s" (string), ":i" (int), ":b" (bool) or ":l" (list)
 * for one whose literal argument must have that type. Editors get the values of their arguments (a map or list
 * argument is the live one) and write back through ottl_assign with the call's first kid. */
typedef struct ottl_builtin {
    const char *name;
    int editor;
    const char *params[6];
    int target_unread; /* the first argument is only written (set): not evaluated first */
    int (*run)(runner *r, const node *call, xvalue *args, xvalue *out);
} ottl_builtin;

const ottl_builtin *ottl_find_builtin(const char *name, size_t len);
/* The literal arguments of a call checked when it is compiled; NULL, or why not. */
const char *ottl_check_call(const node *call);

/* ottl_eval.c, for the functions */
int ottl_fail(runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *ottl_alloc(runner *r, size_t size);
/* The batch the run allocates from: the target's, or one of the run's own. NULL when out of memory. */
spanhost_batch *ottl_batch(runner *r);
/* The value of `key` in `list`, or NULL. */
spanhost_value *ottl_find(const spanhost_kv_list *list, spanhost_str key);
spanhost_str ottl_strdup(runner *r, const char *ptr, size_t len);
int ottl_assign(runner *r, const node *target, const xvalue *value, int lent);
int ottl_to_value(runner *r, const xvalue *x, spanhost_value *v);
void ottl_from_value(xvalue *out, const spanhost_value *v);
int ottl_compare(int op, const xvalue *a, const xvalue *b);
int ottl_match(const node *call, const regex_t *re, spanhost_str s, size_t groups, regmatch_t *m);
/* Text of a value as the Collector's String converter gives it (JSON for maps and lists). */
int ottl_to_text(runner *r, const xvalue *v, spanhost_str *out);
const char *ottl_type_name(int type);
int ottl_call_function(runner *r, const struct ottl_builtin *fn, xvalue *arg, xvalue *out);

/* ottl.c */
const char *ottl_keep_literal(const char *text, size_t len);
int ottl_literal_match(int kind, spanhost_str want, spanhost_str s);
int ottl_run_plugin_function(runner *r, const node *n, xvalue *args, xvalue *out);

#endif
