"""The routing and forward connectors between traces pipelines, configured as the Collector's
(connector/routingconnector README, its tenant example written for traces, with the routing
table of testdata/config/traces.yaml): SDK spans are routed by a request header, a resource
attribute and a span attribute; what no route takes goes to default_pipelines; forward hands
everything on; pipelines downstream run their own processors. Broken graphs are refused."""
import os
import subprocess

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from conftest import SPANHOSTD, read_file_export, wait_for

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
        include_metadata: true
processors:
  attributes/checkout:
    actions:
      - {{key: routed, value: checkout, action: insert}}
exporters:
  file/acme: {{path: "{tmp}/acme.jsonl"}}
  file/globex: {{path: "{tmp}/globex.jsonl"}}
  file/checkout: {{path: "{tmp}/checkout.jsonl"}}
  file/other: {{path: "{tmp}/other.jsonl"}}
  file/all: {{path: "{tmp}/all.jsonl"}}
connectors:
  forward:
  routing:
    default_pipelines:
      - traces/other
    table:
      - context: request
        condition: request["X-Tenant"] == "acme"
        pipelines: [traces/acme]
      - statement: route() where attributes["X-Tenant"] == "globex"
        pipelines:
          - traces/globex
      - context: span
        condition: attributes["http.route"] == "/checkout"
        pipelines: [traces/checkout]
admin:
  endpoint: {admin}
plugins:
  dir: {plugins}
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [routing, forward]
    traces/acme:
      receivers: [routing]
      exporters: [file/acme]
    traces/globex:
      receivers: [routing]
      exporters: [file/globex]
    traces/checkout:
      receivers: [routing]
      processors: [attributes/checkout]
      exporters: [file/checkout]
    traces/other:
      receivers: [routing]
      exporters: [file/other]
    traces/all:
      receivers: [forward]
      exporters: [file/all]
"""


def send(url, resource, names, headers=None):
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, headers=headers or {})))
    tracer = provider.get_tracer("routing-test")
    for name, attributes in names:
        with tracer.start_as_current_span(name, attributes=attributes):
            pass
    provider.shutdown()


def names(tmp, file):
    return sorted(sp["span"]["name"] for sp in read_file_export(os.path.join(tmp, file)))


def test_routes_by_request_resource_and_span_with_default_and_forward(spanhost, tmp):
    s = spanhost(CONFIG)
    send(s.url, {"service.name": "shop"}, [("a1", {}), ("a2", {"http.route": "/checkout"})], headers={"X-Tenant": "acme"})
    send(s.url, {"service.name": "shop", "X-Tenant": "globex"}, [("g1", {}), ("g2", {"http.route": "/checkout"})])
    send(s.url, {"service.name": "shop"}, [("c1", {"http.route": "/checkout"}), ("o1", {"http.route": "/other"})])
    assert wait_for(lambda: len(names(tmp, "all.jsonl")) == 6), names(tmp, "all.jsonl")
    # The first route a span meets takes it: the request header wins over the span's route.
    assert wait_for(lambda: names(tmp, "acme.jsonl") == ["a1", "a2"]), names(tmp, "acme.jsonl")
    assert wait_for(lambda: names(tmp, "globex.jsonl") == ["g1", "g2"]), names(tmp, "globex.jsonl")
    assert wait_for(lambda: names(tmp, "checkout.jsonl") == ["c1"]), names(tmp, "checkout.jsonl")
    assert wait_for(lambda: names(tmp, "other.jsonl") == ["o1"]), names(tmp, "other.jsonl")
    # The checkout pipeline's processor changed its own copy only.
    checkout = read_file_export(os.path.join(tmp, "checkout.jsonl"))[0]["span"]
    assert {"key": "routed", "value": {"stringValue": "checkout"}} in checkout["attributes"]
    for sp in read_file_export(os.path.join(tmp, "all.jsonl")):
        assert all(kv["key"] != "routed" for kv in sp["span"].get("attributes", []))
    status = s.status()
    assert {p["id"] for p in status["pipelines"]} >= {"traces/in", "traces/acme", "traces/all"}


def check(tmp, text):
    path = os.path.join(tmp, "c.yaml")
    with open(path, "w") as f:
        f.write(text)
    out = subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    return out.returncode, out.stderr


def test_broken_connector_graphs_are_refused(tmp):
    base = """
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}
exporters:
  nop:
connectors:
  forward:
  forward/back:
  routing:
    table:
      - condition: attributes["env"] == "prod"
        pipelines: [traces/prod]
service:
  pipelines:
"""
    cases = [
        ("""    traces/in: {receivers: [otlp], exporters: [routing]}
    traces/prod: {receivers: [otlp], exporters: [nop]}
""", "connectors.routing: is an exporter of pipeline traces/in but no pipeline lists it under receivers"),
        ("""    traces/in: {receivers: [otlp], exporters: [routing]}
    traces/dev: {receivers: [routing], exporters: [nop]}
""", "connectors.routing: routes to pipeline traces/prod, which is not defined under service.pipelines"),
        ("""    traces/in: {receivers: [otlp, forward/back], exporters: [forward]}
    traces/next: {receivers: [forward], exporters: [forward/back]}
""", "connectors make a cycle: traces/in -> traces/next -> traces/in"),
        ("""    traces/in: {receivers: [otlp], exporters: [nop]}
    traces/prod: {receivers: [forward], exporters: [nop]}
""", "connectors.forward: is a receiver of pipeline traces/prod but no pipeline lists it under exporters"),
    ]
    for pipelines, message in cases:
        code, out = check(tmp, base + pipelines)
        assert code != 0 and message in out, (pipelines, out)
    # A condition that does not compile names its route.
    code, out = check(tmp, base.replace('attributes["env"] == "prod"', 'attributes["env"] ==') + """    traces/in: {receivers: [otlp], exporters: [routing]}
    traces/prod: {receivers: [routing], exporters: [nop]}
""")
    assert code != 0 and "connectors.routing.table.0.condition" in out, out
    code, out = check(tmp, base.replace("- condition:", "- context: log\n        condition:") + "    traces/in: {receivers: [otlp], exporters: [nop]}\n")
    assert code != 0 and "the log context routes metrics or logs, which spanhost does not carry" in out, out
