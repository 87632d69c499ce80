"""The jaeger receiver with real Jaeger clients: the OpenTelemetry Jaeger Thrift exporter (to the
collector endpoint over HTTP and to the agent over UDP), jaeger-client, and Thrift's own binary
protocol. Expected values follow the Collector's translator (contrib
pkg/translator/jaeger/jaegerthrift_to_traces.go): the process is the resource (hostname as
host.name, jaeger.version as opencensus.exporterversion "Jaeger-<v>"), tags keep their types,
span.kind is the kind, `error` (bool) then otel.status_code then http.status_code set the
status, logs are events named by their `event` field, references other than the parent are
links with opentracing.ref_type."""
import json
import os
import socket
import subprocess
import time

import pytest
import requests

from conftest import BUILD, free_port, read_file_export, wait_for, needs
from test_sdk_roundtrip import attrs

CLIENTS_PYTHON = os.path.join(BUILD, "clients-venv", "bin", "python")
CLIENTS = os.path.join(os.path.dirname(__file__), "clients", "jaeger_clients.py")
needs_clients = needs(CLIENTS_PYTHON, "`make test-e2e`")

CONFIG = """
receivers:
  jaeger:
    protocols:
      thrift_http:
        endpoint: 127.0.0.1:%(http)d
      thrift_compact:
        endpoint: 127.0.0.1:%(compact)d
      thrift_binary:
        endpoint: 127.0.0.1:%(binary)d
exporters:
  file:
    path: {tmp}/jaeger.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [jaeger]
      exporters: [file]
"""


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(spanhost):
    ports = {"http": free_port(), "compact": free_udp_port(), "binary": free_udp_port()}
    return spanhost(CONFIG % ports), ports


def run_client(mode, where):
    out = subprocess.run([CLIENTS_PYTHON, CLIENTS, mode, str(where)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def exported(tmp, count):
    path = os.path.join(tmp, "jaeger.jsonl")
    got = wait_for(lambda: len(read_file_export(path)) >= count and read_file_export(path))
    assert got and len(got) == count, got
    return got


def check_otel_spans(got, sent):
    """The OpenTelemetry exporter's spans as the Collector maps them."""
    by_id = {g["span"]["spanId"]: g for g in got}
    for s in sent:
        g = by_id[s["span_id"]]
        span = g["span"]
        # The exporter sends only the service name as the process; its other resource
        # attributes ride on every span as tags, and stay there.
        assert attrs(g["resource"]["attributes"]) == {"service.name": "legacy-cart"}
        assert g["scope"].get("name", "") == ""
        assert span["traceId"] == s["trace_id"]
        assert span.get("parentSpanId", "") == s["parent_span_id"]
        assert span["name"] == s["name"]
        assert span["kind"] == {"SERVER": 2, "CLIENT": 3}[s["kind"]]
        # Thrift carries microseconds, rounded by the exporter.
        assert abs(int(span["startTimeUnixNano"]) - s["start"]) <= 1000
        assert abs(int(span["endTimeUnixNano"]) - s["end"]) <= 2000
        a = attrs(span.get("attributes"))
        expected = {**s["attributes"], **s["resource"], "otel.library.name": "cart.checkout", "otel.library.version": "0.9",
                    "otel.scope.name": "cart.checkout", "otel.scope.version": "0.9"}
        assert a == expected
        # Events: the exporter names them in a "message" field, which is not the Collector's
        # "event" key: the name stays empty and message is an attribute.
        assert [(e.get("name", ""), attrs(e.get("attributes")), abs(int(e["timeUnixNano"]) - ev["time"]) <= 1000)
                for e, ev in zip(span.get("events", []), s["events"])] == \
            [("", {**ev["attributes"], "message": ev["name"]}, True) for ev in s["events"]]
        assert [(l["traceId"], l["spanId"], attrs(l["attributes"])) for l in span.get("links", [])] == \
            [(l["trace_id"], l["span_id"], {"opentracing.ref_type": "follows_from"}) for l in s["links"]]
    by_name = {g["span"]["name"]: g["span"] for g in got}
    # ERROR from the bool error tag, with otel.status_description as the message.
    assert by_name["charge"]["status"] == {"code": 2, "message": "card declined"}
    assert by_name["POST /checkout"].get("status", {}) == {}


@needs_clients
def test_the_otel_jaeger_exporter_over_http(spanhost, tmp):
    server, ports = start(spanhost)
    sent = run_client("otel-collector", f"http://127.0.0.1:{ports['http']}/api/traces")
    check_otel_spans(exported(tmp, 2), sent)
    assert server.status()["receivers"][0]["counters"]["accepted_spans"] == 2


@needs_clients
def test_the_otel_jaeger_exporter_to_the_agent_over_udp(spanhost, tmp):
    server, ports = start(spanhost)
    sent = run_client("otel-agent", ports["compact"])
    check_otel_spans(exported(tmp, 2), sent)


@needs_clients
def test_jaeger_client_to_the_agent_over_udp(spanhost, tmp):
    server, ports = start(spanhost)
    sent = run_client("jaeger-client", ports["compact"])
    got = exported(tmp, 2)
    by_name = {g["span"]["name"]: g for g in got}
    resource = attrs(got[0]["resource"]["attributes"])
    # jaeger-client's process tags: hostname and jaeger.version are renamed, ip stays.
    assert resource["service.name"] == "legacy-cart"
    assert resource["host.name"] == socket.gethostname()
    assert resource["opencensus.exporterversion"].startswith("Jaeger-Python-")
    assert "hostname" not in resource and "jaeger.version" not in resource and "ip" in resource
    for s in sent:
        span = by_name[s["name"]]["span"]
        assert span["traceId"] == s["trace_id"] and span["spanId"] == s["span_id"]
        assert span.get("parentSpanId", "") == s["parent_span_id"]
        assert abs(int(span["startTimeUnixNano"]) - s["start"] * 1000) <= 1000
    checkout, charge = by_name["checkout"]["span"], by_name["charge"]["span"]
    assert checkout["kind"] == 2
    # No error tag and no otel.status_code: http.status_code 503 makes it an error, kept.
    assert checkout["status"] == {"code": 2}
    a = attrs(checkout["attributes"])
    assert a["http.status_code"] == 503 and a["sampler.type"] == "const"
    assert [(e["name"], attrs(e["attributes"])) for e in checkout["events"]] == [("payment-started", {"amount": 12})]
    # The bool error tag: ERROR, and the tag removed; no span.kind tag: UNSPECIFIED.
    assert charge["status"] == {"code": 2}
    assert charge.get("kind", 0) == 0
    assert attrs(charge["attributes"]) == {"peer.service": "bank"}


@needs_clients
def test_thrift_binary_protocol_to_the_agent_over_udp(spanhost, tmp):
    server, ports = start(spanhost)
    run_client("binary-agent", ports["binary"])
    [g] = exported(tmp, 1)
    span = g["span"]
    assert attrs(g["resource"]["attributes"]) == {"service.name": "stock", "host.name": "cart-7",
                                                  "opencensus.exporterversion": "Jaeger-Go-2.30.0"}
    assert span["traceId"] == "01020304050607081112131415161718"
    assert span["spanId"] == "2122232425262728"
    # No parentSpanId: the FOLLOWS_FROM reference to the same trace is the parent, and still a link.
    assert span["parentSpanId"] == "3132333435363738"
    assert [(l["spanId"], attrs(l["attributes"])) for l in span["links"]] == [("3132333435363738", {"opentracing.ref_type": "follows_from"})]
    assert span["kind"] == 4
    assert span["startTimeUnixNano"] == "1700000000000000000" and span["endTimeUnixNano"] == "1700000000001500000"
    # otel.status_code "ok" is OK in any case, with its description.
    assert span["status"] == {"code": 1, "message": "fine"}
    assert attrs(span["attributes"]) == {"payload": b"\x00\x01\xff"}


def test_bad_thrift_is_answered_400_and_bad_datagrams_are_counted(spanhost, tmp):
    server, ports = start(spanhost)
    url = f"http://127.0.0.1:{ports['http']}/api/traces"
    r = requests.post(url, data=b"\x0c\x00\x01\x0b\x00\x01\xff\xff\xff\x00", headers={"Content-Type": "application/x-thrift"})
    assert r.status_code == 400 and "invalid Jaeger Thrift" in r.text, r.text
    r = requests.post(url, data=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 415 and "application/x-thrift" in r.text
    r = requests.post(f"http://127.0.0.1:{ports['http']}/api/v2/spans", data=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 404 and "/api/traces" in r.text
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x82\x81\x01\x09emitBatch\x1c\x1c\x18", ("127.0.0.1", ports["compact"]))
        s.sendto(b"not thrift at all", ("127.0.0.1", ports["binary"]))
    assert wait_for(lambda: server.status()["receivers"][0]["counters"]["rejected_requests"] == 4), server.status()["receivers"]
    assert "datagram rejected on thrift_compact" in server.log()
    # Still serving.
    assert requests.post(url, data=b"", headers={"Content-Type": "application/x-thrift"}).status_code == 400


def test_grpc_and_an_empty_protocols_map_are_refused_clearly(tmp):
    for protocols, message in [("grpc:\n        endpoint: 127.0.0.1:14250", "gRPC is not supported"),
                               ("{}", "name at least one protocol")]:
        path = os.path.join(tmp, "c.yaml")
        with open(path, "w") as f:
            f.write(f"""
receivers:
  jaeger:
    protocols:
      {protocols}
exporters:
  file:
    path: {tmp}/x.jsonl
service:
  pipelines:
    traces:
      receivers: [jaeger]
      exporters: [file]
""")
        out = subprocess.run([os.path.join(BUILD, "bin", "spanhostd"), "--config", path, "--check"], capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and message in out.stderr + out.stdout, out.stderr


def test_the_collector_tutorial_shape_runs_with_protocols_left_empty(spanhost, tmp):
    # `thrift_http:` with nothing under it, as Collector examples write it: the defaults apply.
    config = """
receivers:
  jaeger:
    protocols:
      thrift_http:
      thrift_compact:
exporters:
  file:
    path: {tmp}/jaeger.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [jaeger]
      exporters: [file]
"""
    try:
        server = spanhost(config)
    except RuntimeError as e:
        if "Address already in use" in str(e) or "cannot bind" in str(e):
            pytest.skip("the default Jaeger ports are taken on this machine")
        raise
    r = requests.post("http://127.0.0.1:14268/api/traces", data=b"", headers={"Content-Type": "application/x-thrift"})
    assert r.status_code == 400 and "invalid Jaeger Thrift at byte 0: truncated" in r.text
