"""TLS, mutual TLS and bearer tokens on the receivers and the admin endpoint, sent to by the
OpenTelemetry Python SDK over https; certificates and tokens are read again on reload."""
import os
import socket
import ssl
import subprocess

import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import Spanhost, free_port, read_file_export, wait_for
from test_data_path import BASE, cfg, check, fill, otlp_json


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)
    return os.path.join(d, f"{name}.pem")


def issue(d, ca, name, san=None):
    """A certificate for `name` signed by `ca`; returns (cert, key) paths."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n" if san else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", f"{name}.pem", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


@pytest.fixture(autouse=True)
def no_ca_bundle_override(monkeypatch):
    # requests lets these replace a session's own CA file (the SDK exporter's certificate_file).
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pki(tmp):
    d = os.path.join(tmp, "pki")
    os.mkdir(d)
    ca = make_ca(d, "ca")
    cert, key = issue(d, "ca", "server", san="IP:127.0.0.1")
    client = issue(d, "ca", "client")
    with open(os.path.join(tmp, "token"), "w") as f:
        f.write("first-token\n")
    return {"ca": ca, "cert": cert, "key": key, "client": client, "dir": d}


CONFIG = """
extensions:
  bearertokenauth: {filename: "{tmp}/token"}
receivers:
  otlp:
    protocols:
      http:
        endpoint: "{receiver}"
        auth: {authenticator: bearertokenauth}
        tls: {cert_file: "{tmp}/pki/server.pem", key_file: "{tmp}/pki/server.key"{client_ca}}
exporters:
  file: {path: "{tmp}/spans.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"{admin_extra}}
service:
  extensions: [bearertokenauth]
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"""


def config(client_ca="", admin_extra=""):
    return cfg(fill(CONFIG, client_ca=client_ca, admin_extra=admin_extra))


def https(host):
    return host.url.replace("http://", "https://")


def sdk_export(url, ca, token, name):
    """Records one span with the SDK and sends it with its OTLP/HTTP exporter; the export result."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "tls-client"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span(name):
        pass
    headers = {"authorization": f"Bearer {token}"} if token else {}
    exporter = OTLPSpanExporter(endpoint=url, certificate_file=ca, headers=headers, timeout=10)
    result = exporter.export(memory.get_finished_spans())
    exporter.shutdown()
    return result


def test_the_sdk_sends_over_https_with_a_token_and_is_refused_without(spanhost, tmp, pki):
    host = spanhost(config())
    assert sdk_export(https(host), pki["ca"], "first-token", "with-token") == SpanExportResult.SUCCESS
    spans = wait_for(lambda: read_file_export(f"{tmp}/spans.jsonl"))
    assert [s["span"]["name"] for s in spans] == ["with-token"]

    assert sdk_export(https(host), pki["ca"], None, "no-token") == SpanExportResult.FAILURE
    assert sdk_export(https(host), pki["ca"], "wrong", "wrong-token") == SpanExportResult.FAILURE
    # The refusal is a 401 with an OTLP Status body (code 16, UNAUTHENTICATED) in the request's encoding.
    r = requests.post(https(host), data=b"", headers={"Content-Type": "application/x-protobuf"}, verify=pki["ca"], timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    status = status_pb2.Status.FromString(r.content)
    assert status.code == 16 and "Authorization" in status.message
    r = requests.post(https(host), json=otlp_json(1), headers={"Authorization": "Bearer nope"}, verify=pki["ca"], timeout=10)
    assert r.status_code == 401 and r.json()["code"] == 16
    # Plain HTTP to a TLS listener gets no answer as HTTP.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(host.url, json=otlp_json(1), headers={"Authorization": "Bearer first-token"}, timeout=10)
    assert [s["span"]["name"] for s in read_file_export(f"{tmp}/spans.jsonl")] == ["with-token"]
    receiver = next(r for r in host.status()["receivers"] if r["id"] == "otlp")
    assert receiver["counters"]["unauthenticated_requests"] == 4


def test_the_token_file_and_the_certificate_are_read_again_on_reload(spanhost, tmp, pki):
    host = spanhost(config())
    port = host.receiver_port
    before = ssl.get_server_certificate(("127.0.0.1", port))
    with open(f"{tmp}/token", "w") as f:
        f.write("second-token\nthird-token\n")
    make_ca(pki["dir"], "ca2")
    issue(pki["dir"], "ca2", "server", san="IP:127.0.0.1")  # replaces server.pem and server.key
    r = requests.post(host.admin + "/-/reload", json={}, timeout=60)
    assert r.status_code == 200, r.text
    after = ssl.get_server_certificate(("127.0.0.1", port))
    assert after != before
    ca2 = os.path.join(pki["dir"], "ca2.pem")
    assert sdk_export(https(host), ca2, "first-token", "old-token") == SpanExportResult.FAILURE
    assert sdk_export(https(host), ca2, "second-token", "new-token") == SpanExportResult.SUCCESS
    assert sdk_export(https(host), ca2, "third-token", "other-token") == SpanExportResult.SUCCESS
    # The old CA no longer verifies the server.
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(https(host), json=otlp_json(1), headers={"Authorization": "Bearer second-token"}, verify=pki["ca"], timeout=10)

    # A reload whose key file is gone fails, names it, and the listener keeps serving.
    os.rename(os.path.join(pki["dir"], "server.key"), os.path.join(pki["dir"], "moved.key"))
    r = requests.post(host.admin + "/-/reload", json={}, timeout=60)
    assert r.status_code == 400 and "tls.key_file" in r.text, r.text
    assert sdk_export(https(host), ca2, "second-token", "after-failed-reload") == SpanExportResult.SUCCESS
    names = [s["span"]["name"] for s in wait_for(lambda: len(read_file_export(f"{tmp}/spans.jsonl")) == 3
                                                 and read_file_export(f"{tmp}/spans.jsonl"))]
    assert names == ["new-token", "other-token", "after-failed-reload"]


def test_mutual_tls_needs_a_client_certificate_from_the_ca(spanhost, tmp, pki):
    host = spanhost(config(client_ca=f', client_ca_file: "{tmp}/pki/ca.pem"'))
    headers = {"Authorization": "Bearer first-token"}
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.post(https(host), json=otlp_json(1), headers=headers, verify=pki["ca"], timeout=10)
    # A certificate from another CA is refused too.
    make_ca(pki["dir"], "rogue")
    rogue = issue(pki["dir"], "rogue", "intruder")
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.post(https(host), json=otlp_json(1), headers=headers, verify=pki["ca"], cert=rogue, timeout=10)
    r = requests.post(https(host), json=otlp_json(2), headers=headers, verify=pki["ca"], cert=pki["client"], timeout=10)
    assert r.status_code == 200, r.text
    assert len(wait_for(lambda: read_file_export(f"{tmp}/spans.jsonl"))) == 2


def unix_get(path, target):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


@pytest.mark.parametrize("supervised", [True, False])
def test_admin_auth_guards_all_but_healthz_and_the_unix_socket_needs_no_token(spanhost, tmp, pki, supervised):
    sock = os.path.join(tmp, "admin.sock")
    text = config(admin_extra=f', auth: {{authenticator: bearertokenauth}}, unix_socket: "{sock}"')
    if not supervised:
        text = text.replace("  extensions: [bearertokenauth]", "  extensions: [bearertokenauth]\n  supervisor: {{enabled: false}}")
    host = spanhost(text)
    assert requests.get(host.admin + "/healthz", timeout=10).status_code == 200
    for method, path in [("GET", "/status"), ("GET", "/metrics"), ("POST", "/-/reload")]:
        r = requests.request(method, host.admin + path, json={}, timeout=10)
        assert r.status_code == 401 and "admin.auth" in r.text, (path, r.status_code, r.text)
    token = {"Authorization": "Bearer first-token"}
    assert requests.get(host.admin + "/status", headers=token, timeout=10).status_code == 200
    with open(f"{tmp}/token", "w") as f:
        f.write("rotated\n")
    assert requests.post(host.admin + "/-/reload", json={}, headers=token, timeout=60).status_code == 200
    assert requests.get(host.admin + "/status", headers=token, timeout=10).status_code == 401
    assert requests.get(host.admin + "/status", headers={"Authorization": "Bearer rotated"}, timeout=10).status_code == 200
    # The socket's permissions are its guard: only the service user can connect.
    assert os.stat(sock).st_mode & 0o777 == 0o600
    answer = unix_get(sock, "/status")
    assert answer.startswith("HTTP/1.1 200") and '"pipelines"' in answer, answer[:300]
    assert ("supervisor" in answer) == supervised
    assert host.stop() == 0
    assert not os.path.exists(sock)


EXPOSED = fill(BASE, processors="  {}", service="", chain="").replace("127.0.0.1:0", "0.0.0.0:0")


def test_a_receiver_open_to_the_network_without_tls_or_auth_is_warned_about(tmp):
    r = check(tmp, EXPOSED)
    assert r.returncode == 0, r.stderr
    assert "receiver otlp listens on 0.0.0.0:0, reachable from other machines, without TLS or authentication" in r.stderr
    r = check(tmp, fill(BASE, processors="  {}", service="", chain=""))
    assert r.returncode == 0 and "reachable from other machines" not in r.stderr, r.stderr


def test_auth_and_tls_config_errors_are_named(tmp, pki):
    with_auth = EXPOSED.replace('endpoint: "0.0.0.0:0"', 'endpoint: "127.0.0.1:0", auth: {authenticator: bearertokenauth}')
    r = check(tmp, with_auth)
    assert r.returncode in (2, 64) and "receivers.otlp.protocols.http.auth.authenticator" in r.stderr \
        and "not an enabled extension" in r.stderr, r.stderr
    defined = "extensions:\n  bearertokenauth: {token: abc}\n" + with_auth
    r = check(tmp, defined)
    assert r.returncode in (2, 64) and "list it in service.extensions" in r.stderr, r.stderr
    r = check(tmp, defined.replace("service:\n", "service:\n  extensions: [bearertokenauth]\n"))
    assert r.returncode == 0, r.stderr
    r = check(tmp, "extensions:\n  zpages: {}\n" + with_auth)
    assert r.returncode in (2, 64) and "extension type 'zpages' is not supported" in r.stderr, r.stderr
    # As in the Collector, filename wins over token: the file must be readable.
    enabled = with_auth.replace("service:\n", "service:\n  extensions: [bearertokenauth]\n")
    r = check(tmp, "extensions:\n  bearertokenauth: {token: a, filename: /x}\n" + enabled)
    assert r.returncode in (2, 64) and "cannot read the token file /x" in r.stderr, r.stderr
    r = check(tmp, "extensions:\n  bearertokenauth: {token: a, tokens: [b]}\n" + enabled)
    assert r.returncode in (2, 64) and "set token or tokens, not both" in r.stderr, r.stderr
    missing = EXPOSED.replace('endpoint: "0.0.0.0:0"', f'endpoint: "127.0.0.1:0", tls: {{cert_file: "{tmp}/none.pem", key_file: "{pki["key"]}"}}')
    r = check(tmp, missing)
    assert r.returncode in (2, 64) and "receivers.otlp.protocols.http.tls.cert_file" in r.stderr and "cannot read" in r.stderr, r.stderr
    wrong_key = missing.replace(f"{tmp}/none.pem", pki["cert"]).replace(pki["key"], pki["client"][1])
    r = check(tmp, wrong_key)
    assert r.returncode in (2, 64) and "receivers.otlp.protocols.http.tls" in r.stderr, r.stderr


def test_several_health_check_extensions_one_over_https(tmp, pki):
    # The health_check README's example (health_check and health_check/1 with its own endpoint
    # and path), the second with the tls of its documented sample.
    port = free_port()
    s = Spanhost("""
extensions:
  health_check:
  health_check/1:
    endpoint: "127.0.0.1:%d"
    tls:
      ca_file: "%s"
      cert_file: "%s"
      key_file: "%s"
    path: "/health/status"
    check_collector_pipeline:
      enabled: true
      interval: "5m"
      exporter_failure_threshold: 5
  health_check/admin:
    path: "/ready"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "{receiver}"}}}}}}
exporters:
  nop:
admin: {{endpoint: "{admin}"}}
plugins: {{dir: "{plugins}"}}
service:
  extensions: [health_check/1, health_check/admin]
  pipelines:
    traces: {{receivers: [otlp], exporters: [nop]}}
""" % (port, pki["ca"], pki["cert"], pki["key"]), tmp).wait_healthy()
    try:
        assert requests.get(f"https://127.0.0.1:{port}/health/status", verify=pki["ca"], timeout=5).status_code == 200
        assert requests.get(f"https://127.0.0.1:{port}/other", verify=pki["ca"], timeout=5).status_code == 404
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health/status", timeout=5)
        assert requests.get(s.admin + "/ready", timeout=5).status_code == 200
    finally:
        s.stop()
