"""TLS and URLs in the asyncio client, through the suite's real stunnel
(``tunnel``, see tls_support.py): both cores, both loops."""

import ssl

import pytest

import beanstalkc_fast.asyncio as bsa
from asyncio_support import run_on
from beanstalkc_fast.errors import ConnectionBroken, SocketError


@pytest.fixture
def arun_tls(loop_name, core):
    """Run ``async def body(open)``; ``open(port, **options)`` connects to
    localhost with the chosen core; every connection is closed at the end."""
    def run(body, guard=30):
        async def main():
            made = []

            async def open_(port, host="localhost", **options):
                conn = await bsa.connect(host, port, core=core, **options)
                made.append(conn)
                return conn

            try:
                return await body(open_)
            finally:
                for conn in made:
                    await conn.close()
        return run_on(loop_name, main, guard)
    return run


def test_valid_certificate_roundtrip(arun_tls, tunnel, tube):
    async def body(open_):
        c = await open_(tunnel.ports["valid"], ssl=tunnel.context())
        assert c._w.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        await c.use(tube)
        await c.watch(tube)
        jid = await c.put(b"\x00over tls\r\n" * 1000)
        job = await c.reserve(timeout=1)
        assert (job.jid, job.body) == (jid, "\x00over tls\r\n" * 1000)
        await job.delete()
        assert await c.reserve(timeout=0) is None
    arun_tls(body)


def test_ip_address_host_is_checked_against_ip_san(arun_tls, tunnel):
    async def body(open_):
        c = await open_(tunnel.ports["valid"], host="127.0.0.1", ssl=tunnel.context())
        assert await c.using() == "default"
    arun_tls(body)


def test_ssl_true_uses_system_cas_and_rejects_the_suite_ca(arun_tls, tunnel):
    async def body(open_):
        with pytest.raises(SocketError, match="TLS handshake with localhost:%d failed: "
                           "certificate verify failed" % tunnel.ports["valid"]):
            await open_(tunnel.ports["valid"], ssl=True)
    arun_tls(body)


def test_wrong_host_name_is_refused(arun_tls, tunnel):
    async def body(open_):
        with pytest.raises(SocketError, match="TLS handshake with localhost:%d failed: "
                           "certificate verify failed: Hostname mismatch"
                           % tunnel.ports["wronghost"]):
            await open_(tunnel.ports["wronghost"], ssl=tunnel.context())
    arun_tls(body)


def test_server_hostname_overrides_the_host(arun_tls, tunnel):
    async def body(open_):
        c = await open_(tunnel.ports["wronghost"], host="127.0.0.1", ssl=tunnel.context(),
                        server_hostname="wrong.example")
        assert (await c.stats())["current-connections"] >= 1
    arun_tls(body)


def test_untrusted_ca_is_refused(arun_tls, tunnel):
    async def body(open_):
        with pytest.raises(SocketError,
                           match="certificate verify failed: unable to get local issuer"):
            await open_(tunnel.ports["untrusted"], ssl=tunnel.context())
    arun_tls(body)


def test_client_certificate_present(arun_tls, tunnel, tube):
    async def body(open_):
        c = await open_(tunnel.ports["mtls"], ssl=tunnel.context(client_cert=True))
        await c.use(tube)
        assert await c.put("mutual") > 0
        await c.watch(tube)
        job = await c.reserve(timeout=1)
        assert job.body == "mutual"
        await job.delete()
    arun_tls(body)


def test_client_certificate_missing(arun_tls, tunnel):
    async def body(open_):
        with pytest.raises(SocketError, match="TLS connection to localhost:%d failed right "
                           "after the handshake .*client certificate" % tunnel.ports["mtls"]):
            await open_(tunnel.ports["mtls"], ssl=tunnel.context())
    arun_tls(body)


def test_plain_server_is_a_socket_error(arun_tls, tunnel):
    async def body(open_):
        with pytest.raises(SocketError, match="TLS handshake with 127.0.0.1:%d failed"
                           % tunnel.server.port):
            await open_(tunnel.server.port, host="127.0.0.1", ssl=tunnel.context(),
                        connect_timeout=1)
    arun_tls(body)


def test_socket_timeout_bounds_connect_over_tls(arun_tls, tunnel):
    """TLS up, nobody answers behind it: connect fails within socket_timeout."""
    async def body(open_):
        with pytest.raises(SocketError, match="timed out"):
            await open_(tunnel.ports["silent"], ssl=tunnel.context(), socket_timeout=0.5)
    arun_tls(body)


def test_pipelined_puts_reserve_and_batches_over_tls(arun_tls, tunnel, tube):
    import asyncio

    async def body(open_):
        c = await open_(tunnel.ports["valid"], ssl=tunnel.context())
        await c.use(tube)
        await c.watch(tube)
        await c.ignore("default")
        bodies = [("job-%d-" % i) * 50 for i in range(2000)]
        ids = await c.put_many(bodies)
        assert len(ids) == len(set(ids)) == 2000
        more = await asyncio.gather(*(c.put("g%d" % i) for i in range(300)))
        jobs = await c.reserve_many(2300, timeout=1)
        assert [j.body for j in jobs] == bodies + ["g%d" % i for i in range(300)]
        assert await c.delete_many(ids + list(more)) == [None] * 2300
        assert (await c.stats_tube(tube))["current-jobs-ready"] == 0
    arun_tls(body)


def test_reconnect_and_auto_reconnect_over_tls(arun_tls, tunnel, tube):
    async def body(open_):
        c = await open_(tunnel.ports["valid"], ssl=tunnel.context(), auto_reconnect=True)
        await c.use(tube)
        await c.watch(tube)
        await c.ignore("default")
        first = c._w.transport
        await c.reconnect()
        assert c._w.transport is not first
        assert c._w.transport.get_extra_info("ssl_object") is not None
        assert (await c.using(), await c.watching()) == (tube, [tube])
        c._w.transport.abort()                 # lost under us: reconnected over TLS
        assert await c.watching() == [tube]
        assert c._w.transport.get_extra_info("ssl_object") is not None
        await c.close()
        with pytest.raises(ConnectionBroken, match="closed by close"):
            await c.using()
    arun_tls(body)


def test_bad_ssl_arguments_are_value_errors():
    with pytest.raises(ValueError, match="ssl must be"):
        bsa.Connection(ssl="yes")
    with pytest.raises(ValueError, match="server_hostname"):
        bsa.Connection(ssl=True, server_hostname="")
    with pytest.raises(ValueError, match="unix_socket needs server_hostname"):
        bsa.Connection(unix_socket="/nonexistent.sock", ssl=True)


def test_from_url_beanstalks_with_files(arun_tls, tunnel, core, tube):
    url = ("beanstalks://localhost:%d/%s?ca_file=%s&cert_file=%s&key_file=%s&socket_timeout=5"
           % (tunnel.ports["mtls"], tube, tunnel.path("ca.pem"), tunnel.path("client.pem"),
              tunnel.path("client.key")))

    async def body(open_):
        async with bsa.from_url(url, core=core) as c:
            assert isinstance(c._w.transport.get_extra_info("ssl_object"), ssl.SSLObject)
            assert c.socket_timeout == 5.0
            assert (await c.using(), await c.watching()) == (tube, [tube])
            jid = await c.put("via url")
            assert (await c.reserve(timeout=1)).jid == jid
            await c.delete(jid)
    arun_tls(body)


def test_from_url_beanstalks_with_context_keyword(arun_tls, tunnel, core):
    async def body(open_):
        c = await bsa.from_url("beanstalks://127.0.0.1:%d?server_hostname=wrong.example"
                               % tunnel.ports["wronghost"], ssl=tunnel.context(), core=core)
        try:
            assert await c.using() == "default"
        finally:
            await c.close()
        with pytest.raises(SocketError, match="certificate verify failed"):
            await bsa.from_url("beanstalks://localhost:%d" % tunnel.ports["valid"], core=core)
    arun_tls(body)


def test_from_url_plain_and_unix(arun_tls, server, core, tube):
    async def body(open_):
        async with bsa.from_url("beanstalk://127.0.0.1:%d/%s?auto_reconnect=true"
                                % (server.port, tube), core=core) as c:
            assert c.auto_reconnect is True
            assert (await c.using(), await c.watching()) == (tube, [tube])
        with pytest.raises(SocketError, match="cannot connect"):
            await bsa.from_url("unix:///nonexistent/beanstalkd.sock", core=core)
    arun_tls(body)


def test_from_url_errors_before_connecting():
    for url, message in (("http://x", "scheme"), ("beanstalk://h?socket_timeout=-1",
                                                   "socket_timeout"),
                         ("beanstalk://h?ca_file=x", "needs the beanstalks"),
                         ("beanstalk://h/bad tube", "whitespace")):
        with pytest.raises(ValueError, match=message):
            bsa.from_url(url)
    with pytest.raises(ValueError, match="ssl= needs a beanstalks"):
        bsa.from_url("beanstalk://h", ssl=True)
    with pytest.raises(ValueError, match="port= conflicts"):
        bsa.from_url("beanstalk://h", port=1)


def test_handshake_timeout_is_a_socket_error(arun_tls, tunnel):
    """A peer that accepts TCP but never speaks TLS: connect_timeout bounds the handshake."""
    import socket

    async def body(open_):
        with socket.socket() as mute:
            mute.bind(("127.0.0.1", 0))
            mute.listen(1)
            with pytest.raises(SocketError, match="TLS handshake with .* failed: .*timed out"):
                await open_(mute.getsockname()[1], host="127.0.0.1", ssl=tunnel.context(),
                            connect_timeout=0.5)
    arun_tls(body)
