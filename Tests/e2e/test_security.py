"""Hostile neighbours: the admin endpoint cannot be driven from a web page."""
import requests

from test_data_path import cfg

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
