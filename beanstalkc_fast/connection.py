"""Connection: the classic beanstalkc API on top of the chosen core.

Every public method validates its arguments, encodes one command, lets the
core send it and read exactly one reply, and turns the reply into a return
value or a precise exception.
"""

import os
import socket
import weakref
from typing import Any, Callable, Iterable, List, Optional, Union

from . import _core
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
_NO_KEYS: frozenset = frozenset()

_LIVE: "weakref.WeakSet[Connection]" = weakref.WeakSet()

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


def _fail(command: str, status: str, value: Any) -> Exception:
    results = [] if value is None else [str(value)]
    if status in ERROR_CLASSES:
        return command_failed(command, status, results)
    return UnexpectedResponse(command, status, results)


class Connection:
    """A connection to one beanstalkd server.

    Beyond beanstalkc: ``encoding`` (None: bodies stay bytes), ``socket_timeout``
    (the read deadline of every command; a reserve with a timeout is allowed
    that much longer, a reserve without one waits indefinitely), ``unix_socket``
    (a path, instead of host and port), ``keepalive_*`` (TCP keepalive idle
    time, probe interval and probe count, seconds). TCP_NODELAY and
    SO_KEEPALIVE are on.

    ``auto_reconnect=True``: a call on a broken connection (earlier failure,
    ``fork()``) first reconnects, restoring the used tube and the watch list;
    a command whose reply was lost is sent again on a new connection only when
    repeating it is safe (reserve, peek, stats, list, use, watch, ignore,
    pause-tube). A lost reply to put, delete, release, bury, touch, kick or a
    batch always raises ``SocketError``.

    A connection belongs to one thread; see the README for the contract.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 parse_yaml: Union[bool, Callable[[str], Any]] = True,
                 connect_timeout: Optional[float] = socket.getdefaulttimeout(),
                 encoding: Optional[str] = "utf-8",
                 socket_timeout: Optional[float] = 60.0,
                 unix_socket: Optional[str] = None,
                 keepalive_idle: int = 60, keepalive_interval: int = 10,
                 keepalive_count: int = 3, auto_reconnect: bool = False) -> None:
        if parse_yaml is True:
            self._yaml: Optional[Callable[[str], Any]] = None
            self._parse = True
        else:
            self._yaml = parse_yaml if callable(parse_yaml) else None
            self._parse = False
        self.host = host
        self.port = port
        self.unix_socket = unix_socket
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.encoding = encoding
        self.keepalive = (keepalive_idle, keepalive_interval, keepalive_count)
        self.auto_reconnect = auto_reconnect
        self._using = DEFAULT_TUBE_NAME
        self._watching: List[str] = [DEFAULT_TUBE_NAME]
        self._core: Any = None
        self.connect()

    # -- connection management ------------------------------------------------
    def connect(self) -> None:
        """Connect to beanstalkd (SocketError on failure)."""
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
            raise SocketError.wrap(exc, "cannot connect: %s" % (exc,)) from exc
        self._core = _core.Core(sock, self.socket_timeout)
        self._request = self._retrying_request if self.auto_reconnect else self._core.request
        _LIVE.add(self)

    def _set_keepalive(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle, interval, count = self.keepalive
        for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                           ("TCP_KEEPCNT", count)):
            if hasattr(socket, opt):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
                except OSError:
                    pass
        # Keepalive probes only an idle connection: also bound how long sent
        # data may stay unacknowledged (a command sent to a vanished host).
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                                int((idle + interval * count) * 1000))
            except OSError:
                pass

    def close(self) -> None:
        """Send ``quit`` and close; never raises on a dead socket."""
        core = self._core
        if core is None:
            return
        if core.broken is None:
            try:
                core.sock.send(b"quit\r\n")
            except OSError:
                pass
        core.close()

    def reconnect(self) -> None:
        """Close, connect again, and restore the used tube and the watch list."""
        self.close()
        self.connect()
        core = self._core
        for data, command, ok in self._restore_commands():
            status, value, _ = core.request(data)
            if status != ok:
                raise _fail(command, status, value)

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
        """The core; with auto_reconnect, a new one when it is broken."""
        if self.auto_reconnect and self._core.broken is not None:
            self.reconnect()
        return self._core

    def _retrying_request(self, data: bytes, extra: Optional[float] = 0.0) -> Any:
        core = self._live_core()
        try:
            return core.request(data, extra)
        except SocketError:
            if data.split(None, 1)[0] not in _SAFE_TO_REPEAT:
                raise
        self.reconnect()
        return self._request(data, extra)

    def _yaml_result(self, command: str, data: bytes, str_keys: frozenset) -> Any:
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
        """Insert a job into the used tube; its id."""
        data = encode_put(body, priority, delay, ttr, self.encoding)
        try:
            status, value, _ = self._request(data)
        except ConnectionBroken:
            raise
        except SocketError as exc:
            exc.args = ("%s; the job may or may not have been inserted" % (exc.args[0],),)
            raise
        if status == "INSERTED":
            return value
        raise _fail("put", status, value)

    # -- consumer ----------------------------------------------------------------
    def reserve(self, timeout: Optional[int] = None) -> Optional[Job]:
        """Reserve a job from the watched tubes; None when ``timeout`` expires."""
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
        """Reserve the job ``jid`` (beanstalkd >= 1.12)."""
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
        """Delete a job."""
        status, value, _ = self._request(encode_id(b"delete ", jid))
        if status != "DELETED":
            raise _fail("delete", status, value)

    def release(self, jid: int, priority: int = DEFAULT_PRIORITY, delay: int = 0) -> None:
        """Release a reserved job back to ready (or delayed)."""
        status, value, _ = self._request(b"release %d %d %d\r\n" % (
            _jid(jid), check_uint("priority", priority), check_uint("delay", delay)))
        if status != "RELEASED":
            raise _fail("release", status, value)

    def bury(self, jid: int, priority: int = DEFAULT_PRIORITY) -> None:
        """Bury a reserved job."""
        self._expect("bury", b"bury %d %d\r\n" % (_jid(jid), check_uint("priority", priority)),
                     "BURIED")

    def touch(self, jid: int) -> None:
        """Ask for more time to work on a reserved job."""
        self._expect("touch", encode_id(b"touch ", jid), "TOUCHED")

    def kick(self, bound: int = 1) -> int:
        """Kick at most ``bound`` buried (else delayed) jobs; how many were kicked."""
        return self._expect("kick", b"kick %d\r\n" % check_uint("bound", bound), "KICKED")

    def kick_job(self, jid: int) -> None:
        """Kick one buried or delayed job."""
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
        """The job ``jid``, unreserved, or None."""
        return self._peek("peek", encode_id(b"peek ", jid))

    def peek_ready(self) -> Optional[Job]:
        """The next ready job of the used tube, or None."""
        return self._peek("peek-ready", b"peek-ready\r\n")

    def peek_delayed(self) -> Optional[Job]:
        """The delayed job of the used tube with the shortest delay left, or None."""
        return self._peek("peek-delayed", b"peek-delayed\r\n")

    def peek_buried(self) -> Optional[Job]:
        """The next buried job of the used tube, or None."""
        return self._peek("peek-buried", b"peek-buried\r\n")

    # -- tubes -----------------------------------------------------------------------
    def tubes(self) -> Any:
        """All existing tubes."""
        return self._yaml_result("list-tubes", b"list-tubes\r\n", _NO_KEYS)

    def using(self) -> str:
        """The tube that put uses."""
        return self._expect("list-tube-used", b"list-tube-used\r\n", "USING")

    def use(self, name: str) -> str:
        """Put into tube ``name`` from now on; the name."""
        used = self._expect("use", b"use %s\r\n" % check_name(name), "USING")
        self._using = used
        return used

    def watching(self) -> Any:
        """The watched tubes."""
        return self._yaml_result("list-tubes-watched", b"list-tubes-watched\r\n", _NO_KEYS)

    def watch(self, name: str) -> int:
        """Watch tube ``name`` too; the number of watched tubes."""
        raw = check_name(name)
        count = self._expect("watch", b"watch %s\r\n" % raw, "WATCHING")
        text = raw.decode("ascii")
        if text not in self._watching:
            self._watching.append(text)
        return count

    def ignore(self, name: str) -> int:
        """Stop watching ``name``; the number of watched tubes. Ignoring the
        last watched tube is silently refused and returns 1."""
        raw = check_name(name)
        status, value, _ = self._request(b"ignore %s\r\n" % raw)
        if status == "WATCHING":
            text = raw.decode("ascii")
            if text in self._watching:
                self._watching.remove(text)
            return value
        if status == "NOT_IGNORED":
            return 1
        raise _fail("ignore", status, value)

    def pause_tube(self, name: str, delay: int) -> None:
        """Let no job of tube ``name`` be reserved for ``delay`` seconds."""
        self._expect("pause-tube", b"pause-tube %s %d\r\n" % (
            check_name(name), check_uint("delay", delay)), "PAUSED")

    # -- stats -------------------------------------------------------------------------
    def stats(self) -> Union[ServerStats, Any]:
        """Server statistics."""
        return self._yaml_result("stats", b"stats\r\n", _SERVER_STR_KEYS)

    def stats_tube(self, name: str) -> Union[TubeStats, Any]:
        """Statistics of tube ``name``."""
        return self._yaml_result("stats-tube", b"stats-tube %s\r\n" % check_name(name), _NO_KEYS)

    def stats_job(self, jid: int) -> Union[JobStats, Any]:
        """Statistics of job ``jid``."""
        return self._yaml_result("stats-job", encode_id(b"stats-job ", jid), _NO_KEYS)

    def _stats_job_dict(self, jid: int) -> dict:
        status, value, body = self._request(encode_id(b"stats-job ", jid))
        if status != "OK":
            raise _fail("stats-job", status, value)
        return parse_yaml(body, _NO_KEYS)

    # -- batches -------------------------------------------------------------------------
    def pipeline(self) -> "Pipeline":
        """Collect commands and send them in one pipelined batch; see Pipeline."""
        return Pipeline(self)

    def _run(self, commands: Iterable[bytes], handlers: List[Callable[..., Any]],
             what: str, raise_errors: bool) -> List[Any]:
        """Pipeline ``commands``; handler i turns reply i into a result or an
        exception instance. BatchError when some item failed (unless not
        ``raise_errors``); SocketError carrying ``results`` when the link broke."""
        replies: List[Any] = []
        try:
            self._live_core().pipeline(commands, replies)
        except SocketError as exc:
            exc.results = [h(*r) for h, r in zip(handlers, replies)]
            if not isinstance(exc, ConnectionBroken):
                exc.args = ("%s; %s past the %d confirmed ones may or may not have been %s" % (
                    exc.args[0], "jobs" if what == "put" else "commands", len(replies),
                    "inserted" if what == "put" else "carried out"),)
            raise
        except BaseException as exc:
            exc.results = [h(*r) for h, r in zip(handlers, replies)]
            raise
        results = [h(*r) for h, r in zip(handlers, replies)]
        if raise_errors and any(isinstance(r, BaseException) for r in results):
            raise BatchError("%d of %d %s commands failed" % (
                sum(isinstance(r, BaseException) for r in results), len(results), what), results)
        return results

    def put_many(self, bodies: Iterable[Body], priority: int = DEFAULT_PRIORITY,
                 delay: int = 0, ttr: int = DEFAULT_TTR, raise_errors: bool = True) -> List[Any]:
        """Put every body (any iterable, streamed) in one pipelined batch; the
        job ids in order. A failed item raises BatchError after the batch,
        whose ``results`` hold an id or an exception per item."""
        check_uint("priority", priority)
        check_uint("delay", delay)
        check_uint("ttr", ttr)
        encoding = self.encoding
        commands = (encode_put(body, priority, delay, ttr, encoding) for body in bodies)
        return self._run(commands, _Handlers(_on_put), "put", raise_errors)

    def reserve_many(self, n: int, timeout: Optional[int] = None) -> List[Job]:
        """Up to ``n`` reserved jobs: waits (up to ``timeout``) for the first,
        then takes whatever else is ready now. [] when the timeout expires."""
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
                exc.results = jobs
                raise
            got = [Job(self, v, b, True, encoding) for s, v, b in replies if s == "RESERVED"]
            jobs += got
            if len(got) < want:
                break
        return jobs

    def _by_id(self, verb: bytes, jobs: Iterable[JobOrId], ok: str, tail: bytes,
               raise_errors: bool) -> List[Any]:
        jobs = list(jobs)
        ids = [_jid(_id_of(j)) for j in jobs]
        commands = [b"%s %d%s\r\n" % (verb, jid, tail) for jid in ids]
        command = verb.decode()

        def handle(status: str, value: Any, body: Any) -> Any:
            return None if status == ok else _fail(command, status, value)

        results = self._run(commands, _Handlers(handle), command, raise_errors)
        for job, result in zip(jobs, results):
            if isinstance(job, Job) and not isinstance(result, BaseException):
                job.reserved = False
        return results

    def delete_many(self, jobs: Iterable[JobOrId], raise_errors: bool = True) -> List[Any]:
        """Delete every job (Job or id) in one pipelined batch."""
        return self._by_id(b"delete", jobs, "DELETED", b"", raise_errors)

    def release_many(self, jobs: Iterable[JobOrId], priority: int = DEFAULT_PRIORITY,
                     delay: int = 0, raise_errors: bool = True) -> List[Any]:
        """Release every job with one priority and delay, in one batch."""
        tail = b" %d %d" % (check_uint("priority", priority), check_uint("delay", delay))
        return self._by_id(b"release", jobs, "RELEASED", tail, raise_errors)

    def bury_many(self, jobs: Iterable[JobOrId], priority: int = DEFAULT_PRIORITY,
                  raise_errors: bool = True) -> List[Any]:
        """Bury every job with one priority, in one batch."""
        tail = b" %d" % check_uint("priority", priority)
        return self._by_id(b"bury", jobs, "BURIED", tail, raise_errors)


class _Handlers:
    """The same handler for every item, indexable like a list."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler

    def __iter__(self) -> Any:
        while True:
            yield self.handler


def _on_put(status: str, value: Any, body: Any) -> Any:
    if status == "INSERTED":
        return value
    return _fail("put", status, value)


class Pipeline:
    """Commands collected and sent as one pipelined batch.

    >>> with conn.pipeline() as p:          # doctest: +SKIP
    ...     p.put("a"); p.delete(7)
    >>> p.results                            # doctest: +SKIP
    [12, None]

    ``execute()`` (called on leaving the ``with`` block) returns the results
    in order; a failed item is an exception instance in its place.
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
        return self._add(encode_put(body, priority, delay, ttr, self.conn.encoding),
                         "put", "INSERTED", True)

    def delete(self, jid: JobOrId) -> "Pipeline":
        return self._add(encode_id(b"delete ", _id_of(jid)), "delete", "DELETED")

    def release(self, jid: JobOrId, priority: int = DEFAULT_PRIORITY, delay: int = 0) -> "Pipeline":
        return self._add(b"release %d %d %d\r\n" % (
            _jid(_id_of(jid)), check_uint("priority", priority), check_uint("delay", delay)),
            "release", "RELEASED")

    def bury(self, jid: JobOrId, priority: int = DEFAULT_PRIORITY) -> "Pipeline":
        return self._add(b"bury %d %d\r\n" % (_jid(_id_of(jid)), check_uint("priority", priority)),
                         "bury", "BURIED")

    def touch(self, jid: JobOrId) -> "Pipeline":
        return self._add(encode_id(b"touch ", _id_of(jid)), "touch", "TOUCHED")

    def kick_job(self, jid: JobOrId) -> "Pipeline":
        return self._add(encode_id(b"kick-job ", _id_of(jid)), "kick-job", "KICKED")

    def execute(self) -> List[Any]:
        """Send everything collected; the results in order."""
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
