"""The OpenTelemetry Python SDK sends real spans through a chain of dlopen'd plugins into the
file exporter, and every field comes out as the SDK recorded it."""
import base64
import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from conftest import read_file_export, wait_for

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
  attributes/tag:
    actions:
      - key: deployment
        value: ${{env:SPANHOST_TEST_DEPLOYMENT:-staging}}
        action: insert
      - key: secret.token
        action: delete
      - key: http.route.copy
        from_attribute: http.route
        action: upsert
  example_processor: {{}}
exporters:
  file:
    path: {tmp}/spans.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [attributes/tag, example_processor]
      exporters: [file]
"""

KINDS = [SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER]


def any_value(v):
    """Python value of an OTLP JSON AnyValue."""
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"])
    if "arrayValue" in v:
        return tuple(any_value(x) for x in v["arrayValue"].get("values", []))
    if "kvlistValue" in v:
        return {kv["key"]: any_value(kv["value"]) for kv in v["kvlistValue"].get("values", [])}
    return None


def attrs(lst):
    return {kv["key"]: any_value(kv["value"]) for kv in lst or []}


def send_spans(url):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "service.version": "2.1.0",
                                                        "host.cores": 8}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=10)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("e2e.tracer", "0.3.1")

    with tracer.start_as_current_span("linked-target") as target:
        target_ctx = target.get_span_context()
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as root:
        root.set_attributes({
            "http.route": "/cart", "http.status_code": 500, "ratio": 0.25, "cached": False,
            "tags": ["a", "b", "ü"], "ints": [1, -2, 3], "floats": [1.5, 2.5], "bools": [True, False],
            "secret.token": "hunter2", "quote": 'he said "hi"\n\ttab',
        })
        root.add_event("cache.miss", {"key": "cart:42", "attempt": 2})
        root.add_event("exception", {"exception.type": "ValueError", "exception.message": "bad cart"})
        root.set_status(Status(StatusCode.ERROR, "cart failed"))
        for kind in KINDS:
            with tracer.start_as_current_span(f"child-{kind.name.lower()}", kind=kind,
                                              links=[Link(target_ctx, {"link.reason": "retry-of"})]) as child:
                child.set_attribute("kind.name", kind.name)
                child.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("drop-me"):
            pass
    provider.force_flush()
    provider.shutdown()
    return memory.get_finished_spans()


def test_every_field_survives_the_plugin_chain(spanhost, tmp):
    s = spanhost(CONFIG)
    sent = send_spans(s.url)
    expected = [sp for sp in sent if sp.name != "drop-me"]
    out = os.path.join(tmp, "spans.jsonl")
    got = wait_for(lambda: len(read_file_export(out)) >= len(expected) and read_file_export(out))
    assert len(got) == len(expected), s.log()
    by_id = {g["span"]["spanId"]: g for g in got}
    # Span flags as the SDK's own OTLP encoder puts them on the wire.
    wire = encode_spans(expected)
    sent_flags = {int.from_bytes(sp.span_id, "big"): sp.flags
                  for rs in wire.resource_spans for ss in rs.scope_spans for sp in ss.spans}

    for sp in expected:
        ctx = sp.get_span_context()
        g = by_id[f"{ctx.span_id:016x}"]
        span = g["span"]
        assert span["traceId"] == f"{ctx.trace_id:032x}"
        assert span.get("parentSpanId", "") == (f"{sp.parent.span_id:016x}" if sp.parent else "")
        assert span["name"] == sp.name
        assert span.get("kind", 0) == sp.kind.value + 1  # SDK INTERNAL=0 is OTLP 1
        assert int(span["startTimeUnixNano"]) == sp.start_time
        assert int(span["endTimeUnixNano"]) == sp.end_time
        assert span.get("flags", 0) == sent_flags[ctx.span_id]

        want = dict(sp.attributes)
        want = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in want.items()}
        want.pop("secret.token", None)                   # deleted by attributes/tag
        want["deployment"] = "staging"                   # inserted, from the ${env:...:-default}
        if "http.route" in want:
            want["http.route.copy"] = want["http.route"]  # upserted from another attribute
        want["example.processed"] = True                 # added by the plain-C example processor
        assert attrs(span.get("attributes")) == want

        events = span.get("events", [])
        assert [e["name"] for e in events] == [e.name for e in sp.events]
        for e_got, e_sent in zip(events, sp.events):
            assert int(e_got["timeUnixNano"]) == e_sent.timestamp
            assert attrs(e_got.get("attributes")) == dict(e_sent.attributes)

        links = span.get("links", [])
        assert len(links) == len(sp.links)
        for l_got, l_sent in zip(links, sp.links):
            assert l_got["traceId"] == f"{l_sent.context.trace_id:032x}"
            assert l_got["spanId"] == f"{l_sent.context.span_id:016x}"
            assert attrs(l_got.get("attributes")) == dict(l_sent.attributes)

        status = span.get("status", {})
        assert status.get("code", 0) == sp.status.status_code.value
        assert status.get("message", "") == (sp.status.description or "")

        assert attrs(g["resource"].get("attributes")) == dict(sp.resource.attributes)
        assert g["scope"]["name"] == "e2e.tracer"
        assert g["scope"]["version"] == "0.3.1"

    st = s.status()
    procs = {p["id"]: p for p in st["pipelines"][0]["processors"]}
    assert procs["example_processor"]["counters"]["dropped"] == 1
    assert st["receivers"][0]["counters"]["dropped_spans"] == 1
