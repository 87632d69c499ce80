"""When plugins crash: the supervisor restarts the worker and names the plugin, a poison batch
in a persistent queue is dead-lettered instead of crash-looping the host, and a plugin that
crashes too often is quarantined."""
import json
import os
import shutil
import signal
import time

import requests

from conftest import free_port, json_when_whole, wait_for, whole_lines
from test_data_path import cfg, fill, otlp_json, plugin_dir


# Every config here: one otlp receiver, the test's plugin directory, its admin endpoint.
HEAD = """
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
"""


def spans(names):
    body = otlp_json(len(names))
    for span, name in zip(body["resourceSpans"][0]["scopeSpans"][0]["spans"], names):
        span["name"] = name
    return body


def send(host, names, timeout=60):
    """Posts until answered 200: during a worker restart connections wait or get 503."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r = requests.post(host.url, json=spans(names), timeout=10)
            if r.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not accepted within {timeout}s: {names[:3]}")


def delivered(path):
    return [line.strip() for line in whole_lines(path) if line.strip()]


def test_a_poison_batch_is_dead_lettered_and_everything_else_delivered(spanhost, tmp):
    host = spanhost(cfg(HEAD + """
exporters:
  crashy:
    path: "{tmp}/delivered.txt"
    sending_queue: {storage: "{tmp}/queue"}
service:
  supervisor: {state_dir: "{tmp}/state"}
  pipelines:
    traces: {receivers: [otlp], exporters: [crashy]}
"""), plugins_dir=plugin_dir(tmp, "crashy"))
    before = [f"a{i}" for i in range(50)]
    after = [f"b{i}" for i in range(50)]
    for i in range(0, 50, 10):
        send(host, before[i:i + 10])
    assert wait_for(lambda: set(before) <= set(delivered(f"{tmp}/delivered.txt")), timeout=20)
    # Sent once: the crash may come before the answer, and a client that got none would retry.
    try:
        requests.post(host.url, json=spans(["poison"]), timeout=10)
    except requests.ConnectionError:
        pass
    for i in range(0, 50, 10):
        send(host, after[i:i + 10])
    # The worker crashes on the poison batch, comes back, crashes on it once more, and the
    # next worker dead-letters it and delivers the rest.
    assert wait_for(lambda: set(after) <= set(delivered(f"{tmp}/delivered.txt")), timeout=60), host.log()[-3000:]
    status = host.status()
    crashes = status["crashes"]
    assert len(crashes) == 2, crashes
    for crash in crashes:
        assert crash["plugin"] == "crashy" and crash["component"] == "crashy" and crash["hook"] == "export_batch", crash
        assert crash["signal"] == 11 and len(crash["sha256"]) == 64 and crash["file"].endswith("crashy.so")
        assert crash["record"] is not None
    assert status["supervisor"]["restarts"] == 2
    dead = [json.loads(line) for line in open(f"{tmp}/queue/crashy/dead_letter.jsonl")]
    assert len(dead) == 1 and dead[0]["spans"] == 1, dead
    assert "crashed plugin crashy 2 times" in dead[0]["reason"], dead[0]
    assert "poison" in json.dumps(dead[0]["request"])
    assert "poison" not in delivered(f"{tmp}/delivered.txt")
    metrics = requests.get(host.admin + "/metrics", timeout=5).text
    assert "spanhost_worker_crashes_total 2" in metrics
    assert "worker crashed: plugin crashy" in host.log()
    # A worker crashed, so spans its memory held may be lost: the exit code says so.
    assert host.stop() == 1


def test_a_plugin_that_keeps_crashing_is_quarantined_and_the_other_pipeline_runs_on(spanhost, tmp):
    host = spanhost(cfg(HEAD + """
exporters:
  crashy: {path: "{tmp}/crashy.txt", on_quarantine: skip}
  file: {path: "{tmp}/file.jsonl"}
service:
  supervisor: {state_dir: "{tmp}/state", quarantine_after_crashes: 2}
  pipelines:
    traces/crashy: {receivers: [otlp], exporters: [crashy]}
    traces/file: {receivers: [otlp], exporters: [file]}
"""), plugins_dir=plugin_dir(tmp, "crashy", "file"))
    # Each poison request crashes the worker (a client whose request died with it sends again;
    # one answered 503 while no worker runs, too).
    def post_poison():
        try:
            requests.post(host.url, json=spans(["poison"]), timeout=10)
        except requests.ConnectionError:
            pass
    for n in range(2):
        assert wait_for(lambda: post_poison() or len(host.status()["crashes"]) >= n + 1, timeout=30, interval=0.3)
    assert len(host.status()["crashes"]) == 2
    # Quarantined after two crashes: the worker comes back without the crashy exporter.
    assert wait_for(lambda: host.status().get("supervisor", {}).get("worker") == "running", timeout=30)
    status = host.status()
    assert [q["plugin"] for q in status["quarantined"]] == ["crashy"], status["quarantined"]
    assert "crashed the worker 2 times" in status["quarantined"][0]["reason"]
    assert [e["id"] for e in status["exporters"]] == ["file"]
    send(host, ["after-quarantine"])
    assert wait_for(lambda: "after-quarantine" in open(f"{tmp}/file.jsonl").read(), timeout=20)
    assert "plugin quarantined: crashy" in host.log()
    # An operator clears the quarantine: the worker reloads with the plugin back.
    r = requests.post(host.admin + "/-/quarantine/clear", json={}, timeout=10)
    assert r.status_code == 200, r.text
    assert wait_for(lambda: [e["id"] for e in host.status()["exporters"]] == ["crashy", "file"], timeout=30)
    assert host.status()["quarantined"] == []
    send(host, ["fine"])
    assert wait_for(lambda: "fine" in delivered(f"{tmp}/crashy.txt"), timeout=20)
    assert host.stop() == 1


def test_a_quarantined_plugin_fails_the_config_with_on_quarantine_fail(spanhost, tmp):
    host = spanhost(cfg(HEAD + """
exporters:
  crashy: {path: "{tmp}/crashy.txt", on_quarantine: fail}
service:
  supervisor: {state_dir: "{tmp}/state", quarantine_after_crashes: 1}
  pipelines:
    traces: {receivers: [otlp], exporters: [crashy]}
"""), plugins_dir=plugin_dir(tmp, "crashy"))
    try:
        requests.post(host.url, json=spans(["poison"]), timeout=10)
    except requests.ConnectionError:
        pass
    assert wait_for(lambda: host.status()["quarantined"], timeout=30)
    # The next worker refuses the config, naming the plugin; the admin endpoint still answers.
    assert wait_for(lambda: "is quarantined" in host.log(), timeout=30)
    assert requests.get(host.admin + "/healthz", timeout=5).status_code == 503
    assert host.status()["supervisor"]["worker"] != "running"
    assert host.proc.poll() is None
    # With no worker, the supervisor answers the receivers' clients itself.
    r = requests.post(host.url, json=spans(["waiting"]), timeout=10)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1", (r.status_code, r.text)
    assert host.stop() == 1


def test_a_quarantined_plugin_stops_only_its_own_pipelines(spanhost, tmp):
    other_port = free_port()
    host = spanhost(cfg(fill("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
  otlp/other: {protocols: {http: {endpoint: "127.0.0.1:{other}"}}}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
exporters:
  crashy: {path: "{tmp}/crashy.txt"}
  file: {path: "{tmp}/file.jsonl"}
service:
  supervisor: {state_dir: "{tmp}/state", quarantine_after_crashes: 1}
  pipelines:
    traces/crashy: {receivers: [otlp], exporters: [crashy]}
    traces/file: {receivers: [otlp/other], exporters: [file]}
""", other=str(other_port))), plugins_dir=plugin_dir(tmp, "crashy", "file"))
    other = f"http://127.0.0.1:{other_port}/v1/traces"
    try:
        requests.post(host.url, json=spans(["poison"]), timeout=10)
    except requests.ConnectionError:
        pass
    assert wait_for(lambda: host.status()["quarantined"], timeout=30)
    # The next worker runs: the quarantined plugin's pipeline answers 503, the other flows.
    assert wait_for(lambda: requests.get(host.admin + "/healthz", timeout=5).status_code == 200, timeout=30), host.log()[-2000:]
    r = requests.post(host.url, json=spans(["kept-by-client"]), timeout=10)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, (r.status_code, r.text)
    assert "traces/crashy is down" in r.text and "exporters.crashy" in r.text
    r = requests.post(other, json=spans(["flows"]), timeout=10)
    assert r.status_code == 200, r.text
    assert wait_for(lambda: os.path.exists(f"{tmp}/file.jsonl") and "flows" in open(f"{tmp}/file.jsonl").read(), timeout=20)
    pipelines = {p["id"]: p for p in host.status()["pipelines"]}
    assert "quarantined" in pipelines["traces/crashy"]["refusing"] and pipelines["traces/file"].get("refusing") is None
    assert "pipeline refuses data (503)" in host.log()
    assert host.stop() == 1


def test_a_quarantined_exporter_with_on_full_drop_drops_its_share_and_the_others_get_everything(spanhost, tmp):
    host = spanhost(cfg(HEAD + """
exporters:
  crashy: {path: "{tmp}/crashy.txt", sending_queue: {on_full: drop}}
  file: {path: "{tmp}/file.jsonl"}
service:
  supervisor: {state_dir: "{tmp}/state", quarantine_after_crashes: 1}
  pipelines:
    traces: {receivers: [otlp], exporters: [crashy, file]}
"""), plugins_dir=plugin_dir(tmp, "crashy", "file"))
    try:
        requests.post(host.url, json=spans(["poison"]), timeout=10)
    except requests.ConnectionError:
        pass
    assert wait_for(lambda: host.status()["quarantined"], timeout=30)
    assert wait_for(lambda: requests.get(host.admin + "/healthz", timeout=5).status_code == 200, timeout=30), host.log()[-2000:]
    r = requests.post(host.url, json=spans(["first-kept", "second-kept"]), timeout=10)
    assert r.status_code == 200, r.text
    assert wait_for(lambda: all(any(name in line for line in delivered(f"{tmp}/file.jsonl")) for name in ("first-kept", "second-kept")),
                    timeout=20)
    pipeline = host.status()["pipelines"][0]
    assert pipeline["droppingFor"] == ["crashy"] and pipeline["droppedForQuarantine"] == 2 and pipeline.get("refusing") is None
    assert "drops what its quarantined exporters would get" in host.log()
    assert host.stop() == 1


def test_a_poison_request_sent_again_after_the_crash_is_dead_lettered_without_another_crash(spanhost, tmp):
    host = spanhost(cfg(HEAD + """
exporters:
  crashy:
    path: "{tmp}/delivered.txt"
    sending_queue: {storage: "{tmp}/queue"}
service:
  supervisor: {state_dir: "{tmp}/state"}
  pipelines:
    traces: {receivers: [otlp], exporters: [crashy]}
"""), plugins_dir=plugin_dir(tmp, "crashy"))
    poison = spans(["poison"])
    try:
        requests.post(host.url, json=poison, timeout=10)
    except requests.ConnectionError:
        pass
    # It crashes, and crashes again when the restarted worker exports it from the disk queue;
    # the next worker dead-letters it.
    dead_letter = f"{tmp}/queue/crashy/dead_letter.jsonl"
    assert wait_for(lambda: len(whole_lines(dead_letter)) == 1, timeout=60), host.log()[-2000:]
    assert len(host.status()["crashes"]) == 2
    # The client never saw its 200 and sends the same request again: a new record with the
    # same content, dead-lettered without a third crash (which would quarantine the plugin).
    send_body = lambda: requests.post(host.url, json=poison, timeout=10).status_code == 200
    assert wait_for(send_body, timeout=30)
    assert wait_for(lambda: len(whole_lines(dead_letter)) == 2, timeout=30), host.log()[-2000:]
    send(host, ["after"])
    assert wait_for(lambda: "after" in delivered(f"{tmp}/delivered.txt"), timeout=30)
    status = host.status()
    assert len(status["crashes"]) == 2 and status["quarantined"] == [], status["crashes"]
    assert "poison" not in delivered(f"{tmp}/delivered.txt")
    assert host.stop() == 1


def test_while_no_worker_runs_the_supervisor_answers_503(spanhost, tmp):
    host = spanhost(cfg(HEAD + """
exporters:
  "null": {}
service:
  supervisor: {state_dir: "{tmp}/state"}
  pipelines:
    traces: {receivers: [otlp], exporters: ["null"]}
"""), plugins_dir=plugin_dir(tmp, "null"))
    # Each death doubles the pause before the next worker: 0.1, 0.2, 0.4, 0.8, 1.6 s.
    for _ in range(5):
        # The pid of a running worker, read in one status: never 0, which os.kill would take for
        # this test's own process group.
        pid = wait_for(lambda: (lambda sup: sup["worker"] == "running" and sup["worker_pid"])(host.status()["supervisor"]), timeout=30)
        assert pid and pid > 0, host.status()["supervisor"]
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: host.status()["supervisor"]["worker_pid"] == 0, timeout=10)
    started = time.time()
    r = requests.post(host.url, json=spans(["in-the-gap"]), timeout=10)
    took = time.time() - started
    assert r.status_code == 503 and r.headers["Retry-After"] == "1", (r.status_code, r.text)
    assert "restarting its worker" in r.text
    assert wait_for(lambda: host.status()["supervisor"]["worker"] == "running", timeout=30)
    assert host.status()["supervisor"]["answered_503_without_worker"] >= 1
    send(host, ["after-the-gap"])
    print(f"\nin the restart gap a request was answered 503 in {took * 1000:.0f} ms")
    assert host.stop() == 1


def test_an_isolated_plugin_crashes_alone(spanhost, tmp):
    host = spanhost(cfg(HEAD + """
exporters:
  crashy:
    path: "{tmp}/delivered.txt"
    isolation: process
    sending_queue: {storage: "{tmp}/queue"}
    retry_on_failure: {initial_interval: 50ms}
  file: {path: "{tmp}/file.jsonl"}
service:
  supervisor: {state_dir: "{tmp}/state"}
  pipelines:
    traces/crashy: {receivers: [otlp], exporters: [crashy]}
    traces/file: {receivers: [otlp], exporters: [file]}
"""), plugins_dir=plugin_dir(tmp, "crashy", "file"))
    worker = host.server_pid
    before = [f"a{i}" for i in range(30)]
    after = [f"b{i}" for i in range(30)]
    for i in range(0, 30, 10):
        send(host, before[i:i + 10])
    r = requests.post(host.url, json=spans(["poison"]), timeout=10)
    assert r.status_code == 200, "the host itself must not notice the crash"
    for i in range(0, 30, 10):
        send(host, after[i:i + 10])
    assert wait_for(lambda: set(before + after) <= set(delivered(f"{tmp}/delivered.txt")), timeout=30), host.log()[-2000:]
    # The other pipeline missed nothing, the poison included; the worker never restarted.
    file_spans = open(f"{tmp}/file.jsonl").read()
    assert all(f'"{name}"' in file_spans for name in before + after + ["poison"])
    status = host.status()
    assert status["crashes"] == [] and host.server_pid == worker
    crashy = next(e for e in status["exporters"] if e["id"] == "crashy")
    assert crashy["counters"]["isolated_crashes"] == 2, crashy
    dead = wait_for(lambda: [json.loads(l) for l in whole_lines(f"{tmp}/queue/crashy/dead_letter.jsonl")], timeout=10)
    assert len(dead) == 1 and "crashed plugin crashy 2 times" in dead[0]["reason"], dead
    assert "poison" not in delivered(f"{tmp}/delivered.txt")
    assert host.stop() == 0


def test_an_isolated_notifier_gets_the_event_whole(spanhost, tmp):
    host = spanhost(cfg(HEAD + """
exporters:
  "null": {}
notifiers:
  exec: {command: [sh, -c, "cat > {tmp}/event.json"], isolation: process}
rules:
  error_span: {group_wait: 0s}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: ["null"], notifiers: [exec], rules: [error_span]}
"""), plugins_dir=plugin_dir(tmp, "exec", "null"))
    body = spans(["checkout"])
    body["resourceSpans"][0]["resource"] = {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]}
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"] = {"code": 2, "message": "card declined"}
    assert requests.post(host.url, json=body, timeout=10).status_code == 200
    event = wait_for(lambda: json_when_whole(f"{tmp}/event.json"), timeout=20)
    assert event["kind"] == "error_span" and event["key"].startswith("shop checkout"), event
    assert event["trace_id"] == body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"], event
    assert event["attributes"].get("service.name") == "shop", event
    notifier = next(n for n in host.status()["notifiers"] if n["id"] == "exec")
    assert notifier["counters"].get("notified") == 1, notifier
    # Nothing of the plugin ran in the worker: no instance of it there.
    assert next(p for p in host.status()["plugins"] if p["name"] == "exec")["instances"] == 0
