"""Reconnect, server restart, binlog durability, threads and fork: both cores."""

import os
import signal
import threading
import time

import pytest

import beanstalkc_fast
from conftest import free_port, start_beanstalkd, stop_beanstalkd


class OwnServer:
    """A beanstalkd of this test's own, restartable on the same port."""

    def __init__(self, tmp_path, binlog=False):
        self.port = free_port()
        self.args = ["-l", "127.0.0.1", "-p", str(self.port)]
        if binlog:
            self.args += ["-b", str(tmp_path), "-f", "0"]
        self.proc = None
        self.start()

    def start(self):
        self.proc = start_beanstalkd(self.args)

    def kill(self, sig=signal.SIGKILL):
        stop_beanstalkd(self.proc, sig)

    def stop(self):
        stop_beanstalkd(self.proc)


@pytest.fixture
def own_server(tmp_path):
    srv = OwnServer(tmp_path)
    yield srv
    srv.stop()


@pytest.fixture
def binlog_server(tmp_path):
    srv = OwnServer(tmp_path, binlog=True)
    yield srv
    srv.stop()


def test_reconnect_restores_used_tube_and_watch_list(make_conn, own_server):
    c = make_conn(own_server.port)
    c.use("jobs-out")
    c.watch("a")
    c.watch("b")
    c.ignore("default")
    c.reconnect()
    assert c.using() == "jobs-out"
    assert sorted(c.watching()) == ["a", "b"]


def test_consumer_loop_survives_server_restart(make_conn, own_server):
    producer = make_conn(own_server.port)
    consumer = make_conn(own_server.port)
    producer.use("work")
    consumer.watch("work")
    consumer.ignore("default")
    producer.put("before")
    assert consumer.reserve(timeout=1).body == "before"
    own_server.kill()
    own_server.start()
    got = []
    for _ in range(20):
        try:
            job = consumer.reserve(timeout=0)
        except beanstalkc_fast.SocketError:
            consumer.reconnect()
            fresh = make_conn(own_server.port)
            fresh.use("work")
            fresh.put("after")
            continue
        if job is not None:
            got.append(job.body)
            job.delete()
            break
    assert got == ["after"]
    assert consumer.watching() == ["work"]


def test_put_on_dead_server_raises_socket_error_then_broken(make_conn, own_server):
    c = make_conn(own_server.port)
    c.put("x")
    own_server.kill()
    with pytest.raises(beanstalkc_fast.SocketError):
        for _ in range(3):        # the first send may still be buffered
            c.put("y")
    with pytest.raises(beanstalkc_fast.SocketError, match="broken"):
        c.put("z")


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
def test_every_acknowledged_put_survives_sigkill(make_conn, binlog_server, batched):
    c = make_conn(binlog_server.port)
    c.use("durable")
    bodies = ["job-%d" % i for i in range(3000)]
    if batched:
        ids = c.put_many(bodies)
    else:
        ids = [c.put(b) for b in bodies]
    binlog_server.kill()
    binlog_server.start()
    c2 = make_conn(binlog_server.port)
    for jid, body in zip(ids, bodies):
        job = c2.peek(jid)
        assert job is not None and job.body == body


def test_concurrent_use_from_two_threads_is_refused(conn, conn_factory, tube):
    # A reserve blocks in the first thread; the second must not interleave.
    started = threading.Event()
    outcome = []

    def blocked():
        started.set()
        outcome.append(conn.reserve(timeout=10))

    t = threading.Thread(target=blocked)
    t.start()
    started.wait()
    time.sleep(0.3)   # let the reserve reach the server
    with pytest.raises(beanstalkc_fast.ConcurrentUseError):
        conn.put("from another thread")
    # the refused put sent nothing: the reserve gets the next job put, not "from another thread"
    conn_factory(tube).put("for the reserve")
    t.join(10)
    assert [j.body for j in outcome] == ["for the reserve"]
    outcome[0].delete()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_connection_refuses_use_in_forked_child(conn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child
        try:
            try:
                conn.put("child")
                msg = b"used-parent-socket"
            except beanstalkc_fast.SocketError as exc:
                msg = b"refused" if b"fork" in str(exc).encode() else b"other"
            conn.reconnect()
            conn.put("child-after-reconnect")
            os.write(w, msg)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 100) == b"refused"
    os.close(r)
    assert conn.put("parent") > 0


def test_failed_reconnect_keeps_the_wanted_tubes(make_conn, own_server):
    c = make_conn(own_server.port)
    c.use("out")
    c.watch("in")
    c.ignore("default")
    own_server.kill()
    with pytest.raises(beanstalkc_fast.SocketError):
        c.reconnect()
    own_server.start()
    c.reconnect()
    assert c.using() == "out"
    assert c.watching() == ["in"]


def test_lost_put_reply_says_the_job_may_exist(make_conn, own_server):
    c = make_conn(own_server.port)
    c.put("x")
    own_server.kill()
    with pytest.raises(beanstalkc_fast.SocketError, match="may or may not have been inserted"):
        for _ in range(3):        # the first send may still be buffered
            c.put("y")
    with pytest.raises(beanstalkc_fast.ConnectionBroken):
        c.put("z")               # nothing sent: no "may or may not" here
    with pytest.raises(beanstalkc_fast.ConnectionBroken):
        c.put_many(["z"])


def test_auto_reconnect_consumer_loop_survives_restart(make_conn, own_server):
    consumer = make_conn(own_server.port, auto_reconnect=True)
    consumer.watch("work")
    consumer.ignore("default")
    consumer.use("elsewhere")
    own_server.kill()
    own_server.start()
    producer = make_conn(own_server.port)
    producer.use("work")
    producer.put("after restart")
    job = consumer.reserve(timeout=1)    # lost reply: reconnected and repeated
    assert job is not None and job.body == "after restart"
    job.delete()
    assert consumer.watching() == ["work"]
    assert consumer.using() == "elsewhere"


def test_auto_reconnect_never_repeats_a_put(make_conn, own_server):
    c = make_conn(own_server.port, auto_reconnect=True)
    c.use("once")
    c.put("first")
    own_server.kill()
    own_server.start()
    with pytest.raises(beanstalkc_fast.SocketError, match="may or may not have been inserted"):
        c.put("lost reply")
    # the next call reconnects first (nothing of it was sent before) and restores the tube
    jid = c.put("second")
    assert c.using() == "once"
    assert c.stats_tube("once")["current-jobs-ready"] == 1
    assert c.peek(jid).body == "second"


def test_auto_reconnect_in_forked_child(make_conn, own_server):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork()")
    c = make_conn(own_server.port, auto_reconnect=True)
    c.use("forked")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: must get a socket of its own, with the parent's tube
        try:
            jid = c.put("from child")
            os.write(w, b"%d %s" % (jid, c.using().encode()))
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    jid, tube = os.read(r, 100).split()
    os.close(r)
    assert tube == b"forked"
    assert c.peek(int(jid)).body == "from child"
    assert c.put("from parent") > int(jid)


def test_blocked_reserve_releases_the_gil(conn, conn_factory, tube):
    # Another thread must be able to run Python code (and put the job the
    # reserve is waiting for) while this thread is blocked in the core.
    entering = threading.Event()

    def producer():
        entering.wait()
        time.sleep(0.2)
        sum(range(100000))                    # needs the GIL
        conn_factory(tube).put("woke you")

    t = threading.Thread(target=producer)
    t.start()
    entering.set()
    job = conn.reserve(timeout=30)
    t.join()
    assert job is not None and job.body == "woke you"


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_ctrl_c_interrupts_a_blocked_reserve(conn):
    # SIGINT every 0.3 s until the reserve is interrupted: one that lands
    # while the thread is between its last Python bytecode and the blocking
    # recv (likely on a loaded machine) is only seen when recv returns. The
    # handler raises KeyboardInterrupt once, like Python's, and swallows the rest.
    main = threading.get_ident()
    raised = []
    stop = threading.Event()

    def ctrl_c(signum, frame):
        if not raised:
            raised.append(signum)
            raise KeyboardInterrupt

    def interrupter():
        while not stop.wait(0.3):
            signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, ctrl_c)
    t = threading.Thread(target=interrupter, daemon=True)
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            conn.reserve()                    # no timeout: only the signal ends it
    finally:
        stop.set()
        t.join()
        signal.signal(signal.SIGINT, previous)
    assert raised == [signal.SIGINT]
    with pytest.raises(beanstalkc_fast.ConnectionBroken, match="interrupted"):
        conn.reserve(timeout=0)
    conn.reconnect()
    assert conn.reserve(timeout=0) is None
