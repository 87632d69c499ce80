"""Lose nothing: a persistent sending queue keeps every span answered 200 through a backend
outage, a kill -9 and a damaged segment file; full queues answer 503 with Retry-After and a real
SDK client delivers everything once there is room; poison batches go to a dead-letter file."""
import glob
import json
import os
import signal
import subprocess
import threading
import time

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from conftest import TEST_PLUGINS, Spanhost, free_port, read_file_export, wait_for, whole_lines
from test_otlphttp import BACKEND

FRONT = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:%d
    compression: none
    timeout: 2s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 10m}}
    sending_queue: {{storage: {tmp}/queue, queue_size: 100000, %s}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp]
"""


def body(n, spans=10):
    """Request n: `spans` spans with ids unique across requests."""
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "persist"}}]},
            "scopeSpans": [{"spans": [{"traceId": f"{n + 1:032x}", "spanId": f"{n * spans + i + 1:016x}", "name": f"op-{i}",
                                       "startTimeUnixNano": "1", "endTimeUnixNano": "2"} for i in range(spans)]}]}]}


class Load:
    """Sends requests 0..count-1 in order; a request that is not answered 200 is sent again
    until it is. Records which were acknowledged."""

    def __init__(self, url_fn, count, spans=10, pause=0.0):
        self.acked = set()
        self.refused = 0
        self.retry_after = set()
        self.thread = threading.Thread(target=self.run, args=(url_fn, count, spans, pause), daemon=True)
        self.thread.start()

    def run(self, url_fn, count, spans, pause):
        session = requests.Session()
        deadline = time.time() + 240
        for n in range(count):
            while time.time() < deadline:
                try:
                    r = session.post(url_fn(), json=body(n, spans), timeout=5)
                    if r.status_code == 200:
                        self.acked.add(n)
                        break
                    self.refused += 1
                    self.retry_after.add(r.headers.get("Retry-After"))
                except requests.RequestException:
                    session = requests.Session()
                time.sleep(0.05)
            time.sleep(pause)

    def join(self, timeout=300):
        self.thread.join(timeout)
        assert not self.thread.is_alive()


def delivered(path):
    ids = [g["span"]["spanId"] for g in read_file_export(path)]
    return ids, set(ids)


def test_backend_down_for_a_minute_under_load_then_everything_arrives(spanhost, tmp):
    backend_port = free_port()
    front = spanhost(FRONT % (backend_port, "fsync: 1s"))
    outage = float(os.environ.get("SPANHOST_OUTAGE_SECONDS", "60"))
    load = Load(lambda: front.url, count=int(outage * 10), pause=0.1)  # about 100 spans/s through the outage
    time.sleep(outage)
    queued = front.status()["exporters"][0]["queue"]
    backend = Spanhost(BACKEND.replace("{receiver}", f"127.0.0.1:{backend_port}"), tmp).wait_healthy()
    try:
        load.join()
        want = {f"{n * 10 + i + 1:016x}" for n in load.acked for i in range(10)}
        path = os.path.join(tmp, "backend.jsonl")
        assert wait_for(lambda: want <= delivered(path)[1], timeout=120), f"missing {len(want - delivered(path)[1])}"
        ids, unique = delivered(path)
        print(f"\noutage {outage:.0f}s: {len(want)} spans answered 200; queued on disk at the end of the outage: "
              f"{queued['depth']} batches, {queued['bytesOnDisk']} bytes, oldest {queued['oldestAgeSeconds']:.0f}s; "
              f"delivered {len(unique)} (duplicates {len(ids) - len(unique)})")
        assert queued["depth"] > 0 and queued["oldestAgeSeconds"] > outage / 2
        assert len(ids) == len(unique)
    finally:
        backend.stop()


def test_kill_9_under_load_then_restart_delivers_every_acknowledged_span(spanhost, tmp):
    backend = spanhost(BACKEND)
    front_port = free_port()
    config = (FRONT % (backend.receiver_port, "fsync: 1s")).replace("{receiver}", f"127.0.0.1:{front_port}")
    front = spanhost(config)
    url = f"http://127.0.0.1:{front_port}/v1/traces"
    load = Load(lambda: url, count=3000)
    assert wait_for(lambda: len(load.acked) >= 1000, timeout=60)
    front.kill9()
    killed_at = len(load.acked)
    restarted = Spanhost(config, tmp)
    try:
        restarted.wait_healthy()
        load.join()
        want = {f"{n * 10 + i + 1:016x}" for n in load.acked for i in range(10)}
        path = os.path.join(tmp, "backend.jsonl")
        assert wait_for(lambda: want <= delivered(path)[1], timeout=120), f"missing {len(want - delivered(path)[1])}"
        ids, unique = delivered(path)
        duplicates = len(ids) - len(unique)
        recovered = restarted.status()["exporters"][0]["queue"]["recoveredBatches"]
        print(f"\nkill -9 after {killed_at} requests; {len(want)} spans answered 200, all delivered; "
              f"{recovered} batches replayed from disk; duplicates {duplicates} ({duplicates / len(unique):.3%})")
        assert duplicates / len(unique) <= 0.001
    finally:
        restarted.stop()


def test_a_segment_cut_mid_record_replays_its_intact_part(spanhost, tmp):
    backend_port = free_port()
    config = FRONT % (backend_port, "fsync: always")
    front = spanhost(config)
    for n in range(20):
        assert requests.post(front.url, json=body(n), timeout=5).status_code == 200
    assert front.stop() == 0  # the batches stay on disk
    segments = sorted(glob.glob(os.path.join(tmp, "queue", "otlphttp", "*.seg")))
    last = max(segments, key=os.path.getsize)
    size = os.path.getsize(last)
    with open(last, "r+b") as f:
        f.truncate(size - 40)  # a crash in the middle of writing the last record
    backend = Spanhost(BACKEND.replace("{receiver}", f"127.0.0.1:{backend_port}"), tmp).wait_healthy()
    again = spanhost(config)
    try:
        queue = again.status()["exporters"][0]["queue"]
        assert queue["recoveredBatches"] == 19 and queue["cutBytes"] > 0
        want = {f"{n * 10 + i + 1:016x}" for n in range(19) for i in range(10)}
        path = os.path.join(tmp, "backend.jsonl")
        assert wait_for(lambda: delivered(path)[1] == want, timeout=30)
        print(f"\n20 batches on disk, the last cut by 40 bytes: {queue['cutBytes']} bytes cut, 19 replayed and delivered")
    finally:
        backend.stop()


POISON = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  old_minor:
    fail: permanent
    sending_queue: {{storage: {tmp}/queue}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [old_minor]
"""


def test_a_batch_rejected_for_good_goes_to_the_dead_letter_file_and_is_not_replayed(spanhost, tmp):
    from conftest import Spanhost as S
    s = S(POISON, tmp, plugins_dir=TEST_PLUGINS).wait_healthy()
    try:
        assert requests.post(s.url, json=body(7), timeout=5).status_code == 200
        path = os.path.join(tmp, "queue", "old_minor", "dead_letter.jsonl")
        lines = wait_for(lambda: whole_lines(path), timeout=10)
        assert lines
        line = json.loads(lines[0])
        assert "backend rejected the data" in line["reason"] and line["spans"] == 10
        assert line["request"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] == f"{71:016x}"
        assert s.status()["exporters"][0]["queue"]["deadLettered"] == 1
    finally:
        s.stop()
    again = S(POISON, tmp, plugins_dir=TEST_PLUGINS).wait_healthy()
    try:
        queue = again.status()["exporters"][0]["queue"]
        assert queue["recoveredBatches"] == 0 and queue["depth"] == 0
    finally:
        again.stop()


def test_a_full_queue_answers_503_and_an_sdk_client_delivers_everything_later(spanhost, tmp):
    backend_port = free_port()
    front = spanhost(FRONT % (backend_port, "max_size_mib: 0.05"))
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-client"}))
    # The SDK retries a 503 until its export timeout: 60 s here, so it outlasts the full queue.
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=front.url, timeout=60), max_export_batch_size=100,
                                   schedule_delay_millis=100)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("full-queue")
    created = 1500  # under the SDK's own queue of 2048, so it drops nothing
    for i in range(created):
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    refused = wait_for(lambda: front.status()["receivers"][0]["counters"].get("refused_requests", 0) > 0, timeout=30)
    assert refused, "the queue never filled"
    answer = requests.post(front.url, json=body(99999), timeout=5)
    assert answer.status_code == 503 and answer.headers.get("Retry-After")
    rss = int(open(f"/proc/{front.server_pid}/status").read().split("VmHWM:")[1].split()[0]) // 1024
    metrics = requests.get(front.admin + "/metrics", timeout=5).text
    depth = [l for l in metrics.splitlines() if l.startswith('spanhost_exporter_queue_batches{exporter="otlphttp"}')]
    assert depth and float(depth[0].split()[-1]) > 0, metrics
    assert 'spanhost_receiver_refused_requests_total{receiver="otlp"}' in metrics
    assert 'spanhost_exporter_queue_undelivered_bytes{exporter="otlphttp"}' in metrics
    backend = Spanhost(BACKEND.replace("{receiver}", f"127.0.0.1:{backend_port}"), tmp).wait_healthy()
    try:
        assert processor.force_flush(timeout_millis=120_000)
        path = os.path.join(tmp, "backend.jsonl")
        names = lambda: {g["span"]["name"] for g in read_file_export(path)}
        assert wait_for(lambda: len(names()) == created, timeout=60), len(names())
        counters = front.status()["receivers"][0]["counters"]
        print(f"\nqueue limit 0.05 MiB on disk, backend down: {counters['refused_requests']} requests answered 503 "
              f"(Retry-After {answer.headers['Retry-After']}); peak RSS {rss} MiB; all {created} SDK spans delivered")
    finally:
        provider.shutdown()
        backend.stop()


DISK_FULL = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:%d
    compression: none
    timeout: 2s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 10m}}
    sending_queue: {{storage: %s, queue_size: 100000, max_size_mib: 256, fsync: always, on_full: refuse}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp]
"""


def padded_body(n, spans=20):
    """Request n of `body`, with a 600-byte attribute on every span: about 13 KB a request."""
    b = body(n, spans)
    for span in b["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["attributes"] = [{"key": "payload", "value": {"stringValue": f"{n:08d}" * 75}}]
    return b


@pytest.fixture
def small_disk(tmp):
    """A 4 MB tmpfs: a disk that really fills up."""
    path = os.path.join(tmp, "disk")
    os.makedirs(path)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", path], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mount.stderr.strip()}")
    yield path
    subprocess.run(["umount", "-l", path])


def test_a_full_disk_answers_503_loses_nothing_and_gives_space_back(spanhost, tmp, small_disk):
    backend_port = free_port()
    config = DISK_FULL % (backend_port, small_disk + "/queue")
    front = spanhost(config)
    # Backend down: 400 requests of 20 spans (5 MB), each sent once, fill the 4 MB disk.
    answers = {}
    session = requests.Session()
    for n in range(400):
        r = session.post(front.url, json=padded_body(n), timeout=5)
        answers[n] = r.status_code
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1
    ok = {n for n, code in answers.items() if code == 200}
    refused = [n for n, code in answers.items() if code != 200]
    assert set(answers.values()) <= {200, 503}, answers
    assert refused, "the disk never filled"
    queue = front.status()["exporters"][0]["queue"]
    assert queue["writeFailures"] >= len(refused)
    assert "on_full: drop" not in front.log()
    assert "cannot write to the queue" in front.log()
    # The backend comes back: everything answered 200 arrives, the delivered segments are
    # deleted, and the refused requests, sent again, are taken once there is room.
    backend = Spanhost(BACKEND.replace("{receiver}", f"127.0.0.1:{backend_port}"), tmp).wait_healthy()
    try:
        path = os.path.join(tmp, "backend.jsonl")
        want = {f"{n * 20 + i + 1:016x}" for n in ok for i in range(20)}
        assert wait_for(lambda: want <= delivered(path)[1], timeout=120), f"missing {len(want - delivered(path)[1])} of {len(want)}"
        for n in refused:
            assert wait_for(lambda: session.post(front.url, json=padded_body(n), timeout=5).status_code == 200, timeout=30), n
        want_all = {f"{n * 20 + i + 1:016x}" for n in range(400) for i in range(20)}
        assert wait_for(lambda: want_all <= delivered(path)[1], timeout=120), f"missing {len(want_all - delivered(path)[1])}"
        assert wait_for(lambda: front.status()["exporters"][0]["queue"]["bytesOnDisk"] < 1 << 20, timeout=30)
        assert front.stop() == 0
        assert "dead-lettered" not in front.log() and "cut" not in front.log()
        ids, unique = delivered(path)
        print(f"\n4 MB disk, backend down: {len(ok)} of 400 requests answered 200, {len(refused)} answered 503 "
              f"({queue['writeFailures']} failed writes); after the backend returned all 8000 spans delivered "
              f"(duplicates {len(ids) - len(unique)})")
    finally:
        backend.stop()
