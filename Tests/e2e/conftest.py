"""Starts real spanhostd processes on loopback for the end-to-end tests."""
import functools
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

BUILD = os.environ.get("SPANHOST_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))


def needs(path, made_by):
    """Marks a test that needs `path`, which the Makefile makes: when it is missing the test
    fails saying so, rather than being skipped and passing without testing."""
    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            assert os.path.exists(path), f"{path} is missing: {made_by} makes it"
            return test(*args, **kwargs)
        return run
    return wrap
SPANHOSTD = os.path.join(BUILD, "bin", "spanhostd")
PLUGINS = os.path.join(BUILD, "plugins")
TEST_PLUGINS = os.path.join(BUILD, "test-plugins")


# Ports for the listeners of the servers the tests start. `make test` runs the test files two
# at a time (pytest-xdist), so a port one worker picked must not be taken before its server
# binds it: they come from below the kernel's ephemeral range (where port-0 binds and outgoing
# connections land), each worker from a block of its own, in turn.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
with open("/proc/sys/net/ipv4/ip_local_port_range") as _f:
    _EPHEMERAL_LOW = int(_f.read().split()[0])
_BLOCK = max(0, min(_EPHEMERAL_LOW - 1024, 12000)) // WORKERS
_FIRST = _EPHEMERAL_LOW - _BLOCK * WORKERS + _BLOCK * WORKER
_handed = itertools.count()


def free_port():
    if _BLOCK < 256:  # no room below the ephemeral range here: the kernel picks
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(_BLOCK):
        port = _FIRST + next(_handed) % _BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {_FIRST}..{_FIRST + _BLOCK - 1}")


class Spanhost:
    """One spanhostd process. The config text may use {receiver}, {admin}, {plugins}, {tmp}; it is
    merged on top of the files in `base_configs`, as repeated --config options merge."""

    def __init__(self, config, tmp, plugins_dir=PLUGINS, env=None, executable=None, args=(), base_configs=()):
        self.tmp = tmp
        self.receiver_port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.receiver_port}/v1/traces"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        text = config.format(receiver=f"127.0.0.1:{self.receiver_port}", admin=f"127.0.0.1:{self.admin_port}",
                             plugins=plugins_dir, tmp=tmp)
        self.config_path = os.path.join(tmp, f"config-{self.receiver_port}.yaml")
        with open(self.config_path, "w") as f:
            f.write(text)
        self.stdout = open(os.path.join(tmp, f"stdout-{self.receiver_port}.log"), "w+")
        self.stderr = open(os.path.join(tmp, f"stderr-{self.receiver_port}.log"), "w+")
        # A session of its own: kill9() takes down the supervisor and its worker together.
        bases = [arg for path in base_configs for arg in ("--config", path)]
        self.proc = subprocess.Popen([executable or SPANHOSTD, *bases, "--config", self.config_path, *args], stdout=self.stdout, stderr=self.stderr,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def wait_healthy(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"spanhostd exited with {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.admin + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("spanhostd did not become healthy: " + self.log())

    def status(self):
        return requests.get(self.admin + "/status", timeout=5).json()

    @property
    def server_pid(self):
        """The process running the pipelines: the supervisor's worker, or spanhostd itself."""
        supervisor = self.status().get("supervisor")
        return supervisor["worker_pid"] if supervisor else self.proc.pid

    def kill9(self):
        """SIGKILL to every process of this spanhostd at once, as a power cut would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def log(self):
        self.stderr.flush()
        with open(self.stderr.name) as f:
            return f.read()

    def output(self):
        self.stdout.flush()
        with open(self.stdout.name) as f:
            return f.read()

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def wait_exit(self, timeout=15):
        return self.proc.wait(timeout)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="spanhost-test-")
    yield d
    if not os.environ.get("SPANHOST_KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def spanhost(tmp):
    started = []

    def start(config, healthy=True, **kw):
        s = Spanhost(config, tmp, **kw)
        started.append(s)
        return s.wait_healthy() if healthy else s

    yield start
    for s in started:
        s.stop()


def wait_for(predicate, timeout=10, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def whole_lines(path):
    """The lines of a file another process may still be appending to, each ended by its newline.

    One read of bytes, and the last piece is dropped unless a newline ends it: that line is still
    being written (maybe cut inside a UTF-8 character) and is read on a later look. Iterating the
    file instead would read on past such a line and take the rest of the record, once written,
    for a line of its own."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [line.decode() for line in f.read().split(b"\n")[:-1]]


def json_when_whole(path):
    """The JSON document in a file another process is writing, or None until it parses."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except ValueError:
        return None


def read_file_export(path):
    """Spans from the file exporter's OTLP JSON lines, flattened with their resource and scope."""
    spans = []
    for line in whole_lines(path):
        if line.strip():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        spans.append({"resource": rs.get("resource", {}), "scope": ss.get("scope", {}), "span": sp})
    return spans
