"""Collector configs as Collector users write them: YAML integers with underscores, the nop
receiver and exporter, an unset ${VAR} named in the error it causes, Collector keys spanhost
does not implement refused as such (not as typos), and the kafka components' Collector
defaults (brokers localhost:9092, protocol_version)."""
import os
import subprocess

import requests

from conftest import SPANHOSTD, wait_for
from test_data_path import otlp_json


def check(tmp, text, unset=()):
    path = os.path.join(tmp, "c.yaml")
    with open(path, "w") as f:
        f.write(text.replace("{tmp}", tmp))
    env = {k: v for k, v in os.environ.items() if k not in unset}
    out = subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60, env=env)
    return out.returncode, out.stdout + out.stderr


def test_underscored_integers_and_the_nop_components_run(spanhost, tmp):
    # The Collector's examples write 100_000; the nop receiver takes nothing, the nop exporter discards.
    host = spanhost("""
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
        max_spans_per_request: 100_000
  nop:
exporters:
  nop:
  file:
    path: {tmp}/out.jsonl
admin:
  endpoint: {admin}
plugins:
  dir: {plugins}
service:
  pipelines:
    traces:
      receivers: [otlp, nop]
      exporters: [nop, file]
""")
    assert requests.post(host.url, json=otlp_json(3), timeout=10).status_code == 200
    assert wait_for(lambda: os.path.exists(f"{tmp}/out.jsonl") and open(f"{tmp}/out.jsonl").read().count("spanId") == 3)


def test_an_unset_variable_is_named_in_the_error_it_causes(tmp):
    code, out = check(tmp, """
receivers:
  zipkin:
    endpoint: ${ZIPKIN_ENDPOINT}
exporters:
  file: {path: "{tmp}/x.jsonl"}
service:
  pipelines:
    traces: {receivers: [zipkin], exporters: [file]}
""", unset=["ZIPKIN_ENDPOINT"])
    assert code != 0 and "${ZIPKIN_ENDPOINT} is not set" in out, out


def test_collector_keys_spanhost_does_not_implement_are_named_as_such(tmp):
    cases = [
        ("receivers:\n  zipkin:\n    parse_string_tags: true", "zipkin",
         "receivers.zipkin.parse_string_tags: Collector key `parse_string_tags` is not supported by spanhost"),
        ("receivers:\n  otlp:\n    protocols:\n      http:\n        cors: {allowed_origins: ['*']}", "otlp",
         "Collector key `cors` is not supported by spanhost"),
        ("receivers:\n  kafka:\n    auth: {sasl: {mechanism: PLAIN}}", "kafka",
         "Collector key `auth` is not supported by spanhost: set librdkafka's security.protocol"),
    ]
    for receivers, rid, message in cases:
        code, out = check(tmp, f"""
{receivers}
exporters:
  file: {{path: "{{tmp}}/x.jsonl"}}
service:
  pipelines:
    traces: {{receivers: [{rid}], exporters: [file]}}
""")
        assert code != 0 and message in out, (receivers, out)
    for exporter, message in [("otlphttp: {endpoint: 'http://127.0.0.1:4318', proxy_url: 'http://proxy:3128'}",
                               "exporters.otlphttp.proxy_url: Collector key `proxy_url` is not supported by spanhost"),
                              ("otlp_http/b: {endpoint: 'http://127.0.0.1:4318', metrics_endpoint: 'http://x'}",
                               "Collector key `metrics_endpoint` is not supported by spanhost: spanhost carries traces only")]:
        name = exporter.split(":")[0]
        code, out = check(tmp, f"""
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:0"}}}}}}
exporters:
  {exporter}
plugins: {{dir: "{os.path.join(os.path.dirname(SPANHOSTD), '..', 'plugins')}"}}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [{name}]}}
""")
        assert code != 0 and message in out, (exporter, out)
    # A real typo is still a typo.
    code, out = check(tmp, """
receivers:
  zipkin:
    endpont: 127.0.0.1:9411
exporters:
  file: {path: "{tmp}/x.jsonl"}
service:
  pipelines:
    traces: {receivers: [zipkin], exporters: [file]}
""")
    assert code != 0 and "receivers.zipkin.endpont: unknown key" in out, out


def test_kafka_receiver_takes_the_collectors_defaults_and_protocol_version(tmp):
    code, out = check(tmp, """
receivers:
  kafka:
    protocol_version: 2.1.0
exporters:
  file: {path: "{tmp}/x.jsonl"}
service:
  pipelines:
    traces: {receivers: [kafka], exporters: [file]}
""")
    assert code == 0, out
