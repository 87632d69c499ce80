"""Telemetry derived from spans by the servicegraph and spanmetrics connectors, configured as in
the Collector (listed under a pipeline's exporters): calls between services paired across
requests, failed calls, latency histograms, span metrics with bounded series, and trace
completeness per service, at /metrics and /status."""
import time

import requests

from conftest import wait_for

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
connectors:
  servicegraph:
    store: {{ttl: 1s, max_items: 100}}
    completeness_window: 2s
  spanmetrics:
    dimensions_cache_size: 6
exporters:
  null: {{}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [null, servicegraph, spanmetrics]
"""

BASE = 1_700_000_000_000_000_000


def span(trace, span_id, name, kind, ms, parent=0, error=False):
    s = {"traceId": f"{trace:032x}", "spanId": f"{span_id:016x}", "name": name, "kind": kind,
         "startTimeUnixNano": str(BASE), "endTimeUnixNano": str(BASE + ms * 1_000_000)}
    if parent:
        s["parentSpanId"] = f"{parent:016x}"
    if error:
        s["status"] = {"code": 2}
    return s


def send(s, service, spans):
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"spans": spans}]}]}
    assert requests.post(s.url, json=body, timeout=5).status_code == 200


def test_service_graph_span_metrics_and_completeness(spanhost):
    s = spanhost(CONFIG)
    # Two calls frontend -> backend, each half in its own request, the server half first once.
    send(s, "frontend", [span(1, 1, "GET /", 2, 60), span(1, 2, "GET /items", 3, 50, parent=1)])
    send(s, "backend", [span(1, 3, "GET /items", 2, 40, parent=2, error=True)])
    send(s, "backend", [span(2, 13, "GET /items", 2, 30, parent=12)])
    send(s, "frontend", [span(2, 11, "GET /", 2, 45), span(2, 12, "GET /items", 3, 35, parent=11)])
    # A server span whose caller never reports, and a service whose traces lack their root.
    send(s, "backend", [span(3, 21, "GET /items", 2, 5, parent=99)])
    send(s, "worker", [span(4, 31, "job", 1, 5, parent=77)])
    # More series than spanmetrics keeps, from a service whose name needs escaping.
    send(s, 'ev"il\nsvc', [span(5, 41, f"op{i}", 1, 1) for i in range(3)])

    metrics = lambda: requests.get(s.admin + "/metrics", timeout=5).text
    edge = '{client="frontend",server="backend"}'
    assert wait_for(lambda: f"traces_service_graph_request_total{edge} 2" in metrics(), timeout=10), metrics()
    text = metrics()
    assert f"traces_service_graph_request_failed_total{edge} 1" in text
    # 40 ms and 30 ms server spans: both under the 50 ms bucket, none under 10 ms.
    assert 'traces_service_graph_request_server_seconds_bucket{client="frontend",server="backend",le="0.05"} 2' in text
    assert 'traces_service_graph_request_server_seconds_bucket{client="frontend",server="backend",le="0.01"} 0' in text
    assert 'traces_service_graph_request_client_seconds_sum{client="frontend",server="backend"} 0.085' in text
    assert ('traces_span_metrics_calls_total{service_name="backend",span_name="GET /items",span_kind="SPAN_KIND_SERVER",'
            'status_code="STATUS_CODE_ERROR"} 1') in text
    assert 'traces_span_metrics_calls_total{otel_metric_overflow="true"}' in text
    assert 'service_name="ev\\"il\\nsvc"' in text, "label values from spans are escaped"

    # The orphan server half expires; the completeness window closes.
    time.sleep(2.5)
    send(s, "frontend", [span(6, 51, "GET /", 2, 1)])
    status = s.status()["connectors"]
    graph = next(c for c in status if c["id"] == "servicegraph")
    assert graph["edges"][0]["calls"] == 2 and graph["edges"][0]["errorRate"] == 0.5
    assert graph["counters"]["expired_halves"] >= 1
    completeness = {c["service"]: c for c in graph["completeness"]}
    assert completeness["frontend"]["ratio"] == 1.0 and completeness["worker"]["ratio"] == 0.0, completeness
    assert 'spanhost_trace_completeness_ratio{connector="servicegraph",service="worker"} 0' in metrics()
    metrics_status = next(c for c in status if c["id"] == "spanmetrics")
    assert metrics_status["series"] == 6 and metrics_status["counters"]["overflow_spans"] >= 1
