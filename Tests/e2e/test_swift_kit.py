"""The Swift plugin kit on its own: a plugin package depending on PluginKit/ resolves nothing
else (no SwiftNIO, Yams or Prometheus), builds from a copy of the directory alone, links no
HTTP stack unless it asks for SpanhostPluginHTTP, and the plugins in examples-swift/ build with
`swift build` and pass `spanhost plugin-test`, their config schemas checked by the host; one of
them holds spans and emits them (the ABI's emit, TAKEN, release_trace, raise, expressions,
counters by handle, validate)."""
import json
import os
import shutil
import subprocess

from conftest import BUILD
from test_data_path import otlp_json
from test_plugin_cli import spanhost_cli, write

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def swift(*args, timeout=900):
    r = subprocess.run(["swift", *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def dependency_names(package):
    """Every package in the resolved graph below `package`, by identity."""
    graph = json.loads(swift("package", "--package-path", os.path.join(ROOT, package), "show-dependencies", "--format", "json"))
    names, todo = set(), list(graph["dependencies"])
    while todo:
        dep = todo.pop()
        names.add(dep["identity"])
        todo.extend(dep["dependencies"])
    return names


def test_the_kit_resolves_nothing_else_and_the_swift_examples_pass_plugin_test(tmp):
    assert dependency_names("PluginKit") == set()
    assert dependency_names("examples-swift") == {"pluginkit"}

    scratch = os.path.join(BUILD, "examples-swift")
    swift("build", "-c", "release", "--package-path", os.path.join(ROOT, "examples-swift"), "--scratch-path", scratch)
    plugins = {}
    for name in ("example_swift_exporter", "example_swift_processor", "example_swift_buffer", "example_swift_functions"):
        plugins[name] = os.path.join(tmp, f"{name}.so")
        shutil.copy(os.path.join(scratch, "release", f"lib{name}.so"), plugins[name])

    body = otlp_json(3)
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["name"] = "drop-me"
    spans = write(tmp, "in.json", json.dumps(body))
    settings = write(tmp, "processor.yaml", "environment: prod\ndrop_names: [drop-me]\n")
    r = spanhost_cli("plugin-test", plugins["example_swift_processor"], "--config", settings, "--input", spans)
    assert r.returncode == 0, r.stderr
    out = [sp for rs in json.loads(r.stdout.splitlines()[0])["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
    assert len(out) == 2 and all({"key": "deployment.environment", "value": {"stringValue": "prod"}} in sp["attributes"] for sp in out)
    assert "dropped_spans" in r.stderr

    # The schema declared in Swift: a missing required key and a typo are refused before the plugin runs.
    r = spanhost_cli("plugin-test", plugins["example_swift_processor"], "--config", write(tmp, "none.yaml", "drop_names: [x]\n"),
                     "--input", spans)
    assert r.returncode == 1 and "environment: required" in r.stderr, r.stderr
    r = spanhost_cli("plugin-test", plugins["example_swift_processor"], "--config",
                     write(tmp, "typo.yaml", "environment: prod\ndrop_name: [x]\n"), "--input", spans)
    assert r.returncode == 1 and "valid keys here: drop_names, environment" in r.stderr, r.stderr

    r = spanhost_cli("plugin-test", plugins["example_swift_exporter"], "--config", write(tmp, "exporter.yaml", "label: batch\n"),
                     "--input", spans)
    assert r.returncode == 0 and "export_batch: OK" in r.stdout, r.stderr
    assert "batch: 3 spans, 0 with errors" in r.stderr, r.stderr
    r = spanhost_cli("plugins", "describe", plugins["example_swift_exporter"])
    assert "label" in r.stdout and "string" in r.stdout and "spans" in r.stdout, r.stdout

    # Only plugins that ask for SpanhostPluginHTTP link FoundationNetworking (curl, ICU, TLS).
    for name, path in plugins.items():
        libraries = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
        assert "libFoundationNetworking" not in libraries and "libcurl" not in libraries, (name, libraries)

    # The holding processor: spans are taken, emitted two at a time and at flush; one for which
    # the condition holds passes through; a held error span raises an event.
    body = otlp_json(4)
    held = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    held[1]["attributes"].append({"key": "urgent", "value": {"boolValue": True}})
    held[2]["status"] = {"code": 2}
    spans = write(tmp, "buffer-in.json", json.dumps(body))
    settings = write(tmp, "buffer.yaml", 'batch_spans: 2\npass_through: attributes["urgent"] == true\n')
    r = spanhost_cli("plugin-test", plugins["example_swift_buffer"], "--config", settings, "--input", spans)
    assert r.returncode == 0, r.stderr
    batches = [[sp["name"] for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
               for line in r.stdout.splitlines()]
    assert batches == [["op1"], ["op0", "op2", "op3"]], batches
    assert '"kind":"error_span_held"' in r.stderr and "counter emitted_spans = 3" in r.stderr, r.stderr
    # Functions written in Swift, called by the host's expression engine.
    r = spanhost_cli("plugin-test", plugins["example_swift_functions"], "--call", 'word_count(" three  short words ")')
    assert r.returncode == 0 and r.stdout.strip() == "3", r.stdout + r.stderr

    # Its validate hook compiles the condition: --check refuses a bad one without creating it.
    config = write(tmp, "buffer-check.yaml", f"""
receivers: {{otlp: {{protocols: {{http: {{endpoint: 127.0.0.1:0}}}}}}}}
processors: {{example_swift_buffer: {{pass_through: 'attributes["x"] ==='}}}}
exporters: {{nop: {{}}}}
plugins: {{dir: {tmp}}}
service: {{pipelines: {{traces: {{receivers: [otlp], processors: [example_swift_buffer], exporters: [nop]}}}}}}
""")
    r = subprocess.run([os.path.join(BUILD, "bin", "spanhostd"), "--config", config, "--check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "processors.example_swift_buffer: validate failed:" in r.stderr, r.stderr


def test_the_kit_builds_from_a_copy_of_its_directory(tmp):
    """PluginKit/ carries its own copy of spanhost.h (make header-check keeps it equal), so a
    copy of the directory alone, vendored or published, builds."""
    copy = os.path.join(tmp, "PluginKit")
    shutil.copytree(os.path.join(ROOT, "PluginKit"), copy, symlinks=True, ignore=shutil.ignore_patterns(".build*"))
    swift("build", "--package-path", copy, "--scratch-path", os.path.join(tmp, "build"))
