"""TLS through a real stunnel in front of the suite's beanstalkd, with
certificates generated here by the ``openssl`` command (both cores)."""

import functools
import os
import select
import signal
import socket
import ssl

import pytest

import beanstalkc_fast
from beanstalkc_fast import SocketError


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


@pytest.mark.parametrize("body", [b"\x00b" * 32000, bytearray(b"ba" * 20000),
                                  memoryview(b"mv" * 30000)],
                         ids=["bytes", "bytearray", "memoryview"])
def test_big_bodies_over_tls(make_conn, tunnel, tube, body):
    # SSLSocket has no sendmsg: the parts of a big put go out one after another
    c = make_conn(tunnel.ports["valid"], host="localhost", ssl=tunnel.context(), encoding=None)
    c.use(tube)
    c.watch(tube)
    jid = c.put(body)
    job = c.reserve(timeout=1)
    assert (job.jid, job.body) == (jid, bytes(body))
    job.delete()
