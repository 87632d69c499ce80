"""Numbers in a config: every numeric key of the host, and of the shipped plugins a Collector
config uses most, given 1e30, -1, .inf, .nan and an integer past 64 bits, is a config error
naming the key, from `--check` and from a reload, and never a trap. A worker that read
`limit_mib: 1e30` once died of SIGILL, and so did every worker restarted on the same file."""
import os
import subprocess

import requests

from conftest import PLUGINS, SPANHOSTD

BASE = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:0"
        max_request_body_size: {max_request_body_size}
        max_connections: {max_connections}
        max_spans_per_request: {max_spans_per_request}
        read_timeout: {read_timeout}
processors:
  batch: {{send_batch_size: {send_batch_size}, timeout: {batch_timeout}}}
  probabilistic_sampler: {{sampling_percentage: {sampling_percentage}}}
exporters:
  file:
    path: "{tmp}/out.jsonl"
    retry_on_failure: {{initial_interval: {initial_interval}}}
    sending_queue: {{queue_size: {queue_size}, num_consumers: {num_consumers}}}
plugins: {{dir: "{plugins}"}}
service:
  shutdown_timeout: {shutdown_timeout}
  preflight_timeout: {preflight_timeout}
  memory_limiter: {{limit_mib: {limit_mib}}}
  supervisor: {{quarantine_after_crashes: {quarantine_after_crashes}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch, probabilistic_sampler], exporters: [file]}}
"""

GOOD = {"max_request_body_size": "1048576", "max_connections": "100", "max_spans_per_request": "1000", "read_timeout": "5s",
        "send_batch_size": "512", "batch_timeout": "1s", "sampling_percentage": "50", "initial_interval": "1s", "queue_size": "100",
        "num_consumers": "2", "shutdown_timeout": "5s", "preflight_timeout": "30s", "limit_mib": "512",
        "quarantine_after_crashes": "3"}

# The dotted key each placeholder is, as an error names it.
KEYS = {"max_request_body_size": "receivers.otlp.protocols.http.max_request_body_size",
        "max_connections": "receivers.otlp.protocols.http.max_connections",
        "max_spans_per_request": "receivers.otlp.protocols.http.max_spans_per_request",
        "read_timeout": "receivers.otlp.protocols.http.read_timeout",
        "send_batch_size": ("processors.batch", "send_batch_size"),
        "batch_timeout": ("processors.batch", "timeout"),
        "sampling_percentage": ("processors.probabilistic_sampler", "sampling_percentage"),
        "initial_interval": "exporters.file.retry_on_failure.initial_interval", "queue_size": "exporters.file.sending_queue.queue_size",
        "num_consumers": "exporters.file.sending_queue.num_consumers", "shutdown_timeout": "service.shutdown_timeout",
        "preflight_timeout": "service.preflight_timeout", "limit_mib": "service.memory_limiter.limit_mib",
        "quarantine_after_crashes": "service.supervisor.quarantine_after_crashes"}

BAD = ["1e30", "-1", ".inf", "-.inf", ".nan", "99999999999999999999999", "9223372036854775807"]
# As in the Collector, a percentage above 100 samples everything; it must still be a float32.
BAD_FOR = {"sampling_percentage": ["-1", ".inf", "-.inf", ".nan", "1e39"]}


def write(tmp, name, values):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(BASE.format(tmp=tmp, plugins=PLUGINS, **values))
    return path


def check(path):
    return subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=120)


def test_the_base_config_is_valid(tmp):
    run = check(write(tmp, "good.yaml", GOOD))
    assert run.returncode == 0, run.stderr


def test_every_numeric_key_refuses_values_out_of_range_naming_the_key(tmp):
    problems = []
    for placeholder, key in KEYS.items():
        for value in BAD_FOR.get(placeholder, BAD):
            run = check(write(tmp, "bad.yaml", {**GOOD, placeholder: value}))
            output = run.stdout + run.stderr
            named = all(part in output for part in (key if isinstance(key, tuple) else (key,)))
            if run.returncode != 2 or not named or "Backtrace" in output or "Fatal error" in output:
                problems.append(f"{key}: {value}: exit {run.returncode}: {output.strip()[-300:]}")
    assert not problems, "\n".join(problems)


def test_a_reload_to_an_infinite_memory_limit_fails_and_the_server_serves_on(spanhost, tmp):
    text = BASE.format(tmp=tmp, plugins=PLUGINS, **GOOD).replace('"127.0.0.1:0"', '"RECEIVER"') + 'admin: {endpoint: "ADMIN"}\n'
    host = spanhost(text.replace("{", "{{").replace("}", "}}").replace("RECEIVER", "{receiver}").replace("ADMIN", "{admin}"))
    worker = host.server_pid
    with open(host.config_path) as f:
        text = f.read()
    for value in ("1e30", ".inf"):
        with open(host.config_path, "w") as f:
            f.write(text.replace("limit_mib: 512", f"limit_mib: {value}"))
        r = requests.post(host.admin + "/-/reload", json={}, timeout=60)
        assert r.status_code == 400 and "service.memory_limiter.limit_mib" in r.text, r.text
    assert requests.post(host.url, json={"resourceSpans": []}, timeout=10).status_code == 200
    assert host.server_pid == worker, "the worker was restarted"
