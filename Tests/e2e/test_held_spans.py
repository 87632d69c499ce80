"""Spans a batch is being gathered from survive kill -9: the Collector's batch processor is
batching in the exporter's persistent queue, so every request answered 200 is on disk first."""
import time

from conftest import read_file_export, wait_for
from test_data_path import cfg, fill, otlp_json, post

BEHIND_BATCH = """
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  batch: {timeout: {timeout}, send_batch_size: 100000}
exporters:
  file:
    path: "{tmp}/out.jsonl"
    sending_queue: {storage: "{tmp}/queue", fsync: always}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [file]}
"""


def test_spans_behind_batch_survive_kill_9_of_the_process_group(spanhost, tmp):
    host = spanhost(cfg(fill(BEHIND_BATCH, timeout="30s")))
    for n in range(10):
        assert post(host, otlp_json(20, n * 20)).status_code == 200
    time.sleep(0.5)
    assert read_file_export(f"{tmp}/out.jsonl") == []  # still being gathered
    host.kill9()
    again = spanhost(cfg(fill(BEHIND_BATCH, timeout="200ms")))
    spans = wait_for(lambda: (s := read_file_export(f"{tmp}/out.jsonl")) and len({x["span"]["spanId"] for x in s}) == 200 and s,
                     timeout=20)
    assert spans, again.status()["exporters"]
    # At least once: every span answered 200 arrived; a copy exported before the kill may repeat.
    assert {x["span"]["spanId"] for x in spans} == {f"{i + 1:016x}" for i in range(200)}


def test_batching_an_exporter_gathers_requests_into_one_export(spanhost, tmp):
    host = spanhost(cfg(fill(BEHIND_BATCH, timeout="1s").replace("send_batch_size: 100000", "send_batch_size: 100")))
    for n in range(5):
        assert post(host, otlp_json(20, n * 20)).status_code == 200
    assert wait_for(lambda: len(read_file_export(f"{tmp}/out.jsonl")) == 100, timeout=10)
    with open(f"{tmp}/out.jsonl") as f:
        assert len(f.read().splitlines()) == 1  # five requests, one export
