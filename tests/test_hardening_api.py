"""Hardening of the sync front end (issue 16): bounded reconnects, timeout
values, close()/connect(), put_many partway, idle restart, batch priorities,
the PUREPYTHON flag. Both cores; real beanstalkd unless a fake peer is needed."""

import math
import os
import subprocess
import sys
import threading
import time

import pytest

import beanstalkc_fast.connection as connection_module
from beanstalkc_fast import BatchError, ConnectionBroken, NotFound, SocketError
from conftest import free_port, read_until, start_beanstalkd, stop_beanstalkd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


class Restartable:
    """A beanstalkd of the test's own, restartable on the same port."""

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


# -- 1: bounded auto_reconnect ---------------------------------------------------

def test_auto_reconnect_against_accept_and_close_peer_is_bounded(make_conn, fake_server):
    accepted = []
    lock = threading.Lock()

    def accept_and_close(sock, srv):
        with lock:
            accepted.append(1)

    srv = fake_server(accept_and_close)
    c = make_conn(srv.port, auto_reconnect=True)
    with pytest.raises(SocketError) as info:
        c.stats()                     # lost reply: repeated once on a new connection
    assert not isinstance(info.value, RecursionError)
    assert _wait_for(lambda: len(accepted) >= 2)
    time.sleep(0.2)
    assert len(accepted) == 2         # the first connection and one reconnect
    with pytest.raises(SocketError, match="may or may not"):
        c.put("x")                    # a put is never repeated
    assert _wait_for(lambda: len(accepted) >= 3)
    time.sleep(0.2)
    assert len(accepted) == 3


# -- 3: timeout values -------------------------------------------------------------

BAD_TIMEOUTS = [-1, 0, math.nan, math.inf, 1e300, "5", True, -0.5]


@pytest.mark.parametrize("name", ["socket_timeout", "connect_timeout", "keepalive_idle",
                                  "keepalive_interval", "keepalive_count"])
@pytest.mark.parametrize("value", BAD_TIMEOUTS, ids=repr)
def test_bad_timeout_values_refused_before_connecting(make_conn, name, value):
    # nothing listens on the port: a ValueError (not SocketError) shows no
    # connection was attempted
    with pytest.raises(ValueError, match=name):
        make_conn(free_port(), **{name: value})


@pytest.mark.parametrize("value", [None, 0.5, 1e-9, 3, 86400])
def test_good_timeout_values_accepted(make_conn, server, value):
    c = make_conn(server.port, socket_timeout=value, connect_timeout=value)
    assert c.socket_timeout == (None if value is None else float(value))
    assert c.connect_timeout == c.socket_timeout


def test_keepalive_none_leaves_the_os_default(make_conn, server):
    c = make_conn(server.port, keepalive_idle=None, keepalive_interval=1.5)
    assert c.keepalive == (None, 2, 3)     # whole seconds, rounded up
    assert c.using() == "default"


def _silent(sock, srv):
    read_until(sock)
    srv.stop.wait(10)


def test_socket_timeout_assigned_later_takes_effect(make_conn, fake_server):
    srv = fake_server(_silent)
    c = make_conn(srv.port, socket_timeout=60)
    c.socket_timeout = 0.3
    start = time.monotonic()
    with pytest.raises(SocketError):
        c.stats()
    assert time.monotonic() - start < 30   # not the 60 s it was built with


def test_socket_timeout_assignment_validated(make_conn, server):
    c = make_conn(server.port, socket_timeout=5)
    for bad in (-1, 0, math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match="socket_timeout"):
            c.socket_timeout = bad
    assert c.socket_timeout == 5
    c.socket_timeout = None
    assert c.socket_timeout is None and c.using() == "default"


# -- 6: close() and connecting again ---------------------------------------------

def test_close_then_connect_restores_tubes(conn, tube):
    conn.close()
    conn.connect()
    assert conn.using() == tube
    assert conn.watching() == [tube]
    jid = conn.put("after close")
    assert conn.stats_job(jid)["tube"] == tube


def test_closed_connection_stays_closed_under_auto_reconnect(conn_factory, tube):
    c = conn_factory(tube, auto_reconnect=True)
    c.close()
    for call in (lambda: c.put("x"), c.stats, lambda: c.reserve(timeout=0),
                 lambda: c.put_many(["a"])):
        with pytest.raises(ConnectionBroken, match="close"):
            call()
    c.connect()
    assert c.using() == tube
    c.close()
    c.reconnect()
    assert c.watching() == [tube]


def test_closed_connection_without_auto_reconnect(conn):
    conn.close()
    with pytest.raises(ConnectionBroken, match="close"):
        conn.stats()


# -- 8: put_many with a bad body partway -----------------------------------------

def test_put_many_bad_body_partway(conn, tube):
    bodies = [b"ok"] * 700 + [1] + [b"never"] * 10
    with pytest.raises(TypeError) as info:
        conn.put_many(bodies)
    exc = info.value
    assert len(exc.results) == 700 and all(isinstance(r, int) for r in exc.results)
    assert "700" in str(exc) and "not sent" in str(exc)
    assert conn.stats_tube(tube)["total-jobs"] == 700
    assert conn.using() == tube                # the connection stays usable


def test_put_many_iterable_raising_partway(conn, tube):
    def bodies():
        yield "a"
        yield "b"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed") as info:
        conn.put_many(bodies())
    assert len(info.value.results) == 2
    assert "not sent" in str(info.value)
    assert conn.stats_tube(tube)["total-jobs"] == 2


# -- 9: idle producer after a server restart -------------------------------------

def test_idle_put_after_restart_goes_out_once(make_conn, restartable, monkeypatch):
    monkeypatch.setattr(connection_module, "IDLE_CHECK_AFTER", 0.0)
    p = make_conn(restartable.port, auto_reconnect=True)
    p.use("idle")
    p.put("before")
    restartable.restart()
    jid = p.put("after")                      # no "may or may not": sent once, on a new connection
    assert p.stats_tube("idle")["total-jobs"] == 1
    assert p.peek(jid).body == "after"


def test_idle_batch_after_restart(make_conn, restartable, monkeypatch):
    monkeypatch.setattr(connection_module, "IDLE_CHECK_AFTER", 0.0)
    p = make_conn(restartable.port, auto_reconnect=True)
    p.use("idle")
    restartable.restart()
    assert len(p.put_many(["a", "b"])) == 2
    assert p.stats_tube("idle")["total-jobs"] == 2


def test_failed_reconnect_is_connection_broken(make_conn, restartable, monkeypatch):
    monkeypatch.setattr(connection_module, "IDLE_CHECK_AFTER", 0.0)
    p = make_conn(restartable.port, auto_reconnect=True)
    stop_beanstalkd(restartable.proc)
    with pytest.raises(ConnectionBroken) as info:
        p.put("x")
    assert "may or may not" not in str(info.value)
    restartable.proc = start_beanstalkd(restartable.args)
    assert isinstance(p.put("y"), int)


def test_busy_connection_is_not_checked(make_conn, server, monkeypatch):
    calls = []
    monkeypatch.setattr(connection_module, "_peer_gone", lambda sock: calls.append(1) or False)
    c = make_conn(server.port, auto_reconnect=True)
    for _ in range(5):
        c.using()
    assert calls == []


# -- 10: batch priorities and the PUREPYTHON flag ---------------------------------

def test_release_many_and_bury_many_keep_priorities(conn):
    ids = [conn.put("a", priority=7), conn.put("b", priority=9)]
    jobs = conn.reserve_many(2, timeout=1)
    assert conn.release_many(jobs) == [None, None]
    assert [conn.stats_job(j)["pri"] for j in ids] == [7, 9]
    jobs = conn.reserve_many(2, timeout=1)
    assert conn.bury_many(jobs) == [None, None]
    assert [conn.stats_job(j)["pri"] for j in ids] == [7, 9]
    conn.kick(2)
    jobs = conn.reserve_many(2, timeout=1)
    conn.release_many(jobs, priority=3)
    assert [conn.stats_job(j)["pri"] for j in ids] == [3, 3]


def test_release_many_unknown_id_fails_in_place(conn):
    jid = conn.put("a", priority=4)
    job = conn.reserve(timeout=1)
    with pytest.raises(BatchError) as info:
        conn.release_many([job, 2 ** 40])
    assert info.value.results[0] is None
    assert isinstance(info.value.results[1], NotFound)
    assert conn.stats_job(jid)["pri"] == 4


def _implementation(value):
    env = dict(os.environ, BEANSTALKC_FAST_PUREPYTHON=value)
    env.pop("BEANSTALKC_FAST_REQUIRE_EXTENSION", None)
    out = subprocess.run([sys.executable, "-c",
                          "import beanstalkc_fast as b; print(b.IMPLEMENTATION)"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.parametrize("value", ["0", "false", "no", "", " False "])
def test_purepython_flag_off_values(value):
    try:
        import beanstalkc_fast._protocol  # noqa: F401
    except ImportError:
        pytest.skip("no Cython core to tell the values apart")
    assert _implementation(value) == "cython"


def test_purepython_flag_on():
    assert _implementation("1") == "python"
