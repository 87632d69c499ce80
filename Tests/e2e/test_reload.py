"""Hot reload under continuous load from the OpenTelemetry SDK's OTLP/HTTP exporter: every span
the receiver answered 200 for reaches an exporter exactly once across 50+ reloads, components a
reload does not touch keep their identity, and a rebuilt plugin at the same path runs its new code."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import PLUGINS, TEST_PLUGINS, read_file_export, wait_for

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

HEAD = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
"""

# Each variant: processors chain, file exporter path suffix, extra (bad) pieces.
VARIANTS = {
    "base":      (["attributes/a", "versioned"], "a", None),
    "reordered": (["versioned", "attributes/a"], "a", None),
    "added":     (["attributes/a", "example_processor", "versioned"], "a", None),
    "exporter":  (["attributes/a", "versioned"], "b", None),
    "invalid":   (["attributes/a", "versioned"], "a", "yaml"),
    "createfail": (["attributes/a", "versioned"], "a", "create"),
}


def config_text(tmp, variant):
    processors, path, bad = VARIANTS[variant]
    text = HEAD.format(receiver="{receiver}", admin="{admin}", plugins="{plugins}") + f"""
processors:
  attributes/a:
    actions:
      - key: reload.test
        value: yes
        action: upsert
  versioned: ~
  example_processor: ~
exporters:
  file:
    path: {tmp}/out-{path}.jsonl
  null: ~
"""
    exporters = ["file", "null"]
    if bad == "create":
        text += "  create_fails: ~\n"
        exporters.append("create_fails")
    text += f"""
service:
  shutdown_timeout: 20s
  pipelines:
    traces:
      receivers: [otlp]
      processors: [{", ".join(processors)}]
      exporters: [{", ".join(exporters)}]
"""
    if bad == "yaml":
        text += "  : : [\n"
    return text


class Load:
    """Threads that make real spans with the SDK and send them with its OTLP/HTTP exporter,
    remembering which span ids the server acknowledged."""

    def __init__(self, url, threads=2, timeout=30):
        self.url = url
        self.timeout = timeout
        self.acked, self.failed = set(), set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def run(self, n):
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": f"load-{n}"}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("reload-load")
        exporter = OTLPSpanExporter(endpoint=self.url, timeout=self.timeout)
        deadline = time.time() + 240  # bounded even if the test forgets to stop us
        while not self.stop.is_set() and time.time() < deadline:
            for _ in range(20):
                with tracer.start_as_current_span("work"):
                    pass
            spans = memory.get_finished_spans()
            memory.clear()
            ids = {f"{s.get_span_context().span_id:016x}" for s in spans}
            result = exporter.export(spans)
            with self.lock:
                (self.acked if result == SpanExportResult.SUCCESS else self.failed).update(ids)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def build_versioned(dest, version):
    tmp = dest + ".tmp"
    subprocess.run(["cc", "-std=c99", "-O2", "-shared", "-fPIC", f"-I{ROOT}/include", f"-DVERSION={version}", "-o", tmp,
                    os.path.join(ROOT, "Tests", "fixtures", "plugins", "versioned.c")], check=True, timeout=60)
    os.replace(tmp, dest)  # same path, new bytes


def reload_plugins(tmp, fixture):
    """A plugin directory with the chain's plugins, one test fixture and versioned.so v1."""
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins)
    for name in ["attributes", "example_processor", "file", "null"]:
        shutil.copy(os.path.join(PLUGINS, name + ".so"), plugins)
    shutil.copy(os.path.join(TEST_PLUGINS, fixture + ".so"), plugins)
    build_versioned(os.path.join(plugins, "versioned.so"), 1)
    return plugins


def test_fifty_reloads_under_load_lose_and_duplicate_nothing(spanhost, tmp):
    plugins = reload_plugins(tmp, "create_fails")

    s = spanhost(config_text(tmp, "base"), plugins_dir=plugins)

    def write(variant):
        """Rewrites the file spanhostd was started with; reloads re-read it."""
        text = config_text(tmp, variant).format(receiver=f"127.0.0.1:{s.receiver_port}",
                                                admin=f"127.0.0.1:{s.admin_port}", plugins=plugins)
        with open(s.config_path + ".new", "w") as f:
            f.write(text)
        os.replace(s.config_path + ".new", s.config_path)

    def file_uid():
        return next(e["instance"] for e in s.status()["exporters"] if e["id"] == "file")

    def file_exported():
        return next(e["counters"].get("exported", 0) for e in s.status()["exporters"] if e["id"] == "file")

    plan = ["reordered", "base", "added", "base", "exporter", "base", "invalid", "createfail", "rebuild"] * 6
    outcomes = {"ok": 0, "failed": 0}
    version = 1
    with Load(s.url) as load:
        wait_for(lambda: len(load.acked) > 100, timeout=20)
        for i, step in enumerate(plan):
            before_uid = file_uid()
            before_exported = file_exported()
            if step == "rebuild":
                version += 1
                build_versioned(os.path.join(plugins, "versioned.so"), version)
                write("base")
            else:
                write(step)
            if i % 3 == 0:
                s.proc.send_signal(signal.SIGHUP)
                wait_for(lambda: s.status()["reloads"]["succeeded"] + s.status()["reloads"]["failed"] == i + 1, timeout=30)
                entry = s.status()["reloads"]["last"]
            else:
                entry = requests.post(s.admin + "/-/reload", json={}, timeout=60).json()
            expect_ok = step not in ("invalid", "createfail")
            assert entry["ok"] == expect_ok, (step, entry)
            outcomes["ok" if entry["ok"] else "failed"] += 1
            if step in ("reordered", "base", "added", "invalid", "createfail") and not (step == "base" and plan[i - 1] == "exporter"):
                # The file exporter's plugin and settings did not change: same instance, same
                # queue, and its counters go on from where they were.
                assert file_uid() == before_uid, step
                assert file_exported() >= before_exported, step
            if step == "exporter":
                assert file_uid() != before_uid
            time.sleep(0.05)
        sent_before_stop = len(load.acked)
        time.sleep(0.5)

    status = s.status()
    assert s.stop() == 0
    exported = []
    for name in os.listdir(tmp):
        if name.startswith("out-") and name.endswith(".jsonl"):
            exported += read_file_export(os.path.join(tmp, name))
    ids = [e["span"]["spanId"] for e in exported]
    counts = {}
    for span_id in ids:
        counts[span_id] = counts.get(span_id, 0) + 1
    duplicates = sum(1 for c in counts.values() if c > 1)
    missing = load.acked - set(counts)
    print(f"\nreloads: {outcomes['ok']} succeeded, {outcomes['failed']} refused; "
          f"spans acknowledged: {len(load.acked)}, exported: {len(ids)}, missing: {len(missing)}, "
          f"duplicated: {duplicates}, not acknowledged: {len(load.failed)}")
    assert outcomes["ok"] + outcomes["failed"] >= 50
    assert status["reloads"]["failed"] == outcomes["failed"]
    assert sent_before_stop > 1000
    assert not missing
    assert duplicates == 0

    # The rebuilt plugin's new code ran: the last spans carry the last version.
    versions = {}
    for e in exported:
        attrs = {kv["key"]: kv["value"] for kv in e["span"].get("attributes", [])}
        v = int(attrs["plugin.version"]["intValue"])
        versions[v] = versions.get(v, 0) + 1
    assert set(versions) == set(range(1, version + 1)), versions
    retained = [p for p in status["plugins"] if p["name"] == "versioned"]
    assert len({p["sha256"] for p in retained}) >= 1
    assert any(p["state"] == "current" for p in retained)


def test_sigterm_under_load_delivers_every_acknowledged_span(spanhost, tmp):
    cfg = HEAD + """
exporters:
  file:
    path: {tmp}/out.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""
    s = spanhost(cfg)
    with Load(s.url, timeout=3) as load:
        wait_for(lambda: len(load.acked) > 500, timeout=20)
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(30) == 0
    exported = {e["span"]["spanId"] for e in read_file_export(os.path.join(tmp, "out.jsonl"))}
    print(f"\nacknowledged before exit: {len(load.acked)}, exported: {len(exported)}")
    assert load.acked <= exported


def test_a_reload_whose_plugin_aborts_in_create_fails_and_the_server_serves_on(spanhost, tmp):
    plugins = reload_plugins(tmp, "misbehave")
    s = spanhost(config_text(tmp, "base"), plugins_dir=plugins)
    text = config_text(tmp, "base").format(receiver=f"127.0.0.1:{s.receiver_port}", admin=f"127.0.0.1:{s.admin_port}",
                                           plugins=plugins)
    # A second exporter whose create calls abort().
    text = text.replace("  null: ~\n", "  null: ~\n  misbehave: {mode: abort}\n").replace(
        "exporters: [file, null]", "exporters: [file, null, misbehave]")
    with open(s.config_path, "w") as f:
        f.write(text)
    with Load(s.url) as load:
        wait_for(lambda: len(load.acked) > 100, timeout=20)
        answers = [requests.post(s.admin + "/-/reload", json={}, timeout=60) for _ in range(3)]
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: s.status()["reloads"]["failed"] == 4, timeout=30)
        acked_during = len(load.acked)
        wait_for(lambda: len(load.acked) > acked_during + 100, timeout=20)
    for answer in answers:
        assert answer.status_code == 400, answer.text
        message = answer.json()["message"]
        assert "exporters.misbehave" in message and "misbehave.so" in message and "sha256" in message, message
        assert "SIGABRT" in message, message
    assert s.proc.poll() is None, "the running server died with the plugin"
    assert s.status()["reloads"]["failed"] == 4
    assert not load.failed, f"{len(load.failed)} spans were refused while the reload failed"
    assert s.stop() == 0
