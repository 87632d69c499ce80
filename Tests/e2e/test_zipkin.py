"""The zipkin receiver with the OpenTelemetry SDK's Zipkin JSON exporter as the client: spans
are mapped to the span model as the Collector's zipkin translator maps them (service name and
resource tags to the resource, the library to the scope, otel.status_code and error to the
status, otlp.link.N to links, annotations to events with attributes, microseconds to
nanoseconds) and bad input is answered clearly."""
import gzip
import json
import os
import subprocess
import time

import pytest
import requests
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from conftest import BUILD, free_port, read_file_export, wait_for, needs
from test_sdk_roundtrip import attrs

CONFIG = """
receivers:
  zipkin:
    endpoint: 127.0.0.1:%d
    max_request_body_size: 65536
exporters:
  file:
    path: {tmp}/zipkin.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [zipkin]
      exporters: [file]
"""


def test_sdk_zipkin_spans_are_mapped(spanhost, tmp):
    port = free_port()
    spanhost(CONFIG % port)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "legacy-billing"}))
    provider.add_span_processor(SimpleSpanProcessor(ZipkinExporter(endpoint=f"http://127.0.0.1:{port}/api/v2/spans")))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("zipkin-test")
    with tracer.start_as_current_span("POST /invoice", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.method", "POST")
        root.add_event("validated", {"rules": 3})
        with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as child:
            child.set_attribute("amount", 12.5)
            child.set_status(Status(StatusCode.ERROR, "card declined"))
    provider.shutdown()
    sent = {f"{s.get_span_context().span_id:016x}": s for s in memory.get_finished_spans()}
    got = wait_for(lambda: len(read_file_export(os.path.join(tmp, "zipkin.jsonl"))) == 2 and
                   read_file_export(os.path.join(tmp, "zipkin.jsonl")))
    assert got
    for g in got:
        span, sp = g["span"], sent[g["span"]["spanId"]]
        # The SDK sends its resource as tags: they go back to the resource (and its otel.scope.*
        # tags with them, as the Collector's translator counts them as resource tags).
        resource = {k: str(v) for k, v in sp.resource.attributes.items()}
        assert attrs(g["resource"]["attributes"]) == {**resource, "otel.scope.name": "zipkin-test", "otel.scope.version": ""}
        assert resource["telemetry.sdk.language"] == "python"
        assert g["scope"]["name"] == "zipkin-test"
        assert span["traceId"] == f"{sp.get_span_context().trace_id:032x}"
        assert span.get("parentSpanId", "") == (f"{sp.parent.span_id:016x}" if sp.parent else "")
        assert span["name"] == sp.name
        assert span["kind"] == {SpanKind.SERVER: 2, SpanKind.CLIENT: 3}[sp.kind]
        assert abs(int(span["startTimeUnixNano"]) - sp.start_time) < 1000  # Zipkin carries microseconds
        a = attrs(span.get("attributes"))
        for key, value in sp.attributes.items():
            assert a[key] == str(value)  # Zipkin tags are strings
    by_name = {g["span"]["name"]: g["span"] for g in got}
    # The SDK sends otel.status_code "ERROR" (a name the Collector does not map) and error with
    # the description: ERROR, no message, and the error tag kept.
    assert by_name["charge"]["status"] == {"code": 2}
    assert attrs(by_name["charge"]["attributes"])["error"] == "card declined"
    assert "otel.status_code" not in attrs(by_name["charge"]["attributes"])
    events = by_name["POST /invoice"].get("events", [])
    assert len(events) == 1 and "validated" in events[0]["name"]


def test_zipkin_bad_input(spanhost, tmp):
    port = free_port()
    s = spanhost(CONFIG % port)
    url = f"http://127.0.0.1:{port}/api/v2/spans"
    ok = [{"traceId": "463ac35c9f6413ad", "id": "a2fb4a1d1a96d312", "name": "get", "timestamp": 1700000000000000,
           "duration": 1500, "kind": "SERVER", "localEndpoint": {"serviceName": "frontend", "ipv4": "10.1.2.3", "port": 8080},
           "remoteEndpoint": {"serviceName": "backend", "port": 9000}, "tags": {"error": "boom", "http.path": "/x"},
           "annotations": [{"timestamp": 1700000000000500, "value": "cache miss"}]}]
    r = requests.post(url, data=gzip.compress(json.dumps(ok).encode()), headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}, timeout=5)
    assert r.status_code == 202
    for body, message in [(b'{"not": "an array"}', b"expected a JSON array"),
                          (b'[{"id": "a2fb4a1d1a96d312"}]', b"needs traceId and id"),
                          (b'[{"traceId": "xyz", "id": "a2fb4a1d1a96d312"}]', b"traceId must be 16 or 32 hex digits"),
                          (b'[{"traceId": "463ac35c9f6413ad", "id": "a2fb4a1d1a96d312", "kind": "SIDEWAYS"}]', b"kind must be"),
                          (b'[{"traceId": "463ac35c9f6413ad", "id": "a2fb4a1d1a96d312", "localEndpoint": {"port": 1e999}}]',
                           b"integer out of range"),
                          (b'[{"traceId": "463ac35c9f6413ad", "id": "a2', b"invalid Zipkin JSON")]:
        r = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
        assert r.status_code == 400 and message in r.content, (body, r.content)
    # The official Zipkin exporters send "kind": null for internal spans.
    internal = [{"traceId": "463ac35c9f6413ae", "id": "a2fb4a1d1a96d313", "name": "internal", "kind": None}]
    assert requests.post(url, json=internal, timeout=5).status_code == 202
    assert requests.post(url, data=b"x", headers={"Content-Type": "application/x-thrift"}, timeout=5).status_code == 415
    assert requests.post(url, data=b"[]" + b" " * 70000, headers={"Content-Type": "application/json"}, timeout=5).status_code == 413
    assert requests.get(url, timeout=5).status_code == 405
    got = wait_for(lambda: read_file_export(os.path.join(tmp, "zipkin.jsonl")))
    span = got[0]["span"]
    assert span["traceId"] == "0000000000000000463ac35c9f6413ad"  # 64-bit id padded
    assert int(span["startTimeUnixNano"]) == 1700000000000000000 and int(span["endTimeUnixNano"]) == 1700000000001500000
    assert span["status"] == {"code": 2}
    a = attrs(span["attributes"])
    assert a == {"error": "boom", "http.path": "/x", "peer.service": "backend", "net.peer.port": 9000, "net.host.ip": "10.1.2.3",
                 "net.host.port": 8080}
    assert span["events"] == [{"timeUnixNano": "1700000000000500000", "name": "cache miss"}]
    assert s.status()["receivers"][0]["counters"]["rejected_requests"] == 7  # the six 400s and the 415


TRACE = "0102030405060708090a0b0c0d0e0f10"


def zspan(span_id, name, **fields):
    span = {"traceId": TRACE, "id": span_id, "name": name, "timestamp": 1700000000000000, "duration": 250,
            "localEndpoint": {"serviceName": "shop"}}
    span.update(fields)
    return span


def test_zipkin_tags_map_as_the_collectors_translator_maps_them(spanhost, tmp):
    """The cases where the Collector's zipkinv2 translator gives the status, kind, resource,
    scope, trace state, links, event attributes and absent start time from tags."""
    port = free_port()
    spanhost(CONFIG % port)
    link = f"{TRACE}|0a0b0c0d0e0f1011|ts=1|{{\"a\":1,\"b\":\"x\",\"c\":1.5,\"d\":true}}|2"
    spans = [
        zspan("0000000000000001", "status-from-otel-tags", kind="SERVER", localEndpoint={"serviceName": "billing"}, tags={
            "otel.status_code": "STATUS_CODE_ERROR", "otel.status_description": "db down", "service.version": "1.2.3",
            "deployment.environment": "prod", "telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry",
            "service.instance.id": "i-1", "host.name": "h1", "otel.library.name": "shop.lib", "otel.library.version": "0.9",
            "w3c.tracestate": "k=v", "otlp.link.0": link, "http.route": "/pay"},
            annotations=[{"timestamp": 1700000000000100, "value": "retry|{\"attempt\":2,\"why\":\"busy|full\"}|1"},
                         {"timestamp": 1700000000000200, "value": "plain note"}]),
        zspan("0000000000000002", "error-true", kind="CLIENT", tags={"error": "true", "otel.status_description": "ignored"}),
        zspan("0000000000000003", "error-text", kind="CLIENT", tags={"error": "card declined"}),
        zspan("0000000000000004", "no-kind"),
        zspan("0000000000000005", "internal-by-tag", tags={"span.kind": "internal"}),
        zspan("0000000000000006", "status-ok", kind="SERVER", tags={"otel.status_code": "Ok"}),
        {"traceId": TRACE, "id": "0000000000000007", "name": "no-timestamp", "duration": 250, "localEndpoint": {"serviceName": "shop"}},
        zspan("0000000000000008", "own-parent", parentId="0000000000000008", kind="SERVER"),
    ]
    assert requests.post(f"http://127.0.0.1:{port}/api/v2/spans", json=spans, timeout=5).status_code == 202
    out = os.path.join(tmp, "zipkin.jsonl")
    got = wait_for(lambda: len(read_file_export(out)) == len(spans) and read_file_export(out))
    assert got
    by_name = {g["span"]["name"]: g for g in got}

    first = by_name["status-from-otel-tags"]
    span = first["span"]
    assert span["status"] == {"code": 2, "message": "db down"}
    assert attrs(first["resource"]["attributes"]) == {
        "service.name": "billing", "service.version": "1.2.3", "deployment.environment": "prod", "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry", "service.instance.id": "i-1", "host.name": "h1"}
    assert first["scope"] == {"name": "shop.lib", "version": "0.9"}
    assert span["traceState"] == "k=v"
    assert attrs(span["attributes"]) == {"http.route": "/pay"}
    assert len(span["links"]) == 1
    l = span["links"][0]
    assert l["traceId"] == TRACE and l["spanId"] == "0a0b0c0d0e0f1011" and l["traceState"] == "ts=1"
    assert attrs(l["attributes"]) == {"a": 1, "b": "x", "c": 1.5, "d": True} and l["droppedAttributesCount"] == 2
    retry, note = span["events"]
    assert retry["name"] == "retry" and attrs(retry["attributes"]) == {"attempt": 2, "why": "busy|full"}
    assert retry["droppedAttributesCount"] == 1 and int(retry["timeUnixNano"]) == 1700000000000100000
    assert note["name"] == "plain note" and not note.get("attributes")

    assert by_name["error-true"]["span"]["status"] == {"code": 2}
    assert attrs(by_name["error-true"]["span"]["attributes"]) == {"otel.status_description": "ignored"}
    assert by_name["error-text"]["span"]["status"] == {"code": 2}
    assert attrs(by_name["error-text"]["span"]["attributes"]) == {"error": "card declined"}
    assert by_name["no-kind"]["span"].get("kind", 0) == 0
    assert by_name["internal-by-tag"]["span"]["kind"] == 1 and not by_name["internal-by-tag"]["span"].get("attributes")
    assert by_name["status-ok"]["span"]["status"] == {"code": 1}
    absent = by_name["no-timestamp"]["span"]
    assert int(absent.get("startTimeUnixNano", 0)) == 0 and int(absent["endTimeUnixNano"]) == 250000
    assert attrs(absent["attributes"]) == {"otel.zipkin.absentField.startTime": True}
    assert by_name["own-parent"]["span"].get("parentSpanId", "") == ""
    # The other spans share the shop resource, which has no resource tags.
    assert {json.dumps(attrs(g["resource"]["attributes"])) for g in got if g["span"]["name"] != "status-from-otel-tags"} == \
        {json.dumps({"service.name": "shop"})}


def test_the_resource_comes_from_the_services_span_with_the_lowest_library_name(spanhost, tmp):
    """The Collector sorts a request's spans by service and library and takes the resource from
    the first: here the span without a library, so the other span's resource tags are left out."""
    port = free_port()
    spanhost(CONFIG % port)
    spans = [zspan("0000000000000001", "with-library", tags={"otel.library.name": "lib", "host.name": "h1", "x": "1"}),
             zspan("0000000000000002", "without-library", tags={"host.name": "h2"})]
    assert requests.post(f"http://127.0.0.1:{port}/api/v2/spans", json=spans, timeout=5).status_code == 202
    out = os.path.join(tmp, "zipkin.jsonl")
    got = wait_for(lambda: len(read_file_export(out)) == 2 and read_file_export(out))
    assert got
    for g in got:
        assert attrs(g["resource"]["attributes"]) == {"service.name": "shop", "host.name": "h2"}
    by_name = {g["span"]["name"]: g for g in got}
    assert by_name["with-library"]["scope"]["name"] == "lib" and attrs(by_name["with-library"]["span"]["attributes"]) == {"x": "1"}
    assert by_name["without-library"]["scope"].get("name", "") == ""


CLIENTS_PYTHON = os.path.join(BUILD, "clients-venv", "bin", "python")
ZIPKIN_CLIENTS = os.path.join(os.path.dirname(__file__), "clients", "zipkin_clients.py")
needs_clients = needs(CLIENTS_PYTHON, "`make test-e2e`")


def zipkin_client(*args):
    out = subprocess.run([CLIENTS_PYTHON, ZIPKIN_CLIENTS, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_clients
@pytest.mark.parametrize("encoding", ["V2_PROTO3", "V2_JSON"])
def test_py_zipkin_v2_protobuf_and_json_map_the_same(spanhost, tmp, encoding):
    port = free_port()
    spanhost(CONFIG % port)
    sent = zipkin_client("py-zipkin", encoding, port)
    path = os.path.join(tmp, "zipkin.jsonl")
    got = wait_for(lambda: len(read_file_export(path)) == 2 and read_file_export(path))
    assert got, read_file_export(path)
    by_name = {g["span"]["name"]: g for g in got}
    for s in sent:
        span = by_name[s["name"]]["span"]
        # 64-bit trace ids are padded with zeros to 128 bits.
        assert span["traceId"] == s["trace_id"].rjust(32, "0") and span["spanId"] == s["span_id"]
        assert span.get("parentSpanId", "") == s["parent_span_id"]
        assert attrs(by_name[s["name"]]["resource"]["attributes"]) == {"service.name": "ledger"}
    root, write = by_name["post-entry"]["span"], by_name["write"]["span"]
    assert root["kind"] == 2 and write["kind"] == 3
    # Tags stay strings; the local endpoint is net.host.ip, the remote one peer.service,
    # net.peer.ip and net.peer.port (zipkinv2 to_translator.go).
    assert attrs(root["attributes"]) == {"account": "acme", "http.status_code": "200", "net.host.ip": "127.0.0.1"}
    assert attrs(write["attributes"]) == {"db.system": "postgresql", "net.host.ip": "127.0.0.1", "peer.service": "postgres",
                                          "net.peer.ip": "10.1.2.3", "net.peer.port": 5432}
    assert [e["name"] for e in root["events"]] == ["lock-acquired"]


@needs_clients
def test_the_otel_zipkin_protobuf_exporter(spanhost, tmp):
    port = free_port()
    spanhost(CONFIG % port)
    sent = zipkin_client("otel-proto", f"http://127.0.0.1:{port}/api/v2/spans")
    path = os.path.join(tmp, "zipkin.jsonl")
    got = wait_for(lambda: len(read_file_export(path)) == 2 and read_file_export(path))
    assert got
    by_id = {g["span"]["spanId"]: g for g in got}
    for s in sent:
        g = by_id[s["span_id"]]
        span = g["span"]
        assert span["traceId"] == s["trace_id"] and span.get("parentSpanId", "") == s["parent_span_id"]
        assert span["kind"] == {"SERVER": 2, "CLIENT": 3}[s["kind"]]
        assert abs(int(span["startTimeUnixNano"]) - s["start"]) < 1000
        # The resource tags go back to the resource, the library to the scope.
        resource = attrs(g["resource"]["attributes"])
        assert resource["service.name"] == "legacy-billing" and resource["deployment.environment"] == "prod"
        assert (g["scope"]["name"], g["scope"].get("version")) == ("billing.lib", "1.2")
        a = attrs(span.get("attributes"))
        for key, value in s["attributes"].items():
            assert a[key] == str(value)
    by_name = {g["span"]["name"]: g["span"] for g in got}
    assert by_name["charge"]["status"] == {"code": 2}
    # This exporter writes events as a JSON annotation, not name|attributes|dropped: the
    # Collector keeps the whole value as the event's name.
    assert [e["name"] for e in by_name["POST /invoice"]["events"]] == ['{"validated": {"rules": 3}}']


def test_bad_zipkin_protobuf_is_answered_400(spanhost, tmp):
    port = free_port()
    spanhost(CONFIG % port)
    url = f"http://127.0.0.1:{port}/api/v2/spans"
    # A span whose trace_id is 3 bytes.
    r = requests.post(url, data=b"\x0a\x05\x0a\x03abc", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and "trace_id must be 8 or 16 bytes" in r.text, r.text
    r = requests.post(url, data=b"\x0a\x05\x0a\x03", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and "invalid Zipkin protobuf" in r.text, r.text


@needs_clients
def test_py_zipkin_v1_json(spanhost, tmp):
    port = free_port()
    spanhost(CONFIG % port)
    sent = zipkin_client("py-zipkin", "V1_JSON", port)
    path = os.path.join(tmp, "zipkin.jsonl")
    got = wait_for(lambda: len(read_file_export(path)) == 2 and read_file_export(path))
    assert got, read_file_export(path)
    by_name = {g["span"]["name"]: g for g in got}
    for s in sent:
        g = by_name[s["name"]]
        assert g["span"]["traceId"] == s["trace_id"].rjust(32, "0") and g["span"]["spanId"] == s["span_id"]
        assert g["span"].get("parentSpanId", "") == s["parent_span_id"]
        # zipkinv1/json.go: the endpoint of the first cs/cr/ss/sr annotation is the resource.
        assert attrs(g["resource"]["attributes"]) == {"service.name": "ledger", "ipv4": "127.0.0.1"}
    root, write = by_name["post-entry"]["span"], by_name["write"]["span"]
    assert (root["kind"], write["kind"]) == (2, 3)
    # timestamp and duration bound the span; the other annotations are events.
    assert int(root["endTimeUnixNano"]) - int(root["startTimeUnixNano"]) > 0
    assert [e["name"] for e in root["events"]] == ["lock-acquired"]
    # http.status_code 200 stays an attribute and leaves the status unset.
    assert attrs(root["attributes"]) == {"account": "acme", "http.status_code": "200"}
    assert root.get("status", {}) == {}
    # The server address annotation ("sa": true) is the remote endpoint.
    assert attrs(write["attributes"]) == {"db.system": "postgresql", "peer.service": "postgres", "net.peer.ip": "10.1.2.3",
                                          "net.peer.port": 5432}


V1_ID = {"traceId": "0ed2e63cbe71f5a8", "id": "0ed2e63cbe71f5a8"}


@pytest.mark.parametrize("span, resource, kind, status, attributes", [
    # No annotation names the endpoint: the local component (lc) is the service.
    ({"binaryAnnotations": [{"key": "lc", "value": "cache"}], "timestamp": 10, "duration": 5},
     {"service.name": "cache"}, 0, {}, {"component": "cache"}),
    # census.status_code wins over error.
    ({"binaryAnnotations": [{"key": "census.status_code", "value": "0"}, {"key": "error", "value": "oops"}], "timestamp": 10},
     {"service.name": "unknown-service"}, 0, {"code": 1}, {}),
    # otel.status_code is an integer code here, with its description.
    ({"binaryAnnotations": [{"key": "otel.status_code", "value": "2"}, {"key": "otel.status_description", "value": "bad"}],
      "timestamp": 10}, {"service.name": "unknown-service"}, 0, {"code": 2, "message": "bad"}, {}),
    # error with otel.status_description as its message.
    ({"binaryAnnotations": [{"key": "error", "value": "x"}, {"key": "otel.status_description", "value": "timeout"}], "timestamp": 10},
     {"service.name": "unknown-service"}, 0, {"code": 2, "message": "timeout"}, {}),
    # http.status_code 500: ERROR with http.status_message; both stay attributes.
    ({"binaryAnnotations": [{"key": "http.status_code", "value": "500"}, {"key": "http.status_message", "value": "down"}],
      "annotations": [{"timestamp": 20, "value": "sr", "endpoint": {"serviceName": "api", "port": 8080}},
                      {"timestamp": 30, "value": "ss", "endpoint": {"serviceName": "api", "port": 8080}}]},
     {"service.name": "api", "port": "8080"}, 2, {"code": 2, "message": "down"}, {"http.status_code": "500", "http.status_message": "down"}),
])
def test_zipkin_v1_json_maps_as_the_collectors_v1_translator(spanhost, tmp, span, resource, kind, status, attributes):
    port = free_port()
    spanhost(CONFIG % port)
    r = requests.post(f"http://127.0.0.1:{port}/api/v1/spans", json=[{**V1_ID, **span}], timeout=5)
    assert r.status_code == 202, r.text
    path = os.path.join(tmp, "zipkin.jsonl")
    [g] = wait_for(lambda: read_file_export(path))
    assert attrs(g["resource"]["attributes"]) == resource
    assert g["span"].get("kind", 0) == kind
    assert g["span"].get("status", {}) == status
    assert attrs(g["span"].get("attributes")) == attributes
    if "annotations" in span:
        assert (g["span"]["startTimeUnixNano"], g["span"]["endTimeUnixNano"]) == ("20000", "30000")


def test_zipkin_v1_json_without_any_time_and_bad_ids(spanhost, tmp):
    port = free_port()
    spanhost(CONFIG % port)
    url = f"http://127.0.0.1:{port}/api/v1/spans"
    assert requests.post(url, json=[V1_ID], timeout=5).status_code == 202
    path = os.path.join(tmp, "zipkin.jsonl")
    [g] = wait_for(lambda: read_file_export(path))
    # setTimestampsIfUnset: the time it arrived, marked.
    assert attrs(g["span"]["attributes"]) == {"otel.zipkin.absentField.startTime": True}
    assert abs(int(g["span"]["startTimeUnixNano"]) / 1e9 - time.time()) < 60
    for body, message in [([{"traceId": "0000000000000000", "id": "0ed2e63cbe71f5a8"}], b"traceId is zero"),
                          ([{"traceId": "0ed2e63cbe71f5a8", "id": "123"}], b"id must be 16 hex digits"),
                          ({"traceId": "x"}, b"expected a JSON array of Zipkin v1 spans")]:
        r = requests.post(url, json=body, timeout=5)
        assert r.status_code == 400 and message in r.content, r.content
