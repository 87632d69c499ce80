"""tail_sampling with the seeds' policy (every error trace, 30% of traces slower than 2 s, 10%
of the rest): spans arrive out of order across many requests; error traces are always kept,
traces are kept or dropped whole, late spans follow their trace's decision, and a flood of
traces stays within num_traces with early evictions counted."""
import os
import random
import subprocess

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                       ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
import requests

from conftest import SPANHOSTD, read_file_export, wait_for
from test_bad_input import PROTO

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
  tail_sampling:
    decision_wait: %s
    num_traces: %d
    policies:
      - {{name: errors, type: status_code, status_codes: [ERROR]}}
      - name: slow
        type: and
        and_sub_policy:
          - {{name: over-2s, type: latency, threshold_ms: 2000}}
          - {{name: thirty, type: probabilistic, sampling_percentage: 30}}
      - {{name: rest, type: probabilistic, sampling_percentage: 10}}
%s
exporters:
  file:
    path: {tmp}/sampled.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [file]
"""

BASE_NS = 1_700_000_000_000_000_000


def make_trace(rng, kind):
    """4 spans: a root and three children; `kind` is error, slow, canary or normal."""
    trace_id = rng.randbytes(16)
    root_id = rng.randbytes(8)
    duration = 3_000_000_000 if kind == "slow" else 50_000_000
    spans = []
    for i in range(4):
        sp = Span(trace_id=trace_id, span_id=root_id if i == 0 else rng.randbytes(8), name=f"{kind}-{i}",
                  start_time_unix_nano=BASE_NS, end_time_unix_nano=BASE_NS + (duration if i == 0 else 10_000_000))
        if i:
            sp.parent_span_id = root_id
        if kind == "error" and i == 2:
            sp.status.code = Status.STATUS_CODE_ERROR
        if kind == "canary" and i == 1:
            kv = sp.attributes.add()
            kv.key, kv.value.string_value = "deployment", "canary"
        spans.append(sp)
    return spans


def gauges(s):
    """Levels tail_sampling sets with host->gauge_set: traces_held, spans_held."""
    return s.status()["pipelines"][0]["processors"][0].get("gauges", {})


def post(url, spans, rejected=0):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "tail"
    rs.scope_spans.add().spans.extend(spans)
    r = requests.post(url, data=req.SerializeToString(), headers=PROTO, timeout=10)
    assert r.status_code == 200, r.text
    # Held spans are not reported as rejected; late spans of dropped traces are.
    assert ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans == rejected


def test_seed_policy_keeps_whole_traces_and_every_error(spanhost, tmp):
    rng = random.Random(42)
    # Long enough that every span is in before the first decision, even on a busy machine.
    s = spanhost(CONFIG % ("5s", 100_000, ""))
    kinds = ["error"] * 150 + ["slow"] * 600 + ["normal"] * 1500
    traces = [(kind, make_trace(rng, kind)) for kind in kinds]
    # Every span on its own, shuffled across all traces, sent in requests of 50.
    spans = [sp for _, t in traces for sp in t]
    rng.shuffle(spans)
    for i in range(0, len(spans), 50):
        post(s.url, spans[i:i + 50])
    counters = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
    assert wait_for(lambda: counters().get("traces_sampled", 0) + counters().get("traces_dropped", 0) == len(traces), timeout=30)
    kept_spans = wait_for(lambda: read_file_export(os.path.join(tmp, "sampled.jsonl")) if
                          s.status()["exporters"][0]["counters"].get("exported", 0) == counters()["spans_sampled"] else None)
    by_trace = {}
    for g in kept_spans:
        by_trace.setdefault(g["span"]["traceId"], []).append(g["span"]["name"])
    kept = {kind: 0 for kind in set(kinds)}
    for kind, t in traces:
        names = by_trace.get(t[0].trace_id.hex())
        if names is not None:
            assert sorted(names) == sorted(sp.name for sp in t)  # whole trace, no duplicates
            kept[kind] += 1
    print(f"\nkept: errors {kept['error']}/150, slow {kept['slow']}/600, normal {kept['normal']}/1500")
    assert kept["error"] == 150
    assert 124 <= kept["slow"] <= 236           # 30% of 600 (sd 11.2), 5 sd either side
    assert 92 <= kept["normal"] <= 208          # 10% of 1500 (sd 11.6), 5 sd

    # A late span of a kept trace passes; one of a dropped trace does not.
    kept_trace = next(t for kind, t in traces if kind == "error")
    dropped_trace = next(t for kind, t in traces if kind == "normal" and t[0].trace_id.hex() not in by_trace)
    late_kept, late_dropped = make_trace(rng, "normal")[1], make_trace(rng, "normal")[1]
    late_kept.trace_id, late_kept.parent_span_id, late_kept.name = kept_trace[0].trace_id, kept_trace[0].span_id, "late-kept"
    late_dropped.trace_id, late_dropped.name = dropped_trace[0].trace_id, "late-dropped"
    post(s.url, [late_kept, late_dropped], rejected=1)
    assert wait_for(lambda: counters().get("late_spans_sampled") == 1 and counters().get("late_spans_dropped") == 1)
    names = wait_for(lambda: [g["span"]["name"] for g in read_file_export(os.path.join(tmp, "sampled.jsonl"))
                              if g["span"]["name"].startswith("late")])
    assert names == ["late-kept"]


def test_flood_stays_within_num_traces_and_counts_early_evictions(spanhost, tmp):
    rng = random.Random(7)
    s = spanhost(CONFIG % ("1s", 200, ""))
    traces = [make_trace(rng, "error") for _ in range(2000)]  # all would be kept
    spans = [sp for t in traces for sp in t]
    for i in range(0, len(spans), 200):
        post(s.url, spans[i:i + 200])
    counters = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
    assert wait_for(lambda: counters().get("traces_sampled", 0) == 2000, timeout=30), counters()
    c, held = counters(), gauges(s)["traces_held"]
    print(f"\n2000 traces through num_traces=200: evicted early {c['evicted_early']}, held now {held}")
    assert c["evicted_early"] >= 1800 - 200
    assert held == 0
    # Decided early, still whole: every span of every (error) trace was exported.
    assert wait_for(lambda: s.status()["exporters"][0]["counters"].get("exported", 0) == len(spans), timeout=20)


def test_an_invert_match_drop_wins_over_a_sample(spanhost, tmp):
    rng = random.Random(3)
    veto = "      - {{name: no-canary, type: string_attribute, key: deployment, values: [canary], invert_match: true}}"
    s = spanhost(CONFIG % ("1s", 1000, veto))
    canary_errors = []
    for _ in range(20):
        t = make_trace(rng, "canary")
        t[3].status.code = Status.STATUS_CODE_ERROR  # the error policy would keep it
        canary_errors.append(t)
    normal = [make_trace(rng, "normal") for _ in range(20)]
    post(s.url, [sp for t in canary_errors + normal for sp in t])
    counters = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
    assert wait_for(lambda: counters().get("traces_sampled", 0) + counters().get("traces_dropped", 0) == 40, timeout=20)
    # As in the Collector, an invert_match policy samples what it does not match.
    assert counters()["traces_dropped"] == 20 and counters()["traces_sampled"] == 20
    kept = {g["span"]["traceId"] for g in wait_for(lambda: read_file_export(os.path.join(tmp, "sampled.jsonl")))}
    assert kept == {t[0].trace_id.hex() for t in normal}


def test_a_held_trace_costs_about_its_wire_size(spanhost, tmp):
    """20,000 single-span traces and 200 traces of 100 spans held past the send: batch memory
    per trace stays near what the trace takes on the wire."""
    rng = random.Random(19)
    s = spanhost(CONFIG % ("120s", 100_000, ""))
    single = [make_trace(rng, "normal")[:1] for _ in range(20_000)]
    wire = 0
    for i in range(0, len(single), 1000):
        spans = [t[0] for t in single[i:i + 1000]]
        wire += sum(sp.ByteSize() for sp in spans)
        post(s.url, spans)
    counters = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
    assert wait_for(lambda: gauges(s).get("traces_held") == 20_000, timeout=30), gauges(s)
    held = s.status()["memory"]["batchBytes"]
    per_trace = held / 20_000
    print(f"\n20,000 one-span traces held: {held >> 10} KiB of batches, {per_trace:.0f} B per trace "
          f"({wire / 20_000:.0f} B per span on the wire)")
    assert per_trace <= 2048, per_trace

    # Traces of 100 spans shaped as SDKs send them: ten attributes a span, a three-attribute resource.
    big = []
    for _ in range(200):
        trace_id, root = rng.randbytes(16), rng.randbytes(8)
        spans = [Span(trace_id=trace_id, span_id=root if i == 0 else rng.randbytes(8), parent_span_id=b"" if i == 0 else root,
                      name=f"GET /api/v1/items/{i % 7}", kind=2, start_time_unix_nano=BASE_NS + i * 1000,
                      end_time_unix_nano=BASE_NS + i * 1000 + 250_000)
                 for i in range(100)]
        for i, sp in enumerate(spans):
            for k, v in [("http.method", "GET"), ("http.route", "/api/v1/items/{id}"), ("http.user_agent", "bench/1.0"),
                         ("net.peer.name", "10.0.0.1"), ("db.system", "postgresql"), ("component", "http")]:
                kv = sp.attributes.add()
                kv.key, kv.value.string_value = k, v
            for k, v in [("http.status_code", 200), ("http.response_content_length", 1234 + i), ("thread.id", 7)]:
                kv = sp.attributes.add()
                kv.key, kv.value.int_value = k, v
            kv = sp.attributes.add()
            kv.key, kv.value.bool_value = "cache.hit", i % 2 == 0
        big.append(spans)
    big_wire = 0
    for i in range(0, len(big), 10):
        spans = [sp for t in big[i:i + 10] for sp in t]
        big_wire += sum(sp.ByteSize() for sp in spans)
        post(s.url, spans)
    assert wait_for(lambda: gauges(s).get("traces_held") == 20_200, timeout=30), gauges(s)
    added = s.status()["memory"]["batchBytes"] - held
    print(f"200 traces of 100 spans held: {added >> 10} KiB of batches for {big_wire >> 10} KiB on the wire "
          f"({added / big_wire:.2f}x)")
    assert added <= 2 * big_wire, (added, big_wire)



def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def test_memory_a_burst_held_is_given_back_once_decided(spanhost, tmp):
    """50,000 one-span traces held, then decided: the arena slabs they took are unmapped and
    the worker's RSS comes back near where it started (the decision cache is kept small so
    what remains is the process, not remembered decisions)."""
    rng = random.Random(23)
    s = spanhost(CONFIG % ("4s", 100_000, "    decision_cache:\n      size: 1000"))
    pid = s.server_pid
    start = rss_mib(pid)
    for i in range(0, 50_000, 1000):
        post(s.url, [make_trace(rng, "normal")[0] for _ in range(1000)])
    counters = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
    memory = s.status()["memory"]
    held_rss = rss_mib(pid)
    # traces_held is a gauge: at /status under "gauges", at /metrics without _total.
    assert 'spanhost_processor_traces_held{processor="tail_sampling"} 50000' in requests.get(s.admin + "/metrics", timeout=5).text
    assert memory["arenaMappedBytes"] >= memory["batchBytes"] > 40_000 * 1024, memory
    assert wait_for(lambda: gauges(s).get("traces_held") == 0, timeout=60), gauges(s)
    # The trimmer looks every 2 s; cached empty slabs go at its next look.
    assert wait_for(lambda: s.status()["memory"]["arenaMappedBytes"] == 0, timeout=15), s.status()["memory"]
    after = rss_mib(pid)
    print(f"\nRSS {start:.0f} MiB at start, {held_rss:.0f} MiB with 50,000 traces held, {after:.0f} MiB after")
    assert after <= start * 1.25, (start, held_rss, after)


COLLECTOR_SHAPE = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
  tail_sampling:
    decision_wait: 1s
    policies:
      - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}
      - name: slow-and-canary
        type: and
        and: {{and_sub_policy: [{{name: slow, type: latency, latency: {{threshold_ms: 2000}}}},
                                {{name: canary, type: string_attribute, string_attribute: {{key: deployment, values: [canary]}}}}]}}
exporters:
  file:
    path: {tmp}/sampled.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [file]
"""


def test_policies_in_the_collectors_nested_shape(spanhost, tmp):
    rng = random.Random(23)
    s = spanhost(COLLECTOR_SHAPE)
    traces = {kind: make_trace(rng, kind) for kind in ("error", "slow", "canary", "normal")}
    slow_canary = make_trace(rng, "slow")
    kv = slow_canary[0].attributes.add()
    kv.key, kv.value.string_value = "deployment", "canary"
    post(s.url, [sp for t in list(traces.values()) + [slow_canary] for sp in t])
    kept = lambda: {g["span"]["traceId"] for g in read_file_export(os.path.join(tmp, "sampled.jsonl"))}
    want = {traces["error"][0].trace_id.hex(), slow_canary[0].trace_id.hex()}
    assert wait_for(lambda: kept() == want, timeout=15), kept()
    counters = s.status()["pipelines"][0]["processors"][0]["counters"]
    assert counters["traces_sampled"] == 2 and counters["traces_dropped"] == 3, counters


# The policies as the Collector's tail_sampling README writes them (processor/tailsamplingprocessor/README.md).
NEW_POLICIES = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
  tail_sampling:
    decision_wait: 1s
    decision_cache:
      sampled_cache_size: 100_000
      non_sampled_cache_size: 100_000
    policies:
      [
        {{name: test-policy-9, type: span_count, span_count: {{min_spans: 2, max_spans: 3}}}},
        {{name: test-policy-10, type: trace_state, trace_state: {{key: key3, values: [value1, value2]}}}},
        {{name: test-policy-12, type: boolean_attribute, boolean_attribute: {{key: key4, value: true}}}},
        {{name: drop-it, type: drop, drop: {{drop_sub_policy: [
            {{name: health, type: string_attribute, string_attribute: {{key: url.path, values: [/health]}}}}]}}}},
      ]
exporters:
  file:
    path: {tmp}/sampled.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [file]
"""


def test_span_count_trace_state_boolean_attribute_and_drop_policies(spanhost, tmp):
    rng = random.Random(31)
    s = spanhost(NEW_POLICIES)

    def trace(spans=1, state="", flag=None, path=None):
        t = make_trace(rng, "normal")[:spans]
        t[0].trace_state = state
        if flag is not None:
            kv = t[0].attributes.add()
            kv.key, kv.value.bool_value = "key4", flag
        if path:
            kv = t[-1].attributes.add()
            kv.key, kv.value.string_value = "url.path", path
        return t

    keep = {"three spans": trace(spans=3), "state": trace(state="key1=a, key3=value2"), "flag": trace(flag=True)}
    drop = {"one span": trace(), "four spans": trace(spans=4), "other state": trace(state="key3=value9"),
            "flag false": trace(flag=False),
            # span_count would keep it; the drop policy wins.
            "health": trace(spans=2, path="/health")}
    post(s.url, [sp for t in list(keep.values()) + list(drop.values()) for sp in t])
    counters = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
    assert wait_for(lambda: counters().get("traces_sampled", 0) + counters().get("traces_dropped", 0) == 8, timeout=20), counters()
    kept = {g["span"]["traceId"] for g in read_file_export(os.path.join(tmp, "sampled.jsonl"))}
    assert kept == {t[0].trace_id.hex() for t in keep.values()}


def test_the_readme_example_runs_and_bytes_limiting_spends_a_byte_budget(spanhost, tmp):
    example = os.path.join(os.path.dirname(__file__), "collector_examples", "tail_sampling_readme.yaml")
    pipeline = os.path.join(tmp, "pipeline.yaml")
    with open(pipeline, "w") as f:
        f.write('receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}}\nexporters: {nop: }\n'
                'service: {pipelines: {traces: {receivers: [otlp], processors: [tail_sampling], exporters: [nop]}}}\n')
    out = subprocess.run([SPANHOSTD, "--config", example, "--config", pipeline, "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # bytes_limiting: a bucket of 1500 bytes refilled at 1 byte/s; each trace costs its protobuf size.
    s = spanhost(CONFIG.replace("""      - {{name: errors, type: status_code, status_codes: [ERROR]}}
      - name: slow
        type: and
        and_sub_policy:
          - {{name: over-2s, type: latency, threshold_ms: 2000}}
          - {{name: thirty, type: probabilistic, sampling_percentage: 30}}
      - {{name: rest, type: probabilistic, sampling_percentage: 10}}""",
                                """      - {{name: bytes, type: bytes_limiting, bytes_limiting: {{bytes_per_second: 1, burst_capacity: 1500}}}}""")
                 % ("1s", 1000, ""))
    rng = random.Random(5)
    traces = [make_trace(rng, "normal")[:2] for _ in range(20)]
    post(s.url, [sp for t in traces for sp in t])
    counters = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
    assert wait_for(lambda: counters().get("traces_sampled", 0) + counters().get("traces_dropped", 0) == 20, timeout=20), counters()
    sampled = counters()["traces_sampled"]
    assert 2 <= sampled <= 15 and counters()["traces_dropped"] >= 5, counters()
