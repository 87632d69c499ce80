"""The kafka exporter against librdkafka's mock cluster (3 brokers on 127.0.0.1, 3 partitions):
spans from the OpenTelemetry SDK are consumed back and decoded, keyed by trace id when asked,
and a cluster that is down makes exports retry until it is back."""
import os
import subprocess
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import BUILD, wait_for

MOCK = os.path.join(BUILD, "test-bin", "kafka-mock")

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  kafka:
    brokers: [%s]
    topic: %s
    encoding: %s
    partition_traces_by_id: %s
    timeout: 2s
    linger_ms: 1
    retry_on_failure: {{initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 60s}}
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


class MockCluster:
    def __init__(self, *topics):
        self.proc = subprocess.Popen([MOCK, "3", *[f"{t}:3" for t in topics]], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("BOOTSTRAP "), line
        self.bootstrap = line.split()[1]

    def command(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def consume(self, topic, count, timeout_ms=10000):
        self.command(f"consume {topic} 3 {count} {timeout_ms}")
        messages = []
        while True:
            line = self.proc.stdout.readline()
            if not line or line.startswith("END"):
                return messages
            if line.startswith("MSG "):
                _, partition, key, value = line.split()
                messages.append((int(partition), None if key == "-" else bytes.fromhex(key).decode(), bytes.fromhex(value)))

    def close(self):
        self.command("quit")
        self.proc.wait(10)


def sdk_traces(url, traces, spans_per_trace):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "kafka-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("kafka-test")
    for t in range(traces):
        with tracer.start_as_current_span(f"root-{t}"):
            for c in range(spans_per_trace - 1):
                with tracer.start_as_current_span(f"child-{t}-{c}") as sp:
                    sp.set_attribute("n", c)
    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=url, timeout=30)
    for i in range(0, len(spans), 7):  # several requests, traces spread across them
        assert exporter.export(spans[i:i + 7]).name == "SUCCESS"
    return spans


def decode(value, json_encoding):
    if json_encoding:
        import json
        body = json.loads(value)
        return [(sp["traceId"], sp["spanId"], sp["name"]) for rs in body["resourceSpans"]
                for ss in rs["scopeSpans"] for sp in ss["spans"]]
    req = ExportTraceServiceRequest.FromString(value)
    return [(sp.trace_id.hex(), sp.span_id.hex(), sp.name) for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]


def test_spans_keyed_by_trace_id_land_one_trace_per_partition(spanhost):
    cluster = MockCluster("otlp_spans")
    try:
        s = spanhost(CONFIG % (cluster.bootstrap, "otlp_spans", "otlp_proto", "true"))
        sent = sdk_traces(s.url, traces=12, spans_per_trace=4)
        exporter = lambda: s.status()["exporters"][0]["counters"]
        assert wait_for(lambda: exporter().get("exported") == len(sent), timeout=20), exporter()
        messages = cluster.consume("otlp_spans", count=10_000, timeout_ms=3000)
        spans, partition_of = [], {}
        for partition, key, value in messages:
            decoded = decode(value, False)
            assert {tid for tid, _, _ in decoded} == {key}  # one trace per message, keyed by it
            assert partition_of.setdefault(key, partition) == partition  # a trace stays in one partition
            spans += decoded
        want = {(f"{sp.get_span_context().trace_id:032x}", f"{sp.get_span_context().span_id:016x}", sp.name) for sp in sent}
        print(f"\nsent {len(sent)} spans in 12 traces; consumed {len(messages)} messages, {len(spans)} spans, "
              f"partitions used: {sorted(set(partition_of.values()))}")
        assert sorted(spans) == sorted(want)
        assert len(set(partition_of.values())) > 1
        assert exporter()["messages_acked"] == len(messages)
    finally:
        cluster.close()


def test_json_encoding_one_message_per_batch(spanhost):
    cluster = MockCluster("traces_json")
    try:
        s = spanhost(CONFIG % (cluster.bootstrap, "traces_json", "otlp_json", "false"))
        sent = sdk_traces(s.url, traces=3, spans_per_trace=3)
        assert wait_for(lambda: s.status()["exporters"][0]["counters"].get("exported") == len(sent), timeout=20)
        messages = cluster.consume("traces_json", count=10_000, timeout_ms=3000)
        assert all(key is None for _, key, _ in messages)
        spans = [x for _, _, value in messages for x in decode(value, True)]
        assert len(messages) == 2 and len(spans) == len(sent)  # 9 spans sent as 7 + 2
    finally:
        cluster.close()


def test_cluster_down_then_up_delivers_after_retries(spanhost):
    cluster = MockCluster("otlp_spans")
    try:
        s = spanhost(CONFIG % (cluster.bootstrap, "otlp_spans", "otlp_proto", "false"))
        for broker in (1, 2, 3):
            cluster.command(f"down {broker}")
            assert cluster.proc.stdout.readline().strip() == "OK"
        sent = sdk_traces(s.url, traces=2, spans_per_trace=2)  # accepted by spanhostd, not by Kafka
        exporter = lambda: s.status()["exporters"][0]["counters"]
        assert wait_for(lambda: exporter().get("retried", 0) > 0, timeout=20), exporter()
        assert exporter().get("exported", 0) == 0
        for broker in (1, 2, 3):
            cluster.command(f"up {broker}")
            assert cluster.proc.stdout.readline().strip() == "OK"
        assert wait_for(lambda: exporter().get("exported") == len(sent), timeout=40), exporter()
        spans = [x for _, _, v in cluster.consume("otlp_spans", 10_000, 3000) for x in decode(v, False)]
        print(f"\nretried {exporter()['retried']} span-attempts while down; consumed {len(spans)} of {len(sent)}")
        assert {sid for _, sid, _ in spans} == {f"{sp.get_span_context().span_id:016x}" for sp in sent}
    finally:
        cluster.close()


def test_invalid_kafka_config_names_the_key(tmp):
    from conftest import Spanhost
    s = Spanhost(CONFIG % ("127.0.0.1:1", "t", "avro", "false"), tmp)
    assert s.wait_exit() != 0
    assert "exporters.kafka: create failed: encoding: 'avro' is not otlp_proto or otlp_json" in s.log()
    s = Spanhost(CONFIG.replace("    timeout: 2s", "    properties:\n      no.such.property: x") % ("127.0.0.1:1", "t", "otlp_proto", "false"), tmp)
    assert s.wait_exit() != 0
    assert "properties.no.such.property: No such configuration property" in s.log()
