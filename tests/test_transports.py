"""Other transports: IPv6 hosts and unix domain sockets, each against a
beanstalkd of the test's own (both cores)."""

import os
import shutil
import socket
import tempfile

import pytest

import beanstalkc_fast
from conftest import free_port, start_beanstalkd, stop_beanstalkd


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def ipv6_server():
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    port = free_port()
    proc = start_beanstalkd(["-l", "::1", "-p", str(port)], exited=pytest.skip)
    yield port
    stop_beanstalkd(proc)


@pytest.fixture
def unix_server():
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no unix domain sockets")
    # a short path: unix socket paths are limited to about 100 bytes
    folder = tempfile.mkdtemp(prefix="bsf-")
    path = os.path.join(folder, "beanstalkd.sock")

    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            raise
        return s

    proc = start_beanstalkd(["-l", "unix:" + path], connect, pytest.skip)
    yield path
    stop_beanstalkd(proc)
    shutil.rmtree(folder, ignore_errors=True)


def roundtrip(c):
    c.use("transport")
    c.watch("transport")
    jid = c.put(b"\x00body\r\n" * 3)
    ids = c.put_many(["a", "b"])
    job = c.reserve(timeout=1)
    assert (job.jid, job.body) == (jid, "\x00body\r\n" * 3)
    job.delete()
    assert [j.body for j in c.reserve_many(5, timeout=1)] == ["a", "b"]
    assert c.delete_many(ids) == [None, None]
    assert c.stats()["current-connections"] >= 1


def test_ipv6_host(make_conn, ipv6_server):
    c = make_conn(ipv6_server, host="::1")
    assert c._core.sock.family == socket.AF_INET6
    roundtrip(c)
    c.reconnect()
    assert c.using() == "transport"


def test_unix_socket(make_conn, unix_server):
    c = make_conn(0, unix_socket=unix_server)
    assert c._core.sock.family == socket.AF_UNIX
    roundtrip(c)
    c.reconnect()
    assert c.using() == "transport"
    assert c.watching() == ["default", "transport"]


def test_unix_socket_missing_path_is_a_socket_error(make_conn, tmp_path):
    with pytest.raises(beanstalkc_fast.SocketError):
        make_conn(0, unix_socket=str(tmp_path / "nothing-here.sock"))


def test_asyncio_unix_socket(arun, unix_server, core):
    import beanstalkc_fast.asyncio as bsa

    async def body(connect):
        async with bsa.connect(unix_socket=unix_server, core=core) as c:
            await c.use("transport")
            jid = await c.put(b"\x00body\r\n")
            assert (await c.peek(jid)).raw_body == b"\x00body\r\n"
            await c.reconnect()
            assert await c.using() == "transport"
            await c.delete(jid)
    arun(body)
