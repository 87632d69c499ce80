"""The otlphttp exporter to a backend behind a private CA, mutual TLS or a bearer token: a
second spanhostd is the backend (its otlp receiver with tls and auth), the first exports to it
with the Collector's client keys (exporter `tls`, `auth: {authenticator: bearertokenauth/...}`)."""
import os

import requests

from conftest import read_file_export, wait_for
from test_data_path import cfg, fill, otlp_json
from test_tls_auth import issue, make_ca, no_ca_bundle_override  # noqa: F401 (an autouse fixture)

BACKEND = """
extensions:
  bearertokenauth: {token: "backend-token"}
receivers:
  otlp:
    protocols:
      http:
        endpoint: "{receiver}"
        {auth}
        tls: {cert_file: "{cert}", key_file: "{key}"{client_ca}}
exporters:
  file: {path: "{tmp}/backend.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  extensions: [bearertokenauth]
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"""

FRONT = """
extensions:
  bearertokenauth/client: {token: "{token}"}
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  otlphttp:
    endpoint: "{url}"
    compression: none
    retry_on_failure: {initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 1s}
    {exporter_extra}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  extensions: [bearertokenauth/client]
  pipelines:
    traces: {receivers: [otlp], exporters: [otlphttp]}
"""


def pki(tmp):
    d = os.path.join(tmp, "pki")
    os.makedirs(d, exist_ok=True)
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other")
    server = issue(d, "ca", "server", san="IP:127.0.0.1,DNS:collector.internal")
    named = issue(d, "ca", "named", san="DNS:collector.internal")
    client = issue(d, "ca", "client")
    stranger = issue(d, "other", "stranger")
    return {"ca": ca, "other_ca": other_ca, "server": server, "named": named, "client": client, "stranger": stranger}


def backend(spanhost, tmp, cert, client_ca=None, auth=False):
    text = fill(BACKEND, cert=cert[0], key=cert[1], client_ca=f', client_ca_file: "{client_ca}"' if client_ca else "",
                auth="auth: {authenticator: bearertokenauth}" if auth else "")
    host = spanhost(cfg(text))
    return host, host.url.replace("http://", "https://").replace("/v1/traces", "")


def front(spanhost, url, exporter_extra, token="backend-token"):
    return spanhost(cfg(fill(FRONT, url=url, exporter_extra=exporter_extra, token=token)))


def delivered(tmp, front_host, n=2):
    assert requests.post(front_host.url, json=otlp_json(n), timeout=10).status_code == 200
    return wait_for(lambda: len(read_file_export(f"{tmp}/backend.jsonl")) >= n, timeout=10)


def not_delivered(tmp, front_host, message):
    assert requests.post(front_host.url, json=otlp_json(1), timeout=10).status_code == 200
    assert wait_for(lambda: message in front_host.log(), timeout=10), front_host.log()[-3000:]
    assert read_file_export(f"{tmp}/backend.jsonl") == []


def test_a_private_ca_is_trusted_through_ca_file_and_nothing_else(spanhost, tmp):
    p = pki(tmp)
    _, url = backend(spanhost, tmp, p["server"])
    bad = front(spanhost, url, "tls: {ca_file: \"%s\"}" % p["other_ca"])
    not_delivered(tmp, bad, "otlphttp")
    good = front(spanhost, url, "tls: {ca_file: \"%s\"}" % p["ca"])
    assert delivered(tmp, good)


def test_mutual_tls_with_a_client_certificate(spanhost, tmp):
    p = pki(tmp)
    _, url = backend(spanhost, tmp, p["server"], client_ca=p["ca"])
    without = front(spanhost, url, "tls: {ca_file: \"%s\"}" % p["ca"])
    not_delivered(tmp, without, "otlphttp")
    stranger = front(spanhost, url, "tls: {ca_file: \"%s\", cert_file: \"%s\", key_file: \"%s\"}" % (p["ca"], *p["stranger"]))
    not_delivered(tmp, stranger, "otlphttp")
    good = front(spanhost, url, "tls: {ca_file: \"%s\", cert_file: \"%s\", key_file: \"%s\", min_version: \"1.3\"}" % (p["ca"], *p["client"]))
    assert delivered(tmp, good)


def test_a_bearer_token_from_the_bearertokenauth_extension(spanhost, tmp):
    p = pki(tmp)
    _, url = backend(spanhost, tmp, p["server"], auth=True)
    wrong = front(spanhost, url, "tls: {ca_file: \"%s\"}\n    auth: {authenticator: bearertokenauth/client}" % p["ca"], token="stale")
    not_delivered(tmp, wrong, "answered 401")
    good = front(spanhost, url, "tls: {ca_file: \"%s\"}\n    auth: {authenticator: bearertokenauth/client}" % p["ca"])
    assert delivered(tmp, good)


def test_server_name_override_and_insecure_skip_verify(spanhost, tmp):
    p = pki(tmp)
    # The certificate names only collector.internal; the endpoint is an IP address.
    _, url = backend(spanhost, tmp, p["named"])
    mismatch = front(spanhost, url, "tls: {ca_file: \"%s\"}" % p["ca"])
    not_delivered(tmp, mismatch, "otlphttp")
    named = front(spanhost, url, "tls: {ca_file: \"%s\", server_name_override: collector.internal}" % p["ca"])
    assert delivered(tmp, named, 2)
    skip = front(spanhost, url, "tls: {insecure_skip_verify: true}")
    assert delivered(tmp, skip, 4)


def test_tls_and_auth_mistakes_are_named(spanhost, tmp):
    from test_data_path import check
    p = pki(tmp)
    for extra, message in [("tls: {ca_file: /nonexistent/ca.pem}", "tls.ca_file: cannot read '/nonexistent/ca.pem'"),
                           ("tls: {cert_file: \"%s\"}" % p["client"][0], "needs both cert_file"),
                           ("tls: {min_version: \"1.4\"}", "tls.min_version: '1.4'"),
                           ("auth: {authenticator: bearertokenauth/missing}", "'bearertokenauth/missing' is not an enabled extension")]:
        text = fill(FRONT, url="https://127.0.0.1:1", exporter_extra=extra, token="t")
        text = text.replace("{receiver}", "127.0.0.1:0").replace("{admin}", "127.0.0.1:0").replace("{tmp}", tmp)
        out = check(tmp, text)
        assert out.returncode != 0 and message in out.stdout + out.stderr, (extra, out.stdout + out.stderr)
