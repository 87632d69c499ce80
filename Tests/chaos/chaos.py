"""The fault campaign: random schedules of faults against a real spanhostd on 127.0.0.1, with a
ledger of every span sent and the answer it got.

Each schedule starts a fresh front server (otlp -> batch -> otlphttp + crashy, and
otlp/held -> tail_sampling -> otlphttp/held, all with persistent queues, on a small tmpfs when
one can be mounted) and a backend it exports to, runs
client threads that send requests with unique span ids, and injects faults drawn from the
schedule's seed: kill -9 of the process group or of the worker, SIGHUP to a changed, an invalid
and a crashing config, the disk filled and freed, the backend down / 500 / 429 / hanging / slow,
a poison span (one request, after the "poison" fault), slow and abandoned clients. Then it heals everything, restarts the server if it
is down, lets it drain, stops it, and checks the ledger:

- every span answered 200 reached the backend, and every one the crashy exporter should have
  (all but poison) reached its file or its dead-letter file, those held by tail_sampling
  included (its hold journal keeps them through a kill -9 or a crash);
- the exit line counts 0 lost (the pipeline is persistent), and the exit code is 0 or 1 (1 when
  a worker crashed);
- no request went unanswered for longer than the client's timeout.

Duplicates are allowed (at least once) and counted. A schedule is replayed by its seed:
`python Tests/chaos/chaos.py --seed N --schedules 1`.
"""
import argparse
import glob
import gzip
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

BUILD = os.environ.get("SPANHOST_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SPANHOSTD = os.path.join(BUILD, "bin", "spanhostd")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class Backend:
    """The OTLP/HTTP server the front exports to, with a fault mode. Records every span id it
    answered 200 for, with how often."""

    MODES = ("ok", "down", "500", "429", "hang", "slow")

    def __init__(self, port):
        self.port = port
        self.mode = "ok"
        self.lock = threading.Lock()
        self.seen = {}
        self.server = None
        self.start()

    def start(self):
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = backend.mode
                if mode == "500":
                    return self.answer(500, b"backend failing")
                if mode == "429":
                    return self.answer(429, b"slow down", {"Retry-After": "1"})
                if mode == "hang":
                    time.sleep(3)  # past the exporter's timeout: it gives up and retries
                    return self.answer(503, b"too late")
                if mode == "slow":
                    time.sleep(0.3)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                ids = [span.span_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
                with backend.lock:
                    for i in ids:
                        backend.seen[i] = backend.seen.get(i, 0) + 1
                self.answer(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
                            {"Content-Type": "application/x-protobuf"})

            def answer(self, code, body, headers=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the exporter gave up on a hanging answer: not news

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_mode(self, mode):
        if mode == "down" and self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        elif mode != "down" and self.server is None:
            self.start()
        self.mode = mode

    def close(self):
        self.set_mode("down")

    def delivered(self):
        with self.lock:
            return dict(self.seen)


CONFIG = """
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{receiver}"}}}}}}
  otlp/held: {{protocols: {{http: {{endpoint: "127.0.0.1:{held}"}}}}}}
processors:
  batch: {{timeout: {batch_timeout}, send_batch_size: 200}}
  tail_sampling: {{decision_wait: 1s, policies: [{{name: all, type: always_sample}}]}}
exporters:
  otlphttp/held:
    endpoint: http://127.0.0.1:{backend}
    compression: none
    timeout: 1s
    retry_on_failure: {{initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 1h}}
    sending_queue: {{storage: "{storage}", queue_size: 100000, fsync: {fsync}}}
  otlphttp:
    endpoint: http://127.0.0.1:{backend}
    compression: none
    timeout: 1s
    retry_on_failure: {{initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 1h}}
    sending_queue: {{storage: "{storage}", queue_size: 100000, fsync: {fsync}}}
  crashy:
    path: "{tmp}/crashy.txt"
    sending_queue: {{storage: "{storage}"}}
    retry_on_failure: {{initial_interval: 50ms}}
plugins: {{dir: "{plugins}"}}
admin: {{endpoint: "127.0.0.1:{admin}"}}
service:
  shutdown_timeout: 5s
  supervisor: {{state_dir: "{tmp}/state", quarantine_after_crashes: 1000}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlphttp, crashy]}}
    traces/held: {{receivers: [otlp/held], processors: [tail_sampling], exporters: [otlphttp/held]}}
"""


class Front:
    """The spanhostd under test, on fixed ports so a restart keeps them."""

    def __init__(self, tmp, storage, backend_port, rng):
        self.tmp = tmp
        self.ports = dict(receiver=free_port(), held=free_port(), admin=free_port(), backend=backend_port)
        self.url = f"http://127.0.0.1:{self.ports['receiver']}/v1/traces"
        self.held_url = f"http://127.0.0.1:{self.ports['held']}/v1/traces"
        self.admin = f"http://127.0.0.1:{self.ports['admin']}"
        self.plugins = os.path.join(tmp, "plugins")
        os.makedirs(self.plugins)
        for name in ("otlphttp.so", "tail_sampling.so"):
            shutil.copy(os.path.join(BUILD, "plugins", name), self.plugins)
        for name in ("crashy.so", "misbehave.so"):
            shutil.copy(os.path.join(BUILD, "test-plugins", name), self.plugins)
        self.settings = dict(storage=storage, fsync=rng.choice(["always", "1s"]), batch_timeout="200ms")
        self.config_path = os.path.join(tmp, "config.yaml")
        self.write_config()
        self.proc = None
        self.log_path = os.path.join(tmp, "spanhostd.log")
        self.exits = []

    def write_config(self, text=None):
        text = text or CONFIG.format(tmp=self.tmp, plugins=self.plugins, **self.ports, **self.settings)
        with open(self.config_path + ".new", "w") as f:
            f.write(text)
        os.replace(self.config_path + ".new", self.config_path)

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([SPANHOSTD, "--config", self.config_path], stdout=log, stderr=log, start_new_session=True)
        return wait_for(self.healthy, timeout=30)

    def healthy(self):
        try:
            return requests.get(self.admin + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def status(self):
        return requests.get(self.admin + "/status", timeout=5).json()

    def kill_group(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.exits.append(("kill -9", self.proc.wait()))

    def kill_worker(self):
        try:
            pid = self.status()["supervisor"]["worker_pid"]
        except (requests.RequestException, KeyError, ValueError):
            return False
        if pid <= 0:
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False  # the worker died (a crash) between the status and the kill
        return True

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None
        return code

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


class Client(threading.Thread):
    """Sends requests of unique spans; on anything but 200 sends the same request again after
    a pause (as an SDK does), up to a few times, then abandons it. Some requests are sent
    slowly, some abandoned mid-body, a few carry a poison span."""

    def __init__(self, number, url, rng, stop, ledger, poison_budget):
        super().__init__(daemon=True)
        self.number, self.url, self.rng, self.stop_event, self.ledger = number, url, rng, stop, ledger
        self.poison_budget = poison_budget
        self.sequence = 0

    def body(self):
        self.sequence += 1
        n = self.rng.randint(1, 20)
        spans = []
        poison = self.poison_budget and self.poison_budget[0] > 0 and self.rng.random() < 0.2
        if poison:
            self.poison_budget[0] -= 1
        for i in range(n):
            span_id = f"{self.number:04x}{self.sequence:08x}{i:04x}"
            name = "poison" if poison and i == 0 else span_id
            spans.append({"traceId": f"{self.number:016x}{self.sequence:016x}", "spanId": span_id, "name": name,
                          "startTimeUnixNano": "1000", "endTimeUnixNano": "2000"})
        return spans, {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "chaos"}}]},
                                          "scopeSpans": [{"spans": spans}]}]}

    def run(self):
        session = requests.Session()
        while not self.stop_event.is_set():
            spans, body = self.body()
            data = json.dumps(body).encode()
            for attempt in range(5):
                if self.stop_event.is_set():
                    break
                kind = self.rng.random()
                started = time.time()
                try:
                    if kind < 0.03:
                        try:
                            self.abandon(data)
                            self.ledger.note("abandoned")
                        except OSError:
                            self.ledger.note("connection error")
                        continue
                    r = session.post(self.url, data=data if kind > 0.06 else self.slowly(data),
                                     headers={"Content-Type": "application/json"}, timeout=20)
                    self.ledger.answer(r.status_code, time.time() - started)
                    if r.status_code == 200:
                        self.ledger.acked(spans)
                        break
                except requests.Timeout:
                    self.ledger.note("client timeout")
                    self.ledger.finding(f"a request got no answer within 20 s (client {self.number})")
                    session = requests.Session()
                except requests.RequestException:
                    self.ledger.note("connection error")
                    session = requests.Session()
                time.sleep(0.1 * (attempt + 1))
            time.sleep(self.rng.random() * 0.02)

    def slowly(self, data):
        for i in range(0, len(data), 256):
            yield data[i:i + 256]
            time.sleep(0.01)

    def abandon(self, data):
        """Sends the head and half the body, then goes away."""
        host, port = self.url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:len(data) // 2])


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.spans = {}  # span id -> name
        self.answers = {}
        self.notes = {}
        self.findings = []
        self.slowest = 0.0

    def acked(self, spans):
        with self.lock:
            for span in spans:
                self.spans[span["spanId"]] = span["name"]

    def answer(self, code, seconds):
        with self.lock:
            self.answers[code] = self.answers.get(code, 0) + 1
            self.slowest = max(self.slowest, seconds)

    def note(self, what):
        with self.lock:
            self.notes[what] = self.notes.get(what, 0) + 1

    def finding(self, text):
        with self.lock:
            if text not in self.findings:
                self.findings.append(text)


def small_disk(tmp):
    path = os.path.join(tmp, "disk")
    os.makedirs(path)
    if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", path],
                                            capture_output=True).returncode == 0:
        return path, True
    return path, False


def fill_disk(path):
    """Fills the disk with a ballast file; returns its path."""
    ballast = os.path.join(path, "ballast")
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * (64 << 10))
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return ballast


# Span ids of this client's spans start with its number: they went to traces/held.
HELD_CLIENT = 0x100

FAULTS = ["kill_group", "kill_worker", "reload_valid", "reload_invalid", "reload_crashing", "disk_full",
          "backend_down", "backend_500", "backend_429", "backend_hang", "backend_slow", "poison"]


def run_schedule(seed, seconds, faults_per_schedule, verbose):
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="spanhost-chaos-")
    disk, mounted = small_disk(tmp)
    storage = os.path.join(disk, "queue")
    backend = Backend(free_port())
    front = Front(tmp, storage, backend.port, rng)
    ledger = Ledger()
    stop = threading.Event()
    poison_budget = [0]  # the "poison" fault lets one request carry a poison span
    applied = []
    result = {"seed": seed}
    try:
        if not front.start():
            ledger.finding("the server did not start: " + front.log()[-1500:])
            return finish(result, ledger, applied, front, backend, tmp, mounted, verbose)
        clients = [Client(n + 1, front.url, random.Random(rng.random()), stop, ledger,
                          poison_budget if n == 0 else None) for n in range(rng.randint(2, 4))]
        # One client sends to the pipeline whose tail_sampling holds spans for a second.
        clients.append(Client(HELD_CLIENT, front.held_url, random.Random(rng.random()), stop, ledger, None))
        for c in clients:
            c.start()
        # Faults at random times in the schedule, each healed after a while.
        plan = sorted((rng.uniform(0.5, seconds * 0.8), rng.choice(FAULTS), rng.uniform(0.5, 3)) for _ in range(faults_per_schedule))
        began = time.time()
        for at, fault, hold in plan:
            time.sleep(max(0, began + at - time.time()))
            applied.append(fault)
            if fault == "poison":
                poison_budget[0] += 1
            inject(fault, hold, rng, front, backend, disk, mounted, ledger)
        time.sleep(max(0, began + seconds - time.time()))
        stop.set()
        for c in clients:
            c.join(30)
            if c.is_alive():
                ledger.finding("a client thread is stuck")
        # Heal: backend up, server running; let it drain.
        backend.set_mode("ok")
        if not front.running():
            if not front.start():
                ledger.finding("the server did not come back after the schedule: " + front.log()[-1500:])
        elif not wait_for(front.healthy, timeout=60):
            ledger.finding("the server stayed unhealthy after the faults were healed")
        wait_for(lambda: not missing(ledger, backend, tmp), timeout=60, interval=0.5)
        code = front.stop()
        result["exit"] = code
        if code is None:
            ledger.finding("SIGTERM did not stop the server within 60 s")
        elif code not in (0, 1):
            ledger.finding(f"exit code {code}")
        exit_line = [line for line in front.log().splitlines() if "shutdown finished" in line]
        if exit_line and "no accepted span was lost" not in exit_line[-1]:
            ledger.finding("the exit line counts lost spans on a persistent pipeline: " + exit_line[-1][:400])
        if not exit_line:
            ledger.finding("no exit line")
        # Whatever is still queued on disk after the drain is delivered by one more start.
        lost = missing(ledger, backend, tmp)
        if lost:
            if front.start():
                wait_for(lambda: not missing(ledger, backend, tmp), timeout=60, interval=0.5)
                front.stop()
            lost = missing(ledger, backend, tmp)
        for where, ids in lost.items():
            ledger.finding(f"{len(ids)} spans answered 200 never reached {where} (e.g. {sorted(ids)[:3]})")
        result["duplicates"] = sum(n - 1 for n in backend.delivered().values() if n > 1)
    finally:
        stop.set()
        if front.running():
            os.killpg(front.proc.pid, signal.SIGKILL)
            front.proc.wait()
        backend.close()
    return finish(result, ledger, applied, front, backend, tmp, mounted, verbose)


def dead_lettered(tmp, exporter):
    """Span ids in an exporter's dead-letter file."""
    ids = set()
    path = f"{tmp}/disk/queue/{exporter}/dead_letter.jsonl"
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                request = json.loads(line).get("request") or {}
                for rs in request.get("resourceSpans", []):
                    for ss in rs.get("scopeSpans", []):
                        ids |= {s["spanId"].lower() for s in ss.get("spans", [])}
    return ids


def missing(ledger, backend, tmp):
    """Spans answered 200 that are neither delivered nor dead-lettered, by exporter."""
    with ledger.lock:
        acked = dict(ledger.spans)
    result = {}
    delivered = backend.delivered()
    dead = dead_lettered(tmp, "otlphttp") | dead_lettered(tmp, "otlphttp_held")
    held = f"{HELD_CLIENT:04x}"
    to_backend = {i for i in acked if i not in delivered and i not in dead and not i.startswith(held)}
    if to_backend:
        result["the backend"] = to_backend
    held_missing = {i for i in acked if i.startswith(held) and i not in delivered and i not in dead}
    if held_missing:
        result["the backend through tail_sampling"] = held_missing
    crashy = set()
    if os.path.exists(f"{tmp}/crashy.txt"):
        with open(f"{tmp}/crashy.txt") as f:
            crashy = {line.strip() for line in f}
    dead = dead_lettered(tmp, "crashy")
    # crashy writes span names; every name but "poison" is the span's id.
    to_crashy = {i for i, name in acked.items() if name != "poison" and i not in crashy and i not in dead and not i.startswith(held)}
    if to_crashy:
        result["the crashy exporter"] = to_crashy
    return result


def inject(fault, hold, rng, front, backend, disk, mounted, ledger):
    if fault == "kill_group" and front.running():
        front.kill_group()
        time.sleep(hold / 3)
        if not front.start():
            ledger.finding("the server did not start again after kill -9: " + front.log()[-1500:])
    elif fault == "kill_worker" and front.running():
        front.kill_worker()
    elif fault == "reload_valid" and front.running():
        front.settings["batch_timeout"] = rng.choice(["50ms", "200ms", "1s"])
        front.write_config()
        front.proc.send_signal(signal.SIGHUP)
    elif fault == "reload_invalid" and front.running():
        front.write_config("receivers: [this is: not a config")
        front.proc.send_signal(signal.SIGHUP)
        time.sleep(hold)
        front.write_config()
    elif fault == "reload_crashing" and front.running():
        # An exporter whose create aborts: the reload's preflight must refuse it, nothing else.
        text = CONFIG.format(tmp=front.tmp, plugins=front.plugins, **front.ports, **front.settings)
        front.write_config(text.replace("exporters:\n", "exporters:\n  misbehave: {mode: abort}\n", 1)
                           .replace("exporters: [otlphttp, crashy]", "exporters: [otlphttp, crashy, misbehave]"))
        front.proc.send_signal(signal.SIGHUP)
        time.sleep(hold)
        front.write_config()
    elif fault == "disk_full" and mounted:
        ballast = fill_disk(disk)
        time.sleep(hold)
        os.unlink(ballast)
    elif fault.startswith("backend_"):
        backend.set_mode(fault.split("_", 1)[1])
        time.sleep(hold)
        backend.set_mode("ok")
    # "poison" is carried by the first client: run_schedule lets one more request carry it.


def finish(result, ledger, applied, front, backend, tmp, mounted, verbose):
    result.update(faults=applied, acked=len(ledger.spans), answers=ledger.answers, notes=ledger.notes,
                  findings=ledger.findings, disk_full=mounted, front_exits=front.exits)
    if mounted:
        subprocess.run(["umount", "-l", os.path.join(tmp, "disk")])
    if ledger.findings and not os.environ.get("CHAOS_KEEP_FAILED"):
        result["log_tail"] = front.log()[-3000:]
    if not (ledger.findings and os.environ.get("CHAOS_KEEP_FAILED")):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        result["kept"] = tmp
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="the first schedule's seed (default: random, printed)")
    parser.add_argument("--minutes", type=float, default=None, help="run schedules until this many minutes have passed")
    parser.add_argument("--schedules", type=int, default=None, help="run this many schedules")
    parser.add_argument("--seconds", type=float, default=20, help="load and faults per schedule")
    parser.add_argument("--faults", type=int, default=4, help="faults per schedule")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    if args.minutes is None and args.schedules is None:
        args.schedules = 1
    deadline = time.time() + args.minutes * 60 if args.minutes else None
    print(f"chaos: first seed {seed}; replay one schedule with: python Tests/chaos/chaos.py --seed N --schedules 1", flush=True)
    ran, found, counts = 0, 0, {}
    while True:
        if args.schedules is not None and ran >= args.schedules:
            break
        if deadline and time.time() + args.seconds + 60 > deadline:
            break
        result = run_schedule(seed + ran, args.seconds, args.faults, args.verbose)
        ran += 1
        for fault in result["faults"]:
            counts[fault] = counts.get(fault, 0) + 1
        status = "FOUND" if result["findings"] else "ok"
        found += bool(result["findings"])
        print(f"schedule seed={result['seed']}: {status}; faults {result['faults']}; {result['acked']} spans answered 200; "
              f"answers {result['answers']}; duplicates {result.get('duplicates')}; exit {result.get('exit')}; "
              f"disk full {'on tmpfs' if result['disk_full'] else 'not available'}", flush=True)
        for f in result["findings"]:
            print(f"  finding: {f}", flush=True)
        if result["findings"] and "log_tail" in result:
            print("  log tail:\n" + "\n".join("    " + line for line in result["log_tail"].splitlines()[-25:]), flush=True)
    print(f"chaos: {ran} schedules, {found} with findings; faults injected: {dict(sorted(counts.items()))}", flush=True)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
