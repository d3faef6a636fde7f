"""Real numbers as integer arguments, as beanstalkc's ``%d`` sent them; the
body error caught as TypeError and as AssertionError. Both cores.

Decisions (see check_uint): any finite real (int, float, Fraction, Decimal)
is truncated toward zero and then range checked (-0.5 sends 0, as beanstalkc
did); bool, str, None, NaN and infinity are refused before anything is sent.
"""

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import beanstalkc_fast
from beanstalkc_fast.errors import BodyTypeError

REALS = [10.9, Fraction(21, 2), Decimal("10.99"), 10]          # all send 10


@pytest.mark.parametrize("pri", REALS, ids=lambda v: type(v).__name__)
def test_put_sends_truncated_numbers(conn, pri):
    jid = conn.put("x", priority=pri, delay=-0.5, ttr=pri)
    stats = conn.stats_job(float(jid))
    assert (stats["pri"], stats["delay"], stats["ttr"]) == (10, 0, 10)
    assert conn.put_many(["y"], priority=pri, delay=0.0, ttr=7.9)
    job = conn.reserve(timeout=1.5)
    assert job.jid == jid


def test_every_integer_parameter_takes_a_float(conn, tube):
    jid = conn.put("x")
    job = conn.reserve(timeout=0.5)           # reserve-with-timeout 0
    assert job.jid == jid
    conn.touch(float(jid))
    conn.release(float(jid), priority=3.7, delay=0.0)
    assert conn.stats_job(jid)["pri"] == 3
    conn.reserve(0.0)
    conn.bury(Decimal(jid), priority=Fraction(15, 2))
    assert conn.stats_job(jid)["pri"] == 7
    assert conn.peek(float(jid)).jid == jid
    conn.kick_job(jid + 0.0)
    conn.reserve_job(float(jid))
    conn.bury(jid)
    assert conn.kick(2.9) == 1
    assert [j.jid for j in conn.reserve_many(3.5, timeout=0.0)] == [jid]
    conn.delete(float(jid))
    conn.pause_tube(tube, 0.0)
    assert conn.reserve(timeout=0.99) is None


@pytest.mark.parametrize("value,exc", [
    (float("nan"), ValueError), (float("inf"), ValueError), (-float("inf"), ValueError),
    (Decimal("NaN"), ValueError), (Decimal("sNaN"), ValueError), (-1.0, ValueError),
    (2.0 ** 64, ValueError), (Fraction(-3, 2), ValueError), (True, TypeError),
    (False, TypeError), ("1", TypeError), (b"1", TypeError), (1j, TypeError),
], ids=repr)
def test_refused_numbers_send_nothing(conn, tube, value, exc):
    before = conn.stats()
    for call in (lambda: conn.put("x", priority=value), lambda: conn.put("x", delay=value),
                 lambda: conn.put_many(["x"], ttr=value), lambda: conn.reserve(timeout=value),
                 lambda: conn.release(1, delay=value), lambda: conn.bury(1, priority=value),
                 lambda: conn.kick(value), lambda: conn.pause_tube(tube, value),
                 lambda: conn.delete(value), lambda: conn.reserve_many(value)):
        with pytest.raises(exc):
            call()
    after = conn.stats()
    for key in ("cmd-put", "cmd-reserve-with-timeout", "cmd-release", "cmd-bury",
                "cmd-kick", "cmd-pause-tube", "cmd-delete"):
        assert after[key] == before[key], key
    assert conn.using() == tube


def test_check_uint_numbers(core):
    assert core.check_uint("x", 2.999) == 2
    assert core.check_uint("x", -0.999) == 0
    assert core.check_uint("x", 2 ** 32 - 0.5) == 2 ** 32 - 1
    assert type(core.check_uint("x", Decimal("5.5"))) is int
    with pytest.raises(ValueError, match="x must be a finite number, got nan"):
        core.check_uint("x", math.nan)
    with pytest.raises(TypeError, match="x must be a number, not bool"):
        core.check_uint("x", True)


@pytest.mark.parametrize("body", [1, None, 1.5, ["a"], {"a": 1}, object()],
                         ids=lambda v: type(v).__name__)
def test_bad_body_caught_both_ways(conn, tube, body):
    for catch in (TypeError, AssertionError):
        try:
            conn.put(body)
        except catch as exc:
            assert isinstance(exc, BodyTypeError)
            assert "job body must be str or bytes, not " in str(exc)
        with pytest.raises(catch):
            conn.put_many([body, "never sent"])
        conn.reconnect()
    assert conn.stats_tube(tube)["total-jobs"] == 0
    assert beanstalkc_fast.BodyTypeError is BodyTypeError


def test_str_body_without_encoding(make_conn, server):
    c = make_conn(server.port, encoding=None)
    with pytest.raises(AssertionError, match="must be bytes when encoding is None"):
        c.put("text")


# -- both cores take and refuse the same numbers, with the same messages --------------
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=2 ** 33),
    st.fractions(), st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-2, max_value=2 ** 65), st.booleans())


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001
        return ("err", type(exc), str(exc))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(priority=NUMBERS, delay=NUMBERS, ttr=NUMBERS)
def test_cores_encode_numbers_alike(both_cores, priority, delay, ttr):
    py, cy = both_cores
    out = _outcome(py.encode_put, b"x", priority, delay, ttr, None)
    assert out == _outcome(cy.encode_put, b"x", priority, delay, ttr, None)
    if out[0] == "ok":      # exactly beanstalkc's %d
        assert out[1] == b"put %d %d %d 1\r\nx\r\n" % (priority, delay, ttr)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jid=NUMBERS)
def test_cores_encode_id_numbers_alike(both_cores, jid):
    py, cy = both_cores
    assert _outcome(py.encode_id, b"delete ", jid) == _outcome(cy.encode_id, b"delete ", jid)
    assert _outcome(py.check_uint, "n", jid) == _outcome(cy.check_uint, "n", jid)


@pytest.mark.parametrize("body", [1, None, [b"x"], 2.5])
def test_cores_body_error_alike(both_cores, body):
    py, cy = both_cores
    assert _outcome(py.encode_put, body, 1, 2, 3, "utf-8") == \
        _outcome(cy.encode_put, body, 1, 2, 3, "utf-8")
