"""Held spans survive kill -9. Spans a batch is being gathered from: the Collector's batch
processor is batching in the exporter's persistent queue, so every request answered 200 is on
disk first. Spans a processor holds (tail_sampling): the host writes them to the processor's
hold journal before the 200 and feeds them to it again at the next start."""
import glob
import os
import time

from conftest import Spanhost, read_file_export, wait_for
from test_data_path import cfg, fill, otlp_json, plugin_dir, post

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


BEHIND_TAIL_SAMPLING = """
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  tail_sampling:
    decision_wait: {wait}
    policies: [{name: kept, type: string_attribute, key: keep, values: ["yes"]}]
exporters:
  file:
    path: "{tmp}/out.jsonl"
    sending_queue: {storage: "{tmp}/queue", fsync: always}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [file]}
"""


def journals(tmp):
    return sorted(glob.glob(f"{tmp}/queue/held/traces/tail_sampling/*"))


def processor(host, name="tail_sampling"):
    return next(p for p in host.status()["pipelines"][0]["processors"] if p["id"] == name)


def test_spans_tail_sampling_holds_survive_kill_9_and_are_decided_after_the_restart(spanhost, tmp):
    config = cfg(fill(BEHIND_TAIL_SAMPLING, wait="2s"))
    host = spanhost(config)
    for n in range(10):  # 100 spans to keep, 100 to drop; each its own trace
        assert post(host, otlp_json(10, n * 20, attrs={"keep": "yes"})).status_code == 200
        assert post(host, otlp_json(10, n * 20 + 10, attrs={"keep": "no"})).status_code == 200
    host.kill9()  # well within decision_wait: every span is still held
    assert read_file_export(f"{tmp}/out.jsonl") == []
    killed = journals(tmp)
    assert len(killed) == 1
    again = spanhost(config)
    want = {f"{n * 20 + i + 1:016x}" for n in range(10) for i in range(10)}
    assert wait_for(lambda: {x["span"]["spanId"] for x in read_file_export(f"{tmp}/out.jsonl")} == want, timeout=20), \
        again.status()["pipelines"]
    state = processor(again)
    assert state["counters"]["replayed_spans"] == 200
    # Every decision taken, the journal holds nothing: the kept spans left it when emitted, the
    # dropped ones when their trace was released; the old journal is gone.
    assert wait_for(lambda: processor(again)["gauges"].get("journal_spans") == 0, timeout=10), processor(again)
    assert len(journals(tmp)) == 1 and journals(tmp) != killed
    assert len(read_file_export(f"{tmp}/out.jsonl")) == 100


def test_a_flushed_processor_leaves_no_journal_behind(spanhost, tmp):
    host = spanhost(cfg(fill(BEHIND_TAIL_SAMPLING, wait="30s")))
    for n in range(5):
        assert post(host, otlp_json(10, n * 10, attrs={"keep": "yes"})).status_code == 200
    assert processor(host)["gauges"]["journal_spans"] == 50
    assert len(journals(tmp)) == 1
    host.stop()  # flush decides every trace: kept spans go to the exporter's queue
    assert journals(tmp) == []
    again = spanhost(cfg(fill(BEHIND_TAIL_SAMPLING, wait="30s")))
    assert wait_for(lambda: len(read_file_export(f"{tmp}/out.jsonl")) == 50, timeout=20)
    assert "replayed_spans" not in processor(again)["counters"]


BEHIND_HOLDER = """
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
processors:
  holder: {emit_at: {emit_at}}
exporters:
  file:
    path: "{tmp}/out.jsonl"
    sending_queue: {storage: "{tmp}/queue", fsync: always}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [holder], exporters: [file]}
"""


def test_batches_a_plugin_consumed_survive_kill_9_and_those_it_released_do_not_come_back(spanhost, tmp):
    plugins = plugin_dir(tmp, "holder", "file")
    host = spanhost(cfg(fill(BEHIND_HOLDER, emit_at="100")), plugins_dir=plugins)
    for n in range(6):
        request = otlp_json(10, n * 10)
        if n >= 4:  # one trace, dropped by the plugin on purpose: it releases the trace in process
            for span in request["resourceSpans"][0]["scopeSpans"][0]["spans"]:
                span["traceId"] = f"{0xd00 + n:032x}"
            request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = "drop"
        assert post(host, request).status_code == 200
    assert processor(host, "holder")["gauges"]["journal_spans"] == 40
    host.kill9()
    again = spanhost(cfg(fill(BEHIND_HOLDER, emit_at="4")), plugins_dir=plugins)
    want = {f"{i + 1:016x}" for i in range(40)}
    assert wait_for(lambda: {x["span"]["spanId"] for x in read_file_export(f"{tmp}/out.jsonl")} == want, timeout=20), \
        again.status()["pipelines"]
    assert processor(again, "holder")["counters"]["replayed_spans"] == 40
    assert processor(again, "holder")["gauges"]["journal_spans"] == 0
