"""Backpressure on Kafka: while the pipelines refuse (a full queue in front of a backend that is
down), the kafka receiver pauses its partitions instead of buffering or dropping, and once the
backend is up every consumed span arrives. A held member keeps serving its group: a member that
joins gets partitions within the rebalance, and across the handover nothing is lost or repeated."""
import os
import random
import time

import pytest

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import Spanhost, free_port, read_file_export, wait_for
from test_kafka import MockCluster
from test_otlphttp import BACKEND
from test_tail_sampling import make_trace

CONSUMER = """
receivers:
  kafka:
    brokers: [%s]
    topics: [otlp_spans]
    group_id: pause-test
    initial_offset: earliest
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:%d
    compression: none
    timeout: 1s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 300ms, max_elapsed_time: 5m}}
    sending_queue: {{queue_size: 2}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [otlphttp]
"""


def test_kafka_receiver_pauses_while_refused_and_loses_nothing(spanhost, tmp):
    cluster = MockCluster("otlp_spans")
    backend_port = free_port()
    try:
        s = spanhost(CONSUMER % (cluster.bootstrap, backend_port))
        rng = random.Random(3)
        sent = set()
        for n in range(30):
            req = ExportTraceServiceRequest()
            spans = make_trace(rng, "normal")
            req.resource_spans.add().scope_spans.add().spans.extend(spans)
            sent |= {sp.span_id.hex() for sp in spans}
            cluster.command("produce otlp_spans " + req.SerializeToString().hex())
            assert cluster.proc.stdout.readline().strip() == "OK"
        counters = lambda: s.status()["receivers"][0]["counters"]
        assert wait_for(lambda: counters().get("partition_pauses", 0) >= 1, timeout=60), counters()
        paused = counters()
        backend = Spanhost(BACKEND.replace("{receiver}", f"127.0.0.1:{backend_port}"), tmp).wait_healthy()
        try:
            path = os.path.join(tmp, "backend.jsonl")
            got = lambda: {g["span"]["spanId"] for g in read_file_export(path)}
            assert wait_for(lambda: got() == sent, timeout=60), len(got())
            print(f"\nproduced {len(sent)} spans in 30 messages; while the backend was down: {paused}; "
                  f"after: {counters()}; all {len(sent)} delivered")
        finally:
            backend.stop()
        assert s.stop() == 0
    finally:
        cluster.close()


MEMBER_B = """
receivers:
  kafka:
    brokers: [%s]
    topics: [otlp_spans]
    group_id: pause-test
    initial_offset: earliest
    session_timeout: 6s
    heartbeat_interval: 500ms
    group_rebalance_strategy: %s
exporters:
  file: {{path: "{tmp}/b.jsonl"}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [file]
"""


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_a_held_member_hands_its_partitions_over_and_nothing_is_lost_or_repeated(spanhost, tmp, strategy):
    cluster = MockCluster("otlp_spans")
    backend_port = free_port()
    group = (f"    session_timeout: 6s\n    heartbeat_interval: 500ms\n    group_rebalance_strategy: {strategy}\n"
             "exporters:\n")
    try:
        a = spanhost(CONSUMER.replace("exporters:\n", group, 1) % (cluster.bootstrap, backend_port))
        rng = random.Random(7)
        sent = []
        for n in range(40):
            req = ExportTraceServiceRequest()
            spans = make_trace(rng, "normal")[:3]
            req.resource_spans.add().scope_spans.add().spans.extend(spans)
            sent += [sp.span_id.hex() for sp in spans]
            cluster.command("produce otlp_spans " + req.SerializeToString().hex())
            assert cluster.proc.stdout.readline().strip() == "OK"
        receiver = lambda s: s.status()["receivers"][0]
        assert wait_for(lambda: receiver(a)["counters"].get("partition_pauses", 0) >= 1, timeout=60), receiver(a)
        assert receiver(a)["counters"]["assigned_partitions"] == 3
        time.sleep(6)  # past librdkafka's periodic commit of what A's pipelines took
        b = spanhost(MEMBER_B % (cluster.bootstrap, strategy))
        joined = time.time()
        # A, though held, serves the rebalance: B gets partitions within the mock's rounds
        # (a few session timeouts at most), not when A's backend returns.
        assigned = lambda: [receiver(s)["counters"].get("assigned_partitions", 0) for s in (a, b)]
        assert wait_for(lambda: assigned()[1] > 0 and sum(assigned()) == 3, timeout=60), assigned()
        handover = time.time() - joined
        group_a = receiver(a)["group"]
        assert group_a["memberID"] and group_a["rebalances"] >= 2 and group_a["lastRebalance"]
        assert group_a["rebalanceProtocol"] == ("cooperative" if strategy == "cooperative-sticky" else "eager")
        backend = Spanhost(BACKEND.replace("{receiver}", f"127.0.0.1:{backend_port}"), tmp).wait_healthy()
        try:
            delivered = lambda: ([g["span"]["spanId"] for g in read_file_export(os.path.join(tmp, "backend.jsonl"))]
                                 + [g["span"]["spanId"] for g in read_file_export(os.path.join(tmp, "b.jsonl"))])
            assert wait_for(lambda: set(delivered()) == set(sent), timeout=90), (len(set(delivered())), receiver(a), receiver(b))
            counters = (receiver(a)["counters"], receiver(b)["counters"])
            # Stopped, both have drained to the files: a span delivered twice is there by then.
            assert a.stop() == 0 and b.stop() == 0
        finally:
            backend.stop()
        got = delivered()
        print(f"\n{strategy}: B held partitions {handover:.1f}s after joining; {len(sent)} spans produced, "
              f"{len(got)} delivered ({len(got) - len(set(got))} twice); A {counters[0]}, B {counters[1]}")
        assert sorted(got) == sorted(sent)
    finally:
        cluster.close()
