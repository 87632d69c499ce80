"""Instructions per span on the data path (decode + pipelines + exporter hand-off, no sockets),
counted by callgrind on a fixed input: repeatable whatever else the machine is doing.
    SPANHOST_BUILD=build build/venv/bin/python Tests/bench/callgrind.py
Each config runs spanhost-bench-path twice under callgrind, with 0 and REPEAT requests of the
bench's 100-span body; the difference divided by the spans is the figure (start-up cancels out)."""
import os
import re
import subprocess
import sys
import shutil
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import bench  # noqa: E402  (the same request body and configs as `make bench`)

BUILD = os.environ.get("SPANHOST_BUILD", "build")
REPEAT = int(os.environ.get("CALLGRIND_REPEAT", "200"))
CONFIGS = [
    ("OTLP -> null", bench.QUEUE_CONFIG % ("num_consumers: 4", "")),
    ("OTLP -> 3 C processors -> null", bench.CONFIG),
    ("OTLP -> attributes(hash) -> filter -> sampler -> null", bench.CHAIN_CONFIG),
    ("OTLP -> transform (6 + 1 statements) -> null", bench.TRANSFORM_CONFIG),
    ("OTLP -> transform, flat form, Concat + SHA256 -> null", bench.TRANSFORM_FLAT_CONFIG),
    ("OTLP -> filter calling a plugin function -> null", bench.FUNCTION_FILTER_CONFIG),
]


def instructions(binary, config, body, repeat):
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", binary, config, body, str(repeat)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))


def main():
    tmp = tempfile.mkdtemp(prefix="spanhost-callgrind-")
    body = os.path.join(tmp, "body.pb")
    with open(body, "wb") as f:
        f.write(bench.request_body())
    plugins = os.path.abspath(os.path.join(BUILD, "plugins"))
    # Valgrind cannot read the DWARF 5 that swiftc writes; counting needs no debug info.
    binary = os.path.join(tmp, "spanhost-bench-path")
    subprocess.run(["objcopy", "--strip-debug", os.path.join(BUILD, "bin", "spanhost-bench-path"), binary], check=True)
    print(f"instructions per span (callgrind, {REPEAT} requests of {bench.SPANS_PER_REQUEST} spans, start-up subtracted)")
    for name, template in CONFIGS:
        config = os.path.join(tmp, "config.yaml")
        with open(config, "w") as f:
            f.write(template.format(port=bench.free_port(), admin=bench.free_port(), plugins=plugins))
        spans = REPEAT * bench.SPANS_PER_REQUEST
        per_span = (instructions(binary, config, body, REPEAT) - instructions(binary, config, body, 0)) / spans
        print(f"  {name:55} {per_span:10,.0f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
