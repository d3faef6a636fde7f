"""asyncio front end: the classic beanstalkc API as coroutines, on the same
cores and the same command definitions as the sync client, with automatic
pipelining.

>>> async with beanstalkc_fast.asyncio.connect("localhost", 11300) as conn:  # doctest: +SKIP
...     ids = await asyncio.gather(*(conn.put(b) for b in bodies))        # pipelined

Calls made concurrently on one connection are written as they are issued,
without waiting for earlier replies; replies are matched to callers in order.
A call is written when it is made: at once when there is room, else in its
turn as replies make room (a call on a broken connection, and a reserve or
any call under ``auto_reconnect`` that finds no room, waits until it is
awaited); awaiting it gives the result: a
``put`` never awaited still sends the put (on an idle connection Python
may warn that it was never awaited). What a call returns works as a
coroutine (``await``, ``gather``, ``create_task``, ``TaskGroup``,
``wait_for``, ``shield``); only bad arguments raise at call time, every
other error (``ConnectionBroken``, ``SocketError``, a server's refusal)
when awaited. Made off the loop's thread, a call is a plain coroutine.
At most 512 commands and 256 KiB (or one larger command) are written but
unanswered; further callers wait their turn, in order. A ``reserve`` occupies
its place in the reply order: commands issued after it on the same connection
are answered only after it returns, so give every consumer loop a connection
of its own and produce on another one.

Cancellation (task cancel, ``asyncio.wait_for``, ``asyncio.timeout``):

- before the command was written (waiting for room): nothing is sent;
- after: its reply is still read and discarded, later callers get their own;
  a job reserved for a cancelled ``reserve`` (or ``reserve_job``,
  ``reserve_many``) is released at once with its priority kept; ``use``,
  ``watch`` and ``ignore`` still take effect (and are remembered for
  reconnects);
- a ``put`` cancelled after it was written may have inserted its job.

Faults: a lost connection, a malformed reply or a missed read deadline
(``socket_timeout``; a reserve's timeout extends it, a reserve without one
waits indefinitely) fails every pending caller with ``SocketError`` at once
and marks the connection broken; later calls raise ``ConnectionBroken``
unless ``auto_reconnect`` is on, which reconnects (restoring the used tube
and the watch list) and sends again, once, a command whose reply was lost
only when it is safe to repeat (never a put, delete, release, bury, touch,
kick or a batch).
"""

import asyncio
import functools
import itertools
import socket
import ssl as ssl_module
import threading
from typing import (Any, Awaitable, Callable, Deque, Generator, Iterable, List, Optional,
                    Tuple, Union)

from . import endpoint as _endpoint
from ._impl import core as _default_core
from ._interface import AsyncWindow
from ._shared import set_keepalive
from .commands import (BATCH_BYTES, BATCH_WINDOW, BURY, DEFAULT_PRIORITY, DEFAULT_TTR,
                       DEFAULT_TUBE_NAME, DELETE, LIST_TUBE_USED, LIST_TUBE_USED_LINE, NOTHING,
                       PUT, RELEASE, RESERVE_NOW, RESERVE_TIMEOUT, RESERVED, STATS_JOB_DICT,
                       STATS_JOB_PREFIX, VALUE, Body, Command, Commands, Kinds, PipelineCommands,
                       PutStream, ReserveRounds, YamlOption, by_id_commands, checked, job_ids,
                       lost_note, priorities_of, release_line, restore_commands, split_items,
                       stats_commands, unreserve)
from .errors import ConnectionBroken, SocketError, UnexpectedResponse
from .job import Job as _SyncJob

__all__ = ["connect", "from_url", "Connecting", "Connection", "Job", "Pipeline", "Pool",
           "Worker"]

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 11300

JobOrId = Union["Job", int]

# A command written and waiting for its reply is one entry of
# Connection._pending, in the order written:
#   (fut, cmd, arg, size)        a caller's command: ``fut`` gets cmd.finish's result
#   (None, cmd, callback, size)  housekeeping: ``callback`` gets the raw reply
#   a _Chunk                     consecutive commands of one batch
_Single = Tuple[Optional["asyncio.Future[Any]"], Command, Any, int]


class _Chunk:
    """Consecutive commands of one batch, written together as one pending
    entry: ``fut`` gets the outcome of each (its result, or its refusal as an
    exception instance) in order once all are answered."""

    __slots__ = ("fut", "cmd", "kinds", "sizes", "results", "error")

    def __init__(self, fut: "asyncio.Future[List[Any]]", cmd: Optional[Command],
                 kinds: Optional[List[Tuple[Command, Any]]], sizes: List[int]) -> None:
        self.fut = fut
        self.cmd = cmd                 # every command's, with arg None; else per item:
        self.kinds = kinds             # (cmd, arg) of each command
        self.sizes = sizes             # bytes of each command
        self.results: List[Any] = []   # the outcomes so far
        self.error: Optional[BaseException] = None   # raised by a result (not a refusal)

    def current(self) -> Tuple[Command, Any]:
        """The command (and arg) whose reply comes next."""
        if self.kinds is not None:
            return self.kinds[len(self.results)]
        assert self.cmd is not None
        return self.cmd, None


_Entry = Union[_Single, _Chunk]

# Connection._waiters, in turn, wait for room in the window:
#   (fut, size)                   a wait for room (_admit): ``fut`` gets True when it
#                                 is granted (and counted), False after a break
#   (fut, size, cmd, arg, data)   a caller's command, written by Window.wake when it fits;
#                                 ``fut`` then gets its result. A break first: _send's
#                                 future gets _NotWritten (_send retries or refuses),
#                                 Window.run's Call the ConnectionBroken of _refusal
_Waiter = Tuple[Any, ...]


class _NotWritten(Exception):
    """The connection broke before a command waiting for room was written."""


# the thread a call is made in; compared with the connection loop's thread
# (asyncio's _get_running_loop costs a getpid() system call per call)
_get_ident = threading.get_ident
_LOW_COUNT = BATCH_WINDOW // 2         # room is handed to waiters below these
_LOW_BYTES = BATCH_BYTES // 2




class Job(_SyncJob):
    """A job handed out by the asyncio connection: ``jid``, ``body``,
    ``raw_body``, ``reserved`` as in sync; the actions are awaitable."""

    conn: "Connection"  # type: ignore[assignment]

    async def delete(self) -> None:  # type: ignore[override]
        """Delete this job."""
        await self.conn.delete(self.jid)
        self.reserved = False

    async def release(self, priority: Optional[int] = None,  # type: ignore[override]
                      delay: int = 0) -> None:
        """Release this job back to ready (keeping its priority unless given);
        a no-op unless this connection holds it reserved."""
        if self.reserved:
            pri = await self._priority() if priority is None else priority
            await self.conn.release(self.jid, pri, delay)
            self.reserved = False

    async def bury(self, priority: Optional[int] = None) -> None:  # type: ignore[override]
        """Bury this job (keeping its priority unless given); a no-op unless
        this connection holds it reserved."""
        if self.reserved:
            pri = await self._priority() if priority is None else priority
            await self.conn.bury(self.jid, pri)
            self.reserved = False

    async def kick(self) -> None:  # type: ignore[override]
        """Kick this job if it is buried or delayed."""
        await self.conn.kick_job(self.jid)

    async def touch(self) -> None:  # type: ignore[override]
        """Ask for more time to work on this job; a no-op unless reserved."""
        if self.reserved:
            await self.conn.touch(self.jid)

    async def stats(self) -> Any:
        """Statistics of this job (see ``Connection.stats_job``)."""
        return await self.conn.stats_job(self.jid)

    async def _priority(self) -> int:  # type: ignore[override]
        return int((await self.conn._stats_job_dict(self.jid))["pri"])


class _Protocol(asyncio.BufferedProtocol):
    """The transport's end: bytes land in the core's Reader buffer."""

    def __init__(self, conn: "Connection", reader: Any) -> None:
        self.conn = conn
        self.reader = reader
        self.closed: "asyncio.Future[None]" = conn._loop.create_future()
        # called for every read: bound straight to their targets (no Python
        # frame of their own)
        self.get_buffer = reader.get_buffer                            # type: ignore[method-assign]
        self.buffer_updated = functools.partial(conn._received, self)  # type: ignore[method-assign]

    def get_buffer(self, sizehint: int) -> Any:
        return self.reader.get_buffer(sizehint)       # replaced in __init__

    def buffer_updated(self, nbytes: int) -> None:
        self.conn._received(self, nbytes)             # replaced in __init__

    def eof_received(self) -> Optional[bool]:
        return False                                  # close; connection_lost follows

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.conn._proto is self:
            if exc is None:
                self.conn._break("connection closed by the server")
            else:
                self.conn._break("socket error: %s" % (exc,), cause=exc)


class Connection(Commands, YamlOption):
    """An asyncio connection to one beanstalkd server; open it with
    ``await connect(...)`` (or ``await conn.connect()``).

    The options are the sync Connection's; ``core`` is the protocol core
    module (default: the one the package picked, see ``IMPLEMENTATION``).
    Every command method of the sync Connection exists with the same
    arguments and results, as an awaitable; see the module docstring for
    pipelining, cancellation and faults.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 parse_yaml: Union[bool, Callable[[str], Any]] = True,
                 connect_timeout: Optional[float] = _endpoint.USE_DEFAULT,
                 encoding: Optional[str] = "utf-8",
                 socket_timeout: Optional[float] = 60.0,
                 unix_socket: Optional[str] = None,
                 keepalive_idle: Optional[float] = 60, keepalive_interval: Optional[float] = 10,
                 keepalive_count: Optional[int] = 3, auto_reconnect: bool = False,
                 ssl: _endpoint.SSLArg = None, server_hostname: Optional[str] = None,
                 core: Any = None) -> None:
        self._impl = _default_core if core is None else core
        # the write side (counts, pending entries, waiters, deadline, broken)
        # lives in the core's Window; Commands runs each call as self._run
        w: AsyncWindow = self._impl.Window(self._abandon, self._arm, BATCH_WINDOW, BATCH_BYTES,
                                           RESERVED)
        self._w = w
        self._run: Callable[..., Any] = w.run
        self._pending: Deque[_Entry] = w.pending
        self._waiters: Deque[_Waiter] = w.waiters
        self._connect_timeout: Any = _endpoint.USE_DEFAULT
        if connect_timeout is not _endpoint.USE_DEFAULT:
            self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        check_keepalive = _endpoint.check_keepalive
        self.keepalive = (check_keepalive("keepalive_idle", keepalive_idle),
                          check_keepalive("keepalive_interval", keepalive_interval),
                          check_keepalive("keepalive_count", keepalive_count))
        self._ssl_context, self.server_hostname = _endpoint.tls_settings(
            ssl, server_hostname, unix_socket)
        self._set_yaml(parse_yaml)
        self._encode_put = self._impl.encode_put
        self._job_type: Callable[..., Job] = Job
        self.host = host
        self.port = port
        self.unix_socket = unix_socket
        self.encoding = encoding
        self.auto_reconnect = auto_reconnect
        self._closed = False               # by close(): stays closed under auto_reconnect
        self._using = DEFAULT_TUBE_NAME
        self._watching: List[str] = [DEFAULT_TUBE_NAME]
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._proto: Optional[_Protocol] = None
        self._epoch = 0                    # counts breaks: a wait for room is void after one
        self._revive_lock: Optional[asyncio.Lock] = None

    @property
    def broken(self) -> Optional[str]:
        """Why the connection is unusable, or None."""
        return self._w.broken

    @property
    def auto_reconnect(self) -> bool:
        """Whether a broken connection is reconnected by the next call (see
        the module docstring for what is sent again)."""
        return self._w.auto_reconnect

    @auto_reconnect.setter
    def auto_reconnect(self, on: bool) -> None:
        self._w.auto_reconnect = bool(on)

    @property
    def connect_timeout(self) -> Optional[float]:
        """How long connecting (and then the TLS handshake) may take, in
        seconds, or None for no limit (not given: socket.getdefaulttimeout()
        when connecting)."""
        return _endpoint.connect_timeout(self._connect_timeout)

    @connect_timeout.setter
    def connect_timeout(self, seconds: Optional[float]) -> None:
        self._connect_timeout = _endpoint.check_timeout("connect_timeout", seconds)

    @property
    def socket_timeout(self) -> Optional[float]:
        """The read deadline of every command; a new value applies at once
        (to the command waiting at the head, and every later one)."""
        return self._w.timeout

    @socket_timeout.setter
    def socket_timeout(self, seconds: Optional[float]) -> None:
        w = self._w
        w.timeout = _endpoint.check_timeout("socket_timeout", seconds)
        if w.timer is not None:            # armed with the old value
            w.timer.cancel()
            w.timer = None
        if self._pending and w.timeout is not None:
            self._arm()                    # armed whenever anything is pending

    @property
    def _address(self) -> str:
        return self.unix_socket or "%s:%s" % (self.host, self.port)

    # -- connection management ------------------------------------------------
    async def connect(self) -> None:
        """Connect to beanstalkd (TLS with ``ssl``) and restore the used tube
        and the watch list; SocketError on failure (a failed TLS handshake
        says why, and nothing was sent)."""
        loop = asyncio.get_running_loop()
        self._loop = self._w.loop = loop
        self._w.thread = _get_ident()
        reader = self._impl.Reader()

        def factory() -> _Protocol:
            return _Protocol(self, reader)

        try:
            if self.unix_socket is not None:
                opening: Awaitable[Any] = loop.create_unix_connection(factory, self.unix_socket)
            else:
                opening = loop.create_connection(factory, self.host, self.port)
            transport, proto = await asyncio.wait_for(opening, self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise SocketError.wrap(exc, "cannot connect: %s" % (exc or "timed out",)) from exc
        if self.unix_socket is None:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            set_keepalive(sock, *self.keepalive)
        if self._ssl_context is not None:
            transport = await self._start_tls(transport, proto, self._ssl_context)
        self._w.transport, self._proto = transport, proto
        self._pending.clear()
        self._w.out.clear()
        self._w.count = self._w.nbytes = 0
        self._w.broken = None
        self._closed = False
        if self._ssl_context is not None:
            # TLS 1.3: a server refuses a client certificate after the
            # client's handshake is done; one round trip sees it here
            try:
                await self._call(LIST_TUBE_USED, LIST_TUBE_USED_LINE, None)
            except SocketError as exc:
                raise SocketError(_endpoint.tls_refused(self._address, exc)) from exc
        futures = [self._call(cmd, data, arg)
                   for cmd, data, arg in restore_commands(self, self._using, self._watching)]
        for fut in futures:
            await fut

    async def _start_tls(self, transport: Any, proto: _Protocol,
                         context: ssl_module.SSLContext) -> Any:
        """The TLS transport over ``transport``, handshake done within
        connect_timeout; on failure the connection is aborted and
        SocketError says why."""
        hostname = self.server_hostname or (None if self.unix_socket is not None else self.host)
        try:
            return await asyncio.wait_for(
                self._loop.start_tls(transport, proto, context, server_hostname=hostname),
                self.connect_timeout)
        except (OSError, ValueError, asyncio.TimeoutError) as exc:  # SSLError, reset, timeout
            transport.abort()
            raise SocketError(_endpoint.tls_failure(self._address, exc)) from exc

    async def close(self) -> None:
        """Send ``quit`` and close; never raises on a dead connection. Callers
        still waiting for a reply get SocketError. The connection stays
        closed (also under ``auto_reconnect``) until ``connect()`` or
        ``reconnect()``."""
        self._closed = True
        transport, proto = self._w.transport, self._proto
        if transport is None or proto is None:
            return
        if self._w.broken is None:
            self._w.flush()
            transport.write(b"quit\r\n")
            self._break("closed", abort=False)
        else:
            transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(proto.closed), 1.0)
        except asyncio.TimeoutError:
            transport.abort()

    async def reconnect(self) -> None:
        """Close, connect again, and restore the used tube and the watch list."""
        await self.close()
        self._closed = False       # a failed connect leaves it broken, not closed
        await self.connect()

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- writing -----------------------------------------------------------------
    def _call(self, cmd: Command, data: bytes, arg: Any) -> "asyncio.Future[Any]":
        """Write one command now, whatever the window (connecting); the future
        of its result."""
        fut = self._loop.create_future()
        self._w.add((fut, cmd, arg, len(data)), data)
        return fut

    def _housekeeping(self, data: bytes, callback: Callable[[Any], None]) -> None:
        """Write a command of the connection's own; ``callback`` gets its reply."""
        if self._w.broken is not None:
            return
        self._w.add((None, STATS_JOB_DICT, callback, len(data)), data)

    def _refusal(self) -> ConnectionBroken:
        """Why a command is not written on this broken connection (no
        auto_reconnect, or closed by close())."""
        if self._closed:
            return ConnectionBroken("connection was closed by close(); "
                                    "call connect() or reconnect()")
        return ConnectionBroken("connection is broken (%s); call reconnect()" % self._w.broken)

    async def _admit(self, size: int) -> None:
        """Wait until a command of ``size`` bytes may be written (its room is
        then counted); reconnect first when broken and auto_reconnect is on,
        once: broken again before the command went out is ConnectionBroken."""
        revived = False
        while True:
            if self._w.broken is not None:
                if self._closed or not self.auto_reconnect:
                    raise self._refusal()
                if revived:
                    raise ConnectionBroken("reconnect failed: the new connection broke "
                                           "at once (%s)" % self._w.broken)
                revived = True
                await self._revive()
                continue
            if not self._waiters and self._w.has_room(size):
                self._w.count += 1
                self._w.nbytes += size
                return
            epoch = self._epoch
            fut: "asyncio.Future[bool]" = self._loop.create_future()
            self._waiters.append((fut, size))
            try:
                granted = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() and self._epoch == epoch:
                    self._w.count -= 1           # room granted but not used: pass it on
                    self._w.nbytes -= size
                    self._w.wake()
                raise
            if granted and self._epoch == epoch and self._w.broken is None:
                return

    async def _revive(self) -> None:
        if self._revive_lock is None:
            self._revive_lock = asyncio.Lock()
        async with self._revive_lock:
            if self._w.broken is not None and not self._closed:
                try:
                    await self.reconnect()
                except ConnectionBroken:
                    raise
                except SocketError as exc:
                    # nothing of the caller's command was sent
                    raise ConnectionBroken("reconnect failed: %s" % (exc,)) from exc

    async def _wait(self, fut: "asyncio.Future[Any]") -> Any:
        """The result of a command written already; cancelled, a job it
        reserved meanwhile is released."""
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._abandon(fut.result())
            raise

    async def _send(self, cmd: Command, data: bytes, arg: Any) -> Any:
        """Write the command (when there is room; reconnecting when broken
        and auto_reconnect is on) and return its result."""
        retried = False
        while True:
            size = len(data)
            fut = self._loop.create_future()
            w = self._w
            if w.broken is not None:
                await self._admit(size)        # reconnects, or ConnectionBroken
                w.enqueue((fut, cmd, arg, size), data, False)
            elif self._waiters or not w.has_room(size):
                self._waiters.append((fut, size, cmd, arg, data))   # w.wake writes it in turn
            else:                              # idle too: a lone command is written at once
                w.add((fut, cmd, arg, size), data)
            try:
                return await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._abandon(fut.result() if fut.exception() is None else None)
                raise
            except _NotWritten:
                continue
            except ConnectionBroken:
                raise
            except SocketError:
                if self.auto_reconnect and cmd[7] and not retried:    # cmd.safe
                    retried = True
                    continue
                raise          # _break added the note of a lost reply (cmd.lost)

    # -- reading -------------------------------------------------------------------
    def _received(self, proto: _Protocol, nbytes: int) -> None:
        if proto is not self._proto or self._w.broken is not None:
            return
        reader = proto.reader
        reader.buffer_updated(nbytes)
        pending = self._pending
        settle = reader.settle
        try:
            reply = None
            while True:
                if reply is None:
                    # the common case, in the core: callers' commands answered
                    # by success with a value or nothing as their result
                    taken, nbytes, reply = settle(pending)
                    if taken:
                        self._w.count -= taken
                        self._w.nbytes -= nbytes
                    if reply is None:
                        break
                entry = pending[0] if pending else None
                if entry.__class__ is _Chunk:
                    reply = self._fill(entry, reply, reader)
                    continue
                self._deliver(reply)
                reply = None
        except Exception as exc:             # malformed reply: nothing more is parsed
            self._break("unexpected response: %s" % (exc,), head=exc)
            return
        if pending:                          # the stream moved (idle: the next write sets it)
            self._w.progress = self._loop.time()
        # waiters get room once half the window is free (or all of it): a few
        # large writes instead of one small write per reply read
        if self._waiters and (not pending or (self._w.count <= _LOW_COUNT
                                              and self._w.nbytes <= _LOW_BYTES)):
            self._w.wake()
        if self._w.timer is None and self._pending and self._w.timeout is not None:
            self._arm()

    def _deliver(self, reply: Any) -> None:
        """Hand ``reply`` to the oldest pending entry, a single command's
        (_received does the common case itself, and _fill a chunk's)."""
        pending = self._pending
        if not pending:
            raise UnexpectedResponse("reply %r with no command waiting" % (reply[0],))
        fut, cmd, arg, size = pending.popleft()   # type: ignore[misc]
        self._w.count -= 1
        self._w.nbytes -= size
        status, value, body = reply
        if fut is None:
            arg(reply)
            return
        try:
            result = cmd.finish(status, value, body, self, arg)
        except Exception as exc:
            if not fut.cancelled():
                fut.set_exception(exc)
            return
        if fut.cancelled():
            self._abandon(result)
        else:
            fut.set_result(result)

    def _fill(self, chunk: _Chunk, reply: Any, reader: Any) -> Any:
        """Add the outcomes of ``reply`` and the replies that follow it in
        ``reader`` to ``chunk`` (its future gets them all with the last);
        the next reply not taken, or None."""
        results, sizes, kinds = chunk.results, chunk.sizes, chunk.kinds
        cmd = chunk.cmd
        arg = None
        job, encoding = self._job_type, self.encoding
        first = i = len(results)
        end = len(sizes)
        while True:
            if kinds is not None:
                cmd, arg = kinds[i]
            assert cmd is not None
            status, value, body = reply
            kind = cmd[1]                  # Command fields by position: ok, kind
            if status == cmd[0] and kind <= RESERVED:   # the common kinds, as finish makes them
                results.append(value if kind == VALUE else None if kind == NOTHING
                               else job(self, value, body, True, encoding))
            else:
                try:
                    results.append(cmd.outcome(status, value, body, self, arg))
                except Exception as exc:
                    results.append(None)
                    if chunk.error is None:
                        chunk.error = exc
            i += 1
            if i == end:
                break
            if kinds is None:              # uniform: the reader settles the common replies
                taken, reply = reader.collect(results, end - i, cmd[0], kind, self)
                i += taken
            else:
                reply = reader.next_reply()
            if reply is None:
                break
        self._w.count -= i - first
        self._w.nbytes -= sum(sizes[first:i])
        if i < end:
            return None
        self._pending.popleft()
        fut = chunk.fut
        if fut.cancelled():
            for result in results:
                self._abandon(result)
        elif chunk.error is not None:
            fut.set_exception(chunk.error)
        else:
            fut.set_result(results)
        return reader.next_reply()

    def _abandon(self, result: Any) -> None:
        """The result of a call nobody waits for any more: a reserved job is
        released."""
        if isinstance(result, Job) and result.reserved:
            self._release(result.jid)

    def _release(self, jid: int) -> None:
        """Release a job nobody waits for any more, keeping its priority."""
        def released(reply: Any) -> None:
            pass

        def got_stats(reply: Any) -> None:
            status, _, body = reply
            if status == "OK":
                pri = self._impl.parse_yaml(body)["pri"]
                self._housekeeping(release_line(self._impl, jid, pri, 0), released)

        self._housekeeping(self._impl.encode_id(STATS_JOB_PREFIX, jid), got_stats)

    # -- faults ----------------------------------------------------------------------
    def _arm(self) -> None:
        assert self._w.timeout is not None
        self._w.timer = self._loop.call_at(self._w.progress + self._w.timeout, self._deadline)

    def _deadline(self) -> None:
        """The read deadline's check: break when the head call waited too long."""
        self._w.timer = None
        if self._w.broken is not None or not self._pending or self.socket_timeout is None:
            return
        head = self._pending[0]
        if isinstance(head, _Chunk):
            cmd, arg = head.current()
            extra = cmd.extra(arg)
        else:
            extra = head[1].extra(head[2]) if head[0] is not None else 0.0
        if extra is None:
            return                     # waits indefinitely; armed again when the head moves
        deadline = self._w.progress + self.socket_timeout + extra
        if self._loop.time() >= deadline:
            self._break("socket error: timed out")
        else:
            self._w.timer = self._loop.call_at(deadline, self._deadline)

    def _break(self, reason: str, head: Optional[BaseException] = None,
               cause: Optional[BaseException] = None, abort: bool = True) -> None:
        """Mark the connection broken and fail every pending caller at once
        (the first with ``head`` when given, the others with SocketError)."""
        if self._w.broken is not None:
            return
        self._w.broken = reason
        self._epoch += 1
        if self._w.timer is not None:
            self._w.timer.cancel()
            self._w.timer = None
        if self._w.transport is not None:
            if abort:
                self._w.transport.abort()
            else:
                self._w.transport.close()
        pending = list(self._pending)      # the window's own deques stay
        self._pending.clear()
        self._w.count = self._w.nbytes = 0
        for i, entry in enumerate(pending):
            fut = entry.fut if isinstance(entry, _Chunk) else entry[0]
            if fut is None or fut.done():
                continue
            lost = entry[1].lost if entry.__class__ is tuple else None
            if i == 0 and head is not None:
                if lost and isinstance(head, SocketError):
                    head.args = ("%s; %s" % (head.args[0], lost),)
                fut.set_exception(head)
            else:
                err = SocketError("%s; %s" % (reason, lost) if lost else reason)
                err.__cause__ = cause
                fut.set_exception(err)
        waiters = list(self._waiters)
        self._waiters.clear()
        for waiter in waiters:
            wfut = waiter[0]
            if not wfut.done():
                if len(waiter) == 2:
                    wfut.set_result(False)
                elif wfut.__class__ is self._impl.Call:  # Window.run's: nobody writes it again
                    wfut.set_exception(self._refusal())
                else:
                    wfut.set_exception(_NotWritten())

    # -- batches -------------------------------------------------------------------------
    def pipeline(self) -> "Pipeline":
        """Collect commands and send them in one pipelined batch; see Pipeline."""
        return Pipeline(self)

    async def _batch(self, kinds: Kinds, commands: Iterable[bytes], what: str,
                     raise_errors: bool) -> List[Any]:
        """Write every command (in order, as room allows: each time as many as
        fit, in one write, as one pending _Chunk) and collect each result or
        refusal in order; ``kinds`` is the batch's Command, or a (Command,
        arg) per item. BatchError when some item was refused (unless not
        ``raise_errors``); SocketError carrying ``results`` when the link
        broke; an exception of ``commands`` stops the writing, the written
        ones are answered, then it is raised."""
        cmd = kinds if isinstance(kinds, Command) else None
        chunks: List[_Chunk] = []
        deferred: Optional[BaseException] = None
        items = iter(commands)
        written = 0
        data: Optional[bytes] = None
        try:
            while True:
                if data is None:
                    try:
                        data = next(items, None)
                    except Exception as exc:
                        deferred = exc
                    if data is None:
                        break
                size = len(data)
                if self._w.broken is None and not self._waiters and self._w.has_room(size):
                    self._w.count += 1
                    self._w.nbytes += size
                else:
                    await self._admit(size)
                out, sizes = [data], [size]
                data = None
                if not self._waiters:             # as many more as fit now
                    try:
                        data = self._w.take(items, out, sizes)   # the next chunk's first
                    except Exception as exc:
                        deferred = exc
                chunk = _Chunk(self._loop.create_future(), cmd,
                               None if isinstance(kinds, Command)
                               else kinds[written:written + len(sizes)], sizes)
                written += len(sizes)
                chunks.append(chunk)
                self._w.enqueue(chunk, out[0] if len(out) == 1 else b"".join(out), True)
                if deferred is not None:
                    break
            results: List[Any] = []
            for chunk in chunks:
                results += await chunk.fut
        except asyncio.CancelledError:
            for chunk in chunks:
                fut = chunk.fut
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled() and fut.exception() is None:
                    for result in fut.result():
                        self._abandon(result)
            raise
        except SocketError as exc:
            results = []
            for chunk in chunks:                       # what was confirmed, in order
                results += chunk.results
                if len(chunk.results) < len(chunk.sizes):
                    break
            for chunk in chunks:
                if chunk.fut.done() and not chunk.fut.cancelled():
                    chunk.fut.exception()              # the rest failed alike
            exc.results = results  # type: ignore[attr-defined]
            if not isinstance(exc, ConnectionBroken):
                exc.args = ("%s; %s" % (exc.args[0], lost_note(what, len(results))),)
            raise
        if deferred is not None:
            deferred.results = results  # type: ignore[attr-defined]
            raise deferred
        return checked(what, results, raise_errors)

    async def put_many(self, bodies: Iterable[Body], priority: int = DEFAULT_PRIORITY,
                       delay: int = 0, ttr: int = DEFAULT_TTR,
                       raise_errors: bool = True) -> List[Any]:
        """Put every body (any iterable, streamed) pipelined; the job ids in
        order (see the sync ``put_many``: BatchError, a bad body)."""
        stream = PutStream(self._impl, bodies, priority, delay, ttr, self.encoding)
        return stream.results(await self._batch(PUT, stream, "put", False), raise_errors)

    async def reserve_many(self, n: int, timeout: Optional[int] = None) -> List[Job]:
        """Up to ``n`` reserved jobs: waits (up to ``timeout``) for the first,
        then takes whatever else is ready now. [] when the timeout expires.
        Cancelled: the jobs it reserved are released."""
        n = self._impl.check_uint("n", n, 2 ** 63)
        if n == 0:
            return []
        first = await self.reserve(timeout)
        if first is None:
            return []
        rounds = ReserveRounds(n, first)
        try:
            while rounds.want():
                results = await self._batch(RESERVE_TIMEOUT, [RESERVE_NOW] * rounds.want(),
                                            "reserve", False)
                rounds.take(results)
        except asyncio.CancelledError:
            for job in rounds.jobs:                   # nobody will get them: release them
                if job.reserved and self._w.broken is None:
                    self._release(job.jid)
            raise
        except BaseException as exc:
            rounds.failed(exc)
            raise
        return rounds.jobs

    async def _by_id(self, cmd: Command, jobs: List[JobOrId], ids: List[Any],
                     tails: Optional[Iterable[bytes]], raise_errors: bool) -> List[Any]:
        results = await self._batch(cmd, by_id_commands(self._impl, cmd, ids, tails), cmd.name,
                                    raise_errors)
        unreserve(jobs, results)
        return results

    async def delete_many(self, jobs: Iterable[JobOrId], raise_errors: bool = True) -> List[Any]:
        """Delete every job (Job or id), pipelined."""
        jobs, ids = job_ids(jobs)
        return await self._by_id(DELETE, jobs, ids, None, raise_errors)

    async def release_many(self, jobs: Iterable[JobOrId], priority: Optional[int] = None,
                           delay: int = 0, raise_errors: bool = True) -> List[Any]:
        """Release every job, pipelined; priority None keeps each job's own."""
        jobs, ids = job_ids(jobs)
        delay = self._impl.check_uint("delay", delay)
        pris = await self._priorities(ids, priority)
        return await self._by_id(RELEASE, jobs, ids, (b" %d %d" % (p, delay) for p in pris),
                                 raise_errors)

    async def bury_many(self, jobs: Iterable[JobOrId], priority: Optional[int] = None,
                        raise_errors: bool = True) -> List[Any]:
        """Bury every job, pipelined; priority None keeps each job's own."""
        jobs, ids = job_ids(jobs)
        pris = await self._priorities(ids, priority)
        return await self._by_id(BURY, jobs, ids, (b" %d" % p for p in pris), raise_errors)

    async def _priorities(self, ids: List[Any], priority: Optional[int]) -> Iterable[int]:
        if priority is not None:
            return itertools.repeat(self._impl.check_uint("priority", priority))
        try:
            stats = await self._batch(STATS_JOB_DICT, stats_commands(self._impl, ids),
                                      "stats-job", False)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            exc.results = []  # type: ignore[attr-defined]  # nothing released or buried
            raise
        return priorities_of(stats)


class Pipeline(PipelineCommands):
    """Commands collected and sent as one pipelined batch.

    >>> async with conn.pipeline() as p:     # doctest: +SKIP
    ...     p.put("a"); p.delete(7)
    >>> p.results                             # doctest: +SKIP
    [12, None]

    ``await execute()`` (called on leaving the ``async with`` block) returns
    the results in order; a refused item is an exception instance in its place.
    """

    conn: Connection

    async def execute(self) -> List[Any]:
        """Send everything collected; the results in order."""
        self.results = await self.conn._batch(*split_items(self._take()), "pipelined", False)
        return self.results

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            await self.execute()


class Connecting:
    """``await connect(...)`` -> Connection; ``async with connect(...) as conn``."""

    def __init__(self, conn: Connection, tube: Optional[str] = None) -> None:
        self.conn = conn
        self.tube = tube

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._open().__await__()

    async def _open(self) -> Connection:
        conn = self.conn
        await conn.connect()
        if self.tube is not None and self.tube != DEFAULT_TUBE_NAME:
            try:
                await conn.use(self.tube)
                await conn.watch(self.tube)
                await conn.ignore(DEFAULT_TUBE_NAME)
            except BaseException:
                await conn.close()
                raise
        return conn

    async def __aenter__(self) -> Connection:
        return await self._open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.conn.close()


def connect(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **options: Any) -> Connecting:
    """An asyncio connection to beanstalkd, with the sync Connection's options
    (and ``core``): ``conn = await connect(...)`` or
    ``async with connect(...) as conn``."""
    return Connecting(Connection(host, port, **options))


def from_url(url: str, **options: Any) -> Connecting:
    """An asyncio connection to ``beanstalk://host[:port][/tube][?option=value&...]``,
    ``beanstalks://...`` (TLS) or ``unix:///path/to/socket[?...]``, as the
    sync ``from_url``: the URL's tube is used and watched and ``default``
    ignored; keyword ``options`` (and ``core``) win over the query's. A bad
    URL or option is a ValueError raised at once, before connecting."""
    where = _endpoint.parse_url(url)
    return Connecting(Connection(**_endpoint.connection_kwargs(where, options)), where.tube)


from ._apool import Pool  # noqa: E402  (the multi-server pool, built on Connection)
from ._aworker import Worker  # noqa: E402  (the asyncio worker; it needs the names above)
