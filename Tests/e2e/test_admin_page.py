"""The admin page at `/`, in a real browser: headless Chromium loads it from a running
spanhostd, its script fills in live figures from /status, and the page shows the configured
components, counters that moved, the service map and the plugin images."""
import os
import re
import shutil
import subprocess

import pytest
import requests

from test_derived import send, span

CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
processors:
  attributes/tag:
    actions: [{{key: env, value: test, action: insert}}]
connectors:
  servicegraph: {{}}
exporters:
  file:
    path: {tmp}/out.jsonl
notifiers:
  log: {{}}
rules:
  error_span: {{group_wait: 0s}}
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [attributes/tag]
      exporters: [file, servicegraph]
      notifiers: [log]
      rules: [error_span]
"""


def chromium(*args):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.fail("chromium is missing: `make test-deps` installs it")
    return subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--virtual-time-budget=8000", *args], capture_output=True, text=True, timeout=120)


def test_the_admin_page_shows_the_pipeline_live_counters_and_the_service_map(spanhost, tmp):
    s = spanhost(CONFIG)
    for trace in range(1, 11):
        send(s, "frontend", [span(trace, trace * 10, "GET /", 2, 20), span(trace, trace * 10 + 1, "GET /items", 3, 15, parent=trace * 10)])
        send(s, "backend", [span(trace, trace * 10 + 2, "GET /items", 2, 10, parent=trace * 10 + 1, error=trace == 1)])
    page = requests.get(s.admin + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    # Drawn on the server: every configured component, before any script runs.
    for kind, name in [("receiver", "otlp"), ("processor", "attributes/tag"), ("exporter", "file"), ("connector", "servicegraph")]:
        assert f'data-kind="{kind}" data-id="{name}"' in page.text, (kind, name)

    dom = chromium("--dump-dom", s.admin + "/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # The script ran: live counters of the processor (30 spans in), the exporter queue table,
    # the service map with both services and the edge's figures, the plugin images.
    box = re.search(r'data-id="attributes/tag">.*?<span class="figures">([^<]*)</span>', html, re.S)
    assert box and "received 30" in box.group(1), box and box.group(1)
    assert re.search(r'data-rate="exporter/file">\d+ spans', html), "the exporter's rate was filled in"
    assert re.search(r'data-rate="notifier/log">\d+ events', html), "a notifier counts events, not spans"
    assert re.search(r'<text[^>]*class="service"[^>]*>frontend</text>', html) and re.search(r'class="service"[^>]*>backend<', html)
    # The edge runs from the client to the server, left to right, with an arrowhead at the server.
    edge = re.search(r'<path d="M([\d.]+),[\d.]+ L([\d.]+),[\d.]+"[^>]*marker-end="url\(#arrow1\)"[^>]*data-client="frontend" data-server="backend"', html)
    assert edge and float(edge.group(1)) < float(edge.group(2)), html[html.find("<svg"):html.find("</svg>")]
    assert re.search(r'class="edgelabel"[^>]*>[\d.]+ calls(/s)? · 10\.0% err · p95 \d+ ms</text>', html)
    assert '<td>frontend</td><td>backend</td><td>10</td><td>10.0%</td>' in html
    assert 'id="maphint"></div>' in html, "no hint while a servicegraph connector runs"
    assert re.search(r'data-rate="connector/servicegraph">1 service pairs', html)
    assert "<td>attributes</td>" in html and "<td>current</td>" in html
    assert "<td>file</td>" in html
    # The error span reached the log notifier; the page lists it.
    assert re.search(r"<td>log</td><td>error_span</td><td>1</td><td>backend: error in span 'GET /items'</td><td>notified</td>", html), html

    shot = os.path.join(os.environ.get("SPANHOST_SCREENSHOT_DIR", tmp), "admin.png")
    r = chromium("--window-size=1280,1600", f"--screenshot={shot}", s.admin + "/")
    assert r.returncode == 0 and os.path.getsize(shot) > 10_000, r.stderr[-2000:]
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_without_servicegraph_the_map_says_what_to_add_and_empty_tables_say_so(spanhost, tmp):
    s = spanhost(CONFIG.replace("connectors:\n  servicegraph: {{}}\n", "").replace("exporters: [file, servicegraph]", "exporters: [file]"))
    dom = chromium("--dump-dom", s.admin + "/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "No servicegraph connector runs" in html and "servicegraph: {}" in html
    assert '<td colspan="5" class="none">no servicegraph connector</td>' in html
    assert '<td colspan="6" class="none">none yet</td>' in html, "the empty notifications table says so"


def test_a_live_tap_shows_the_spans_at_one_point_that_match_its_condition(spanhost, tmp):
    """POST /tap, as the page does: after attributes/tag (point 1) the spans carry its attribute,
    after the receivers (point 0) they do not; the condition picks spans; a bad condition is
    refused with its column; the page opened with #tap=... streams the matching spans."""
    import threading
    import time
    import urllib.parse
    s = spanhost(CONFIG)

    def start(point, condition):
        return requests.post(s.admin + "/tap", json={"pipeline": "traces", "point": point, "condition": condition}, timeout=5)
    after = start(1, 'attributes["env"] == "test" and name == "GET /items"').json()["id"]
    before = start(0, 'attributes["env"] == "test"').json()["id"]
    bad = start(1, 'attributes["env"] ==')
    assert bad.status_code == 400 and "column" in bad.text, bad.text
    assert start(7, "").status_code == 400

    for trace in range(1, 4):
        send(s, "frontend", [span(trace, trace * 10, "GET /", 2, 20), span(trace, trace * 10 + 1, "GET /items", 3, 15, parent=trace * 10)])

    def spans(tap):
        batches = requests.get(f"{s.admin}/tap/{tap}/0", timeout=5).json()["batches"]
        return [sp for b in batches for rs in __import__("json").loads(b["otlp"])["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
    got = spans(after)
    assert [sp["name"] for sp in got] == ["GET /items"] * 3, got
    assert all({"key": "env", "value": {"stringValue": "test"}} in sp["attributes"] for sp in got)
    assert spans(before) == [], "before the processor no span has its attribute"
    assert requests.get(f"{s.admin}/tap/nope/0", timeout=5).status_code == 404

    # The page: opened with a tap in its address, it lists the spans that arrive while it watches.
    stop = threading.Event()

    def traffic():
        trace = 100
        while not stop.is_set():
            trace += 1
            send(s, "frontend", [span(trace, trace * 10, "GET /", 2, 20), span(trace, trace * 10 + 1, "GET /items", 3, 15, parent=trace * 10)])
            time.sleep(0.2)
    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        condition = urllib.parse.quote('name == "GET /items"')
        dom = chromium("--dump-dom", f"{s.admin}/#tap=traces:1:{condition}")
        shot = os.path.join(os.environ.get("SPANHOST_SCREENSHOT_DIR", tmp), "tap.png")
        r = chromium("--window-size=1280,1100", f"--screenshot={shot}", f"{s.admin}/#tap=traces:1:{condition}")
        assert r.returncode == 0 and os.path.getsize(shot) > 10_000, r.stderr[-2000:]
    finally:
        stop.set()
        sender.join()
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'watching traces at point 1 where name == "GET /items"' in html.replace("&quot;", '"'), html[html.find("tapstate"):][:500]
    rows = re.findall(r'<tr class="pick"><td>frontend</td><td>([^<]*)</td>', html)
    assert rows and set(rows) == {"GET /items"}, rows


def test_the_service_map_stays_readable_with_twenty_services(spanhost, tmp):
    """A gateway calling five services that each call three more: 21 services in three columns,
    every edge left to right (client before server), no label cut off or over a service name."""
    s = spanhost(CONFIG)
    trace = 0
    for mid in range(5):
        for leaf in range(3):
            trace += 1
            send(s, "gateway", [span(trace, trace * 10, "GET /", 2, 30), span(trace, trace * 10 + 1, f"call mid{mid}", 3, 25, parent=trace * 10)])
            send(s, f"mid-service-{mid}", [span(trace, trace * 10 + 2, "handle", 2, 20, parent=trace * 10 + 1),
                                           span(trace, trace * 10 + 3, f"call leaf{leaf}", 3, 10, parent=trace * 10 + 2)])
            send(s, f"leaf-service-{mid}-{leaf}", [span(trace, trace * 10 + 4, "work", 2, 5, parent=trace * 10 + 3)])
    dom = chromium("--dump-dom", s.admin + "/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert len(re.findall(r'class="service"', html)) == 21
    assert re.search(r'<svg id="map"[^>]*data-clipped="0"', html) and re.search(r'<svg id="map"[^>]*data-overlaps="0"', html), \
        re.search(r'<svg id="map"[^>]*>', html).group(0)
    for x1, x2 in re.findall(r'<path d="M([\d.]+),[\d.]+ L([\d.]+),[\d.]+"', html):
        assert float(x1) < float(x2)
    shot = os.path.join(os.environ.get("SPANHOST_SCREENSHOT_DIR", tmp), "map20.png")
    assert chromium("--window-size=1280,1400", f"--screenshot={shot}", s.admin + "/").returncode == 0
