"""Collector configs as Collector users write them: YAML integers with underscores, the nop
receiver and exporter, an unset ${VAR} named in the error it causes, Collector keys spanhost
does not implement refused as such (not as typos), and the kafka components' Collector
defaults (brokers localhost:9092, protocol_version)."""
import os
import subprocess

import requests

from conftest import SPANHOSTD, free_port, wait_for
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
                              ("otlp_http/b: {endpoint: 'http://127.0.0.1:4318', cookies: {enabled: true}}",
                               "Collector key `cookies` is not supported by spanhost: connection tuning of the Go HTTP client")]:
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


def test_memory_limiter_percentages_and_health_check_pipeline_check(tmp):
    code, out = check(tmp, """
extensions:
  health_check:
    check_collector_pipeline: {enabled: true, interval: 5m, exporter_failure_threshold: 5}
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 50
    spike_limit_percentage: 30
exporters:
  file: {path: "{tmp}/x.jsonl"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter], exporters: [file]}
""")
    assert code == 0, out
    code, out = check(tmp, """
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 20, spike_limit_percentage: 25}
exporters:
  file: {path: "{tmp}/x.jsonl"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter], exporters: [file]}
""")
    assert code != 0 and "spike_limit_percentage: must be below limit_percentage" in out, out


def test_bearertokenauth_as_the_collector_reads_it(spanhost, tmp):
    # The extension's README example sets token and filename: the file's token is the one, the
    # other ignored. `header` and an empty scheme: `X-Api-Key: <token>`.
    with open(f"{tmp}/token", "w") as f:
        f.write("from-file\n")
    zipkin_port = free_port()
    host = spanhost("""
extensions:
  bearertokenauth:
    token: "somerandomtoken"
    filename: "{tmp}/token"
  bearertokenauth/key:
    header: X-Api-Key
    scheme: ""
    token: "k1"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
        auth: {{authenticator: bearertokenauth}}
  zipkin:
    endpoint: 127.0.0.1:%d
    auth: {{authenticator: bearertokenauth/key}}
exporters:
  file:
    path: {tmp}/out.jsonl
admin:
  endpoint: {admin}
plugins:
  dir: {plugins}
service:
  extensions: [bearertokenauth, bearertokenauth/key]
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      exporters: [file]
""" % zipkin_port)
    assert requests.post(host.url, json=otlp_json(1), headers={"Authorization": "Bearer somerandomtoken"}, timeout=10).status_code == 401
    assert requests.post(host.url, json=otlp_json(1), headers={"Authorization": "Bearer from-file"}, timeout=10).status_code == 200
    zipkin = f"http://127.0.0.1:{zipkin_port}/api/v2/spans"
    assert requests.post(zipkin, json=[], headers={"Authorization": "Bearer k1"}, timeout=10).status_code == 401
    assert requests.post(zipkin, json=[], headers={"X-Api-Key": "k1"}, timeout=10).status_code == 202


def test_the_mistakes_of_independent_parts_are_reported_together(tmp):
    code, out = check(tmp, """
receivers:
  zipkin:
    endpont: 127.0.0.1:9411
  jaeger:
    protocols:
      grpc:
  otlp:
    protocols:
      http:
        max_spans_per_request: -1
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:4318
    auth: {authenticator: bearertokenauth/missing}
service:
  pipelines:
    traces: {receivers: [zipkin, jaeger, otlp], exporters: [otlphttp]}
""")
    assert code != 0, out
    for message in ["receivers.zipkin.endpont: unknown key", "receivers.jaeger.protocols.grpc: gRPC is not supported",
                    "receivers.otlp.protocols.http.max_spans_per_request: must be from 1",
                    "exporters.otlphttp.auth.authenticator: 'bearertokenauth/missing' is not an enabled extension"]:
        assert message in out, (message, out)


def test_other_signals_statements_and_conditions_are_accepted_and_never_run(spanhost, tmp):
    # As the transform and filter READMEs write them: one processor for traces, metrics and logs.
    host = spanhost("""
receivers:
  otlp: {{protocols: {{http: {{endpoint: "{receiver}"}}}}}}
processors:
  transform:
    error_mode: ignore
    trace_statements:
      - context: span
        statements:
          - set(attributes["seen"], true)
    metric_statements:
      - context: resource
        statements:
          - keep_keys(attributes, ["host.name"])
    log_statements:
      - context: resource
        statements:
          - keep_keys(attributes, ["service.name"])
  filter/ottl:
    error_mode: ignore
    traces:
      span:
        - 'name == "drop-me"'
    metrics:
      metric:
        - 'type == METRIC_DATA_TYPE_HISTOGRAM'
    logs:
      log_record:
        - 'IsMatch(body, ".*password.*")'
exporters:
  file: {{path: "{tmp}/out.jsonl"}}
admin: {{endpoint: "{admin}"}}
plugins: {{dir: "{plugins}"}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [transform, filter/ottl], exporters: [file]}}
""")
    body = otlp_json(2)
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = "drop-me"
    assert requests.post(host.url, json=body, timeout=10).status_code == 200
    assert wait_for(lambda: os.path.exists(f"{tmp}/out.jsonl") and '"seen"' in open(f"{tmp}/out.jsonl").read())
    text = open(f"{tmp}/out.jsonl").read()
    assert text.count("spanId") == 1 and "drop-me" not in text
