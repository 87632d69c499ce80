"""The `spanhost` tool: a plugin tested without the daemon (plugin-test runs the real host
table, decoder and hooks), plugin files listed and described from child processes, configs
validated, versions printed."""
import json
import os
import subprocess

from conftest import BUILD, PLUGINS, SPANHOSTD, TEST_PLUGINS
from test_data_path import BASE, fill, otlp_json
from test_otlphttp import header_abi

SPANHOST = os.path.join(BUILD, "bin", "spanhost")


def spanhost_cli(*args, env=None):
    return subprocess.run([SPANHOST, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_plugin_test_runs_a_processor_and_compares_with_what_is_expected(tmp):
    spans = write(tmp, "in.json", json.dumps(otlp_json(2, attrs={"password": "hunter2", "user": "ann"})))
    settings = write(tmp, "attrs.yaml", "actions:\n  - {key: password, action: delete}\n  - {key: user, action: hash}\n")
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "attributes.so"), "--config", settings, "--input", spans)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    out = [sp for rs in json.loads(lines[0])["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
    keys = [{a["key"]: a["value"] for a in sp["attributes"]} for sp in out]
    assert all("password" not in k and k["user"]["stringValue"] != "ann" and len(k["user"]["stringValue"]) == 64 for k in keys)
    expected = write(tmp, "expected.jsonl", r.stdout)
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "attributes.so"), "--config", settings, "--input", spans, "--expect", expected)
    assert r.returncode == 0, r.stderr
    # The same plugin told to keep the password no longer matches.
    other = write(tmp, "other.yaml", "actions:\n  - {key: user, action: hash}\n")
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "attributes.so"), "--config", other, "--input", spans, "--expect", expected)
    assert r.returncode == 1 and "the output differs from" in r.stderr, r.stderr
    # The difference is shown: the password each span kept, and the dropped attribute's index moved.
    assert '+ batch 1: resourceSpans.0.scopeSpans.0.spans.0.attributes.1.value.stringValue: "hunter2"' in r.stderr, r.stderr
    assert '- batch 1: resourceSpans.0.scopeSpans.0.spans.0.attributes.1.key: "user"' in r.stderr, r.stderr


def test_plugin_test_crash_and_hang_name_the_authors_file_and_leave_nothing_behind(tmp):
    """A crash prints the plugin's own file and the hook; a hang fails after --timeout; neither
    leaves a copy of the plugin in the temporary directory."""
    scratch = os.path.join(tmp, "tmpdir")
    os.makedirs(scratch)
    env = {"TMPDIR": scratch}
    crashy = os.path.join(TEST_PLUGINS, "crashy.so")
    def named(name):
        doc = otlp_json(1)
        doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = name
        return write(tmp, name + ".json", json.dumps(doc))
    poison = named("poison")
    r = spanhost_cli("plugin-test", crashy, "--config", write(tmp, "c.yaml", f"path: {tmp}/names.txt\n"), "--input", poison, env=env)
    assert r.returncode != 0
    assert f"file={crashy}" in r.stderr and "hook=export_batch" in r.stderr, r.stderr[-2000:]
    stall = os.path.join(TEST_PLUGINS, "stall.so")
    r = spanhost_cli("plugin-test", stall, "--input", named("stall"), "--timeout", "1", env=env)
    assert r.returncode == 1 and "did not return within 1.0 s (--timeout)" in r.stderr, r.stderr
    assert os.listdir(scratch) == []


def test_plugin_test_runs_exporters_and_notifiers_and_reports_failures(tmp):
    spans = write(tmp, "in.json", json.dumps(otlp_json(3)))
    out = os.path.join(tmp, "out.jsonl")
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "file.so"), "--config", write(tmp, "file.yaml", f"path: {out}\n"),
                     "--input", spans)
    assert r.returncode == 0 and "export_batch: OK" in r.stdout, r.stderr
    with open(out) as f:
        assert sum(len(ss["spans"]) for rs in json.loads(f.readline())["resourceSpans"] for ss in rs["scopeSpans"]) == 3
    event = write(tmp, "event.json", json.dumps({"kind": "error_span", "severity": "critical", "summary": "checkout failed",
                                                 "trace_id": "0af7651916cd43dd8448eb211c80319c", "attributes": {"http.status_code": 500}}))
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "log.so"), "--notification", event)
    assert r.returncode == 0 and "notify: OK" in r.stdout, r.stderr
    logged = json.loads(next(line for line in r.stderr.splitlines() if line.startswith("{")))
    assert logged["severity"] == "critical" and logged["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert logged["attributes"] == {"http.status_code": 500}
    # A create that fails, an unknown key, and a permanent export failure each exit 1 with the reason.
    r = spanhost_cli("plugin-test", os.path.join(TEST_PLUGINS, "create_fails.so"), "--input", spans)
    assert r.returncode == 1 and "create failed: endpoint: cannot connect" in r.stderr, r.stderr
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "file.so"), "--config", write(tmp, "typo.yaml", f"path: {out}\npaht: x\n"),
                     "--input", spans)
    assert r.returncode == 1 and "paht" in r.stderr and "unknown key" in r.stderr, r.stderr
    r = spanhost_cli("plugin-test", os.path.join(TEST_PLUGINS, "misbehave.so"), "--config",
                     write(tmp, "fail.yaml", "mode: fail\n"), "--input", spans)
    assert r.returncode == 1 and "PERMANENT" in r.stderr, (r.stdout, r.stderr)


def test_plugins_list_and_describe_open_files_in_children_only(tmp):
    marker = os.path.join(tmp, "marker")
    proc = subprocess.Popen([SPANHOST, "plugins", "list", "--dir", TEST_PLUGINS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "SPANHOST_TEST_MARKER": marker})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = {line.split("\t")[0]: line for line in out.splitlines()}
    assert "exporter planted 6.6.6" in lines["planted"] and "ABI 99.0" in lines["wrong_abi"]
    with open(marker) as f:
        assert proc.pid not in {int(x) for x in f.read().split()}
    r = spanhost_cli("plugins", "describe", "attributes", "--dir", PLUGINS)
    assert r.returncode == 0 and "processor" in r.stdout and "hashes" in r.stdout, r.stderr
    r = spanhost_cli("plugins", "describe", os.path.join(TEST_PLUGINS, "no_entry.so"))
    assert r.returncode != 0 and "spanhost_plugin_entry" in r.stderr
    # An ABI 1.2 plugin's schema as a table: key, type, required, default, description.
    r = spanhost_cli("plugins", "describe", "tail_sampling", "--dir", PLUGINS)
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.strip()}
    assert rows["KEY"][:4] == ["KEY", "TYPE", "REQUIRED", "DEFAULT"], r.stdout
    assert rows["decision_wait"][:3] == ["decision_wait", "duration", "30s"] and rows["num_traces"][:3] == ["num_traces", "int", "50000"]
    r = spanhost_cli("plugins", "describe", "old_minor", "--dir", TEST_PLUGINS)
    assert "abi         1.0" in r.stdout and "no schema declared" in r.stdout, r.stdout


def test_validate_and_versions(tmp):
    good = write(tmp, "good.yaml", fill(BASE, processors="  {}", service="", chain="", plugins=PLUGINS))
    assert spanhost_cli("validate", "--config", good).returncode == 0
    bad = write(tmp, "bad.yaml", fill(BASE, processors="  probabilistic_sampler: {bogus: 1}", service="",
                                      chain="processors: [probabilistic_sampler], ", plugins=PLUGINS))
    r = spanhost_cli("validate", "--config", bad)
    assert r.returncode != 0 and "processors.probabilistic_sampler.bogus" in r.stderr, r.stderr
    # The schema names the valid keys, and a value of the wrong type, before the plugin runs.
    assert "valid keys here: " in r.stderr and "sampling_percentage" in r.stderr, r.stderr
    typo = write(tmp, "typo.yaml", fill(BASE, processors="  tail_sampling: {decision_wait: soon}", service="",
                                       chain="processors: [tail_sampling], ", plugins=PLUGINS))
    r = spanhost_cli("validate", "--config", typo)
    assert r.returncode != 0 and "processors.tail_sampling.decision_wait: must be a duration like 500ms, 5s or 1m30s, not 'soon'" in r.stderr, r.stderr
    # The Collector's batch processor is batching in the exporters' queues: its keys are checked as such.
    typo = write(tmp, "batch.yaml", fill(BASE, processors="  batch: {timeout: soon}", service="", chain="processors: [batch], ", plugins=PLUGINS))
    r = spanhost_cli("validate", "--config", typo)
    assert r.returncode != 0 and "processors.batch.timeout: " in r.stderr and "'soon'" in r.stderr, r.stderr
    version = spanhost_cli("--version").stdout.strip()
    assert version and version == subprocess.run([SPANHOSTD, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()


def test_error_flow_counts_a_server_span_answering_500_as_failing(tmp):
    """Agents often leave the status of a SERVER span unset when it answered 500: error_flow
    still reports the trace, with that span as the failing one."""
    body = otlp_json(2)
    server, inner = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    server.update(kind=2, name="GET /checkout")
    server["attributes"].append({"key": "http.response.status_code", "value": {"intValue": "503"}})
    inner.update(traceId=server["traceId"], parentSpanId=server["spanId"], name="load cart")
    spans = write(tmp, "in.json", json.dumps(body))
    settings = write(tmp, "flow.yaml", "wait: 1s\n")
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "error_flow.so"), "--config", settings, "--input", spans)
    assert r.returncode == 0, r.stderr
    assert '"kind":"error_flow"' in r.stderr and "GET /checkout" in r.stderr, r.stderr
    # With the status 200 nothing fails.
    server["attributes"][-1]["value"]["intValue"] = "200"
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "error_flow.so"), "--config", settings, "--input", write(tmp, "ok.json", json.dumps(body)))
    assert r.returncode == 0 and '"kind":"error_flow"' not in r.stderr, r.stderr


def test_filter_takes_the_collectors_ottl_span_conditions(tmp):
    body = otlp_json(6)
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["attributes"].append({"key": "http.route", "value": {"stringValue": "/health"}})
    spans[1]["name"] = "GET /static/app.js"
    spans[2].update(kind=1)  # INTERNAL without db.system: dropped
    spans[3].update(kind=1)
    spans[3]["attributes"].append({"key": "db.system", "value": {"stringValue": "postgresql"}})
    spans[4]["attributes"].append({"key": "http.status_code", "value": {"intValue": "503"}})
    spans[5]["attributes"].append({"key": "http.status_code", "value": {"intValue": "200"}})
    spans[5]["kind"] = 2
    spans[5]["endTimeUnixNano"] = str(1000 + 6_000_000_000)  # 6 s long: dropped by the duration condition
    settings = write(tmp, "ottl.yaml", """error_mode: ignore
traces:
  span:
    - 'attributes["http.route"] == "/health"'
    - 'IsMatch(name, "^GET /static/")'
    - 'kind == SPAN_KIND_INTERNAL and attributes["db.system"] == nil'
    - 'attributes["http.status_code"] >= 500 or resource.attributes["service.name"] == "synthetic"'
    - 'duration > 5000000000'
""")
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "filter.so"), "--config", settings, "--input", write(tmp, "in.json", json.dumps(body)))
    assert r.returncode == 0, r.stderr
    kept = [sp["name"] for rs in json.loads(r.stdout.splitlines()[0])["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
    assert kept == ["op3"], kept
    # A condition that does not compile is refused, pointing at the column.
    bad = write(tmp, "bad.yaml", "traces:\n  span: ['name == \"x\" and attributes[\"k\" == 1']\n")
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "filter.so"), "--config", bad, "--input", write(tmp, "in2.json", json.dumps(body)))
    assert r.returncode == 1 and "traces.span.0: column 32: expected ']'" in r.stderr, r.stderr


def test_tail_sampling_composite_policy_shares_a_rate_between_its_sub_policies(tmp):
    """The Collector's composite policy: sub-policies in policy_order, each sampling only within
    its rate_allocation share of max_total_spans_per_second."""
    body = otlp_json(3)
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["status"] = {"code": 2}
    spans[1]["status"] = {"code": 2}
    settings = write(tmp, "composite.yaml", """decision_wait: 10s
policies:
  - name: mix
    type: composite
    composite:
      max_total_spans_per_second: 2
      policy_order: [errors, rest]
      composite_sub_policy:
        - {name: rest, type: always_sample}
        - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      rate_allocation:
        - {policy: errors, percent: 50}
        - {policy: rest, percent: 50}
""")
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "tail_sampling.so"), "--config", settings, "--input", write(tmp, "in.json", json.dumps(body)))
    assert r.returncode == 0, r.stderr
    kept = sorted(sp["name"] for line in r.stdout.splitlines() if line.startswith("{")
                  for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"])
    # op0 (error) within errors' share; op1 (error) past it, taken by rest's share; op2 past both.
    assert kept == ["op0", "op1"], (kept, r.stderr)
    bad = write(tmp, "bad.yaml", settings and open(settings).read().replace("policy: rest, percent: 50", "policy: other, percent: 50"))
    r = spanhost_cli("plugin-test", os.path.join(PLUGINS, "tail_sampling.so"), "--config", bad, "--input", write(tmp, "in2.json", json.dumps(body)))
    assert r.returncode == 1 and "'other' is not a composite_sub_policy name" in r.stderr, r.stderr


def test_plugin_test_fails_a_hung_hook_at_its_timeout(tmp):
    import time
    spans = write(tmp, "in.json", json.dumps(otlp_json(2)))
    started = time.time()
    r = spanhost_cli("plugin-test", os.path.join(TEST_PLUGINS, "misbehave.so"), "--config", write(tmp, "hang.yaml", "mode: hang\n"),
                     "--input", spans, "--timeout", "1")
    assert r.returncode == 1 and "export_batch did not return within 1.0 s (--timeout): the plugin is hung" in r.stderr, r.stderr
    assert time.time() - started < 30


def header_structs():
    """Every struct of spanhost.h with its field names in declaration order, read from the text."""
    import re
    text = re.sub(r"/\*.*?\*/", "", open(os.path.join(os.path.dirname(__file__), "..", "..", "include", "spanhost", "spanhost.h")).read(), flags=re.S)
    text = re.sub(r"#[^\n]*", "", text)
    structs = {}
    for m in re.finditer(r"typedef struct (\w+) \{(.*?)\n\} \1;", text, re.S):
        body = re.sub(r"union \{.*?\} (\w+);", r"union_t \1;", m.group(2), flags=re.S)
        names = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            fn = re.search(r"\(\*(\w+)\)", decl)
            names.append(fn.group(1) if fn else re.search(r"(\w+)(\[\d+\])?$", decl).group(1))
        structs[m.group(1)] = names
    return structs


def test_abi_json_matches_the_header_field_by_field():
    """`spanhost abi --json` lists every struct of the header, each field in declaration order
    with offsets that only grow, and the host table in its positional order."""
    r = spanhost_cli("abi", "--json")
    assert r.returncode == 0, r.stderr
    layout = json.loads(r.stdout)
    assert f"{layout['abi_major']}.{layout['abi_minor']}" == header_abi()
    structs = {s["name"]: s for s in layout["structs"]}
    header = header_structs()
    assert set(structs) == set(header), set(structs) ^ set(header)
    for name, fields in header.items():
        listed = structs[name]["fields"]
        assert [f["name"] for f in listed] == fields, name
        offsets = [f["offset"] for f in listed]
        assert offsets == sorted(offsets) and offsets[-1] + listed[-1]["size"] <= structs[name]["size"], name
    host = structs["spanhost_host_api"]["fields"]
    # 64-bit: after struct_size and the two versions, one pointer per function.
    assert [f["offset"] for f in host[3:]] == [8 + 8 * i for i in range(len(host) - 3)]
