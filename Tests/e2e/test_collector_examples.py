"""The Collector READMEs' own example configs, kept unchanged in collector_examples/ (each file
names its source). Each is checked as written (`spanhostd --check`), then run live: the example
is the base config and an overlay merged on top (repeated --config, as in the Collector) only
adds a receiver the test can reach and the admin endpoint. Real SDK spans go in; the test checks
what the README says comes out."""
import os
import subprocess

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context

from conftest import SPANHOSTD, free_port, wait_for

EXAMPLES = os.path.join(os.path.dirname(__file__), "collector_examples")

OVERLAY = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
admin:
  endpoint: {admin}
plugins:
  dir: {plugins}
service:
  pipelines:
    traces:
      receivers: [otlp]
"""


def check(path):
    out = subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout + out.stderr


def tracer(url, service):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return provider, provider.get_tracer("collector-examples")


def test_spanmetrics_readme_example(spanhost):
    example = os.path.join(EXAMPLES, "spanmetrics_readme.yaml")
    code, out = check(example)
    assert code == 0, out
    s = spanhost(OVERLAY, base_configs=[example])
    provider, t = tracer(s.url, "shop")
    with t.start_as_current_span("GET /items", kind=SpanKind.SERVER, attributes={"http.method": "POST", "http.status_code": 200}):
        with t.start_as_current_span("work") as work:
            work.add_event("exception", {"exception.type": "ValueError", "exception.message": "boom"})
    provider.shutdown()

    metrics = lambda: requests.get(s.admin + "/metrics", timeout=5).text
    # status.code is excluded; http.method defaults to GET; http.status_code is left out when absent.
    server = 'service_name="shop",span_name="GET /items",span_kind="SPAN_KIND_SERVER",http_method="POST",http_status_code="200"'
    internal = 'service_name="shop",span_name="work",span_kind="SPAN_KIND_INTERNAL",http_method="GET"'
    assert wait_for(lambda: f"traces_span_metrics_calls_total{{{server}}} 1" in metrics()), metrics()
    text = metrics()
    assert f"traces_span_metrics_calls_total{{{internal}}} 1" in text, text
    assert "STATUS_CODE_" not in text, text
    # Durations in milliseconds (the Collector's default unit): 100us is the bucket 0.1.
    assert f'traces_span_metrics_duration_milliseconds_bucket{{{internal},le="0.1"}}' in text, text
    assert f'traces_span_metrics_duration_milliseconds_count{{{server}}} 1' in text
    # events.enabled: span events counted per their exception.type and exception.message.
    assert f'traces_span_metrics_events_total{{{internal},exception_type="ValueError",exception_message="boom"}} 1' in text, text


def test_servicegraph_readme_example(spanhost, tmp):
    example = os.path.join(EXAMPLES, "servicegraph_readme.yaml")
    code, out = check(example)
    # The example's only receiver speaks gRPC, which spanhost does not: refused, naming the protocol.
    assert code != 0 and "receivers.otlp.protocols.grpc: gRPC is not supported" in out, out
    # The same example with HTTP for gRPC, and a free port for the scrape endpoint.
    with open(example) as f:
        text = f.read().replace("      grpc:\n", "      http:\n")
    base = os.path.join(tmp, "servicegraph.yaml")
    with open(base, "w") as f:
        f.write(text)
    scrape = free_port()
    s = spanhost(OVERLAY + f"""
exporters:
  prometheus/servicegraph:
    endpoint: 127.0.0.1:{scrape}
""", base_configs=[base])
    front, ft = tracer(s.url, "frontend")
    back, bt = tracer(s.url, "backend")
    with ft.start_as_current_span("GET /", kind=SpanKind.SERVER):
        with ft.start_as_current_span("call backend", kind=SpanKind.CLIENT, attributes={"dimension-1": "a"}) as client:
            with bt.start_as_current_span("GET /items", kind=SpanKind.SERVER, context=set_span_in_context(client),
                                          attributes={"dimension-2": "b"}):
                pass
    front.shutdown()
    back.shutdown()

    metrics = lambda: requests.get(f"http://127.0.0.1:{scrape}/metrics", timeout=5).text
    edge = 'client="frontend",server="backend",client_dimension_1="a",server_dimension_2="b"'
    assert wait_for(lambda: f"servicegraph_traces_service_graph_request_total{{{edge}}} 1" in metrics()), metrics()
    assert f"servicegraph_traces_service_graph_request_failed_total{{{edge}}} 0" in metrics()
    # The scrape endpoint serves the connectors of its metrics pipelines only.
    assert "traces_span_metrics" not in metrics()
    assert requests.get(f"http://127.0.0.1:{scrape}/other", timeout=5).status_code == 404


def test_signals_and_exporters_spanhost_does_not_carry_are_named(tmp):
    base = """
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}
connectors:
  spanmetrics:
exporters:
  nop:
  otlphttp: {endpoint: "http://127.0.0.1:4318"}
  otlphttp/tls: {endpoint: "https://example.com:4318"}
  file: {path: "/dev/null"}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [spanmetrics, nop]}
"""
    cases = [
        ("    logs: {receivers: [otlp], exporters: [nop]}",
         "service.pipelines.logs: pipelines of type 'logs' are not supported: spanhost carries traces, and the metrics its connectors derive from them"),
        ("    metrics: {receivers: [otlp], exporters: [nop]}",
         "service.pipelines.metrics.receivers.0: 'otlp' receives no metrics: spanhost carries traces only"),
        ("    metrics: {receivers: [spanmetrics], exporters: [otlphttp/tls]}",
         "exporters.otlphttp/tls.endpoint: metrics over HTTPS are not supported yet"),
        ("    metrics: {receivers: [spanmetrics], exporters: [file]}",
         "exporters.file: 'file' does not carry metrics in spanhost"),
        ("    metrics: {receivers: [spanmetrics], processors: [transform], exporters: [nop]}",
         "service.pipelines.metrics.processors.0: 'transform' cannot process metrics"),
    ]
    path = os.path.join(tmp, "c.yaml")
    for pipeline, message in cases:
        with open(path, "w") as f:
            f.write(base + pipeline + "\n")
        code, out = check(path)
        assert code != 0 and message in out, (pipeline, out)


def test_an_otlphttp_exporter_pushes_connector_metrics_to_metrics_endpoint(spanhost):
    # One otlp_http exporter in the traces and the metrics pipeline, with metrics_endpoint, as
    # vendors' Collector configs write it: spans go to /v1/traces, the connectors' metrics are
    # pushed as OTLP/JSON to metrics_endpoint every metrics_flush_interval.
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    got = {"/v1/traces": [], "/custom/metrics": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.setdefault(self.path, []).append((self.headers.get("Content-Type"), self.headers.get("X-Key") + "|" + str(self.headers.get("Authorization")), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        s = spanhost("""
extensions:
  bearertokenauth/vendor: {{token: t0k}}
receivers:
  otlp: {{protocols: {{http: {{endpoint: "{receiver}"}}}}}}
connectors:
  spanmetrics:
    metrics_flush_interval: 1s
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:PORT
    metrics_endpoint: http://127.0.0.1:PORT/custom/metrics
    logs_endpoint: http://127.0.0.1:PORT/v1/logs
    headers: {{X-Key: k1}}
    auth: {{authenticator: bearertokenauth/vendor}}
    encoding: json
    compression: none
admin: {{endpoint: "{admin}"}}
plugins: {{dir: "{plugins}"}}
service:
  extensions: [bearertokenauth/vendor]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp_http, spanmetrics]}}
    metrics: {{receivers: [spanmetrics], exporters: [otlp_http]}}
""".replace("PORT", str(port)))
        provider, t = tracer(s.url, "shop")
        for _ in range(3):
            with t.start_as_current_span("GET /items"):
                pass
        provider.shutdown()
        assert wait_for(lambda: len(got["/v1/traces"]) >= 1, timeout=15), got.keys()

        def calls():
            for content_type, key, body in got["/custom/metrics"]:
                assert content_type == "application/json" and key == "k1|Bearer t0k", key
                for rm in json.loads(body)["resourceMetrics"]:
                    for sm in rm["scopeMetrics"]:
                        for m in sm["metrics"]:
                            if m["name"] == "traces.span.metrics.calls":
                                for dp in m["sum"]["dataPoints"]:
                                    attrs = {a["key"]: a["value"]["stringValue"] for a in dp["attributes"]}
                                    if attrs.get("service_name") == "shop" and attrs.get("span_name") == "GET /items":
                                        return int(dp["asInt"])
            return 0
        assert wait_for(lambda: calls() == 3, timeout=15), got["/custom/metrics"][-1:] if got["/custom/metrics"] else "no push"
    finally:
        server.shutdown()
        server.server_close()
