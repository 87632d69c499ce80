"""Expressions (OTTL): the transform processor with the statements of the Collector's transform
README, conditions in filter, and functions that a C plugin adds, called through libffi."""
import hashlib
import json
import os
import shutil
import subprocess
import time

import requests

from conftest import BUILD, read_file_export, wait_for
from test_data_path import cfg, otlp_json, plugin_dir

SPANHOST = os.path.join(BUILD, "bin", "spanhost")

TRANSFORM = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  transform:
    error_mode: ignore
    trace_statements:
      - context: span
        conditions: ['attributes["http.route"] != nil']
        statements:
          - set(attributes["route.group"], "api") where IsMatch(attributes["http.route"], "^/api/")
          - delete_key(attributes, "http.request.header.authorization")
          - replace_pattern(attributes["http.url"], "token=[^&]+", "token=***")
          - truncate_all(attributes, 256)
          - limit(attributes, 64, ["service.name"])
          - set(status.code, 2) where attributes["http.status_code"] >= 500
      - context: resource
        statements: ['set(attributes["deployment.environment"], "prod")']
exporters:
  file: {path: "{tmp}/out.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [transform], exporters: [file]}
""")


def span(name, attrs):
    a = []
    for k, v in attrs.items():
        a.append({"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}})
    return {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": f"{abs(hash(name)) % (1 << 60):016x}", "name": name,
            "startTimeUnixNano": "1", "endTimeUnixNano": "2", "attributes": a}


def body(*spans):
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
                               "scopeSpans": [{"spans": list(spans)}]}]}


def attributes(exported):
    out = {}
    for a in exported["span"]["attributes"]:
        v = a["value"]
        out[a["key"]] = int(v["intValue"]) if "intValue" in v else v["boolValue"] if "boolValue" in v else v.get("stringValue")
    return out


def exported_by_name(path, count):
    got = wait_for(lambda: len(read_file_export(path)) >= count and read_file_export(path))
    assert got and len(got) == count, read_file_export(path)
    return {sp["span"]["name"]: sp for sp in got}


def check(tmp, text, plugins):
    """`spanhostd --check` on a config template; returns the finished process."""
    config = os.path.join(tmp, "check.yaml")
    with open(config, "w") as f:
        f.write(text.format(receiver="127.0.0.1:1", admin="127.0.0.1:2", plugins=plugins, tmp=tmp))
    return subprocess.run([os.path.join(BUILD, "bin", "spanhostd"), "--check", "--config", config], capture_output=True, text=True, timeout=60)


def call(so, expression):
    """`spanhost plugin-test --call` on a library."""
    return subprocess.run([SPANHOST, "plugin-test", so, "--call", expression], capture_output=True, text=True, timeout=60)


def test_transform_runs_the_statements_of_the_collector_readme(spanhost, tmp):
    s = spanhost(TRANSFORM, plugins_dir=plugin_dir(tmp, "transform", "file"))
    long = "x" * 300
    spans = [
        span("api", {"http.route": "/api/items", "http.request.header.authorization": "Bearer s3cret",
                     "http.url": "https://shop/api/items?token=abc123&page=2", "http.status_code": 503, "note": long}),
        span("static", {"http.route": "/static/app.js", "http.status_code": 200}),
        span("no-route", {"http.url": "https://shop/?token=abc", "http.request.header.authorization": "Bearer x"}),
        span("many", {"http.route": "/x", **{f"k{i}": "v" for i in range(80)}}),
    ]
    assert requests.post(s.url, json=body(*spans), timeout=10).status_code == 200
    out = exported_by_name(os.path.join(tmp, "out.jsonl"), 4)
    api = attributes(out["api"])
    assert api["route.group"] == "api"
    assert "http.request.header.authorization" not in api
    assert api["http.url"] == "https://shop/api/items?token=***&page=2"
    assert api["note"] == "x" * 256
    assert out["api"]["span"]["status"]["code"] == 2
    static = attributes(out["static"])
    assert "route.group" not in static and out["static"]["span"].get("status", {}).get("code", 0) == 0
    # No http.route: the span group's condition does not hold, nothing changes.
    assert attributes(out["no-route"]) == {"http.url": "https://shop/?token=abc", "http.request.header.authorization": "Bearer x"}
    assert len(attributes(out["many"])) == 64 and attributes(out["many"])["http.route"] == "/x"
    resource = {a["key"]: a["value"]["stringValue"] for a in out["api"]["resource"]["attributes"]}
    assert resource == {"service.name": "shop", "deployment.environment": "prod"}


def test_a_statement_that_does_not_compile_names_its_column(tmp):
    text = TRANSFORM.replace('delete_key(attributes, "http.request.header.authorization")', 'delete_key(attributes, 42)')
    r = check(tmp, text, plugin_dir(tmp, "transform", "file"))
    assert r.returncode != 0
    assert "trace_statements.0.statements.1: column" in r.stderr and "the argument 'key' must be a string" in r.stderr, r.stderr


FUNCTIONS = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  filter:
    traces: {span: ['geo_country(attributes["client.ip"]) == "KR"']}
  transform:
    error_mode: MODE
    trace_statements:
      - statements:
          - set(attributes["bucket"], hash_bucket(attributes["user.id"], BUCKETS))
          - set(attributes["country"], geo_country(attributes["client.ip"]))
          - set(attributes["kept"], keep_fraction(attributes["user.id"], 1.0))
exporters:
  file: {path: "{tmp}/out.jsonl"}
plugins: {dir: "{plugins}", functions: [example_functions]}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [filter, transform], exporters: [file]}
""")


def fnv_bucket(text, n):
    h = 1469598103934665603
    for b in text.encode():
        h = ((h ^ b) * 1099511628211) % (1 << 64)
    return h % n


def test_functions_from_a_c_plugin_in_filter_and_transform(spanhost, tmp):
    plugins = plugin_dir(tmp, "filter", "transform", "file", "example_functions")
    s = spanhost(FUNCTIONS.replace("MODE", "propagate").replace("BUCKETS", "16"), plugins_dir=plugins)
    spans = [span("seoul", {"client.ip": "1.209.3.4", "user.id": "u1"}), span("tokyo", {"client.ip": "14.1.2.3", "user.id": "u2"}),
             span("nowhere", {"user.id": "u3"})]
    assert requests.post(s.url, json=body(*spans), timeout=10).status_code == 200
    out = exported_by_name(os.path.join(tmp, "out.jsonl"), 2)
    assert set(out) == {"tokyo", "nowhere"}  # the KR span was filtered out
    assert attributes(out["tokyo"]) == {"client.ip": "14.1.2.3", "user.id": "u2", "bucket": fnv_bucket("u2", 16), "country": "JP",
                                        "kept": True}
    assert attributes(out["nowhere"])["country"] == ""


def test_a_function_that_fails_follows_error_mode(spanhost, tmp):
    plugins = plugin_dir(tmp, "filter", "transform", "file", "example_functions")
    s = spanhost(FUNCTIONS.replace("MODE", "propagate").replace("BUCKETS", "0"), plugins_dir=plugins)
    r = requests.post(s.url, json=body(span("a", {"user.id": "u1"})), timeout=10)
    assert r.status_code == 400 and "bucket count must be at least 1" in r.text, r.text
    s.stop()
    s = spanhost(FUNCTIONS.replace("MODE", "ignore").replace("BUCKETS", "0"), plugins_dir=plugins)
    assert requests.post(s.url, json=body(span("a", {"user.id": "u1"})), timeout=10).status_code == 200
    out = exported_by_name(os.path.join(tmp, "out.jsonl"), 1)
    assert "bucket" not in attributes(out["a"]) and attributes(out["a"])["country"] == ""
    counters = s.status()["pipelines"][0]["processors"][1]["counters"]
    assert counters.get("statement_errors") == 1, counters


def test_a_statement_failing_on_every_span_is_counted_each_time_and_logged_once(spanhost, tmp):
    plugins = plugin_dir(tmp, "filter", "transform", "file", "example_functions")
    s = spanhost(FUNCTIONS.replace("MODE", "ignore").replace("BUCKETS", "0"), plugins_dir=plugins)
    spans = [span(f"s{i}", {"user.id": f"u{i}"}) for i in range(50)]
    assert requests.post(s.url, json=body(*spans), timeout=10).status_code == 200
    exported_by_name(os.path.join(tmp, "out.jsonl"), 50)
    assert s.status()["pipelines"][0]["processors"][1]["counters"]["statement_errors"] == 50
    lines = [line for line in s.log().splitlines() if "bucket count must be at least 1" in line]
    assert len(lines) == 1, lines[:3]


def test_unknown_functions_and_wrong_arguments_are_config_errors(tmp):
    plugins = plugin_dir(tmp, "filter", "transform", "file", "example_functions")
    for bad, says in [('geo_countri(attributes["client.ip"])', "unknown function 'geo_countri'"),
                      ('hash_bucket(attributes["user.id"])', "hash_bucket takes 2 arguments, not 1"),
                      ('hash_bucket(attributes["user.id"], "16")', "hash_bucket: argument 2 must be int"),
                      # A pattern glibc would take gigabytes to compile is refused first.
                      ('IsMatch(name, "a++++++++++++++++++++++++")', "a quantifier may not follow another"),
                      ('IsMatch(name, "(a{{100}}){{100}}")', "repetition bounds {n,m} may multiply to at most 1000")]:
        r = check(tmp, FUNCTIONS.replace("MODE", "ignore").replace('hash_bucket(attributes["user.id"], BUCKETS)', bad), plugins)
        assert r.returncode != 0 and says in r.stderr and "column" in r.stderr, r.stderr


def test_the_cli_lists_and_calls_a_libraries_functions(tmp):
    plugins = plugin_dir(tmp, "example_functions")
    r = subprocess.run([SPANHOST, "plugins", "describe", "example_functions", "--dir", plugins], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "geo_country(string) -> string" in r.stdout and "hash_bucket(string, int) -> int" in r.stdout, r.stdout
    assert "keep_fraction(string, double) -> bool" in r.stdout, r.stdout
    so = os.path.join(plugins, "example_functions.so")
    r = call(so, 'geo_country("1.208.0.1")')
    assert r.returncode == 0 and r.stdout.strip() == '"KR"', (r.stdout, r.stderr)
    r = call(so, 'hash_bucket("u2", 16)')
    assert r.returncode == 0 and r.stdout.strip() == str(fnv_bucket("u2", 16)), (r.stdout, r.stderr)
    r = call(so, 'hash_bucket("u2", 0)')
    assert r.returncode != 0 and "bucket count must be at least 1" in r.stderr, r.stderr
    # A (string, double) signature goes through ffi_call; (string) and (string, int) are typed calls.
    for fraction, kept in [("0.0", "false"), ("1.0", "true")]:
        r = call(so, f'keep_fraction("u2", {fraction})')
        assert r.returncode == 0 and r.stdout.strip() == kept, (r.stdout, r.stderr)
    r = call(so, 'keep_fraction("u2", 2.5)')
    assert r.returncode != 0 and "fraction must be from 0 to 1, not 2.5" in r.stderr, r.stderr


EVERYWHERE = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  attributes:
    actions: [{key: tier, value: gold, action: upsert}]
    include: {conditions: ['geo_country(attributes["client.ip"]) == "JP"']}
  tail_sampling:
    decision_wait: 1s
    policies:
      - name: slow-checkout
        type: ottl_condition
        ottl_condition:
          error_mode: ignore
          span: ['IsMatch(name, "^checkout") and duration > 1000000']
exporters:
  file: {path: "{tmp}/out.jsonl"}
  "null": {}
notifiers:
  log: {output: stdout, format: json}
rules:
  error_span:
    group_wait: 0s
    where: ['resource.attributes["service.name"] == "shop" and attributes["tenant"] == "gold"']
plugins: {dir: "{plugins}", functions: [example_functions]}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [attributes, tail_sampling], exporters: [file]}
    traces/alerts: {receivers: [otlp], exporters: ["null"], notifiers: [log], rules: [error_span]}
""")


def test_one_engine_in_attributes_tail_sampling_and_rules(spanhost, tmp):
    s = spanhost(EVERYWHERE, plugins_dir=plugin_dir(tmp, "attributes", "tail_sampling", "file", "null", "log", "example_functions"))
    spans = []
    for i, (name, ip, ms, tenant) in enumerate([("checkout", "14.1.2.3", 5, "gold"), ("checkout", "1.209.0.1", 5, "silver"),
                                                ("checkout", "14.1.2.3", 0.5, "gold"), ("browse", "14.1.2.3", 5, "gold")]):
        sp = span(f"{name}-{i + 1}", {"client.ip": ip, "tenant": tenant})
        sp["traceId"] = f"{i + 1:032x}"
        sp["spanId"] = f"{i + 1:016x}"
        sp["endTimeUnixNano"] = str(1 + int(ms * 1e6))
        sp["status"] = {"code": 2}
        spans.append(sp)
    assert requests.post(s.url, json=body(*spans), timeout=10).status_code == 200
    # tail_sampling keeps the two slow checkouts (traces 1 and 2); attributes tagged the JP one.
    got = wait_for(lambda: len(read_file_export(os.path.join(tmp, "out.jsonl"))) >= 2 and read_file_export(os.path.join(tmp, "out.jsonl")), timeout=15)
    assert got and len(got) == 2, got
    kept = {sp["span"]["traceId"]: attributes(sp) for sp in got}
    assert kept[f"{1:032x}"]["tier"] == "gold" and "tier" not in kept[f"{2:032x}"]
    # The rule counts only gold tenants of the shop: three of the four error spans.
    notified = wait_for(lambda: [json.loads(line) for line in s.output().splitlines() if line.startswith("{")]
                        if len([line for line in s.output().splitlines() if line.startswith("{")]) >= 3 else None)
    assert notified, s.output()
    time.sleep(1)
    lines = [json.loads(line) for line in s.output().splitlines() if line.startswith("{")]
    assert len(lines) == 3, lines
    assert all("checkout-2" not in json.dumps(n) for n in lines), lines


def test_a_rule_condition_that_does_not_compile_is_refused(tmp):
    r = check(tmp, EVERYWHERE.replace('attributes["tenant"] == "gold"', 'attributes["tenant"] === "gold"'),
              plugin_dir(tmp, "attributes", "tail_sampling", "file", "null", "log", "example_functions"))
    assert r.returncode != 0 and "rules.error_span.where.0: column" in r.stderr, r.stderr


SPANEVENTS = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  filter:
    traces:
      spanevent: ['name == "debug" and span.attributes["noisy"] == true']
  transform:
    trace_statements:
      - context: spanevent
        conditions: ['name == "exception"']
        statements: ['set(attributes["owner"], span.attributes["team"])', 'replace_pattern(attributes["exception.message"], "[0-9]+", "N")']
  tail_sampling:
    decision_wait: 1s
    policies:
      - {name: exceptions, type: ottl_condition, ottl_condition: {spanevent: ['attributes["exception.type"] == "Timeout"']}}
exporters:
  file: {path: "{tmp}/out.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [filter, transform, tail_sampling], exporters: [file]}
""")


def test_span_event_conditions_and_statements(spanhost, tmp):
    s = spanhost(SPANEVENTS, plugins_dir=plugin_dir(tmp, "filter", "transform", "tail_sampling", "file"))

    def event(name, attrs):
        return {"timeUnixNano": "5", "name": name, "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}
    timeout = span("timeout", {"team": "payments"})
    timeout.update(traceId=f"{1:032x}", spanId=f"{1:016x}")
    timeout["attributes"].append({"key": "noisy", "value": {"boolValue": True}})
    timeout["events"] = [event("debug", {}), event("exception", {"exception.type": "Timeout", "exception.message": "after 3000 ms"})]
    other = span("other", {"team": "search"})
    other.update(traceId=f"{2:032x}", spanId=f"{2:016x}")
    other["events"] = [event("exception", {"exception.type": "KeyError", "exception.message": "no key 42"})]
    assert requests.post(s.url, json=body(timeout, other), timeout=10).status_code == 200
    out = exported_by_name(os.path.join(tmp, "out.jsonl"), 1)  # only the Timeout trace is sampled
    events = out["timeout"]["span"]["events"]
    assert [e["name"] for e in events] == ["exception"]  # the noisy span's debug event was removed
    attrs = {a["key"]: a["value"]["stringValue"] for a in events[0]["attributes"]}
    assert attrs == {"exception.type": "Timeout", "exception.message": "after N ms", "owner": "payments"}
    counters = s.status()["pipelines"][0]["processors"][0]["counters"]
    assert counters.get("dropped_span_events") == 1, counters


def test_a_function_library_reloads_like_other_plugins(spanhost, tmp):
    """A new copy of the library (another sha256) is loaded on reload; the country table it
    reads in its entry function is read again, and new expressions call the new copy."""
    plugins = plugin_dir(tmp, "transform", "file", "example_functions")
    table = os.path.join(tmp, "geo.txt")
    with open(table, "w") as f:
        f.write("10.0.0.0/8 AA\n")
    text = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  transform:
    trace_statements:
      - statements: ['set(attributes["country"], geo_country(attributes["client.ip"]))']
exporters:
  file: {path: "{tmp}/out.jsonl"}
plugins: {dir: "{plugins}", functions: [example_functions]}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [transform], exporters: [file]}
""")
    s = spanhost(text, plugins_dir=plugins, env={"GEO_COUNTRY_TABLE": table})
    out = os.path.join(tmp, "out.jsonl")
    assert requests.post(s.url, json=body(span("before", {"client.ip": "10.1.2.3"})), timeout=10).status_code == 200
    assert attributes(exported_by_name(out, 1)["before"])["country"] == "AA"
    with open(table, "w") as f:
        f.write("10.0.0.0/8 BB\n")
    with open(os.path.join(plugins, "example_functions.so"), "ab") as f:
        f.write(b"\0")  # another file, as a rebuilt library would be
    r = requests.post(s.admin + "/-/reload", json={}, timeout=60)
    assert r.status_code == 200, r.text
    assert requests.post(s.url, json=body(span("after", {"client.ip": "10.1.2.3"})), timeout=10).status_code == 200
    assert attributes(exported_by_name(out, 2)["after"])["country"] == "BB"


# Examples of the Collector's OTTL functions README, each run on a span of its own: the
# statement, the span's attributes before, and after (as the Collector leaves them).
README_EXAMPLES = [
    ('set(attributes["test"], "pass")', {}, {"test": "pass"}),
    ('delete_key(attributes, "http.request.header.authorization")',
     {"http.request.header.authorization": "Bearer x", "http.method": "GET"}, {"http.method": "GET"}),
    ('replace_pattern(attributes["http.target"], "/account/\\\\d{4}", "/account/{accountId}")',
     {"http.target": "/account/1234/orders"}, {"http.target": "/account/{accountId}/orders"}),
    ('replace_pattern(attributes["some string"], "^kube_([0-9A-Za-z]+_)", "k8s.$$1.")',
     {"some string": "kube_deployment_name"}, {"some string": "k8s.deployment_.name"}),
    ('truncate_all(attributes, 100)', {"long": "x" * 150, "short": "y", "n": 7}, {"long": "x" * 100, "short": "y", "n": 7}),
    ('limit(attributes, 100, [])', {f"k{i:03}": "v" for i in range(120)}, {f"k{i:03}": "v" for i in range(100)}),
]


def test_the_collector_readme_examples_give_the_same_output(spanhost, tmp):
    groups = "\n".join(f"      - conditions: ['name == \"ex{i}\"']\n        statements: ['{statement}']"
                       for i, (statement, _, _) in enumerate(README_EXAMPLES))
    text = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  transform:
    trace_statements:
GROUPS
exporters:
  file: {path: "{tmp}/out.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [transform], exporters: [file]}
""").replace("GROUPS", groups.replace("{", "{{").replace("}", "}}"))
    s = spanhost(text, plugins_dir=plugin_dir(tmp, "transform", "file"))
    spans = [span(f"ex{i}", before) for i, (_, before, _) in enumerate(README_EXAMPLES)]
    assert requests.post(s.url, json=body(*spans), timeout=10).status_code == 200
    out = exported_by_name(os.path.join(tmp, "out.jsonl"), len(README_EXAMPLES))
    for i, (statement, _, after) in enumerate(README_EXAMPLES):
        assert attributes(out[f"ex{i}"]) == after, statement


# The same statements in the Collector's flat form (0.120 and later): each statement runs in
# the context its path prefixes name, without groups.
FLAT = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  filter:
    traces:
      span: ['span.name == "dropped"']
  transform:
    error_mode: ignore
    trace_statements:
      - set(span.attributes["route.group"], "api") where IsMatch(span.attributes["http.route"], "^/api/")
      - delete_key(span.attributes, "http.request.header.authorization") where span.attributes["http.route"] != nil
      - replace_pattern(span.attributes["http.url"], "token=[^&]+", "token=***") where span.attributes["http.route"] != nil
      - truncate_all(span.attributes, 256)
      - limit(span.attributes, 64, ["service.name"])
      - set(span.status.code, 2) where span.attributes["http.status_code"] >= 500
      - set(resource.attributes["deployment.environment"], "prod")
      - set(spanevent.attributes["owner"], span.attributes["team"]) where spanevent.name == "exception"
      - statements: ['set(span.attributes["grouped"], span.name)']
        error_mode: propagate
      - set(span.attributes["test"], [nil, "nil", nil]) where span.name == "api"
      - set(span.attributes["mixed"], ["a", 1, true]) where span.name == "api"
exporters:
  file: {path: "{tmp}/out.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [filter, transform], exporters: [file]}
""")


def test_the_flat_form_with_context_prefixes_runs_like_the_groups(spanhost, tmp):
    s = spanhost(FLAT, plugins_dir=plugin_dir(tmp, "filter", "transform", "file"))
    api = span("api", {"http.route": "/api/items", "http.request.header.authorization": "Bearer s3cret",
                       "http.url": "https://shop/api/items?token=abc123&page=2", "http.status_code": 503, "note": "x" * 300,
                       "team": "payments"})
    api["events"] = [{"timeUnixNano": "5", "name": "exception", "attributes": []}, {"timeUnixNano": "6", "name": "log", "attributes": []}]
    spans = [api, span("no-route", {"http.url": "https://shop/?token=abc", "http.request.header.authorization": "Bearer x"}),
             span("dropped", {})]
    assert requests.post(s.url, json=body(*spans), timeout=10).status_code == 200
    out = exported_by_name(os.path.join(tmp, "out.jsonl"), 2)
    got = attributes(out["api"])
    assert got["route.group"] == "api" and got["grouped"] == "api"
    # The Collector's e2e case "slice with nil and quoted nil": nil items are empty values.
    raw = {a["key"]: a["value"] for a in out["api"]["span"]["attributes"]}
    assert raw["test"] == {"arrayValue": {"values": [{}, {"stringValue": "nil"}, {}]}}, raw["test"]
    assert raw["mixed"] == {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}, {"boolValue": True}]}}, raw["mixed"]
    assert "http.request.header.authorization" not in got
    assert got["http.url"] == "https://shop/api/items?token=***&page=2"
    assert got["note"] == "x" * 256
    assert out["api"]["span"]["status"]["code"] == 2
    events = {e["name"]: {a["key"]: a["value"]["stringValue"] for a in e.get("attributes", [])} for e in out["api"]["span"]["events"]}
    assert events == {"exception": {"owner": "payments"}, "log": {}}
    assert attributes(out["no-route"]) == {"http.url": "https://shop/?token=abc", "http.request.header.authorization": "Bearer x",
                                           "grouped": "no-route"}
    resource = {a["key"]: a["value"]["stringValue"] for a in out["api"]["resource"]["attributes"]}
    assert resource == {"service.name": "shop", "deployment.environment": "prod"}


def test_a_flat_statement_without_a_context_prefix_is_refused_naming_its_item(tmp):
    text = FLAT.replace('- set(resource.attributes["deployment.environment"], "prod")', '- set(attributes["x"], "y")')
    r = check(tmp, text, plugin_dir(tmp, "filter", "transform", "file"))
    assert r.returncode != 0
    assert "trace_statements.6: no context: prefix its paths with span., spanevent. or resource." in r.stderr + r.stdout, r.stderr


# The Collector's converters built into the engine. Expected values are the functions'
# definitions: lowercase hex digests (hashlib gives the same), FNV-1a 64 as a signed integer.
CONVERTERS = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  transform:
    trace_statements:
      - set(span.attributes["lower"], ToLowerCase(span.name))
      - set(span.attributes["upper"], ToUpperCase(span.name))
      - set(span.attributes["sha256"], SHA256(span.attributes["user"]))
      - set(span.attributes["sha1"], SHA1(span.attributes["user"]))
      - set(span.attributes["md5"], MD5(span.attributes["user"]))
      - set(span.attributes["sha512"], SHA512(span.attributes["user"]))
      - set(span.attributes["fnv"], FNV(span.attributes["user"]))
      - set(span.attributes["head"], Substring(span.name, 0, 3))
      - set(span.attributes["api"], true) where HasPrefix(span.attributes["route"], "/api/") and HasSuffix(span.attributes["route"], "/items")
  filter:
    traces:
      span: ['HasPrefix(span.name, "health")']
exporters:
  file: {path: "{tmp}/out.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [filter, transform], exporters: [file]}
""")


def fnv1a64(text):
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) % (1 << 64)
    return h - (1 << 64) if h >= 1 << 63 else h


def test_the_collectors_converters_give_the_collectors_results(spanhost, tmp):
    s = spanhost(CONVERTERS, plugins_dir=plugin_dir(tmp, "filter", "transform", "file"))
    spans = [span("GET /Items", {"user": "alice@example.com", "route": "/api/v1/items"}), span("healthcheck", {})]
    assert requests.post(s.url, json=body(*spans), timeout=10).status_code == 200
    out = exported_by_name(os.path.join(tmp, "out.jsonl"), 1)
    got = attributes(out["GET /Items"])
    user = b"alice@example.com"
    assert got["lower"] == "get /items" and got["upper"] == "GET /ITEMS" and got["head"] == "GET"
    assert got["sha256"] == hashlib.sha256(user).hexdigest()
    assert got["sha1"] == hashlib.sha1(user).hexdigest() and got["md5"] == hashlib.md5(user).hexdigest()
    assert got["sha512"] == hashlib.sha512(user).hexdigest()
    assert got["fnv"] == fnv1a64("alice@example.com")
    assert got["api"] is True


def test_a_collector_function_not_built_in_is_not_supported_yet_and_a_typo_is_unknown(tmp):
    for statement, says in [('set(span.attributes["n"], ParseXML(span.name))', "the Collector's function 'ParseXML' is not supported yet"),
                            ('set(span.attributes["n"], ToLowerCas(span.name))', "unknown function 'ToLowerCas'"),
                            ('set(span.attributes["n"], Substring(span.name, 1))', "Substring")]:
        text = CONVERTERS.replace('set(span.attributes["lower"], ToLowerCase(span.name))', statement)
        r = check(tmp, text, plugin_dir(tmp, "filter", "transform", "file"))
        assert r.returncode != 0 and says in r.stderr + r.stdout, (statement, r.stderr[-500:])


def test_a_function_tells_a_missing_attribute_from_an_empty_one(spanhost, tmp):
    """A missing attribute reaches a plugin function as {NULL, 0}, an empty string with a
    pointer (see spanhost_function in spanhost.h)."""
    from conftest import TEST_PLUGINS
    plugins = plugin_dir(tmp, "transform", "file")
    shutil.copy(os.path.join(TEST_PLUGINS, "presence.so"), plugins)
    s = spanhost(cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  transform:
    trace_statements:
      - statements: ['set(attributes["has_x"], is_set(attributes["x"]))']
exporters:
  file: {path: "{tmp}/out.jsonl"}
plugins: {dir: "{plugins}", functions: [presence]}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [transform], exporters: [file]}
"""), plugins_dir=plugins)
    assert requests.post(s.url, json=body(span("empty", {"x": ""}), span("missing", {}), span("set", {"x": "1"})), timeout=10).status_code == 200
    out = exported_by_name(os.path.join(tmp, "out.jsonl"), 3)
    assert {name: attributes(sp)["has_x"] for name, sp in out.items()} == {"empty": True, "missing": False, "set": True}
