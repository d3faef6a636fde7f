"""Connection: the classic beanstalkc API on top of a protocol core.

The command methods are the ones of ``commands.Commands`` (written once for
every front end): each validates its arguments and encodes one command, the
core sends it and reads exactly one reply, and the command's definition turns
the reply into a return value or a precise exception.
"""

import itertools
import os
import select
import socket
import ssl as ssl_module
import time
import weakref
from typing import Any, Callable, Iterable, List, Optional, Union

from . import endpoint as _endpoint
from ._impl import core as _default_core
from ._shared import set_keepalive
from .commands import (BURY, DEFAULT_PRIORITY, DEFAULT_TTR, DEFAULT_TUBE_NAME,
                       DELETE, LIST_TUBE_USED_LINE, PUT, RELEASE, RESERVE_NOW, RESERVE_TIMEOUT,
                       STATS_JOB_DICT, Body,
                       Command, Commands, Kinds, PipelineCommands, PutStream, YamlOption,
                       checked, by_id_commands, job_ids, lost_note, priorities_of,
                       ReserveRounds, restore_commands, split_items, stats_commands, unreserve)
from .errors import ConnectionBroken, SocketError
from .job import Job

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 11300

__all__ = ["Connection", "Pipeline", "DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_PRIORITY",
           "DEFAULT_TTR", "DEFAULT_TUBE_NAME", "Body"]

_LIVE: "weakref.WeakSet[Connection]" = weakref.WeakSet()

_USE_DEFAULT = _endpoint.USE_DEFAULT
# With auto_reconnect, a connection unused for this long is checked for a
# close the server already sent before anything is written on it.
IDLE_CHECK_AFTER = 1.0

def _after_fork_in_child() -> None:
    # The child shares the parent's socket: never let it talk on it.
    for conn in list(_LIVE):
        core = conn._core
        if core is not None and core.broken is None:
            core.broken = "inherited across fork(); call reconnect() in the child"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

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


class Connection(Commands, YamlOption):
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

    ``core``: the protocol core module to use (``beanstalkc_fast._protocol``,
    the Cython one, or ``beanstalkc_fast._pyprotocol``, its pure-Python twin);
    default: the one the package picked (``IMPLEMENTATION``).

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
    _impl: Any = _default_core
    _job_type = Job
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
                 ssl: _endpoint.SSLArg = None, server_hostname: Optional[str] = None,
                 core: Any = None) -> None:
        self._impl = _default_core if core is None else core
        self._encode_put = self._impl.encode_put_parts
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
        return _endpoint.connect_timeout(self._connect_timeout)

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
        self._bind_run()

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
        core = self._core = self._impl.Core(sock, self.socket_timeout)
        self._closed = False
        self._request = core.request
        self._bind_run()
        _LIVE.add(self)
        if self._ssl_context is not None:
            self._confirm_tls(core)
        # the tubes stay recorded as wanted until a reconnect restores them
        for cmd, data, arg in restore_commands(self, self._using, self._watching):
            status, value, body = core.request(data)
            cmd.finish(status, value, body, self, arg)
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
            core.request(LIST_TUBE_USED_LINE)
        except SocketError as exc:
            where = self.unix_socket or "%s:%s" % (self.host, self.port)
            raise SocketError(_endpoint.tls_refused(where, exc)) from exc

    def _set_keepalive(self, sock: socket.socket) -> None:
        set_keepalive(sock, *self.keepalive)

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

    def _bind_run(self) -> None:
        """``_run``: the core's own ``execute``, or with auto_reconnect
        ``_run_reconnecting``."""
        core = self._core
        if self._auto_reconnect or core is None:
            self._run = _run_reconnecting       # a function: no cycle through a bound method
        else:
            self._run = core.execute

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

    def _batch(self, kinds: Kinds, commands: Iterable[bytes], what: str,
               raise_errors: bool) -> List[Any]:
        """Pipeline ``commands``; each reply becomes the result or refusal (an
        exception instance) of its command: ``kinds`` is the batch's Command,
        or a (Command, arg) per item. BatchError when some item was refused
        (unless not ``raise_errors``); SocketError carrying ``results`` when
        the link broke."""
        replies: List[Any] = []
        try:
            self._live_core().pipeline(commands, replies)
            self._last_io = time.monotonic()
        except SocketError as exc:
            exc.results = self._outcomes(kinds, replies)  # type: ignore[attr-defined]
            if not isinstance(exc, ConnectionBroken):
                exc.args = ("%s; %s" % (exc.args[0], lost_note(what, len(replies))),)
            raise
        except BaseException as exc:
            exc.results = self._outcomes(kinds, replies)  # type: ignore[attr-defined]
            raise
        return checked(what, self._outcomes(kinds, replies), raise_errors)

    def _outcomes(self, kinds: Kinds, replies: List[Any]) -> List[Any]:
        if isinstance(kinds, Command):
            return kinds.outcomes(replies, self)
        return [cmd.outcome(status, value, body, self, arg)
                for (cmd, arg), (status, value, body) in zip(kinds, replies)]  # noqa: B905

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
        stream = PutStream(self._impl, bodies, priority, delay, ttr, self.encoding)
        return stream.results(self._batch(PUT, stream, "put", False), raise_errors)

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
        n = self._impl.check_uint("n", n, 2 ** 63)
        if n == 0:
            return []
        first = self.reserve(timeout)
        if first is None:
            return []
        rounds = ReserveRounds(n, first)
        while rounds.want():
            try:
                rounds.take(self._batch(RESERVE_TIMEOUT, [RESERVE_NOW] * rounds.want(),
                                        "reserve", False))
            except BaseException as exc:
                rounds.failed(exc)
                raise
        return rounds.jobs

    def _by_id(self, cmd: Command, jobs: List[JobOrId], ids: List[Any],
               tails: Optional[Iterable[bytes]], raise_errors: bool) -> List[Any]:
        results = self._batch(cmd, by_id_commands(self._impl, cmd, ids, tails), cmd.name,
                              raise_errors)
        unreserve(jobs, results)
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
        jobs, ids = job_ids(jobs)
        return self._by_id(DELETE, jobs, ids, None, raise_errors)

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
        jobs, ids = job_ids(jobs)
        delay = self._impl.check_uint("delay", delay)
        pris = self._priorities(ids, priority)
        return self._by_id(RELEASE, jobs, ids, (b" %d %d" % (p, delay) for p in pris),
                           raise_errors)

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
        jobs, ids = job_ids(jobs)
        pris = self._priorities(ids, priority)
        return self._by_id(BURY, jobs, ids, (b" %d" % p for p in pris), raise_errors)

    def _priorities(self, ids: List[Any], priority: Optional[int]) -> Iterable[int]:
        """``priority`` for every job, or when None each job's current one."""
        if priority is not None:
            return itertools.repeat(self._impl.check_uint("priority", priority))
        try:
            stats = self._batch(STATS_JOB_DICT, stats_commands(self._impl, ids), "stats-job", False)
        except BaseException as exc:
            exc.results = []  # type: ignore[attr-defined]  # nothing released or buried
            raise
        return priorities_of(stats)


# The Cython core runs the hottest commands without a Python frame: its
# conn_<name> does what Commands.<name> does (which it calls when the
# connection runs on another core), in one call into C.
for _name in ("put", "reserve", "delete", "stats"):
    _fast = getattr(_default_core, "conn_" + _name, None)
    if _fast is not None:
        _fast.__doc__ = getattr(Commands, _name).__doc__
        setattr(Connection, _name, _fast)


def _run_reconnecting(conn: "Connection", cmd: Command, data: bytes, arg: Any = None) -> Any:
    """Send one command on ``conn`` and return its result (``cmd`` says
    which), reconnecting first when needed and sending a command whose reply
    was lost once more when that is safe (``_run`` under auto_reconnect)."""
    core = conn._live_core()
    try:
        return core.execute(conn, cmd, data, arg)
    except ConnectionBroken:
        raise
    except SocketError:
        if not (conn._auto_reconnect and cmd.safe):
            raise
    finally:
        conn._last_io = time.monotonic()
    # the reply was lost and repeating is harmless: once, on a new connection
    conn.reconnect()
    try:
        return conn._core.execute(conn, cmd, data, arg)
    finally:
        conn._last_io = time.monotonic()


class Pipeline(PipelineCommands):
    """Commands collected and sent as one pipelined batch.

    Made by ``Connection.pipeline()``. Each method checks its arguments at
    once (``ValueError``/``TypeError``, nothing queued), queues one command
    and returns the pipeline, so calls can be chained. Nothing is sent
    until ``execute()``, which leaving the ``with`` block calls when no
    exception escaped it::

        with conn.pipeline() as p:
            p.put("a").delete(7)
        p.results                # [12, None]

    Every command of the Connection can be queued; its result is what that
    method returns (``put``: the id; ``delete``: None; ...), and the by-id
    commands also take a ``Job``. Commands are written up to 512 at a time
    (and 256 KiB unanswered) while replies are read, like the ``*_many``
    batches. A failed item does not stop the batch: its exception instance
    takes its place in ``results``. Unlike ``Job.release()``, ``release``
    and ``bury`` default to ``DEFAULT_PRIORITY``, not the job's own.
    """

    conn: Connection

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
        self.results = self.conn._batch(*split_items(self._take()), "pipelined", False)
        return self.results

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.execute()


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
