"""Real Jaeger clients, run in build/clients-venv (they pin older OpenTelemetry): each sends the
same small trace to spanhostd and prints, as JSON on stdout, what it sent.

    jaeger_clients.py otel-collector http://127.0.0.1:PORT/api/traces   (Thrift binary over HTTP)
    jaeger_clients.py otel-agent PORT                                  (compact emitBatch over UDP)
    jaeger_clients.py jaeger-client PORT                               (jaeger-client, compact over UDP)
    jaeger_clients.py binary-agent PORT                                (Thrift's TBinaryProtocol over UDP)
"""
import json
import socket
import sys
import time


def otel(exporter):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "legacy-cart", "service.version": "2.1"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("cart.checkout", "0.9")
    other = SpanContext(trace_id=0x0af7651916cd43dd8448eb211c80319c, span_id=0xb7ad6b7169203331, is_remote=True,
                        trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER, links=[Link(other)]) as root:
        root.set_attribute("http.method", "POST")
        root.set_attribute("retries", 2)
        root.set_attribute("ratio", 0.25)
        root.set_attribute("cached", False)
        root.add_event("validated", {"rules": 3})
        with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "card declined"))
    provider.shutdown()
    spans = []
    for s in memory.get_finished_spans():
        spans.append({
            "name": s.name, "trace_id": f"{s.context.trace_id:032x}", "span_id": f"{s.context.span_id:016x}",
            "parent_span_id": f"{s.parent.span_id:016x}" if s.parent else "",
            "start": s.start_time, "end": s.end_time, "kind": s.kind.name,
            "attributes": dict(s.attributes), "resource": dict(s.resource.attributes),
            "events": [{"name": e.name, "time": e.timestamp, "attributes": dict(e.attributes)} for e in s.events],
            "links": [{"trace_id": f"{l.context.trace_id:032x}", "span_id": f"{l.context.span_id:016x}"} for l in s.links],
        })
    return spans


def jaeger_client(port):
    from jaeger_client import Config

    config = Config(config={"sampler": {"type": "const", "param": 1}, "logging": False, "reporter_flush_interval": 0.1,
                            "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": port}},
                    service_name="legacy-cart", validate=True)
    tracer = config.initialize_tracer()
    sent = []
    with tracer.start_span("checkout", tags={"span.kind": "server", "http.status_code": 503}) as span:
        span.log_kv({"event": "payment-started", "amount": 12})
        with tracer.start_span("charge", child_of=span) as child:
            child.set_tag("error", True)
            child.set_tag("peer.service", "bank")
        sent.append(child)
    sent.append(span)
    time.sleep(0.5)
    tracer.close()
    time.sleep(0.5)
    return [{"name": s.operation_name, "trace_id": f"{s.trace_id:032x}", "span_id": f"{s.span_id:016x}",
             "parent_span_id": f"{s.parent_id:016x}" if s.parent_id else "",
             "start": int(s.start_time * 1e6), "end": int(s.end_time * 1e6)} for s in sent]


def binary_agent(port):
    """A Batch built with the generated Thrift types, sent as the agent's emitBatch in
    TBinaryProtocol: the protocol jaeger agents take on 6832."""
    from opentelemetry.exporter.jaeger.thrift.gen.agent import Agent
    from opentelemetry.exporter.jaeger.thrift.gen.jaeger import ttypes as j
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TTransport

    tags = [j.Tag(key="hostname", vType=j.TagType.STRING, vStr="cart-7"),
            j.Tag(key="jaeger.version", vType=j.TagType.STRING, vStr="Go-2.30.0")]
    span = j.Span(traceIdLow=0x1112131415161718, traceIdHigh=0x0102030405060708, spanId=0x2122232425262728, parentSpanId=0,
                  operationName="reserve", flags=1, startTime=1_700_000_000_000_000, duration=1500,
                  tags=[j.Tag(key="span.kind", vType=j.TagType.STRING, vStr="producer"),
                        j.Tag(key="payload", vType=j.TagType.BINARY, vBinary=b"\x00\x01\xff"),
                        j.Tag(key="otel.status_code", vType=j.TagType.STRING, vStr="ok"),
                        j.Tag(key="otel.status_description", vType=j.TagType.STRING, vStr="fine")],
                  references=[j.SpanRef(refType=j.SpanRefType.FOLLOWS_FROM, traceIdLow=0x1112131415161718,
                                        traceIdHigh=0x0102030405060708, spanId=0x3132333435363738)])
    buffer = TTransport.TMemoryBuffer()
    Agent.Client(TBinaryProtocol.TBinaryProtocol(buffer)).emitBatch(j.Batch(process=j.Process(serviceName="stock", tags=tags),
                                                                            spans=[span]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(buffer.getvalue(), ("127.0.0.1", port))
    return []


def main():
    mode, where = sys.argv[1], sys.argv[2]
    if mode in ("otel-collector", "otel-agent"):
        from opentelemetry.exporter.jaeger.thrift import JaegerExporter
        exporter = (JaegerExporter(collector_endpoint=where) if mode == "otel-collector"
                    else JaegerExporter(agent_host_name="127.0.0.1", agent_port=int(where)))
        sent = otel(exporter)
    elif mode == "jaeger-client":
        sent = jaeger_client(int(where))
    elif mode == "binary-agent":
        sent = binary_agent(int(where))
    else:
        raise SystemExit(f"unknown mode {mode}")
    json.dump(sent, sys.stdout)


if __name__ == "__main__":
    main()
