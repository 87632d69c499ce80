"""The kafka receiver, and scaling out on Kafka: tier 1 receives OTLP and exports to Kafka keyed
by trace id; two tier-2 instances in one consumer group share the partitions, and every trace,
whose spans arrive at tier 1 in separate requests, is handled whole by exactly one of them."""
import os
import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import read_file_export, wait_for
from test_kafka import MockCluster
from test_tail_sampling import make_trace, post

TIER1 = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  kafka:
    brokers: [%s]
    topic: otlp_spans
    partition_traces_by_id: true
    linger_ms: 1
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [kafka]
"""

TIER2 = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
  kafka:
    brokers: [%s]
    topics: [otlp_spans]
    group_id: tier2
    initial_offset: earliest
    properties: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
processors:
  tail_sampling:
    decision_wait: 2s
    policies:
      - {{name: all, type: always_sample}}
  error_flow:
    wait: 2s
exporters:
  file:
    path: {tmp}/%s.jsonl
notifiers:
  log: {{format: text}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [kafka]
      processors: [error_flow, tail_sampling]
      exporters: [file]
      notifiers: [log]
"""


def test_two_consumers_share_partitions_and_see_whole_traces(spanhost, tmp):
    cluster = MockCluster("otlp_spans")
    try:
        # One member joins, then the second: the group rebalances from one member to two (two
        # members joining the mock cluster's coordinator at the same instant can stall it).
        tier2 = [spanhost(TIER2 % (cluster.bootstrap, "a"))]
        time.sleep(3)
        tier2.append(spanhost(TIER2 % (cluster.bootstrap, "b")))
        # Send only once the group has settled: both members hold partitions, all 3 of them.
        assigned = lambda: [s.status()["receivers"][0]["counters"].get("assigned_partitions", 0) for s in tier2]
        assert wait_for(lambda: all(assigned()) and sum(assigned()) == 3, timeout=150), assigned()
        tier1 = spanhost(TIER1 % cluster.bootstrap)
        rng = random.Random(11)
        traces = [make_trace(rng, "error" if i % 6 == 0 else "normal") for i in range(60)]
        spans = [sp for t in traces for sp in t]
        rng.shuffle(spans)
        for i in range(0, len(spans), 8):  # a trace's spans reach tier 1 in different requests
            post(tier1.url, spans[i:i + 8])
        consumed = lambda: sum(s.status()["receivers"][0]["counters"].get("accepted_spans", 0) for s in tier2)
        # A rebalance in the mock cluster's group coordinator can take up to a session timeout.
        assert wait_for(lambda: consumed() == len(spans), timeout=150), consumed()
        exported = lambda: sum(s.status()["exporters"][0]["counters"].get("exported", 0) for s in tier2)
        assert wait_for(lambda: exported() == len(spans), timeout=30), exported()
        owner = {}
        per_instance = {}
        for name in ("a", "b"):
            got = read_file_export(os.path.join(tmp, f"{name}.jsonl"))
            per_instance[name] = len(got)
            for g in got:
                owner.setdefault(g["span"]["traceId"], set()).add(name)
        counts = {}
        for g in read_file_export(os.path.join(tmp, "a.jsonl")) + read_file_export(os.path.join(tmp, "b.jsonl")):
            counts[g["span"]["traceId"]] = counts.get(g["span"]["traceId"], 0) + 1
        print(f"\nsent {len(spans)} spans of {len(traces)} traces; instance a exported {per_instance['a']}, "
              f"b {per_instance['b']}; traces split across instances: {sum(1 for o in owner.values() if len(o) > 1)}")
        assert all(len(o) == 1 for o in owner.values())      # each trace handled by exactly one instance
        assert all(c == 4 for c in counts.values())           # whole, once
        assert len(owner) == len(traces)
        assert per_instance["a"] > 0 and per_instance["b"] > 0  # the partitions are shared
        # error_flow saw each failing trace whole, in exactly one instance: one record each.
        flows = lambda: [s.status()["pipelines"][0]["processors"][0]["counters"].get("error_flows", 0) for s in tier2]
        assert wait_for(lambda: sum(flows()) == 10, timeout=15), flows()
        print(f"error flows per instance: {flows()} for 10 failing traces; partitions {assigned()}")
        for s in tier2 + [tier1]:
            assert s.stop() == 0  # while the brokers are still there to take the final commit
    finally:
        cluster.close()


def test_undecodable_messages_are_skipped_and_counted(spanhost, tmp):
    cluster = MockCluster("otlp_spans")
    try:
        s = spanhost(TIER2 % (cluster.bootstrap, "c"))
        cluster.command("produce otlp_spans 0aff0102")  # not an ExportTraceServiceRequest
        assert cluster.proc.stdout.readline().strip() == "OK"
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.scope_spans.add().spans.extend(make_trace(random.Random(5), "normal"))
        cluster.command("produce otlp_spans " + req.SerializeToString().hex())
        assert cluster.proc.stdout.readline().strip() == "OK"
        counters = lambda: s.status()["receivers"][0]["counters"]
        assert wait_for(lambda: counters().get("accepted_spans") == 4 and counters().get("rejected_requests") == 1, timeout=30), counters()
        assert "message skipped: cannot decode" in s.log()
        assert wait_for(lambda: len(read_file_export(os.path.join(tmp, "c.jsonl"))) == 4, timeout=15)
        assert s.stop() == 0
    finally:
        cluster.close()


NEWER_SHAPE = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
  kafka:
    brokers: [%s]
    group_id: newer
    initial_offset: earliest
    traces:
      topic: spans_json
      encoding: otlp_json
    logs:
      topic: otlp_logs
    metrics:
      topic: otlp_metrics
exporters:
  kafka:
    brokers: [%s]
    traces:
      topic: spans_json
      encoding: otlp_json
    logs:
      topic: otlp_logs
    metrics:
      topic: otlp_metrics
  file:
    path: {tmp}/through.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces/out:
      receivers: [otlp]
      exporters: [kafka]
    traces/in:
      receivers: [kafka]
      exporters: [file]
"""


def test_the_collectors_per_signal_topic_shape(spanhost, tmp):
    # The Collector's kafka components now take topic and encoding under `traces:` (and
    # `metrics:`, `logs:`, which spanhost accepts and never uses).
    cluster = MockCluster("spans_json")
    try:
        s = spanhost(NEWER_SHAPE % (cluster.bootstrap, cluster.bootstrap))
        rng = random.Random(3)
        post(s.url, make_trace(rng, "normal")[:3])
        assert wait_for(lambda: len(read_file_export(os.path.join(tmp, "through.jsonl"))) == 3, timeout=30)
        assert len(cluster.consume("spans_json", count=10, timeout_ms=3000)) >= 1
    finally:
        cluster.close()
