"""Hostile neighbours: the admin endpoint cannot be driven from a web page, a small body cannot
build a huge batch, and slow or piled-up connections cannot hold a listener."""
import socket
import time

import requests

from conftest import TEST_PLUGINS, wait_for
from test_data_path import BASE, cfg, check, encode_varint, fill, plugin_dir

BASE_CHECK = fill(BASE, processors="  {}", service="", chain="")

CONFIG = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  "null": {}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: ["null"]}
""")


def test_admin_refuses_cross_origin_posts_foreign_hosts_and_floods(spanhost, tmp):
    host = spanhost(CONFIG)
    # What a page on another origin can send without a preflight: a text/plain POST.
    r = requests.post(host.admin + "/-/reload", data="x", headers={"Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 415, r.text
    r = requests.post(host.admin + "/-/reload", timeout=10)
    assert r.status_code == 415, r.text
    assert host.status()["reloads"]["succeeded"] == 0
    # DNS rebinding: a name that resolves to 127.0.0.1 but is not a loopback name.
    r = requests.get(host.admin + "/status", headers={"Host": f"evil.example:{host.admin_port}"}, timeout=10)
    assert r.status_code == 403, r.text
    assert requests.get(host.admin + "/status", headers={"Host": f"localhost:{host.admin_port}"}, timeout=10).status_code == 200
    # A JSON POST is taken, but not without limit.
    codes = [requests.post(host.admin + "/-/reload", json={}, timeout=60).status_code for _ in range(25)]
    assert codes[0] == 200 and 429 in codes, codes


def empty_spans_request(count):
    """An OTLP protobuf request of `count` empty spans, two bytes each on the wire."""
    def varint(n):
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            if n:
                out += bytes([byte | 0x80])
            else:
                return out + bytes([byte])
    spans = b"\x12\x00" * count
    resource = b"\x12" + varint(len(spans)) + spans
    return b"\x0a" + varint(len(resource)) + resource


def test_a_small_body_that_would_decode_into_a_huge_batch_is_refused(spanhost, tmp):
    host = spanhost(CONFIG)
    body = empty_spans_request(4 << 20)  # 8 MiB that used to build a 736 MiB batch
    r = requests.post(host.url, data=body, headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert host.status()["memory"]["batchBytes"] < 16 << 20
    # The same through gzip, and the server still serves normal requests.
    import gzip
    r = requests.post(host.url, data=gzip.compress(body), timeout=30,
                      headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert requests.post(host.url, data=empty_spans_request(100), timeout=10,
                         headers={"Content-Type": "application/x-protobuf"}).status_code == 200


def test_requests_with_too_many_spans_or_attributes_are_refused_413(spanhost, tmp):
    from test_data_path import otlp_json
    host = spanhost(CONFIG.replace('endpoint: "{receiver}"', 'endpoint: "{receiver}", max_spans_per_request: 10, '
                                   'max_attributes_per_span: 5'))
    r = requests.post(host.url, json=otlp_json(11), timeout=10)
    assert r.status_code == 413 and "11 spans" in r.json()["message"] and "max_spans_per_request" in r.json()["message"], r.text
    r = requests.post(host.url, json=otlp_json(1, attrs={f"k{i}": "v" for i in range(5)}), timeout=10)
    assert r.status_code == 413 and "6 attributes" in r.json()["message"], r.text
    assert requests.post(host.url, json=otlp_json(10, attrs={f"k{i}": "v" for i in range(4)}), timeout=10).status_code == 200
    # The defaults are far above what an SDK sends, and below what an attacker's body builds.
    default = spanhost(CONFIG)
    # 250,000 spans with ids and a name: 12 MB that decodes within the arena cap, past the span cap.
    span = b"\x0a\x10" + b"\x01" * 16 + b"\x12\x08" + b"\x02" * 8 + b"\x2a\x0dGET /checkout"
    spans = (b"\x12" + bytes([len(span)]) + span) * 250_000
    scope = b"\x12" + encode_varint(len(spans)) + spans
    body = b"\x0a" + encode_varint(len(scope)) + scope
    r = requests.post(default.url, data=body, headers={"Content-Type": "application/x-protobuf"}, timeout=60)
    assert r.status_code == 413 and b"250000 spans" in r.content, r.content[:200]
    assert requests.post(default.url, json=otlp_json(2000), timeout=30).status_code == 200


def test_unfinished_bodies_count_against_the_memory_limit(spanhost, tmp):
    host = spanhost(CONFIG.replace("service:\n", "service:\n  memory_limiter: {{limit_mib: 16}}\n"))
    port = host.receiver_port
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\n" % (10 << 20))
    held, refused = [], 0
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.settimeout(5)
        try:
            sock.sendall(head + b"\0" * (3 << 20))
        except OSError:
            pass
        held.append(sock)
        time.sleep(0.2)
    bodies = host.status()["memory"]["requestBodyBytes"]
    for sock in held:
        sock.settimeout(0.5)
        try:
            answer = sock.recv(4096)
        except (socket.timeout, TimeoutError):
            continue
        except ConnectionResetError:
            refused += 1
            continue
        if answer.startswith(b"HTTP/1.1 503"):
            assert b"memory limit reached" in answer and b"of requests arriving" in answer, answer
            refused += 1
    # 16 MiB holds five 3 MiB bodies; the others were answered 503 and closed, not buffered.
    assert bodies <= (16 + 3) << 20, bodies
    assert 4 <= refused <= 6, refused
    for sock in held:
        sock.close()
    assert wait_for(lambda: host.status()["memory"]["requestBodyBytes"] == 0, timeout=10)
    assert requests.post(host.url, data=empty_spans_request(10), headers={"Content-Type": "application/x-protobuf"},
                         timeout=10).status_code == 200


def closed_within(sock, seconds):
    """True when the server closes `sock` within `seconds` (bounded by the socket timeout)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def test_trickling_and_piled_up_connections_are_closed_and_admin_answers(spanhost, tmp):
    host = spanhost(CONFIG.replace('endpoint: "{receiver}"', 'endpoint: "{receiver}", read_header_timeout: 1s, '
                                   'read_timeout: 2s, max_connections: 5'))
    port = host.receiver_port
    # A head that never ends.
    head = socket.create_connection(("127.0.0.1", port))
    head.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
    assert closed_within(head, 5), "a request head trickling in was never cut off"
    # A body that trickles: the head arrives, then 10 bytes a second of 1000.
    body = socket.create_connection(("127.0.0.1", port))
    body.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    cut = False
    for _ in range(8):
        try:
            body.sendall(b"x" * 10)
        except OSError:
            cut = True
            break
        if closed_within(body, 0.5):
            cut = True
            break
    assert cut, "a body trickling in was never cut off"
    # Five idle connections fill the listener; a sixth is closed at once.
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", port))
    assert closed_within(extra, 5)
    assert requests.get(host.admin + "/healthz", timeout=5).status_code == 200
    for s in idle:
        s.close()
    assert wait_for(lambda: requests.post(host.url, json={"resourceSpans": []}, timeout=5).status_code == 200, timeout=10)


def test_an_exec_notifiers_command_inherits_no_descriptor_of_the_host(spanhost, tmp):
    host = spanhost(cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  "null": {}
notifiers:
  exec: {command: [sh, -c, "cat > /dev/null; ls /proc/self/fd > {tmp}/fds.txt"]}
rules:
  error_span: {group_wait: 0s}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: ["null"], notifiers: [exec], rules: [error_span]}
"""))
    span = {"traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "boom", "status": {"code": 2}}
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                               "scopeSpans": [{"spans": [span]}]}]}
    assert requests.post(host.url, json=body, timeout=10).status_code == 200
    import os
    assert wait_for(lambda: os.path.exists(f"{tmp}/fds.txt") and open(f"{tmp}/fds.txt").read(), timeout=20)
    fds = sorted(int(x) for x in open(f"{tmp}/fds.txt").read().split())
    # stdin, stdout (the file), stderr, and the directory ls is reading: nothing of the host's.
    assert fds == [0, 1, 2, 3], fds


def sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_a_file_planted_in_the_plugin_cache_is_not_loaded(spanhost, tmp):
    import os
    import shutil
    plugins = plugin_dir(tmp, "null")
    cache = os.path.join(tmp, "cache")
    os.makedirs(cache, mode=0o700)
    # Another plugin under the name the real null.so's copy would have.
    shutil.copy(os.path.join(TEST_PLUGINS, "misbehave.so"), os.path.join(cache, sha256(os.path.join(plugins, "null.so")) + ".so"))
    host = spanhost(CONFIG.replace('plugins: {{dir: "{plugins}"}}', f'plugins: {{{{dir: "{{plugins}}", cache_dir: "{cache}"}}}}'),
                    plugins_dir=plugins)
    names = {p["name"] for p in host.status()["plugins"]}
    assert names == {"null"}, names
    assert sha256(os.path.join(cache, sha256(os.path.join(plugins, "null.so")) + ".so")) == sha256(os.path.join(plugins, "null.so"))


def test_plugins_others_could_change_or_that_are_not_pinned_are_refused(tmp):
    import os
    plugins = plugin_dir(tmp, "null")
    text = BASE_CHECK
    os.chmod(plugins, 0o777)
    r = check(tmp, text, plugins=plugins)
    assert r.returncode == 2 and "writable by group or others" in r.stderr and "exporters.null" in r.stderr, r.stderr
    os.chmod(plugins, 0o755)
    os.chmod(os.path.join(plugins, "null.so"), 0o666)
    r = check(tmp, text, plugins=plugins)
    assert r.returncode == 2 and "null.so is writable by group or others" in r.stderr, r.stderr
    os.chmod(os.path.join(plugins, "null.so"), 0o644)
    assert check(tmp, text, plugins=plugins).returncode == 0
    # require_pins: unpinned files are refused; a wrong pin names both digests.
    pinned = text.replace('plugins: {dir: "{plugins}"}', 'plugins: {dir: "{plugins}", require_pins: true}')
    r = check(tmp, pinned, plugins=plugins)
    assert r.returncode == 2 and "require_pins" in r.stderr, r.stderr
    real = sha256(os.path.join(plugins, "null.so"))
    wrong = pinned.replace("require_pins: true", 'require_pins: true, pins: {null.so: "' + "0" * 64 + '"}')
    r = check(tmp, wrong, plugins=plugins)
    assert r.returncode == 2 and real in r.stderr and "0" * 64 in r.stderr, r.stderr
    right = pinned.replace("require_pins: true", f"require_pins: true, pins: {{null.so: {real}}}")
    assert check(tmp, right, plugins=plugins).returncode == 0


def test_an_integer_written_as_a_huge_double_is_refused_not_converted(spanhost, tmp):
    host = spanhost(CONFIG)
    span = {"traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "x",
            "attributes": [{"key": "n", "value": {"intValue": "31e999"}}]}
    r = requests.post(host.url, json={"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}, timeout=10)
    assert r.status_code == 400 and "integer out of range" in r.text, r.text
