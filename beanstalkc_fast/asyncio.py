"""asyncio front end: the classic beanstalkc API as coroutines, on the same
cores and the same command definitions as the sync client, with automatic
pipelining.

>>> async with beanstalkc_fast.asyncio.connect("localhost", 11300) as conn:  # doctest: +SKIP
...     ids = await asyncio.gather(*(conn.put(b) for b in bodies))        # pipelined

Calls made concurrently on one connection are written as they are issued,
without waiting for earlier replies; replies are matched to callers in order.
At most 512 commands and 256 KiB (or one larger command) are written but
unanswered; further callers wait their turn, in order. A ``reserve`` occupies
its place in the reply order: commands issued after it on the same connection
are answered only after it returns, so give every consumer loop a connection
of its own and produce on another one.

Cancellation (task cancel, ``asyncio.wait_for``, ``asyncio.timeout``):

- before the command was written: nothing is sent;
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
import collections
import itertools
import socket
import ssl as ssl_module
from typing import (Any, Awaitable, Callable, Deque, Generator, Iterable, List, Optional,
                    Tuple, Union)

from . import endpoint as _endpoint
from ._impl import core as _default_core
from ._shared import set_keepalive
from .commands import (BATCH_BYTES, BATCH_WINDOW, BURY, DEFAULT_PRIORITY, DEFAULT_TTR,
                       DEFAULT_TUBE_NAME, DELETE, LIST_TUBE_USED, PUT, RELEASE, RESERVE_NOW,
                       RESERVE_TIMEOUT, STATS_JOB_DICT, Body, Command, Commands, Kinds,
                       PipelineCommands, PutStream, YamlOption, checked, by_id_commands, job_ids,
                       lost_note,
                       priorities_of, ReserveRounds, restore_commands, split_items,
                       stats_commands, unreserve)
from .errors import ConnectionBroken, SocketError, UnexpectedResponse
from .job import Job as _SyncJob

__all__ = ["connect", "from_url", "Connecting", "Connection", "Job", "Pipeline", "Pool",
           "Worker"]

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 11300

JobOrId = Union["Job", int]

# how a reply is delivered to its _Call
_FINISH = 0          # the caller's future gets the result or the exception
_OUTCOME = 1         # the future gets the result or the refusal as a value (batches)
_INTERNAL = 2        # ``arg`` is a callback taking the raw reply (housekeeping)


class _Call:
    """A command written and waiting for its reply."""

    __slots__ = ("cmd", "arg", "fut", "size", "mode")

    def __init__(self, cmd: Command, arg: Any, fut: "Optional[asyncio.Future[Any]]", size: int,
                 mode: int) -> None:
        self.cmd = cmd
        self.arg = arg
        self.fut = fut
        self.size = size
        self.mode = mode


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

    def get_buffer(self, sizehint: int) -> Any:
        return self.reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.conn._received(self, nbytes)

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
                 connect_timeout: Optional[float] = socket.getdefaulttimeout(),
                 encoding: Optional[str] = "utf-8",
                 socket_timeout: Optional[float] = 60.0,
                 unix_socket: Optional[str] = None,
                 keepalive_idle: Optional[float] = 60, keepalive_interval: Optional[float] = 10,
                 keepalive_count: Optional[int] = 3, auto_reconnect: bool = False,
                 ssl: _endpoint.SSLArg = None, server_hostname: Optional[str] = None,
                 core: Any = None) -> None:
        self._timer: Optional[asyncio.TimerHandle] = None
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        check_keepalive = _endpoint.check_keepalive
        self.keepalive = (check_keepalive("keepalive_idle", keepalive_idle),
                          check_keepalive("keepalive_interval", keepalive_interval),
                          check_keepalive("keepalive_count", keepalive_count))
        self._ssl_context, self.server_hostname = _endpoint.tls_settings(
            ssl, server_hostname, unix_socket)
        self._set_yaml(parse_yaml)
        self._impl = _default_core if core is None else core
        self._encode_put = self._impl.encode_put
        self._job_type = Job
        self.host = host
        self.port = port
        self.unix_socket = unix_socket
        self.encoding = encoding
        self.auto_reconnect = auto_reconnect
        self._closed = False               # by close(): stays closed under auto_reconnect
        self._using = DEFAULT_TUBE_NAME
        self._watching: List[str] = [DEFAULT_TUBE_NAME]
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._transport: Optional[asyncio.Transport] = None
        self._proto: Optional[_Protocol] = None
        self._broken: Optional[str] = "not connected"
        self._epoch = 0                    # counts breaks: a wait for room is void after one
        self._pending: Deque[_Call] = collections.deque()
        self._count = 0                    # commands written, unanswered (incl. housekeeping)
        self._bytes = 0                    # their bytes
        self._waiters: Deque[Tuple["asyncio.Future[bool]", int]] = collections.deque()
        self._out: List[bytes] = []         # written this loop iteration, not yet flushed
        self._progress = 0.0               # when the reply stream last moved
        self._revive_lock: Optional[asyncio.Lock] = None

    @property
    def broken(self) -> Optional[str]:
        """Why the connection is unusable, or None."""
        return self._broken

    @property
    def connect_timeout(self) -> Optional[float]:
        """How long connecting (and then the TLS handshake) may take, in
        seconds, or None for no limit."""
        return self._connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, seconds: Optional[float]) -> None:
        self._connect_timeout = _endpoint.check_timeout("connect_timeout", seconds)

    @property
    def socket_timeout(self) -> Optional[float]:
        """The read deadline of every command; a new value applies at once
        (to the command waiting at the head, and every later one)."""
        return self._socket_timeout

    @socket_timeout.setter
    def socket_timeout(self, seconds: Optional[float]) -> None:
        self._socket_timeout = _endpoint.check_timeout("socket_timeout", seconds)
        if self._timer is not None:        # armed with the old value
            self._timer.cancel()
            self._timer = None
            if self._pending and self._socket_timeout is not None:
                self._arm()

    @property
    def _address(self) -> str:
        return self.unix_socket or "%s:%s" % (self.host, self.port)

    # -- connection management ------------------------------------------------
    async def connect(self) -> None:
        """Connect to beanstalkd (TLS with ``ssl``) and restore the used tube
        and the watch list; SocketError on failure (a failed TLS handshake
        says why, and nothing was sent)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
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
        self._transport, self._proto = transport, proto
        self._pending.clear()
        self._out.clear()
        self._count = self._bytes = 0
        self._broken = None
        self._closed = False
        if self._ssl_context is not None:
            # TLS 1.3: a server refuses a client certificate after the
            # client's handshake is done; one round trip sees it here
            try:
                await self._send(LIST_TUBE_USED, b"list-tube-used\r\n", None, _FINISH)
            except SocketError as exc:
                raise SocketError(_endpoint.tls_refused(self._address, exc)) from exc
        futures = [self._send(cmd, data, arg, _FINISH)
                   for cmd, data, arg in restore_commands(self._using, list(self._watching),
                                                          self._impl.check_name)]
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
        transport, proto = self._transport, self._proto
        if transport is None or proto is None:
            return
        if self._broken is None:
            self._flush()
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
    def _has_room(self, size: int) -> bool:
        return self._count < BATCH_WINDOW and (
            self._count == 0 or self._bytes + size <= BATCH_BYTES)

    def _send(self, cmd: Command, data: bytes, arg: Any, mode: int,
              counted: bool = False) -> "asyncio.Future[Any]":
        """Write one command now; the future of its reply."""
        fut = self._loop.create_future()
        size = len(data)
        if not counted:
            self._count += 1
            self._bytes += size
        if not self._pending:
            self._progress = self._loop.time()
        self._pending.append(_Call(cmd, arg, fut, size, mode))
        self._write(data)
        return fut

    def _write(self, data: bytes) -> None:
        """Queue ``data``; what is queued in one loop iteration goes out in one write."""
        self._out.append(data)
        if len(self._out) == 1:
            self._loop.call_soon(self._flush)
        if self._timer is None and self.socket_timeout is not None:
            self._arm()

    def _flush(self) -> None:
        out = self._out
        if out and self._broken is None:
            assert self._transport is not None
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _housekeeping(self, data: bytes, callback: Callable[[Any], None]) -> None:
        """Write a command of the connection's own; ``callback`` gets its reply."""
        if self._broken is not None:
            return
        self._count += 1
        self._bytes += len(data)
        if not self._pending:
            self._progress = self._loop.time()
        self._pending.append(_Call(STATS_JOB_DICT, callback, None, len(data), _INTERNAL))
        self._write(data)

    async def _admit(self, size: int) -> None:
        """Wait until a command of ``size`` bytes may be written (its room is
        then counted); reconnect first when broken and auto_reconnect is on,
        once: broken again before the command went out is ConnectionBroken."""
        revived = False
        while True:
            if self._broken is not None:
                if self._closed:
                    raise ConnectionBroken("connection was closed by close(); "
                                           "call connect() or reconnect()")
                if not self.auto_reconnect:
                    raise ConnectionBroken(
                        "connection is broken (%s); call reconnect()" % self._broken)
                if revived:
                    raise ConnectionBroken("reconnect failed: the new connection broke "
                                           "at once (%s)" % self._broken)
                revived = True
                await self._revive()
                continue
            if not self._waiters and self._has_room(size):
                self._count += 1
                self._bytes += size
                return
            epoch = self._epoch
            fut: "asyncio.Future[bool]" = self._loop.create_future()
            self._waiters.append((fut, size))
            try:
                granted = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() and self._epoch == epoch:
                    self._count -= 1           # room granted but not used: pass it on
                    self._bytes -= size
                    self._wake()
                raise
            if granted and self._epoch == epoch and self._broken is None:
                return

    def _wake(self) -> None:
        """Grant room to the waiting callers it now fits, in order."""
        waiters = self._waiters
        while waiters:
            fut, size = waiters[0]
            if fut.done():
                waiters.popleft()
                continue
            if not self._has_room(size):
                return
            waiters.popleft()
            self._count += 1
            self._bytes += size
            fut.set_result(True)

    async def _revive(self) -> None:
        if self._revive_lock is None:
            self._revive_lock = asyncio.Lock()
        async with self._revive_lock:
            if self._broken is not None and not self._closed:
                try:
                    await self.reconnect()
                except ConnectionBroken:
                    raise
                except SocketError as exc:
                    # nothing of the caller's command was sent
                    raise ConnectionBroken("reconnect failed: %s" % (exc,)) from exc

    async def _run(self, conn: Any, cmd: Command, data: bytes, arg: Any = None) -> Any:
        """Write the command (when there is room) and return its result."""
        retried = False
        while True:
            if self._broken is None and not self._waiters and self._has_room(len(data)):
                fut = self._send(cmd, data, arg, _FINISH)
            else:
                await self._admit(len(data))
                fut = self._send(cmd, data, arg, _FINISH, counted=True)
            try:
                return await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._abandon(fut)
                raise
            except ConnectionBroken:
                raise
            except SocketError as exc:
                if self.auto_reconnect and cmd.safe and not retried:
                    retried = True
                    continue
                if cmd.lost:
                    exc.args = ("%s; %s" % (exc.args[0], cmd.lost),)
                raise

    # -- reading -------------------------------------------------------------------
    def _received(self, proto: _Protocol, nbytes: int) -> None:
        if proto is not self._proto or self._broken is not None:
            return
        reader = proto.reader
        reader.buffer_updated(nbytes)
        self._progress = self._loop.time()
        try:
            reply = reader.next_reply()
            while reply is not None:
                self._deliver(reply)
                reply = reader.next_reply()
        except Exception as exc:             # malformed reply: nothing more is parsed
            self._break("unexpected response: %s" % (exc,), head=exc)
            return
        if self._waiters:
            self._wake()
        if self._timer is None and self._pending and self.socket_timeout is not None:
            self._arm()

    def _deliver(self, reply: Any) -> None:
        if not self._pending:
            raise UnexpectedResponse("reply %r with no command waiting" % (reply[0],))
        call = self._pending.popleft()
        self._count -= 1
        self._bytes -= call.size
        status, value, body = reply
        if call.mode == _INTERNAL:
            call.arg(reply)
            return
        fut = call.fut
        assert fut is not None
        try:
            if call.mode == _OUTCOME:
                result = call.cmd.outcome(status, value, body, self, call.arg)
            else:
                result = call.cmd.finish(status, value, body, self, call.arg)
        except Exception as exc:
            if not fut.cancelled():
                fut.set_exception(exc)
            return
        if fut.cancelled():
            if isinstance(result, Job) and result.reserved:
                self._release(result.jid)
        else:
            fut.set_result(result)

    def _abandon(self, fut: "asyncio.Future[Any]") -> None:
        """The result of a call cancelled after its reply arrived: a reserved
        job is released (an exception is marked retrieved)."""
        if fut.exception() is None:
            result = fut.result()
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
                self._housekeeping(b"release %d %d 0\r\n" % (jid, pri), released)

        self._housekeeping(self._impl.encode_id(b"stats-job ", jid), got_stats)

    # -- faults ----------------------------------------------------------------------
    def _arm(self) -> None:
        assert self.socket_timeout is not None
        self._timer = self._loop.call_at(self._progress + self.socket_timeout, self._deadline)

    def _deadline(self) -> None:
        """The read deadline's check: break when the head call waited too long."""
        self._timer = None
        if self._broken is not None or not self._pending or self.socket_timeout is None:
            return
        head = self._pending[0]
        extra = head.cmd.extra(head.arg) if head.mode != _INTERNAL else 0.0
        if extra is None:
            return                     # waits indefinitely; armed again when the head moves
        deadline = self._progress + self.socket_timeout + extra
        if self._loop.time() >= deadline:
            self._break("socket error: timed out")
        else:
            self._timer = self._loop.call_at(deadline, self._deadline)

    def _break(self, reason: str, head: Optional[BaseException] = None,
               cause: Optional[BaseException] = None, abort: bool = True) -> None:
        """Mark the connection broken and fail every pending caller at once
        (the first with ``head`` when given, the others with SocketError)."""
        if self._broken is not None:
            return
        self._broken = reason
        self._epoch += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            if abort:
                self._transport.abort()
            else:
                self._transport.close()
        pending, self._pending = self._pending, collections.deque()
        self._count = self._bytes = 0
        for i, call in enumerate(pending):
            fut = call.fut
            if fut is None or fut.done():
                continue
            if i == 0 and head is not None:
                fut.set_exception(head)
            else:
                err = SocketError(reason)
                err.__cause__ = cause
                fut.set_exception(err)
        waiters, self._waiters = self._waiters, collections.deque()
        for wfut, _ in waiters:
            if not wfut.done():
                wfut.set_result(False)

    # -- batches -------------------------------------------------------------------------
    def pipeline(self) -> "Pipeline":
        """Collect commands and send them in one pipelined batch; see Pipeline."""
        return Pipeline(self)

    async def _batch(self, kinds: Kinds, commands: Iterable[bytes], what: str,
                     raise_errors: bool) -> List[Any]:
        """Write every command (in order, as room allows) and collect each
        result or refusal in order; ``kinds`` is the batch's Command, or a
        (Command, arg) per item. BatchError when some item was refused (unless not
        ``raise_errors``); SocketError carrying ``results`` when the link broke;
        an exception of ``items`` stops the writing, the written ones are
        answered, then it is raised."""
        futures: List["asyncio.Future[Any]"] = []
        results: List[Any] = []
        deferred: Optional[BaseException] = None
        uniform = isinstance(kinds, Command)
        cmd: Command = kinds if isinstance(kinds, Command) else PUT     # else: per item
        arg: Any = None
        try:
            it = iter(commands)
            while True:
                try:
                    data = next(it, None)
                except Exception as exc:
                    deferred = exc
                    break
                if data is None:
                    break
                if not uniform:
                    cmd, arg = kinds[len(futures)]
                if self._broken is None and not self._waiters and self._has_room(len(data)):
                    futures.append(self._send(cmd, data, arg, _OUTCOME))
                else:
                    await self._admit(len(data))
                    futures.append(self._send(cmd, data, arg, _OUTCOME, counted=True))
            for fut in futures:
                results.append(await fut)
        except asyncio.CancelledError:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    self._abandon(fut)
            raise
        except SocketError as exc:
            for fut in futures:                        # the rest failed alike
                if fut.done() and not fut.cancelled():
                    fut.exception()
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
                if job.reserved and self._broken is None:
                    self._release(job.jid)
            raise
        except BaseException as exc:
            rounds.failed(exc)
            raise
        return rounds.jobs

    async def _by_id(self, cmd: Command, jobs: List[JobOrId], ids: List[int],
                     tails: Iterable[bytes], raise_errors: bool) -> List[Any]:
        results = await self._batch(cmd, by_id_commands(cmd, ids, tails), cmd.name,
                                    raise_errors)
        unreserve(jobs, results)
        return results

    async def delete_many(self, jobs: Iterable[JobOrId], raise_errors: bool = True) -> List[Any]:
        """Delete every job (Job or id), pipelined."""
        jobs, ids = job_ids(self._impl, jobs)
        return await self._by_id(DELETE, jobs, ids, itertools.repeat(b""), raise_errors)

    async def release_many(self, jobs: Iterable[JobOrId], priority: Optional[int] = None,
                           delay: int = 0, raise_errors: bool = True) -> List[Any]:
        """Release every job, pipelined; priority None keeps each job's own."""
        jobs, ids = job_ids(self._impl, jobs)
        delay = self._impl.check_uint("delay", delay)
        pris = await self._priorities(ids, priority)
        return await self._by_id(RELEASE, jobs, ids, (b" %d %d" % (p, delay) for p in pris),
                                 raise_errors)

    async def bury_many(self, jobs: Iterable[JobOrId], priority: Optional[int] = None,
                        raise_errors: bool = True) -> List[Any]:
        """Bury every job, pipelined; priority None keeps each job's own."""
        jobs, ids = job_ids(self._impl, jobs)
        pris = await self._priorities(ids, priority)
        return await self._by_id(BURY, jobs, ids, (b" %d" % p for p in pris), raise_errors)

    async def _priorities(self, ids: List[int], priority: Optional[int]) -> Iterable[int]:
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
