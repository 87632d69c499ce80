"""The otlphttp exporter, a Swift plugin built with SpanhostPluginKit, forwards spans from one
spanhostd to a second spanhostd; spans from the OpenTelemetry SDK arrive intact, and a backend
that is down at first receives everything once it is up."""
import os
import re
import subprocess

from conftest import PLUGINS, SPANHOSTD, Spanhost, free_port, read_file_export, wait_for
from test_sdk_roundtrip import attrs, send_spans

BACKEND = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  file:
    path: {tmp}/backend.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""

FRONT = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:%d
    compression: %s
    encoding: %s
    headers:
      x-tenant: team-a
    timeout: 2s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 60s}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp]
"""


def header_abi():
    """The ABI version the public header declares, which a plugin built now carries."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "include", "spanhost", "spanhost.h")).read()
    major, minor = (re.search(rf"#define SPANHOST_ABI_{part} (\d+)", text).group(1) for part in ("MAJOR", "MINOR"))
    return f"{major}.{minor}"


def test_sdk_spans_reach_a_second_spanhostd_intact(spanhost, tmp):
    backend = spanhost(BACKEND)
    for compression, encoding in [("gzip", "proto"), ("none", "json")]:
        front = spanhost(FRONT % (backend.receiver_port, compression, encoding))
        plugin = next(p for p in front.status()["plugins"] if p["name"] == "otlphttp")
        assert plugin["kind"] == "exporter" and plugin["abi"] == header_abi() and not plugin["unloadable"]
        sent = send_spans(front.url)
        ids = {f"{sp.get_span_context().span_id:016x}" for sp in sent}
        out = os.path.join(tmp, "backend.jsonl")

        def arrived():
            return [g for g in read_file_export(out) if g["span"]["spanId"] in ids]
        got = wait_for(lambda: len(arrived()) >= len(sent) and arrived())
        assert got and len(got) == len(sent), front.log()
        by_id = {g["span"]["spanId"]: g["span"] for g in got}
        for sp in sent:
            g = by_id[f"{sp.get_span_context().span_id:016x}"]
            assert g["name"] == sp.name
            assert int(g["startTimeUnixNano"]) == sp.start_time
            want = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in sp.attributes.items()}
            assert attrs(g.get("attributes")) == want
            assert [e["name"] for e in g.get("events", [])] == [e.name for e in sp.events]
        # The front counts the batch once the backend's answer is back, just after it is written.
        assert wait_for(lambda: front.status()["exporters"][0]["counters"].get("exported") == len(sent))
        front.stop()


def test_backend_down_then_up_receives_everything(spanhost, tmp):
    port = free_port()
    front = spanhost(FRONT % (port, "gzip", "proto"))
    sent = send_spans(front.url)  # accepted by the front; the backend is not there yet
    assert wait_for(lambda: front.status()["exporters"][0]["counters"].get("retried", 0) > 0, timeout=10)
    # Now start the backend where the front is sending.
    text = BACKEND.format(receiver=f"127.0.0.1:{port}", admin=f"127.0.0.1:{free_port()}",
                          plugins=PLUGINS, tmp=tmp)
    cfg = os.path.join(tmp, "late-backend.yaml")
    with open(cfg, "w") as f:
        f.write(text)
    proc = subprocess.Popen([SPANHOSTD, "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = os.path.join(tmp, "backend.jsonl")
        got = wait_for(lambda: len(read_file_export(out)) >= len(sent), timeout=30)
        assert got, front.log()
        counters = front.status()["exporters"][0]["counters"]
        print(f"\nsent {len(sent)} spans while the backend was down; retried {counters['retried']}, exported {counters['exported']}")
        assert counters["exported"] == len(sent)
    finally:
        proc.terminate()
        proc.wait(10)


def test_bad_endpoint_config_is_refused(tmp):
    s = Spanhost(FRONT.replace("endpoint: http://127.0.0.1:%d", "endpoint: ftp://x") % ("gzip", "proto"), tmp)
    assert s.wait_exit() != 0
    assert "exporters.otlphttp: create failed: endpoint: 'ftp://x' is not an http(s) URL" in s.log()


BACKEND_PROCESSED = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
        max_request_body_size: 2000
processors:
  example_processor: ~
exporters:
  null: ~
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [example_processor]
      exporters: [null]
"""


def test_partial_success_is_counted_and_413_is_permanent(spanhost, tmp):
    import requests
    from test_bad_input import PROTO, request
    backend = spanhost(BACKEND_PROCESSED)
    front = spanhost(FRONT % (backend.receiver_port, "none", "proto"))
    counters = lambda: front.status()["exporters"][0]["counters"]
    assert requests.post(front.url, data=request(["a", "drop-me"]).SerializeToString(), headers=PROTO, timeout=5).status_code == 200
    assert wait_for(lambda: counters().get("rejected_spans") == 1), counters()
    # A batch bigger than the backend takes: 413, which is not worth retrying.
    big = request([f"span-{i}-" + "x" * 40 for i in range(60)]).SerializeToString()
    assert requests.post(front.url, data=big, headers=PROTO, timeout=5).status_code == 200
    assert wait_for(lambda: counters().get("failed") == 60), counters()
    assert "answered 413" in front.log()


BACKEND_STUCK = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  misbehave:
    mode: hang
    sending_queue: {{queue_size: 1}}
plugins:
  dir: %s
admin:
  endpoint: {admin}
service:
  shutdown_timeout: 1s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [misbehave]
"""


def test_503_with_retry_after_is_retried(spanhost, tmp):
    import requests
    from conftest import TEST_PLUGINS
    from test_bad_input import PROTO, request
    backend = spanhost(BACKEND_STUCK % TEST_PLUGINS)
    # The backend never answers again, so the front's drain at teardown can only run out.
    front = spanhost((FRONT % (backend.receiver_port, "gzip", "proto")).replace("service:\n", "service:\n  shutdown_timeout: 1s\n", 1))
    for i in range(4):  # the backend takes two (one hung, one queued), then answers 503
        assert requests.post(front.url, data=request([f"s{i}"]).SerializeToString(), headers=PROTO, timeout=5).status_code == 200
    counters = lambda: front.status()["exporters"][0]["counters"]
    assert wait_for(lambda: counters().get("retried", 0) >= 1, timeout=15), counters()
    assert "failed" not in counters()
    assert "answered 503" in front.log()


def test_the_collectors_names_for_otlp_exporters_are_understood(tmp):
    """`otlp_http` (the Collector's current name for otlphttp) runs the otlphttp plugin; `otlp`,
    the Collector's gRPC exporter, is refused naming otlphttp instead of "no plugin"."""
    for exporter, ok, says in [("otlp_http", True, "config and plugins are valid"),
                               ("otlp", False, "sends OTLP over gRPC, which spanhost does not speak; use otlphttp")]:
        path = os.path.join(tmp, f"{exporter}.yaml")
        with open(path, "w") as f:
            f.write(f"receivers:\n  otlp: {{protocols: {{http: {{endpoint: 127.0.0.1:1}}}}}}\n"
                    f"exporters:\n  {exporter}: {{endpoint: http://127.0.0.1:2}}\nplugins: {{dir: {PLUGINS}}}\n"
                    f"service:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [{exporter}]}}\n")
        r = subprocess.run([SPANHOSTD, "--check", "--config", path], capture_output=True, text=True, timeout=60)
        assert (r.returncode == 0) == ok and says in r.stdout + r.stderr, (exporter, r.stdout, r.stderr[-400:])
