"""Bytes from the network and neighbours on the machine: no request corrupts memory or passes
invalid text on, state is per instance and cannot be planted, clients without a token are cut
off before their bodies, and the HTTP edges answer as the specifications say."""
import json
import os
import socket
import subprocess
import time

import requests

from conftest import SPANHOSTD, free_port, read_file_export, wait_for
from test_data_path import cfg, encode_varint, otlp_json
from test_security import CONFIG as NULL_CONFIG

FILE_CONFIG = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
  zipkin: {endpoint: "127.0.0.1:ZIPKIN_PORT"}
exporters:
  file: {path: "{tmp}/spans.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp, zipkin], exporters: [file]}
""")


def file_config():
    port = free_port()
    return FILE_CONFIG.replace("ZIPKIN_PORT", str(port)), port


def one_span(attributes, name="op"):
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "1112131415161718", "name": name,
        "startTimeUnixNano": "1", "endTimeUnixNano": "2", "attributes": attributes}]}]}]}


def field(number, payload):
    return bytes([number << 3 | 2]) + encode_varint(len(payload)) + payload


def proto_request(name):
    span = field(1, bytes(range(1, 17))) + field(2, bytes(range(17, 25))) + field(5, name)
    return field(1, field(2, field(2, span)))


def rpc_status(body):
    """(code, message) of a protobuf google.rpc.Status."""
    code, message, i = 0, b"", 0
    while i < len(body):
        tag = body[i]
        i += 1
        if tag == 0x08:
            code, shift = 0, 0
            while True:
                b = body[i]
                i += 1
                code |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
        elif tag == 0x12:
            n = body[i]
            message = body[i + 1:i + 1 + n]
            i += 1 + n
        else:
            break
    return code, message.decode()


def test_a_value_with_two_value_keys_is_one_value_and_the_exporter_survives_it(spanhost, tmp):
    """Item 1 of the hostile-bytes report: stringValue then arrayValue left an array pointing at
    address 4096; the file exporter crashed on it, three times quarantined it, and the instance
    stopped serving."""
    host = spanhost(file_config()[0])
    crafted = one_span([{"key": "k", "value": {"stringValue": "A" * 43, "intValue": "4096", "arrayValue": {}}}])
    for _ in range(4):
        r = requests.post(host.url, data=json.dumps(crafted), headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 200, r.text
    spans = wait_for(lambda: len(read_file_export(f"{tmp}/spans.jsonl")) == 4 and read_file_export(f"{tmp}/spans.jsonl"))
    assert spans, host.log()
    assert spans[0]["span"]["attributes"] == [{"key": "k", "value": {"arrayValue": {"values": []}}}]
    assert host.status()["supervisor"]["crashes"] == 0
    assert "crash" not in host.log().lower(), host.log()
    assert requests.post(host.url, json=otlp_json(3), timeout=10).status_code == 200


def test_invalid_utf8_is_refused_naming_the_field_and_every_written_line_is_json(spanhost, tmp):
    config, zipkin_port = file_config()
    host = spanhost(config)
    # Protobuf: a span name that is not UTF-8.
    r = requests.post(host.url, data=proto_request(b"GET \xff/"), headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    assert r.status_code == 400
    code, message = rpc_status(r.content)
    assert code == 3 and "resourceSpans[0].scopeSpans[0].spans[0].name is not valid UTF-8" in message, message
    # JSON: raw bytes inside a string value.
    body = json.dumps(one_span([{"key": "k", "value": {"stringValue": "XX"}}])).encode().replace(b"XX", b"\xed\xa0\x80")
    r = requests.post(host.url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and "attributes[0].value is not valid UTF-8" in r.json()["message"], r.text
    # Zipkin: a tag value that is not UTF-8.
    zipkin = (b'[{"traceId":"0102030405060708","id":"1112131415161718","name":"x","timestamp":1,"duration":1,'
              b'"localEndpoint":{"serviceName":"s"},"tags":{"k":"\xc3\x28"}}]')
    r = requests.post(f"http://127.0.0.1:{zipkin_port}/api/v2/spans", data=zipkin, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and "is not valid UTF-8" in r.text, r.text
    # Valid text, escapes included, passes; a lone surrogate escape becomes U+FFFD.
    r = requests.post(host.url, data=json.dumps(one_span([], name="caf\u00e9 \U0001F600 \ud800")), timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert wait_for(lambda: read_file_export(f"{tmp}/spans.jsonl"))
    with open(f"{tmp}/spans.jsonl", "rb") as f:
        lines = f.read().splitlines()
    assert lines
    for line in lines:
        json.loads(line.decode("utf-8", errors="strict"))
    assert read_file_export(f"{tmp}/spans.jsonl")[0]["span"]["name"] == "caf\u00e9 \U0001F600 \ufffd"


def test_each_instance_has_its_own_state_directory_and_refuses_one_others_could_write(spanhost, tmp):
    env = {"TMPDIR": tmp}
    first = spanhost(NULL_CONFIG, env=env)
    second = spanhost(NULL_CONFIG, env=env)
    a, b = first.status()["supervisor"]["state_dir"], second.status()["supervisor"]["state_dir"]
    assert a != b and a.startswith(f"{tmp}/spanhost-{os.getuid()}/") and b.startswith(f"{tmp}/spanhost-{os.getuid()}/")
    for d in (a, b, os.path.dirname(a)):
        assert os.stat(d).st_mode & 0o077 == 0, oct(os.stat(d).st_mode)
    # A quarantine list written into one instance's directory stops no other instance.
    with open(os.path.join(a, "quarantine.json"), "w") as f:
        json.dump([{"sha256": "x", "plugin": "null", "version": "1", "file": "null.so", "reason": "r", "since": "s"}], f)
    assert requests.post(second.url, json=otlp_json(1), timeout=10).status_code == 200
    first.stop()
    second.stop()

    # Directories another user could write or owns are refused, naming the directory.
    def refused(state_dir, expect):
        config = NULL_CONFIG.replace("service:\n", "service:\n  supervisor: {{state_dir: \"%s\"}}\n" % state_dir)
        s = spanhost(config, healthy=False)
        assert s.wait_exit(20) == 2, s.log()
        assert expect in s.log(), s.log()

    open_dir = os.path.join(tmp, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    refused(os.path.join(open_dir, "state"), f"{open_dir} is writable by other users")
    os.chmod(open_dir, 0o700)
    foreign = os.path.join(tmp, "foreign")
    os.mkdir(foreign, 0o700)
    if os.getuid() == 0:
        os.chown(foreign, 65534, 65534)
        refused(foreign, f"{foreign} belongs to uid 65534")
    # The default location, pre-created by someone else with a planted quarantine list.
    planted_tmp = os.path.join(tmp, "planted")
    os.makedirs(os.path.join(planted_tmp, f"spanhost-{os.getuid()}"), 0o777)
    os.chmod(os.path.join(planted_tmp, f"spanhost-{os.getuid()}"), 0o777)
    s = spanhost(NULL_CONFIG, healthy=False, env={"TMPDIR": planted_tmp})
    assert s.wait_exit(20) == 2 and "is writable by other users" in s.log(), s.log()


def test_crash_records_are_created_new_never_through_a_planted_link(spanhost, tmp):
    state = os.path.join(tmp, "state")
    os.mkdir(state, 0o700)
    victim = os.path.join(tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious")
    # Links for every pid the supervisor could get next.
    first_pid = int(open("/proc/sys/kernel/ns_last_pid").read()) + 1
    for pid in range(first_pid, first_pid + 200):
        os.symlink(victim, os.path.join(state, f"crash-{pid}.log"))
    host = spanhost(NULL_CONFIG.replace("service:\n", "service:\n  supervisor: {{state_dir: \"%s\"}}\n" % state))
    pid = host.proc.pid
    assert requests.post(host.url, json=otlp_json(1), timeout=10).status_code == 200
    crash = os.path.join(state, f"crash-{pid}.log")
    if first_pid <= pid < first_pid + 200:
        assert not os.path.islink(crash), "the crash record was opened through the planted link"
    assert open(victim).read() == "precious"


AUTH_CONFIG = cfg("""
extensions:
  bearertokenauth: {token: "s3cret"}
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}", auth: {authenticator: bearertokenauth}}}}
exporters:
  "null": {}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  memory_limiter: {limit_mib: 64}
  extensions: [bearertokenauth]
  pipelines:
    traces: {receivers: [otlp], exporters: ["null"]}
""")


def test_clients_without_a_token_are_answered_401_before_their_body_and_cannot_deny_others(spanhost, tmp):
    host = spanhost(AUTH_CONFIG)
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\n" % (20 << 20))
    held = []
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", host.receiver_port))
        sock.settimeout(5)
        sock.sendall(head)
        held.append(sock)
    for sock in held:
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"www-authenticate: Bearer" in answer.lower().replace(b"bearer", b"Bearer"), answer
    # Uploads pushed anyway are not buffered.
    for sock in held:
        try:
            sock.sendall(b"\0" * (4 << 20))
        except OSError:
            pass
    assert host.status()["memory"]["requestBodyBytes"] == 0
    ok = [requests.post(host.url, json=otlp_json(5), headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code
          for _ in range(10)]
    assert ok == [200] * 10, ok
    for sock in held:
        sock.close()


EDGE_CONFIG = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}", max_request_body_size: 1000, read_header_timeout: 1s}}}
exporters:
  otlphttp/dead:
    endpoint: http://127.0.0.1:9
    timeout: 1s
    sending_queue: {enabled: false}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [otlphttp/dead]}
""")


def test_http_edges_answer_as_the_specifications_say(spanhost, tmp):
    host = spanhost(EDGE_CONFIG)
    port = host.admin_port
    # DNS rebinding: a name that starts like a loopback address is a name, not an address.
    for name in ("127.0.0.1.rebind.attacker.example", "127.evil.example", "localhost.attacker.example"):
        r = requests.get(host.admin + "/status", headers={"Host": f"{name}:{port}"}, timeout=10)
        assert r.status_code == 403, (name, r.status_code)
        r = requests.post(host.admin + "/-/reload", json={}, headers={"Host": name}, timeout=10)
        assert r.status_code == 403, (name, r.status_code)
    for name in ("127.0.0.1", "127.1.2.3", "localhost", "[::1]"):
        assert requests.get(host.admin + "/status", headers={"Host": f"{name}:{port}"}, timeout=10).status_code == 200, name
    # A raw body over max_request_body_size: 413 with a google.rpc.Status in the request's encoding.
    r = requests.post(host.url, data=b"\0" * 5000, headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    assert r.status_code == 413 and r.headers["Content-Type"] == "application/x-protobuf", r.headers
    code, message = rpc_status(r.content)
    assert code == 8 and "exceeds 1000 bytes" in message, (code, message)
    r = requests.post(host.url, data=b" " * 5000, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413 and r.json()["code"] == 8, r.text
    # 503 names the exporter, not the backend's address.
    r = requests.post(host.url, json=otlp_json(1), timeout=20)
    assert r.status_code == 503, r.text
    assert "otlphttp/dead" in r.json()["message"] and "127.0.0.1" not in r.text and "http://" not in r.text, r.text
    assert wait_for(lambda: "127.0.0.1:9" in host.log()), "the detail belongs in the log"
    # A connection that sends nothing is closed when read_header_timeout runs out.
    silent = socket.create_connection(("127.0.0.1", host.receiver_port))
    silent.settimeout(10)
    started = time.time()
    try:
        closed = silent.recv(1) == b""
    except ConnectionResetError:
        closed = True
    assert closed and time.time() - started < 5, time.time() - started
    # HTTP/1.1 without Host is a bad request (RFC 9112).
    sock = socket.create_connection(("127.0.0.1", host.receiver_port))
    sock.settimeout(5)
    sock.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    assert sock.recv(4096).startswith(b"HTTP/1.1 400"), "HTTP/1.1 without Host accepted"
    sock.close()


def test_an_fsync_interval_below_the_floor_is_refused(tmp):
    path = os.path.join(tmp, "c.yaml")
    with open(path, "w") as f:
        f.write(f"""
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:0"}}}}}}
exporters:
  file: {{path: "{tmp}/x.jsonl", sending_queue: {{storage: "{tmp}/q", fsync: 1ns}}}}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
""")
    run = subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "fsync" in run.stderr + run.stdout and "at least 10ms" in run.stderr + run.stdout, run.stderr
