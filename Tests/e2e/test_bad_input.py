"""Every kind of bad request gets its clear answer, and the server keeps serving."""
import gzip
import json
import os
import socket

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                       ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from conftest import read_file_export, wait_for

LIMIT = 64 * 1024

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
        max_request_body_size: %d
processors:
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
      processors: [example_processor]
      exporters: [file]
""" % LIMIT

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def request(names):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bad-input-test"
    ss = rs.scope_spans.add()
    for i, name in enumerate(names):
        sp = ss.spans.add()
        sp.trace_id = bytes(range(1, 17))
        sp.span_id = (i + 1).to_bytes(8, "big")
        sp.name = name
        sp.kind = Span.SPAN_KIND_SERVER
        sp.start_time_unix_nano, sp.end_time_unix_nano = 1_000, 2_000
    return req


def assert_still_serving(s, tmp, expect_total):
    assert requests.get(s.admin + "/healthz", timeout=5).status_code == 200
    r = requests.post(s.url, data=request(["still-alive"]).SerializeToString(), headers=PROTO, timeout=5)
    assert r.status_code == 200
    out = os.path.join(tmp, "spans.jsonl")
    assert wait_for(lambda: len(read_file_export(out)) == expect_total)


def test_bad_requests_get_clear_answers_and_the_server_survives(spanhost, tmp):
    s = spanhost(CONFIG)
    session = requests.Session()  # one keep-alive connection for the well-formed ones

    r = session.post(s.url, data=b"\x0a\xff\xff\xff\xff\x0f", headers=PROTO, timeout=5)
    assert r.status_code == 400 and b"invalid protobuf" in r.content

    r = session.post(s.url, data=b'{"resourceSpans": [ {"scopeSpans": [}', headers=JSON, timeout=5)
    assert r.status_code == 400 and "invalid OTLP JSON" in r.json()["message"]

    r = session.post(s.url, data=json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "xyz", "spanId": "0102030405060708", "name": "n"}]}]}]}), headers=JSON, timeout=5)
    assert r.status_code == 400 and "traceId" in r.json()["message"]

    r = session.post(s.url, data=b"hello", headers={"Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 415

    r = session.get(s.url, timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"

    r = session.post(s.url.replace("/v1/traces", "/v1/metrics"), data=b"", headers=PROTO, timeout=5)
    assert r.status_code == 404

    r = session.post(s.url, data=b"\x1f\x8b\x08\x00garbage", headers={**PROTO, "Content-Encoding": "gzip"}, timeout=5)
    assert r.status_code == 400 and b"gzip" in r.content

    r = session.post(s.url, data=b"x", headers={**PROTO, "Content-Encoding": "br"}, timeout=5)
    assert r.status_code == 415

    # Oversized before decompression: refused from Content-Length without reading the body.
    r = requests.post(s.url, data=b"\0" * (LIMIT + 1), headers=PROTO, timeout=5)
    assert r.status_code == 413

    # A gzip bomb: 64 MiB of zeros in about 64 KiB; inflating stops at the limit.
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    assert len(bomb) < LIMIT
    r = requests.post(s.url, data=bomb, headers={**PROTO, "Content-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 413 and b"after decompression" in r.content

    # A body sent without Content-Length (chunked) past the limit.
    def chunks():
        for _ in range(LIMIT // 1024 + 2):
            yield b"\0" * 1024
    r = requests.post(s.url, data=chunks(), headers=PROTO, timeout=10)
    assert r.status_code == 413

    # Empty request: success with an empty response.
    r = session.post(s.url, data=b"", headers=PROTO, timeout=5)
    assert r.status_code == 200 and r.content == b""

    # A truncated request line, then the client goes away.
    with socket.create_connection(("127.0.0.1", s.receiver_port), timeout=5) as c:
        c.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")

    # Good gzip protobuf and good JSON still work; a dropped span is reported as partial success.
    r = session.post(s.url, data=gzip.compress(request(["a", "drop-me", "b"]).SerializeToString()),
                     headers={**PROTO, "Content-Encoding": "gzip"}, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(r.content)
    assert response.partial_success.rejected_spans == 1
    assert "dropped" in response.partial_success.error_message

    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "0102030405060708090A0B0C0D0E0F10", "spanId": "0102030405060708", "name": "json-span",
         "kind": 2, "startTimeUnixNano": 5, "endTimeUnixNano": "6", "unknownField": {"nested": [1, 2]}}]}]}]}
    r = session.post(s.url, data=json.dumps(body), headers=JSON, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json" and r.json() == {}

    assert_still_serving(s, tmp, expect_total=4)
    counters = s.status()["receivers"][0]["counters"]
    assert counters["rejected_requests"] >= 6
    assert counters["accepted_spans"] == 4


def test_sigterm_exits_cleanly_after_delivering_what_was_accepted(spanhost, tmp):
    s = spanhost(CONFIG)
    for i in range(20):
        assert requests.post(s.url, data=request([f"s{i}"]).SerializeToString(), headers=PROTO, timeout=5).status_code == 200
    assert s.stop() == 0
    assert len(read_file_export(os.path.join(tmp, "spans.jsonl"))) == 20
    assert "no accepted span was lost" in s.log() and "accepted 20, delivered 20, kept on disk 0, lost 0" in s.log()


def test_otlp_json_takes_enum_names_and_exponent_numbers_in_every_field(spanhost, tmp):
    """The Collector's OTLP/JSON reader takes an enum by number or by name ("SPAN_KIND_SERVER"),
    and a whole number written with a fraction or an exponent wherever a number goes."""
    s = spanhost(CONFIG)
    span = {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "named-enums",
            "kind": "SPAN_KIND_CLIENT", "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
            "startTimeUnixNano": 1.7e18, "endTimeUnixNano": "1700000000000001000", "droppedAttributesCount": 1e1,
            "flags": 2.0e0, "attributes": [{"key": "n", "value": {"intValue": 1.5e2}}],
            "events": [{"name": "e", "timeUnixNano": 1.7e18, "droppedAttributesCount": 3.0}]}
    numbered = dict(span, spanId="0102030405060709", name="numbered-enums", kind=4, status={"code": 1})
    body = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span, numbered]}]}]}
    r = requests.post(s.url, data=json.dumps(body), headers=JSON, timeout=5)
    assert r.status_code == 200, r.text
    out = os.path.join(tmp, "spans.jsonl")
    got = wait_for(lambda: len(read_file_export(out)) == 2 and read_file_export(out))
    by_name = {sp["span"]["name"]: sp["span"] for sp in got}
    named = by_name["named-enums"]
    assert named["kind"] == 3 and named["status"] == {"code": 2, "message": "boom"}
    assert int(named["startTimeUnixNano"]) == 1_700_000_000_000_000_000 and int(named["endTimeUnixNano"]) == 1_700_000_000_000_001_000
    assert named["droppedAttributesCount"] == 10 and named["flags"] == 2
    assert named["events"][0]["droppedAttributesCount"] == 3 and int(named["events"][0]["timeUnixNano"]) == 1_700_000_000_000_000_000
    assert {a["key"]: a["value"] for a in named["attributes"]}["n"] == {"intValue": "150"}
    assert by_name["numbered-enums"]["kind"] == 4 and by_name["numbered-enums"]["status"]["code"] == 1
    # An enum name that is not one, or a fraction where a whole number goes, is still a 400.
    for bad in [dict(span, kind="SPAN_KIND_SERVERLESS"), dict(span, droppedAttributesCount=1.5), dict(span, startTimeUnixNano=-1e3)]:
        r = requests.post(s.url, data=json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [bad]}]}]}), headers=JSON, timeout=5)
        assert r.status_code == 400, (bad, r.status_code, r.text)
    assert_still_serving(s, tmp, 3)
