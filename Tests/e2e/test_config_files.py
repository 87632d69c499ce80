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
