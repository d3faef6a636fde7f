"""TLS through a real stunnel in front of the suite's beanstalkd, with
certificates generated here by the ``openssl`` command (both cores)."""

import functools
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time

import pytest

import beanstalkc_fast
from beanstalkc_fast import SocketError
from conftest import free_port

SERVICES = ("valid", "wronghost", "untrusted", "mtls", "silent")


def _missing(tool):
    message = ("%s not on PATH: the TLS tests need it (Debian: apt-get install stunnel4 openssl; "
               "`make test` installs it as root)" % tool)
    if (os.environ.get("CI", "").lower() == "true"
            or os.environ.get("BEANSTALKC_FAST_REQUIRE_TLS") == "1"):
        pytest.fail(message)
    pytest.skip(message)


def _openssl(folder, *args):
    subprocess.run(("openssl",) + args, cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_ca(folder, name):
    _openssl(folder, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
             "-subj", "/CN=beanstalkc_fast test " + name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _make_cert(folder, name, ca, san, usage):
    ext = os.path.join(folder, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % usage)
        if san:
            f.write("subjectAltName=%s\n" % san)
    _openssl(folder, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
    _openssl(folder, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
             "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext)


class Tunnel:
    """stunnel's ports by service, the certificate folder, the backend server."""

    def __init__(self, folder, ports, server, proc):
        self.folder = folder
        self.ports = ports
        self.server = server
        self.proc = proc

    def path(self, name):
        return os.path.join(self.folder, name)

    def context(self, client_cert=False):
        """A verifying context that trusts the suite's CA (and presents the client cert)."""
        ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
        if client_cert:
            ctx.load_cert_chain(self.path("client.pem"), self.path("client.key"))
        return ctx


def _wait_listening(ports, proc, log):
    deadline = time.monotonic() + 10
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail("stunnel did not start: %s" % log.read().decode(errors="replace"))
                time.sleep(0.025)


@pytest.fixture(scope="session")
def tunnel(server):
    """stunnel on free ports: "valid" (cert for localhost and 127.0.0.1),
    "wronghost" (cert for wrong.example), "untrusted" (cert from another CA),
    "mtls" (valid cert, requires a client cert from the CA), "silent" (valid
    cert in front of a listener that never answers). Stopped by PID."""
    for tool in ("openssl", "stunnel"):
        if shutil.which(tool) is None:
            _missing(tool)
    folder = tempfile.mkdtemp(prefix="bsf-tls-")
    _make_ca(folder, "ca")
    _make_ca(folder, "otherca")
    _make_cert(folder, "server", "ca", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    _make_cert(folder, "wronghost", "ca", "DNS:wrong.example", "serverAuth")
    _make_cert(folder, "untrusted", "otherca", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    _make_cert(folder, "client", "ca", "", "clientAuth")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)                 # connections complete in the backlog; nobody answers
    ports = {name: free_port() for name in SERVICES}
    backend = "127.0.0.1:%d" % server.port
    config = textwrap.dedent("""\
        foreground = yes
        pid =
        debug = 3
        [valid]
        accept = 127.0.0.1:{valid}
        connect = {backend}
        cert = server.pem
        key = server.key
        [wronghost]
        accept = 127.0.0.1:{wronghost}
        connect = {backend}
        cert = wronghost.pem
        key = wronghost.key
        [untrusted]
        accept = 127.0.0.1:{untrusted}
        connect = {backend}
        cert = untrusted.pem
        key = untrusted.key
        [mtls]
        accept = 127.0.0.1:{mtls}
        connect = {backend}
        cert = server.pem
        key = server.key
        CAfile = ca.pem
        verifyChain = yes
        [silent]
        accept = 127.0.0.1:{silent}
        connect = 127.0.0.1:{silent_backend}
        cert = server.pem
        key = server.key
        """).format(backend=backend, silent_backend=silent.getsockname()[1], **ports)
    with open(os.path.join(folder, "stunnel.conf"), "w") as f:
        f.write(config)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([shutil.which("stunnel"), "stunnel.conf"], cwd=folder,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        _wait_listening(ports.values(), proc, log)
        yield Tunnel(folder, ports, server, proc)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 15)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, 9)
                proc.wait()
        log.close()
        silent.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_valid_certificate_roundtrip(make_conn, tunnel, tube):
    c = make_conn(tunnel.ports["valid"], host="localhost", ssl=tunnel.context())
    assert isinstance(c._socket, ssl.SSLSocket)
    assert c._socket.version() in ("TLSv1.2", "TLSv1.3")
    c.use(tube)
    c.watch(tube)
    jid = c.put(b"\x00over tls\r\n" * 1000)
    job = c.reserve(timeout=1)
    assert (job.jid, job.body) == (jid, "\x00over tls\r\n" * 1000)
    job.delete()
    assert c.reserve(timeout=0) is None


def test_ip_address_host_is_checked_against_ip_san(make_conn, tunnel):
    c = make_conn(tunnel.ports["valid"], host="127.0.0.1", ssl=tunnel.context())
    assert c.using() == "default"


def test_ssl_true_uses_system_cas_and_rejects_the_suite_ca(make_conn, tunnel):
    with pytest.raises(SocketError, match="certificate verify failed"):
        make_conn(tunnel.ports["valid"], host="localhost", ssl=True)


def test_wrong_host_name_is_refused(make_conn, tunnel):
    with pytest.raises(SocketError, match="TLS handshake with localhost:%d failed: "
                       "certificate verify failed: Hostname mismatch" % tunnel.ports["wronghost"]):
        make_conn(tunnel.ports["wronghost"], host="localhost", ssl=tunnel.context())


def test_server_hostname_overrides_the_host(make_conn, tunnel):
    c = make_conn(tunnel.ports["wronghost"], host="127.0.0.1", ssl=tunnel.context(),
                  server_hostname="wrong.example")
    assert c.stats()["current-connections"] >= 1


def test_untrusted_ca_is_refused(make_conn, tunnel):
    with pytest.raises(SocketError, match="certificate verify failed: unable to get local issuer"):
        make_conn(tunnel.ports["untrusted"], host="localhost", ssl=tunnel.context())


def test_client_certificate_present(make_conn, tunnel, tube):
    c = make_conn(tunnel.ports["mtls"], host="localhost", ssl=tunnel.context(client_cert=True))
    c.use(tube)
    assert c.put("mutual") > 0
    c.watch(tube)
    job = c.reserve(timeout=1)
    assert job.body == "mutual"
    job.delete()


def test_client_certificate_missing(make_conn, tunnel):
    # TLS 1.3: the server checks the client certificate after the client's
    # handshake is done; connect() makes one round trip to see the refusal.
    with pytest.raises(SocketError, match="TLS connection to localhost:%d failed right after "
                       "the handshake .*client certificate" % tunnel.ports["mtls"]):
        make_conn(tunnel.ports["mtls"], host="localhost", ssl=tunnel.context())


def test_handshake_timeout_is_a_socket_error(make_conn, tunnel):
    """A peer that accepts TCP but never speaks TLS: connect_timeout bounds the handshake."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        with pytest.raises(SocketError, match="TLS handshake with .* failed: .*timed out"):
            make_conn(mute.getsockname()[1], host="127.0.0.1", ssl=tunnel.context(),
                      connect_timeout=0.5)


def test_plain_server_is_a_socket_error(make_conn, tunnel):
    with pytest.raises(SocketError, match="TLS handshake"):
        make_conn(tunnel.server.port, host="127.0.0.1", ssl=tunnel.context(), connect_timeout=1)


def test_socket_timeout_bounds_connect_over_tls(make_conn, tunnel):
    """TLS up, nobody answers behind it: connect() fails within socket_timeout."""
    with pytest.raises(SocketError, match="timed out"):
        make_conn(tunnel.ports["silent"], host="localhost", ssl=tunnel.context(),
                  socket_timeout=0.5)


def test_socket_timeout_over_tls(make_conn, tunnel):
    c = make_conn(tunnel.ports["valid"], host="localhost", ssl=tunnel.context(),
                  socket_timeout=0.5)
    os.kill(tunnel.proc.pid, signal.SIGSTOP)       # stunnel frozen: no reply comes
    os.waitpid(tunnel.proc.pid, os.WUNTRACED)      # ... once all its threads have stopped
    try:
        with pytest.raises(SocketError, match="timed out"):
            c.stats()
    finally:
        os.kill(tunnel.proc.pid, signal.SIGCONT)
    assert c._core.broken is not None
    c.reconnect()
    assert c.using() == "default"


def test_reserve_timeout_over_tls(make_conn, tunnel, tube):
    c = make_conn(tunnel.ports["valid"], host="localhost", ssl=tunnel.context(), socket_timeout=5)
    c.watch(tube)
    c.ignore("default")
    assert c.reserve(timeout=1) is None


def test_batches_over_tls(make_conn, tunnel, tube):
    c = make_conn(tunnel.ports["valid"], host="localhost", ssl=tunnel.context())
    c.use(tube)
    c.watch(tube)
    c.ignore("default")
    bodies = [("job-%d-" % i) * 50 for i in range(2000)]
    ids = c.put_many(bodies)
    assert len(ids) == len(set(ids)) == 2000
    jobs = c.reserve_many(2000, timeout=1)
    assert [j.body for j in jobs] == bodies
    assert c.delete_many(ids) == [None] * 2000
    assert c.stats_tube(tube)["current-jobs-ready"] == 0


def test_reconnect_restores_tubes_over_tls(make_conn, tunnel, tube):
    c = make_conn(tunnel.ports["valid"], host="localhost", ssl=tunnel.context(),
                  auto_reconnect=True)
    c.use(tube)
    c.watch(tube)
    c.ignore("default")
    first = c._socket
    c.reconnect()
    assert c._socket is not first and isinstance(c._socket, ssl.SSLSocket)
    assert (c.using(), c.watching()) == (tube, [tube])
    # the connection dies under us: a safe command is sent again on a new TLS connection
    c._socket.shutdown(socket.SHUT_RDWR)
    assert c.watching() == [tube]
    assert isinstance(c._socket, ssl.SSLSocket)
    assert c.using() == tube


def test_idle_tls_connection_is_not_taken_for_dead(make_conn, tunnel, monkeypatch):
    """auto_reconnect's idle check on a TLS connection keeps it (and its reservation)."""
    monkeypatch.setattr(beanstalkc_fast.connection, "IDLE_CHECK_AFTER", 0.0)
    c = make_conn(tunnel.ports["valid"], host="localhost", ssl=tunnel.context(),
                  auto_reconnect=True)
    sock = c._socket
    job_id = c.put("kept")
    job = c.reserve(timeout=1)
    assert job.jid == job_id
    assert c.stats_job(job_id)["state"] == "reserved"    # a reconnect would release it
    assert c._socket is sock
    job.delete()


def test_bad_ssl_arguments_are_value_errors(make_conn, tunnel):
    with pytest.raises(ValueError, match="ssl must be"):
        make_conn(tunnel.ports["valid"], ssl="yes")
    with pytest.raises(ValueError, match="server_hostname"):
        make_conn(tunnel.ports["valid"], ssl=True, server_hostname="")
    with pytest.raises(ValueError, match="unix_socket needs server_hostname"):
        make_conn(0, unix_socket="/nonexistent.sock", ssl=True)


def test_from_url_beanstalks_with_files(tunnel, core, monkeypatch, tube):
    from_url = functools.partial(beanstalkc_fast.from_url, core=core)
    url = ("beanstalks://localhost:%d/%s?ca_file=%s&cert_file=%s&key_file=%s&socket_timeout=5"
           % (tunnel.ports["mtls"], tube, tunnel.path("ca.pem"), tunnel.path("client.pem"),
              tunnel.path("client.key")))
    c = from_url(url)
    try:
        assert isinstance(c._socket, ssl.SSLSocket)
        assert (c.using(), c.watching()) == (tube, [tube])
        jid = c.put("via url")
        assert c.reserve(timeout=1).jid == jid
        c.delete(jid)
    finally:
        c.close()


def test_from_url_beanstalks_with_context_keyword(tunnel, core, monkeypatch):
    from_url = functools.partial(beanstalkc_fast.from_url, core=core)
    c = from_url("beanstalks://127.0.0.1:%d?server_hostname=wrong.example"
                 % tunnel.ports["wronghost"], ssl=tunnel.context())
    try:
        assert c.using() == "default"
    finally:
        c.close()
    with pytest.raises(SocketError, match="certificate verify failed"):
        from_url("beanstalks://localhost:%d" % tunnel.ports["valid"])


def test_tls_peer_gone(tunnel):
    """The idle check: session tickets the server sends unasked are not a
    dead peer (a plain MSG_PEEK check would say so); a close is."""
    from beanstalkc_fast.connection import _peer_gone
    raw = socket.create_connection(("127.0.0.1", tunnel.ports["valid"]), 5)
    with tunnel.context().wrap_socket(raw, server_hostname="localhost") as sock:
        sock.settimeout(None)
        assert select.select([sock], [], [], 2)[0], "TLS 1.3 session tickets expected"
        assert _peer_gone(sock) is False
        assert sock.gettimeout() is None                     # its blocking mode is kept
        sock.sendall(b"list-tube-used\r\n")
        assert sock.recv(100) == b"USING default\r\n"       # nothing was consumed
        sock.sendall(b"quit\r\n")
        assert select.select([sock], [], [], 5)[0]
        assert _peer_gone(sock) is True
