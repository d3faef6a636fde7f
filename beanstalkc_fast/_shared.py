"""What both protocol cores (and the front ends) share, written once: the
protocol's limits and reply shapes, the rules for names, numbers and bodies,
socket and timeout helpers, the typing of stats values and the failure mapping of
a core. The windowed pipeline driver of both cores is in ``_window``."""

import decimal
import math
import numbers
import _socket
import socket
import ssl
import struct
import sys
from typing import Any, Callable, FrozenSet, Optional, Tuple

from .errors import (BodyTypeError, ConcurrentUseError, ConnectionBroken, SocketError,
                     UnexpectedResponse)

MAX_LINE = 1024               # longest reply line accepted (valid ones are < 230)
MAX_BODY = 1 << 30            # beanstalkd's own ceiling for -z
MAX_UINT32 = (1 << 32) - 1
MAX_UINT64 = (1 << 64) - 1
READ_CHUNK = 1 << 16
WRITE_CHUNK = 1 << 18
SCATTER_MIN = 1 << 13         # a put body this big leaves from its own buffer (no copy)
NAME_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()")

# reply status -> shape: 0 no argument, 1 one integer, 2 optional integer,
# 3 id + body, 4 body only, 5 a name
_SHAPES = {
    "INSERTED": 1, "BURIED": 2, "WATCHING": 1, "KICKED": 2, "USING": 5,
    "RESERVED": 3, "FOUND": 3, "OK": 4,
    "DEADLINE_SOON": 0, "TIMED_OUT": 0, "DELETED": 0, "NOT_FOUND": 0,
    "RELEASED": 0, "TOUCHED": 0, "NOT_IGNORED": 0, "PAUSED": 0,
    "EXPECTED_CRLF": 0, "JOB_TOO_BIG": 0, "DRAINING": 0, "OUT_OF_MEMORY": 0,
    "INTERNAL_ERROR": 0, "BAD_FORMAT": 0, "UNKNOWN_COMMAND": 0,
}

Reply = Tuple[str, Any, Optional[bytes]]


def check_uint(name: str, value: Any, maximum: int = MAX_UINT32) -> int:
    """``value`` as a protocol integer in 0..maximum, or TypeError/ValueError.

    An int, or a finite real number (float, Fraction, Decimal, numpy scalars)
    truncated toward zero, which is what beanstalkc's ``%d`` sent: 2.9 -> 2,
    -0.5 -> 0. The range is checked after truncation. bool is refused (a
    flag passed as a job id would name job 1), so are str, None, NaN, infinity.
    """
    number: int = value if type(value) is int else _truncate(name, value)
    if number < 0 or number > maximum:
        raise ValueError("%s must be in 0..%d, got %d" % (name, maximum, number))
    return number


def _truncate(name: str, value: Any) -> int:
    """A real number (not bool) truncated toward zero, else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
        raise TypeError("%s must be a number, not %s" % (name, type(value).__name__))
    try:
        return int(math.trunc(value))
    except (ValueError, OverflowError, ArithmeticError):
        raise ValueError("%s must be a finite number, got %r" % (name, value)) from None


def check_name(name: Any) -> bytes:
    """A tube name as bytes, checked against the protocol's rules."""
    if isinstance(name, str):
        try:
            raw = name.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("tube name must be ASCII: %r" % (name,)) from None
    elif isinstance(name, bytes):
        raw = name
    else:
        raise TypeError("tube name must be str, not %s" % type(name).__name__)
    if not 1 <= len(raw) <= 200:
        raise ValueError("tube name must be 1..200 bytes: %r" % (name,))
    if raw[0] == 45 or not NAME_CHARS.issuperset(raw):   # 45 == ord("-")
        raise ValueError("invalid tube name: %r" % (name,))
    return raw


def encode_body(body: Any, encoding: Optional[str]) -> bytes:
    """A job body as bytes: str encoded, bytes-like as is, else TypeError."""
    if type(body) is bytes:
        return body
    if isinstance(body, str):
        if encoding is None:
            raise BodyTypeError("job body must be bytes when encoding is None, not str")
        return body.encode(encoding)
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise BodyTypeError("job body must be str or bytes, not %s" % type(body).__name__)



def body_buffer(body: Any, encoding: Optional[str]) -> Any:
    """A job body as a buffer of bytes whose ``len`` is its byte count: bytes
    and bytearray as they are, a contiguous memoryview as a byte view of the
    same memory (no copy), anything else as ``encode_body`` makes it."""
    if type(body) is bytes or type(body) is bytearray:
        return body
    if type(body) is memoryview and body.c_contiguous and body.ndim == 1:
        return body.cast("B") if body.format != "B" else body
    return encode_body(body, encoding)


MIN_TIMEOUT = 1e-6            # a positive timeout never rounds down to "forever"
MAX_TIMEOUT = 2e6             # ~23 days; longer ones are clamped (poll() takes int ms)
# The longest a blocking send or receive waits before the core looks at
# signals again: a Ctrl-C that lands just before a wait (or on another
# thread) interrupts it within this many seconds, also a wait without a deadline.
WAIT_SLICE = 1.0
# the socket module's flags are IntFlag members, whose ``|`` runs Python code:
# kept as plain ints, they cost nothing per send
SEND_FLAGS = int(getattr(socket, "MSG_NOSIGNAL", 0))    # EPIPE, never SIGPIPE
_UNSET = object()             # no timeout applied to the socket yet


def _clamp(seconds: Optional[float]) -> Optional[float]:
    """A timeout the OS can express: None stays None (forever), anything
    else lies in MIN_TIMEOUT..MAX_TIMEOUT."""
    if seconds is None:
        return None
    if not seconds > MIN_TIMEOUT:          # also NaN: never "forever"
        return MIN_TIMEOUT
    return min(float(seconds), MAX_TIMEOUT)


def _set_timeout(sock: socket.socket, seconds: Optional[float]) -> None:
    """Kernel-side send/receive timeouts on a blocking socket (None: wait
    forever), rounded up to what the kernel can express."""
    seconds = _clamp(seconds)
    if seconds is None:
        whole = usec = 0                   # 0 means "no timeout" to the kernel
    else:
        whole = int(seconds)
        usec = max(math.ceil((seconds - whole) * 1e6), 1 if whole == 0 else 0)
        if usec >= 1000000:
            whole, usec = whole + 1, 0
    if sys.platform == "win32":
        packed = struct.pack("I", whole * 1000 + math.ceil(usec / 1000))
    else:
        packed = struct.pack("ll", whole, usec)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, packed)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, packed)


_DONTWAIT = int(getattr(socket, "MSG_DONTWAIT", 0))
_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")      # not on Windows


def send_flags(sock: Any, extra: int = 0) -> int:
    """The flags for ``sock.send``: none on a TLS socket (``ssl.SSLSocket``
    refuses any), else MSG_NOSIGNAL and ``extra``."""
    return 0 if isinstance(sock, ssl.SSLSocket) else SEND_FLAGS | extra


# on_timeout(began) -> began: called when a socket timeout (a wait slice) ran
# out, with when the wait began (None: at the start of this slice); raises
# when the wait is over, else returns when it began (see _pyprotocol.Core)
OnTimeout = Optional[Callable[[Optional[float]], float]]


def slice_ran_out(exc: OSError) -> bool:
    """``exc`` is the socket object's own timeout, not the kernel's ETIMEDOUT
    (on Python 3.10+ both are TimeoutError, which socket.timeout names)."""
    return isinstance(exc, socket.timeout) and exc.errno is None


def _next_slice(exc: OSError, on_timeout: OnTimeout, began: Optional[float]) -> float:
    """A send or receive failed with ``exc``: re-raise it unless it is a wait
    slice running out and ``on_timeout`` lets the wait go on; when the wait began."""
    if on_timeout is None or not slice_ran_out(exc):
        raise exc
    return on_timeout(began)


def _send_all(sock: Any, data: bytes, on_timeout: OnTimeout = None) -> None:
    """Send all of ``data`` through the socket object; its timeout bounds each
    wait for buffer room, not the whole transfer (as SO_SNDTIMEO does), or
    with ``on_timeout``, one slice of the wait."""
    flags = send_flags(sock)
    began = None
    view: Any = data                      # a view of the rest only after a partial send
    while len(view):
        try:
            sent = sock.send(view, flags)
        except OSError as exc:
            began = _next_slice(exc, on_timeout, began)
            continue
        began = None
        if sent == len(view):             # usually all of it at once
            return
        view = memoryview(view)[sent:]


def plain_socket(sock: Any) -> bool:
    """True for a socket of exactly the standard library's class (also its
    copy under eventlet): only those get direct-descriptor IO in the Cython
    core and ``sendmsg`` in ``send_parts``. gevent and eventlet sockets
    (non-blocking underneath), ``ssl.SSLSocket`` (no sendmsg) and other
    subclasses go through the object's ``send``."""
    cls = type(sock)
    return (cls.__module__ == "socket" and cls.__qualname__ == "socket"
            and issubclass(cls, _socket.socket))


def send_parts(sock: Any, parts: Tuple[Any, ...], on_timeout: OnTimeout = None) -> None:
    """Send the buffers ``parts`` in order, each from its own memory (none
    joined or copied): one ``sendmsg`` per try on a plain socket, else one
    ``_send_all`` per part. The socket's timeout bounds each wait for buffer
    room, as in ``_send_all``."""
    if not (_HAS_SENDMSG and plain_socket(sock)):
        for part in parts:
            _send_all(sock, part, on_timeout)
        return
    views = [memoryview(part) for part in parts]
    flags = send_flags(sock)
    first = 0
    began = None
    while first < len(views):
        try:
            n = sock.sendmsg(views[first:], (), flags)
        except OSError as exc:
            began = _next_slice(exc, on_timeout, began)
            continue
        began = None
        while first < len(views) and n >= len(views[first]):
            n -= len(views[first])
            first += 1
        if n:
            views[first] = views[first][n:]


def _prepare(sock: Any) -> None:
    """Make ``sock`` blocking and never raise SIGPIPE where a flag cannot."""
    sock.settimeout(None)
    if hasattr(socket, "SO_NOSIGPIPE"):    # BSD and macOS have no MSG_NOSIGNAL
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_NOSIGPIPE, 1)
        except (OSError, AttributeError):
            pass



_STR_KEYS = frozenset(("name", "tube", "state", "version", "hostname", "os",
                       "platform"))


def _scalar(key: str, raw: str, str_keys: FrozenSet[str]) -> Any:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1]
    if key in str_keys or key in _STR_KEYS:
        return raw
    digits = raw[1:] if raw[:1] == "-" else raw
    if digits.isdigit() and digits.isascii():
        return int(raw)
    if raw == "true":
        return True
    if raw == "false":
        return False
    whole, dot, frac = digits.partition(".")
    if dot and whole.isdigit() and frac.isdigit() and digits.isascii():
        return float(raw)
    return raw




def set_keepalive(sock: Any, idle: Optional[int], interval: Optional[int],
                  count: Optional[int]) -> None:
    """SO_KEEPALIVE with the given idle time, probe interval and probe count
    (seconds; None: the OS default), and TCP_USER_TIMEOUT bounding how long
    sent data may stay unacknowledged (a command sent to a vanished host);
    options the platform lacks are skipped."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                       ("TCP_KEEPCNT", count)):
        if value is not None and hasattr(socket, opt):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
            except OSError:
                pass
    if idle is not None and interval is not None and count is not None \
            and hasattr(socket, "TCP_USER_TIMEOUT"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            int((idle + interval * count) * 1000))
        except OSError:
            pass


def note_lost_reply(exc: BaseException, note: str) -> None:
    """Add to a SocketError what its lost reply leaves unknown (``note``,
    e.g. whether a job was inserted); not when nothing was sent
    (ConnectionBroken)."""
    if note and isinstance(exc, SocketError) and not isinstance(exc, ConnectionBroken) \
            and exc.args:
        exc.args = ("%s; %s" % (exc.args[0], note),) + exc.args[1:]


# -- a core's entry, failure and close (both cores call these) -------------------

def refusal(broken: Optional[str]) -> Exception:
    """Why a core refuses a command: broken (``broken``), else in use."""
    if broken is not None:
        return ConnectionBroken("connection is broken (%s); call reconnect()" % broken)
    return ConcurrentUseError(
        "connection used by two threads at once; use one Connection per thread")


def failure(exc: BaseException, closing: bool) -> Tuple[Optional[str], BaseException]:
    """What a failure mid-command makes of a core: the reason it is broken
    now (None: keep the one close() gave) and the exception to raise."""
    if closing and isinstance(exc, (OSError, SocketError)):
        err = SocketError("connection closed by close() while in use")
        err.__cause__ = exc
        return None, err
    if isinstance(exc, SocketError):
        return str(exc), exc
    if isinstance(exc, UnexpectedResponse):
        return "unexpected response: %s" % (exc,), exc
    if isinstance(exc, OSError):
        reason = "socket error: %s" % (exc,)
        err = SocketError(reason)
        err.__cause__ = exc
        return reason, err
    return "interrupted: %r" % (exc,), exc


def say_quit(sock: Any) -> None:
    """Send ``quit`` if it goes out at once (never blocks, raises or SIGPIPEs)."""
    try:
        sock.send(b"quit\r\n", send_flags(sock, _DONTWAIT))
    except OSError:
        pass


def wake(sock: Any) -> None:
    """Shut ``sock`` down, which wakes a call blocked on it in another thread."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
