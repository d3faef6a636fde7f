"""Under gevent and eventlet monkey patching, on both cores (issue 9, item 1).

Monkey patching is process-wide, so every case runs a child process
(GREEN_CHILD below) that patches first, then imports beanstalkc_fast with the
chosen core, starts its own beanstalkd (stopped by PID) and runs the checks:
puts, a reserve blocked in one greenlet while another puts, reserve and socket
timeouts, batches, one connection used by several greenlets at once, a greenlet
killed inside reserve(), reconnect after a server restart, a cut connection.
"""

import importlib.util
import os
import shutil
import socket
import ssl
import subprocess
import sys

import pytest

from beanstalkc_fast import SocketError
from conftest import load_core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GREEN_CHILD = r'''
import sys
lib, want = sys.argv[1], sys.argv[2]
if lib == "gevent":
    from gevent import monkey
    monkey.patch_all()
    import gevent
    spawn, sleep = gevent.spawn, gevent.sleep
    def wait(g):
        return g.get()
else:
    import eventlet
    eventlet.monkey_patch()
    spawn, sleep = eventlet.spawn, eventlet.sleep
    def wait(g):
        return g.wait()

import os, shutil, socket, subprocess, time
import beanstalkc_fast
from beanstalkc_fast import ConcurrentUseError, Connection, ConnectionBroken, SocketError

assert beanstalkc_fast.IMPLEMENTATION == want, beanstalkc_fast.IMPLEMENTATION
checks = []


def check(name, ok):
    if not ok:
        raise AssertionError(name)
    checks.append(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port):
    proc = subprocess.Popen([shutil.which("beanstalkd"), "-l", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "beanstalkd did not start"
            sleep(0.025)


def stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, 15)
        proc.wait()


port = free_port()
server = start(port)
try:
    producer = Connection("127.0.0.1", port, socket_timeout=10)
    consumer = Connection("127.0.0.1", port, socket_timeout=10)
    producer.use("green")
    consumer.watch("green")
    consumer.ignore("default")

    # puts
    jids = [producer.put("job %d" % i) for i in range(50)]
    check("puts", jids == sorted(jids) and len(set(jids)) == 50)
    for jid in jids:
        job = consumer.reserve(timeout=1)
        check("reserve %d" % jid, job.jid == jid)
        job.delete()

    # a reserve blocked in one greenlet while another puts; the hub keeps running
    ticks = []

    def ticker():
        for _ in range(10):
            sleep(0.02)
            ticks.append(1)

    t = spawn(ticker)
    g = spawn(consumer.reserve, 3)
    sleep(0.3)
    jid = producer.put("late")
    job = wait(g)
    wait(t)
    check("blocked reserve gets the job", job is not None and job.jid == jid and job.body == "late")
    check("other greenlets ran meanwhile", len(ticks) == 10)
    job.delete()

    # reserve timeouts
    check("reserve(timeout=0)", consumer.reserve(timeout=0) is None)
    check("reserve(timeout=1.0)", consumer.reserve(timeout=1.0) is None)

    # batches
    ids = producer.put_many(["b%d" % i for i in range(300)])
    jobs = consumer.reserve_many(300, timeout=1)
    check("put_many/reserve_many", [j.jid for j in jobs] == ids)
    check("delete_many", consumer.delete_many(jobs) == [None] * 300)

    # the socket timeout holds against a silent peer, and only that greenlet waits
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []

    def serve(mode):
        sock, _ = listener.accept()
        held.append(sock)
        data = sock.recv(1024)
        if mode == "cut":
            sock.close()

    s = spawn(serve, "silent")
    stalled = Connection("127.0.0.1", listener.getsockname()[1], socket_timeout=0.5)
    started = time.monotonic()
    try:
        stalled.stats()
        check("silent peer times out", False)
    except SocketError as exc:
        check("silent peer times out", "timed out" in str(exc))
    check("timeout not instant", time.monotonic() - started >= 0.4)
    wait(s)

    # a cut connection
    s = spawn(serve, "cut")
    cut = Connection("127.0.0.1", listener.getsockname()[1], socket_timeout=5)
    try:
        cut.stats()
        check("cut connection", False)
    except SocketError as exc:
        check("cut connection", "closed" in str(exc) or "reset" in str(exc))
    wait(s)

    # one connection used by greenlets at the same time (a web app's module-level
    # connection under a greenlet server): those finding it busy get
    # ConcurrentUseError with nothing sent, and every reply reaches its caller
    outcomes = []

    def shared_put(body):
        try:
            outcomes.append((producer.put(body), body))
        except ConcurrentUseError:
            outcomes.append((None, body))

    for g in [spawn(shared_put, "shared %d" % i) for i in range(5)]:
        wait(g)
    done = {(jid, body) for jid, body in outcomes if jid is not None}
    check("shared connection: one put at least", len(outcomes) == 5 and len(done) >= 1)
    stored = set()
    while True:
        job = consumer.reserve(timeout=0)
        if job is None:
            break
        stored.add((job.jid, job.body))
        job.delete()
    check("shared connection: stored exactly the accepted puts", stored == done)

    # a greenlet killed while blocked in reserve() (a worker pool stopping): the
    # connection is left broken, never out of step, and reconnect() restores it
    g = spawn(consumer.reserve)
    sleep(0.2)
    g.kill()
    try:
        consumer.using()
        check("killed reserve breaks the connection", False)
    except ConnectionBroken as exc:
        check("killed reserve breaks the connection", "interrupted" in str(exc))
    consumer.reconnect()
    check("reconnect after kill keeps the watch list", consumer.watching() == ["green"])
    jid = producer.put("after kill")
    job = consumer.reserve(timeout=1)
    check("reserve after kill and reconnect", job is not None and job.jid == jid)
    job.delete()

    # reconnect after a server restart
    auto = Connection("127.0.0.1", port, socket_timeout=5, auto_reconnect=True)
    auto.use("green")
    stop(server)
    server = start(port)
    check("stats after restart", auto.stats()["current-connections"] >= 1)
    check("tube restored", auto.using() == "green")
    jid = auto.put("after restart")
    check("put after restart", auto.peek(jid).body == "after restart")
    producer.reconnect()
    check("reconnect()", producer.using() == "green")
finally:
    stop(server)
print("OK %d" % len(checks))
'''


@pytest.mark.server                            # the child starts its own beanstalkd
@pytest.mark.parametrize("core_name", ["cython", "python"])
@pytest.mark.parametrize("lib", ["gevent", "eventlet"])
def test_green(lib, core_name):
    if importlib.util.find_spec(lib) is None:
        pytest.skip("%s not installed" % lib)
    if shutil.which("beanstalkd") is None:
        pytest.skip("beanstalkd not on PATH")
    load_core(core_name)                       # skip (or fail) without the extension
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
    if core_name == "python":
        env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
    proc = subprocess.run([sys.executable, "-c", GREEN_CHILD, lib, core_name], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith("OK "), proc.stdout
    assert int(proc.stdout.split()[-1]) >= 60


# -- which sockets get direct-descriptor IO (Cython core) -------------------------------

def test_direct_io_only_for_the_plain_stdlib_socket():
    cy = load_core("cython")

    class MySocket(socket.socket):
        pass

    plain = socket.socket()
    sub = MySocket()
    tls = ssl.create_default_context().wrap_socket(
        socket.socket(), server_hostname="example.org", do_handshake_on_connect=False)
    try:
        assert cy._plain_socket(plain)
        assert not cy._plain_socket(sub)
        assert not cy._plain_socket(tls)
    finally:
        for s in (plain, sub, tls):
            s.close()


def test_socket_object_path_keeps_timeouts_and_replies(core):
    """A socket subclass goes through its methods (Python-level timeouts) with
    the same replies and errors as the descriptor path."""
    class MySocket(socket.socket):
        pass

    a, peer = socket.socketpair()
    sock = MySocket(a.family, a.type, fileno=a.detach())
    c = core.Core(sock, 0.3)
    peer.sendall(b"USING a\r\n")
    assert c.request(b"use a\r\n") == ("USING", "a", None)
    assert peer.recv(100) == b"use a\r\n"
    with pytest.raises(SocketError, match="timed out"):
        c.request(b"stats\r\n")
    peer.close()
