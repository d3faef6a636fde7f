"""Dead peers: a peer that vanishes without a FIN must end in SocketError.

Two ways to make the peer vanish, both against both cores:

* network namespaces: beanstalkd runs inside a namespace of its own, reached
  over a veth pair; taking the namespace's end of the pair down makes the
  server host silently disappear (no FIN, no RST: segments are dropped). This
  covers TCP keepalive, the only thing that can end a ``reserve()`` without a
  timeout, and the read deadline of ordinary commands. Needs root and iproute2.
* a user-space proxy between the client and the conftest beanstalkd that stops
  forwarding on command, keeping both sockets open: the read deadlines alone.
"""

import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import beanstalkc_fast
from conftest import one_core, unique_tube

SocketError = beanstalkc_fast.SocketError


def assert_broken(c):
    """The connection refuses further use."""
    with pytest.raises(SocketError):
        c.using()
    with pytest.raises(SocketError):
        c.stats()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for %s" % what)
        time.sleep(0.05)


# -- a beanstalkd inside a network namespace ---------------------------------------

def _ip_exe():
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.path.exists(p)), None)


def _run(*args):
    return subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=30, check=False)


def _pick_subnet(ip):
    """A /30 of 10.213.0.0/16 derived from our pid, not in use on this host."""
    used = _run(ip, "-4", "-o", "addr").stdout.decode() + _run(ip, "-4", "route").stdout.decode()
    n = os.getpid() % 16384
    for i in range(16384):
        k = (n + i) % 16384
        net = "10.213.%d.%d" % (k // 64, (k % 64) * 4)
        prefix = net.rsplit(".", 1)[0] + "."
        base = (k % 64) * 4
        addrs = [prefix + str(base + j) for j in range(4)]
        if not any((a + "/") in used or (a + " ") in used for a in addrs):
            return addrs[1], addrs[2]
    pytest.skip("no free 10.213.x.y/30 subnet")


class NetnsServer:
    """beanstalkd on ``peer_addr`` inside namespace ``ns``, via veth ``host_dev``/``peer_dev``."""

    def __init__(self, ip, exe):
        pid = os.getpid()
        self.ip = ip
        self.ns = "bsc-deadpeer-%d" % pid
        self.host_dev = "bdp%dh" % pid          # <= 15 characters
        self.peer_dev = "bdp%dp" % pid
        self.host_addr, self.peer_addr = _pick_subnet(ip)
        self.port = 11300
        self.proc = None
        self.server_pid = None
        self.ns_made = self.veth_made = False
        self.exe = exe

    def ns_ip(self, *args):
        return _run(self.ip, "netns", "exec", self.ns, self.ip, *args)

    def setup(self):
        r = _run(self.ip, "netns", "add", self.ns)
        if r.returncode != 0:
            pytest.skip("cannot create a network namespace: %s" % r.stdout.decode().strip())
        self.ns_made = True
        r = _run(self.ip, "link", "add", self.host_dev, "type", "veth",
                 "peer", "name", self.peer_dev, "netns", self.ns)
        if r.returncode != 0:
            pytest.skip("cannot create a veth pair: %s" % r.stdout.decode().strip())
        self.veth_made = True
        for r in (_run(self.ip, "addr", "add", self.host_addr + "/30", "dev", self.host_dev),
                  _run(self.ip, "link", "set", self.host_dev, "up"),
                  self.ns_ip("addr", "add", self.peer_addr + "/30", "dev", self.peer_dev),
                  self.ns_ip("link", "set", self.peer_dev, "up"),
                  self.ns_ip("link", "set", "lo", "up")):
            if r.returncode != 0:
                pytest.skip("cannot configure the veth pair: %s" % r.stdout.decode().strip())
        # ``ip netns exec`` execs the command: proc.pid is beanstalkd's own pid.
        self.proc = subprocess.Popen(
            [self.ip, "netns", "exec", self.ns, self.exe, "-l", self.peer_addr,
             "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_reachable(10)
        with socket.create_connection((self.peer_addr, self.port), 2) as s:
            s.sendall(b"stats\r\n")
            data = b""
            while b"\npid: " not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.server_pid = int(data.split(b"\npid: ")[1].split(b"\n")[0])

    def reachable(self):
        try:
            socket.create_connection((self.peer_addr, self.port), 0.5).close()
            return True
        except OSError:
            return False

    def wait_reachable(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.reachable():
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail("beanstalkd in the namespace exited (%s)" % self.proc.returncode)
            if time.monotonic() > deadline:
                pytest.fail("beanstalkd in namespace %s not reachable" % self.ns)
            time.sleep(0.05)

    def vanish(self):
        """The server host disappears: its link goes down, packets are dropped
        silently (no FIN, no RST, no ICMP from the peer)."""
        r = self.ns_ip("link", "set", self.peer_dev, "down")
        assert r.returncode == 0, r.stdout

    def restore(self):
        r = self.ns_ip("link", "set", self.peer_dev, "up")
        assert r.returncode == 0, r.stdout
        self.wait_reachable(20)

    def teardown(self):
        for pid in {p for p in (self.proc.pid if self.proc else None, self.server_pid) if p}:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.veth_made:   # deleting one end deletes both
            _run(self.ip, "link", "del", self.host_dev)
        if self.ns_made:
            _run(self.ip, "netns", "del", self.ns)


@pytest.fixture(scope="module")
def netns_server():
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    ip = _ip_exe()
    if ip is None:
        pytest.skip("iproute2 (ip) not found")
    exe = shutil.which("beanstalkd")
    if exe is None:
        pytest.skip("beanstalkd not on PATH")
    srv = NetnsServer(ip, exe)
    try:
        srv.setup()
        yield srv
    finally:
        srv.teardown()


@pytest.fixture
def peer(netns_server):
    """The namespaced server, reachable now and again after the test."""
    if not netns_server.reachable():
        netns_server.restore()
    yield netns_server
    netns_server.restore()


def wait_until_waiting(srv, tube, make_conn):
    """Block until the server has one client waiting in a reserve on ``tube``."""
    monitor = make_conn(srv.port, host=srv.peer_addr, socket_timeout=5)
    try:
        wait_for(lambda: monitor.stats_tube(tube)["current-waiting"] >= 1, 20,
                 "the reserve to reach the server")
    finally:
        monitor.close()


def unacked_bytes(sock):
    """Bytes of ``sock``'s send queue not yet acknowledged by the peer (Linux
    SIOCOUTQ), or None where that cannot be asked."""
    try:
        import fcntl
        import termios
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    except (ImportError, AttributeError, OSError):
        return None
    return struct.unpack("i", raw)[0]


def wait_acked(sock):
    """Until the peer has ACKed all we sent (it delays that ACK up to ~200 ms)."""
    if unacked_bytes(sock) is None:
        time.sleep(1)
    else:
        wait_for(lambda: unacked_bytes(sock) == 0, 20, "the peer to ACK the command")


def start_reserve(c):
    """reserve() without a timeout in a thread; (thread, outcome list)."""
    outcome = []

    def blocked():
        try:
            outcome.append(c.reserve())
        except BaseException as exc:   # recorded, asserted by the caller
            outcome.append(exc)

    t = threading.Thread(target=blocked, daemon=True)
    t.start()
    return t, outcome


def keepalive_conn(peer, make_conn, tube):
    c = make_conn(peer.port, host=peer.peer_addr, socket_timeout=2,
                  keepalive_idle=1, keepalive_interval=1, keepalive_count=2)
    c.watch(tube)
    c.ignore("default")
    return c


def test_reserve_without_timeout_ends_by_keepalive(peer, make_conn):
    # No read deadline applies to reserve() without a timeout: only TCP
    # keepalive can tell that the server host is gone. The reserve has reached
    # the server and been ACKed, so the connection is idle when the host goes.
    tube = unique_tube()
    c = keepalive_conn(peer, make_conn, tube)
    t, outcome = start_reserve(c)
    wait_until_waiting(peer, tube, make_conn)
    wait_acked(c._core.sock)
    peer.vanish()
    t.join(60)   # only so that a broken client cannot hang the suite
    assert not t.is_alive(), "reserve() still blocked 60 s after the peer vanished"
    assert len(outcome) == 1
    assert isinstance(outcome[0], SocketError), repr(outcome[0])
    assert_broken(c)


@one_core
def test_reserve_without_timeout_sent_to_vanished_host(peer, make_conn):
    # The consumer's next reserve() goes out after the host vanished: the
    # command is never ACKed, so the socket is never idle and keepalive never
    # probes; TCP_USER_TIMEOUT (idle + interval * count) is what ends it.
    # connection.py sets that option; the core sees the same ETIMEDOUT from
    # recv as in the keepalive test above (run per core): one core suffices.
    tube = unique_tube()
    c = keepalive_conn(peer, make_conn, tube)
    peer.vanish()
    t, outcome = start_reserve(c)
    t.join(12)   # keepalive budget 1 + 2 * 1 s, with a wide margin
    try:
        assert not t.is_alive(), "reserve() still blocked 12 s after the peer vanished"
        assert isinstance(outcome[0], SocketError), repr(outcome[0])
    finally:
        if t.is_alive():   # wake the blocked thread, so it does not linger
            try:
                c._core.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            t.join(10)


def test_command_after_vanish_hits_read_deadline(peer, make_conn):
    # Default keepalive (60 s idle): the read deadline is what ends stats().
    c = make_conn(peer.port, host=peer.peer_addr, socket_timeout=1)
    assert c.stats()["pid"] == peer.server_pid
    peer.vanish()
    outcome = []

    def call():
        try:
            outcome.append(c.stats())
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "stats() still blocked 60 s after the peer vanished"
    assert isinstance(outcome[0], SocketError), repr(outcome[0])
    assert_broken(c)


@one_core
def test_reconnect_after_dead_peer_restores_tubes(peer, make_conn):
    # reconnect() and the restored tubes live in connection.py; the cores' part
    # (a vanished peer's read deadline) is tested per core above and below.
    tube, other = unique_tube(), unique_tube()
    c = make_conn(peer.port, host=peer.peer_addr, socket_timeout=1, connect_timeout=1)
    c.use(tube)
    c.watch(tube)
    c.watch(other)
    c.ignore("default")
    peer.vanish()
    with pytest.raises(SocketError):
        c.put("lost")
    assert_broken(c)
    # While the host is still gone, reconnecting fails (bounded by
    # connect_timeout) and keeps the tube state for a later attempt.
    with pytest.raises(SocketError):
        c.reconnect()
    peer.restore()
    c.reconnect()
    assert c.using() == tube
    assert sorted(c.watching()) == sorted([tube, other])
    jid = c.put("after")
    assert c.stats_job(jid)["tube"] == tube
    # The lost put may have reached the server after all: the closed socket
    # retransmits it once the link is back. Either way "after" is reserved.
    bodies = []
    while True:
        job = c.reserve(timeout=1)
        if job is None:
            break
        bodies.append(job.body)
        job.delete()
    assert bodies in (["after"], ["lost", "after"]), bodies


# -- read deadlines against a live server (conftest's loopback beanstalkd) -----------

def test_reserve_timeout_extends_read_deadline(conn_factory, tube):
    # socket_timeout=1 < reserve timeout 2: the server answers TIMED_OUT after
    # 2 s, within the extended deadline of 1 + 2 s.
    c = conn_factory(tube, socket_timeout=1)
    start = time.monotonic()
    assert c.reserve(timeout=2) is None
    assert time.monotonic() - start >= 1.5   # the server really waited, past socket_timeout
    assert c.using() == tube               # still usable


def test_job_arriving_after_socket_timeout_is_reserved(conn_factory, tube):
    c = conn_factory(tube, socket_timeout=0.5)
    producer = conn_factory(tube)
    timer = threading.Timer(1, lambda: producer.put("late"))
    timer.start()
    try:
        job = c.reserve(timeout=10)
    finally:
        timer.join()
    assert job is not None and job.body == "late"
    job.delete()


def test_keepalive_options_are_applied(make_conn, server):
    c = make_conn(server.port, keepalive_idle=7, keepalive_interval=3, keepalive_count=4)
    sock = c._core.sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
    for opt, value in (("TCP_KEEPIDLE", 7), ("TCP_KEEPINTVL", 3), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, opt):
            assert sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, opt)) == value


# -- a user-space proxy that goes silent ---------------------------------------------

@pytest.fixture
def silent_proxy(server, fake_server):
    """A FakeServer that forwards each connection to the real server until
    ``proxy.frozen`` is set; then it reads and forwards nothing in either
    direction but keeps every socket open.

    The proxy's kernel still ACKs whatever the client sends, like a hung
    server process: TCP keepalive cannot detect such a peer, so a reserve()
    without a timeout is not expected to fail here and is not tested. Only
    the read deadlines (socket_timeout, + a reserve's timeout) can.
    """
    frozen = threading.Event()
    forwarded = [0]

    def pump(client, srv):
        upstream = socket.create_connection((server.host, server.port), 5)
        peers = {client: upstream, upstream: client}
        try:
            while not srv.stop.is_set():
                if frozen.is_set():
                    srv.stop.wait(0.1)      # silent: read nothing, send nothing
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.1)
                for s in ready:
                    if frozen.is_set():
                        break
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
                    forwarded[0] += len(data)
        except OSError:
            return
        finally:
            upstream.close()

    proxy = fake_server(pump)
    proxy.frozen, proxy.forwarded = frozen, forwarded
    return proxy


def test_silent_proxy_read_deadlines(silent_proxy, make_conn):
    tube = unique_tube()
    conns = [make_conn(silent_proxy.port, socket_timeout=1) for _ in range(3)]
    for c in conns:   # forwarding works before the freeze
        c.use(tube)
        c.watch(tube)
        c.ignore("default")
    jid = conns[0].put("through the proxy")
    job = conns[2].reserve(timeout=1)
    assert job is not None and job.jid == jid
    job.delete()
    assert silent_proxy.forwarded[0] > 0

    silent_proxy.frozen.set()
    outcome = {}

    def run(name, call):
        try:
            outcome[name] = call()
        except BaseException as exc:
            outcome[name] = exc

    # one thread per connection, so the three deadlines run out side by side
    threads = [threading.Thread(target=run, args=item, daemon=True) for item in (
        ("put", lambda: conns[0].put("x")),
        ("stats", conns[1].stats),
        # deadline 1 + 1 s; the command never reaches the server, so no
        # TIMED_OUT can come back
        ("reserve", lambda: conns[2].reserve(timeout=1)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)   # only so that a hang cannot block the suite
        assert not t.is_alive(), "a command hung on a silent peer: %r" % (outcome,)
    for name in ("put", "stats", "reserve"):
        assert isinstance(outcome[name], SocketError), (name, outcome[name])
    for c in conns:
        assert_broken(c)
