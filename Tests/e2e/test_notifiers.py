"""Errors found in seconds: a two-service app built on the OpenTelemetry SDK raises an exception,
and the webhook notifier's receiver gets one error-flow event naming both services; alert rules
fire and resolve on generated traffic; a burst of identical errors is one notification; failing
and hanging notifiers never hold up spans."""
import http.server
import json
import os
import re
import threading
import time
import urllib.request

import requests
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from conftest import free_port, wait_for


class HookServer:
    """A local HTTP server standing in for a webhook target: records every POSTed JSON body,
    and answers with `script` status codes first, then 200."""

    def __init__(self, script=()):
        self.events = []
        self.script = list(script)
        self.lock = threading.Lock()
        self.port = free_port()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.lock:
                    code = hook.script.pop(0) if hook.script else 200
                    if code == 200:
                        hook.events.append((time.time(), json.loads(body), {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def of_kind(self, kind):
        with self.lock:
            return [e for _, e, _ in self.events if e["kind"] == kind]

    def close(self):
        self.server.shutdown()


CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
  error_flow:
    wait: 2s
exporters:
  null:
notifiers:
  webhook:
    endpoint: %s
    headers: {{x-team: sre}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms}}
rules:
  error_span:
    group_wait: 1s
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [error_flow]
      exporters: [null]
      notifiers: [webhook]
      rules: [error_span]
"""


def provider(service, url):
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=5)))
    return p


def run_two_service_app(url, qty=-1):
    """frontend calls checkout over HTTP with the W3C traceparent header; checkout fails three
    calls deep (with a message naming `qty`). Returns the trace id and the time the exception
    was raised."""
    checkout = provider("checkout", url).get_tracer("checkout")
    frontend = provider("frontend", url).get_tracer("frontend")
    raised = {}

    def validate(qty):
        with checkout.start_as_current_span("validate_qty"):
            if qty < 1:
                raised["at"] = time.time()
                raise ValueError(f"qty must be positive, got {qty}")

    class Checkout(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            ctx = propagate.extract({k.lower(): v for k, v in self.headers.items()})
            try:
                with checkout.start_as_current_span("POST /order", context=ctx, kind=SpanKind.SERVER):
                    with checkout.start_as_current_span("place_order"):
                        validate(int(self.headers["x-qty"]))
                self.send_response(200)
            except ValueError:
                self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Checkout)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with frontend.start_as_current_span("GET /buy", kind=SpanKind.SERVER) as root:
            with frontend.start_as_current_span("call checkout", kind=SpanKind.CLIENT):
                headers = {"x-qty": str(qty)}
                propagate.inject(headers)
                request = urllib.request.Request(f"http://127.0.0.1:{port}/order", data=b"", headers=headers)
                try:
                    urllib.request.urlopen(request, timeout=5)
                except urllib.error.HTTPError as e:
                    assert e.code == 500
            trace_id = format(root.get_span_context().trace_id, "032x")
    finally:
        server.shutdown()
    return trace_id, raised["at"]


def test_error_across_two_services_is_one_error_flow_notification(spanhost):
    hook = HookServer()
    try:
        s = spanhost(CONFIG % hook.url)
        trace_id, raised_at = run_two_service_app(s.url)
        flows = wait_for(lambda: hook.of_kind("error_flow"), timeout=20)
        assert flows, "no error_flow event reached the webhook"
        received_at = next(t for t, e, _ in hook.events if e["kind"] == "error_flow")
        # Nothing more can come for this error once error_flow holds no trace and the rule has
        # folded the trace's error spans into its event (none is left to go out on its own).
        def settled():
            status = s.status()
            pipeline = status["pipelines"][0]
            return (pipeline["processors"][0].get("gauges", {}).get("traces_held") == 0
                    and pipeline["rules"].get("error_span.folded", 0) == flows[0]["attributes"]["error_spans"]
                    and status["notifiers"][0]["counters"].get("queued") == status["notifiers"][0]["counters"].get("notified"))
        assert wait_for(settled, timeout=10), s.status()
        flows = hook.of_kind("error_flow")
        assert len(flows) == 1, flows
        flow = flows[0]
        a = flow["attributes"]
        assert flow["trace_id"] == trace_id
        assert a["exception.type"] == "ValueError"
        assert a["exception.message"] == "qty must be positive, got -1"
        assert "validate" in a["exception.stacktrace"]
        assert a["service.name"] == "checkout" and a["span.name"] == "validate_qty"
        assert a["error_flow.services"] == ["frontend", "checkout"]
        assert [e["span"] for e in a["error_flow.entry_points"]] == ["GET /buy", "POST /order"]
        assert [p["name"] for p in a["error_flow.path"]] == ["GET /buy", "call checkout", "POST /order", "place_order", "validate_qty"]
        assert all(p["duration_ms"] >= 0 for p in a["error_flow.path"])
        assert a["error_flow.complete"] is True and a["error_flow.spans"] == 5
        assert "frontend" in flow["summary"] and "checkout" in flow["summary"]
        with hook.lock:
            assert all(h.get("x-team") == "sre" for _, _, h in hook.events)
        # The error_span rule's events for this trace are folded into the error_flow event: one
        # failing request is one notification, which counts the error spans it stands for.
        assert a["error_spans"] >= 1
        assert hook.of_kind("error_span") == []
        print(f"\nerror raised -> error_flow at the webhook: {received_at - raised_at:.2f} s (wait 2s)")
        status = s.status()
        notifier = status["notifiers"][0]
        print(f"host delay, first occurrence -> notify call: {notifier['notifyDelayMs']}")
        assert notifier["counters"]["notified"] == 1
        assert status["pipelines"][0]["rules"]["error_span.folded"] == a["error_spans"]
    finally:
        hook.close()


def test_three_failures_ten_seconds_apart_are_each_notified_within_30s_in_reports_of_their_own(spanhost):
    """One error signature failing three times 10 s apart: the first is notified at once, the
    repeats within repeat_wait, and every report's text and trace ids are its own failures'."""
    hook = HookServer()
    try:
        s = spanhost(CONFIG % hook.url)
        t0 = time.time()
        failures = {}
        for i, qty in enumerate([-1, -2, -3]):
            time.sleep(max(0, t0 + 10 * i - time.time()))
            trace_id, raised_at = run_two_service_app(s.url, qty)
            failures[trace_id] = (qty, raised_at)

        def traces_of(flow):
            return [flow["trace_id"]] + flow["attributes"].get("recent_trace_ids", "").split(",")

        def reported():
            with hook.lock:
                return [(t, e) for t, e, _ in hook.events if e["kind"] == "error_flow"]
        assert wait_for(lambda: set(failures) <= {tid for _, e in reported() for tid in traces_of(e)}, timeout=50), reported()
        for trace_id, (qty, raised_at) in failures.items():
            arrived = min(t for t, e in reported() if trace_id in traces_of(e))
            assert arrived - raised_at <= 30, f"failure {qty} notified {arrived - raised_at:.1f} s after its request"
        for _, flow in reported():
            own_qty = failures[flow["trace_id"]][0]
            assert flow["attributes"]["exception.message"] == f"qty must be positive, got {own_qty}", flow
            others = {q for tid, (q, _) in failures.items() if tid not in traces_of(flow)}
            assert not any(f"got {q}" in json.dumps(flow) for q in others), flow
        counts = [flow["count"] for _, flow in reported()]
        assert sum(counts) == 3 and counts[0] == 1, counts
    finally:
        hook.close()


def otlp_json(service, spans):
    """An OTLP JSON request: spans as (trace_int, span_int, duration_ms, error)."""
    now = time.time_ns()
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [{
            "traceId": format(t, "032x"), "spanId": format(i + 1, "016x"), "name": "GET /pay", "kind": 2,
            "startTimeUnixNano": str(now - int(ms * 1e6)), "endTimeUnixNano": str(now),
            "status": {"code": 2 if err else 1},
        } for t, i, ms, err in spans]}],
    }]}


RULES = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  null:
notifiers:
  webhook:
    endpoint: %s
rules:
  error_rate:
    threshold: 0.05
    min_count: 20
    window: 3s
  latency/p95:
    percentile: 95
    threshold: 2s
    min_count: 20
    window: 3s
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [null]
      notifiers: [webhook]
      rules: [error_rate, latency/p95]
"""


def test_error_rate_and_latency_rules_fire_and_resolve(spanhost):
    hook = HookServer()
    try:
        s = spanhost(RULES % hook.url)
        # 200 spans of "pay": 20% errors, all taking 3 s.
        for n in range(10):
            body = otlp_json("pay", [(n * 20 + i + 1, i, 3000, i % 5 == 0) for i in range(20)])
            assert requests.post(s.url, json=body, timeout=5).status_code == 200
        # 200 healthy spans of "search": no rule may fire for it.
        body = otlp_json("search", [(10_000 + i, i, 5, False) for i in range(200)])
        assert requests.post(s.url, json=body, timeout=5).status_code == 200
        fired = wait_for(lambda: len(hook.of_kind("error_rate")) and len(hook.of_kind("latency")), timeout=10)
        assert fired
        rate = hook.of_kind("error_rate")[0]
        assert rate["key"] == "pay" and rate["attributes"]["errors"] == 40 and rate["attributes"]["spans"] == 200
        assert abs(rate["attributes"]["error_rate"] - 0.2) < 1e-9
        latency = hook.of_kind("latency")[0]
        assert latency["key"] == "pay" and 2900 <= latency["attributes"]["latency_ms"] <= 3100
        # Healthy traffic for pay: fast and without errors. The old spans leave the 3 s window.
        deadline = time.time() + 15
        while time.time() < deadline and len(hook.of_kind("resolved")) < 2:
            body = otlp_json("pay", [(50_000 + i, i, 10, False) for i in range(30)])
            requests.post(s.url, json=body, timeout=5)
            time.sleep(0.3)
        resolved = hook.of_kind("resolved")
        assert sorted(e["attributes"]["rule"] for e in resolved) == ["error_rate", "latency/p95"], resolved
        assert all(e["key"] == "pay" for e in resolved)
        assert not [e for e in hook.events if e[1]["key"] == "search"]
        rules = s.status()["pipelines"][0]["rules"]
        print(f"\nrule counters: {rules}")
        assert rules["error_rate.fired"] == 1 and rules["error_rate.resolved"] == 1
    finally:
        hook.close()


BURST = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  null:
notifiers:
  webhook:
    endpoint: %s
    format: slack
  log:
    format: text
rules:
  error_span:
    group_wait: 3s
    cooldown: 1m
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [null]
      notifiers: [webhook, log]
      rules: [error_span]
"""


def test_a_burst_of_identical_errors_is_one_notification_with_a_count(spanhost):
    hook = HookServer()
    try:
        s = spanhost(BURST % hook.url)
        sent = 0
        for n in range(100):
            body = otlp_json("checkout", [(n * 100 + i + 1, i, 1, True) for i in range(100)])
            assert requests.post(s.url, json=body, timeout=5).status_code == 200
            sent += 100
        assert wait_for(lambda: hook.events, timeout=10)
        time.sleep(1)
        with hook.lock:
            texts = [e["text"] for _, e, _ in hook.events]
        print(f"\nsent {sent} identical error spans; webhook got {len(texts)} notification(s)")
        assert len(texts) == 1, texts
        assert "10000 occurrences" in texts[0] and "[ERROR] error_span" in texts[0]
        lines = wait_for(lambda: [l for l in s.log().splitlines() if " error_span " in l], timeout=5)
        assert len(lines) == 1 and "count=10000" in lines[0]
    finally:
        hook.close()


FAILING = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  null:
notifiers:
  webhook/flaky:
    endpoint: %s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms}}
  webhook/rejecting:
    endpoint: %s
  exec/hangs:
    command: [sleep, "30"]
    timeout: 500ms
    retry_on_failure: {{initial_interval: 100ms, max_elapsed_time: 1s}}
  exec/script:
    command: [sh, -c, "cat > {tmp}/event.json"]
rules:
  error_span:
    group_wait: 0s
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [null]
      notifiers: [webhook/flaky, webhook/rejecting, exec/hangs, exec/script]
      rules: [error_span]
"""


def test_failing_and_hanging_notifiers_are_retried_counted_and_never_block_spans(spanhost, tmp):
    flaky = HookServer(script=[503, 503])
    rejecting = HookServer(script=[400] * 10)
    try:
        s = spanhost(FAILING % (flaky.url, rejecting.url))
        body = otlp_json("checkout", [(1, 0, 1, True)])
        assert requests.post(s.url, json=body, timeout=5).status_code == 200
        # While exec/hangs is stuck in its command, spans keep flowing.
        started = time.time()
        for n in range(50):
            body = otlp_json("search", [(100 + n, 0, 1, False)])
            assert requests.post(s.url, json=body, timeout=5).status_code == 200
        print(f"\n50 requests while a notifier hangs: {time.time() - started:.2f} s")

        def counters():
            return {n["id"]: n["counters"] for n in s.status()["notifiers"]}

        c = wait_for(lambda: (lambda c: c if c["exec/hangs"].get("failed") else None)(counters()), timeout=15)
        assert c["webhook/flaky"]["notified"] == 1 and c["webhook/flaky"]["retried"] == 2
        assert c["webhook/rejecting"]["failed"] == 1 and "notified" not in c["webhook/rejecting"]
        assert c["exec/hangs"]["failed"] == 1 and c["exec/hangs"]["retried"] >= 1 and c["exec/hangs"]["timeouts"] >= 2
        assert c["exec/script"]["notified"] == 1
        event = json.load(open(os.path.join(tmp, "event.json")))
        assert event["kind"] == "error_span" and event["attributes"]["service.name"] == "checkout"
        assert len(flaky.events) == 1
        exported = s.status()["exporters"][0]["counters"]
        assert exported["discarded_spans"] == 51
        print(f"notifier counters: {c}")
        # The webhook counts answers by status in a labelled counter; /metrics carries the label.
        assert c["webhook/flaky"]['responses{status="503"}'] == 2 and c["webhook/flaky"]['responses{status="200"}'] == 1
        metrics = requests.get(s.admin + "/metrics", timeout=5).text
        assert 'spanhost_notifier_responses_total{notifier="webhook/flaky",status="503"} 2' in metrics, metrics
        assert 'spanhost_notifier_responses_total{notifier="webhook/rejecting",status="400"} 1' in metrics
    finally:
        flaky.close()
        rejecting.close()


def test_invalid_rules_are_refused_with_the_key(spanhost, tmp):
    from conftest import SPANHOSTD
    import subprocess
    cases = [
        ("rules:\n  error_ratio: {}\n", "rules.error_ratio: unknown rule type 'error_ratio'"),
        ("rules:\n  error_rate: {threshold: 5}\n", "rules.error_rate.threshold: must be a number from 0.0 to 1.0"),
        ("rules:\n  latency: {group_by: host}\n", "rules.latency.group_by: 'host' is not service or span_name"),
    ]
    base = ("receivers:\n  otlp: {}\nexporters:\n  null: {}\nnotifiers:\n  log: {}\n"
            "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [null]\n"
            "      notifiers: [log]\n      rules: [%s]\n")
    for rules, message in cases:
        name = rules.split("\n")[1].strip().split(":")[0]
        path = os.path.join(tmp, "bad.yaml")
        with open(path, "w") as f:
            f.write(rules + base % name)
        out = subprocess.run([SPANHOSTD, "--check", "--config", path], capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and message in out.stderr + out.stdout, (out.stdout, out.stderr)
    path = os.path.join(tmp, "bad.yaml")
    with open(path, "w") as f:
        f.write("rules:\n  error_span: {}\n" + (base % "error_span").replace("      notifiers: [log]\n", ""))
    out = subprocess.run([SPANHOSTD, "--check", "--config", path], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "a pipeline with rules needs at least one notifier" in out.stderr + out.stdout


def test_a_reload_keeps_unchanged_rules_so_a_firing_alert_does_not_fire_again(spanhost):
    hook = HookServer()
    try:
        s = spanhost(BURST % hook.url)
        body = otlp_json("checkout", [(1, 0, 1, True)])
        assert requests.post(s.url, json=body, timeout=5).status_code == 200
        assert wait_for(lambda: hook.events, timeout=10)
        # Reload the same config: the rule engine, and its cool-down, carry over.
        assert requests.post(s.admin + "/-/reload", json={}, timeout=30).status_code == 200
        assert requests.post(s.url, json=otlp_json("checkout", [(2, 0, 1, True)]), timeout=5).status_code == 200
        # The engine that saw the second error is the one that saw the first (its count goes on
        # from 1), so it is in its cool-down: a new engine would count from 0 and notify again.
        seen = lambda: s.status()["pipelines"][0]["rules"].get("error_span.error_spans", 0)
        assert wait_for(lambda: seen() == 2, timeout=10), s.status()["pipelines"][0]["rules"]
        with hook.lock:
            assert len(hook.events) == 1, [e for _, e, _ in hook.events]
    finally:
        hook.close()


def test_span_text_cannot_ping_a_channel_or_forge_log_lines(spanhost):
    hook = HookServer()
    try:
        s = spanhost(BURST.replace("group_wait: 3s", "group_wait: 0s") % hook.url)
        name = "GET <http://evil.example|click here> <!channel>\n2026-01-01T00:00:00Z CRITICAL forged\x1b[2J & more"
        body = otlp_json("pay<!here>", [(1, 0, 1, True)])
        body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = name
        assert requests.post(s.url, json=body, timeout=5).status_code == 200
        assert wait_for(lambda: hook.events, timeout=10)
        text = hook.events[0][1]["text"]
        for raw in ["<!channel>", "<!here>", "<http://evil.example|click here>"]:
            assert raw not in text, text
        assert "&lt;!channel&gt;" in text and "&lt;http://evil.example|click here&gt;" in text and "&amp; more" in text
        lines = wait_for(lambda: [l for l in s.log().splitlines() if " error_span " in l], timeout=5)
        assert len(lines) == 1, lines
        assert "forged" in lines[0] and "\\n2026-01-01T00:00:00Z CRITICAL" in lines[0] and "\\x1b[2J" in lines[0], lines[0]
        assert "\x1b" not in s.log() and not any(l.startswith("2026-01-01T00:00:00Z CRITICAL") for l in s.log().splitlines())
    finally:
        hook.close()


def test_the_errors_view_groups_failures_and_opens_a_shared_link_as_its_flow(spanhost, tmp):
    """The admin page's Errors view in headless Chromium: failures grouped by signature with a
    count, and a link naming one trace opens that failure's flow, service by service, with its
    own exception message."""
    from test_admin_page import chromium
    hook = HookServer()
    try:
        s = spanhost(CONFIG % hook.url)
        traces = {qty: run_two_service_app(s.url, qty)[0] for qty in (-1, -2)}
        assert wait_for(lambda: len(requests.get(s.admin + "/errors", timeout=5).json()["signatures"][0]["occurrences"]) == 2
                        if requests.get(s.admin + "/errors", timeout=5).json()["signatures"] else False, timeout=20)
        errors = requests.get(s.admin + "/errors", timeout=5).json()["signatures"]
        assert len(errors) == 1 and errors[0]["count"] == 2 and errors[0]["service"] == "checkout", errors
        for qty, trace_id in traces.items():
            dom = chromium("--dump-dom", f"{s.admin}/#error={trace_id}")
            assert dom.returncode == 0, dom.stderr[-2000:]
            html = dom.stdout
            assert f"ValueError: qty must be positive, got {qty}</div>" in html, html[html.find('id="errorflow"'):][:3000]
            other = -3 - qty  # the other failure's message is not in this flow
            assert f"got {other}</div>" not in html
            steps = re.findall(r'<span class="step( failing)?">([^<]*)</span>', html)
            assert [name.split(" (")[0] for _, name in steps] == [
                "frontend · GET /buy", "frontend · call checkout", "checkout · POST /order", "checkout · place_order", "checkout · validate_qty"], steps
            assert steps[-1][0] == " failing"
            assert f'href="#error={trace_id}"' in html and f"trace {trace_id}" in html
            assert re.search(r'<tr class="pick chosen"[^>]*><td>[^<]*</td><td>checkout</td>', html), "the row of this error is marked"
            assert all(f'href="#error={t}"' in html for t in traces.values()), "each occurrence of the signature is listed"
        shot = os.path.join(os.environ.get("SPANHOST_SCREENSHOT_DIR", tmp), "errors.png")
        r = chromium("--window-size=1280,900", f"--screenshot={shot}", f"{s.admin}/#error={traces[-1]}")
        assert r.returncode == 0 and os.path.getsize(shot) > 10_000, r.stderr[-2000:]
    finally:
        hook.close()
