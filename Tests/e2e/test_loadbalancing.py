"""The loadbalancing exporter as the Collector configures it (routing_key, protocol, static
resolver), each backend reached over OTLP/HTTP: every span of a trace reaches one backend
even when the trace's spans arrive in different requests; routing_key service keeps a
service together; a reload that removes a backend moves only the traces that were on it."""
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from conftest import SPANHOSTD, wait_for


class Backend:
    """An OTLP/HTTP JSON receiver on loopback that remembers the spans it got."""

    def __init__(self):
        self.spans = []
        lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    for rs in body.get("resourceSpans", []):
                        service = next((a["value"]["stringValue"] for a in rs.get("resource", {}).get("attributes", [])
                                        if a["key"] == "service.name"), "")
                        for ss in rs.get("scopeSpans", []):
                            backend.spans += [(service, sp["traceId"], sp["name"]) for sp in ss.get("spans", [])]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def traces(self):
        return {t for _, t, _ in self.spans}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  loadbalancing:
    routing_key: %s
    protocol:
      otlp_http:
        encoding: json
        compression: none
        timeout: 5s
    resolver:
      static:
        hostnames: [%s]
admin:
  endpoint: {admin}
plugins:
  dir: {plugins}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing]
"""


def request(traces, part, service="svc"):
    """One OTLP JSON request with span `part` of each trace."""
    spans = [{"traceId": f"{t:032x}", "spanId": f"{t * 16 + part + 1:016x}", "name": f"s{part}",
              "startTimeUnixNano": "1", "endTimeUnixNano": "2"} for t in traces]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"spans": spans}]}]}


def test_every_span_of_a_trace_reaches_one_backend_and_a_reload_moves_only_the_removed_ones(spanhost, tmp):
    backends = [Backend() for _ in range(3)]
    try:
        hosts = ", ".join(f"127.0.0.1:{b.port}" for b in backends)
        s = spanhost(CONFIG % ("traceID", hosts))
        traces = range(1, 301)
        for part in range(3):  # each trace's spans in three requests
            assert requests.post(s.url, json=request(traces, part), timeout=10).status_code == 200
        assert wait_for(lambda: sum(len(b.spans) for b in backends) == 900, timeout=20)
        owner = {}
        for i, b in enumerate(backends):
            for t in b.traces():
                assert t not in owner, f"trace {t} reached backends {owner[t]} and {i}"
                owner[t] = i
        assert len(owner) == 300 and all(40 <= len(b.traces()) <= 160 for b in backends), [len(b.traces()) for b in backends]
        for b in backends:
            counts = {}
            for _, t, _ in b.spans:
                counts[t] = counts.get(t, 0) + 1
            assert set(counts.values()) == {3}

        # Without the third backend, traces it had move; the others stay where they were.
        with open(s.config_path, "w") as f:
            f.write((CONFIG % ("traceID", ", ".join(f"127.0.0.1:{b.port}" for b in backends[:2])))
                    .format(receiver=f"127.0.0.1:{s.receiver_port}", admin=f"127.0.0.1:{s.admin_port}",
                            plugins=os.path.join(os.path.dirname(SPANHOSTD), "..", "plugins")))
        assert requests.post(s.admin + "/-/reload", json={}, timeout=60).json()["ok"]
        for b in backends:
            b.spans.clear()
        assert requests.post(s.url, json=request(traces, 3), timeout=10).status_code == 200
        assert wait_for(lambda: sum(len(b.spans) for b in backends) == 300, timeout=20)
        assert not backends[2].spans
        for i in (0, 1):
            for t in backends[i].traces():
                assert owner[t] in (i, 2), f"trace {t} moved from backend {owner[t]} to {i}"
    finally:
        for b in backends:
            b.close()


def test_routing_key_service_keeps_a_service_on_one_backend(spanhost):
    backends = [Backend() for _ in range(2)]
    try:
        s = spanhost(CONFIG % ("service", ", ".join(f"127.0.0.1:{b.port}" for b in backends)))
        for n in range(20):
            assert requests.post(s.url, json=request(range(n * 10 + 1, n * 10 + 6), 0, service=f"svc-{n % 5}"), timeout=10).status_code == 200
        assert wait_for(lambda: sum(len(b.spans) for b in backends) == 100, timeout=20)
        for n in range(5):
            holders = [i for i, b in enumerate(backends) if any(svc == f"svc-{n}" for svc, _, _ in b.spans)]
            assert len(holders) == 1, (n, holders)
    finally:
        for b in backends:
            b.close()


def test_the_collectors_grpc_protocol_and_dns_resolver_are_refused_by_name(tmp):
    # The loadbalancing exporter README's example: protocol otlp (gRPC), a static resolver.
    text = """
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}
exporters:
  loadbalancing:
    protocol:
      otlp:
        timeout: 1s
    resolver:
      static:
        hostnames:
        - backend-1:4317
        - backend-2:4317
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [loadbalancing]}
"""
    path = os.path.join(tmp, "c.yaml")
    for body, message in [(text, "exporters.loadbalancing.protocol.otlp: OTLP over gRPC is not supported by spanhost; use protocol.otlp_http"),
                          (text.replace("otlp:\n        timeout", "otlp_http:\n        timeout").replace("static:\n        hostnames:\n        - backend-1:4317\n        - backend-2:4317",
                                                                                                  "dns: {hostname: backends, port: 4318}"),
                           "exporters.loadbalancing.resolver.dns: Collector key `dns` is not supported by spanhost")]:
        with open(path, "w") as f:
            f.write(body)
        out = subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and message in out.stderr, out.stderr
