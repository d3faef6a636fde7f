"""Bad arguments are refused before anything reaches the wire."""

import pytest

BAD_NAMES = [
    ("crlf", "a\r\nb"),
    ("cr", "a\rb"),
    ("lf", "a\nb"),
    ("space", "a b"),
    ("leading-dash", "-abc"),
    ("too-long", "a" * 201),
    ("empty", ""),
    ("empty-bytes", b""),
    ("non-ascii", "caf\u00e9"),
    ("nul", "a\x00b"),
    ("star", "a*b"),
    ("injection", "x\r\nput 0 0 1 1"),
]
WRONG_TYPES = [None, 1, 1.5, ["a"], bytearray(b"abc")]


def _names(conn):
    return set(conn.tubes())


@pytest.mark.parametrize("name", [n for _, n in BAD_NAMES], ids=[i for i, _ in BAD_NAMES])
@pytest.mark.parametrize("method", ["use", "watch", "ignore", "stats_tube", "pause_tube"])
def test_bad_tube_name(conn, tube, name, method):
    before = _names(conn)
    args = (name, 1) if method == "pause_tube" else (name,)
    with pytest.raises(ValueError):
        getattr(conn, method)(*args)
    # still usable and in the same state; nothing reached the server
    assert conn.using() == tube
    assert conn.watching() == [tube]
    after = _names(conn)
    assert after - before <= set(), after - before
    if isinstance(name, str) and name:
        assert name not in after


@pytest.mark.parametrize("name", WRONG_TYPES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("method", ["use", "watch", "ignore", "stats_tube"])
def test_wrong_type_tube_name(conn, tube, name, method):
    with pytest.raises(TypeError):
        getattr(conn, method)(name)
    assert conn.using() == tube
    assert conn.watching() == [tube]


def test_longest_and_odd_valid_names(conn):
    for name in ("a" * 200, "A-+/;.$_()9", "x-", "_", "("):
        assert conn.use(name) == name
        assert conn.using() == name
        assert name in conn.tubes()


def test_bytes_tube_name_accepted(conn):
    assert conn.use(b"bytes-name") == "bytes-name"


def test_check_name_direct(core):
    assert core.check_name("abc") == b"abc"
    assert core.check_name(b"abc") == b"abc"
    for _, name in BAD_NAMES:
        with pytest.raises(ValueError):
            core.check_name(name)
    for name in WRONG_TYPES:
        with pytest.raises(TypeError):
            core.check_name(name)


BAD_INTS = [
    ("pri-2**32", dict(priority=2 ** 32), ValueError),
    ("pri-neg", dict(priority=-1), ValueError),
    ("pri-float-2**32", dict(priority=2.0 ** 32), ValueError),
    ("pri-float-neg", dict(priority=-1.0), ValueError),
    ("pri-nan", dict(priority=float("nan")), ValueError),
    ("pri-str", dict(priority="1"), TypeError),
    ("pri-none", dict(priority=None), TypeError),
    ("pri-bool", dict(priority=True), TypeError),
    ("delay-neg", dict(delay=-1), ValueError),
    ("delay-huge", dict(delay=2 ** 64), ValueError),
    ("ttr-inf", dict(ttr=float("inf")), ValueError),
    ("ttr-neg", dict(ttr=-1), ValueError),
    ("ttr-bool", dict(ttr=False), TypeError),
]


@pytest.mark.parametrize("kwargs,exc", [(k, e) for _, k, e in BAD_INTS],
                         ids=[i for i, _, _ in BAD_INTS])
def test_put_bad_ints(conn, tube, kwargs, exc):
    with pytest.raises(exc):
        conn.put("x", **kwargs)
    with pytest.raises(exc):
        conn.put_many(["x"], **kwargs)
    assert conn.using() == tube
    assert conn.stats_tube(tube)["total-jobs"] == 0
    assert conn.peek_ready() is None


def test_int_subclass_accepted(conn):
    class MyInt(int):
        pass
    jid = conn.put("x", priority=MyInt(5))
    assert conn.stats_job(jid)["pri"] == 5


def test_uint_limits(conn):
    jid = conn.put("x", priority=2 ** 32 - 1)
    assert conn.stats_job(jid)["pri"] == 2 ** 32 - 1


@pytest.mark.parametrize("call", [
    lambda c: c.release(1, priority=2 ** 32),
    lambda c: c.release(1, delay=-1),
    lambda c: c.bury(1, priority=-5),
    lambda c: c.kick(-1),
    lambda c: c.reserve(timeout=-1),
    lambda c: c.delete(-1),
    lambda c: c.delete(2 ** 64),
    lambda c: c.peek(-1),
    lambda c: c.stats_job(-1),
    lambda c: c.touch(2 ** 64),
    lambda c: c.kick_job(-2),
    lambda c: c.reserve_job(-1),
    lambda c: c.pause_tube("default", -1),
    lambda c: c.reserve_many(-1),
], ids=["release-pri", "release-delay", "bury-pri", "kick", "reserve-timeout", "delete-neg",
        "delete-2**64", "peek", "stats-job", "touch", "kick-job", "reserve-job", "pause",
        "reserve-many"])
def test_out_of_range(conn, call):
    with pytest.raises(ValueError):
        call(conn)
    assert conn.using()


@pytest.mark.parametrize("call", [
    lambda c: c.delete("1"),
    lambda c: c.delete(None),
    lambda c: c.delete(True),
    lambda c: c.reserve(timeout="0.5"),
    lambda c: c.kick(b"1"),
    lambda c: c.peek("1"),
    lambda c: c.release(1, priority=1j),
], ids=["delete-str", "delete-none", "delete-bool", "reserve-str", "kick-bytes", "peek-str",
        "release-complex"])
def test_wrong_int_types(conn, call):
    with pytest.raises(TypeError):
        call(conn)
    assert conn.using()


@pytest.mark.parametrize("body", [1, None, ["a"], 1.5, {"a": 1}, object()],
                         ids=["int", "none", "list", "float", "dict", "object"])
def test_bad_body_types(conn, tube, body):
    with pytest.raises(TypeError):
        conn.put(body)
    assert conn.stats_tube(tube)["total-jobs"] == 0
    assert conn.using() == tube


@pytest.mark.parametrize("body", [1, None, ["a"]], ids=["int", "none", "list"])
def test_bad_body_types_put_many(conn, tube, body):
    # the items before the bad one are sent, it and the rest are not
    with pytest.raises(TypeError) as info:
        conn.put_many([b"ok", body, b"never"])
    conn.reconnect()
    assert conn.stats_tube(tube)["total-jobs"] == 1
    assert len(info.value.results) == 1


def test_bad_body_put_many_keeps_connection(conn, tube):
    with pytest.raises(TypeError):
        conn.put_many([1])
    assert conn.using() == tube


def test_check_uint_direct(core):
    assert core.check_uint("x", 0) == 0
    assert core.check_uint("x", 2 ** 32 - 1) == 2 ** 32 - 1
    assert core.check_uint("x", 2 ** 64 - 1, 2 ** 64 - 1) == 2 ** 64 - 1
    with pytest.raises(ValueError):
        core.check_uint("x", 2 ** 32)
    with pytest.raises(ValueError):
        core.check_uint("x", 2 ** 64, 2 ** 64 - 1)
    with pytest.raises(ValueError):
        core.check_uint("x", -1)
    with pytest.raises(ValueError):
        core.check_uint("x", -2 ** 70)
    for bad in (True, False, "1", None, b"1", 1j):
        with pytest.raises(TypeError):
            core.check_uint("x", bad)
    assert core.check_uint("x", 1.9) == 1


def test_encode_put_direct(core):
    assert core.encode_put(b"ab", 1, 2, 3, None) == b"put 1 2 3 2\r\nab\r\n"
    assert core.encode_put("\u00e9", 0, 0, 0, "utf-8") == b"put 0 0 0 2\r\n\xc3\xa9\r\n"
    with pytest.raises(TypeError):
        core.encode_put("x", 1, 2, 3, None)


# -- the two cores encode commands identically -------------------------------------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

ANY_INT = st.one_of(st.integers(min_value=-2, max_value=2 ** 65),
                    st.sampled_from([0, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63,
                                     2 ** 64 - 1, 2 ** 64, True, 1.0, "1", None]))
BODIES = st.one_of(st.binary(max_size=64), st.text(max_size=32),
                   st.binary(max_size=16).map(bytearray), st.binary(max_size=16).map(memoryview),
                   st.sampled_from([None, 1, ["x"]]))


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001
        return ("err", type(exc), str(exc))


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, priority=ANY_INT, delay=ANY_INT, ttr=ANY_INT,
       encoding=st.sampled_from(["utf-8", None, "latin-1"]))
def test_cores_encode_put_alike(both_cores, body, priority, delay, ttr, encoding):
    py, cy = both_cores
    assert (_outcome(py.encode_put, body, priority, delay, ttr, encoding)
            == _outcome(cy.encode_put, body, priority, delay, ttr, encoding))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from([b"delete ", b"peek ", b"stats-job ", b"reserve-job "]), jid=ANY_INT)
def test_cores_encode_id_alike(both_cores, verb, jid):
    py, cy = both_cores
    assert _outcome(py.encode_id, verb, jid) == _outcome(cy.encode_id, verb, jid)
