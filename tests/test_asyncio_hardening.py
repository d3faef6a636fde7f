"""Issue 16's rules in the asyncio client: bounded reconnects, timeout
values, close() and connecting again, put_many partway, batch priorities,
numbers, an idle connection after a server restart. Both cores, both loops
(option checks, which need no loop: both cores); a real beanstalkd unless a
fake peer is needed."""

import asyncio
import math
import socket
import threading
import time

import pytest

import beanstalkc_fast.asyncio as bsa
from beanstalkc_fast.errors import BatchError, ConnectionBroken, NotFound, SocketError
from conftest import free_port, read_until, start_beanstalkd, stop_beanstalkd


def _wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


# -- bounded auto_reconnect ------------------------------------------------------

def test_auto_reconnect_against_accept_and_close_peer_is_bounded(arun_fake, fake_server):
    accepted = []
    lock = threading.Lock()

    def accept_and_close(sock, srv):
        with lock:
            accepted.append(1)

    srv = fake_server(accept_and_close)

    async def body(connect):
        c = await connect(port=srv.port, auto_reconnect=True)
        with pytest.raises(SocketError):
            await c.stats()             # lost reply: sent again once, on a new connection
        await asyncio.sleep(0.2)
        assert len(accepted) == 2       # the first connection and one reconnect
        with pytest.raises(SocketError):
            await c.put("x")            # a put is never repeated
        await asyncio.sleep(0.2)
        assert len(accepted) == 3
    arun_fake(body, guard=20)


def test_lost_put_reply_is_not_repeated(arun_fake, fake_server):
    lines = []

    def swallow_and_close(sock, srv):
        lines.append(read_until(sock))

    srv = fake_server(swallow_and_close)

    async def body(connect):
        c = await connect(port=srv.port, auto_reconnect=True)
        with pytest.raises(SocketError, match="may or may not have been inserted"):
            await c.put("once")
    arun_fake(body, guard=20)
    assert _wait_for(lambda: len(lines) == 1)
    assert lines[0].startswith(b"put ")


# -- timeout and keepalive values ------------------------------------------------

BAD_VALUES = [-1, 0, math.nan, math.inf, 1e300, "5", True, -0.5]


@pytest.mark.parametrize("name", ["socket_timeout", "connect_timeout", "keepalive_idle",
                                  "keepalive_interval", "keepalive_count"])
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_bad_values_refused_before_connecting(core, name, value):
    # raised by connect(...) itself, before a loop or a socket is involved
    with pytest.raises(ValueError, match=name):
        bsa.connect("127.0.0.1", free_port(), core=core, **{name: value})
    with pytest.raises(ValueError, match=name):
        bsa.from_url("beanstalk://127.0.0.1:%d" % free_port(), core=core, **{name: value})


@pytest.mark.parametrize("value", [None, 0.5, 1e-9, 3, 86400])
def test_good_timeout_values_accepted(core, value):
    c = bsa.Connection(socket_timeout=value, connect_timeout=value, core=core)
    assert c.socket_timeout == (None if value is None else float(value))
    assert c.connect_timeout == c.socket_timeout


def test_connect_timeout_default_read_when_connecting(core):
    # left out, it is socket.getdefaulttimeout() when connecting (as in the
    # sync Connection and beanstalkc), not the value it had at import
    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(7.5)
        c = bsa.Connection(core=core)
        assert c.connect_timeout == 7.5
        assert bsa.Connection(connect_timeout=None, core=core).connect_timeout is None
        socket.setdefaulttimeout(None)
        assert c.connect_timeout is None
    finally:
        socket.setdefaulttimeout(old)


def test_keepalive_none_leaves_the_os_default(arun):
    async def body(connect):
        c = await connect(keepalive_idle=None, keepalive_interval=1.5)
        assert c.keepalive == (None, 2, 3)     # whole seconds, rounded up
        assert await c.using() != ""
    arun(body)


def _answer_once_then_silent(sock, srv):
    read_until(sock)
    sock.sendall(b"USING default\r\n")
    read_until(sock)
    srv.stop.wait(30)


def test_socket_timeout_assigned_later_takes_effect(arun_fake, fake_server):
    srv = fake_server(_answer_once_then_silent)

    async def body(connect):
        c = await connect(port=srv.port, socket_timeout=60)
        assert await c.using() == "default"    # its deadline, 60 s on, is still armed
        c.socket_timeout = 0.3
        with pytest.raises(SocketError, match="timed out"):
            await c.stats()                    # within the guard, not 60 s
    arun_fake(body, guard=20)


@pytest.mark.parametrize("before", [60, None])   # None: no deadline was armed yet
def test_socket_timeout_assigned_while_waiting(arun_fake, fake_server, before):
    srv = fake_server(_answer_once_then_silent)

    async def body(connect):
        c = await connect(port=srv.port, socket_timeout=before)
        await c.using()
        pending = asyncio.ensure_future(c.stats())
        await asyncio.sleep(0.1)
        c.socket_timeout = 0.3
        with pytest.raises(SocketError, match="timed out"):
            await pending
    arun_fake(body, guard=20)


def test_socket_timeout_assignment_validated(arun):
    async def body(connect):
        c = await connect(socket_timeout=5)
        for bad in (-1, 0, math.nan, math.inf, "1"):
            with pytest.raises(ValueError, match="socket_timeout"):
                c.socket_timeout = bad
        assert c.socket_timeout == 5
        c.socket_timeout = None
        assert c.socket_timeout is None and await c.watching()
    arun(body)


# -- close() and connecting again ------------------------------------------------

def test_close_then_connect_restores_tubes(arun, tube):
    async def body(connect):
        c = await connect()
        await c.close()
        await c.connect()
        assert await c.using() == tube
        assert await c.watching() == [tube]
        jid = await c.put("after close")
        assert (await c.stats_job(jid))["tube"] == tube
    arun(body)


def test_closed_connection_stays_closed_under_auto_reconnect(arun, tube):
    async def body(connect):
        c = await connect(auto_reconnect=True)
        await c.close()
        for call in (lambda: c.put("x"), c.stats, lambda: c.reserve(timeout=0),
                     lambda: c.put_many(["a"]), lambda: c.delete_many([1])):
            with pytest.raises(ConnectionBroken, match="closed by close"):
                await call()
        await c.connect()
        assert await c.using() == tube
        await c.close()
        await c.reconnect()
        assert await c.watching() == [tube]
    arun(body)


def test_closed_connection_without_auto_reconnect(arun):
    async def body(connect):
        c = await connect()
        await c.close()
        with pytest.raises(ConnectionBroken, match="close"):
            await c.stats()
    arun(body)


# -- put_many with a bad body partway --------------------------------------------

def test_put_many_bad_body_partway(arun, tube):
    async def body(connect):
        c = await connect()
        bodies = [b"ok"] * 700 + [1] + [b"never"] * 10
        with pytest.raises(TypeError) as info:
            await c.put_many(bodies)
        exc = info.value
        assert len(exc.results) == 700 and all(isinstance(r, int) for r in exc.results)
        assert "put_many item 700" in str(exc) and "not sent" in str(exc)
        assert (await c.stats_tube(tube))["total-jobs"] == 700
        assert await c.using() == tube             # the connection stays usable
    arun(body)


def test_put_many_iterable_raising_partway(arun, tube):
    def bodies():
        yield "a"
        yield "b"
        raise RuntimeError("source failed")

    async def body(connect):
        c = await connect()
        with pytest.raises(RuntimeError, match="source failed") as info:
            await c.put_many(bodies())
        assert len(info.value.results) == 2
        assert "item 2" in str(info.value) and "not sent" in str(info.value)
        assert (await c.stats_tube(tube))["total-jobs"] == 2
    arun(body)


# -- batch priorities --------------------------------------------------------------

def test_release_many_and_bury_many_keep_priorities(arun):
    async def body(connect):
        c = await connect()
        ids = [await c.put("a", priority=7), await c.put("b", priority=9)]
        jobs = await c.reserve_many(2, timeout=1)
        assert await c.release_many(jobs) == [None, None]
        assert [(await c.stats_job(j))["pri"] for j in ids] == [7, 9]
        assert not any(j.reserved for j in jobs)
        jobs = await c.reserve_many(2, timeout=1)
        assert await c.bury_many([j.jid for j in jobs]) == [None, None]
        assert [(await c.stats_job(j))["pri"] for j in ids] == [7, 9]
        await c.kick(2)
        jobs = await c.reserve_many(2, timeout=1)
        await c.release_many(jobs, priority=3)
        assert [(await c.stats_job(j))["pri"] for j in ids] == [3, 3]
    arun(body)


def test_release_many_unknown_id_fails_in_place(arun):
    async def body(connect):
        c = await connect()
        jid = await c.put("a", priority=4)
        job = await c.reserve(timeout=1)
        with pytest.raises(BatchError) as info:
            await c.release_many([job, 2 ** 40])
        assert info.value.results[0] is None
        assert isinstance(info.value.results[1], NotFound)
        assert (await c.stats_job(jid))["pri"] == 4
    arun(body)


# -- numbers: floats truncated, bools refused (the core's check_uint) -------------

def test_floats_truncated_bools_refused(arun, tube):
    async def body(connect):
        c = await connect()
        jid = await c.put("f", priority=5.7, delay=0.0, ttr=30.9)
        stats = await c.stats_job(jid)
        assert (stats["pri"], stats["ttr"]) == (5, 30)
        for call in (lambda: c.put("b", priority=True), lambda: c.put("b", ttr=False),
                     lambda: c.put_many(["b"], delay=True),
                     lambda: c.release_many([jid], priority=True),
                     lambda: c.bury_many([jid], priority=False), lambda: c.delete(True),
                     lambda: c.kick(True)):
            with pytest.raises(TypeError, match="bool"):
                await call()
        job = await c.reserve(timeout=1)
        await c.release(job.jid, priority=2.9, delay=0.5)
        assert (await c.stats_job(jid))["pri"] == 2
        assert (await c.stats_tube(tube))["total-jobs"] == 1     # the refused ones never went out
    arun(body)


# -- an idle connection after a server restart ------------------------------------

class Restartable:
    """A beanstalkd of the test's own, restartable on the same port (by PID)."""

    def __init__(self):
        self.port = free_port()
        self.args = ["-l", "127.0.0.1", "-p", str(self.port)]
        self.proc = start_beanstalkd(self.args)

    def restart(self):
        stop_beanstalkd(self.proc)
        self.proc = start_beanstalkd(self.args)

    def stop(self):
        stop_beanstalkd(self.proc)


@pytest.fixture
def restartable():
    srv = Restartable()
    yield srv
    srv.stop()


def test_idle_put_after_restart_goes_out_once(arun, restartable):
    async def body(connect):
        p = await connect(port=restartable.port, tube="idle", auto_reconnect=True)
        await p.put("before")
        # the loop keeps running while the server restarts, as in a real program
        await asyncio.get_running_loop().run_in_executor(None, restartable.restart)
        await asyncio.sleep(0.05)
        assert p.broken is not None               # connection_lost was noticed while idle
        jid = await p.put("after")                # no "may or may not": sent once, anew
        assert (await p.stats_tube("idle"))["total-jobs"] == 1
        assert (await p.peek(jid)).body == "after"
        assert await p.watching() == ["idle"]
    arun(body)


def test_idle_batch_after_restart(arun, restartable):
    async def body(connect):
        p = await connect(port=restartable.port, tube="idle", auto_reconnect=True)
        await asyncio.get_running_loop().run_in_executor(None, restartable.restart)
        await asyncio.sleep(0.05)
        assert len(await p.put_many(["a", "b"])) == 2
        assert (await p.stats_tube("idle"))["total-jobs"] == 2
    arun(body)


def test_failed_reconnect_is_connection_broken(arun, restartable):
    async def body(connect):
        p = await connect(port=restartable.port, tube=None, auto_reconnect=True)
        await asyncio.get_running_loop().run_in_executor(None, stop_beanstalkd,
                                                         restartable.proc)
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectionBroken, match="reconnect failed") as info:
            await p.put("x")
        assert "may or may not" not in str(info.value)
        restartable.proc = start_beanstalkd(restartable.args)
        assert isinstance(await p.put("y"), int)
    arun(body)
