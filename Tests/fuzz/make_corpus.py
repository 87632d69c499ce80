"""Regenerates the SDK part of the fuzz corpus: what the OpenTelemetry Python SDK's OTLP/HTTP
and Zipkin JSON exporters send (captured on 127.0.0.1), and the OTLP requests again in OTLP
JSON (protobuf's JSON mapping with hex ids, as OTLP/HTTP JSON writes them).
Run with the test venv: build/venv/bin/python Tests/fuzz/make_corpus.py Tests/fuzz/corpus"""
import base64
import http.server
import json
import os
import sys
import threading

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, Status, StatusCode

out = sys.argv[1]
bodies = []


class Capture(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        bodies.append((self.headers.get("Content-Type") or "", self.rfile.read(n)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def hex_ids(o):
    if isinstance(o, dict):
        for k, v in list(o.items()):
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                o[k] = base64.b64decode(v).hex()
            else:
                hex_ids(v)
    elif isinstance(o, list):
        for x in o:
            hex_ids(x)


server = http.server.HTTPServer(("127.0.0.1", 0), Capture)
port = server.server_address[1]
threading.Thread(target=server.serve_forever, daemon=True).start()
for exporter in (OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"),
                 ZipkinExporter(endpoint=f"http://127.0.0.1:{port}/api/v2/spans")):
    provider = TracerProvider(resource=Resource.create({"service.name": "shop", "service.version": "1.2", "host.name": "h1"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("lib.x", "0.9")
    with tracer.start_as_current_span("GET /cart", kind=trace.SpanKind.SERVER, attributes={
            "http.method": "GET", "http.status_code": 500, "ratio": 0.25, "ok": False, "tags": ["a", "b"],
            "ns": [1, 2, 3], "fs": [1.5, 2.5], "bs": [True, False]}) as root:
        root.add_event("exception", {"exception.type": "ValueError", "exception.message": "bad \u00e9 \U0001F600",
                                     "exception.stacktrace": "Traceback...\n  line 1"})
        with tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT,
                                          links=[Link(root.get_span_context(), {"link.k": "v"})]) as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
        root.set_status(Status(StatusCode.ERROR, "boom"))
    with tracer.start_as_current_span("publish", kind=trace.SpanKind.PRODUCER) as producer:
        producer.set_attribute("messaging.system", "kafka")
    provider.shutdown()

for kind in ("otlp_proto", "otlp_json", "zipkin"):
    os.makedirs(f"{out}/{kind}", exist_ok=True)
for i, (content_type, body) in enumerate(bodies):
    if "protobuf" in content_type:
        with open(f"{out}/otlp_proto/sdk-{i}.pb", "wb") as f:
            f.write(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        document = json_format.MessageToDict(request)
        hex_ids(document)
        with open(f"{out}/otlp_json/sdk-{i}.json", "w") as f:
            json.dump(document, f)
    else:
        with open(f"{out}/zipkin/sdk-{i}.json", "wb") as f:
            f.write(body)
