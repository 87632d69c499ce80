"""The zipkin exporter: OTLP spans out as Zipkin v2 JSON, mapped as the Collector's zipkin
exporter maps them (contrib pkg/translator/zipkin/zipkinv2/from_translator.go), checked on the
bytes a plain HTTP server receives and end to end into the zipkin receiver of a second
spanhostd."""
import http.server
import json
import os
import threading

import requests

from conftest import free_port, read_file_export, wait_for
from test_data_path import cfg, fill
from test_sdk_roundtrip import attrs

FRONT = """
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  zipkin:
    endpoint: "{url}"
    {extra}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [zipkin]}
"""

BACKEND = """
receivers:
  zipkin: {endpoint: "127.0.0.1:%d"}
exporters:
  file: {path: "{tmp}/back.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [zipkin], exporters: [file]}
"""


def kv(key, **value):
    return {"key": key, "value": value}


REQUEST = {"resourceSpans": [{
    "resource": {"attributes": [kv("service.name", stringValue="checkout"), kv("deployment.environment", stringValue="prod"),
                                kv("host.cores", intValue="8")]},
    "scopeSpans": [{"scope": {"name": "shop.lib", "version": "1.4"}, "spans": [
        {"traceId": "0000000000000000463ac35c9f6413ad", "spanId": "a2fb4a1d1a96d312", "parentSpanId": "0020000000000001",
         "name": "GET /cart", "kind": 3, "startTimeUnixNano": "1700000000000001500", "endTimeUnixNano": "1700000000250002000",
         "traceState": "vendor=1",
         "attributes": [kv("http.method", stringValue="GET"), kv("ratio", doubleValue=0.25), kv("retries", intValue="2"),
                        kv("ok", boolValue=True), kv("tags", arrayValue={"values": [{"stringValue": "a"}, {"intValue": "1"}]}),
                        kv("net.peer.ip", stringValue="10.0.0.7"), kv("net.peer.port", intValue="5432"),
                        kv("peer.service", stringValue="postgres"), kv("error", stringValue="false")],
         "events": [{"timeUnixNano": "1700000000100000000", "name": "retry", "attributes": [kv("attempt", intValue="3"), kv("b", boolValue=True)]},
                    {"timeUnixNano": "1700000000200000000", "name": "done"}],
         "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "traceState": "k=v",
                    "attributes": [kv("why", stringValue="batch")]}],
         "status": {"code": 2, "message": "pool exhausted"}},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "render", "kind": 1,
         "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000000400", "status": {"code": 1}},
    ]}]},
    {"resource": {"attributes": [kv("faas.name", stringValue="resize")]},
     "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175", "name": "fn",
                                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000"}]}]},
    {"resource": {}, "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b176",
                                                "name": "orphan", "startTimeUnixNano": "1700000000000000000",
                                                "endTimeUnixNano": "1700000001000000000"}]}]},
]}


class Capture(http.server.BaseHTTPRequestHandler):
    bodies = []

    def do_POST(self):
        Capture.bodies.append((self.headers.get("Content-Type"), self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_zipkin_json_written_is_the_collectors_mapping(spanhost, tmp):
    Capture.bodies = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        front = spanhost(cfg(fill(FRONT, url=f"http://127.0.0.1:{server.server_port}/api/v2/spans",
                                  extra="default_service_name: unnamed")))
        assert requests.post(front.url, json=REQUEST, timeout=10).status_code == 200
        assert wait_for(lambda: Capture.bodies)
    finally:
        server.shutdown()
    content_type, body = Capture.bodies[0]
    assert content_type == "application/json"
    spans = {s["id"]: s for s in json.loads(body)}
    cart = spans["a2fb4a1d1a96d312"]
    # A 64-bit trace id (high half zero) is written with 16 hex digits, as zipkin-go writes it.
    assert cart["traceId"] == "463ac35c9f6413ad" and cart["parentId"] == "0020000000000001"
    assert (cart["name"], cart["kind"]) == ("GET /cart", "CLIENT")
    # Microseconds, rounded.
    assert (cart["timestamp"], cart["duration"]) == (1700000000000002, 250001)  # 250000.5 us rounds up
    assert cart["localEndpoint"] == {"serviceName": "checkout"}
    assert cart["remoteEndpoint"] == {"serviceName": "postgres", "ipv4": "10.0.0.7", "port": 5432}
    assert cart["annotations"] == [{"timestamp": 1700000000100000, "value": 'retry|{"attempt":3,"b":true}|0'},
                                   {"timestamp": 1700000000200000, "value": "done"}]
    assert cart["tags"] == {
        # the resource (but service.name) and the scope
        "deployment.environment": "prod", "host.cores": "8", "otel.library.name": "shop.lib", "otel.library.version": "1.4",
        # attributes as strings (pcommon AsString); arrays as JSON
        "http.method": "GET", "ratio": "0.25", "retries": "2", "ok": "true", "tags": '["a",1]',
        # ERROR: error=true replaces the attribute, with the status tags
        "error": "true", "otel.status_code": "Error", "otel.status_description": "pool exhausted",
        "w3c.tracestate": "vendor=1",
        "otlp.link.0": '0af7651916cd43dd8448eb211c80319c|b7ad6b7169203331|k=v|{"why":"batch"}|0'}
    render = spans["eee19b7ec3c1b174"]
    assert "kind" not in render and render["duration"] == 1  # under a microsecond: 1
    assert render["traceId"] == "5b8efff798038103d269b633813fc60c"
    assert render["tags"]["span.kind"] == "internal" and render["tags"]["otel.status_code"] == "Ok" and "error" not in render["tags"]
    fn = spans["eee19b7ec3c1b175"]
    assert fn["localEndpoint"] == {"serviceName": "resize"} and fn["tags"] == {"otlp.service.name.source": "faas.name"}
    # No service name at all: default_service_name.
    assert spans["eee19b7ec3c1b176"]["localEndpoint"] == {"serviceName": "unnamed"}


def test_the_zipkin_exporter_into_the_zipkin_receiver(spanhost, tmp):
    port = free_port()
    spanhost(cfg(BACKEND % port))
    front = spanhost(cfg(fill(FRONT, url=f"http://127.0.0.1:{port}/api/v2/spans", extra="compression: gzip")))
    assert requests.post(front.url, json=REQUEST, timeout=10).status_code == 200
    path = os.path.join(tmp, "back.jsonl")
    got = wait_for(lambda: len(read_file_export(path)) == 4 and read_file_export(path))
    assert got, read_file_export(path)
    by_name = {g["span"]["name"]: g for g in got}
    cart = by_name["GET /cart"]
    # The receiver's mapping takes the exporter's back: resource, scope, status, links, events.
    assert attrs(cart["resource"]["attributes"]) == {"service.name": "checkout", "deployment.environment": "prod", "host.cores": "8"}
    assert (cart["scope"]["name"], cart["scope"]["version"]) == ("shop.lib", "1.4")
    span = cart["span"]
    assert span["traceId"] == "0000000000000000463ac35c9f6413ad" and span["traceState"] == "vendor=1"
    assert span["status"] == {"code": 2, "message": "pool exhausted"}
    assert span["kind"] == 3
    assert [(e["name"], attrs(e.get("attributes"))) for e in span["events"]] == [("retry", {"attempt": 3, "b": True}), ("done", {})]
    assert [(l["traceId"], l["spanId"], l.get("traceState"), attrs(l["attributes"])) for l in span["links"]] == \
        [("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "k=v", {"why": "batch"})]
    assert attrs(span["attributes"]) == {"http.method": "GET", "ratio": "0.25", "retries": "2", "ok": "true", "tags": '["a",1]',
                                         "peer.service": "postgres", "net.peer.ip": "10.0.0.7", "net.peer.port": 5432}
    assert by_name["render"]["span"]["kind"] == 1 and by_name["render"]["span"]["status"] == {"code": 1}
    assert attrs(by_name["orphan"]["resource"]["attributes"]) == {"service.name": "<missing service name>"}


def test_format_proto_is_refused_as_not_supported_yet(tmp):
    from test_data_path import check
    text = fill(FRONT, url="http://127.0.0.1:9411/api/v2/spans", extra="format: proto")
    text = text.replace("{receiver}", "127.0.0.1:0").replace("{admin}", "127.0.0.1:0")
    out = check(tmp, text)
    assert out.returncode != 0 and "format: proto is not supported yet" in out.stdout + out.stderr
