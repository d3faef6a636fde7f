"""URLs: the parsing table (valid and invalid), then from_url end to end
against the suite's beanstalkd and a unix-socket beanstalkd (both cores)."""

import functools

import pytest

import beanstalkc_fast
from beanstalkc_fast import Endpoint, parse_url
from beanstalkc_fast.endpoint import connection_kwargs
from test_transports import unix_server  # noqa: F401  (fixture)

VALID = [
    ("beanstalk://localhost", Endpoint("beanstalk", "localhost", 11300, None, None, False)),
    ("beanstalk://localhost/", Endpoint("beanstalk", "localhost", 11300, None, None, False)),
    ("beanstalk://example.com:11301/jobs",
     Endpoint("beanstalk", "example.com", 11301, None, "jobs", False)),
    ("beanstalk://10.0.0.1:1/a/b+c;d$e_(f).g-h",
     Endpoint("beanstalk", "10.0.0.1", 1, None, "a/b+c;d$e_(f).g-h", False)),
    ("beanstalk://h/%6Aobs", Endpoint("beanstalk", "h", 11300, None, "jobs", False)),
    ("beanstalk://[::1]:65535/t", Endpoint("beanstalk", "::1", 65535, None, "t", False)),
    ("beanstalk://[fe80::1%25eth0]", Endpoint("beanstalk", "fe80::1%eth0", 11300, None, None,
                                             False)),
    ("beanstalks://queue.example/t", Endpoint("beanstalks", "queue.example", 11300, None, "t",
                                              True)),
    ("unix:///run/beanstalkd.sock", Endpoint("unix", None, None, "/run/beanstalkd.sock", None,
                                             False)),
    ("unix:///run/b.sock?tube=jobs", Endpoint("unix", None, None, "/run/b.sock", "jobs", False)),
    (("beanstalk://h?socket_timeout=2.5&connect_timeout=none&encoding=none&keepalive_idle=30"
      "&keepalive_interval=5&keepalive_count=4&auto_reconnect=yes&parse_yaml=false"),
     Endpoint("beanstalk", "h", 11300, None, None, False, {
         "socket_timeout": 2.5, "connect_timeout": None, "encoding": None, "keepalive_idle": 30,
         "keepalive_interval": 5, "keepalive_count": 4, "auto_reconnect": True,
         "parse_yaml": False})),
    ("beanstalk://h?encoding=latin-1&auto_reconnect=0",
     Endpoint("beanstalk", "h", 11300, None, None, False,
              {"encoding": "latin-1", "auto_reconnect": False})),
    ("beanstalks://h?ca_file=/etc/ca.pem&cert_file=/c.pem&key_file=/k.pem&server_hostname=q.ex",
     Endpoint("beanstalks", "h", 11300, None, None, True, {}, {
         "ca_file": "/etc/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem",
         "server_hostname": "q.ex"})),
]

INVALID = [
    ("", "scheme ''"),
    ("localhost:11300", "scheme 'localhost'"),
    ("http://localhost", "scheme 'http'"),
    ("beanstalk://", "host is missing"),
    ("beanstalk://:11300", "host is missing"),
    ("beanstalk://host:0", "port '0'"),
    ("beanstalk://host:65536", "port '65536'"),
    ("beanstalk://host:12a", "port '12a'"),
    ("beanstalk://host:", "port ''"),
    ("beanstalk://host:-1", "port '-1'"),
    ("beanstalk://::1:11300", "IPv6 address goes in brackets"),
    ("beanstalk://[::1", "malformed"),
    ("beanstalk://[nothex]:1", "'nothex'"),
    ("beanstalk://[1.2.3.4]:1", "IPv4 address cannot be in brackets"),
    ("beanstalk://[v1.x]:1", "not an IPv6 address"),
    ("beanstalk://[::1]x", "malformed"),
    ("beanstalk://user:pw@host", "user information"),
    ("beanstalk://ho st", "whitespace"),
    ("beanstalk://host/", None),          # valid: no tube (checked apart)
    ("beanstalk://host/-bad", "tube '-bad'"),
    ("beanstalk://host/bad%20tube", "tube 'bad tube'"),
    ("beanstalk://host/" + "t" * 201, "not a valid tube name"),
    ("beanstalk://host/t#frag", "fragment"),
    ("beanstalk://host/t?tube=u", "names the tube twice"),
    ("beanstalk://host?socket_timeout=0", "socket_timeout='0'"),
    ("beanstalk://host?socket_timeout=-1", "socket_timeout='-1'"),
    ("beanstalk://host?socket_timeout=nan", "socket_timeout='nan'"),
    ("beanstalk://host?connect_timeout=soon", "connect_timeout='soon'"),
    ("beanstalk://host?keepalive_count=inf", "keepalive_count='inf'"),
    ("beanstalk://host?auto_reconnect=maybe", "auto_reconnect='maybe'"),
    ("beanstalk://host?encoding=klingon", "encoding='klingon'"),
    ("beanstalk://host?timeout=1", "option 'timeout' is unknown"),
    ("beanstalk://host?socket_timeout=1&socket_timeout=2", "socket_timeout is given twice"),
    ("beanstalk://host?socket_timeout", "malformed query"),
    ("beanstalk://host?ca_file=/ca.pem", "ca_file needs the beanstalks:// scheme"),
    ("beanstalks://host?key_file=/k.pem", "key_file needs cert_file"),
    ("beanstalks://host?server_hostname=", "server_hostname is empty"),
    ("unix://host/run/b.sock", "a unix URL has no host"),
    ("unix://", "not an absolute file path"),
    ("unix:relative.sock", "not an absolute file path"),
    ("unix:///run/", "not an absolute file path"),
    ("unix:///run/b.sock?tube=-x", "tube= '-x'"),
]


@pytest.mark.parametrize("url,expected", VALID, ids=[u for u, _ in VALID])
def test_parse_valid(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url,message", [c for c in INVALID if c[1]],
                         ids=[u or "empty" for u, m in INVALID if m])
def test_parse_invalid(url, message):
    with pytest.raises(ValueError) as info:
        parse_url(url)
    assert message in str(info.value)


def test_parse_not_a_string():
    with pytest.raises(ValueError, match="URL must be a str"):
        parse_url(b"beanstalk://host")


def test_endpoint_address():
    assert parse_url("beanstalk://[::1]:5").address == "[::1]:5"
    assert parse_url("beanstalk://h").address == "h:11300"
    assert parse_url("unix:///x.sock").address == "/x.sock"


def test_connection_kwargs():
    endpoint = parse_url("beanstalk://h:7/t?socket_timeout=3&encoding=none")
    assert connection_kwargs(endpoint, {"socket_timeout": 9}) == {
        "host": "h", "port": 7, "socket_timeout": 9, "encoding": None}
    with pytest.raises(ValueError, match="port= conflicts with the URL"):
        connection_kwargs(endpoint, {"port": 8})
    with pytest.raises(ValueError, match="ssl= needs a beanstalks:// URL"):
        connection_kwargs(endpoint, {"ssl": True})
    tls = parse_url("beanstalks://h?ca_file=/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="ca_file '/nonexistent/ca.pem' cannot be loaded"):
        connection_kwargs(tls, {})
    with pytest.raises(ValueError, match="ssl= conflicts with the URL options ca_file"):
        import ssl
        connection_kwargs(tls, {"ssl": ssl.create_default_context()})
    with pytest.raises(ValueError, match="ssl=False conflicts"):
        connection_kwargs(parse_url("beanstalks://h"), {"ssl": False})


def test_from_url_tube_in_path(core, monkeypatch, server, tube):
    from_url = functools.partial(beanstalkc_fast.from_url, core=core)
    c = from_url("beanstalk://127.0.0.1:%d/%s?socket_timeout=5&encoding=none"
                 % (server.port, tube))
    try:
        assert (c.using(), c.watching()) == (tube, [tube])
        assert c.socket_timeout == 5
        jid = c.put(b"from url")
        job = c.reserve(timeout=1)
        assert (job.jid, job.body) == (jid, b"from url")      # encoding=none: bytes
        job.delete()
        c.reconnect()
        assert (c.using(), c.watching()) == (tube, [tube])
    finally:
        c.close()


def test_from_url_default_tube_and_keyword_options(core, monkeypatch, server):
    from_url = functools.partial(beanstalkc_fast.from_url, core=core)
    c = from_url("beanstalk://127.0.0.1:%d/default?auto_reconnect=true"
                 % server.port, socket_timeout=7)
    try:
        assert (c.using(), c.watching()) == ("default", ["default"])
        assert c.auto_reconnect is True and c.socket_timeout == 7
    finally:
        c.close()


def test_from_url_refused_is_a_socket_error(core, monkeypatch):
    from conftest import free_port
    with pytest.raises(beanstalkc_fast.SocketError):
        beanstalkc_fast.from_url("beanstalk://127.0.0.1:%d" % free_port(), core=core)


def test_from_url_unix_socket(core, monkeypatch, unix_server, tube):  # noqa: F811
    from_url = functools.partial(beanstalkc_fast.from_url, core=core)
    c = from_url("unix://%s?tube=%s" % (unix_server, tube))
    try:
        assert c.unix_socket == unix_server
        assert (c.using(), c.watching()) == (tube, [tube])
        jid = c.put("over unix")
        assert c.reserve(timeout=1).jid == jid
        c.delete(jid)
    finally:
        c.close()


@pytest.mark.parametrize("url", ["beanstalk://127.0.0.1:1?bogus=1", "redis://127.0.0.1",
                                 "beanstalk://127.0.0.1:1?keepalive_idle=99999"])
def test_from_url_bad_input_raises_before_connecting(core, monkeypatch, url):
    """Port 1 has no server: a ValueError (not SocketError) proves nothing was tried."""
    from_url = functools.partial(beanstalkc_fast.from_url, core=core)
    with pytest.raises(ValueError):
        from_url(url)
