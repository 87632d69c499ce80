"""Omegi agents publish errors and flows to Kafka; spanhostd consumes both topics with the omegi
encoding, rebuilds span trees, and the error_flow processor produces one error record per
failing request: first from messages the Python agent recorded, then from the real agent
(PyPI omegi-instrumentation-python) inside a Flask app."""
import json
import os
import subprocess
import time

import requests

from conftest import BUILD, free_port, read_file_export, wait_for, needs
from test_kafka import MockCluster
from test_notifiers import HookServer

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "omegi")
OMEGI_PYTHON = os.path.join(BUILD, "omegi-venv", "bin", "python")

CONFIG = """
receivers:
  kafka:
    brokers: [%s]
    topics: [error, flow]
    group_id: omegi
    initial_offset: earliest
    encoding: omegi
    time_zone: UTC
processors:
  error_flow:
    wait: 2s
    format: omegi
exporters:
  file:
    path: {tmp}/spans.jsonl
notifiers:
  webhook:
    endpoint: %s
  kafka_events:
    brokers: [%s]
    topic: error_flows
    payload: omegi
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [kafka]
      processors: [error_flow]
      exporters: [file]
      notifiers: [webhook, kafka_events]
"""


def compact(name):
    with open(os.path.join(SAMPLES, name)) as f:
        return json.dumps(json.load(f), separators=(",", ":")).encode()


def test_recorded_omegi_messages_become_spans_and_error_flows(spanhost, tmp):
    cluster = MockCluster("error", "flow", "error_flows")
    hook = HookServer()
    try:
        s = spanhost(CONFIG % (cluster.bootstrap, hook.url, cluster.bootstrap))
        for topic, name in [("flow", "flow.pretty.json"), ("error", "error.pretty.json"), ("error", "error_mixed_batch_run2.json")]:
            cluster.command(f"produce {topic} " + compact(name).hex())
            assert cluster.proc.stdout.readline().strip() == "OK"
        cluster.command("produce error " + b'{"tracer":"omegi-tracer-python","traceId":"zz"}'.hex())
        assert cluster.proc.stdout.readline().strip() == "OK"
        counters = lambda: s.status()["receivers"][0]["counters"]
        assert wait_for(lambda: counters().get("accepted_spans") == 11 and counters().get("rejected_requests") == 1, timeout=30), counters()
        spans = wait_for(lambda: (lambda g: g if len(g) == 11 else None)(read_file_export(os.path.join(tmp, "spans.jsonl"))), timeout=15)
        assert spans, "11 spans exported"
        # The agent's token is kept on the resource; the flow pseudo-span has an id of its own and
        # keeps the message's spanId, which belongs to the real span.
        resource = {a["key"]: a["value"]["stringValue"] for a in spans[0]["resource"]["attributes"]}
        assert resource["omegi.token"] == "demo-token"
        flow_span = next(x["span"] for x in spans if x["span"]["name"] == "omegi flow")
        attrs = {a["key"]: a["value"].get("stringValue") for a in flow_span["attributes"]}
        assert attrs["omegi.span_id"] == "0d0135487ad6763e" and flow_span["spanId"] != "0d0135487ad6763e"
        assert all(x["span"]["spanId"] != flow_span["spanId"] for x in spans if x["span"] is not flow_span)
        flows = wait_for(lambda: hook.of_kind("error_flow"), timeout=15)
        time.sleep(1.5)
        flows = hook.of_kind("error_flow")
        # Two failing requests (one per error message), same service, span and exception: one
        # notification standing for both, and the processor counted two records.
        assert len(flows) == 1 and flows[0]["count"] == 2, flows
        processor = s.status()["pipelines"][0]["processors"][0]["counters"]
        assert processor["error_flows"] == 2 and processor["traces_examined"] == 4
        a = flows[0]["attributes"]
        assert a["exception.type"] == "ValueError" and a["exception.message"] == "qty must be positive, got -1"
        assert a["service.name"] == "demo-flask"
        assert [p["name"] for p in a["error_flow.path"]] == ["/error", "service.order_service.place_order", "service.order_service.validate_qty"]
        omegi = a["omegi"]
        assert omegi["serviceName"] == "demo-flask" and omegi["error"]["exception.type"] == "ValueError"
        assert omegi["token"] == "demo-token"
        assert omegi["error"]["exception.flow"]["step.1"] == "demo-flask.service.order_service.validate_qty"
        assert [sp["name"] for sp in omegi["spans"]][-1] == "/error"
        assert omegi["spans"][-1]["spanEnterTime"].startswith("2026-11-22 01:3")
        # The same record, in the Omegi agents' shape, published to Kafka by kafka_events.
        published = cluster.consume("error_flows", 1)
        assert len(published) == 1
        record = json.loads(published[0][2])
        assert record == omegi and published[0][1] == flows[0]["trace_id"]
        print(f"\nproduced 4 messages; consumed {counters()}; exported {len(spans)} spans; "
              f"error flows {processor['error_flows']} in {len(flows)} notification(s)")
        assert s.stop() == 0
    finally:
        hook.close()
        cluster.close()


# The Flask app, as a team would write it; the agent is started by a launcher outside the
# project root, since the agent imports (and wraps) every module under the root.
APP = """
from flask import Flask

from service import order_service

app = Flask(__name__)


@app.route("/error")
def error():
    return order_service.place_order("book", -1)


@app.route("/ok")
def ok():
    return order_service.place_order("book", 2)
"""

LAUNCHER = """
import sys

from omegi import OmegiInstrumentor

from app import app

OmegiInstrumentor(app).instrument()
app.run(host="127.0.0.1", port=int(sys.argv[1]))
"""

APP_SERVICE = """
def validate_qty(qty: int):
    if qty < 1:
        raise ValueError(f"qty must be positive, got {qty}")


def price_of(item: str):
    return 12


def place_order(item: str, qty: int):
    validate_qty(qty)
    return {"item": item, "total": price_of(item) * qty}
"""


@needs(OMEGI_PYTHON, "`make test-e2e`")
def test_the_omegi_python_agent_end_to_end(spanhost, tmp):
    cluster = MockCluster("error", "flow", "error_flows")
    hook = HookServer()
    app = None
    try:
        s = spanhost(CONFIG % (cluster.bootstrap, hook.url, cluster.bootstrap))
        root = os.path.join(tmp, "app")
        os.makedirs(os.path.join(root, "service"))
        with open(os.path.join(root, "app.py"), "w") as f:
            f.write(APP)
        with open(os.path.join(tmp, "launch.py"), "w") as f:
            f.write(LAUNCHER)
        with open(os.path.join(root, "service", "order_service.py"), "w") as f:
            f.write(APP_SERVICE)
        port = free_port()
        env = {**os.environ, "OMEGI_PROJECT_ROOT": root, "OMEGI_KAFKA_SERVER": cluster.bootstrap,
               "OMEGI_SERVICE_NAME": "shop", "OMEGI_TOKEN": "test-token", "OMEGI_FLOW_RATE": "1",
               "OTEL_BSP_SCHEDULE_DELAY": "200", "PYTHONPATH": root}
        app = subprocess.Popen([OMEGI_PYTHON, os.path.join(tmp, "launch.py"), str(port)], cwd=root, env=env,
                               stdout=open(os.path.join(tmp, "app.log"), "w"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        def up():
            assert app.poll() is None, open(os.path.join(tmp, "app.log")).read()
            try:
                return requests.get(url + "/ok", timeout=2).ok
            except requests.ConnectionError:
                return False

        assert wait_for(up, timeout=30), open(os.path.join(tmp, "app.log")).read()
        failing = 3
        for _ in range(failing):
            assert requests.get(url + "/error", timeout=5).status_code == 500
            time.sleep(0.3)  # one export batch per request
        requests.get(url + "/ok", timeout=5)
        processor = lambda: s.status()["pipelines"][0]["processors"][0]["counters"]
        assert wait_for(lambda: processor().get("error_flows", 0) >= failing, timeout=30), (processor(), s.status()["receivers"])
        time.sleep(2.5)
        counters = s.status()["receivers"][0]["counters"]
        flows = hook.of_kind("error_flow")
        print(f"\nfailing requests {failing}; kafka receiver {counters}; error flows {processor()['error_flows']}, "
              f"notified {len(flows)} time(s) with counts {[f['count'] for f in flows]}")
        assert processor()["error_flows"] == failing
        assert sum(f["count"] for f in flows) == failing
        a = flows[0]["attributes"]
        assert a["exception.type"] == "ValueError" and a["exception.message"] == "qty must be positive, got -1"
        assert a["service.name"] == "shop"
        assert [p["name"] for p in a["error_flow.path"]] == ["/error", "service.order_service.place_order", "service.order_service.validate_qty"]
        assert a["omegi"]["error"]["exception.type"] == "ValueError"
        assert counters.get("rejected_requests", 0) == 0
    finally:
        if app:
            app.terminate()
            app.wait(10)
        hook.close()
        cluster.close()
