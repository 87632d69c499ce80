"""examples-rust: plugins written in Rust with rustc alone, against a hand-written mirror of the
header. Their mirror's layout must be the header's (`spanhost abi --json`), the processor must
do exactly what the C example processor does, and both must run in the real host."""
import ctypes
import json
import os
import subprocess

import requests

from conftest import BUILD, PLUGINS, wait_for
from test_bad_input import PROTO, request

SPANHOST = os.path.join(BUILD, "bin", "spanhost")
EXAMPLES = os.path.join(BUILD, "rust-examples")
NAMES = ["example_rust_processor", "example_rust_exporter"]


def built(name):
    path = os.path.join(EXAMPLES, name + ".so")
    assert os.path.exists(path), f"{path} is missing: `make test-e2e` builds examples-rust (make -C examples-rust OUT=...)"
    return path


def cli(*args):
    return subprocess.run([SPANHOST, *args], capture_output=True, text=True, timeout=60)


def test_the_rust_mirror_has_the_headers_layout():
    r = cli("abi", "--json")
    assert r.returncode == 0, r.stderr
    structs = {s["name"]: s for s in json.loads(r.stdout)["structs"]}
    for name in NAMES:
        library = ctypes.CDLL(built(name))
        library.spanhost_rust_layout.restype = ctypes.c_char_p
        lines = library.spanhost_rust_layout().decode().splitlines()
        assert len(lines) > 20
        for line in lines:
            what, kind, value = line.split()
            struct, _, field = what.partition(".")
            if kind == "size":
                assert structs[struct]["size"] == int(value), line
            else:
                offsets = {f["name"]: f["offset"] for f in structs[struct]["fields"]}
                assert offsets[field] == int(value), line


def test_the_rust_processor_does_what_the_c_example_does(tmp):
    spans = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                                "scopeSpans": [{"spans": [
                                    {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": f"010203040506070{i}", "name": name}
                                    for i, name in enumerate(["a", "drop-me", "b"])]}]}]}
    path = os.path.join(tmp, "in.json")
    with open(path, "w") as f:
        json.dump(spans, f)
    c = cli("plugin-test", os.path.join(PLUGINS, "example_processor.so"), "--input", path)
    assert c.returncode == 0, c.stderr
    expected = os.path.join(tmp, "expected.jsonl")
    with open(expected, "w") as f:
        f.write(c.stdout)
    r = cli("plugin-test", built("example_rust_processor"), "--input", path, "--expect", expected)
    assert r.returncode == 0, r.stderr
    assert "counter dropped_by_name = 1" in r.stderr
    out = json.loads(r.stdout)
    assert [s["name"] for s in out["resourceSpans"][0]["scopeSpans"][0]["spans"]] == ["a", "b"]


def test_the_rust_plugins_run_in_a_pipeline(spanhost, tmp):
    cfg = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
  example_rust_processor: {{}}
exporters:
  example_rust_exporter:
    prefix: "rust: "
plugins:
  dir: %s
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [example_rust_processor]
      exporters: [example_rust_exporter]
""" % EXAMPLES
    for name in NAMES:
        built(name)
    s = spanhost(cfg)
    r = requests.post(s.url, data=request(["a", "b", "drop-me"]).SerializeToString(), headers=PROTO, timeout=5)
    assert r.status_code == 200
    assert wait_for(lambda: "rust: exported 2 spans" in s.log())
    assert s.status()["exporters"][0]["counters"]["rust_spans"] == 2


def test_a_lib_prefixed_file_is_named_in_the_refusal(tmp):
    """cargo names a cdylib lib<name>.so; the host looks for <name>.so and says so."""
    import shutil
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins)
    shutil.copy(built("example_rust_exporter"), os.path.join(plugins, "libexample_rust_exporter.so"))
    path = os.path.join(tmp, "config.yaml")
    with open(path, "w") as f:
        f.write("receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}\n"
                f"exporters: {{example_rust_exporter: {{}}}}\nplugins: {{dir: {plugins}}}\n"
                "service: {pipelines: {traces: {receivers: [otlp], exporters: [example_rust_exporter]}}}\n")
    out = subprocess.run([os.path.join(BUILD, "bin", "spanhostd"), "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "libexample_rust_exporter.so is there: rename it to example_rust_exporter.so" in out.stderr, out.stderr
