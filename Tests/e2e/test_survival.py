"""A host that survives its plugins: a hung processor and a hung exporter are reported and
marked unhealthy, a flaky exporter is retried until it succeeds, an always-failing one is
circuit-broken, and meanwhile another pipeline keeps answering 200."""
import os
import shutil
import time

import requests

from conftest import PLUGINS, TEST_PLUGINS, wait_for
from test_bad_input import PROTO, request

CONFIG = """
receivers:
  otlp/good:
    protocols: {{http: {{endpoint: {receiver}}}}}
  otlp/bad:
    protocols: {{http: {{endpoint: 127.0.0.1:%d, request_timeout: 1s}}}}
processors:
  stall:
    call_timeout: 300ms
exporters:
  null: ~
  misbehave/hang:
    mode: hang
    call_timeout: 300ms
    sending_queue: {{queue_size: 2}}
  misbehave/flaky:
    mode: flaky
    failures: 4
    retry_on_failure: {{initial_interval: 10ms, max_interval: 40ms, max_elapsed_time: 10s}}
  misbehave/fail:
    mode: fail
    circuit_breaker: {{failure_threshold: 3, cool_down: 60s}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  shutdown_timeout: 1s
  pipelines:
    traces/good:
      receivers: [otlp/good]
      exporters: [null]
    traces/stalled:
      receivers: [otlp/bad]
      processors: [stall]
      exporters: [misbehave/hang]
    traces/flaky:
      receivers: [otlp/bad]
      exporters: [misbehave/flaky, misbehave/fail]
"""


def good_rate(s, seconds):
    """Requests/s the good pipeline answers 200 for, over a bounded loop."""
    session = requests.Session()
    body = request(["good"] * 50).SerializeToString()
    ok = 0
    end = time.time() + seconds
    while time.time() < end:
        r = session.post(s.url, data=body, headers=PROTO, timeout=5)
        assert r.status_code == 200, r.text
        ok += 1
    return ok / seconds


def test_misbehaving_plugins_do_not_stop_other_pipelines(spanhost, tmp):
    from conftest import free_port
    bad_port = free_port()
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins)
    shutil.copy(os.path.join(PLUGINS, "null.so"), plugins)
    for name in ["misbehave", "stall"]:
        shutil.copy(os.path.join(TEST_PLUGINS, name + ".so"), plugins)
    s = spanhost(CONFIG % bad_port, plugins_dir=plugins)
    bad = f"http://127.0.0.1:{bad_port}/v1/traces"
    before = good_rate(s, 1.5)

    # A batch that stalls the processor: answered 503 after request_timeout, not never.
    started = time.time()
    r = requests.post(bad, data=request(["stall"]).SerializeToString(), headers=PROTO, timeout=10)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    stalled_answer = time.time() - started

    def component(section, cid):
        st = s.status()
        items = st["exporters"] if section == "exporters" else [p for pl in st["pipelines"] for p in pl["processors"]]
        return next(c for c in items if c["id"] == cid)
    assert wait_for(lambda: component("processors", "stall")["health"] == "unhealthy", timeout=5)
    # While it is hung, that pipeline fails fast instead of piling up threads.
    started = time.time()
    r = requests.post(bad, data=request(["fine"]).SerializeToString(), headers=PROTO, timeout=10)
    assert r.status_code == 503 and b"unhealthy" in r.content
    fail_fast = time.time() - started

    during = good_rate(s, 1.5)
    print(f"\ngood pipeline: {before:.0f} req/s before, {during:.0f} req/s with a hung processor; "
          f"stalled request answered in {stalled_answer:.2f}s, next one in {fail_fast:.3f}s")

    counters = component("processors", "stall")["counters"]
    assert counters["hung_calls"] == 1
    assert "plugin call is hung" in s.log()


def test_hung_flaky_and_failing_exporters(spanhost, tmp):
    from conftest import free_port
    bad_port = free_port()
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins)
    shutil.copy(os.path.join(PLUGINS, "null.so"), plugins)
    for name in ["misbehave", "stall"]:
        shutil.copy(os.path.join(TEST_PLUGINS, name + ".so"), plugins)
    s = spanhost(CONFIG % bad_port, plugins_dir=plugins)
    bad = f"http://127.0.0.1:{bad_port}/v1/traces"
    before = good_rate(s, 1.5)

    codes = []
    for i in range(8):
        r = requests.post(bad, data=request([f"s{i}"]).SerializeToString(), headers=PROTO, timeout=10)
        codes.append(r.status_code)
    # The hung exporter's queue (2) fills: later requests are refused with 503, quickly.
    assert codes[:3] == [200, 200, 200] and 503 in codes

    def exporter(cid):
        return next(c for c in s.status()["exporters"] if c["id"] == cid)
    assert wait_for(lambda: exporter("misbehave/hang")["health"] == "unhealthy", timeout=5)
    # The bad receiver feeds both pipelines; the flaky one takes every batch, also those the
    # stalled pipeline refused (the client would retry those: at-least-once across pipelines).
    delivered = wait_for(lambda: exporter("misbehave/flaky")["counters"].get("delivered_spans") == len(codes)
                         and exporter("misbehave/flaky")["counters"], timeout=10)
    assert delivered, exporter("misbehave/flaky")
    assert exporter("misbehave/flaky")["counters"]["retried"] >= 1
    assert "failed" not in exporter("misbehave/flaky")["counters"]

    fail = exporter("misbehave/fail")
    assert fail["health"] == "circuit_open"
    assert fail["counters"]["failed"] == 3  # three calls failed, then the breaker opened
    assert fail["counters"]["unavailable"] >= 1  # not called during the cool-down: the batch waits
    assert fail["counters"]["circuit_opened"] == 1

    during = good_rate(s, 1.5)
    print(f"\ngood pipeline: {before:.0f} req/s before, {during:.0f} req/s with hung/flaky/failing exporters; "
          f"bad receiver answers: {codes}")
    s.stop()
    assert "undelivered" in s.log()
