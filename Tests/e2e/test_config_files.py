"""Several --config files, merged as the Collector merges them: maps key by key, later files on
top; a reload reads them all again."""
import os

import requests

from conftest import Spanhost, read_file_export, wait_for
from test_data_path import otlp_json
from test_plugin_cli import spanhost_cli, write

BASE = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: {receiver}
exporters:
  file:
    path: {tmp}/out.jsonl
plugins:
  dir: {plugins}
admin:
  endpoint: {admin}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""

OVERLAY = """
processors:
  attributes/env:
    actions: [{key: deployment.environment, value: %s, action: insert}]
service:
  pipelines:
    traces:
      processors: [attributes/env]
"""


def environments(tmp):
    return [next(a["value"]["stringValue"] for a in x["span"]["attributes"] if a["key"] == "deployment.environment")
            for x in read_file_export(os.path.join(tmp, "out.jsonl"))]


def test_several_config_files_are_merged_and_reread_on_reload(tmp):
    overlay = write(tmp, "overlay.yaml", OVERLAY % "prod")
    s = Spanhost(BASE, tmp, args=["--config", overlay])
    try:
        s.wait_healthy()
        assert [p["id"] for p in s.status()["pipelines"][0]["processors"]] == ["attributes/env"]
        assert requests.post(s.url, json=otlp_json(2), timeout=5).status_code == 200
        assert wait_for(lambda: environments(tmp) == ["prod", "prod"], timeout=10), environments(tmp)
        write(tmp, "overlay.yaml", OVERLAY % "staging")
        assert requests.post(s.admin + "/-/reload", json={}, timeout=60).json()["ok"]
        assert requests.post(s.url, json=otlp_json(1, 5), timeout=5).status_code == 200
        assert wait_for(lambda: environments(tmp)[-1:] == ["staging"], timeout=10), environments(tmp)
    finally:
        assert s.stop() == 0
    # The tool validates the same set of files, and names the one it cannot read.
    assert spanhost_cli("validate", "--config", s.config_path, "--config", overlay).returncode == 0
    r = spanhost_cli("validate", "--config", s.config_path, "--config", os.path.join(tmp, "missing.yaml"))
    assert r.returncode != 0 and "missing.yaml" in r.stderr, r.stderr


HEALTH = BASE + """
extensions:
  health_check:
    endpoint: 127.0.0.1:%d
    path: /health/status
  health_check/shared:
    path: /ready
"""


def test_the_collectors_health_check_extension_is_served(tmp):
    from conftest import free_port
    port = free_port()
    s = Spanhost((HEALTH % port).replace("      exporters: [file]\n", "      exporters: [file]\n  extensions: [health_check]\n"), tmp)
    try:
        s.wait_healthy()
        r = requests.get(f"http://127.0.0.1:{port}/health/status", timeout=5)
        assert r.status_code == 200 and r.text.strip() == "ok"
        assert requests.get(f"http://127.0.0.1:{port}/status", timeout=5).status_code == 404, "only the health path is served there"
    finally:
        assert s.stop() == 0
    # Without an endpoint it is served on the admin endpoint, at its path, without a token.
    shared = (HEALTH % port).replace("      exporters: [file]\n", "      exporters: [file]\n  extensions: [health_check/shared]\n")
    s = Spanhost(shared, tmp)
    try:
        s.wait_healthy()
        assert requests.get(s.admin + "/ready", timeout=5).text.strip() == "ok"
    finally:
        assert s.stop() == 0


def test_the_readme_config_is_valid(tmp):
    # The one config README.md shows, as written: every key it uses exists, and every plugin it
    # names is created (in the child process `validate` starts) with those settings.
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    config = readme.split("## One config\n\n```yaml\n", 1)[1].split("```", 1)[0]
    path = write(tmp, "readme.yaml", config)
    r = spanhost_cli("validate", "--config", path, env={"SLACK_WEBHOOK": "http://127.0.0.1:9/hook"})
    assert r.returncode == 0, r.stdout + r.stderr
