"""The Collector's own OTTL cases (pkg/ottl/e2e/e2e_test.go of opentelemetry-collector-contrib)
that apply to spans, run through the real transform plugin with `spanhost plugin-test`. Each
statement runs twice, as the Collector's test does: as written, in a `context: span` group, and
in the flat form with the `span.` path prefix. The fixtures are the Go test's, moved from a log
record to a span; the expected results are the Go test's `want` functions.

Adapted, because spans have no body or log time: statements that write `body` write `name`, and
`time` is `start_time` (the fixture's start time is the Go test's log time). Cases that only
logs have (severity enums, body comparisons) are left out. Functions not built in are checked to
be refused as "not supported yet" (NOT_SUPPORTED)."""
import base64
import copy
import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BUILD

SPANHOST = os.path.join(BUILD, "bin", "spanhost")
TRANSFORM = os.path.join(BUILD, "plugins", "transform.so")

START = 1581452772000000321  # 2020-02-11T20:26:12.000000321Z, the Go test's log time
END = 1581452773000000789
TRACE_ID = bytes(range(1, 17))
SPAN_ID = bytes(range(1, 9))


def thing(name, value=None):
    return {"name": name} if value is None else {"name": name, "value": value}


def log_fixture():
    """constructLogTransformContext"""
    return {
        "name": "operationB",
        "attributes": {
            "http.method": "get", "http.path": "/health", "http.url": "http://localhost/health", "flags": "A|B|C",
            "total.string": "123456789", "A|B|C": "something",
            "foo": {"bar": "pass", "flags": "pass", "slice": ["val"], "nested": {"test": "pass"}},
            "slice": "slice", "val": "val2", "int_value": 0, "array": ["looong"],
            "things": [thing("foo", 2), thing("bar", 5)],
        },
        "resource": {"host.name": "localhost", "A|B|C": "newValue"},
        "trace_id": TRACE_ID, "span_id": SPAN_ID, "start": START, "end": END,
    }


def editors_fixture():
    """constructLogTransformContextEditors"""
    f = log_fixture()
    f["attributes"] = {
        "http.method": "get", "http.path": "/health", "http.url": "http://localhost/health", "flags": "A|B|C",
        "total.string": "123456789", "conflict": {"conflict1": {"conflict2": "pass"}},
        "conflict.conflict1": {"conflict2": "nopass"},
        "foo": {"bar": "pass", "flags": "pass", "slice": ["val"], "nested": {"test": "pass"}},
        "things": [thing("foo", 2), thing("bar", 5)],
    }
    f["resource"] = {"host.name": "localhost"}
    return f


def values_fixture():
    """constructLogTransformContextValueExpressions"""
    f = log_fixture()
    f["attributes"] = {
        "http.method": "get", "http.path": "/health", "http.url": "http://localhost/health", "flags": "A|B|C",
        "total.string": "123456789", "A|B|C": "something", "foo": {"bar": "pass"}, "slice": "slice", "val": "val2",
        "int_value": 0, "array": ["looong"], "foo2": {"slice": ["val"]}, "foo3": {"nested": {"test": "pass"}},
        "things": [thing("foo"), thing("bar")],
    }
    return f


# --- Wire form ----------------------------------------------------------------------------------

class Double(float):
    """A value the case wants as an OTLP double (1.0 is a double, 1 an int)."""


def any_value(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, Double) or isinstance(v, float):
        return {"doubleValue": float(v)}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, bytes):
        return {"bytesValue": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": any_value(x)} for k, x in v.items()]}}
    return {"arrayValue": {"values": [any_value(x) for x in v]}}


def tagged(v):
    """A value from OTLP JSON, tagged with its type so 1, 1.0 and true differ."""
    if "stringValue" in v:
        return ("s", v["stringValue"])
    if "boolValue" in v:
        return ("b", v["boolValue"])
    if "intValue" in v:
        return ("i", int(v["intValue"]))
    if "doubleValue" in v:
        return ("d", float(v["doubleValue"]))
    if "bytesValue" in v:
        return ("y", base64.b64decode(v["bytesValue"]))
    if "kvlistValue" in v:
        return ("m", tuple(sorted((kv["key"], tagged(kv.get("value", {}))) for kv in v["kvlistValue"].get("values", []))))
    if "arrayValue" in v:
        return ("l", tuple(tagged(x) for x in v["arrayValue"].get("values", [])))
    return ("nil",)


def tagged_map(attrs):
    return tuple(sorted((a["key"], tagged(a.get("value", {}))) for a in attrs))


def to_otlp(f, events=()):
    span = {"traceId": f["trace_id"].hex(), "spanId": f["span_id"].hex(), "name": f["name"], "kind": 1,
            "startTimeUnixNano": str(f["start"]), "endTimeUnixNano": str(f["end"]), "droppedAttributesCount": 1,
            "attributes": [{"key": k, "value": any_value(v)} for k, v in f["attributes"].items()]}
    if events:
        span["events"] = [{"name": e, "timeUnixNano": str(START)} for e in events]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": k, "value": any_value(v)} for k, v in f["resource"].items()]},
                               "scopeSpans": [{"scope": {"name": "scope"}, "spans": [span]}]}]}


def comparable(doc):
    """What a case may change, from an OTLP JSON document, in a comparable form."""
    rs = doc["resourceSpans"][0]
    span = rs["scopeSpans"][0]["spans"][0]
    ident = lambda text, n: bytes.fromhex(text) if text else bytes(n)
    return {"name": span.get("name", ""), "attributes": tagged_map(span.get("attributes", [])),
            "resource": tagged_map(rs.get("resource", {}).get("attributes", [])),
            "trace_id": ident(span.get("traceId", ""), 16), "span_id": ident(span.get("spanId", ""), 8),
            "start": int(span.get("startTimeUnixNano", 0)), "end": int(span.get("endTimeUnixNano", 0)),
            "events": [tagged_map(e.get("attributes", [])) for e in span.get("events", [])]}


# --- The two forms --------------------------------------------------------------------------------

PATH_HEADS = ("attributes", "name", "trace_id", "span_id", "parent_span_id", "start_time", "end_time", "kind", "status",
              "trace_state", "event_index")


def with_prefix(statement, prefix="span."):
    """The statement with the context prefix on its paths (not inside strings, not resource.*)."""
    out, i = [], 0
    while i < len(statement):
        c = statement[i]
        if c == '"':
            j = i + 1
            while j < len(statement) and statement[j] != '"':
                j += 2 if statement[j] == "\\" else 1
            out.append(statement[i:j + 1])
            i = j + 1
            continue
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", statement[i:])
        if m:
            word = m.group(0)
            before = statement[i - 1] if i else ""
            after = statement[i + len(word):i + len(word) + 1]
            if word in PATH_HEADS and before != "." and after != "(" and after != "=":
                out.append(prefix)
            out.append(word)
            i += len(word)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def run_transform(tmp, name, config, fixture_doc):
    cfg_path = os.path.join(tmp, f"{name}.json")
    in_path = os.path.join(tmp, f"{name}.in.json")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    with open(in_path, "w") as f:
        json.dump(fixture_doc, f)
    r = subprocess.run([SPANHOST, "plugin-test", TRANSFORM, "--config", cfg_path, "--input", in_path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (config, r.stderr[-1500:])
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


def check_case(tmp, index, statements, fixture, want, context="span"):
    """Runs `statements` both ways on the fixture; each must give what `want` makes of it."""
    expected = copy.deepcopy(fixture)
    want(expected)
    events = ("event-1",) if context == "spanevent" else ()
    expected_doc = comparable(to_otlp(expected, events))
    if context == "spanevent":
        expected_doc["events"] = [tagged_map([{"key": k, "value": any_value(v)} for k, v in expected.get("event_attributes", {}).items()])]
    forms = {
        "grouped": {"error_mode": "ignore", "trace_statements": [{"context": context, "statements": statements}]},
        "flat": {"error_mode": "ignore", "trace_statements": [with_prefix(s, context + ".") for s in statements]},
    }
    failures = []
    for form, config in forms.items():
        got = comparable(run_transform(tmp, f"case{index}-{form}", config, to_otlp(fixture, events)))
        if got != expected_doc:
            failures.append((form, config["trace_statements"], {k: (got[k], expected_doc[k]) for k in got if got[k] != expected_doc[k]}))
    return failures


def setter(key, value, where="attributes"):
    def want(f):
        f[where][key] = value
    return want


def deleting(*keys):
    def want(f):
        for k in keys:
            f["attributes"].pop(k, None)
    return want


def keeping(*keys):
    def want(f):
        f["attributes"] = {k: v for k, v in f["attributes"].items() if k in keys}
    return want


def nothing(_):
    pass


def edit(fn):
    """A want that edits the attributes with `fn(attributes)`."""
    def want(f):
        fn(f["attributes"])
    return want


def replaced(attrs):
    def want(f):
        f["attributes"] = attrs
    return want


def flat_test_prefix(resolve):
    m = {"test.http.method": "get", "test.http.path": "/health", "test.http.url": "http://localhost/health", "test.flags": "A|B|C",
         "test.total.string": "123456789", "test.foo.bar": "pass", "test.foo.flags": "pass"}
    if resolve:
        m.update({"test.foo.slice": "val", "test.foo.nested.test": "pass", "test.conflict.conflict1.conflict2": "pass",
                  "test.conflict.conflict1.conflict2.0": "nopass"})
    else:
        m.update({"test.foo.slice.0": "val", "test.foo.nested.test": "pass", "test.conflict.conflict1.conflict2": "nopass"})
    m.update({"test.things.0.name": "foo", "test.things.0.value": 2, "test.things.1.name": "bar", "test.things.1.value": 5})
    return m


def flatten_all(a):
    for k in ("foo", "conflict.conflict1", "conflict", "things"):
        a.pop(k)
    a.update({"foo.bar": "pass", "foo.flags": "pass", "foo.slice.0": "val", "foo.nested.test": "pass",
              "conflict.conflict1.conflict2": "nopass", "things.0.name": "foo", "things.0.value": 2, "things.1.name": "bar",
              "things.1.value": 5})


FLATTEN_DEPTH_1 = {
    "http.method": "get", "http.path": "/health", "http.url": "http://localhost/health", "flags": "A|B|C", "total.string": "123456789",
    "foo.bar": "pass", "foo.flags": "pass", "foo.slice": ["val"], "conflict.conflict1.conflict2": "nopass",
    "conflict.conflict1": {"conflict2": "pass"}, "things.0": thing("foo", 2), "things.1": thing("bar", 5), "foo.nested": {"test": "pass"}}


def nested(path, value):
    def want(f):
        target = f["attributes"]
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
    return want


def set_span(field, value):
    def want(f):
        f[field] = value
    return want


EDITORS = [
    ('delete_key(attributes, "http.method")', deleting("http.method")),
    ('delete_matching_keys(attributes, "^http")', deleting("http.method", "http.path", "http.url")),
    ('keep_matching_keys(attributes, "^http")', keeping("http.method", "http.path", "http.url")),
    ("flatten(attributes)", edit(flatten_all)),
    ('flatten(attributes, "test")', replaced(flat_test_prefix(False))),
    ('flatten(attributes, "test", resolveConflicts=true)', replaced(flat_test_prefix(True))),
    ("flatten(attributes, depth=1)", replaced(FLATTEN_DEPTH_1)),
    ('keep_keys(attributes, ["flags", "total.string"])', keeping("flags", "total.string")),
    ("limit(attributes, 100, [])", nothing),
    ('limit(attributes, 1, ["total.string"])', keeping("total.string")),
    ('merge_maps(attributes, attributes["foo"], "insert")', edit(lambda a: a.update(bar="pass", slice=["val"], nested={"test": "pass"}))),
    ('merge_maps(attributes, attributes["foo"], "update")', edit(lambda a: a.update(flags="pass"))),
    ('merge_maps(attributes, attributes["foo"], "upsert")',
     edit(lambda a: a.update(bar="pass", flags="pass", slice=["val"], nested={"test": "pass"}))),
    ('merge_maps(attributes, {"map_literal": {"list": [{"foo":"bar"}, "test"]}}, "upsert")',
     setter("map_literal", {"list": [{"foo": "bar"}, "test"]})),
    ('replace_all_matches(attributes, "*/*", "test")', edit(lambda a: a.update({"http.path": "test", "http.url": "test"}))),
    ('replace_all_patterns(attributes, "key", "^http", "test")',
     edit(lambda a: [a.pop("http.method"), a.pop("http.path"), a.pop("http.url"),
                     a.update({"test.method": "get", "test.path": "/health", "test.url": "http://localhost/health"})])),
    ('replace_all_patterns(attributes, "value", "/", "@")',
     edit(lambda a: a.update({"http.path": "@health", "http.url": "http:@@localhost@health"}))),
    ('replace_match(attributes["http.path"], "*/*", "test")', setter("http.path", "test")),
    ('replace_pattern(attributes["http.path"], "/", "@")', setter("http.path", "@health")),
    ('replace_pattern(attributes["http.path"], "/", "@", SHA256)',
     setter("http.path", "c3641f8544d7c02f3580b07c0f9887f0c6a27ff5ab1d4a3e29caf197cfc299aehealth")),
    ('set(attributes["test"], "pass")', setter("test", "pass")),
    ('set(attributes["test"], nil)', nothing),
    ('set(attributes["test"], attributes["unknown"])', nothing),
    ('set(attributes["foo"]["test"], "pass")', nested(["foo", "test"], "pass")),
    ("truncate_all(attributes, 100)", nothing),
    ("truncate_all(attributes, 1)",
     edit(lambda a: a.update({"http.method": "g", "http.path": "/", "http.url": "h", "flags": "A", "total.string": "1"}))),
    ('append(attributes["foo"]["slice"], "sample_value")', nested(["foo", "slice"], ["val", "sample_value"])),
    ('append(attributes["foo"]["flags"], "sample_value")', nested(["foo", "flags"], ["pass", "sample_value"])),
    ('append(attributes["foo"]["slice"], values=[5,6])', nested(["foo", "slice"], ["val", 5, 6])),
    ('append(attributes["foo"]["new_slice"], values=[5,6])', nested(["foo", "new_slice"], [5, 6])),
]

T = setter("test", "pass")

CONVERTERS = [
    ('set(attributes["newOne"], attributes[1])', nothing),
    ('set(attributes["array"][0.0], "bar")', nothing),
    ('set(attributes["array"][ConvertCase(attributes["A|B|C"], "upper")], "bar")', nothing),
    ('set(attributes[ConvertCase(attributes["A|B|C"], "upper")], "myvalue")', setter("SOMETHING", "myvalue")),
    ('set(attributes[ConvertCase(attributes[attributes["flags"]], "upper")], "myvalue")', setter("SOMETHING", "myvalue")),
    ('set(attributes[attributes["flags"]], "something33")', setter("A|B|C", "something33")),
    ('set(attributes[attributes[attributes["flags"]]], "something2")', setter("something", "something2")),
    # body -> name
    ('set(name, attributes["things"][Len(attributes["things"]) - 1]["name"])', set_span("name", "bar")),
    ('set(name, attributes["things"][attributes["int_value"] + 1]["name"])', set_span("name", "bar")),
    ('set(name, attributes[attributes["foo"][attributes["slice"]][attributes["int_value"] + 1 - 1]])', set_span("name", "val2")),
    ('set(name, attributes[attributes["foo"][attributes["slice"]][attributes["int_value"]]])', set_span("name", "val2")),
    ('set(resource.attributes[attributes["flags"]], "something33")', setter("A|B|C", "something33", "resource")),
    ('set(resource.attributes[resource.attributes[attributes["flags"]]], "something33")', setter("newValue", "something33", "resource")),
    ('set(attributes[resource.attributes[attributes["flags"]]], "something33")', setter("newValue", "something33")),
    ('set(attributes["array"][attributes["int_value"]], 3)', setter("array", [3])),
    ('set(attributes["test"], Base64Decode("cGFzcw=="))', T),
    ('set(attributes["test"], Decode("cGFzcw==", "base64"))', T),
    ('set(attributes["test"], Concat(["A","B"], ":"))', setter("test", "A:B")),
    ('set(attributes["test"], ConvertCase(attributes["http.method"], "upper"))', setter("test", "GET")),
    ('set(attributes["test"], ConvertCase("PASS", "lower"))', T),
    ('set(attributes["test"], ConvertCase("fooBar", "snake"))', setter("test", "foo_bar")),
    ('set(attributes["test"], ConvertCase("foo_bar", "camel"))', setter("test", "FooBar")),
    ('set(attributes["test"], ToCamelCase("foo_bar"))', setter("test", "FooBar")),
    ('set(attributes["test"], ToSnakeCase("fooBar"))', setter("test", "foo_bar")),
    ('set(attributes["test"], ToUpperCase(attributes["http.method"]))', setter("test", "GET")),
    ('set(attributes["test"], ToLowerCase("PASS"))', T),
    ('set(attributes["test"], Double(1.0))', setter("test", Double(1.0))),
    ('set(attributes["test"], Double("1"))', setter("test", Double(1.0))),
    ('set(attributes["test"], Double(true))', setter("test", Double(1.0))),
    ('set(attributes["test"], Double(1))', setter("test", Double(1.0))),
    ('set(attributes["test"], "pass") where Time("10", "%M") - Time("01", "%M") < Duration("10m")', T),
    ('set(attributes["test"], ExtractPatterns("aa123bb", "(?P<numbers>\\\\d+)"))', setter("test", {"numbers": "123"})),
    ('set(attributes["test"], FNV("pass"))', setter("test", 266877920130663416)),
    ('set(attributes["test"], Format("%03d-%s", [7, "test"]))', setter("test", "007-test")),
    ('set(attributes["test"], Hour(Time("12", "%H")))', setter("test", 12)),
    ('set(attributes["test"], Hours(Duration("90m")))', setter("test", Double(1.5))),
    ('set(attributes["test"], Int(1.0))', setter("test", 1)),
    ('set(attributes["test"], Int("1"))', setter("test", 1)),
    ('set(attributes["test"], Int(true))', setter("test", 1)),
    ('set(attributes["test"], Int(1))', setter("test", 1)),
    ('set(attributes["test"], Hex(1.0))', setter("test", "3ff0000000000000")),
    ('set(attributes["test"], Hex(true))', setter("test", "01")),
    ('set(attributes["test"], Hex(12))', setter("test", "000000000000000c")),
    ('set(attributes["test"], Hex("12"))', setter("test", "3132")),
    ('set(attributes["test"], "pass") where IsBool(false)', T),
    ('set(attributes["test"], "pass") where IsDouble(1.0)', T),
    ('set(attributes["test"], "pass") where IsMap(attributes["foo"])', T),
    ('set(attributes["test"], "pass") where IsList(attributes["foo"]["slice"])', T),
    ('set(attributes["test"], "pass") where IsMatch("aa123bb", "\\\\d{3}")', T),
    ('set(attributes["test"], "pass") where IsString("")', T),
    ('set(attributes["test"], Len(attributes["foo"]))', setter("test", 4)),
    ('set(attributes["test"], Log(1))', setter("test", Double(0.0))),
    ('set(attributes["test"], IsValidLuhn("17893729974"))', setter("test", True)),
    ('set(attributes["test"], IsValidLuhn(17893729975))', setter("test", False)),
    ('set(attributes["test"], MD5("pass"))', setter("test", "1a1dc91c907325c69271ddf0c944bc72")),
    ('set(attributes["test"], Microseconds(Duration("1ms")))', setter("test", 1000)),
    ('set(attributes["test"], Milliseconds(Duration("1s")))', setter("test", 1000)),
    ('set(attributes["test"], Minutes(Duration("1h")))', setter("test", Double(60))),
    ('set(attributes["test"], Murmur3Hash128("Hello World"))', setter("test", "dbc2a0c1ab26631a27b4c09fcf1fe683")),
    ('set(attributes["test"], Murmur3Hash("Hello World"))', setter("test", "ce837619")),
    ('set(attributes["test"], Nanoseconds(Duration("1ms")))', setter("test", 1000000)),
    ('set(attributes["test"], "pass") where Now() - Now() < Duration("1h")', T),
    ('set(attributes["test"], ParseCSV("val1;val2;val3","header1|header2|header3",";","|","strict"))',
     setter("test", {"header1": "val1", "header2": "val2", "header3": "val3"})),
    ('set(attributes["test"], ParseCSV("val1,val2,val3","header1|header2|header3",headerDelimiter="|",mode="strict"))',
     setter("test", {"header1": "val1", "header2": "val2", "header3": "val3"})),
    ('set(attributes["test"], ParseJSON("{\\"id\\":1}"))', setter("test", {"id": Double(1)})),
    ('set(attributes["test"], ParseJSON("[\\"value1\\",\\"value2\\"]"))', setter("test", ["value1", "value2"])),
    ('set(attributes["test"], ParseKeyValue("k1=v1 k2=v2"))', setter("test", {"k1": "v1", "k2": "v2"})),
    ('set(attributes["test"], ParseKeyValue("k1!v1_k2!v2", "!", "_"))', setter("test", {"k1": "v1", "k2": "v2"})),
    ('set(attributes["test"], ParseKeyValue("k1!v1_k2!\\"v2__!__v2\\"", "!", "_"))', setter("test", {"k1": "v1", "k2": "v2__!__v2"})),
    ('set(attributes["test"], ToKeyValueString(ParseKeyValue("k1=v1 k2=v2"), "=", " ", true))', setter("test", "k1=v1 k2=v2")),
    ('set(attributes["test"], ToKeyValueString(ParseKeyValue("k1:v1,k2:v2", ":" , ","), ":", ",", true))', setter("test", "k1:v1,k2:v2")),
    ('set(attributes["test"], ToKeyValueString(ParseKeyValue("k1=v1 k2=v2"), "!", "+", true))', setter("test", "k1!v1+k2!v2")),
    ('set(attributes["test"], ToKeyValueString(ParseKeyValue("k1=v1 k2=v2=v3"), "=", " ", true))', setter("test", 'k1=v1 k2="v2=v3"')),
    ('set(attributes["test"], Seconds(Duration("1m")))', setter("test", Double(60))),
    ('set(attributes["test"], SHA1("pass"))', setter("test", "9d4e1e23bd5b727046a9e3b4b7db57bd8d6ee684")),
    ('set(attributes["test"], SHA256("pass"))', setter("test", "d74ff0ee8da3b9806b18c877dbf29bbde50b5bd8e4dad7a3a725000feb82e8f1")),
    ('set(attributes["test"], SHA512("pass"))', setter("test", "5b722b307fce6c944905d132691d5e4a2214b7fe92b738920eb3fce3a90420a1"
                                                              "9511c3010a0e7712b054daef5b57bad59ecbd93b3280f210578f547f4aed4d25")),
    ('set(attributes["test"], Sort(Split(attributes["flags"], "|"), "desc"))', setter("test", ["C", "B", "A"])),
    ('set(attributes["test"], Sort([true, false, false]))', setter("test", [False, False, True])),
    ('set(attributes["test"], Sort([3, 6, 9], "desc"))', setter("test", [9, 6, 3])),
    ('set(attributes["test"], Sort([Double(1.5), Double(10.2), Double(2.3), Double(0.5)]))',
     setter("test", [Double(0.5), Double(1.5), Double(2.3), Double(10.2)])),
    ('set(attributes["test"], Sort([Int(11), Double(2.2), Double(-1)]))', setter("test", [Double(-1), Double(2.2), 11])),
    ('set(attributes["test"], Sort([false, Int(11), Double(2.2), "three"]))', setter("test", [11, Double(2.2), False, "three"])),
    ("set(span_id, SpanID(0x0000000000000000))", set_span("span_id", bytes(8))),
    ('set(attributes["test"], Split(attributes["flags"], "|"))', setter("test", ["A", "B", "C"])),
    ('set(attributes["test"], String("test"))', setter("test", "test")),
    ('set(attributes["test"], String(attributes["http.method"]))', setter("test", "get")),
    ('set(attributes["test"], String(span_id))', setter("test", "[1,2,3,4,5,6,7,8]")),
    ('set(attributes["test"], String([1,2,3]))', setter("test", "[1,2,3]")),
    ('set(attributes["test"], String(true))', setter("test", "true")),
    ('set(attributes["test"], Substring("pass", 0, 2))', setter("test", "pa")),
    ("set(trace_id, TraceID(0x00000000000000000000000000000000))", set_span("trace_id", bytes(16))),
    # time -> start_time
    ('set(start_time, TruncateTime(start_time, Duration("1s")))', set_span("start", START - START % 1_000_000_000)),
    ('set(attributes["time"], FormatTime(start_time, "%Y-%m-%d"))', setter("time", "2020-02-11")),
    ('set(attributes["test"], "pass") where UnixMicro(start_time) > 0', T),
    ('set(attributes["test"], "pass") where UnixMilli(start_time) > 0', T),
    ('set(attributes["test"], "pass") where UnixNano(start_time) > 0', T),
    ('set(attributes["test"], "pass") where UnixSeconds(start_time) > 0', T),
    ('set(attributes["test"], "pass") where IsString(UUID())', T),
    ('set(attributes["test"], "\\\\")', setter("test", "\\")),
    ('set(attributes["test"], "\\\\\\\\")', setter("test", "\\\\")),
    ('set(attributes["test"], "\\\\\\\\\\\\")', setter("test", "\\\\\\")),
    ('set(attributes["test"], "\\\\\\\\\\\\\\\\")', setter("test", "\\\\\\\\")),
    ('set(attributes["test"], "\\"")', setter("test", '"')),
    ('keep_keys(attributes["foo"], ["\\\\", "bar"])', setter("foo", {"bar": "pass"})),
    ('set(attributes["test"], SliceToMap(attributes["things"], ["name"]))', setter("test", {"foo": thing("foo", 2), "bar": thing("bar", 5)})),
    ('set(attributes["test"], SliceToMap(attributes["things"], ["name"], ["value"]))', setter("test", {"foo": 2, "bar": 5})),
    ('set(attributes["test"], {"list":[{"foo":"bar"}]})', setter("test", {"list": [{"foo": "bar"}]})),
    ('set(attributes, {"list":[{"foo":"bar"}]})', replaced({"list": [{"foo": "bar"}]})),
    ('set(attributes["arr"], [{"list":[{"foo":"bar"}]}, {"bar":"baz"}])', setter("arr", [{"list": [{"foo": "bar"}]}, {"bar": "baz"}])),
    ('set(attributes["test"], IsList([{"list":[{"foo":"bar"}]}, {"bar":"baz"}]))', setter("test", True)),
    ('set(attributes["test"], IsMap({"list":[{"foo":"bar"}]}))', setter("test", True)),
    ('set(attributes["test"], Len([{"list":[{"foo":"bar"}]}, {"bar":"baz"}]))', setter("test", 2)),
]

FEATURES = [
    ('set(attributes["test"], "pass") where resource.attributes["host.name"] == "localhost"', T),
    ('set(attributes["foo"], "bar") where attributes[attributes["flags"]] != nil', setter("foo", "bar")),
    ('set(attributes["test"], "pass") where trace_id == TraceID(0x0102030405060708090a0b0c0d0e0f10)', T),
    # body == "operationA" -> name == "operationB"
    ('merge_maps(attributes, ParseJSON("{\\"json_test\\":\\"pass\\"}"), "insert") where name == "operationB"', setter("json_test", "pass")),
    ('set(attributes["test"], attributes["foo"]["bar"])', T),
    ('set(attributes["test"], attributes["metadata"]["uid"])', nothing),
    ('set(attributes["test"], {"_raw": name, "test": {"result": attributes["foo"]["bar"], "time": UnixNano(start_time)}})',
     setter("test", {"_raw": "operationB", "test": {"result": "pass", "time": START}})),
    ('set(attributes["isMap"], IsMap({"foo": {"bar": "baz", "test": "pass"}}))', setter("isMap", True)),
    ('set(attributes["my.environment.2"], Split(resource.attributes["host.name"],"h")[1])', setter("my.environment.2", "ost")),
    ('set(attributes["entrypoint-root"], name) where IsRootSpan()', setter("entrypoint-root", "operationB")),
]

MAP_LITERAL = 'set(attributes["test"], {"foo":"bar", "list":[{"test":"hello"}]})'
SEQUENCES = [
    ([MAP_LITERAL, 'delete_key(attributes["test"], "foo")'], setter("test", {"list": [{"test": "hello"}]})),
    ([MAP_LITERAL, 'delete_matching_keys(attributes["test"], ".*oo")'], setter("test", {"list": [{"test": "hello"}]})),
    ([MAP_LITERAL, 'keep_matching_keys(attributes["test"], ".*ist")'], setter("test", {"list": [{"test": "hello"}]})),
    ([MAP_LITERAL, 'flatten(attributes["test"])'], setter("test", {"foo": "bar", "list.0.test": "hello"})),
]

# Test_e2e_ottl_value_expressions: each value is set to attributes["value"] and read back.
VALUES = [
    ('"foo"', "foo"),
    ('resource.attributes["host.name"]', "localhost"),
    ("TraceID(0x0102030405060708090a0b0c0d0e0f10)", TRACE_ID),
    ("Len(attributes) + Len(attributes)", 28),
    ("Hex(Len(attributes) + Len(attributes))", "000000000000001c"),
    ('attributes["foo"]', {"bar": "pass"}),
    ('attributes["foo2"]', {"slice": ["val"]}),
    ('attributes["foo3"]', {"nested": {"test": "pass"}}),
    ('attributes["things"]', [thing("foo"), thing("bar")]),
]

NOT_SUPPORTED = [
    'set(attributes["test"], ConvertAttributesToElementsXML("<Log id=\\"1\\"><Message>This is a log message!</Message></Log>"))',
    'set(name, ConvertTextToElementsXML("<a><b/>foo</a>"))',
    'set(attributes["test"], ExtractGrokPatterns("http://user:password@example.com:80/path?query=string", "%{ELB_URI}", true))',
    'set(attributes["test"], InsertXML("<a></a>", "/a", "<b></b>"))',
    'set(attributes["test"], GetXML("<a><b>1</b><c><b>2</b></c></a>", "/a//b"))',
    'set(attributes["test"], ParseSimplifiedXML("<Log><id>1</id><Message>This is a log message!</Message></Log>"))',
    'set(attributes["test"], ParseXML("<Log id=\\"1\\"><Message>This is a log message!</Message></Log>"))',
    'set(attributes["test"], RemoveXML("<Log id=\\"1\\"><Message>This is a log message!</Message></Log>", "/Log/Message"))',
    'set(attributes["test"], "pass") where String(ProfileID(0x00000000000000000000000000000001)) == "[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1]"',
    'set(attributes["test"], UserAgent("curl/7.81.0"))',
    'set(attributes["n"], Len(events))',
]


def run_cases(tmp, cases):
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: (c[0], check_case(tmp, c[0], *c[1])), enumerate(cases)))
    return [(i, cases[i][0], f) for i, f in results if f]


@pytest.mark.parametrize("group", ["editors", "converters", "features", "sequences", "values"])
def test_the_collectors_ottl_cases_give_the_collectors_results(tmp, group):
    if group == "editors":
        cases = [([s], editors_fixture(), want) for s, want in EDITORS]
    elif group == "converters":
        cases = [([s], log_fixture(), want) for s, want in CONVERTERS]
    elif group == "features":
        cases = [([s], log_fixture(), want) for s, want in FEATURES]
    elif group == "sequences":
        cases = [(s, log_fixture(), want) for s, want in SEQUENCES]
    else:
        cases = [([f'set(attributes["value"], {s})'], values_fixture(), setter("value", v)) for s, v in VALUES]
    failed = run_cases(tmp, cases)
    assert not failed, "\n".join(f"{statements}: {failures}" for _, statements, failures in failed)


def test_a_span_event_statement_reads_the_event_index(tmp):
    """Test_ProcessSpanEvents: set(attributes["index"], event_index) in the spanevent context."""
    def want(f):
        f["event_attributes"] = {"index": 0}
    assert not check_case(tmp, 0, ['set(attributes["index"], event_index)'], log_fixture(), want, context="spanevent")


def test_the_collectors_functions_not_built_in_are_refused_as_not_supported_yet(tmp):
    for i, statement in enumerate(NOT_SUPPORTED):
        cfg_path = os.path.join(tmp, f"unsupported{i}.json")
        with open(cfg_path, "w") as f:
            json.dump({"trace_statements": [{"context": "span", "statements": [statement]}]}, f)
        in_path = os.path.join(tmp, "in.json")
        with open(in_path, "w") as f:
            json.dump(to_otlp(log_fixture()), f)
        r = subprocess.run([SPANHOST, "plugin-test", TRANSFORM, "--config", cfg_path, "--input", in_path],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "is not supported yet" in r.stderr, (statement, r.stderr[-400:])


def test_cache_is_shared_by_a_groups_statements_for_one_span_only(tmp):
    """The transform README's cache example, on spans: parse JSON into the cache, flatten it,
    merge it into the attributes. The second span has no JSON: the first span's cache must not
    reach it."""
    with_json = log_fixture()
    with_json["attributes"] = {"json": '{"a": {"b": 1}, "c": "d"}'}
    without = log_fixture()
    without["attributes"] = {"plain": "x"}
    doc = to_otlp(with_json)
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append(to_otlp(without)["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
    statements = ['merge_maps(cache, ParseJSON(attributes["json"]), "upsert") where attributes["json"] != nil',
                  'flatten(cache, "")', 'merge_maps(attributes, cache, "upsert")']
    for form, config in [("grouped", {"trace_statements": [{"context": "span", "statements": statements}]}),
                         ("flat", {"trace_statements": [{"statements": [with_prefix(s) for s in statements]}]})]:
        out = run_transform(tmp, f"cache-{form}", config, doc)
        spans = out["resourceSpans"][0]["scopeSpans"][0]["spans"]
        assert tagged_map(spans[0]["attributes"]) == tagged_map(
            [{"key": k, "value": any_value(v)} for k, v in {"json": with_json["attributes"]["json"], "a.b": Double(1), "c": "d"}.items()]), form
        assert tagged_map(spans[1]["attributes"]) == (("plain", ("s", "x")),), form


SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
# TestSemconvSpanName (transformprocessor/internal/traces): current name, kind, attributes, wanted name.
SEMCONV = [
    ("GET /users/123", SERVER, {"http.request.method": "GET", "http.route": "/users/:id"}, "GET /users/:id"),
    ("GET /users/123", SERVER, {"http.method": "GET", "http.route": "/users/:id"}, "GET /users/:id"),
    ("GET /users/123", SERVER, {"http.request.method": "GET"}, "GET"),
    ("GET /users/123", SERVER, {"http.method": "GET"}, "GET"),
    ("GET /app/workspaces/7?_rsc=hn5g2", SERVER, {"http.method": "GET", "next.span_name": "GET /app/workspaces/7?_rsc=hn5g2",
                                                  "http.target": "/app/workspaces/7?_rsc=hn5g2", "http.status": "200"}, "GET"),
    ("GET /users/123", CLIENT, {"http.request.method": "GET", "url.template": "/users/:id"}, "GET /users/:id"),
    ("GET /users/123", CLIENT, {"http.method": "GET", "url.template": "/users/:id"}, "GET /users/:id"),
    ("GET /users/123", CLIENT, {"http.request.method": "GET"}, "GET"),
    ("INSERT webshop.orders", CLIENT, {"db.system.name": "postgresql", "db.namespace": "webshop", "db.operation.name": "INSERT",
                                       "db.collection.name": "orders", "db.query.text": "insert into orders (a) values (?)"}, "INSERT webshop.orders"),
    ("HGET", CLIENT, {"db.redis.database_index": 0, "db.statement": "HGET 7175d9c6", "db.system": "redis", "server.address": "valkey-cart"},
     "valkey-cart"),
    ("otel", CLIENT, {"db.system": "postgresql", "db.connection_id": 54, "db.name": "otel", "db.user": "otelu",
                      "net.peer.name": "postgresql"}, "otel"),
    ("oteldemo.CartService/GetCart", CLIENT, {"rpc.grpc.status_code": 0, "rpc.grpc.method": "GetCart", "rpc.grpc.service": "oteldemo.CartService",
                                              "rpc.system": "grpc", "server.address": "127.18.0.18"}, "oteldemo.CartService/GetCart"),
    ("oteldemo.AdService/GetAds", SERVER, {"rpc.grpc.method": "GetAds", "rpc.grpc.service": "oteldemo.AdService", "rpc.system": "grpc",
                                           "server.address": "ad"}, "oteldemo.AdService/GetAds"),
    ("orders receive", CONSUMER, {"messaging.client_id": "rdkafka#consumer-1", "messaging.destination.name": "orders",
                                  "messaging.kafka.destination.partition": 0, "messaging.operation": "receive", "messaging.system": "kafka"},
     "receive orders"),
    ("orders process", CONSUMER, {"messaging.destination.name": "orders", "messaging.operation": "process", "messaging.system": "kafka",
                                  "messaging.kafka.message.offset": 34}, "process orders"),
    ("orders publish", PRODUCER, {"messaging.destination.name": "orders", "messaging.kafka.producer.success": True,
                                  "messaging.operation": "publish", "messaging.system": "kafka"}, "publish orders"),
    ("process ecommerce-exchange", CONSUMER, {"messaging.system": "rabbitmq", "messaging.destination.name": "ecommerce-exchange",
                                              "messaging.operation": "process"}, "process ecommerce-exchange"),
    ("send /customers/{customerId}", PRODUCER, {"messaging.system": "x", "messaging.operation.name": "send",
                                                "messaging.destination.template": "/customers/{customerId}",
                                                "messaging.destination.name": "/customers/123456"}, "send /customers/{customerId}"),
    ("send (temporary)", PRODUCER, {"messaging.system": "x", "messaging.operation.name": "send", "messaging.destination.temporary": True,
                                    "messaging.destination.name": "q"}, "send (temporary)"),
    ("internal work", 1, {"http.request.method": "GET"}, "internal work"),
]


def test_set_semconv_span_name_names_spans_as_the_collectors_cases_say(tmp):
    doc = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": []}]}]}
    for i, (name, kind, attrs, _) in enumerate(SEMCONV):
        doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
            {"traceId": TRACE_ID.hex(), "spanId": f"{i + 1:016x}", "name": name, "kind": kind, "startTimeUnixNano": "1",
             "endTimeUnixNano": "2", "attributes": [{"key": k, "value": any_value(v)} for k, v in attrs.items()]})
    for form, statement in [("grouped", 'set_semconv_span_name("1.37.0", "original_span_name")'),
                            ("flat", 'set_semconv_span_name("1.37.0", "original_span_name") where span.name != ""')]:
        config = {"trace_statements": [{"context": "span", "statements": [statement]}] if form == "grouped" else [statement]}
        out = run_transform(tmp, f"semconv-{form}", config, doc)
        spans = out["resourceSpans"][0]["scopeSpans"][0]["spans"]
        for (name, _, _, want), got in zip(SEMCONV, spans):
            original = {a["key"]: a["value"].get("stringValue") for a in got.get("attributes", [])}.get("original_span_name")
            assert got["name"] == want, (form, name, got["name"])
            assert original == (None if want == name else name), (form, name, original)


def test_set_semconv_span_name_refuses_versions_it_does_not_know(tmp):
    for version, says in [("1.36.0", "between 1.37.0 and 1.40.0"), ("1.41.0", "between 1.37.0 and 1.40.0"), ("one", "major.minor.patch")]:
        cfg_path = os.path.join(tmp, "semconv.json")
        with open(cfg_path, "w") as f:
            json.dump({"trace_statements": [{"context": "span", "statements": [f'set_semconv_span_name("{version}")']}]}, f)
        in_path = os.path.join(tmp, "in.json")
        with open(in_path, "w") as f:
            json.dump(to_otlp(log_fixture()), f)
        r = subprocess.run([SPANHOST, "plugin-test", TRANSFORM, "--config", cfg_path, "--input", in_path], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and says in r.stderr, (version, r.stderr[-300:])
