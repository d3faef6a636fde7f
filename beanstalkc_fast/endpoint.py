"""Where to connect and how: ``beanstalk://`` URLs and TLS, with no I/O.

Front-end neutral: the sync ``Connection``, an asyncio client, a pool and a
command line all use these functions unchanged.

- ``parse_url(url)`` -> ``Endpoint`` (host, port, unix path, tube, tls and
  the options of the query), or ``ValueError`` naming the part at fault.
- ``connection_kwargs(endpoint, options)`` -> the keyword arguments of a
  ``Connection`` (TLS file options turned into an ``ssl.SSLContext``).
- ``ssl_context(value)`` checks an ``ssl=`` argument, ``tls_settings``
  it with ``server_hostname=``; ``check_timeout`` and ``check_keepalive``
  the other settings, ``connect_timeout`` what its default (``USE_DEFAULT``)
  stands for; ``tls_failure`` explains a failed handshake, ``tls_refused`` a
  connection closed right after it; ``tls_peer_gone`` is the idle check of a
  TLS socket.
"""

import codecs
import math
import numbers
import socket
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

DEFAULT_PORT = 11300
SCHEMES = ("beanstalk", "beanstalks", "unix")

# Characters beanstalkd allows in a tube name (protocol.txt); at most 200 bytes.
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()")
_MAX_NAME = 200

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("", "none")

# query parameter -> kind of value; each becomes the Connection keyword of the same name
_OPTIONS = {
    "socket_timeout": "seconds",
    "connect_timeout": "seconds",
    "encoding": "encoding",
    "keepalive_idle": "number",
    "keepalive_interval": "number",
    "keepalive_count": "number",
    "auto_reconnect": "bool",
    "parse_yaml": "bool",
    "tube": "tube",
}
# TLS only (beanstalks://): they build the SSLContext, or name the host to verify
_TLS_OPTIONS = {
    "ca_file": "path",
    "cert_file": "path",
    "key_file": "path",
    "server_hostname": "hostname",
}

SSLArg = Union[None, bool, ssl.SSLContext]

MAX_TIMEOUT = 366 * 86400.0       # longer than a year: pass None (no deadline)
# keepalive values, seconds or probes: Linux's own upper bounds
KEEPALIVE_MAX = {"keepalive_idle": 32767, "keepalive_interval": 32767, "keepalive_count": 127}


@dataclass(frozen=True)
class Endpoint:
    """A parsed URL. Exactly one of ``host`` (with ``port``) and ``unix_socket``
    is set; ``tube`` is None when the URL names none; ``options`` are the
    query's Connection keywords (typed values); ``tls_options`` the query's
    ``ca_file``/``cert_file``/``key_file``/``server_hostname``."""

    scheme: str
    host: Optional[str]
    port: Optional[int]
    unix_socket: Optional[str]
    tube: Optional[str]
    tls: bool
    options: Dict[str, Any] = field(default_factory=dict)
    tls_options: Dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets) or the unix socket path."""
        if self.unix_socket is not None:
            return self.unix_socket
        host = "[%s]" % self.host if self.host and ":" in self.host else self.host
        return "%s:%s" % (host, self.port)


def check_tube(name: str, what: str = "tube") -> str:
    """``name`` if beanstalkd accepts it as a tube name, else ValueError."""
    if (not name or len(name) > _MAX_NAME or name[0] == "-"
            or not set(name) <= _NAME_CHARS):
        raise ValueError("%s %r is not a valid tube name (1-%d of A-Z a-z 0-9 -+/;.$_(), "
                         "not starting with '-')" % (what, name, _MAX_NAME))
    return name


def _option_value(name: str, kind: str, raw: str) -> Any:
    """A query parameter's value, typed; ValueError naming the parameter."""
    low = raw.strip().lower()
    if kind == "seconds" or kind == "number":
        if low in _NONE:
            return None
        try:
            number = float(low)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise ValueError("URL option %s=%r: expected a positive number or 'none'" % (name, raw))
        return int(number) if number.is_integer() and kind == "number" else number
    if kind == "bool":
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("URL option %s=%r: expected true or false" % (name, raw))
    if kind == "encoding":
        if low in _NONE:
            return None          # bodies stay bytes
        try:
            codecs.lookup(raw)
        except LookupError:
            raise ValueError("URL option encoding=%r: unknown encoding" % (raw,)) from None
        return raw
    if kind == "tube":
        return check_tube(raw, "URL option tube=")
    if not raw:
        raise ValueError("URL option %s is empty" % (name,))
    return raw


def _split(url: str) -> SplitResult:
    if not isinstance(url, str):
        raise ValueError("URL must be a str, not %s" % type(url).__name__)
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("URL %r contains whitespace or control characters" % (url,))
    try:
        parts = urlsplit(url)
    except ValueError as exc:          # e.g. an unbalanced '[' in the host
        raise ValueError("malformed URL %r: %s" % (url, exc)) from None
    if parts.scheme not in SCHEMES:
        raise ValueError("URL scheme %r is not one of %s" % (parts.scheme, ", ".join(
            s + "://" for s in SCHEMES)))
    if parts.fragment or url.endswith("#"):
        raise ValueError("URL %r: a fragment ('#...') has no meaning here" % (url,))
    return parts


def _is_ipv4(text: str) -> bool:
    """True when ``text`` is a dotted-quad IPv4 address."""
    try:
        socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return False
    return True


def _host_port(parts: SplitResult, url: str) -> Tuple[str, int]:
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError("URL %r: user information ('...@') is not supported: "
                         "beanstalkd has no authentication (use TLS client certificates)" % (url,))
    if netloc.startswith("["):
        inside, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("URL %r: malformed [IPv6] host" % (url,))
        inside = unquote(inside)            # a zone id: [fe80::1%25eth0]
        try:
            socket.inet_pton(socket.AF_INET6, inside.split("%", 1)[0])
        except OSError:
            # the same facts urlsplit reports itself on Python >= 3.11 (3.9/3.10 let these through)
            if _is_ipv4(inside):
                raise ValueError("URL %r: an IPv4 address cannot be in brackets" % (url,)) from None
            raise ValueError("URL %r: host %r in brackets is not an IPv6 address"
                             % (url, inside)) from None
        host = inside
    else:
        if netloc.count(":") > 1:
            raise ValueError("URL %r: an IPv6 address goes in brackets: [::1]:11300" % (url,))
        host, _, rest = netloc.partition(":")
        rest = ":" + rest if _ else ""
        if not host:
            raise ValueError("URL %r: the host is missing" % (url,))
        if not all(c.isalnum() or c in "-._" for c in host):
            raise ValueError("URL %r: host %r is not a host name or address" % (url, host))
    if not rest:
        return host, DEFAULT_PORT
    raw_port = rest[1:]
    if not (raw_port.isascii() and raw_port.isdigit() and 1 <= int(raw_port) <= 65535):
        raise ValueError("URL %r: port %r is not a number in 1-65535" % (url, raw_port))
    return host, int(raw_port)


def parse_url(url: str) -> Endpoint:
    """Parse ``beanstalk://host[:port][/tube][?options]``, ``beanstalks://``
    (TLS) or ``unix:///path/to/socket[?options]``.

    Options (query parameters): socket_timeout, connect_timeout (seconds or
    ``none``), encoding (``none``: bodies stay bytes), keepalive_idle,
    keepalive_interval, keepalive_count, auto_reconnect, parse_yaml (true or
    false), tube (the only way to name one for a unix socket); with
    ``beanstalks://`` also ca_file, cert_file, key_file, server_hostname.
    Anything malformed, unknown, repeated or out of range is a ValueError
    naming the part at fault. Nothing is looked up or connected.
    """
    parts = _split(url)
    tls = parts.scheme == "beanstalks"
    host: Optional[str] = None
    port: Optional[int] = None
    unix_socket: Optional[str] = None
    tube: Optional[str] = None
    if parts.scheme == "unix":
        if parts.netloc:
            raise ValueError("URL %r: a unix URL has no host: write unix:///absolute/path"
                             % (url,))
        unix_socket = unquote(parts.path)
        if not unix_socket.startswith("/") or unix_socket.endswith("/"):
            raise ValueError("URL %r: the unix socket path %r is not an absolute file path"
                             % (url, unix_socket))
    else:
        host, port = _host_port(parts, url)
        if parts.path not in ("", "/"):
            tube = check_tube(unquote(parts.path[1:]), "URL path: tube")
    options: Dict[str, Any] = {}
    tls_options: Dict[str, str] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True) \
            if parts.query else []
    except ValueError:
        raise ValueError("URL %r: malformed query %r (expected name=value&...)"
                         % (url, parts.query)) from None
    for name, raw in pairs:
        if name in options or name in tls_options:
            raise ValueError("URL option %s is given twice" % (name,))
        if name in _OPTIONS:
            options[name] = _option_value(name, _OPTIONS[name], raw)
        elif name in _TLS_OPTIONS:
            if not tls:
                raise ValueError("URL option %s needs the beanstalks:// scheme (TLS)" % (name,))
            tls_options[name] = _option_value(name, _TLS_OPTIONS[name], raw)
        else:
            raise ValueError("URL option %r is unknown (known: %s)" % (
                name, ", ".join(sorted(list(_OPTIONS) + list(_TLS_OPTIONS)))))
    if "tube" in options:
        if tube is not None:
            raise ValueError("URL %r names the tube twice (path and tube=)" % (url,))
        tube = options.pop("tube")
    if "key_file" in tls_options and "cert_file" not in tls_options:
        raise ValueError("URL option key_file needs cert_file")
    return Endpoint(parts.scheme, host, port, unix_socket, tube, tls, options, tls_options)


def ssl_context(value: Any) -> Optional[ssl.SSLContext]:
    """The SSLContext an ``ssl=`` argument means: None/False -> no TLS,
    True -> ``ssl.create_default_context()`` (certificates and host names
    verified against the system CAs), an ``ssl.SSLContext`` -> itself.
    Anything else is a ValueError."""
    if value is None or value is False:
        return None
    if value is True:
        return ssl.create_default_context()
    if isinstance(value, ssl.SSLContext):
        return value
    raise ValueError("ssl must be True, False, None or an ssl.SSLContext, not %r" % (value,))


def connection_kwargs(endpoint: Endpoint, options: Mapping[str, Any]) -> Dict[str, Any]:
    """The Connection keywords for ``endpoint``: host/port or unix_socket, the
    query's options, then ``options`` (keywords win over the query). For a
    ``beanstalks://`` URL, ``ssl`` is the ``ssl=`` keyword (True or an
    SSLContext) or a default context loading the query's ca_file/cert_file/
    key_file; ``server_hostname`` defaults to the URL's host. ``tube`` is not
    included: the caller uses and watches ``endpoint.tube``."""
    kwargs: Dict[str, Any] = dict(endpoint.options)
    if endpoint.unix_socket is not None:
        kwargs["unix_socket"] = endpoint.unix_socket
    else:
        kwargs["host"] = endpoint.host
        kwargs["port"] = endpoint.port
    given = dict(options)
    for name in ("host", "port", "unix_socket"):
        if name in given:
            raise ValueError("%s= conflicts with the URL: put it in the URL" % (name,))
    tls_given = given.pop("ssl", None)
    if endpoint.tls:
        files = {k: v for k, v in endpoint.tls_options.items() if k != "server_hostname"}
        if tls_given is not None and tls_given is not True:
            if files:
                raise ValueError("ssl= conflicts with the URL options %s: give one or the other"
                                 % ", ".join(sorted(files)))
            if tls_given is False:
                raise ValueError("ssl=False conflicts with the beanstalks:// scheme")
            kwargs["ssl"] = ssl_context(tls_given)
        else:
            kwargs["ssl"] = client_context(**files)
        if "server_hostname" in endpoint.tls_options:
            kwargs["server_hostname"] = endpoint.tls_options["server_hostname"]
    elif tls_given:
        raise ValueError("ssl= needs a beanstalks:// URL, not %s://" % (endpoint.scheme,))
    kwargs.update(given)
    return kwargs


def client_context(ca_file: Optional[str] = None, cert_file: Optional[str] = None,
                   key_file: Optional[str] = None) -> ssl.SSLContext:
    """A verifying client context: the system CAs, or only ``ca_file``; with
    ``cert_file`` (and ``key_file`` when the key is apart) a client
    certificate for mutual TLS. ValueError naming the file that cannot be
    loaded."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError("ca_file %r cannot be loaded: %s" % (ca_file, _reason(exc))) from None
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError("cert_file %r / key_file %r cannot be loaded: %s"
                             % (cert_file, key_file, _reason(exc))) from None
    return context


# connect_timeout not given: socket.getdefaulttimeout() when connecting
USE_DEFAULT: Any = object()


def connect_timeout(setting: Any) -> Optional[float]:
    """The connect timeout a ``connect_timeout`` setting (a checked value or
    USE_DEFAULT) stands for now: USE_DEFAULT reads socket.getdefaulttimeout()
    (0 or None: no limit), as beanstalkc's default did."""
    if setting is USE_DEFAULT:
        return socket.getdefaulttimeout() or None
    return setting  # type: ignore[no-any-return]


def check_timeout(name: str, value: Any) -> Optional[float]:
    """``value`` (seconds) as a float, or None; ValueError naming ``name``
    for anything else (<= 0, nan, inf, more than a year, a bool, a str)."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
        if 0 < seconds <= MAX_TIMEOUT:       # False for nan
            return seconds
    raise ValueError("%s must be None or a number of seconds in (0, %d], not %r"
                     % (name, MAX_TIMEOUT, value))


def check_keepalive(name: str, value: Any) -> Optional[int]:
    """A keepalive setting (``keepalive_idle``, ``keepalive_interval``,
    ``keepalive_count``) as a whole number (rounded up), or None: the OS
    default; ValueError naming ``name`` for anything else."""
    if value is None:
        return None
    maximum = KEEPALIVE_MAX[name]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        if 0 < number <= maximum:
            return math.ceil(number)
    raise ValueError("%s must be None or a number in (0, %d], not %r" % (name, maximum, value))


def tls_settings(ssl_arg: Any, server_hostname: Any, unix_socket: Optional[str]
                 ) -> Tuple[Optional[ssl.SSLContext], Optional[str]]:
    """The checked ``ssl=`` and ``server_hostname=`` arguments of a
    connection: (SSLContext or None, server_hostname). ValueError for a bad
    value, and for a verifying context over a unix socket without
    ``server_hostname`` (there is no host name to verify)."""
    context = ssl_context(ssl_arg)
    hostname = check_server_hostname(server_hostname)
    if (context is not None and context.check_hostname
            and unix_socket is not None and hostname is None):
        raise ValueError("ssl over a unix_socket needs server_hostname= (the name to verify)")
    return context, hostname


def check_server_hostname(value: Any) -> Optional[str]:
    """``server_hostname`` checked: None or a non-empty str."""
    if value is None or (isinstance(value, str) and value):
        return value
    raise ValueError("server_hostname must be None or a non-empty str, not %r" % (value,))


def _is_timeout(exc: BaseException) -> bool:
    """A socket or asyncio timeout (distinct classes before Python 3.11, both empty
    when printed); asyncio is only consulted when something already imported it."""
    aio = sys.modules.get("asyncio")
    return isinstance(exc, socket.timeout) or (
        aio is not None and isinstance(exc, aio.TimeoutError))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return "certificate verify failed: %s" % exc.verify_message
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return "%s (%s)" % (exc.reason.lower().replace("_", " "), exc.library or "ssl")
    if _is_timeout(exc):
        return "timed out"
    return str(exc) or type(exc).__name__


def tls_failure(address: str, exc: BaseException) -> str:
    """Why the TLS handshake with ``address`` failed, in one line."""
    return "TLS handshake with %s failed: %s" % (address, _reason(exc))


def tls_refused(address: str, exc: BaseException) -> str:
    """Why a TLS connection failed on its first round trip, in one line."""
    return ("TLS connection to %s failed right after the handshake (a server closes here "
            "when it refuses a missing or untrusted client certificate): %s" % (address, exc))


def tls_peer_gone(sock: ssl.SSLSocket) -> bool:
    """Whether the peer already closed (or sent unasked-for data on) an idle
    TLS connection, without blocking. TLS records that carry no data (session
    tickets) are consumed and do not count."""
    if sock.pending():
        return True                    # decrypted data nobody asked for
    before = sock.gettimeout()
    try:
        sock.settimeout(0.0)
        try:
            return sock.recv(1) is not None    # b"": closed; data: stray bytes
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except (OSError, ValueError):
            return True                # reset, close_notify, closed under us
    finally:
        try:
            sock.settimeout(before)
        except OSError:
            pass


__all__ = ["Endpoint", "parse_url", "connection_kwargs", "client_context", "ssl_context",
           "check_server_hostname", "check_tube", "check_timeout", "check_keepalive",
           "tls_settings", "tls_failure", "tls_refused", "tls_peer_gone",
           "DEFAULT_PORT", "SCHEMES", "SSLArg"]
