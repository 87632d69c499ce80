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
