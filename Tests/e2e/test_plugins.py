"""Plugin loading: bad plugin files are refused with a reason while the rest load; create
failures and invalid configs stop startup with a message naming the component or key; export
results follow the ABI's codes; the plain-C examples build with cc alone."""
import os
import shutil
import subprocess
import time

import requests

from conftest import BUILD, PLUGINS, TEST_PLUGINS, Spanhost, read_file_export, wait_for
from test_bad_input import PROTO, request
from test_otlphttp import header_abi

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

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


def plugin_dir(tmp, *names):
    d = os.path.join(tmp, "plugins")
    os.makedirs(d, exist_ok=True)
    for name in names:
        src = os.path.join(PLUGINS, name + ".so")
        if not os.path.exists(src):
            src = os.path.join(TEST_PLUGINS, name + ".so")
        shutil.copy(src, d)
    return d


def test_only_the_plugins_the_config_names_are_opened(spanhost, tmp):
    d = plugin_dir(tmp, "file", "wrong_abi", "newer_minor", "no_entry", "old_minor", "planted")
    with open(os.path.join(d, "not_a_library.so"), "w") as f:
        f.write("this is not a shared library\n")
    marker = os.path.join(tmp, "constructor-ran")
    s = spanhost(BASE % ("  file:\n    path: {tmp}/out.jsonl\n  old_minor: {{}}", "file, old_minor"), plugins_dir=d,
                 env={"SPANHOST_TEST_MARKER": marker})
    st = s.status()
    loaded = {p["name"]: p for p in st["plugins"]}
    assert set(loaded) == {"file", "old_minor"}
    assert loaded["old_minor"]["abi"] == "1.0"
    assert len(loaded["file"]["sha256"]) == 64
    # Files no component names were never opened: nothing refused, no constructor ran.
    assert st["refusedPlugins"] == []
    assert requests.post(s.admin + "/-/reload", json={}, timeout=60).status_code == 200
    assert not os.path.exists(marker)
    r = requests.post(s.url, data=request(["x"]).SerializeToString(), headers=PROTO, timeout=5)
    assert r.status_code == 200
    assert wait_for(lambda: len(read_file_export(os.path.join(tmp, "out.jsonl"))) == 1)

    # Listing opens every file, each in a child process of its own.
    r = subprocess.run([os.path.join(BUILD, "bin", "spanhost"), "plugins", "list", "--dir", d], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "SPANHOST_TEST_MARKER": marker})
    assert r.returncode == 0, r.stderr
    lines = {line.split("\t")[0]: line for line in r.stdout.splitlines()}
    assert set(lines) == {"file", "wrong_abi", "newer_minor", "no_entry", "old_minor", "planted", "not_a_library"}
    assert "ABI 99.0" in lines["wrong_abi"] and f"speaks {header_abi()}" in lines["wrong_abi"]
    assert "exporter newer_minor" in lines["newer_minor"]
    assert "spanhost_plugin_entry" in lines["no_entry"]
    assert "not a loadable shared library" in lines["not_a_library"]
    assert "exporter planted 6.6.6" in lines["planted"] and "exporter file" in lines["file"]
    with open(marker) as f:
        pids = {int(x) for x in f.read().split()}
    assert pids and s.server_pid not in pids and s.proc.pid not in pids


def test_a_plugin_built_against_every_earlier_minors_header_loads_and_exports(spanhost, tmp):
    """The Makefile builds one exporter against the header of each earlier minor, taken from the
    repository's history; all load into this host side by side and export."""
    minors = range(int(header_abi().split(".")[1]))
    names = [f"abi_1_{m}" for m in minors]
    d = plugin_dir(tmp, *names)
    s = spanhost(BASE % ("\n".join(f"  {n}: {{{{}}}}" for n in names), ", ".join(names)), plugins_dir=d)
    loaded = {p["name"]: p["abi"] for p in s.status()["plugins"]}
    assert loaded == {f"abi_1_{m}": f"1.{m}" for m in minors}, loaded
    assert requests.post(s.url, data=request(["a", "b"]).SerializeToString(), headers=PROTO, timeout=5).status_code == 200

    def exported():
        return {e["id"]: e["counters"].get("spans") for e in s.status()["exporters"]}
    assert wait_for(lambda: exported() == {n: 2 for n in names}), exported()


def test_plugins_built_against_older_and_newer_headers_both_load(spanhost, tmp):
    """The header's versioning model: any 1.x minor loads. old_minor was built with the 1.1
    header; newer_minor with a 1.99 one whose descriptor is longer than this host's and which
    checks the host table's struct_size for a function this host lacks, so it falls back."""
    d = plugin_dir(tmp, "old_minor", "newer_minor")
    s = spanhost(BASE % ("  old_minor: {{}}\n  newer_minor: {{}}", "old_minor, newer_minor"), plugins_dir=d)
    loaded = {p["name"]: p for p in s.status()["plugins"]}
    assert loaded["old_minor"]["abi"] == "1.0" and loaded["newer_minor"]["abi"] == "1.99", loaded
    for _ in range(3):
        assert requests.post(s.url, data=request(["x"]).SerializeToString(), headers=PROTO, timeout=5).status_code == 200

    def newer():
        return next(e for e in s.status()["exporters"] if e["id"] == "newer_minor")["counters"]
    assert wait_for(lambda: newer().get("exports") == 3), newer()
    assert newer().get("fallbacks") == 3 and "future_calls" not in newer(), newer()
    # Its functions array has 1.99's longer elements: walked by their struct_size, both register.
    for call, result in [('newer_length("abcd")', "4"), ("newer_double(21)", "42")]:
        r = subprocess.run([os.path.join(BUILD, "bin", "spanhost"), "plugin-test", os.path.join(d, "newer_minor.so"), "--call", call],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == result, (call, r.stdout, r.stderr)


def test_check_names_a_refused_plugin_once_without_a_nested_log_line(tmp):
    d = plugin_dir(tmp, "wrong_abi")
    path = os.path.join(tmp, "check.yaml")
    with open(path, "w") as f:
        f.write((BASE % ("  wrong_abi: {{}}", "wrong_abi")).format(receiver="127.0.0.1:0", admin="127.0.0.1:0", plugins=d))
    out = subprocess.run([os.path.join(BUILD, "bin", "spanhostd"), "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.count("built for plugin ABI 99.0") == 1, out.stderr
    assert out.stderr.count("spanhostd:") == 1 and "invalid: exporters.wrong_abi: " in out.stderr, out.stderr


def test_a_named_plugin_that_cannot_load_stops_startup_with_the_reason(tmp):
    d = plugin_dir(tmp, "file", "wrong_abi", "no_entry")
    for name, reason in [("wrong_abi", "ABI 99.0"), ("no_entry", "spanhost_plugin_entry")]:
        s = Spanhost(BASE % (f"  {name}: {{{{}}}}", name), tmp, plugins_dir=d)
        assert s.wait_exit() != 0
        assert f"exporters.{name}:" in s.log() and reason in s.log(), s.log()
    # A file must be named after the plugin it registers.
    os.rename(os.path.join(d, "file.so"), os.path.join(d, "sink.so"))
    s = Spanhost(BASE % ("  sink: {{}}", "sink"), tmp, plugins_dir=d)
    assert s.wait_exit() != 0
    assert "registers plugin 'file', not 'sink'" in s.log(), s.log()


def test_plugins_are_found_in_several_directories_and_a_name_in_two_is_an_error(spanhost, tmp):
    own = plugin_dir(tmp, "old_minor", "null")
    cfg = BASE % ("  file:\n    path: {tmp}/out.jsonl\n  old_minor: {{}}", "file, old_minor")
    s = spanhost(cfg.replace("  dir: {plugins}", f"  dirs: [{own}, {PLUGINS}]"))
    files = {p["name"]: p["file"] for p in s.status()["plugins"]}
    assert files == {"file": os.path.join(PLUGINS, "file.so"), "old_minor": os.path.join(own, "old_minor.so")}
    # null.so is in both: naming it is refused, saying where both files are.
    both = (BASE % ('  "null": {{}}', '"null"')).replace("  dir: {plugins}", f"  dirs: [{own}, {PLUGINS}]")
    bad = Spanhost(both, tmp)
    assert bad.wait_exit() != 0
    assert f"{os.path.join(own, 'null.so')}: also found as {os.path.join(PLUGINS, 'null.so')}" in bad.log(), bad.log()


def test_plugins_load_from_content_addressed_copies(spanhost, tmp):
    d = plugin_dir(tmp, "file")
    cache = os.path.join(tmp, "cache")
    cfg = BASE % ("  file:\n    path: {tmp}/out.jsonl", "file") + "\n"
    cfg = cfg.replace("  dir: {plugins}", "  dir: {plugins}\n  cache_dir: " + cache)
    s = spanhost(cfg, plugins_dir=d)
    p = s.status()["plugins"][0]
    assert p["loadedFrom"] == os.path.join(cache, p["sha256"] + ".so")
    assert os.path.exists(p["loadedFrom"])


def test_create_failure_stops_startup_with_the_plugins_message(tmp):
    d = plugin_dir(tmp, "file", "create_fails")
    s = Spanhost(BASE % ("  create_fails/primary: {{}}", "create_fails/primary"), tmp, plugins_dir=d)
    assert s.wait_exit() != 0
    assert "create_fails/primary: create failed: endpoint: cannot connect (fixture always fails)" in s.log()


def test_invalid_configs_are_refused_naming_the_key(tmp):
    cases = [
        (BASE % ("  file:\n    path: {tmp}/o", "kafka"), "service.pipelines.traces.exporters.0: 'kafka' is not defined under exporters"),
        (BASE % ("  file: {{}}", "file"), "exporters.file.path: required: a string"),
        (BASE % ("  nosuch: {{}}", "nosuch"), "exporters.nosuch: no exporter plugin named 'nosuch'"),
        (BASE % ("  attributes: {{}}", "attributes"), "plugin 'attributes' is a processor, not a exporter"),
        (BASE % ("  file:\n    path: {tmp}/o\n    retry_on_failure:\n      initial_interval: soon", "file"),
         "exporters.file.retry_on_failure.initial_interval: 'soon'"),
        ("receivers: [1, 2]\n", "receivers: must be a map of component ids"),
        ("recievers: {{}}\n", "recievers: unknown section"),
        ("receivers:\n  otlp:\n    protocols:\n      grpc: {{}}\nexporters:\n  debug: {{}}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n",
         "receivers.otlp.protocols.grpc: gRPC is not supported"),
        ("exporters:\n  debug: {{}}\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [debug]\n",
         "service.pipelines.metrics.receivers.0: 'otlp' is not defined under connectors; spanhost carries traces only"),
        ("a: [unclosed\n", "not valid YAML"),
    ]
    for config, message in cases:
        s = Spanhost(config, tmp)
        code = s.wait_exit()
        assert code != 0, config
        assert message in s.log(), (message, s.log())


def test_retryable_exports_are_retried_and_permanent_ones_counted(spanhost, tmp):
    d = plugin_dir(tmp, "old_minor")
    cfg = BASE % ("""  old_minor/retry:
    fail: retryable
    circuit_breaker: {{failure_threshold: 1000}}
    retry_on_failure:
      initial_interval: 10ms
      max_interval: 20ms
      max_elapsed_time: 200ms
  old_minor/perm:
    fail: permanent""", "old_minor/retry, old_minor/perm")
    s = spanhost(cfg, plugins_dir=d)
    for i in range(3):
        assert requests.post(s.url, data=request([f"s{i}"]).SerializeToString(), headers=PROTO, timeout=5).status_code == 200

    def counters():
        return {e["id"]: e["counters"] for e in s.status()["exporters"]}
    c = wait_for(lambda: (lambda c: c if c["old_minor/retry"].get("failed") == 3 and c["old_minor/perm"].get("failed") == 3 else None)(counters()))
    assert c, counters()
    assert c["old_minor/retry"]["retried"] >= 3
    assert "retried" not in c["old_minor/perm"]
    assert "backend rejected the data" in s.log()


def test_examples_build_with_plain_cc_and_load(spanhost, tmp):
    out = os.path.join(tmp, "examples")
    os.makedirs(out)
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "examples-c"), f"OUT={out}"], check=True, timeout=120)
    assert sorted(os.listdir(out)) == ["example_exporter.so", "example_functions.so", "example_processor.so"]
    cfg = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
  example_processor: {{}}
exporters:
  example_exporter:
    prefix: "e2e: "
plugins:
  dir: %s
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [example_processor]
      exporters: [example_exporter]
""" % out
    s = spanhost(cfg)
    r = requests.post(s.url, data=request(["a", "b", "drop-me"]).SerializeToString(), headers=PROTO, timeout=5)
    assert r.status_code == 200
    assert wait_for(lambda: "e2e: exported 2 spans" in s.log())
    assert s.status()["exporters"][0]["counters"]["example_spans"] == 2
    # --check calls the exporter's validate hook (1.8), not create: the refusal names the hook.
    path = os.path.join(tmp, "check.yaml")
    with open(path, "w") as f:
        f.write(cfg.replace('prefix: "e2e: "', "prefix: " + "x" * 65).format(receiver="127.0.0.1:0", admin="127.0.0.1:0"))
    out = subprocess.run([os.path.join(BUILD, "bin", "spanhostd"), "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "exporters.example_exporter: validate failed: prefix: at most 64 bytes, not 65" in out.stderr + out.stdout, out.stderr


def test_a_cpp_plugin_loads_and_a_mangled_entry_is_explained(spanhost, tmp):
    d = plugin_dir(tmp, "file", "cpp_tagger", "cpp_mangled")
    cfg = BASE % ("  file:\n    path: {tmp}/out.jsonl", "file")
    cfg = cfg.replace("exporters:\n", "processors:\n  cpp_tagger: {{}}\nexporters:\n", 1)
    cfg = cfg.replace("      exporters: [file]", "      processors: [cpp_tagger]\n      exporters: [file]")
    s = spanhost(cfg, plugins_dir=d)
    r = requests.post(s.url, data=request(["x"]).SerializeToString(), headers=PROTO, timeout=5)
    assert r.status_code == 200
    spans = wait_for(lambda: read_file_export(os.path.join(tmp, "out.jsonl")))
    attrs = {a["key"]: a["value"] for a in spans[0]["span"]["attributes"]}
    assert attrs["tagged.by"] == {"stringValue": "c++"}
    bad = Spanhost(BASE % ("  cpp_mangled: {{}}", "cpp_mangled"), tmp, plugins_dir=d)
    assert bad.wait_exit() != 0
    assert "C++-mangled name" in bad.log() and "extern \"C\"" in bad.log(), bad.log()
