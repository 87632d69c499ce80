/* Unit tests of the expression engine (OTTL) in C, on spans decoded from OTLP JSON, built with
 * ASan and UBSan by `make test-c`. Each check prints what it expected when it fails. */
#include <stdio.h>
#include <string.h>

#include "spanhost_core.h"

static int failures, checks;

#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static const char *BODY =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":\"web\"}}]},"
    "\"scopeSpans\":[{\"spans\":[{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\","
    "\"name\":\"GET /x\",\"kind\":2,\"startTimeUnixNano\":\"1000\",\"endTimeUnixNano\":\"3000\","
    "\"attributes\":[{\"key\":\"http.status_code\",\"value\":{\"intValue\":\"503\"}},"
    "{\"key\":\"user.email\",\"value\":{\"stringValue\":\"ann@example.com\"}}]}]}]}]}";

static spanhost_batch *batch;

static spanhost_expr_target span_target(void) {
    spanhost_expr_target t;
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    t.batch = batch;
    t.resource = batch->resource_spans[0]->resource;
    t.scope = batch->resource_spans[0]->scope_spans[0]->scope;
    t.span = batch->resource_spans[0]->scope_spans[0]->spans[0];
    return t;
}

/* Compiles and runs `text` on the span; the result of sh_expr_run, or -100 if it did not compile. */
static int run(const char *text, uint32_t kind, uint32_t context) {
    char err[256] = "";
    spanhost_expr *e = sh_expr_compile(text, strlen(text), kind, context, err, sizeof err);
    if (!e) { printf("  (compile error for %s: %s)\n", text, err); return -100; }
    spanhost_expr_target t = span_target();
    char message[256] = "";
    spanhost_status status = { sizeof status, 0, message, sizeof message };
    int32_t r = sh_expr_run(e, &t, &status);
    sh_expr_free(e);
    return r;
}

static int holds(const char *condition) { return run(condition, SPANHOST_EXPR_CONDITION, SPANHOST_CONTEXT_SPAN); }

static void test_conditions(void) {
    CHECK(holds("attributes[\"http.status_code\"] >= 500") == 1, "an int attribute compares as an int");
    CHECK(holds("attributes[\"http.status_code\"] == 200") == 0, "and is not 200");
    CHECK(holds("name == \"GET /x\" and kind == SPAN_KIND_SERVER") == 1, "name and kind");
    CHECK(holds("IsMatch(attributes[\"user.email\"], \".*@example\\\\.com\")") == 1, "a regular expression on an attribute");
    CHECK(holds("attributes[\"missing\"] == nil") == 1, "an absent attribute is nil");
    CHECK(holds("resource.attributes[\"service.name\"] == \"web\"") == 1, "the span's resource");
    CHECK(run("attributes[\"service.name\"] == \"web\"", SPANHOST_EXPR_CONDITION, SPANHOST_CONTEXT_RESOURCE) == 1,
          "in resource context, attributes are the resource's");
}

static void test_statements(void) {
    CHECK(run("set(attributes[\"env\"], \"prod\") where name == \"GET /x\"", SPANHOST_EXPR_STATEMENT, SPANHOST_CONTEXT_SPAN) == 1,
          "a statement whose where holds runs");
    CHECK(holds("attributes[\"env\"] == \"prod\"") == 1, "and changed the span in place");
    CHECK(run("set(attributes[\"env\"], \"dev\") where name == \"other\"", SPANHOST_EXPR_STATEMENT, SPANHOST_CONTEXT_SPAN) == 0,
          "one whose where does not hold does nothing");
    CHECK(holds("attributes[\"env\"] == \"prod\"") == 1, "so the value stays");
    CHECK(run("delete_key(attributes, \"user.email\")", SPANHOST_EXPR_STATEMENT, SPANHOST_CONTEXT_SPAN) == 1, "delete_key runs");
    CHECK(holds("attributes[\"user.email\"] == nil") == 1, "and the key is gone");
}

static void test_compile_errors(void) {
    char err[256] = "";
    spanhost_expr *e = sh_expr_compile("name == ", 8, SPANHOST_EXPR_CONDITION, SPANHOST_CONTEXT_SPAN, err, sizeof err);
    CHECK(e == NULL && strstr(err, "column") != NULL, "an incomplete condition is refused naming its column: '%s'", err);
    e = sh_expr_compile("NoSuchFunction(name)", 20, SPANHOST_EXPR_CONDITION, SPANHOST_CONTEXT_SPAN, err, sizeof err);
    CHECK(e == NULL && strstr(err, "NoSuchFunction") != NULL, "an unknown function is named: '%s'", err);
    e = sh_expr_compile("set(name, 5) where", 18, SPANHOST_EXPR_STATEMENT, SPANHOST_CONTEXT_SPAN, err, sizeof err);
    CHECK(e == NULL, "a where without a condition is refused");
    e = sh_expr_compile("name == \"a\"", 11, SPANHOST_EXPR_STATEMENT, SPANHOST_CONTEXT_SPAN, err, sizeof err);
    CHECK(e == NULL, "a condition is not a statement: '%s'", err);
}

static int call(const char *text, char *out, size_t cap) { return sh_expr_call(text, strlen(text), out, cap); }

static void test_calls(void) {
    char out[256];
    CHECK(call("Concat([\"a\", \"b\"], \"-\")", out, sizeof out) == 0 && strcmp(out, "\"a-b\"") == 0, "Concat: %s", out);
    CHECK(call("Len(\"abc\")", out, sizeof out) == 0 && strcmp(out, "3") == 0, "Len: %s", out);
    CHECK(call("SHA256(\"\")", out, sizeof out) == 0 &&
              strcmp(out, "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"") == 0, "SHA256: %s", out);
}

int main(void) {
    batch = sh_batch_new();
    char err[256];
    size_t len = strlen(BODY);
    /* The NUL is copied too, though the decoder never reads it: ASan's regexec interceptor
     * measures the subject with strlen, ignoring REG_STARTEND, which the engine uses. */
    const uint8_t *copy = sh_arena_copy(batch, BODY, len + 1);
    if (!batch || !copy || sh_decode_otlp_json(batch, copy, len, err, sizeof err) != 0) {
        printf("cannot decode the test span: %s\n", err);
        return 1;
    }
    test_conditions();
    test_statements();
    test_compile_errors();
    test_calls();
    sh_batch_release(batch);
    printf("%d of %d expression checks passed\n", checks - failures, checks);
    return failures ? 1 : 0;
}
