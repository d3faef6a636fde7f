"""Scatter-gather puts (issue 11): a body of SCATTER_MIN bytes or more leaves
from its own buffer (header, body and CRLF sent with one sendmsg, resumed
after partial sends), a smaller one in one joined buffer. Both cores."""

import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from beanstalkc_fast import ConnectionBroken, SocketError
from conftest import alarm, ctrl_c


def _wire(parts):
    """What a put encoding puts on the wire."""
    if isinstance(parts, tuple):
        return b"".join(bytes(p) for p in parts)
    return bytes(parts)


def test_small_body_is_one_buffer_big_body_keeps_its_own(core):
    small = b"x" * (core.SCATTER_MIN - 1)
    assert core.encode_put_parts(small, 1, 2, 3, None) == core.encode_put(small, 1, 2, 3, None)
    for big in (b"y" * core.SCATTER_MIN, bytearray(b"z" * 70000)):
        head, body, tail = core.encode_put_parts(big, 1, 2, 3, None)
        assert body is big                        # not copied
        assert (head, tail) == (b"put 1 2 3 %d\r\n" % len(big), b"\r\n")


def test_memoryview_body_is_sent_as_its_bytes_without_a_copy(core):
    raw = bytes(range(256)) * 64
    view = memoryview(raw).cast("I")              # len() counts 4-byte items
    head, body, _ = core.encode_put_parts(view, 0, 0, 1, None)
    assert head == b"put 0 0 1 %d\r\n" % len(raw)
    assert body.obj is raw and bytes(body) == raw
    strided = memoryview(raw)[::2]                # not contiguous: copied, as encode_put does
    assert _wire(core.encode_put_parts(strided, 0, 0, 1, None)) == \
        core.encode_put(strided, 0, 0, 1, None)


BIG_BODIES = {
    "bytes": b"\x00ab\r\n" * 13000,
    "bytearray": bytearray(b"cd" * 30000),
    "memoryview": memoryview(b"ef" * 20000),
    "memoryview-int": memoryview(b"\x01\x02\x03\x04" * 4000).cast("I"),
    "unicode": "\u00e9\u20ac\U0001f600" * 6000,         # 54,000 bytes in UTF-8
    "threshold": b"t" * (1 << 13),
}


@pytest.mark.parametrize("kind", sorted(BIG_BODIES))
def test_big_bodies_round_trip_through_a_tiny_send_buffer(make_conn, server, tube, kind):
    c = make_conn(server.port, encoding=None)
    c._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)   # many partial sends
    c.use(tube)
    c.watch(tube)
    body = BIG_BODIES[kind]
    expected = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    jid = c.put(body.encode("utf-8") if isinstance(body, str) else body)
    job = c.reserve(timeout=1)
    assert (job.jid, job.body) == (jid, expected)
    job.delete()
    assert c.stats_tube(tube)["total-jobs"] == 1   # one put, nothing left in the stream
    assert c.put(b"small") > jid


def test_unicode_body_with_encoding(make_conn, server, tube):
    c = make_conn(server.port)
    c.use(tube)
    c.watch(tube)
    body = "\u00e9\u20ac" * 9000
    jid = c.put(body)
    job = c.reserve(timeout=1)
    assert (job.jid, job.body) == (jid, body)


def _core_on_pair(core, timeout=5.0):
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return core.Core(a, timeout), b


def _slow_peer(peer, want, got, chunk=1000):
    """Read ``want`` bytes in small pieces, then answer INSERTED."""
    while len(got) < want:
        data = peer.recv(chunk)
        if not data:
            return
        got.extend(data)
    peer.sendall(b"INSERTED 7\r\n")


def test_partial_sends_resume_exactly(core):
    c, peer = _core_on_pair(core)
    body = bytes(range(256)) * 300
    parts = core.encode_put_parts(body, 5, 0, 60, None)
    assert isinstance(parts, tuple)
    got = bytearray()
    reader = threading.Thread(target=_slow_peer, args=(peer, len(_wire(parts)), got))
    reader.start()
    try:
        assert c.request(parts) == ("INSERTED", 7, None)
    finally:
        reader.join(5)
        peer.close()
    assert bytes(got) == _wire(parts)
    c.close()


def test_signals_during_a_blocked_scatter_send_lose_nothing(core):
    c, peer = _core_on_pair(core)
    body = b"s" * 200000
    parts = core.encode_put_parts(body, 0, 0, 1, None)
    got = bytearray()
    ticks = []
    started = threading.Event()

    def tick(signum, frame):
        ticks.append(signum)
        if len(ticks) == 3:
            started.set()                 # let the peer read only after a few signals

    def peer_reads():
        started.wait(5)
        _slow_peer(peer, len(_wire(parts)), got, chunk=65536)

    reader = threading.Thread(target=peer_reads)
    try:
        with alarm(tick, 0.02, 0.02):
            reader.start()
            assert c.request(parts) == ("INSERTED", 7, None)
    finally:
        started.set()
        reader.join(5)
        peer.close()
    assert len(ticks) >= 3
    assert bytes(got) == _wire(parts)


@pytest.mark.parametrize("joined", [False, True], ids=["parts", "one-buffer"])
def test_ctrl_c_during_a_blocked_send_breaks_the_core(core, joined):
    # a signal that cuts a blocking send short after some progress must run
    # its handler then, not when the whole send is done or timed out
    c, peer = _core_on_pair(core)
    parts = core.encode_put_parts(b"k" * 200000, 0, 0, 1, None)
    if joined:
        parts = _wire(parts)

    try:
        with alarm(ctrl_c, 0.2):
            with pytest.raises(KeyboardInterrupt):
                c.request(parts)
    finally:
        peer.close()
    with pytest.raises(ConnectionBroken, match="interrupted"):
        c.request(b"stats\r\n")


def test_a_peer_that_stops_reading_times_the_scatter_send_out(core):
    c, peer = _core_on_pair(core, timeout=0.3)
    try:
        with pytest.raises(SocketError, match="timed out"):
            c.request(core.encode_put_parts(b"w" * 300000, 0, 0, 1, None))
    finally:
        peer.close()
    with pytest.raises(ConnectionBroken):
        c.request(b"stats\r\n")


def test_a_closed_peer_is_a_socket_error(core):
    c, peer = _core_on_pair(core)
    peer.close()
    with pytest.raises(SocketError):
        c.request(core.encode_put_parts(b"p" * 100000, 0, 0, 1, None))


# -- the two cores encode alike, and the parts are encode_put's bytes ---------------------

BODIES = st.one_of(
    st.binary(max_size=64), st.text(max_size=32),
    st.integers(min_value=(1 << 13) - 2, max_value=(1 << 13) + 2).map(lambda n: b"q" * n),
    st.integers(min_value=(1 << 13) - 2, max_value=(1 << 13) + 2).map(lambda n: bytearray(n)),
    st.integers(min_value=2040, max_value=2050).map(lambda n: memoryview(b"abcd" * n).cast("I")),
    st.integers(min_value=1, max_value=5000).map(lambda n: "\u00e9" * n),
    st.sampled_from([None, 1, ["x"], memoryview(b"ab" * 5000)[::2]]))
INTS = st.sampled_from([0, 1, 2 ** 32 - 1, 2 ** 32, -1, True, "1"])


def _outcome(fn, *args):
    try:
        return ("ok", _wire(fn(*args)))
    except Exception as exc:  # noqa: BLE001
        return ("err", type(exc), str(exc))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, priority=INTS, ttr=INTS, encoding=st.sampled_from(["utf-8", None]))
def test_cores_encode_put_parts_alike_and_as_encode_put(both_cores, body, priority, ttr,
                                                        encoding):
    py, cy = both_cores
    out = _outcome(py.encode_put_parts, body, priority, 0, ttr, encoding)
    assert out == _outcome(cy.encode_put_parts, body, priority, 0, ttr, encoding)
    whole = _outcome(py.encode_put, body, priority, 0, ttr, encoding)
    assert out[0] == whole[0] and (out[1:] == whole[1:] if out[0] == "ok" else out[1] is whole[1])
