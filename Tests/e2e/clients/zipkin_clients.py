"""Real Zipkin clients, run in build/clients-venv (they pin protobuf 3): each sends a small trace
to spanhostd and prints, as JSON on stdout, what it sent.

    zipkin_clients.py otel-proto http://127.0.0.1:PORT/api/v2/spans   (opentelemetry-exporter-zipkin-proto-http)
    zipkin_clients.py py-zipkin V2_PROTO3|V2_JSON|V1_JSON PORT          (py-zipkin's SimpleHTTPTransport)
"""
import json
import sys


def otel_proto(url):
    from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "legacy-billing", "deployment.environment": "prod"}))
    provider.add_span_processor(SimpleSpanProcessor(ZipkinExporter(endpoint=url)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("billing.lib", "1.2")
    with tracer.start_as_current_span("POST /invoice", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.method", "POST")
        root.add_event("validated", {"rules": 3})
        with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as child:
            child.set_attribute("amount", 12.5)
            child.set_status(Status(StatusCode.ERROR, "card declined"))
    provider.shutdown()
    return [{"name": s.name, "trace_id": f"{s.context.trace_id:032x}", "span_id": f"{s.context.span_id:016x}",
             "parent_span_id": f"{s.parent.span_id:016x}" if s.parent else "", "start": s.start_time, "end": s.end_time,
             "kind": s.kind.name, "attributes": dict(s.attributes), "resource": dict(s.resource.attributes),
             "events": [{"name": e.name, "time": e.timestamp, "attributes": dict(e.attributes)} for e in s.events]}
            for s in memory.get_finished_spans()]


def py_zipkin(encoding, port):
    from py_zipkin import Encoding, Kind
    from py_zipkin.transport import SimpleHTTPTransport
    from py_zipkin.zipkin import zipkin_span

    transport = SimpleHTTPTransport("127.0.0.1", int(port))
    sent = []
    with zipkin_span(service_name="ledger", span_name="post-entry", transport_handler=transport, sample_rate=100.0,
                     encoding=getattr(Encoding, encoding), kind=Kind.SERVER,
                     binary_annotations={"account": "acme", "http.status_code": "200"}) as root:
        root.add_annotation("lock-acquired")
        with zipkin_span(service_name="ledger", span_name="write", kind=Kind.CLIENT,
                         binary_annotations={"db.system": "postgresql"}) as child:
            child.add_sa_binary_annotation(port=5432, service_name="postgres", host="10.1.2.3")
            sent.append({"name": "write", "trace_id": child.zipkin_attrs.trace_id, "span_id": child.zipkin_attrs.span_id,
                         "parent_span_id": child.zipkin_attrs.parent_span_id})
        sent.append({"name": "post-entry", "trace_id": root.zipkin_attrs.trace_id, "span_id": root.zipkin_attrs.span_id,
                     "parent_span_id": root.zipkin_attrs.parent_span_id or ""})
    return sent


if __name__ == "__main__":
    if sys.argv[1] == "otel-proto":
        out = otel_proto(sys.argv[2])
    else:
        out = py_zipkin(sys.argv[2], sys.argv[3])
    json.dump(out, sys.stdout)
