"""A scripted fake server: cut connections, garbage, stalls, lies."""

import select
import socket
import threading
import time

import pytest

import beanstalkc_fast

from conftest import read_until

SocketError = beanstalkc_fast.SocketError
UnexpectedResponse = beanstalkc_fast.UnexpectedResponse


def scripted(reply, then="close"):
    """Handler: read one command line, send ``reply``, then close or stall."""
    def handler(sock, srv):
        read_until(sock)
        if reply:
            sock.sendall(reply)
        if then == "stall":
            srv.stop.wait(10)
    return handler


def assert_broken(c):
    with pytest.raises(SocketError):
        c.peek(1)
    with pytest.raises(SocketError):
        c.using()
    c.close()
    c.close()


@pytest.mark.parametrize("reply", [b"", b"RESERV", b"RESERVED 1 10\r\nabc", b"RESERVED 1 3\r\nabc"],
                         ids=["before-reply", "mid-line", "mid-body", "before-body-crlf"])
def test_cut_connection(make_conn, fake_server, reply):
    srv = fake_server(scripted(reply))
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(SocketError):
        c.reserve(timeout=1)
    assert_broken(c)


@pytest.mark.parametrize("reply", [b"HELLO WORLD\r\n", b"\r\n", b"INSERTED\r\n",
                                   b"INSERTED abc\r\n", b"INSERTED -1\r\n",
                                   b"INSERTED 99999999999999999999999\r\n",
                                   b"inserted 1\r\n", b"\xff\xfe\r\n", b"INSERTED 1 2\r\n",
                                   b"INSERTED  1\r\n", b"TIMED_OUT 1\r\n"])
def test_garbage_reply(make_conn, fake_server, reply):
    srv = fake_server(scripted(reply, "stall"))
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(UnexpectedResponse):
        c.put("x")
    assert_broken(c)


def test_reply_not_allowed_for_command(make_conn, fake_server):
    # a well-formed reply of the wrong kind for the command
    srv = fake_server(scripted(b"KICKED 3\r\n", "stall"))
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(UnexpectedResponse):
        c.put("x")


def test_overlong_line(make_conn, fake_server):
    srv = fake_server(scripted(b"A" * 5000, "stall"))
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(UnexpectedResponse):
        c.put("x")
    assert_broken(c)


def test_overlong_line_trickled(make_conn, fake_server):
    def handler(sock, srv):
        read_until(sock)
        for _ in range(40):
            sock.sendall(b"B" * 100)
        srv.stop.wait(10)
    srv = fake_server(handler)
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(UnexpectedResponse):
        c.put("x")


def test_absurd_body_length(make_conn, fake_server):
    srv = fake_server(scripted(b"RESERVED 1 999999999999\r\n", "stall"))
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(UnexpectedResponse):
        c.reserve(timeout=1)
    assert_broken(c)


def test_absurd_body_length_stats(make_conn, fake_server):
    srv = fake_server(scripted(b"OK 18446744073709551615\r\n", "stall"))
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(UnexpectedResponse):
        c.stats()


def test_body_without_crlf(make_conn, fake_server):
    srv = fake_server(scripted(b"RESERVED 1 3\r\nabcXY", "stall"))
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(UnexpectedResponse):
        c.reserve(timeout=1)
    assert_broken(c)


def test_stalled_peer_times_out(make_conn, fake_server):
    srv = fake_server(scripted(b"", "stall"))
    c = make_conn(srv.port, socket_timeout=0.5)
    with pytest.raises(SocketError):
        c.put("x")
    assert_broken(c)


def test_stalled_peer_mid_reply(make_conn, fake_server):
    srv = fake_server(scripted(b"FOUND 1 100\r\nab", "stall"))
    c = make_conn(srv.port, socket_timeout=0.5)
    with pytest.raises(SocketError):
        c.peek(1)
    assert_broken(c)


def test_stalled_peer_in_pipeline(make_conn, fake_server):
    srv = fake_server(scripted(b"", "stall"))
    c = make_conn(srv.port, socket_timeout=0.5)
    with pytest.raises(SocketError):
        c.put_many(["a", "b"])


def test_good_replies_then_reconnect(make_conn, fake_server):
    def handler(sock, srv):
        read_until(sock)
        sock.sendall(b"INSERTED 7\r\n")
        read_until(sock)
        sock.sendall(b"USING foo\r\n")
        read_until(sock)
    srv = fake_server(handler)
    c = make_conn(srv.port, socket_timeout=5)
    assert c.put("x") == 7
    assert c.using() == "foo"
    with pytest.raises(SocketError):
        c.peek(1)
    assert_broken(c)


def test_close_during_put_many(make_conn, fake_server):
    n = 10
    confirmed = 3

    def handler(sock, srv):
        # read every put (header + body lines) so the close is clean, not a reset
        read_until(sock, b"\r\n", 2 * n)
        sock.sendall(b"".join(b"INSERTED %d\r\n" % (i + 1) for i in range(confirmed)))
        sock.shutdown(2 - 1)  # SHUT_WR
        srv.stop.wait(2)

    srv = fake_server(handler)
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(SocketError) as info:
        c.put_many(["body%d" % i for i in range(n)])
    assert info.value.results == [1, 2, 3]
    assert_broken(c)


def test_close_during_reserve_many(make_conn, fake_server):
    def handler(sock, srv):
        read_until(sock)
        sock.sendall(b"RESERVED 1 1\r\na\r\n")
        read_until(sock, b"\r\n", 3)
        sock.sendall(b"RESERVED 2 1\r\nb\r\nRESERVED 3 1\r\nc\r\n")
        sock.shutdown(1)
        srv.stop.wait(2)

    srv = fake_server(handler)
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(SocketError) as info:
        c.reserve_many(4, timeout=0)
    assert [j.jid for j in info.value.results] == [1, 2, 3]


def test_pipeline_error_mid_batch_keeps_results(make_conn, fake_server):
    def handler(sock, srv):
        read_until(sock, b"\r\n", 3)
        sock.sendall(b"DELETED\r\nNOT_FOUND\r\nGARBAGE\r\n")
        srv.stop.wait(5)

    srv = fake_server(handler)
    c = make_conn(srv.port, socket_timeout=5)
    with pytest.raises(UnexpectedResponse) as info:
        c.delete_many([1, 2, 3])
    results = info.value.results
    assert results[0] is None
    assert isinstance(results[1], beanstalkc_fast.errors.NotFound)
    assert len(results) == 2


def test_concurrent_use_detected(make_conn, fake_server):
    gate = threading.Event()

    def handler(sock, srv):
        read_until(sock)
        gate.wait(5)
        sock.sendall(b"INSERTED 1\r\n")
        srv.stop.wait(5)

    srv = fake_server(handler)
    c = make_conn(srv.port, socket_timeout=5)
    out = []
    t = threading.Thread(target=lambda: out.append(c.put("x")))
    t.start()
    try:
        time.sleep(0.3)   # let the other thread send and block on the reply
        with pytest.raises(beanstalkc_fast.ConcurrentUseError):
            c.put("y")
    finally:
        gate.set()
        t.join(5)
    assert out == [1]


@pytest.mark.parametrize("total,size", [(3000, 4096), (200, 65536)], ids=["4KiB", "64KiB"])
def test_put_many_against_slow_lazy_server(make_conn, fake_server, total, size):
    """A server that reads in small, slow sips and answers only when nothing
    more arrives: far more data than both socket buffers hold goes through,
    and the client never has more than its window of commands, nor more than
    its byte budget, written but unanswered."""
    window, budget = 512, 1 << 18
    seen = {"commands": 0, "bytes": 0}

    def handler(sock, srv):
        buf = bytearray()
        unanswered = []             # sizes of the commands received, not answered
        answered = 0
        while answered < total:
            ready, _, _ = select.select([sock], [], [], 0.002)
            if ready:
                chunk = sock.recv(2048)
                if not chunk:
                    return
                buf += chunk
                while True:
                    eol = buf.find(b"\r\n")
                    if eol < 0:
                        break
                    end = eol + 2 + int(buf[:eol].split()[-1]) + 2
                    if len(buf) < end:
                        break
                    del buf[:end]
                    unanswered.append(end)
                seen["commands"] = max(seen["commands"], len(unanswered))
                seen["bytes"] = max(seen["bytes"], sum(unanswered))
                time.sleep(0.0002)
            elif unanswered:
                sock.sendall(b"".join(b"INSERTED %d\r\n" % (answered + i + 1)
                                      for i in range(len(unanswered))))
                answered += len(unanswered)
                unanswered.clear()

    srv = fake_server(handler, rcvbuf=4096)
    c = make_conn(srv.port, socket_timeout=30)
    ids = c.put_many(b"b" * size for _ in range(total))
    assert ids == list(range(1, total + 1))
    assert 0 < seen["commands"] <= window
    assert 0 < seen["bytes"] <= budget
    assert srv.errors == []


# -- waits longer than a wait slice (both cores wait in slices of WAIT_SLICE) ------------

def test_read_deadline_longer_than_a_slice_holds_to_its_end(make_conn, fake_server):
    # the slices (1 s) neither cut the deadline short nor stretch it
    srv = fake_server(scripted(b"", "stall"))
    c = make_conn(srv.port, socket_timeout=1.6)
    start = time.monotonic()
    with pytest.raises(SocketError, match="timed out"):
        c.put("x")
    waited = time.monotonic() - start
    assert 1.5 <= waited < 8, waited
    assert_broken(c)


def test_send_blocked_longer_than_a_slice_completes(make_conn, fake_server):
    # the server reads nothing for 1.5 s: the put's send waits for buffer room
    # over more than one slice, and every byte arrives once, in order
    body = bytes(range(256)) * 16384            # 4 MiB: more than the socket buffers hold
    got = {}

    def handler(sock, srv):
        time.sleep(1.5)
        data = bytearray()
        while not data.endswith(b"\r\n") or len(data) < len(body) + 20:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            data += chunk
        got["data"] = bytes(data)
        sock.sendall(b"INSERTED 7\r\n")
        srv.stop.wait(10)

    srv = fake_server(handler, rcvbuf=4096)
    c = make_conn(srv.port, socket_timeout=5, encoding=None)
    assert c.put(body) == 7
    head = b"put 2147483648 0 120 %d\r\n" % len(body)
    assert got["data"] == head + body + b"\r\n"


@pytest.mark.parametrize("how", ["one buffer", "parts"])
def test_sends_resume_after_a_slice_ran_out(how):
    # _shared's senders keep their place when the socket's timeout (a wait
    # slice) runs out and on_timeout lets the wait go on
    from beanstalkc_fast import _shared
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    a.settimeout(0.05)
    data = bytes(range(256)) * 4096                 # 1 MiB
    slices = []

    def on_timeout(began):
        slices.append(began)
        return 0.0

    received = bytearray()

    def reader():
        time.sleep(0.3)
        while len(received) < len(data):
            received.extend(b.recv(1 << 16))

    t = threading.Thread(target=reader)
    t.start()
    try:
        if how == "parts":
            _shared.send_parts(a, (data[:1000], data[1000:], b""), on_timeout)
        else:
            _shared._send_all(a, data, on_timeout)
    finally:
        t.join(10)
        a.close()
        b.close()
    assert bytes(received) == data
    assert slices and slices[0] is None                  # the first slice: the wait's start unknown
