"""Connection: the classic beanstalkc API on top of the chosen core.

Every public method validates its arguments, encodes one command, lets the
core send it and read exactly one reply, and turns the reply into a return
value or a precise exception.
"""

import itertools
import os
import select
import socket
import ssl as ssl_module
import time
import weakref
from typing import Any, Callable, Iterable, Iterator, List, Optional, Union

from . import _core
from . import endpoint as _endpoint
from .errors import (ERROR_CLASSES, BatchError, ConnectionBroken, DeadlineSoon,
                     SocketError, UnexpectedResponse, command_failed)
from .job import Job
from .stats import JobStats, ServerStats, TubeStats

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 11300
DEFAULT_PRIORITY = 2 ** 31
DEFAULT_TTR = 120
DEFAULT_TUBE_NAME = "default"

check_uint = _core.check_uint
check_name = _core.check_name
encode_put = _core.encode_put
encode_id = _core.encode_id
parse_yaml = _core.parse_yaml

_SERVER_STR_KEYS = frozenset(("id",))
_NO_KEYS: frozenset[str] = frozenset()

_LIVE: "weakref.WeakSet[Connection]" = weakref.WeakSet()

# connect_timeout not given: socket.getdefaulttimeout() when connecting
_USE_DEFAULT: Any = object()
# With auto_reconnect, a connection unused for this long is checked for a
# close the server already sent before anything is written on it.
IDLE_CHECK_AFTER = 1.0

# Commands that change nothing a second attempt could duplicate or lose:
# the only ones auto_reconnect sends again after their reply was lost.
_SAFE_TO_REPEAT = frozenset((
    b"reserve", b"reserve-with-timeout", b"reserve-job", b"peek", b"peek-ready",
    b"peek-delayed", b"peek-buried", b"stats", b"stats-tube", b"stats-job",
    b"list-tubes", b"list-tube-used", b"list-tubes-watched", b"use", b"watch",
    b"ignore", b"pause-tube"))


def _after_fork_in_child() -> None:
    # The child shares the parent's socket: never let it talk on it.
    for conn in list(_LIVE):
        core = conn._core
        if core is not None and core.broken is None:
            core.broken = "inherited across fork(); call reconnect() in the child"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

Body = Union[str, bytes, bytearray, memoryview]
JobOrId = Union[Job, int]


_check_timeout = _endpoint.check_timeout
_check_keepalive = _endpoint.check_keepalive


def _peer_gone(sock: Any) -> bool:
    """Whether the peer already closed (or sent unasked-for bytes on) an idle
    socket, without blocking: a poll with timeout 0, then a 1-byte peek."""
    if isinstance(sock, ssl_module.SSLSocket):
        return _endpoint.tls_peer_gone(sock)
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            if not poller.poll(0):
                return False
        elif not select.select([sock], [], [], 0)[0]:
            return False
        sock.recv(1, socket.MSG_PEEK)      # readable: b"" (closed) or stray bytes
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):
        pass                               # reset, or closed under us
    return True


def _fail(command: str, status: str, value: Any) -> Exception:
    results = [] if value is None else [str(value)]
    if status in ERROR_CLASSES:
        return command_failed(command, status, results)
    return UnexpectedResponse(command, status, results)


class Connection:
    """A connection to one beanstalkd server.

    Connects at once (``SocketError`` when that fails). Beyond beanstalkc:
    ``encoding`` (None: bodies stay bytes), ``socket_timeout``
    (the read deadline of every command; a reserve with a timeout is allowed
    that much longer, a reserve without one waits indefinitely), ``unix_socket``
    (a path, instead of host and port), ``keepalive_*`` (TCP keepalive idle
    time, probe interval and probe count, seconds), ``ssl`` (True: TLS with
    ``ssl.create_default_context()``, or an ``ssl.SSLContext``; certificates
    and host names verified as the context says, the default verifies both)
    and ``server_hostname`` (the name the certificate must carry; default:
    ``host``). A failed TLS handshake is a SocketError saying why, before
    anything is sent. TCP_NODELAY and
    SO_KEEPALIVE are on. Timeouts are None or seconds in (0, 1 year];
    ``connect_timeout`` left out means ``socket.getdefaulttimeout()`` at the
    time of connecting.
    ``parse_yaml``: True parses stats and tube lists into dicts and lists,
    False returns the raw text, a callable gets the raw text.

    ``auto_reconnect=True``: a call on a broken connection (earlier failure,
    ``fork()``, a close the server sent while the connection was idle) first
    reconnects, restoring the used tube and the watch list; a command whose
    reply was lost is sent again, once, on a new connection only when
    repeating it is safe (reserve, peek, stats, list, use, watch, ignore,
    pause-tube). A lost reply to put, delete, release, bury, touch, kick or a
    batch always raises ``SocketError``. A connection closed by ``close()``
    stays closed until ``connect()`` or ``reconnect()``.

    Ranges: priorities are 0..2**32-1, 0 the most urgent; delays, TTRs and
    timeouts are whole seconds, 0..2**32-1; job ids up to 2**64-1. A finite
    float (or Fraction, Decimal) is truncated toward zero, as beanstalkc's
    ``%d`` did; the range is checked after that. Arguments are checked
    before anything is sent: ``ValueError`` for a number out of range, NaN,
    infinity or an invalid tube name, ``TypeError`` for a value of the wrong
    type (a bool, a str, None; a body: ``BodyTypeError``).

    Every command can also raise: ``SocketError`` (the connection failed,
    timed out or was lost; it is broken from then on), ``ConnectionBroken``
    (a ``SocketError``: it was already broken, nothing was sent),
    ``ConcurrentUseError`` (another thread is using it) and
    ``UnexpectedResponse`` (a reply the command does not allow).

    A connection belongs to one thread; ``close()`` from another thread
    wakes a call blocked in it with ``SocketError``.
    """

    # Class-level defaults, so that a subclass whose __init__ does not call
    # this one (as beanstalkc allowed: set host and port, call connect()) works.
    host = DEFAULT_HOST
    port = DEFAULT_PORT
    unix_socket: Optional[str] = None
    encoding: Optional[str] = "utf-8"
    keepalive: Any = (60, 10, 3)
    server_hostname: Optional[str] = None
    _ssl_context: Optional[ssl_module.SSLContext] = None
    _parse = True
    _yaml: Optional[Callable[[str], Any]] = None
    _auto_reconnect = False
    _connect_timeout: Any = _USE_DEFAULT
    _socket_timeout: Optional[float] = 60.0
    _using = DEFAULT_TUBE_NAME
    _watching: List[str] = [DEFAULT_TUBE_NAME]     # never mutated: replaced
    _core: Any = None
    _closed = False
    _last_io = 0.0

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 parse_yaml: Union[bool, Callable[[str], Any]] = True,
                 connect_timeout: Optional[float] = _USE_DEFAULT,
                 encoding: Optional[str] = "utf-8",
                 socket_timeout: Optional[float] = 60.0,
                 unix_socket: Optional[str] = None,
                 keepalive_idle: Optional[float] = 60, keepalive_interval: Optional[float] = 10,
                 keepalive_count: Optional[int] = 3, auto_reconnect: bool = False,
                 ssl: _endpoint.SSLArg = None, server_hostname: Optional[str] = None) -> None:
        if parse_yaml is True:
            self._yaml = None
            self._parse = True
        else:
            self._yaml = parse_yaml if callable(parse_yaml) else None
            self._parse = False
        self.host = host
        self.port = port
        self.unix_socket = unix_socket
        if connect_timeout is not _USE_DEFAULT:
            self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.encoding = encoding
        self.keepalive = (_check_keepalive("keepalive_idle", keepalive_idle),
                          _check_keepalive("keepalive_interval", keepalive_interval),
                          _check_keepalive("keepalive_count", keepalive_count))
        self.auto_reconnect = auto_reconnect
        self._ssl_context, self.server_hostname = _endpoint.tls_settings(
            ssl, server_hostname, unix_socket)
        self._using = DEFAULT_TUBE_NAME
        self._watching = [DEFAULT_TUBE_NAME]
        self._core = None
        self.connect()

    # -- settings -------------------------------------------------------------
    @property
    def connect_timeout(self) -> Optional[float]:
        """How long a connection attempt may take, in seconds, or None for no limit."""
        seconds = self._connect_timeout
        if seconds is _USE_DEFAULT:
            return socket.getdefaulttimeout() or None
        return seconds  # type: ignore[no-any-return]

    @connect_timeout.setter
    def connect_timeout(self, seconds: Optional[float]) -> None:
        self._connect_timeout = _check_timeout("connect_timeout", seconds)

    @property
    def socket_timeout(self) -> Optional[float]:
        """The read deadline of every command; a new value applies from the
        next command on."""
        return self._socket_timeout

    @socket_timeout.setter
    def socket_timeout(self, seconds: Optional[float]) -> None:
        seconds = _check_timeout("socket_timeout", seconds)
        self._socket_timeout = seconds
        core = self._core
        if core is not None:
            core.timeout = seconds        # the cores apply it from the next command on

    @property
    def auto_reconnect(self) -> bool:
        """Reconnect before a call on a broken connection (see the class)."""
        return self._auto_reconnect

    @auto_reconnect.setter
    def auto_reconnect(self, on: bool) -> None:
        self._auto_reconnect = bool(on)
        if self._core is not None:
            self._request = self._retrying_request if on else self._core.request

    @property
    def _socket(self) -> Optional[socket.socket]:
        """The underlying socket object (beanstalkc's attribute): an escape
        hatch for socket options. Its blocking mode and timeouts belong to
        the core: use ``socket_timeout`` to change the deadline."""
        return None if self._core is None else self._core.sock

    def __repr__(self) -> str:
        where = self.unix_socket or "%s:%s" % (self.host, self.port)
        core = self._core
        state = ("closed" if self._closed or core is None else
                 "open" if core.broken is None else "broken")
        return "<%s.%s %s %s>" % (type(self).__module__, type(self).__qualname__, where, state)

    # -- connection management ------------------------------------------------
    def connect(self) -> None:
        """Open the socket (TCP, or ``unix_socket``) and restore the used tube
        and the watch list; ``SocketError`` on failure. An open connection is
        closed first. The constructor calls it.
        """
        if self._core is not None:
            self._core.close()
        try:
            if self.unix_socket is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.connect_timeout)
                sock.connect(self.unix_socket)
            else:
                sock = socket.create_connection((self.host, self.port), self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._set_keepalive(sock)
        except OSError as exc:
            # args[0] is the OSError, as with beanstalkc
            raise SocketError(exc) from exc
        if self._ssl_context is not None:
            sock = self._tls_handshake(sock, self._ssl_context)
        core = self._core = _core.Core(sock, self.socket_timeout)
        self._closed = False
        self._request = self._retrying_request if self.auto_reconnect else core.request
        _LIVE.add(self)
        if self._ssl_context is not None:
            self._confirm_tls(core)
        for data, command, ok in self._restore_commands():
            status, value, _ = core.request(data)
            if status != ok:
                raise _fail(command, status, value)
        self._last_io = time.monotonic()

    def _tls_handshake(self, sock: socket.socket,
                       context: ssl_module.SSLContext) -> ssl_module.SSLSocket:
        """``sock`` wrapped in TLS, handshake done within connect_timeout;
        on failure the socket is closed and SocketError says why."""
        hostname = self.server_hostname or (None if self.unix_socket is not None else self.host)
        try:
            return context.wrap_socket(sock, server_hostname=hostname)
        except (OSError, ValueError) as exc:    # SSLError, timeout, reset; bad hostname
            sock.close()
            where = self.unix_socket or "%s:%s" % (self.host, self.port)
            raise SocketError(_endpoint.tls_failure(where, exc)) from exc

    def _confirm_tls(self, core: Any) -> None:
        # A TLS 1.3 server checks the client certificate after the client's
        # handshake is done: one round trip makes a refusal fail here, in
        # connect(), and not on the first command.
        try:
            core.request(b"list-tube-used\r\n")
        except SocketError as exc:
            where = self.unix_socket or "%s:%s" % (self.host, self.port)
            raise SocketError(_endpoint.tls_refused(where, exc)) from exc

    def _set_keepalive(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle, interval, count = self.keepalive
        for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                           ("TCP_KEEPCNT", count)):
            if value is not None and hasattr(socket, opt):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
                except OSError:
                    pass
        # Keepalive probes only an idle connection: also bound how long sent
        # data may stay unacknowledged (a command sent to a vanished host).
        if None not in self.keepalive and hasattr(socket, "TCP_USER_TIMEOUT"):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                                int((idle + interval * count) * 1000))
            except OSError:
                pass

    def close(self) -> None:
        """Send ``quit`` and close the socket; never raises, also on a dead socket.

        Jobs this connection holds reserved go back to ready at once. The
        connection stays closed (also under ``auto_reconnect``) until
        ``connect()`` or ``reconnect()``.
        """
        self._closed = True
        self._close_core()

    def _close_core(self) -> None:
        core = self._core
        if core is None:
            return
        core.close(quit=True, reason="closed by close()")

    def reconnect(self) -> None:
        """Close, connect again, and restore the used tube and the watch list.

        Raises:
            SocketError: the new connection failed (it is then broken, not
                closed); the tubes stay wanted for the next try.
            CommandFailed: the server refused to restore a tube.
        """
        self._closed = False
        self._close_core()
        self.connect()

    def _restore_commands(self) -> List[Any]:
        # the tubes stay recorded as wanted until a reconnect restores them
        commands = []
        if self._using != DEFAULT_TUBE_NAME:
            commands.append((b"use %s\r\n" % self._using.encode("ascii"), "use", "USING"))
        for name in self._watching:
            if name != DEFAULT_TUBE_NAME:
                commands.append((b"watch %s\r\n" % name.encode("ascii"), "watch", "WATCHING"))
        if DEFAULT_TUBE_NAME not in self._watching:
            commands.append((b"ignore %s\r\n" % DEFAULT_TUBE_NAME.encode("ascii"),
                             "ignore", "WATCHING"))
        return commands

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------
    def _live_core(self) -> Any:
        """The core. With auto_reconnect: ConnectionBroken after close(); a new
        core when the old one is broken, or idle and closed by the server."""
        core = self._core
        if self.auto_reconnect:
            if self._closed:
                raise ConnectionBroken("connection was closed by close(); "
                                       "call connect() or reconnect()")
            if core.broken is not None or (
                    time.monotonic() - self._last_io > IDLE_CHECK_AFTER and _peer_gone(core.sock)):
                try:
                    self.reconnect()
                except ConnectionBroken:
                    raise
                except SocketError as exc:
                    # nothing of the caller's command was sent
                    raise ConnectionBroken("reconnect failed: %s" % (exc,)) from exc
                core = self._core
        return core

    def _retrying_request(self, data: bytes, extra: Optional[float] = 0.0) -> Any:
        core = self._live_core()
        try:
            return core.request(data, extra)
        except ConnectionBroken:
            raise
        except SocketError:
            if data.split(None, 1)[0] not in _SAFE_TO_REPEAT:
                raise
        finally:
            self._last_io = time.monotonic()
        # the reply was lost and repeating is harmless: once, on a new connection
        self.reconnect()
        try:
            return self._core.request(data, extra)
        finally:
            self._last_io = time.monotonic()

    def _yaml_result(self, command: str, data: bytes, str_keys: frozenset[str]) -> Any:
        status, value, body = self._request(data)
        if status != "OK":
            raise _fail(command, status, value)
        if self._parse:
            return parse_yaml(body, str_keys)
        text = body.decode("utf-8", "replace")
        return self._yaml(text) if self._yaml is not None else text

    # -- producer ----------------------------------------------------------------
    def put(self, body: Body, priority: int = DEFAULT_PRIORITY, delay: int = 0,
            ttr: int = DEFAULT_TTR) -> int:
        """Send ``put``: insert a job into the used tube and return its id.

        Args:
            body: str (encoded with the connection's ``encoding``, UTF-8 by
                default) or bytes-like (sent as is). With ``encoding=None``
                only bytes-like bodies are accepted.
            priority: 0..2**32-1; lower is more urgent, 0 the most urgent.
                Default ``DEFAULT_PRIORITY`` (2**31).
            delay: seconds, 0..2**32-1, before the job becomes ready.
            ttr: time to run, seconds, 0..2**32-1: how long a worker may hold
                the job reserved before the server releases it (the server
                raises 0 to 1). Default ``DEFAULT_TTR`` (120).

        Returns:
            The new job's id (int).

        Raises:
            JobTooBig: the body is larger than the server's ``-z`` limit
                (65535 bytes by default).
            Buried: the server ran out of memory for its priority queue and
                buried the job; it exists, its id is ``exc.jid``.
            Draining: the server is in drain mode and takes no new jobs.
            SocketError: the reply was lost; the message says the job may or
                may not have been inserted (never re-sent, also not with
                ``auto_reconnect``).
            ValueError, TypeError: a bad argument (a body neither str nor
                bytes-like: ``BodyTypeError``); nothing was sent.
        """
        data = encode_put(body, priority, delay, ttr, self.encoding)
        try:
            status, value, _ = self._request(data)
        except ConnectionBroken:
            raise
        except SocketError as exc:
            exc.args = ("%s; the job may or may not have been inserted" % (exc.args[0],),)
            raise
        if status == "INSERTED":
            jid: int = value
            return jid
        raise _fail("put", status, value)

    # -- consumer ----------------------------------------------------------------
    def reserve(self, timeout: Optional[int] = None) -> Optional[Job]:
        """Send ``reserve`` (or ``reserve-with-timeout``): take a job from the watched tubes.

        Args:
            timeout: None waits as long as it takes; else seconds,
                0..2**32-1 (0: only a job that is ready now).

        Returns:
            The reserved ``Job``, or None when ``timeout`` passed without one.

        Raises:
            DeadlineSoon: a job this connection already holds reserved is
                within a second of its TTR. Not a ``CommandFailed``; the
                connection stays usable: finish, ``touch()`` or release that
                job, then reserve again.
            SocketError: the connection was lost, or no reply came within
                ``socket_timeout`` plus ``timeout`` (a plain reserve has no
                deadline; keepalive still detects a vanished host). With
                ``auto_reconnect`` a lost reserve is sent again on a new
                connection.
            ValueError, TypeError: a bad timeout; nothing was sent.
        """
        if timeout is None:
            status, value, body = self._request(b"reserve\r\n", None)
        else:
            timeout = check_uint("timeout", timeout)
            status, value, body = self._request(
                encode_id(b"reserve-with-timeout ", timeout), timeout)
        if status == "RESERVED":
            return Job(self, value, body, True, self.encoding)
        if status == "TIMED_OUT":
            return None
        if status == "DEADLINE_SOON":
            raise DeadlineSoon(status)
        raise _fail("reserve", status, value)

    def reserve_job(self, jid: int) -> Job:
        """Send ``reserve-job``: reserve the job ``jid`` (up to 2**64-1) whatever its state.

        Needs beanstalkd >= 1.12 (older servers: ``UnknownCommand``).

        Returns:
            The reserved ``Job``.

        Raises:
            NotFound: no such job, or it is reserved already.
            UnknownCommand: the server is older than 1.12.
        """
        status, value, body = self._request(encode_id(b"reserve-job ", jid))
        if status == "RESERVED":
            return Job(self, value, body, True, self.encoding)
        raise _fail("reserve-job", status, value)

    def _expect(self, command: str, data: bytes, ok: str) -> Any:
        status, value, _ = self._request(data)
        if status == ok:
            return value
        raise _fail(command, status, value)

    def delete(self, jid: int) -> None:
        """Send ``delete``: remove the job ``jid`` (up to 2**64-1) for good.

        Returns:
            None.

        Raises:
            NotFound: no such job, or it is reserved by another connection.
            SocketError: the reply was lost (never re-sent).
        """
        status, value, _ = self._request(encode_id(b"delete ", jid))
        if status != "DELETED":
            raise _fail("delete", status, value)

    def release(self, jid: int, priority: int = DEFAULT_PRIORITY, delay: int = 0) -> None:
        """Send ``release``: put a job this connection reserved back to ready.

        Args:
            jid: the job id, up to 2**64-1.
            priority: its new priority, 0..2**32-1 (0 the most urgent).
                ``Job.release()`` keeps the job's own priority instead.
            delay: seconds, 0..2**32-1, before it is ready again (delayed
                until then).

        Returns:
            None.

        Raises:
            NotFound: no such job, or this connection does not hold it
                reserved.
            Buried: the server was out of memory and buried it instead.
        """
        status, value, _ = self._request(b"release %d %d %d\r\n" % (
            _jid(jid), check_uint("priority", priority), check_uint("delay", delay)))
        if status != "RELEASED":
            raise _fail("release", status, value)

    def bury(self, jid: int, priority: int = DEFAULT_PRIORITY) -> None:
        """Send ``bury``: set a job this connection reserved aside until it is kicked.

        Args:
            jid: the job id, up to 2**64-1.
            priority: its new priority, 0..2**32-1 (0 the most urgent).

        Returns:
            None.

        Raises:
            NotFound: no such job, or this connection does not hold it
                reserved.
        """
        self._expect("bury", b"bury %d %d\r\n" % (_jid(jid), check_uint("priority", priority)),
                     "BURIED")

    def touch(self, jid: int) -> None:
        """Send ``touch``: restart the TTR of a job this connection reserved.

        Args:
            jid: the job id, up to 2**64-1.

        Returns:
            None.

        Raises:
            NotFound: no such job, or this connection does not hold it
                reserved.
        """
        self._expect("touch", encode_id(b"touch ", jid), "TOUCHED")

    def kick(self, bound: int = 1) -> int:
        """Send ``kick``: move up to ``bound`` jobs of the used tube to ready.

        Buried jobs are kicked if there are any, else delayed ones.

        Args:
            bound: the most jobs to kick, 0..2**32-1.

        Returns:
            How many jobs were kicked (int).
        """
        kicked: int = self._expect("kick", b"kick %d\r\n" % check_uint("bound", bound), "KICKED")
        return kicked

    def kick_job(self, jid: int) -> None:
        """Send ``kick-job``: move the buried or delayed job ``jid`` (up to 2**64-1) to ready.

        Returns:
            None.

        Raises:
            NotFound: no such job, or it is neither buried nor delayed.
        """
        self._expect("kick-job", encode_id(b"kick-job ", jid), "KICKED")

    # -- peek ----------------------------------------------------------------------
    def _peek(self, command: str, data: bytes) -> Optional[Job]:
        status, value, body = self._request(data)
        if status == "FOUND":
            return Job(self, value, body, False, self.encoding)
        if status == "NOT_FOUND":
            return None
        raise _fail(command, status, value)

    def peek(self, jid: int) -> Optional[Job]:
        """Send ``peek``: look at the job ``jid`` (up to 2**64-1) without reserving it.

        Returns:
            A ``Job`` with ``reserved=False``, or None when there is no such job.
        """
        return self._peek("peek", encode_id(b"peek ", jid))

    def peek_ready(self) -> Optional[Job]:
        """Send ``peek-ready``: the next ready job of the used tube, unreserved, or None."""
        return self._peek("peek-ready", b"peek-ready\r\n")

    def peek_delayed(self) -> Optional[Job]:
        """Send ``peek-delayed``: the delayed job of the used tube with the
        shortest delay left, unreserved, or None."""
        return self._peek("peek-delayed", b"peek-delayed\r\n")

    def peek_buried(self) -> Optional[Job]:
        """Send ``peek-buried``: the next buried job of the used tube, unreserved, or None."""
        return self._peek("peek-buried", b"peek-buried\r\n")

    # -- tubes -----------------------------------------------------------------------
    def tubes(self) -> Any:
        """Send ``list-tubes``: the names of all existing tubes.

        Returns:
            A list of str (the raw YAML text with ``parse_yaml=False``, or what
            the ``parse_yaml`` callable returns).
        """
        return self._yaml_result("list-tubes", b"list-tubes\r\n", _NO_KEYS)

    def using(self) -> str:
        """Send ``list-tube-used``: the name of the tube ``put`` uses (str)."""
        name: str = self._expect("list-tube-used", b"list-tube-used\r\n", "USING")
        return name

    def use(self, name: str) -> str:
        """Send ``use``: ``put`` goes to tube ``name`` from now on.

        Args:
            name: a tube name: 1..200 ASCII letters, digits and ``-+/;.$_()``,
                not starting with ``-``. The tube exists while in use.

        Returns:
            The name (str).

        Raises:
            ValueError, TypeError: an invalid name; nothing was sent.
        """
        used: str = self._expect("use", b"use %s\r\n" % check_name(name), "USING")
        self._using = used
        return used

    def watching(self) -> Any:
        """Send ``list-tubes-watched``: the names of the tubes ``reserve`` takes from.

        Returns:
            A list of str (raw text or the callable's result, per ``parse_yaml``).
        """
        return self._yaml_result("list-tubes-watched", b"list-tubes-watched\r\n", _NO_KEYS)

    def watch(self, name: str) -> int:
        """Send ``watch``: ``reserve`` also takes jobs from tube ``name``.

        Args:
            name: a tube name (rules as for ``use``).

        Returns:
            How many tubes are watched now (int).

        Raises:
            ValueError, TypeError: an invalid name; nothing was sent.
        """
        raw = check_name(name)
        count: int = self._expect("watch", b"watch %s\r\n" % raw, "WATCHING")
        text = raw.decode("ascii")
        if text not in self._watching:
            self._watching = self._watching + [text]
        return count

    def ignore(self, name: str) -> int:
        """Send ``ignore``: stop watching tube ``name``.

        Args:
            name: a tube name (rules as for ``use``).

        Returns:
            How many tubes are watched now (int). Ignoring the last watched
            tube is refused by the server; that returns 1 and raises nothing.

        Raises:
            ValueError, TypeError: an invalid name; nothing was sent.
        """
        raw = check_name(name)
        status, value, _ = self._request(b"ignore %s\r\n" % raw)
        if status == "WATCHING":
            text = raw.decode("ascii")
            self._watching = [w for w in self._watching if w != text]
            watched: int = value
            return watched
        if status == "NOT_IGNORED":
            return 1
        raise _fail("ignore", status, value)

    def pause_tube(self, name: str, delay: int) -> None:
        """Send ``pause-tube``: let no job of tube ``name`` be reserved for ``delay`` seconds.

        Args:
            name: a tube name (rules as for ``use``).
            delay: seconds, 0..2**32-1 (0 ends a pause).

        Returns:
            None.

        Raises:
            NotFound: no such tube.
        """
        self._expect("pause-tube", b"pause-tube %s %d\r\n" % (
            check_name(name), check_uint("delay", delay)), "PAUSED")

    # -- stats -------------------------------------------------------------------------
    def stats(self) -> Union[ServerStats, Any]:
        """Send ``stats``: the server's statistics.

        Returns:
            A dict with int, float, bool and str values (``version``,
            ``hostname``, ``os``, ``id`` always str); the raw text or the
            callable's result, per ``parse_yaml``.
        """
        return self._yaml_result("stats", b"stats\r\n", _SERVER_STR_KEYS)

    def stats_tube(self, name: str) -> Union[TubeStats, Any]:
        """Send ``stats-tube``: the statistics of tube ``name`` (a dict, as ``stats``).

        Raises:
            NotFound: no such tube.
            ValueError, TypeError: an invalid name; nothing was sent.
        """
        return self._yaml_result("stats-tube", b"stats-tube %s\r\n" % check_name(name), _NO_KEYS)

    def stats_job(self, jid: int) -> Union[JobStats, Any]:
        """Send ``stats-job``: the statistics of job ``jid`` (up to 2**64-1), a dict as ``stats``.

        Keys include ``tube``, ``state`` (ready, delayed, reserved, buried),
        ``pri``, ``age``, ``delay``, ``ttr``, ``time-left``, ``reserves``.

        Raises:
            NotFound: no such job.
        """
        return self._yaml_result("stats-job", encode_id(b"stats-job ", jid), _NO_KEYS)

    def _stats_job_dict(self, jid: int) -> JobStats:
        """stats-job as a dict, also when parse_yaml is off; through
        ``stats_job`` (which a subclass may override) when it is on."""
        if self._parse:
            return self.stats_job(jid)
        status, value, body = self._request(encode_id(b"stats-job ", jid))
        if status != "OK":
            raise _fail("stats-job", status, value)
        stats: JobStats = parse_yaml(body, _NO_KEYS)
        return stats

    # -- batches -------------------------------------------------------------------------
    def pipeline(self) -> "Pipeline":
        """A new ``Pipeline`` on this connection: commands collected, then sent as one batch.

        Nothing is sent until ``execute()`` (called when its ``with`` block
        ends without an exception)::

            with conn.pipeline() as p:
                p.put("a"); p.delete(17)
            p.results        # [42, NotFound(...)]: a failure in its place

        Returns:
            A ``Pipeline``.
        """
        return Pipeline(self)

    def _run(self, commands: Iterable[bytes], handlers: Iterable[Callable[..., Any]],
             what: str, raise_errors: bool) -> List[Any]:
        """Pipeline ``commands``; handler i turns reply i into a result or an
        exception instance. BatchError when some item failed (unless not
        ``raise_errors``); SocketError carrying ``results`` when the link broke."""
        replies: List[Any] = []
        try:
            self._live_core().pipeline(commands, replies)
            self._last_io = time.monotonic()
        except SocketError as exc:
            exc.results = [h(*r) for h, r in zip(handlers, replies)]  # type: ignore[attr-defined]
            if not isinstance(exc, ConnectionBroken):
                exc.args = ("%s; %s past the %d confirmed ones may or may not have been %s" % (
                    exc.args[0], "jobs" if what == "put" else "commands", len(replies),
                    "inserted" if what == "put" else "carried out"),)
            raise
        except BaseException as exc:
            exc.results = [h(*r) for h, r in zip(handlers, replies)]  # type: ignore[attr-defined]
            raise
        results = [h(*r) for h, r in zip(handlers, replies)]
        if raise_errors:
            _raise_failed(results, what)
        return results

    def put_many(self, bodies: Iterable[Body], priority: int = DEFAULT_PRIORITY,
                 delay: int = 0, ttr: int = DEFAULT_TTR, raise_errors: bool = True) -> List[Any]:
        """Send a ``put`` per body in one pipelined batch; the job ids in order.

        Args:
            bodies: any iterable of bodies (as for ``put``); it is consumed
                as the batch goes, so a generator never sits in memory.
            priority, delay, ttr: for every job, as for ``put``.
            raise_errors: False returns the per-item results instead of
                raising ``BatchError``.

        Returns:
            A list with one id per body (with ``raise_errors=False``: an id or
            the exception instance per body).

        Raises:
            BatchError: some items failed; every reply was still read, and
                ``exc.results`` holds an id or an exception per item.
            SocketError: the connection was lost; ``exc.results`` holds the
                ids confirmed before the loss, later jobs may or may not have
                been inserted (never re-sent).
            ValueError, TypeError: a bad priority, delay or ttr (nothing
                sent), or a bad body (or an exception from the iterable): every
                body before it was sent and answered, ``exc.results`` holds
                their results, and it and everything after it were not sent;
                the message gives its index.
        """
        check_uint("priority", priority)
        check_uint("delay", delay)
        check_uint("ttr", ttr)
        encoding = self.encoding
        stop: List[Any] = []        # [index, exception] of an item that cannot be sent

        def commands() -> Any:
            items = iter(bodies)
            for index in itertools.count():
                try:
                    body = next(items)
                except StopIteration:
                    return
                except Exception as exc:
                    stop[:] = [index, exc]
                    return
                try:
                    data = encode_put(body, priority, delay, ttr, encoding)
                except Exception as exc:
                    stop[:] = [index, exc]
                    return
                yield data

        results = self._run(commands(), _Handlers(_on_put), "put", False)
        if stop:
            # everything before the bad item went out and was answered
            index, exc = stop
            note = ("put_many item %d: the %d items before it were sent (their results, "
                    "ids or exceptions, are in .results); it and all after it were not sent"
                    % (index, len(results)))
            if len(exc.args) == 1 and isinstance(exc.args[0], str):
                exc.args = ("%s (%s)" % (exc.args[0], note),)
            exc.results = results
            raise exc
        if raise_errors:
            _raise_failed(results, "put")
        return results

    def reserve_many(self, n: int, timeout: Optional[int] = None) -> List[Job]:
        """Reserve up to ``n`` jobs: wait (up to ``timeout``) for the first,
        then take what is ready now.

        The first job comes from ``reserve(timeout)``; the rest from pipelined
        ``reserve-with-timeout 0`` commands, stopping at the first that
        finds nothing.

        Args:
            n: the most jobs to take, 0..2**63.
            timeout: as for ``reserve``: None waits as long as it takes.

        Returns:
            A list of reserved ``Job`` objects; [] when ``timeout`` passed.

        Raises:
            DeadlineSoon: as for ``reserve``, on the first reserve.
            SocketError: the connection was lost; ``exc.results`` holds the
                jobs reserved before the loss.
        """
        n = check_uint("n", n, 2 ** 63)
        if n == 0:
            return []
        first = self.reserve(timeout)
        if first is None:
            return []
        jobs = [first]
        encoding = self.encoding
        while len(jobs) < n:
            want = min(n - len(jobs), 512)
            replies: List[Any] = []
            try:
                self._live_core().pipeline([b"reserve-with-timeout 0\r\n"] * want, replies)
            except BaseException as exc:
                jobs += [Job(self, v, b, True, encoding) for s, v, b in replies if s == "RESERVED"]
                exc.results = jobs  # type: ignore[attr-defined]
                raise
            got = [Job(self, v, b, True, encoding) for s, v, b in replies if s == "RESERVED"]
            jobs += got
            if len(got) < want:
                break
        return jobs

    def _by_id(self, verb: bytes, jobs: List[JobOrId], ids: List[int], ok: str,
               tails: Iterable[bytes], raise_errors: bool) -> List[Any]:
        commands = [b"%s %d%s\r\n" % (verb, jid, tail) for jid, tail in zip(ids, tails)]
        command = verb.decode()

        def handle(status: str, value: Any, body: Any) -> Any:
            return None if status == ok else _fail(command, status, value)

        results = self._run(commands, _Handlers(handle), command, raise_errors)
        for job, result in zip(jobs, results):
            if isinstance(job, Job) and not isinstance(result, BaseException):
                job.reserved = False
        return results

    def delete_many(self, jobs: Iterable[JobOrId], raise_errors: bool = True) -> List[Any]:
        """Send a ``delete`` per job in one pipelined batch.

        Args:
            jobs: ``Job`` objects or ids (up to 2**64-1), any iterable.
            raise_errors: False returns the per-item results instead of
                raising ``BatchError``.

        Returns:
            A list with None per deleted job (with ``raise_errors=False``, an
            exception instance, e.g. ``NotFound``, in place of each failure).

        Raises:
            BatchError: some items failed; ``exc.results`` as above.
            SocketError: the connection was lost; ``exc.results`` holds the
                results confirmed before the loss.
            ValueError, TypeError: a bad id; nothing was sent.
        """
        jobs = list(jobs)
        ids = [_jid(_id_of(j)) for j in jobs]
        return self._by_id(b"delete", jobs, ids, "DELETED", itertools.repeat(b""), raise_errors)

    def release_many(self, jobs: Iterable[JobOrId], priority: Optional[int] = None,
                     delay: int = 0, raise_errors: bool = True) -> List[Any]:
        """Send a ``release`` per job, in one pipelined batch.

        Args:
            jobs: ``Job`` objects or ids (up to 2**64-1), any iterable.
            priority: 0..2**32-1 for every job; None (the default) keeps each
                job's own priority, read by a pipelined ``stats-job`` first
                (like ``Job.release()``).
            delay: seconds, 0..2**32-1.
            raise_errors: as for ``delete_many``.

        Returns:
            A list with None per released job, as ``delete_many``.

        Raises:
            BatchError, SocketError, ValueError, TypeError: as ``delete_many``.
        """
        jobs = list(jobs)
        ids = [_jid(_id_of(j)) for j in jobs]
        delay = check_uint("delay", delay)
        pris = self._priorities(ids, priority)
        return self._by_id(b"release", jobs, ids, "RELEASED",
                           (b" %d %d" % (p, delay) for p in pris), raise_errors)

    def bury_many(self, jobs: Iterable[JobOrId], priority: Optional[int] = None,
                  raise_errors: bool = True) -> List[Any]:
        """Send a ``bury`` per job, in one pipelined batch.

        Args:
            jobs: ``Job`` objects or ids (up to 2**64-1), any iterable.
            priority: 0..2**32-1 for every job; None (the default) keeps each
                job's own priority (like ``Job.bury()``).
            raise_errors: as for ``delete_many``.

        Returns:
            A list with None per buried job, as ``delete_many``.

        Raises:
            BatchError, SocketError, ValueError, TypeError: as ``delete_many``.
        """
        jobs = list(jobs)
        ids = [_jid(_id_of(j)) for j in jobs]
        pris = self._priorities(ids, priority)
        return self._by_id(b"bury", jobs, ids, "BURIED", (b" %d" % p for p in pris),
                           raise_errors)

    def _priorities(self, ids: List[int], priority: Optional[int]) -> Iterable[int]:
        """``priority`` for every job, or when None each job's current one
        (DEFAULT_PRIORITY for a job the server does not know: its release
        or bury then fails with NotFound in place)."""
        if priority is not None:
            return itertools.repeat(check_uint("priority", priority))
        replies: List[Any] = []
        try:
            self._live_core().pipeline([encode_id(b"stats-job ", jid) for jid in ids], replies)
        except BaseException as exc:
            exc.results = []  # type: ignore[attr-defined]  # nothing was released or buried
            raise
        return [int(parse_yaml(body, _NO_KEYS).get("pri", DEFAULT_PRIORITY))
                if status == "OK" else DEFAULT_PRIORITY for status, _, body in replies]


class _Handlers:
    """The same handler for every item, indexable like a list."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        while True:
            yield self.handler


def _raise_failed(results: List[Any], what: str) -> None:
    """BatchError when some item of a batch failed."""
    failed = sum(isinstance(r, BaseException) for r in results)
    if failed:
        raise BatchError("%d of %d %s commands failed" % (failed, len(results), what), results)


def _on_put(status: str, value: Any, body: Any) -> Any:
    if status == "INSERTED":
        return value
    return _fail("put", status, value)


class Pipeline:
    """Commands collected and sent as one pipelined batch.

    Made by ``Connection.pipeline()``. Each method checks its arguments at
    once (``ValueError``/``TypeError``, nothing queued), queues one command
    and returns the pipeline, so calls can be chained. Nothing is sent
    until ``execute()``, which leaving the ``with`` block calls when no
    exception escaped it::

        with conn.pipeline() as p:
            p.put("a").delete(7)
        p.results                # [12, None]

    Commands are written up to 512 at a time (and 256 KiB unanswered) while
    replies are read, like the ``*_many`` batches. A failed item does not
    stop the batch: its exception instance takes its place in ``results``.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.commands: List[bytes] = []
        self.handlers: List[Callable[..., Any]] = []
        self.results: List[Any] = []

    def _add(self, data: bytes, command: str, ok: str, value: bool = False) -> "Pipeline":
        def handle(status: str, v: Any, body: Any) -> Any:
            if status == ok:
                return v if value else None
            return _fail(command, status, v)
        self.commands.append(data)
        self.handlers.append(handle)
        return self

    def put(self, body: Body, priority: int = DEFAULT_PRIORITY, delay: int = 0,
            ttr: int = DEFAULT_TTR) -> "Pipeline":
        """Queue a ``put`` (arguments as ``Connection.put``); its result is the new job id."""
        return self._add(encode_put(body, priority, delay, ttr, self.conn.encoding),
                         "put", "INSERTED", True)

    def delete(self, jid: JobOrId) -> "Pipeline":
        """Queue a ``delete`` of a ``Job`` or id (up to 2**64-1); its result is None."""
        return self._add(encode_id(b"delete ", _id_of(jid)), "delete", "DELETED")

    def release(self, jid: JobOrId, priority: int = DEFAULT_PRIORITY, delay: int = 0) -> "Pipeline":
        """Queue a ``release`` (priority 0..2**32-1, delay in seconds, as
        ``Connection.release``); its result is None.

        Unlike ``Job.release()`` and ``Connection.release_many()``, the default
        priority is ``DEFAULT_PRIORITY``, not the job's own.
        """
        return self._add(b"release %d %d %d\r\n" % (
            _jid(_id_of(jid)), check_uint("priority", priority), check_uint("delay", delay)),
            "release", "RELEASED")

    def bury(self, jid: JobOrId, priority: int = DEFAULT_PRIORITY) -> "Pipeline":
        """Queue a ``bury`` (priority 0..2**32-1, as ``Connection.bury``); its result is None."""
        return self._add(b"bury %d %d\r\n" % (_jid(_id_of(jid)), check_uint("priority", priority)),
                         "bury", "BURIED")

    def touch(self, jid: JobOrId) -> "Pipeline":
        """Queue a ``touch`` of a reserved job; its result is None."""
        return self._add(encode_id(b"touch ", _id_of(jid)), "touch", "TOUCHED")

    def kick_job(self, jid: JobOrId) -> "Pipeline":
        """Queue a ``kick-job`` of a buried or delayed job; its result is None."""
        return self._add(encode_id(b"kick-job ", _id_of(jid)), "kick-job", "KICKED")

    def execute(self) -> List[Any]:
        """Send every queued command in one pipelined batch and empty the queue.

        Returns:
            The results in order, also kept in ``results``: per command its
            value (``put``: the id; the others: None) or the exception
            instance it failed with (``NotFound``, ``JobTooBig``, ...). Never
            raises ``BatchError``.

        Raises:
            SocketError: the connection was lost; ``exc.results`` holds the
                results confirmed before the loss; the commands after them
                may or may not have been carried out.
        """
        commands, handlers = self.commands, self.handlers
        self.commands, self.handlers = [], []
        self.results = self.conn._run(commands, handlers, "pipelined", False)
        return self.results

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.execute()


def _id_of(job: JobOrId) -> int:
    return job.jid if isinstance(job, Job) else job


def _jid(jid: Any) -> int:
    return check_uint("job id", jid, 2 ** 64 - 1)


def from_url(url: str, **options: Any) -> Connection:
    """A Connection to ``beanstalk://host[:port][/tube][?option=value&...]``,
    ``beanstalks://...`` (TLS) or ``unix:///path/to/socket[?...]``; the tube
    in the URL is used and watched, and ``default`` ignored. Keyword
    ``options`` are Connection arguments and win over the query's (``ssl=``:
    an SSLContext for a beanstalks:// URL). A bad URL or option is a
    ValueError raised before connecting (see ``endpoint.parse_url``)."""
    where = _endpoint.parse_url(url)
    conn = Connection(**_endpoint.connection_kwargs(where, options))
    if where.tube is not None and where.tube != DEFAULT_TUBE_NAME:
        try:
            conn.use(where.tube)
            conn.watch(where.tube)
            conn.ignore(DEFAULT_TUBE_NAME)
        except BaseException:
            conn.close()
            raise
    return conn
