"""Shared fixtures: a real beanstalkd, the two cores, patched connections."""

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import beanstalkc_fast

MAX_JOB_SIZE = 4194304
CORE_NAMES = ["cython", "python"]
CORE_MODULES = {"cython": "beanstalkc_fast._protocol", "python": "beanstalkc_fast._pyprotocol"}


@contextlib.contextmanager
def alarm(handler, first, interval=0.0):
    """SIGALRM runs ``handler`` ``first`` s into the block (then every
    ``interval`` s); the timer and the old handler are restored after it."""
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, first, interval)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def ctrl_c(signum, frame):
    """A SIGALRM handler that acts as a Ctrl-C."""
    raise KeyboardInterrupt


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_core(name):
    """The core module ``name`` or skip (fail when the extension is required)."""
    try:
        return importlib.import_module(CORE_MODULES[name])
    except ImportError as exc:
        if name == "cython" and os.environ.get("BEANSTALKC_FAST_REQUIRE_EXTENSION") == "1":
            pytest.fail("Cython core required but not importable: %s" % (exc,))
        pytest.skip("%s core not importable: %s" % (name, exc))


class Server:
    def __init__(self, proc, host, port):
        self.proc = proc
        self.host = host
        self.port = port
        self.pid = proc.pid


def start_beanstalkd(args, connect=None, exited=pytest.fail):
    """Start ``beanstalkd ARGS`` and return its Popen once ``connect()`` (by
    default a TCP connection to the ``-l``/``-p`` in ARGS) succeeds. Skips when
    beanstalkd is not on PATH; calls ``exited(message)`` when it exits or does
    not come up within 10 s. Stop it with ``stop_beanstalkd``."""
    exe = shutil.which("beanstalkd")
    if exe is None:
        pytest.skip("beanstalkd not on PATH")
    if connect is None:
        addr = (args[args.index("-l") + 1], int(args[args.index("-p") + 1]))
        connect = lambda: socket.create_connection(addr, 0.5)  # noqa: E731
    log = tempfile.TemporaryFile()        # a file, not a pipe: it never fills up
    proc = subprocess.Popen([exe] + list(args), stdout=subprocess.DEVNULL, stderr=log)
    proc.log = log
    deadline = time.monotonic() + 10
    while True:
        try:
            connect().close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_beanstalkd(proc)
                log.seek(0)
                err = log.read()
                log.close()
                exited("beanstalkd %s did not start: %s"
                       % (" ".join(args), err.decode(errors="replace").strip()))
            time.sleep(0.025)


def stop_beanstalkd(proc, sig=15):
    """Stop a beanstalkd started here, by its PID: ``sig``, then SIGKILL after 5 s."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait()
    proc.log.close()


@pytest.fixture(scope="session")
def server():
    port = free_port()
    proc = start_beanstalkd(["-l", "127.0.0.1", "-p", str(port), "-z", str(MAX_JOB_SIZE)])
    try:
        yield Server(proc, "127.0.0.1", port)
    finally:
        stop_beanstalkd(proc)


@pytest.fixture(params=CORE_NAMES, ids=["cython-core", "python-core"])
def core(request):
    return load_core(request.param)


def one_core(test):
    """Run ``test`` with the package's own core only, not once per core: for
    clock-bound tests of behaviour that lives in connection.py (the cores'
    part of it is covered per core elsewhere)."""
    return pytest.mark.parametrize("core", [beanstalkc_fast.IMPLEMENTATION],
                                   ids=[beanstalkc_fast.IMPLEMENTATION + "-core"],
                                   indirect=True)(test)


@pytest.fixture
def both_cores():
    """(python core, cython core) for differential tests; skips without Cython."""
    return load_core("python"), load_core("cython")


@pytest.fixture
def make_conn(core):
    """Factory of Connections (on any port) that use the chosen core (handed
    to each connection: ``Connection(core=...)``)."""
    made = []

    def make(port, **kwargs):
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("core", core)
        c = beanstalkc_fast.Connection(port=port, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def unique_tube():
    return "t-" + uuid.uuid4().hex[:16]


@pytest.fixture
def tube():
    return unique_tube()


@pytest.fixture
def raw_conn(make_conn, server):
    """A connection in the default-tube state."""
    return make_conn(server.port)


@pytest.fixture
def conn(raw_conn, tube):
    """A connection using and watching only a fresh tube."""
    raw_conn.use(tube)
    raw_conn.watch(tube)
    raw_conn.ignore("default")
    return raw_conn


@pytest.fixture
def conn_factory(make_conn, server):
    """More connections to the live server, optionally on a tube."""
    def make(tube=None, **kwargs):
        c = make_conn(server.port, **kwargs)
        if tube is not None:
            c.use(tube)
            c.watch(tube)
            c.ignore("default")
        return c
    return make


# -- a scripted fake server ------------------------------------------------------

class FakeServer:
    """Accepts connections on 127.0.0.1 and runs ``handler(sock)`` on each."""

    def __init__(self, handler, rcvbuf=None):
        self.handler = handler
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # set before listen() so accepted sockets inherit it
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.errors = []
        self.threads = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(sock,), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, sock):
        sock.settimeout(10)
        try:
            self.handler(sock, self)
        except Exception as exc:  # pragma: no cover - reported by close()
            self.errors.append(exc)
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.listener.close()
        for t in self.threads:
            t.join(5)


def read_until(sock, marker=b"\r\n", count=1):
    """Read until ``marker`` has been seen ``count`` times; all bytes read."""
    data = b""
    while data.count(marker) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def fake_server():
    servers = []

    def start(handler, **kwargs):
        srv = FakeServer(handler, **kwargs)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


SERVER_FIXTURES = {"server", "own_server", "binlog_server", "netns_server", "ipv6_server",
                   "unix_server"}


def pytest_collection_modifyitems(items):
    """Mark every test that needs a real beanstalkd ``server``, so that
    ``-m "not server"`` runs exactly the server-free part (wheel tests)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


# -- TLS: a real stunnel (tests/tls_support.py) ----------------------------------

@pytest.fixture(scope="session")
def tunnel(server):
    """stunnel on free ports in front of ``server`` (see tls_support.run_tunnel);
    stopped by PID at the end of the session."""
    from tls_support import run_tunnel
    yield from run_tunnel(server)


# -- asyncio: both cores × both loops ----------------------------------------------

@pytest.fixture(params=["asyncio", "uvloop"], ids=["asyncio-loop", "uvloop"])
def loop_name(request):
    return request.param


@pytest.fixture
def arun(loop_name, core, server, tube):
    """Run ``async def body(connect)`` on the chosen loop with the chosen core."""
    from asyncio_support import make_runner
    return make_runner(loop_name, core, server.port, tube)


@pytest.fixture
def arun_fake(loop_name, core, tube):
    """Like ``arun`` without a real server: ``connect(port=..., tube=None)``."""
    from asyncio_support import make_runner
    return make_runner(loop_name, core, None, None)
