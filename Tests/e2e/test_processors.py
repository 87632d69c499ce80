"""attributes, filter and probabilistic_sampler with spans from the OpenTelemetry SDK, checked on
the file exporter's output."""
import hashlib
import hmac
import json
import os

import pytest

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conftest import read_file_export, wait_for
from test_sdk_roundtrip import attrs

PIPELINE = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
%s
exporters:
  file:
    path: {tmp}/%s
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [%s]
      exporters: [file]
"""


def pipeline(processors, out, names):
    """The config text; braces in the processor YAML are kept literal."""
    return PIPELINE % (processors.replace("{", "{{").replace("}", "}}"), out, names)


def make_spans(service, build):
    """Runs `build(tracer)` and returns the finished spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("processor-test"))
    return list(memory.get_finished_spans())


def send(url, spans, chunk=500):
    exporter = OTLPSpanExporter(endpoint=url, timeout=30)
    for i in range(0, len(spans), chunk):
        assert exporter.export(spans[i:i + chunk]).name == "SUCCESS"


def exported(s, tmp, name, expect):
    path = os.path.join(tmp, name)
    assert wait_for(lambda: s.status()["exporters"][0]["counters"].get("exported", 0) >= expect, timeout=20), s.status()
    return read_file_export(path)


ATTRIBUTES = """  attributes/mask:
    actions:
      - {key: user.email, action: hash}
      - {key: user.phone, action: hash, hmac_key: "${env:SPANHOST_TEST_HMAC}"}
      - {key: http.url, action: extract, pattern: "^https?://(?P<url.host>[^/:]+)(:[0-9]+)?(?P<url.path>/[^?]*)"}
      - {key: http.status_code, action: convert, converted_type: int}
      - {key: retries, action: convert, converted_type: string}
      - {action: delete, pattern: "^secret\\\\."}
      - {key: env, value: prod, action: insert}
    exclude:
      span_names: [internal-only]
  attributes/resource:
    target: resource
    actions:
      - {key: deployment.region, value: eu-1, action: upsert}
    include:
      match_type: regexp
      services: ["^check"]"""


def test_attributes_hash_extract_convert_delete_and_matching(spanhost, tmp):
    os.environ["SPANHOST_TEST_HMAC"] = "s3cret-key"
    s = spanhost(pipeline(ATTRIBUTES, "attrs.jsonl", "attributes/mask, attributes/resource"))

    def build(tracer):
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as sp:
            sp.set_attributes({"user.email": "ada@example.com", "user.phone": "+44 20 7946 0000",
                               "http.url": "https://shop.example.com:8443/cart/42?x=1", "http.status_code": "503",
                               "retries": 3, "secret.token": "t0k", "secret.key": "k3y", "keep": "me"})
        with tracer.start_as_current_span("internal-only") as sp:
            sp.set_attributes({"user.email": "bob@example.com", "secret.token": "stays"})
    sent = make_spans("checkout", build)
    send(s.url, sent)
    got = {g["span"]["name"]: g for g in exported(s, tmp, "attrs.jsonl", len(sent))}

    a = attrs(got["GET /cart"]["span"]["attributes"])
    assert a["user.email"] == hashlib.sha256(b"ada@example.com").hexdigest()
    assert a["user.phone"] == hmac.new(b"s3cret-key", b"+44 20 7946 0000", hashlib.sha256).hexdigest()
    assert a["url.host"] == "shop.example.com" and a["url.path"] == "/cart/42"
    assert a["http.status_code"] == 503 and a["retries"] == "3"
    assert "secret.token" not in a and "secret.key" not in a and a["keep"] == "me"
    assert a["env"] == "prod"
    # Excluded by span name: untouched.
    b = attrs(got["internal-only"]["span"]["attributes"])
    assert b == {"user.email": "bob@example.com", "secret.token": "stays"}
    # Resource changed because the service matched ^check.
    assert attrs(got["GET /cart"]["resource"]["attributes"])["deployment.region"] == "eu-1"


FILTER = """  filter/noise:
    spans:
      - {attribute: http.route, equals: /health}
      - {attribute: http.route, regex: "^/metrics"}
      - all:
          - {field: kind, equals: INTERNAL}
          - {field: duration_ms, less_than: 0.001}
      - {resource_attribute: service.name, equals: synthetic-probe}
      - {attribute: drop.me, exists: true}
    drop_whole_trace: true"""


def test_filter_drops_health_checks_noise_and_whole_traces(spanhost, tmp):
    s = spanhost(pipeline(FILTER, "filtered.jsonl", "filter/noise"))
    def build(tracer):
        for route in ["/health", "/metrics/prom", "/cart", "/orders"]:
            with tracer.start_as_current_span(f"GET {route}", kind=SpanKind.SERVER) as sp:
                sp.set_attribute("http.route", route)
                with tracer.start_as_current_span("db", kind=SpanKind.CLIENT):
                    pass
        with tracer.start_as_current_span("flagged", kind=SpanKind.SERVER) as sp:
            sp.set_attribute("drop.me", True)
    spans = make_spans("shop", build)
    # Roots first, then their children in a later request: children of a dropped root follow it.
    roots = [sp for sp in spans if sp.parent is None]
    children = [sp for sp in spans if sp.parent is not None]
    send(s.url, roots)
    send(s.url, children)
    def probe_build(tracer):
        with tracer.start_as_current_span("probe"):
            pass
    probe = make_spans("synthetic-probe", probe_build)
    send(s.url, probe)
    kept = exported(s, tmp, "filtered.jsonl", 4)
    names = sorted(g["span"]["name"] for g in kept)
    # /health and /metrics roots match; their traces' children are dropped too (drop_whole_trace).
    assert names == ["GET /cart", "GET /orders", "db", "db"], names
    counters = next(p for p in s.status()["pipelines"][0]["processors"])["counters"]
    assert counters["dropped_traces"] == 4  # /health, /metrics, flagged, the probe
    assert counters["dropped_spans"] == len(spans) + len(probe) - 4


SAMPLER = """  probabilistic_sampler:
    sampling_percentage: 25
    hash_seed: %d"""


def test_probabilistic_sampler_rate_and_agreement_across_instances(spanhost, tmp):
    def build(tracer):
        for i in range(10_000):
            with tracer.start_as_current_span(f"t{i}"):
                pass
    spans = make_spans("sampled", build)
    kept = {}
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        s = spanhost(pipeline(SAMPLER % seed, f"sampled-{name}.jsonl", "probabilistic_sampler"))
        send(s.url, spans, chunk=1000)
        counters = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
        assert wait_for(lambda: counters().get("kept_spans", 0) + counters().get("dropped_spans", 0) == 10_000, timeout=30)
        n = counters()["kept_spans"]
        assert wait_for(lambda: s.status()["exporters"][0]["counters"].get("exported", 0) == n, timeout=20)
        kept[name] = {g["span"]["traceId"] for g in read_file_export(os.path.join(tmp, f"sampled-{name}.jsonl"))}
        s.stop()
    rate = len(kept["a"]) / 10_000
    print(f"\nkept {len(kept['a'])} of 10,000 traces at 25% (seed 7); seed 8 kept {len(kept['c'])}, "
          f"{len(kept['a'] & kept['c'])} in common")
    # 25% of 10,000: standard deviation 43; 5 sigma either side.
    assert 2283 <= len(kept["a"]) <= 2717, rate
    assert kept["a"] == kept["b"]  # same seed: same decisions on another instance
    assert kept["a"] != kept["c"]  # another seed: other traces


def test_invalid_processor_configs_name_the_key(tmp):
    from conftest import Spanhost
    cases = [
        ("  filter:\n    spans:\n      - {field: color, equals: red}", "filter", "spans.0.field: 'color' is not name, kind, status or duration_ms"),
        ("  filter:\n    spans:\n      - {attribute: a, regex: \"(\"}", "filter", "spans.0.regex:"),
        ("  probabilistic_sampler:\n    sampling_percentage: -5", "probabilistic_sampler", "sampling_percentage: required, a number from 0 to 100"),
        ("  attributes:\n    actions:\n      - {key: a, action: convert, converted_type: float}", "attributes", "actions.0.converted_type: 'float' is not int, double, string or bool"),
        ("  attributes:\n    actions:\n      - {key: a, action: extract}", "attributes", "actions.0.pattern: required for extract"),
    ]
    for processors, name, message in cases:
        s = Spanhost(pipeline(processors, "x.jsonl", name), tmp)
        assert s.wait_exit() != 0
        assert message in s.log(), (message, s.log()[-300:])


BATCH = """  batch:
    send_batch_size: 100
    timeout: 300ms"""


def test_batch_gathers_small_requests_by_size_and_timeout(spanhost, tmp):
    """The Collector's batch processor, mapped to batching in the exporter's queue."""
    import requests
    from test_bad_input import PROTO, request
    s = spanhost(pipeline(BATCH, "batched.jsonl", "batch"))
    assert s.status()["pipelines"][0]["processors"] == []  # taken out of the pipeline, into the queue
    for i in range(25):  # 250 spans in requests of 10, sent faster than the 300ms timeout
        r = requests.post(s.url, data=request([f"s{i}-{j}" for j in range(10)]).SerializeToString(), headers=PROTO, timeout=5)
        assert r.status_code == 200 and r.content == b""
    assert wait_for(lambda: s.status()["exporters"][0]["counters"].get("exported", 0) == 250, timeout=10), s.status()
    lines = open(os.path.join(tmp, "batched.jsonl")).read().splitlines()
    # Batches of at least 100 spans, the rest by timeout: far fewer exports than requests.
    sizes = [sum(len(ss["spans"]) for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"]) for line in lines]
    assert sum(sizes) == 250 and len(lines) <= 4 and all(n >= 100 for n in sizes[:-1]), sizes
    assert len(read_file_export(os.path.join(tmp, "batched.jsonl"))) == 250


@pytest.mark.parametrize("queue", ["memory", "disk"])
def test_batch_metadata_keys_keep_each_tenant_in_its_own_exports(spanhost, tmp, queue):
    """`metadata_keys` as in the Collector: requests are batched per value of the named request
    header (which the receiver's include_metadata passes on), so no export mixes tenants."""
    import requests
    from test_bad_input import PROTO, request
    cfg = pipeline(BATCH + "\n    metadata_keys: [X-Tenant]", "tenants.jsonl", "batch")
    cfg = cfg.replace("endpoint: {receiver}", "endpoint: {receiver}\n        include_metadata: true")
    if queue == "disk":
        cfg = cfg.replace("path: {tmp}/tenants.jsonl", "path: {tmp}/tenants.jsonl\n    sending_queue: {{storage: {tmp}/queue}}")
    s = spanhost(cfg)
    for i in range(20):  # interleaved, faster than the timeout: one consumer gathers both tenants
        tenant = "ab"[i % 2]
        r = requests.post(s.url, data=request([f"{tenant}{i}-{j}" for j in range(10)]).SerializeToString(),
                          headers={**PROTO, "X-Tenant": tenant}, timeout=5)
        assert r.status_code == 200
    assert wait_for(lambda: s.status()["exporters"][0]["counters"].get("exported", 0) == 200, timeout=10), s.status()
    exports = [{sp["name"][0] for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]}
               for line in open(os.path.join(tmp, "tenants.jsonl")).read().splitlines()]
    assert all(len(tenants) == 1 for tenants in exports), exports
    assert {t for e in exports for t in e} == {"a", "b"}
    assert len(exports) < 20, f"still batched: {len(exports)} exports of 20 requests"


@pytest.mark.parametrize("shape", ["service", "collector processor"])
def test_memory_limiter_answers_503_instead_of_growing(spanhost, tmp, shape):
    import requests
    from conftest import TEST_PLUGINS
    from test_bad_input import PROTO, request
    cfg = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  misbehave:
    mode: hang
    sending_queue: {{queue_size: 100000}}
plugins:
  dir: %s
admin:
  endpoint: {admin}
service:
  shutdown_timeout: 1s
  memory_limiter: {{limit_mib: 2}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [misbehave]
""" % TEST_PLUGINS
    if shape == "collector processor":
        # The Collector's way: a memory_limiter processor (soft limit = limit - spike = 2 MiB).
        cfg = cfg.replace("  memory_limiter: {{limit_mib: 2}}\n", "").replace(
            "exporters:\n", "processors:\n  memory_limiter: {{check_interval: 1s, limit_mib: 3, spike_limit_mib: 1}}\nexporters:\n", 1)
        cfg = cfg.replace("      exporters: [misbehave]", "      processors: [memory_limiter]\n      exporters: [misbehave]")
    s = spanhost(cfg)
    assert s.status()["memory"]["limitBytes"] == 2 << 20
    body = request([f"span-{i}-" + "x" * 200 for i in range(200)]).SerializeToString()
    codes = []
    for _ in range(100):  # the exporter never finishes: batches pile up in its queue
        r = requests.post(s.url, data=body, headers=PROTO, timeout=5)
        codes.append(r.status_code)
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "1" and b"memory limit reached" in r.content
    memory = s.status()["memory"]
    print(f"\naccepted {codes.count(200)} requests, then 503 for {codes.count(503)}; "
          f"{memory['batchBytes'] >> 10} KiB held, limit {memory['limitBytes'] >> 10} KiB")
    assert 200 in codes and 503 in codes
    assert codes.index(503) > 0 and all(c == 503 for c in codes[codes.index(503):])
    assert memory["batchBytes"] < memory["limitBytes"] + 2 * len(body) * 4  # at most a request or two over
