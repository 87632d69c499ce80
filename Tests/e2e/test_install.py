"""`make install`: executables, shipped plugins, a default config and the systemd unit land
where they should, and the installed spanhostd finds its plugins with no plugins.dir."""
import os
import subprocess

import requests

from conftest import Spanhost, wait_for, read_file_export
from test_data_path import otlp_json

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_make_install_lays_out_a_working_service(tmp):
    # `-o build`: the suite runs after `make build`; installing is what is under test here.
    dest = os.path.join(tmp, "root")
    r = subprocess.run(["make", "-s", "-C", ROOT, "-o", "build", "install", f"DESTDIR={dest}", "PREFIX=/usr"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for path in ["usr/bin/spanhostd", "usr/bin/spanhost", "usr/lib/spanhost/plugins/file.so", "usr/lib/spanhost/plugins/otlphttp.so",
                 "etc/spanhost/config.yaml", "etc/systemd/system/spanhost.service", "usr/share/doc/spanhost/spanhost.h"]:
        assert os.path.exists(os.path.join(dest, path)), path
    unit = open(os.path.join(dest, "etc/systemd/system/spanhost.service")).read()
    assert "ExecStart=/usr/bin/spanhostd --config /etc/spanhost/config.yaml" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "@PREFIX@" not in unit
    # A config already there is kept on the next install.
    with open(os.path.join(dest, "etc/spanhost/config.yaml"), "a") as f:
        f.write("# edited\n")
    subprocess.run(["make", "-s", "-C", ROOT, "-o", "build", "install", f"DESTDIR={dest}", "PREFIX=/usr"], check=True, capture_output=True, timeout=900)
    assert open(os.path.join(dest, "etc/spanhost/config.yaml")).read().endswith("# edited\n")

    # The installed daemon, with the installed config's shape and no plugins.dir, finds
    # /usr/lib/spanhost/plugins beside its /usr/bin.
    config = open(os.path.join(dest, "etc/spanhost/config.yaml")).read().replace("{", "{{").replace("}", "}}") \
        .replace("/var/lib/spanhost", "{tmp}").replace("127.0.0.1:4318", "{receiver}") + "admin:\n  endpoint: {admin}\n"
    s = Spanhost(config, tmp, executable=os.path.join(dest, "usr/bin/spanhostd"))
    try:
        s.wait_healthy()
        # What the unit's ExecStartPre runs, with the installed tool.
        assert subprocess.run([os.path.join(dest, "usr/bin/spanhost"), "validate", "--config", s.config_path],
                              capture_output=True, timeout=60).returncode == 0
        plugin = next(p for p in s.status()["plugins"] if p["name"] == "file")
        assert plugin["file"] == os.path.join(dest, "usr/lib/spanhost/plugins/file.so")
        assert requests.post(s.url, json=otlp_json(3), timeout=5).status_code == 200
        assert wait_for(lambda: len(read_file_export(os.path.join(tmp, "spans.jsonl"))) == 3, timeout=10)
    finally:
        assert s.stop() == 0
