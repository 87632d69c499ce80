"""make bench: OTLP/HTTP protobuf load (keep-alive, 100 spans a request, 10 attributes a span)
against spanhostd running three C processors into the null exporter, and the same load against
the baseline server that reads bodies without decoding them. Loopback only; each run is bounded
by its duration. spanhostd runs with --no-supervise, so its RSS is the server's own (the
supervisor is not on the data path: the worker accepts on the sockets it was handed)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import requests

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

BUILD = os.environ.get("SPANHOST_BUILD", "build")
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
SPANS_PER_REQUEST = 100

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  attributes/env:
    actions:
      - {{key: deployment.environment, value: bench, action: upsert}}
  attributes/scrub:
    actions:
      - {{key: http.user_agent, action: delete}}
      - {{key: http.route.copy, from_attribute: http.route, action: insert}}
  example_processor: {{}}
exporters:
  null:
    sending_queue:
      queue_size: 5000
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [attributes/env, attributes/scrub, example_processor]
      exporters: [null]
"""


KAFKA_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  kafka:
    brokers: [{brokers}]
    topic: otlp_spans
    linger_ms: 1
    sending_queue:
      queue_size: 200
      num_consumers: 8
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [kafka]
"""


CHAIN_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  attributes/hash:
    actions:
      - {{key: http.user_agent, action: hash}}
  filter/health:
    spans:
      - {{attribute: http.route, equals: /health}}
  probabilistic_sampler:
    sampling_percentage: 50
exporters:
  null:
    sending_queue: {{queue_size: 5000}}
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [attributes/hash, filter/health, probabilistic_sampler]
      exporters: [null]
"""

# Expressions: the transform statements of README's example (six on spans, one on the
# resource), and a filter whose condition calls a plugin's function (through libffi) per span.
TRANSFORM_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  transform:
    trace_statements:
      - context: span
        conditions: ['attributes["http.route"] != nil']
        statements:
          - set(attributes["route.group"], "api") where IsMatch(attributes["http.route"], "^/api/")
          - delete_key(attributes, "http.request.header.authorization")
          - replace_pattern(attributes["http.url"], "token=[^&]+", "token=***")
          - truncate_all(attributes, 256)
          - limit(attributes, 64, ["service.name"])
          - set(status.code, 2) where attributes["http.status_code"] >= 500
      - context: resource
        statements: ['set(attributes["deployment.environment"], "prod")']
exporters:
  null:
    sending_queue: {{queue_size: 5000, num_consumers: 4}}
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [transform]
      exporters: [null]
"""

# The Collector's flat form: statements whose span. prefixes name their context, calling the
# built-in converters Concat and SHA256 on every span.
TRANSFORM_FLAT_CONFIG = TRANSFORM_CONFIG.replace("""      - context: span
        conditions: ['attributes["http.route"] != nil']
        statements:
          - set(attributes["route.group"], "api") where IsMatch(attributes["http.route"], "^/api/")
          - delete_key(attributes, "http.request.header.authorization")
          - replace_pattern(attributes["http.url"], "token=[^&]+", "token=***")
          - truncate_all(attributes, 256)
          - limit(attributes, 64, ["service.name"])
          - set(status.code, 2) where attributes["http.status_code"] >= 500
      - context: resource
        statements: ['set(attributes["deployment.environment"], "prod")']
""", """      - set(span.attributes["route.key"], Concat([span.attributes["http.method"], span.attributes["http.route"]], " "))
      - set(span.attributes["peer.hash"], SHA256(span.attributes["net.peer.name"])) where span.attributes["net.peer.name"] != nil
""")

FUNCTION_FILTER_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  filter:
    traces:
      span: ['geo_country(attributes["net.peer.name"]) == "KR"']
exporters:
  null:
    sending_queue: {{queue_size: 5000, num_consumers: 4}}
plugins:
  dir: {plugins}
  functions: [example_functions]
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [filter]
      exporters: [null]
"""

# Alerts under load: every span goes through the rules and the error_flow processor; a side
# sender adds error spans with distinct names (so each is its own notification).
ALERT_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  error_flow: {{}}
exporters:
  null:
    sending_queue: {{queue_size: 5000}}
notifiers:
  log: {{output: stdout}}
rules:
  error_span: {{}}
  error_rate: {{}}
  latency: {{}}
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [error_flow]
      exporters: [null]
      notifiers: [log]
      rules: [error_span, error_rate, latency]
"""

# The sending queue alone: straight into null, with the queue in memory or on disk.
QUEUE_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  null:
    sending_queue: {{queue_size: 5000, %s}}
%s
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [null]
"""

TAIL_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  tail_sampling:
    decision_wait: 60s
    num_traces: 10000
    policies:
      - {{name: errors, type: status_code, status_codes: [ERROR]}}
      - {{name: rest, type: probabilistic, sampling_percentage: 10}}
exporters:
  null: ~
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [null]
"""


ZIPKIN_CONFIG = """
receivers:
  zipkin:
    endpoint: 127.0.0.1:{port}
exporters:
  null:
    sending_queue: {{queue_size: 5000}}
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [zipkin]
      exporters: [null]
"""


KAFKA_CONSUMER_CONFIG = """
receivers:
  kafka:
    brokers: [{brokers}]
    topics: [consume_bench]
    group_id: bench
    initial_offset: earliest
exporters:
  null:
    sending_queue: {{queue_size: 5000}}
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [null]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_body(first_trace=1):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in [("service.name", "bench-service"), ("host.name", "bench-host"), ("telemetry.sdk.language", "python")]:
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = k, v
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "bench", "1.0.0"
    for i in range(SPANS_PER_REQUEST):
        sp = ss.spans.add()
        sp.trace_id = (first_trace + i // 10).to_bytes(16, "big")
        sp.span_id = (i + 1).to_bytes(8, "big")
        if i % 10:
            sp.parent_span_id = (i - i % 10 + 1).to_bytes(8, "big")
        sp.name = f"GET /api/v1/items/{i % 7}"
        sp.kind = 2
        sp.start_time_unix_nano = 1_700_000_000_000_000_000 + i * 1000
        sp.end_time_unix_nano = sp.start_time_unix_nano + 250_000
        attrs = [("http.method", "GET"), ("http.route", "/api/v1/items/{id}"), ("http.user_agent", "bench/1.0"),
                 ("net.peer.name", "10.0.0.1"), ("db.system", "postgresql"), ("component", "http")]
        for k, v in attrs:
            kv = sp.attributes.add()
            kv.key, kv.value.string_value = k, v
        for k, v in [("http.status_code", 200), ("http.response_content_length", 1234), ("thread.id", 7)]:
            kv = sp.attributes.add()
            kv.key, kv.value.int_value = k, v
        kv = sp.attributes.add()
        kv.key, kv.value.bool_value = "cache.hit", i % 2 == 0
    return req.SerializeToString()


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wrk(port, script, path="/v1/traces"):
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "-s", script,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=DURATION + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99), "non2xx": int(errors.group(1)) if errors else 0}


def run(name, cmd, port, script, env=None):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    try:
        wait_port(port, proc)
        result = wrk(port, script)
        result["rss"] = peak_rss_mib(proc.pid)
        result["name"] = name
        return result, proc
    except Exception:
        proc.kill()
        raise


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# Processors that hold spans, each set to hold a whole burst: (name, YAML, gauge of what is held).
HELD_BURST_PROCESSORS = [
    ("tail_sampling", """  tail_sampling:
    decision_wait: 10s
    num_traces: 200000
    policies:
      - {name: errors, type: status_code, status_codes: [ERROR]}
      - {name: rest, type: probabilistic, sampling_percentage: 10}""", "traces_held"),
    ("error_flow", """  error_flow:
    wait: 10s
    num_traces: 200000""", "traces_held"),
]

HELD_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
{processor}
exporters:
  null: ~
plugins:
  dir: {plugins}
admin:
  endpoint: 127.0.0.1:{admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [{name}]
      exporters: [null]
"""


def one_span_traces_body(first, count):
    """An OTLP request of `count` one-span traces with ids first+1 .. first+count."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "burst"
    ss = rs.scope_spans.add()
    for t in range(first, first + count):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id = (t + 1).to_bytes(16, "big"), (t + 1).to_bytes(8, "big")
        sp.name, sp.start_time_unix_nano, sp.end_time_unix_nano = "GET /burst", 1, 2
    return req.SerializeToString()


def start_held(tmp, plugins, name, processor):
    port, admin = free_port(), free_port()
    cfg = os.path.join(tmp, f"held-{name}.yaml")
    with open(cfg, "w") as f:
        f.write(HELD_CONFIG.format(port=port, admin=admin, plugins=plugins, name=name, processor=processor))
    proc = subprocess.Popen([os.path.join(BUILD, "bin", "spanhostd"), "--no-supervise", "--config", cfg],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "SPANHOST_LOG_LEVEL": "error"})
    status = lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=10).read())
    wait_port(port, proc)
    return proc, port, status


def held_burst(tmp, plugins, name, processor, held_gauge, spans=100_000, per_request=1000):
    """A burst of one-span traces held by one processor, then let go: batch memory per held
    span, RSS while held, and RSS after against where it started."""
    proc, port, status = start_held(tmp, plugins, name, processor)
    gauges = lambda: status()["pipelines"][0]["processors"][0].get("gauges", {})
    try:
        time.sleep(1)
        start = rss_mib(proc.pid)
        session = requests.Session()
        for first in range(0, spans, per_request):
            session.post(f"http://127.0.0.1:{port}/v1/traces", data=one_span_traces_body(first, per_request),
                         headers={"Content-Type": "application/x-protobuf"}, timeout=30)
        held_status = status()
        held = held_status["pipelines"][0]["processors"][0].get("gauges", {}).get(held_gauge, 0) if held_gauge else spans
        batch_bytes = held_status["memory"]["batchBytes"]
        peak = rss_mib(proc.pid)
        deadline = time.time() + 60
        while time.time() < deadline and (status()["memory"]["batchBytes"] > 1 << 20 or
                                          (held_gauge and gauges().get(held_gauge, 0))):
            time.sleep(0.5)
        time.sleep(5)  # the trimmer looks every 2 s
        after = rss_mib(proc.pid)
        return {"name": name, "held": held, "per_span": batch_bytes / max(held, 1), "start": start, "peak": peak, "after": after}
    finally:
        proc.kill()
        proc.wait()


def decision_timing(tmp, plugins, rate=100_000, seconds=5, per_request=1000, senders=4):
    """New one-span traces at `rate` a second into tail_sampling with decision_wait 1s: how many
    were decided early (evicted because num_traces was reached) or late (more than 10% past the
    wait), and the largest lag. Bodies are made before the clock starts."""
    processor = HELD_BURST_PROCESSORS[0][1].replace("decision_wait: 10s", "decision_wait: 1s").replace(
        "num_traces: 200000", "num_traces: 1000000")
    proc, port, status = start_held(tmp, plugins, "tail_sampling", processor)
    try:
        bodies = [one_span_traces_body(first, per_request) for first in range(0, rate * seconds, per_request)]
        interval = per_request / rate
        began = time.time()
        lock, next_index = threading.Lock(), [0]

        def send():
            session = requests.Session()
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(bodies):
                    return
                delay = began + i * interval - time.time()
                if delay > 0:
                    time.sleep(delay)
                session.post(f"http://127.0.0.1:{port}/v1/traces", data=bodies[i],
                             headers={"Content-Type": "application/x-protobuf"}, timeout=30)
        threads = [threading.Thread(target=send) for _ in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent_rate = len(bodies) * per_request / (time.time() - began)
        time.sleep(3)
        c = status()["pipelines"][0]["processors"][0]["counters"]
        return {"rate": sent_rate, "decided": c.get("traces_sampled", 0) + c.get("traces_dropped", 0),
                "early": c.get("evicted_early", 0), "late": c.get("traces_decided_late", 0),
                "lag_max_ms": c.get("decision_lag_max_ms", 0)}
    finally:
        proc.kill()
        proc.wait()


def print_table(results, base, host):
    print(f"\nOTLP/HTTP protobuf, {SPANS_PER_REQUEST} spans/request, 10 attributes/span, {CONNECTIONS} keep-alive connections, {DURATION}s each")
    print("spans/s counts requests answered 200 only; non-2xx are 503s from a full exporter queue")
    print(f"{'target':42} {'spans/s':>12} {'req/s':>10} {'x baseline':>10} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS MiB':>13} {'non-2xx':>8}")
    for r in results:
        ok_rps = r['rps'] - r['non2xx'] / DURATION
        print(f"{r['name']:42} {ok_rps * SPANS_PER_REQUEST:12,.0f} {r['rps']:10,.0f} {ok_rps / base['rps']:10.2f} "
              f"{r['p50']:8.2f} {r['p99']:8.2f} {r['rss']:13.1f} {r['non2xx']:8d}")
    print(f"spanhostd / baseline throughput: {host['rps'] / base['rps']:.2f}")


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: run `make deps`")
    tmp = tempfile.mkdtemp(prefix="spanhost-bench-")
    body_path = os.path.join(tmp, "body.pb")
    with open(body_path, "wb") as f:
        f.write(request_body())
    script = os.path.join(tmp, "post.lua")
    with open(script, "w") as f:
        f.write('local f = io.open("%s", "rb")\nwrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n'
                'wrk.headers["Content-Type"] = "application/x-protobuf"\n' % body_path)

    results = []
    port = free_port()
    base, proc = run("baseline (read body, no decode)", [os.path.join(BUILD, "bin", "spanhost-baseline"), str(port)], port, script)
    proc.kill()
    proc.wait()
    results.append(base)

    port, admin = free_port(), free_port()
    cfg = os.path.join(tmp, "bench.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(port=port, admin=admin, plugins=os.path.abspath(os.path.join(BUILD, "plugins"))))
    host, proc = run("spanhostd: 3 C processors -> null", [os.path.join(BUILD, "bin", "spanhostd"), "--no-supervise", "--config", cfg],
                     port, script, env={"SPANHOST_LOG_LEVEL": "warning"})
    status = urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=10).read().decode()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    results.append(host)
    exported = re.search(r'"discarded_spans" : (\d+)', status)

    plugins = os.path.abspath(os.path.join(BUILD, "plugins"))

    def run_config(name, template):
        port, admin = free_port(), free_port()
        with open(cfg, "w") as f:
            f.write(template.format(port=port, admin=admin, plugins=plugins))
        result, proc = run(name, [os.path.join(BUILD, "bin", "spanhostd"), "--no-supervise", "--config", cfg], port, script,
                           env={"SPANHOST_LOG_LEVEL": "error"})
        status = urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=10).read().decode()
        proc.kill()  # the held traces are not the point here; no drain
        proc.wait()
        return result, status

    if os.environ.get("BENCH_ONLY") == "queues":
        # The sending queues alone, each policy twice, interleaved: memory against disk in one run.
        runs = []
        for round_ in (1, 2):
            for label, setting in [("memory", "num_consumers: 4"), ("disk, fsync every 1s", "storage: %s/q1-%d, fsync: 1s" % (tmp, round_)),
                                   ("disk, fsync every batch", "storage: %s/q2-%d, fsync: always" % (tmp, round_))]:
                result, _ = run_config(f"null exporter, {label} queue (round {round_})", QUEUE_CONFIG % (setting, ""))
                runs.append((label, result))
        print_table([r for _, r in runs], base, host)
        for label in ("disk, fsync every 1s", "disk, fsync every batch"):
            disk = sorted(r["rps"] for l, r in runs if l == label)
            memory = sorted(r["rps"] for l, r in runs if l == "memory")
            print(f"{label}: {sum(disk) / sum(memory):.2f}x the memory queue (two rounds each)")
        return

    chain, _ = run_config("attributes(hash) -> filter -> sampler", CHAIN_CONFIG)
    results.append(chain)
    # The expression lines and the plain pipeline they are compared with, measured side by side.
    null, _ = run_config("null exporter (beside the expression lines)", QUEUE_CONFIG % ("num_consumers: 4", ""))
    transform, _ = run_config("transform (6 + 1 statements) -> null", TRANSFORM_CONFIG)
    flat, _ = run_config("transform, flat form, Concat + SHA256 -> null", TRANSFORM_FLAT_CONFIG)
    function_filter, _ = run_config("filter calling a plugin function -> null", FUNCTION_FILTER_CONFIG)
    results += [null, transform, flat, function_filter]
    expressions = (f"expressions, throughput against the plain null pipeline: transform {transform['rps'] / null['rps']:.2f}, "
                   f"flat transform with Concat and SHA256 {flat['rps'] / null['rps']:.2f}, "
                   f"filter with a plugin function {function_filter['rps'] / null['rps']:.2f}")
    if os.environ.get("BENCH_ONLY") == "core":
        print_table(results, base, host)
        print(expressions)
        return

    # Sending queues: in memory, then on disk with each fsync policy, in the same run.
    queue_results = []
    for label, setting in [("memory", "num_consumers: 4"),
                           ("disk, fsync every 1s", "storage: %s/q1, fsync: 1s" % tmp),
                           ("disk, fsync every batch", "storage: %s/q2, fsync: always" % tmp)]:
        result, _ = run_config(f"null exporter, {label} queue", QUEUE_CONFIG % (setting, ""))
        results.append(result)
        queue_results.append(result)

    # The cost of isolation: the null exporter in its own process (batches cross a socketpair
    # as OTLP protobuf), against the in-process memory-queue line above.
    isolated, _ = run_config("null exporter, isolation: process", QUEUE_CONFIG % ("num_consumers: 4", "    isolation: process"))
    results.append(isolated)

    # Alerts: the same load plus one error span every 50 ms from a side sender, each with its own
    # span name. What is measured is the delay from the error's arrival to the notifier call.
    port, admin = free_port(), free_port()
    with open(cfg, "w") as f:
        f.write(ALERT_CONFIG.format(port=port, admin=admin, plugins=plugins))
    stop_errors = threading.Event()
    errors_sent = [0]

    def send_errors():
        session = requests.Session()
        while not stop_errors.is_set():
            n = errors_sent[0]
            body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bench-errors"}}]},
                    "scopeSpans": [{"spans": [{"traceId": f"{n + 1:032x}", "spanId": "00000000000000aa", "name": f"op-{n}",
                                               "startTimeUnixNano": "1", "endTimeUnixNano": "2", "status": {"code": 2}}]}]}]}
            try:
                if session.post(f"http://127.0.0.1:{port}/v1/traces", json=body, timeout=5).status_code == 200:
                    errors_sent[0] += 1
            except requests.ConnectionError:
                pass
            time.sleep(0.05)

    sender = threading.Thread(target=send_errors)
    sender.start()
    try:
        alerts, proc = run("rules + error_flow -> null, log notifier", [os.path.join(BUILD, "bin", "spanhostd"), "--no-supervise", "--config", cfg],
                           port, script, env={"SPANHOST_LOG_LEVEL": "error"})
    finally:
        stop_errors.set()
        sender.join()
    time.sleep(2)  # the last errors wait out group_wait
    alert_status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=10).read())
    proc.kill()
    proc.wait()
    results.append(alerts)
    notifier = alert_status["notifiers"][0]

    # Tail sampling with 10,000 traces held: 1,000 request bodies of 10 traces each, sent in
    # turn, within one decision_wait, so every trace stays in flight and keeps growing.
    tail_script = os.path.join(tmp, "tail.lua")
    for i in range(1000):
        with open(os.path.join(tmp, f"tail{i}.pb"), "wb") as f:
            f.write(request_body(first_trace=1 + i * 10))
    with open(tail_script, "w") as f:
        f.write('local bodies = {}\nfor i = 0, 999 do\n  local f = io.open("%s/tail" .. i .. ".pb", "rb")\n'
                '  bodies[i + 1] = f:read("*a")\n  f:close()\nend\nlocal n = 0\n'
                'request = function()\n  n = n + 1\n  return wrk.format("POST", nil, '
                '{["Content-Type"] = "application/x-protobuf"}, bodies[(n %% 1000) + 1])\nend\n' % tmp)
    script_before, script = script, tail_script
    tail, tail_status = run_config("tail_sampling, 10,000 traces held", TAIL_CONFIG)
    script = script_before
    held = re.search(r'"traces_held" : (\d+)', tail_status)
    held_spans = re.search(r'"spans_held" : (\d+)', tail_status)
    held_bytes = re.search(r'"batchBytes" : (\d+)', tail_status)
    results.append(tail)
    bursts = [held_burst(tmp, plugins, *p) for p in HELD_BURST_PROCESSORS]
    timing = decision_timing(tmp, plugins)

    # Zipkin JSON: the same 100 spans as a Zipkin v2 array into the zipkin receiver -> null.
    zipkin_spans = []
    for i in range(SPANS_PER_REQUEST):
        zipkin_spans.append({"traceId": f"{i // 10 + 1:032x}", "id": f"{i + 1:016x}", "name": f"GET /api/v1/items/{i % 7}",
                             "kind": "SERVER", "timestamp": 1_700_000_000_000_000 + i, "duration": 250,
                             "localEndpoint": {"serviceName": "bench-service", "ipv4": "10.0.0.2", "port": 8080},
                             "tags": {"http.method": "GET", "http.route": "/api/v1/items/{id}", "http.status_code": "200",
                                      "component": "http", "db.system": "postgresql", "net.peer.name": "10.0.0.1",
                                      "http.user_agent": "bench/1.0", "thread.id": "7", "cache.hit": "true"}})
    with open(os.path.join(tmp, "zipkin.json"), "w") as f:
        json.dump(zipkin_spans, f)
    zipkin_script = os.path.join(tmp, "zipkin.lua")
    with open(zipkin_script, "w") as f:
        f.write('local f = io.open("%s/zipkin.json", "rb")\nwrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n'
                'wrk.headers["Content-Type"] = "application/json"\n' % tmp)
    port, admin = free_port(), free_port()
    with open(cfg, "w") as f:
        f.write(ZIPKIN_CONFIG.format(port=port, admin=admin, plugins=plugins))
    proc = subprocess.Popen([os.path.join(BUILD, "bin", "spanhostd"), "--no-supervise", "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "SPANHOST_LOG_LEVEL": "error"})
    wait_port(port, proc)
    zipkin = wrk(port, zipkin_script, path="/api/v2/spans")
    zipkin["rss"] = peak_rss_mib(proc.pid)
    zipkin["name"] = "zipkin JSON receiver -> null"
    proc.kill()
    proc.wait()
    results.append(zipkin)

    # Kafka: the same load into the kafka exporter and librdkafka's mock cluster (3 brokers, 3
    # partitions, in a helper process on this machine). Throughput is what the brokers acknowledged.
    mock = subprocess.Popen([os.path.join(BUILD, "test-bin", "kafka-mock"), "3", "otlp_spans:3"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    brokers = mock.stdout.readline().split()[1]
    port, admin = free_port(), free_port()
    with open(cfg, "w") as f:
        f.write(KAFKA_CONFIG.format(port=port, admin=admin, brokers=brokers,
                                    plugins=os.path.abspath(os.path.join(BUILD, "plugins"))))
    started = time.time()
    kafka, proc = run("spanhostd: kafka exporter -> mock cluster", [os.path.join(BUILD, "bin", "spanhostd"), "--no-supervise", "--config", cfg],
                      port, script, env={"SPANHOST_LOG_LEVEL": "error"})
    elapsed = time.time() - started
    status = urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=10).read().decode()
    acked = int(re.search(r'"exported" : (\d+)', status).group(1))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)

    mock.stdin.write("quit\n")
    mock.stdin.flush()
    mock.wait(timeout=30)

    # Kafka consumption: publish a fixed backlog into a fresh mock cluster, then time a kafka
    # receiver reading all of it. The mock keeps only about 5 MB per partition, so the backlog
    # is spread over 12 partitions and kept under that.
    mock = subprocess.Popen([os.path.join(BUILD, "test-bin", "kafka-mock"), "3", "consume_bench:12"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    brokers = mock.stdout.readline().split()[1]
    backlog_requests = 1200
    port, admin = free_port(), free_port()
    with open(cfg, "w") as f:
        f.write(KAFKA_CONFIG.replace("topic: otlp_spans", "topic: consume_bench")
                .format(port=port, admin=admin, brokers=brokers, plugins=plugins))
    producer = subprocess.Popen([os.path.join(BUILD, "bin", "spanhostd"), "--no-supervise", "--config", cfg], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "SPANHOST_LOG_LEVEL": "error"})
    wait_port(port, producer)
    with open(body_path, "rb") as f:
        body = f.read()
    session = requests.Session()
    for _ in range(backlog_requests):
        while session.post(f"http://127.0.0.1:{port}/v1/traces", data=body, timeout=30,
                           headers={"Content-Type": "application/x-protobuf"}).status_code != 200:
            time.sleep(0.05)
    backlog = backlog_requests * SPANS_PER_REQUEST
    deadline = time.time() + 60
    while time.time() < deadline and f'"exported" : {backlog}' not in urllib.request.urlopen(
            f"http://127.0.0.1:{admin}/status", timeout=10).read().decode():
        time.sleep(0.2)
    producer.send_signal(signal.SIGTERM)
    producer.wait(timeout=60)

    port, admin = free_port(), free_port()
    with open(cfg, "w") as f:
        f.write(KAFKA_CONSUMER_CONFIG.format(port=port, admin=admin, brokers=brokers, plugins=plugins))
    consumer = subprocess.Popen([os.path.join(BUILD, "bin", "spanhostd"), "--no-supervise", "--config", cfg], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "SPANHOST_LOG_LEVEL": "error"})
    consumed, first_at, last_at, started = 0, None, None, time.time()
    while time.time() - started < 120 and consumed < backlog:
        time.sleep(0.1)
        try:
            consumed_status = urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=10).read().decode()
            now_consumed = int((re.search(r'"accepted_spans" : (\d+)', consumed_status) or [0, 0])[1])
        except OSError:
            continue
        if now_consumed > consumed:
            consumed, last_at = now_consumed, time.time()
        if consumed and first_at is None:
            first_at = time.time()  # from the first message on: group join is not consumption
        if last_at and time.time() - last_at > 10:
            break  # the mock cluster lost the rest of the backlog (it keeps about 5 MB a partition)
    consume_seconds = max(0.1, (last_at or time.time()) - (first_at or started))
    consumer.kill()
    consumer.wait()
    mock.stdin.write("quit\n")
    mock.stdin.close()
    mock.wait(timeout=30)
    results.append(kafka)

    print_table(results, base, host)
    if exported:
        print(f"spans that reached the null exporter: {int(exported.group(1)):,}")
    delay = notifier.get("notifyDelayMs") or {}
    print(f"alerts: {errors_sent[0]:,} error spans sent during the load, {notifier['counters'].get('notified', 0):,} notified; "
          f"error arrival -> notifier call p50 {delay.get('p50', 0) / 1000:.2f} s, p99 {delay.get('p99', 0) / 1000:.2f} s "
          f"(group_wait 1s); throughput against the baseline: {alerts['rps'] / base['rps']:.2f}")
    memory_rps = queue_results[0]["rps"]
    print("persistent queue / memory queue throughput: " + ", ".join(
        f"{r['name'].split(', ', 1)[1]} {r['rps'] / memory_rps:.2f}" for r in queue_results[1:]))
    delivered = lambda r: r['rps'] - r['non2xx'] / DURATION  # requests answered 200 a second
    print(f"isolation: process / in-process null exporter throughput (answered 200): "
          f"{delivered(isolated) / delivered(queue_results[0]):.2f}")
    print(f"tail_sampling: {int(held.group(1)) if held else 0:,} traces held at the end of the run")
    for burst in bursts:
        print(f"held burst, {burst['name']}: {burst['held']:,} one-span traces held at {burst['per_span']:,.0f} B of batches each; "
              f"RSS {burst['start']:.0f} MiB at start, +{burst['peak'] - burst['start']:.0f} MiB while held, "
              f"{burst['after'] / burst['start']:.2f}x the start after they were let go")
    print(f"tail_sampling decisions at {timing['rate']:,.0f} new traces/s (decision_wait 1s): {timing['decided']:,} decided, "
          f"{timing['early']:,} early, {timing['late']:,} more than 10% late, largest lag {timing['lag_max_ms']} ms")
    if held and held_spans and held_bytes and int(held_spans.group(1)):
        # Wire size of one span of request_body(), from the body itself (spans dominate it).
        wire_span = len(request_body()) / SPANS_PER_REQUEST
        per_span = int(held_bytes.group(1)) / int(held_spans.group(1))
        print(f"held trace memory: {int(held_bytes.group(1)) / int(held.group(1)) / 1024:,.1f} KiB per trace, "
              f"{per_span:,.0f} B per held span = {per_span / wire_span:.2f}x its {wire_span:.0f} B on the wire")
    print(expressions)
    print(f"kafka receiver: {consumed / consume_seconds:,.0f} spans/s consumed from the mock cluster "
          f"({consumed:,} of {backlog:,} spans in {consume_seconds:.1f}s from the first message on)")
    print(f"kafka: {acked / elapsed:,.0f} spans/s acknowledged by the mock cluster "
          f"({acked:,} spans; the receiver answered 503 when the exporter queue was full: {kafka['non2xx']:,} requests)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
