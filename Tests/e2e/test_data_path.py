"""The delivery promise: pipelines never see each other's changes, delivered batches leave
memory, spans held by processors are delivered, kept on disk or counted as lost (and the exit
code says which), one dead exporter can be kept from starving the others, and config values
cannot make the process fall over."""
import os
import signal
import subprocess
import time

import requests

from conftest import PLUGINS, SPANHOSTD, TEST_PLUGINS, read_file_export, wait_for


def otlp_json(n, start=0, attrs=None, service="svc"):
    spans = []
    for i in range(start, start + n):
        a = [{"key": "i", "value": {"intValue": str(i)}}]
        for k, v in (attrs or {}).items():
            a.append({"key": k, "value": {"stringValue": v}})
        spans.append({"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": f"op{i}",
                      "startTimeUnixNano": "1000", "endTimeUnixNano": "2000", "attributes": a})
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"spans": spans}]}]}


def cfg(text):
    """A config with YAML braces kept literal for the fixture's str.format."""
    text = text.replace("{", "{{").replace("}", "}}")
    for name in ("receiver", "admin", "plugins", "tmp"):
        text = text.replace("{{" + name + "}}", "{" + name + "}")
    return text


def fill(text, **values):
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


def post(host, body):
    return requests.post(host.url, json=body, timeout=10)


def counters(host, section, cid):
    for c in host.status()[section]:
        if c["id"] == cid:
            return c["counters"]
    return {}


def test_pipelines_sharing_a_receiver_never_see_each_others_changes(spanhost, tmp):
    host = spanhost(cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  attributes/mask: {actions: [{key: user.email, action: delete}]}
exporters:
  file/raw: {path: "{tmp}/raw.jsonl"}
  file/masked: {path: "{tmp}/masked.jsonl"}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces/raw: {receivers: [otlp], exporters: [file/raw]}
    traces/masked: {receivers: [otlp], processors: [attributes/mask], exporters: [file/masked]}
"""))
    for start in range(0, 3000, 100):
        assert post(host, otlp_json(100, start, {"user.email": "a@example.com"})).status_code == 200
    raw = wait_for(lambda: (lambda s: s if len(s) == 3000 else None)(read_file_export(f"{tmp}/raw.jsonl")), timeout=20)
    masked = wait_for(lambda: (lambda s: s if len(s) == 3000 else None)(read_file_export(f"{tmp}/masked.jsonl")), timeout=20)
    assert raw and masked
    keys = lambda sp: {a["key"] for a in sp["span"].get("attributes", [])}
    assert all("user.email" in keys(s) for s in raw), "the raw pipeline lost attributes the masked one deleted"
    assert not any("user.email" in keys(s) for s in masked)


def test_a_delivered_batch_leaves_memory_and_the_limiter_lets_go(spanhost, tmp):
    host = spanhost(cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}", max_request_body_size: 8388608}}}
exporters:
  "null": {}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  memory_limiter: {limit_mib: 16}
  pipelines:
    traces: {receivers: [otlp], exporters: ["null"]}
"""))
    # 150,000 spans with only their ids, 4.5 MB of protobuf: more than 16 MiB once decoded.
    span = b"\x0a\x10" + bytes(range(1, 17)) + b"\x12\x08" + bytes(range(1, 9))
    scope = (b"\x12" + encode_varint(len(span)) + span) * 150_000
    resource = b"\x12" + encode_varint(len(scope)) + scope
    body = b"\x0a" + encode_varint(len(resource)) + resource
    r = requests.post(host.url, data=body, headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert r.status_code == 200, r.text
    assert wait_for(lambda: counters(host, "exporters", "null").get("exported") == 150_000, timeout=20), host.status()
    assert wait_for(lambda: host.status()["memory"]["batchBytes"] < 1 << 20, timeout=10), host.status()["memory"]
    # The limiter is not left tripped: the next small request is taken.
    assert post(host, otlp_json(10)).status_code == 200


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


DEAD_BEHIND_BATCH = """
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  batch: {send_batch_size: 50, timeout: 100ms}
exporters:
  misbehave:
    mode: {mode}
    failures: 1000000000
    retry_on_failure: {initial_interval: 50ms, max_interval: 100ms, max_elapsed_time: 1h}
    sending_queue: {queue_size: 2{storage}}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  shutdown_timeout: 2s
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [misbehave]}
"""


def send_until_refused(host, requests_max=60):
    """Sends 20-span requests; returns how many spans were answered 200 and whether a 503 came."""
    accepted, refused = 0, 0
    for n in range(requests_max):
        r = post(host, otlp_json(20, n * 20))
        if r.status_code == 200:
            accepted += 20
        elif r.status_code == 503:
            refused += 1
        else:
            raise AssertionError(r.text)
    return accepted, refused


def test_spans_held_by_a_processor_in_front_of_a_dead_exporter_are_counted_as_lost(spanhost, tmp):
    host = spanhost(cfg(fill(DEAD_BEHIND_BATCH, mode="flaky", storage="")), plugins_dir=plugin_dir(tmp, "misbehave"))
    accepted, refused = send_until_refused(host)
    assert refused > 0, "the full queue never pushed back"
    host.proc.send_signal(signal.SIGTERM)
    code = host.wait_exit(30)
    log = host.log()
    assert code == 1, log
    line = [l for l in log.splitlines() if "shutdown finished" in l][-1]
    assert "accepted spans were lost" in line, line
    # Every span answered 200 is accounted for: nothing was delivered, so all are lost.
    assert f"misbehave: accepted {accepted}, delivered 0, kept on disk 0, lost {accepted}" in line, (accepted, line)


def test_spans_held_by_a_processor_go_to_the_persistent_queue_at_shutdown(spanhost, tmp):
    config = fill(DEAD_BEHIND_BATCH, storage=f', storage: "{tmp}/queue"')
    host = spanhost(cfg(fill(config, mode="flaky")), plugins_dir=plugin_dir(tmp, "misbehave"))
    accepted, refused = send_until_refused(host)
    assert refused > 0
    host.proc.send_signal(signal.SIGTERM)
    assert host.wait_exit(30) == 0, host.log()
    line = [l for l in host.log().splitlines() if "shutdown finished" in l][-1]
    assert "no accepted span was lost" in line and "lost 0" in line, line
    # The next start delivers them all.
    again = spanhost(cfg(fill(config, mode="ok")), plugins_dir=plugin_dir(tmp, "misbehave"))
    assert wait_for(lambda: counters(again, "exporters", "misbehave").get("delivered_spans", 0) >= accepted, timeout=20), \
        (accepted, again.status())
    assert counters(again, "exporters", "misbehave")["delivered_spans"] == accepted


def test_on_full_drop_keeps_a_dead_exporter_from_starving_a_healthy_one(spanhost, tmp):
    host = spanhost(cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  file: {path: "{tmp}/out.jsonl"}
  misbehave/dead:
    mode: hang
    sending_queue: {queue_size: 2, on_full: drop}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  shutdown_timeout: 1s
  pipelines:
    traces: {receivers: [otlp], exporters: [file, misbehave/dead]}
"""), plugins_dir=plugin_dir(tmp, "file", "misbehave"))
    answered = 0
    for n in range(50):
        r = post(host, otlp_json(10, n * 10))
        assert r.status_code == 200, r.text
        answered += 10
    spans = wait_for(lambda: (lambda s: s if len(s) == answered else None)(read_file_export(f"{tmp}/out.jsonl")), timeout=15)
    assert spans and len(spans) == answered
    dropped = counters(host, "exporters", "misbehave/dead").get("dropped_on_full", 0)
    assert dropped >= answered - 30, host.status()
    metrics = requests.get(host.admin + "/metrics", timeout=5).text
    assert "dropped_on_full" in metrics
    # The Collector's names carry the same figures, for dashboards built for it.
    series = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
              if line.startswith("otelcol_")}
    assert series['otelcol_receiver_accepted_spans{receiver="otlp",transport="http"}'] == answered
    assert series['otelcol_exporter_sent_spans{exporter="file"}'] == answered
    assert series['otelcol_exporter_enqueue_failed_spans{exporter="misbehave/dead"}'] == dropped
    assert series['otelcol_exporter_queue_capacity{exporter="misbehave/dead"}'] == 2
    assert series["otelcol_process_memory_rss"] > 0 and series["otelcol_process_uptime"] > 0


def test_sending_queue_disabled_exports_on_the_request(spanhost, tmp):
    host = spanhost(cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  misbehave: {mode: flaky, failures: 2, sending_queue: {enabled: false}}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [misbehave]}
"""), plugins_dir=plugin_dir(tmp, "misbehave"))
    # No queue: the exporter's retryable failures are the client's 503s, then it gets through.
    codes = [post(host, otlp_json(5)).status_code for _ in range(3)]
    assert codes == [503, 503, 200], codes
    assert counters(host, "exporters", "misbehave").get("delivered_spans") == 5


def test_shutdown_does_not_sleep_out_a_retry_backoff(spanhost, tmp):
    host = spanhost(cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  misbehave:
    mode: flaky
    failures: 1000000000
    retry_on_failure: {initial_interval: 120s, max_interval: 120s, max_elapsed_time: 1h}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  shutdown_timeout: 1s
  pipelines:
    traces: {receivers: [otlp], exporters: [misbehave]}
"""), plugins_dir=plugin_dir(tmp, "misbehave"))
    assert post(host, otlp_json(5)).status_code == 200
    assert wait_for(lambda: counters(host, "exporters", "misbehave").get("retried"), timeout=10)
    host.proc.send_signal(signal.SIGTERM)
    # Sleeping out the 120 s backoff would pass this bound; the drain deadline is 1 s.
    assert host.wait_exit(60) == 1
    assert "lost 5" in host.log()


def check(tmp, text, plugins=PLUGINS):
    path = os.path.join(tmp, "check.yaml")
    with open(path, "w") as f:
        f.write(fill(text, plugins=plugins))
    return subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60)


BASE = """
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}
processors:
{processors}
exporters:
  "null": {}
plugins: {dir: "{plugins}"}
service:
{service}
  pipelines:
    traces: {receivers: [otlp], {chain}exporters: ["null"]}
"""


def test_huge_durations_are_config_errors_not_traps(tmp):
    for service in ["  shutdown_timeout: 99999999999h", "  shutdown_timeout: 1e300"]:
        r = check(tmp, fill(BASE, processors="  {}", service=service, chain=""))
        assert r.returncode == 2 or r.returncode == 64, (r.returncode, r.stderr)
        assert "service.shutdown_timeout" in r.stderr and "too long" in r.stderr, r.stderr
    r = check(tmp, fill(BASE, processors="  batch: {timeout: 99999999999h}", service="", chain="processors: [batch], "))
    assert r.returncode != 0 and r.returncode > 0 and "timeout" in r.stderr, (r.returncode, r.stderr)
    text = fill(BASE, processors="  {}", service="", chain="").replace('"null": {}', '"null": {retry_on_failure: {max_interval: 99999999999h}}')
    r = check(tmp, text)
    assert r.returncode > 0 and "exporters.null.retry_on_failure.max_interval" in r.stderr, (r.returncode, r.stderr)


def test_unknown_keys_are_refused_for_host_and_plugins(tmp):
    r = check(tmp, fill(BASE, processors="  batch: {bogus_key: 7}", service="", chain="processors: [batch], "))
    assert r.returncode > 0, r.stderr
    assert "processors.batch.bogus_key: unknown key" in r.stderr and "send_batch_size" in r.stderr, r.stderr
    r = check(tmp, fill(BASE, processors="  probabilistic_sampler: {sampling_percentage: 10, bogus: proportional}",
                               service="", chain="processors: [probabilistic_sampler], "))
    assert r.returncode > 0 and "processors.probabilistic_sampler.bogus: unknown key" in r.stderr, r.stderr
    # A Collector key the plugin does not implement is named as such, not as a typo.
    r = check(tmp, fill(BASE, processors="  redaction: {allow_all_keys: true, url_sanitizer: {enabled: true}}",
                               service="", chain="processors: [redaction], "))
    assert r.returncode > 0 and "processors.redaction.url_sanitizer: Collector key `url_sanitizer` is not supported by spanhost" in r.stderr, r.stderr
    text = fill(BASE, processors="  {}", service="", chain="").replace('"null": {}', '"null": {sending_queue: {queue_sise: 5}}')
    r = check(tmp, text)
    assert r.returncode > 0 and "exporters.null.sending_queue.queue_sise: unknown key" in r.stderr, r.stderr
    # Nested keys of list items are checked too.
    r = check(tmp, fill(BASE, processors="  attributes: {actions: [{key: a, action: delete, valeu: x}]}", service="",
                               chain="processors: [attributes], "))
    assert r.returncode > 0 and "processors.attributes.actions.0.valeu: unknown key" in r.stderr, r.stderr


def plugin_dir(tmp, *names):
    """A plugin directory holding copies of the named first-party and test plugins."""
    import shutil
    d = os.path.join(tmp, "plugins")
    os.makedirs(d, exist_ok=True)
    for name in names:
        src = next(p for p in (os.path.join(PLUGINS, name + ".so"), os.path.join(TEST_PLUGINS, name + ".so")) if os.path.exists(p))
        shutil.copy(src, d)
    return d


def test_check_has_no_side_effects(tmp):
    plugins = plugin_dir(tmp, "file", "null")
    text = fill(BASE, processors="  {}", service="", chain="").replace(
        '"null": {}', f'"null": {{sending_queue: {{storage: "{tmp}/queue"}}}}\n  file: {{path: "{tmp}/out/spans.jsonl"}}'
    ).replace('exporters: ["null"]}', 'exporters: ["null", file]}')
    os.makedirs(os.path.join(tmp, "out"))
    cache = os.path.join(tmp, "cache")
    r = check(tmp, text.replace('plugins: {dir: "{plugins}"}', f'plugins: {{dir: "{{plugins}}", cache_dir: "{cache}"}}'), plugins=plugins)
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout
    # No queue directory, no exported file, no plugin cache.
    assert not os.path.exists(os.path.join(tmp, "queue")), os.listdir(tmp)
    assert not os.path.exists(os.path.join(tmp, "out", "spans.jsonl"))
    assert not os.path.exists(cache)


def test_check_survives_a_plugin_that_aborts_in_create_and_names_it(tmp):
    plugins = plugin_dir(tmp, "misbehave")
    text = fill(BASE, processors="  {}", service="", chain="").replace('"null": {}', "misbehave: {mode: abort}").replace(
        'exporters: ["null"]}', "exporters: [misbehave]}")
    r = check(tmp, text, plugins=plugins)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "exporters.misbehave" in r.stderr and "misbehave.so" in r.stderr and "SIGABRT" in r.stderr, r.stderr


INLINE = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  thread_tag: {}
exporters:
  file: {path: "{tmp}/out.jsonl", format: json}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [thread_tag], exporters: [file]}
""")


def thread_of(exported):
    return next(a["value"]["stringValue"] for a in exported["span"]["attributes"] if a["key"] == "thread")


def test_pipelines_that_never_block_run_on_the_event_loop_and_others_on_the_pool(spanhost, tmp):
    """A small uncompressed request whose processors declare SPANHOST_PLUGIN_NONBLOCKING runs on
    the event loop that read it; a compressed or large one, or one whose processor may block,
    runs on the pipeline pool (NIO names the threads NIO-ELT-* and TP-*)."""
    import gzip
    import json
    plugins = plugin_dir(tmp, "thread_tag", "file")
    out = os.path.join(tmp, "out.jsonl")

    def threads(first, count):
        names = {f"op{i}" for i in range(first, first + count)}
        got = wait_for(lambda: [sp for sp in read_file_export(out) if sp["span"]["name"] in names]
                       if len([sp for sp in read_file_export(out) if sp["span"]["name"] in names]) == count else None)
        assert got, read_file_export(out)
        return {thread_of(sp) for sp in got}

    s = spanhost(INLINE, plugins_dir=plugins)
    assert requests.post(s.url, json=otlp_json(5), timeout=10).status_code == 200
    assert all(t.startswith("NIO-ELT") for t in threads(0, 5))
    body = gzip.compress(json.dumps(otlp_json(5, start=5)).encode())
    assert requests.post(s.url, data=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
                         timeout=10).status_code == 200
    assert all(t.startswith("TP-") for t in threads(5, 5))
    big = otlp_json(1, start=10, attrs={"pad": "x" * (1 << 20)})
    assert requests.post(s.url, json=big, timeout=10).status_code == 200
    assert all(t.startswith("TP-") for t in threads(10, 1))
    s.stop()

    os.remove(out)
    s = spanhost(INLINE, plugins_dir=plugins, env={"THREAD_TAG_BLOCKING": "1"})
    assert requests.post(s.url, json=otlp_json(5), timeout=10).status_code == 200
    assert all(t.startswith("TP-") for t in threads(0, 5))


def test_a_plugin_that_declares_nonblocking_and_blocks_is_moved_to_the_pool(spanhost, tmp):
    """SPANHOST_PLUGIN_NONBLOCKING broken: one 300 ms call on the event loop, then the instance
    runs on the pool, logged once and shown at /status."""
    plugins = plugin_dir(tmp, "thread_tag", "file")
    out = os.path.join(tmp, "out.jsonl")
    s = spanhost(INLINE, plugins_dir=plugins, env={"THREAD_TAG_SLOW_MS": "300"})
    processor = lambda: s.status()["pipelines"][0]["processors"][0]
    assert processor()["nonblocking"] == "declared"
    slow = otlp_json(1)
    slow["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = "slow"
    assert requests.post(s.url, json=slow, timeout=10).status_code == 200
    assert processor()["nonblocking"] == "demoted" and processor()["counters"]["nonblocking_demoted"] == 1
    for n in range(3):
        assert requests.post(s.url, json=otlp_json(2, start=10 + 2 * n), timeout=10).status_code == 200
    spans = wait_for(lambda: len(read_file_export(out)) == 7 and read_file_export(out))
    assert spans, read_file_export(out)
    by_name = {sp["span"]["name"]: thread_of(sp) for sp in spans}
    assert by_name["slow"].startswith("NIO-ELT"), by_name
    assert all(t.startswith("TP-") for name, t in by_name.items() if name != "slow"), by_name
    assert s.log().count("declares SPANHOST_PLUGIN_NONBLOCKING but a call took too long") == 1, s.log()


HUNG = """
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  misbehave:
    mode: hang
    call_timeout: 500ms
    sending_queue: {queue_size: 100{on_full}}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  shutdown_timeout: 1s
  pipelines:
    traces: {receivers: [otlp], exporters: [misbehave]}
"""


def test_a_hung_exporter_takes_no_more_spans_and_its_call_is_in_the_exit_ledger(spanhost, tmp):
    """A call that never returns: the queue counts as full (503 with refuse), and at shutdown
    the spans inside the call are counted, so accepted = delivered + kept + lost."""
    host = spanhost(cfg(fill(HUNG, on_full="")), plugins_dir=plugin_dir(tmp, "misbehave"))
    assert post(host, otlp_json(4)).status_code == 200  # taken by the worker: its call hangs
    exporter = lambda: host.status()["exporters"][0]
    assert wait_for(lambda: exporter()["health"] == "unhealthy", timeout=10), exporter()
    codes = [post(host, otlp_json(10, 100 + 10 * n)).status_code for n in range(5)]
    assert codes == [503] * 5, codes
    host.proc.send_signal(signal.SIGTERM)
    assert host.wait_exit(30) == 1, host.log()
    line = [l for l in host.log().splitlines() if "shutdown finished" in l][-1]
    assert "misbehave: accepted 4, delivered 0, kept on disk 0, lost 4" in line, line


def test_a_hung_exporter_with_on_full_drop_drops_and_counts(spanhost, tmp):
    host = spanhost(cfg(fill(HUNG, on_full=", on_full: drop")), plugins_dir=plugin_dir(tmp, "misbehave"))
    assert post(host, otlp_json(4)).status_code == 200
    assert wait_for(lambda: host.status()["exporters"][0]["health"] == "unhealthy", timeout=10)
    for n in range(3):
        assert post(host, otlp_json(10, 100 + 10 * n)).status_code == 200
    assert host.status()["exporters"][0]["counters"]["dropped_on_full"] == 30
    host.proc.send_signal(signal.SIGTERM)
    assert host.wait_exit(30) == 1
    line = [l for l in host.log().splitlines() if "shutdown finished" in l][-1]
    assert "misbehave: accepted 34, delivered 0, kept on disk 0, lost 34" in line, line
