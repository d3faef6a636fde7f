"""The cores under signals, odd timeouts, SIGPIPE, close() from another
thread and interrupted batches (issue 16, items 2-5 and 7). Both cores."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from beanstalkc_fast import ConnectionBroken, SocketError
from conftest import alarm, ctrl_c

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def silent(sock, srv):
    """A peer that reads everything and never answers."""
    sock.settimeout(0.2)
    while not srv.stop.is_set():
        try:
            if not sock.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def Watchdog(seconds):
    """SIGALRM after ``seconds``: a call that should have ended raises instead of hanging."""
    def fire(signum, frame):
        raise AssertionError("still blocked after %s s" % seconds)
    return alarm(fire, seconds)


def wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- item 2: a read deadline holds across signals ---------------------------------------

def test_deadline_holds_under_periodic_signal(make_conn, fake_server):
    srv = fake_server(silent)
    conn = make_conn(srv.port, socket_timeout=1)
    ticks = []

    def tick(signum, frame):
        ticks.append(signum)
        if len(ticks) >= 30:              # ~9 s: give up instead of hanging the suite
            signal.setitimer(signal.ITIMER_REAL, 0)

    with alarm(tick, 0.3, 0.3):
        with pytest.raises(SocketError, match="timed out"):
            conn.stats()
    assert 1 <= len(ticks) < 10, "the deadline restarted after each signal"
    with pytest.raises(ConnectionBroken):
        conn.stats()


def test_ctrl_c_interrupts_and_frees_reservations(conn, conn_factory, tube):
    jid = conn.put("x")
    assert conn.reserve(timeout=0).jid == jid

    with alarm(ctrl_c, 0.2):
        with pytest.raises(KeyboardInterrupt):
            conn.reserve()
    with pytest.raises(ConnectionBroken, match="interrupted"):
        conn.stats()
    # the core closed its socket at once: the server gave the job back
    other = conn_factory(tube)
    assert wait_for(lambda: other.stats_tube(tube)["current-jobs-reserved"] == 0)
    assert other.reserve(timeout=0).jid == jid


def test_forever_wait_outlasts_the_wait_slices(conn, conn_factory, tube):
    # reserve() without a timeout waits in the kernel in slices of at most
    # 1 s (so signals are looked at): a job coming after a slice is still taken
    other = conn_factory(tube)
    timer = threading.Timer(1.3, lambda: other.put("late"))
    timer.start()
    try:
        with Watchdog(10):
            job = conn.reserve()
    finally:
        timer.join()
    assert job.body == "late"
    job.delete()


def test_signal_handled_by_another_thread_interrupts_a_forever_wait(core, conn):
    # The signal lands on a helper thread, so the main thread's receive is not
    # interrupted (EINTR): the same as a Ctrl-C arriving just before the
    # receive began. The wait must still notice it within a slice.
    def send_to_self():
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, ctrl_c)
    helper = threading.Thread(target=send_to_self)
    try:
        with Watchdog(10):
            helper.start()
            with pytest.raises(KeyboardInterrupt):
                conn.reserve()
    finally:
        helper.join()
        signal.signal(signal.SIGUSR1, old)
    with pytest.raises(ConnectionBroken, match="interrupted"):
        conn.stats()


# -- item 3: timeout values at the core ----------------------------------------------------

def _core_on_pair(core, timeout):
    a, b = socket.socketpair()
    return core.Core(a, timeout), b


@pytest.mark.parametrize("timeout", [5e-7, 1e-9, 0.0, -1.0], ids=repr)
def test_tiny_or_nonpositive_timeout_is_not_forever(core, timeout):
    c, peer = _core_on_pair(core, timeout)
    with Watchdog(5):
        with pytest.raises(SocketError, match="timed out"):
            c.request(b"stats\r\n")
    peer.close()


def test_huge_timeout_is_clamped(core):
    c, peer = _core_on_pair(core, 1e300)
    peer.sendall(b"USING a\r\n")
    assert c.request(b"use a\r\n") == ("USING", "a", None)
    c.close()
    peer.close()


def test_changed_timeout_applies_to_next_command(core):
    c, peer = _core_on_pair(core, 30.0)
    peer.sendall(b"USING a\r\n")
    assert c.request(b"use a\r\n")[0] == "USING"
    c.timeout = 0.2
    with Watchdog(5):
        with pytest.raises(SocketError, match="timed out"):
            c.request(b"stats\r\n")
    peer.close()


# -- item 4: no SIGPIPE death --------------------------------------------------------------

SIGPIPE_CHILD = r"""
import signal, socket, sys, time
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
import beanstalkc_fast
assert beanstalkc_fast.IMPLEMENTATION == sys.argv[1], beanstalkc_fast.IMPLEMENTATION
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4)
port = listener.getsockname()[1]
outcomes = []
# a large put to a peer that has gone away
conn = beanstalkc_fast.Connection("127.0.0.1", port, socket_timeout=5)
listener.accept()[0].close()
time.sleep(0.1)
try:
    conn.put(b"x" * (4 << 20))
except beanstalkc_fast.SocketError:
    outcomes.append("put: SocketError")
# close() (which sends quit) after the peer has reset the connection
conn = beanstalkc_fast.Connection("127.0.0.1", port, socket_timeout=5)
listener.accept()[0].close()
time.sleep(0.1)
conn._core.sock.send(b"x")           # draws the peer's RST
time.sleep(0.1)
conn.close()
outcomes.append("close: ok")
print(", ".join(outcomes))
"""


def test_no_sigpipe_at_default_action(core):
    name = "python" if core.__name__.endswith("_pyprotocol") else "cython"
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
    if name == "python":
        env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
    proc = subprocess.run([sys.executable, "-c", SIGPIPE_CHILD, name], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "put: SocketError, close: ok"


# -- item 5: close() from another thread -----------------------------------------------------

def test_close_from_another_thread_wakes_reserve(conn, conn_factory, tube):
    outcome = []

    def worker():
        try:
            outcome.append(conn.reserve())
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    watcher = conn_factory()
    t = threading.Thread(target=worker, daemon=True)
    t.start()
    assert wait_for(lambda: watcher.stats_tube(tube)["current-waiting"] == 1)
    conn.close()
    t.join(5)
    assert not t.is_alive(), "close() did not wake the blocked reserve"
    assert len(outcome) == 1 and isinstance(outcome[0], SocketError), outcome
    assert "close()" in str(outcome[0])
    # a job put afterwards goes to a new worker, not to the closed connection
    producer = conn_factory(tube)
    jids = [producer.put("job %d" % i) for i in range(20)]
    consumer = conn_factory(tube)
    assert [consumer.reserve(timeout=2).jid for _ in jids] == jids
    with pytest.raises(ConnectionBroken):
        conn.stats()


def test_close_from_another_thread_never_reads_a_reused_descriptor(make_conn, server, tube):
    """Over several rounds, a connection opened right after close() (which may
    get the same descriptor number) gets every reply of its own."""
    for _ in range(5):
        conn = make_conn(server.port)
        conn.watch(tube)
        errors = []

        def worker(conn=conn, errors=errors):
            try:
                conn.reserve()
            except SocketError as exc:
                errors.append(exc)

        t = threading.Thread(target=worker, daemon=True)
        t.start()
        time.sleep(0.05)
        conn.close()
        fresh = make_conn(server.port)
        fresh.use(tube)
        for _ in range(10):
            jid = fresh.put("x")
            assert fresh.peek(jid).jid == jid
        t.join(5)
        assert not t.is_alive() and len(errors) == 1
        fresh.watch(tube)
        while fresh.reserve(timeout=0) is not None:
            pass


# -- item 7: a broken core closes its socket at once -----------------------------------------

def test_interrupted_batch_releases_reservations(conn, conn_factory, tube):
    producer = conn_factory(tube)
    producer.put_many(["j%d" % i for i in range(600)])
    jobs = conn.reserve_many(600, timeout=1)
    assert len(jobs) == 600

    def bodies():
        yield from (b"x" for _ in range(700))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        conn.put_many(bodies())
    with pytest.raises(ConnectionBroken):
        conn.stats()
    assert wait_for(lambda: producer.stats_tube(tube)["current-jobs-reserved"] == 0)


# -- the two cores fail alike: same exception types, messages and broken state ----------------

def _tiny_timeout(core):
    c, peer = _core_on_pair(core, 1e-9)
    return c, peer, lambda: c.request(b"stats\r\n")


def _peer_gone(core):
    c, peer = _core_on_pair(core, 5.0)
    peer.close()
    return c, peer, lambda: c.request(b"put 0 0 1 70000\r\n" + b"x" * 70000 + b"\r\n")


def _peer_closes_after_command(core):
    c, peer = _core_on_pair(core, 5.0)
    peer.shutdown(socket.SHUT_WR)
    return c, peer, lambda: c.request(b"stats\r\n")


def _closed_while_in_use(core):
    c, peer = _core_on_pair(core, 5.0)
    threading.Timer(0.1, c.close).start()
    return c, peer, lambda: c.request(b"reserve\r\n", None)


def _used_after_close(core):
    c, peer = _core_on_pair(core, 5.0)
    c.close(quit=True)
    return c, peer, lambda: c.request(b"stats\r\n")


def _interrupted_batch(core):
    c, peer = _core_on_pair(core, 5.0)

    def commands():
        yield b"stats\r\n"
        raise KeyboardInterrupt

    return c, peer, lambda: c.pipeline(commands(), [])


@pytest.mark.parametrize("scenario", [_tiny_timeout, _peer_gone, _peer_closes_after_command,
                                      _closed_while_in_use, _used_after_close,
                                      _interrupted_batch], ids=lambda f: f.__name__[1:])
def test_cores_fail_alike(both_cores, scenario):
    outcomes = []
    for core in both_cores:
        c, peer, call = scenario(core)
        with Watchdog(5):
            try:
                call()
                outcome = ("ok",)
            except BaseException as exc:  # noqa: BLE001
                outcome = (type(exc), str(exc), c.broken)
        outcomes.append(outcome)
        c.close()
        peer.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] is not None and outcomes[0] != ("ok",)


def test_close_reason_and_quit(core):
    c, peer = _core_on_pair(core, 5.0)
    c.close(quit=True, reason="closed by close()")
    assert peer.recv(100) == b"quit\r\n"
    with pytest.raises(ConnectionBroken, match=r"broken \(closed by close\(\)\)"):
        c.request(b"stats\r\n")
    c.close(quit=True, reason="again")               # idempotent, sends nothing more
    assert c.broken == "closed by close()"
    assert peer.recv(100) == b""
    peer.close()
