"""The stats TypedDicts (beanstalkc_fast.stats) against a live beanstalkd:
exactly the keys the server sends, each value of the declared type."""

import pytest

import beanstalkc_fast
from beanstalkc_fast.stats import JobStats, ServerStats, TubeStats


def _check(stats, typed_dict):
    assert set(stats) == set(typed_dict.__annotations__)
    for key, tp in typed_dict.__annotations__.items():
        # exact types: a bool is not an int here, an int rusage would be wrong
        assert type(stats[key]) is tp, (key, stats[key], tp)


@pytest.mark.parametrize("method, typed_dict", [
    ("stats", ServerStats), ("stats_tube", TubeStats), ("stats_job", JobStats)])
def test_stats_match_their_typeddict(conn, tube, method, typed_dict):
    jid = conn.put("x")
    arg = {"stats": (), "stats_tube": (tube,), "stats_job": (jid,)}[method]
    _check(getattr(conn, method)(*arg), typed_dict)


def test_stats_types_are_exported():
    assert beanstalkc_fast.ServerStats is ServerStats
    assert {"ServerStats", "TubeStats", "JobStats"} <= set(beanstalkc_fast.__all__)
