"""file exporter rotation and length-delimited protobuf output; debug exporter verbosity levels."""
import os

import requests
from google.protobuf.internal.decoder import _DecodeVarint32
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import read_file_export, wait_for
from test_bad_input import PROTO, request

BASE = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
%s
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [%s]
"""


def post(s, names):
    r = requests.post(s.url, data=request(names).SerializeToString(), headers=PROTO, timeout=5)
    assert r.status_code == 200


def read_delimited(path):
    data = open(path, "rb").read()
    pos, out = 0, []
    while pos < len(data):
        size, pos = _DecodeVarint32(data, pos)
        out.append(ExportTraceServiceRequest.FromString(data[pos:pos + size]))
        pos += size
    return out


def test_file_rotation_keeps_max_backups_and_loses_no_span(spanhost, tmp):
    cfg = BASE % ("""  file:
    path: {tmp}/spans.jsonl
    rotation:
      max_megabytes: 0.002
      max_backups: 3""", "file")
    s = spanhost(cfg)
    for i in range(12):
        post(s, [f"batch{i}-span{j}" for j in range(5)])
    exporter = lambda: s.status()["exporters"][0]["counters"]
    assert wait_for(lambda: exporter().get("exported") == 60)
    files = sorted(f for f in os.listdir(tmp) if f.startswith("spans.jsonl"))
    assert files == ["spans.jsonl", "spans.jsonl.1", "spans.jsonl.2", "spans.jsonl.3"]
    for f in files:
        assert os.path.getsize(os.path.join(tmp, f)) <= 0.002 * 1024 * 1024
    kept = [g["span"]["name"] for f in files for g in read_file_export(os.path.join(tmp, f))]
    rotations = exporter()["rotations"]
    print(f"\n{rotations} rotations; {len(kept)} of 60 spans in the 4 files kept")
    # Every span is in exactly one file until the oldest backups are deleted by design.
    assert len(kept) == len(set(kept))
    assert "batch11-span4" in kept and rotations >= 4


def test_file_proto_format_is_length_delimited(spanhost, tmp):
    s = spanhost(BASE % ("  file:\n    path: {tmp}/spans.pb\n    format: proto", "file"))
    post(s, ["a", "b"])
    post(s, ["c"])
    path = os.path.join(tmp, "spans.pb")
    assert wait_for(lambda: os.path.exists(path) and len(read_delimited(path)) == 2)
    names = [sp.name for req in read_delimited(path) for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
    assert names == ["a", "b", "c"]


def test_debug_verbosity_levels(spanhost, tmp):
    outputs = {}
    for level in ["basic", "normal", "detailed"]:
        s = spanhost(BASE % (f"  debug:\n    verbosity: {level}", "debug"))
        post(s, ["GET /x"])
        assert wait_for(lambda: "batch:" in s.output())
        s.stop()
        outputs[level] = s.output()
    assert "batch: 1 resource(s), 1 span(s)" in outputs["basic"] and "span " not in outputs["basic"]
    assert "span bad-input-test GET /x trace=0102030405060708090a0b0c0d0e0f10" in outputs["normal"]
    assert "attributes" not in outputs["normal"]
    assert "resource {service.name=\"bad-input-test\"}" in outputs["detailed"]
    assert "    attributes {" in outputs["detailed"]
