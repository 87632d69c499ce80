"""Backpressure on Kafka: while the pipelines refuse (a full queue in front of a backend that is
down), the kafka receiver pauses its partitions instead of buffering or dropping, and once the
backend is up every consumed span arrives."""
import os
import random

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
