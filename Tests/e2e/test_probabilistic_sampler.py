"""The probabilistic_sampler processor against the Collector's own cases
(processor/probabilisticsamplerprocessor/tracesprocessor_test.go: Test_tracesamplerprocessor_TraceState,
_TraceStateErrors and _HashSeedTraceState), each run through the real plugin with
`spanhost plugin-test`: one span with the case's trace id, tracestate and attribute, in each
of the equalizing and proportional modes; the expected decision and tracestate are the Go
test's. A case's precision of 0 in the Go test means full precision (14 digits here)."""
import json
import os
import random
import struct

from conftest import PLUGINS
from test_plugin_cli import spanhost_cli, write

SAMPLER = os.path.join(PLUGINS, "probabilistic_sampler.so")
DEFAULT_TID = "fefefefefefefefefe80000000000000"
IMPROBABLE_TID = "111111111111111111ffffffffffffff"

# name, trace id, percentage, precision, tracestate, sampling.priority, fail_closed,
# expected tracestate when kept (None: dropped) for (equalizing, proportional).
CASES = [
    ("100 percent", None, 100, 14, "", None, False, ("ot=th:0", "ot=th:0")),
    ("50 percent sampled", None, 50, 14, "", None, False, ("ot=th:8", "ot=th:8")),
    ("25 percent sampled", "ddddddddddddddddddc0000000000000", 25, 14, "", None, False, ("ot=th:c", "ot=th:c")),
    ("25 percent unsampled", "ddddddddddddddddddb0000000000000", 25, 14, "", None, False, (None, None)),
    ("1 percent sampled", None, 1, 14, "ot=rv:FD70A3D70A3D71", None, False,
     ("ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71",) * 2),
    ("1 percent sampled with rvalue and precision 4", None, 1, 4, "ot=rv:FD70A3D70A3D71", None, False,
     ("ot=rv:FD70A3D70A3D71;th:fd70a",) * 2),
    ("1 percent sampled with rvalue and precision 3", None, 1, 3, "ot=rv:FD70A3D70A3D71", None, False, (None, None)),
    ("1 percent not sampled with rvalue", None, 1, 14, "ot=rv:FD70A3D70A3D70", None, False, (None, None)),
    ("49 percent not sampled with default tid", None, 49, 14, "", None, False, (None, None)),
    ("1 percent sampled with rvalue", None, 1, 14, "ot=rv:fd70B000000000", None, False,
     ("ot=rv:fd70B000000000;th:fd70a3d70a3d71",) * 2),
    ("1 percent sampled with tid", "a0a0a0a0a0a0a0a0a0fe000000000000", 1, 4, "", None, False, ("ot=th:fd70a",) * 2),
    ("sampled by priority", None, 1, 14, "", 2, False, ("ot=th:0", "ot=th:0")),
    ("not sampled by priority", None, 99, 14, "", 0, False, (None, None)),
    ("incoming 50 percent with rvalue", None, 50, 14, "ot=rv:90000000000000;th:80000000000000", None, False,
     ("ot=rv:90000000000000;th:8", None)),
    ("incoming 50 percent at 25 percent not sampled", None, 25, 14, "ot=th:8", None, False, (None, None)),
    ("incoming 50 percent at 25 percent sampled", "ffffffffffffffffffffffffffffffff", 25, 14, "ot=th:8", None, False,
     ("ot=th:c", "ot=th:e")),
    ("equalizing vs proportional", None, 50, 14, "ot=rv:c0000000000000;th:8", None, False,
     ("ot=rv:c0000000000000;th:8", "ot=rv:c0000000000000;th:c")),
    ("inconsistent arriving threshold", None, 100, 14, "ot=rv:40000000000000;th:8", None, False,
     ("ot=rv:40000000000000;th:0",) * 2),
    ("inconsistent arriving threshold not sampled", None, 1, 14, "ot=rv:40000000000000;th:8", None, True, (None, None)),
    ("40 percent precision 3 with rvalue", None, 40, 3, "ot=rv:a0000000000000", None, False, ("ot=rv:a0000000000000;th:99a",) * 2),
    ("arriving 50 percent sampled at 40 percent precision 6 with tid", "a0a0a0a0a0a0a0a0a0d0000000000000", 40, 6, "ot=th:8", None, False,
     ("ot=th:99999a", "ot=th:cccccd")),
    ("arriving 50 percent sampled at 40 percent partly sampled", "a0a0a0a0a0a0a0a0a0b0000000000000", 40, 3, "ot=th:8", None, False,
     ("ot=th:99a", None)),
    ("arriving 50 percent sampled at 40 percent not sampled", "a0a0a0a0a0a0a0a0a080000000000000", 40, 3, "ot=th:8", None, False,
     (None, None)),
    ("200 percent equals 100 percent", None, 200, 14, "", None, False, ("ot=th:0", "ot=th:0")),
    ("tiny probability rounding", IMPROBABLE_TID, 100 * 2 ** -14, 14, "ot=th:fffc", None, False, ("ot=th:fffc", "ot=th:fffffff")),
    ("almost 100pct sampling", IMPROBABLE_TID, (1 - 8e-7) * 100, 10, "", None, False, ("ot=th:00000cccccccd",) * 2),
    ("probability underflow", IMPROBABLE_TID, 2 ** -4, 14, "ot=th:fffffffffffff8", None, False, ("ot=th:fffffffffffff8", None)),
    # Test_tracesamplerprocessor_TraceStateErrors: fail_closed drops them all.
    ("missing randomness", "0" * 32, 100, 14, "", None, True, (None, None)),
    ("invalid r-value", None, 100, 14, "ot=rv:abababababababab", None, True, (None, None)),
    ("invalid t-value", None, 100, 14, "ot=th:abababababababab", None, True, (None, None)),
    ("t-value syntax", None, 100, 14, "ot=th:-1", None, True, (None, None)),
    ("inconsistent t-value trace ID", "ffffffffffffffffff70000000000000", 100, 14, "ot=th:8", None, True, (None, None)),
    ("inconsistent t-value r-value", None, 100, 14, "ot=th:8;rv:70000000000000", None, True, (None, None)),
]


def span_json(trace_id, tracestate="", priority=None, span_id="00000000fefefefe"):
    span = {"traceId": trace_id, "spanId": span_id, "name": "s", "traceState": tracestate,
            "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    if priority is not None:
        span["attributes"] = [{"key": "sampling.priority", "value": {"intValue": str(priority)}}]
    return span


def run(tmp, settings, spans):
    """The spans the sampler keeps, as plugin-test prints them."""
    config = write(tmp, "sampler.yaml", "\n".join(f"{k}: {json.dumps(v)}" for k, v in settings.items()) + "\n")
    spans_file = write(tmp, "in.json", json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": spans}]}]}))
    r = spanhost_cli("plugin-test", SAMPLER, "--config", config, "--input", spans_file)
    assert r.returncode == 0, r.stderr
    return [sp for line in r.stdout.splitlines() if line.strip()
            for rs in json.loads(line).get("resourceSpans", []) for ss in rs.get("scopeSpans", []) for sp in ss.get("spans", [])]


def test_the_collectors_tracestate_cases_in_both_consistent_modes(tmp):
    failures = []
    for name, tid, pct, precision, ts, priority, fail_closed, expected in CASES:
        for mode, want in zip(("equalizing", "proportional"), expected):
            kept = run(tmp, {"mode": mode, "sampling_percentage": pct, "sampling_precision": precision, "fail_closed": fail_closed},
                       [span_json(tid or DEFAULT_TID, ts, priority)])
            got = kept[0].get("traceState", "") if kept else None
            if got != want:
                failures.append(f"{mode} {name}: got {got!r}, want {want!r}")
    assert not failures, "\n".join(failures)


def fnv_keep(seed, trace_id, pct):
    """The Collector's hash_seed decision: FNV-1a over the seed (little-endian) and the id, 14
    bits, kept below float32(pct) * float32(163.84), truncated."""
    f32 = lambda x: struct.unpack("f", struct.pack("f", x))[0]
    h = 2166136261
    for byte in struct.pack("<I", seed) + bytes.fromhex(trace_id):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return (h & 0x3FFF) < int(f32(f32(pct) * f32(0x4000 / 100.0)))


def test_hash_seed_mode_decides_as_the_collector_and_writes_its_thresholds(tmp):
    rng = random.Random(7)
    for pct, tvout in [(100, "0"), (75, "4"), (50, "8"), (25, "c"), (10, "e668"), (100.0 / 3, "aaac")]:
        ids = ["%032x" % rng.getrandbits(128) for _ in range(300)]
        kept = run(tmp, {"mode": "hash_seed", "hash_seed": 4242, "sampling_percentage": pct},
                   [span_json(tid, span_id="%016x" % (i + 1)) for i, tid in enumerate(ids)])
        assert sorted(sp["traceId"] for sp in kept) == sorted(t for t in ids if fnv_keep(4242, t, pct)), pct
        for sp in kept:
            ot = sp["traceState"]
            assert ot.startswith("ot=rv:") and ot.endswith(";th:" + tvout) and len(ot) == len("ot=rv:;th:") + 14 + len(tvout), ot


def test_the_default_mode_is_proportional_and_hash_seed_with_a_seed(tmp):
    kept = run(tmp, {"sampling_percentage": 50}, [span_json(DEFAULT_TID)])
    assert kept[0]["traceState"] == "ot=th:8"
    kept = run(tmp, {"sampling_percentage": 100, "hash_seed": 1}, [span_json(DEFAULT_TID)])
    assert kept[0]["traceState"].startswith("ot=rv:")
    # Other vendors' entries are kept, after ot.
    kept = run(tmp, {"sampling_percentage": 100}, [span_json(DEFAULT_TID, "vendor=abc,ot=p:8")])
    assert kept[0]["traceState"] == "ot=th:0;p:8,vendor=abc", kept


def test_the_readmes_logs_keys_are_accepted(tmp):
    # The README's log examples set attribute_source, from_attribute and sampling_priority;
    # spanhost carries no logs, so they are taken and never used.
    kept = run(tmp, {"sampling_percentage": 100, "attribute_source": "record", "from_attribute": "logID",
                     "sampling_priority": "priority"}, [span_json(DEFAULT_TID)])
    assert kept[0]["traceState"] == "ot=th:0"
