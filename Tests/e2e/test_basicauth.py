"""The Collector's basicauth extension: a receiver accepts the htpasswd users (inline and from
a file, `user:password` lines; hashed entries are refused by name), an otlphttp exporter sends
client_auth's user; as in the extension's README (usernames from the environment)."""
import base64
import os
import subprocess

import requests

from conftest import PLUGINS, SPANHOSTD, free_port, read_file_export, wait_for
from test_data_path import otlp_json

SERVER = """
extensions:
  basicauth/server:
    htpasswd:
      file: {tmp}/htpasswd
      inline: |
        ${{env:BASIC_AUTH_USERNAME}}:${{env:BASIC_AUTH_PASSWORD}}
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
        auth:
          authenticator: basicauth/server
exporters:
  file: {{path: "{tmp}/server.jsonl"}}
admin: {{endpoint: "{admin}"}}
plugins: {{dir: "{plugins}"}}
service:
  extensions: [basicauth/server]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"""

CLIENT = """
extensions:
  basicauth/client:
    client_auth:
      username: %s
      password: %s
receivers:
  otlp: {{protocols: {{http: {{endpoint: "{receiver}"}}}}}}
exporters:
  otlphttp:
    endpoint: %s
    auth:
      authenticator: basicauth/client
    retry_on_failure: {{enabled: false}}
admin: {{endpoint: "{admin}"}}
plugins: {{dir: "{plugins}"}}
service:
  extensions: [basicauth/client]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlphttp]}}
"""


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_receiver_takes_htpasswd_users_and_the_exporter_sends_client_auth(spanhost, tmp):
    with open(f"{tmp}/htpasswd", "w") as f:
        f.write("# users\nfile-user:file-pass\n")
    server = spanhost(SERVER, env={"BASIC_AUTH_USERNAME": "env-user", "BASIC_AUTH_PASSWORD": "s3cret"})
    assert requests.post(server.url, json=otlp_json(1), headers=basic("env-user", "s3cret"), timeout=10).status_code == 200
    assert requests.post(server.url, json=otlp_json(1), headers=basic("file-user", "file-pass"), timeout=10).status_code == 200
    for headers in [basic("env-user", "wrong"), basic("nobody", "s3cret"), {}, {"Authorization": "Bearer s3cret"}]:
        assert requests.post(server.url, json=otlp_json(1), headers=headers, timeout=10).status_code == 401, headers
    client = spanhost(CLIENT % ("file-user", "file-pass", f"http://127.0.0.1:{server.receiver_port}"))
    assert requests.post(client.url, json=otlp_json(3), timeout=10).status_code == 200
    assert wait_for(lambda: len(read_file_export(f"{tmp}/server.jsonl")) == 5, timeout=20)


def test_hashed_htpasswd_entries_and_a_client_with_server_users_are_refused(tmp):
    with open(f"{tmp}/htpasswd", "w") as f:
        f.write("admin:$2y$05$Kj6tnzEGdm3c2N5DtCoGvOEE5ryCBs6T2p0bqSRMu3cCR8mK9Ie16\n")
    path = os.path.join(tmp, "c.yaml")
    with open(path, "w") as f:
        f.write(SERVER.format(tmp=tmp, receiver="127.0.0.1:0", admin=f"127.0.0.1:{free_port()}", plugins=PLUGINS))
    env = {**os.environ, "BASIC_AUTH_USERNAME": "u", "BASIC_AUTH_PASSWORD": "p"}
    out = subprocess.run([SPANHOSTD, "--config", path], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode != 0 and "hashed htpasswd passwords are not supported by spanhost" in out.stderr, out.stderr
    with open(path, "w") as f:
        f.write(CLIENT.replace("client_auth:\n      username: %s\n      password: %s", "htpasswd: {{inline: 'a:b'}}")
                .replace("%s", "http://127.0.0.1:1").format(receiver="127.0.0.1:0", admin="127.0.0.1:0", plugins="/nonexistent")
                .replace("basicauth/client", "basicauth/server"))
    out = subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "holds a server's users (htpasswd); a client sends client_auth" in out.stderr, out.stderr
