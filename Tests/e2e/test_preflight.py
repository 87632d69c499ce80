"""The plugin check that guards every reload, `--check` and `spanhost validate`: it reads what
a child writes on both pipes, is bounded by service.preflight_timeout, dies with whoever asked
for it, and never holds health or status behind it."""
import os
import signal
import subprocess
import threading
import time

import requests

from conftest import SPANHOSTD, wait_for
from test_data_path import cfg, plugin_dir

CONFIG = cfg("""
receivers:
  otlp: {protocols: {http: {endpoint: "{receiver}"}}}
exporters:
  misbehave: {mode: ok, create_sleep_ms: SLEEP, create_print_bytes: PRINT}
plugins: {dir: "{plugins}"}
admin: {endpoint: "{admin}"}
service:
  preflight_timeout: TIMEOUT
  pipelines:
    traces: {receivers: [otlp], exporters: [misbehave]}
""")


def config(sleep_ms=0, print_bytes=0, timeout="60s"):
    return CONFIG.replace("SLEEP", str(sleep_ms)).replace("PRINT", str(print_bytes)).replace("TIMEOUT", timeout)


def write_config(tmp, text, name="check.yaml"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text.format(receiver="127.0.0.1:0", admin="127.0.0.1:0", plugins=plugin_dir(tmp, "misbehave"), tmp=tmp))
    return path


def preflight_children(path):
    """Pids of `--preflight` children reading `path`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"--preflight" in args and path.encode() in args:
            found.append(int(pid))
    return found


def test_a_create_that_writes_more_than_a_pipe_holds_does_not_hang_the_check(tmp):
    # 64 KiB fills a pipe; the check used to read stderr to its end before stdout.
    path = write_config(tmp, config(print_bytes=512 * 1024))
    run = subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "config and plugins are valid" in run.stdout


def test_a_create_that_blocks_fails_the_check_at_the_timeout_naming_the_component(tmp):
    path = write_config(tmp, config(sleep_ms=60_000, timeout="2s"))
    started = time.time()
    run = subprocess.run([SPANHOSTD, "--config", path, "--check"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert time.time() - started < 20, time.time() - started
    assert "did not finish within 2.0 seconds (service.preflight_timeout)" in run.stderr, run.stderr
    assert "exporters.misbehave" in run.stderr, run.stderr
    assert wait_for(lambda: not preflight_children(path), timeout=5), "the timed-out child was left running"


def test_the_check_child_dies_with_the_process_that_started_it(tmp):
    path = write_config(tmp, config(sleep_ms=60_000))
    check = subprocess.Popen([SPANHOSTD, "--config", path, "--check"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    assert wait_for(lambda: preflight_children(path), timeout=20), "no preflight child started"
    os.kill(check.pid, signal.SIGKILL)
    check.wait()
    assert wait_for(lambda: not preflight_children(path), timeout=10), "the preflight child outlived its parent"


def test_a_slow_reload_fails_at_the_timeout_and_health_and_status_answer_meanwhile(spanhost, tmp):
    host = spanhost(config(), plugins_dir=plugin_dir(tmp, "misbehave"))
    with open(host.config_path) as f:
        good = f.read()
    with open(host.config_path, "w") as f:
        f.write(good.replace("create_sleep_ms: 0", "create_sleep_ms: 60000").replace("preflight_timeout: 60s", "preflight_timeout: 6s"))
    answers = []

    def reload():
        answers.append(requests.post(host.admin + "/-/reload", json={}, timeout=120))

    reloads = [threading.Thread(target=reload) for _ in range(3)]
    for t in reloads:
        t.start()
    time.sleep(1)
    # Health, status and metrics answer while every reload thread waits on the worker.
    for path in ("/healthz", "/status", "/metrics"):
        started = time.time()
        r = requests.get(host.admin + path, timeout=10)
        assert r.status_code == 200 and time.time() - started < 3, (path, r.status_code, time.time() - started)
    assert requests.post(host.url, json={"resourceSpans": []}, timeout=10).status_code == 200
    for t in reloads:
        t.join(90)
    assert answers and all(a.status_code != 200 for a in answers), [(a.status_code, a.text) for a in answers]
    assert any("did not finish within 6.0 seconds" in a.text for a in answers), [a.text for a in answers]
    assert host.status()["reloads"]["failed"] >= 1
