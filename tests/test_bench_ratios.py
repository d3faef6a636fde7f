"""benchmarks/bench.py's ratios to the C client: paired by round."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"
if not BENCH.exists():
    pytest.skip("no benchmarks/ next to the tests", allow_module_level=True)
spec = importlib.util.spec_from_file_location("bench_for_tests", BENCH)
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench          # dataclasses look their module up there
spec.loader.exec_module(bench)


def runs(values, rounds=True):
    return [dict({"ops_per_s": v, "cpu_us_per_op": 1000.0 / v},
                 **({"round": i} if rounds else {})) for i, v in enumerate(values)]


def test_ratio_is_the_median_of_each_rounds_own_ratio():
    # the machine slows down in round 1: both sides of the round move together
    c, client = runs([100.0, 40.0, 70.0]), runs([95.0, 38.0, 63.0])
    assert bench.paired_ratio(client, c, "ops_per_s") == pytest.approx(0.95)
    assert bench.paired_ratio(client, c, "cpu_us_per_op") == pytest.approx(1 / 0.95)
    cells = bench.summarize({("put", "C"): c, ("put", "cython"): client})
    assert cells[("put", "cython")]["ratio"] == pytest.approx(0.95)
    assert cells[("put", "C")]["ratio"] == pytest.approx(1.0)
    # the medians' ratio would say 0.90
    assert cells[("put", "cython")]["ops_per_s"] / cells[("put", "C")]["ops_per_s"] \
        == pytest.approx(0.90)


def test_a_round_one_side_lacks_is_left_out():
    c = runs([100.0, 40.0, 70.0])
    client = [r for r in runs([95.0, 10.0, 63.0]) if r["round"] != 1]
    assert bench.paired_ratio(client, c, "ops_per_s") == pytest.approx((0.95 + 0.9) / 2)


def test_runs_without_rounds_fall_back_to_the_ratio_of_medians():
    c, client = runs([100.0, 40.0, 70.0], False), runs([95.0, 38.0, 63.0], False)
    assert bench.paired_ratio(client, c, "ops_per_s") == pytest.approx(0.90)
