"""Every beanstalkd command, defined once.

A ``Command`` says which reply means success, what the result is, which
other replies are results rather than errors, how long the server may
legitimately wait before answering, and whether the command is safe to send
again after its reply was lost. ``Commands`` holds the public command
methods, each written once: it validates the arguments, encodes the command
with the connection's core and hands ``(command, bytes, arg)`` to
``self._run``. The sync Connection returns the result from there, the
asyncio Connection an awaitable, a Pipeline records the command; all of them
turn a reply into a result with ``Command.finish`` (or ``outcome`` in
batches), so no front end spells out a command's reply handling.
"""

import itertools
from operator import itemgetter
from typing import (Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Tuple,
                    Union)

from .errors import (ERROR_CLASSES, BatchError, CommandFailed, DeadlineSoon,
                     UnexpectedResponse, command_failed)
from .job import Job

DEFAULT_PRIORITY = 2 ** 31
DEFAULT_TTR = 120
DEFAULT_TUBE_NAME = "default"
MAX_UINT64 = 2 ** 64 - 1
BATCH_WINDOW = 512                 # commands written but unanswered, at most
BATCH_BYTES = 1 << 18              # bytes written but unanswered (or one larger command)

SERVER_STR_KEYS: FrozenSet[str] = frozenset(("id",))
NO_KEYS: FrozenSet[str] = frozenset()

Body = Union[str, bytes, bytearray, memoryview]
Reply = Tuple[str, Any, Optional[bytes]]

# how long a command may wait for its reply beyond the read deadline (Command.wait)
WAIT_NONE = 0                      # not at all
WAIT_ARG = 1                       # the command's ``arg`` seconds (reserve-with-timeout)
WAIT_FOREVER = 2                   # indefinitely (reserve without timeout)


def fail(command: str, status: str, value: Any) -> Exception:
    """The exception for a reply ``status`` that is not a result of ``command``:
    the precise CommandFailed subclass, else UnexpectedResponse."""
    results = [] if value is None else [str(value)]
    if status in ERROR_CLASSES:
        return command_failed(command, status, results)
    return UnexpectedResponse(command, status, results)


OnOk = Callable[[Any, Any, Any, Any], Any]     # (conn, value, body, arg) -> result

# what a success returns (Command.kind); the cores' execute() handle all but
# CUSTOM without calling finish()
VALUE = 0            # the reply's value (an id, a count, a name)
NOTHING = 1          # None
RESERVED = 2         # a reserved Job: conn._job_type(conn, id, body, True, conn.encoding)
PEEKED = 3           # an unreserved Job
CUSTOM = 4           # on_ok(conn, value, body, arg)
YAML = 5             # the body as the parse_yaml option says: conn._yaml_value(body, keys)


class Command(tuple):  # type: ignore[type-arg]
    """One command's reply handling (see the module docstring).

    A tuple, so that the Cython core's ``execute`` reads its fields by
    position (ok, kind, wait, lost first, keys last: keep that order); the
    attributes name them for everyone else.
    """

    __slots__ = ()

    def __new__(cls, name: str, ok: str, kind: Union[int, OnOk] = VALUE,
                alt: Optional[Dict[str, Any]] = None, safe: bool = False,
                wait: int = WAIT_NONE, lost: str = "", keys: FrozenSet[str] = NO_KEYS
                ) -> "Command":
        on_ok = None
        if callable(kind):
            kind, on_ok = CUSTOM, kind
        return tuple.__new__(cls, (ok, kind, wait, lost, name, on_ok, alt or {}, safe, keys))

    ok = property(itemgetter(0), doc="the success status")
    kind = property(itemgetter(1), doc="the result of a success: VALUE, NOTHING, ... CUSTOM")
    wait = property(itemgetter(2), doc="WAIT_NONE, WAIT_ARG or WAIT_FOREVER")
    lost = property(itemgetter(3), doc="what a lost reply leaves unknown, for the SocketError")
    name = property(itemgetter(4), doc="the command's name")
    on_ok = property(itemgetter(5), doc="CUSTOM: (conn, value, body, arg) -> the result")
    alt = property(itemgetter(6),
                   doc="other statuses that are results (an exception class: raised)")
    safe = property(itemgetter(7), doc="may be sent again after its reply was lost")
    keys = property(itemgetter(8), doc="YAML: the keys whose values stay str")

    def __repr__(self) -> str:
        return "<Command %s>" % self.name

    def extra(self, arg: Any) -> Optional[float]:
        """Seconds the server may wait before answering, beyond the read
        deadline (None: indefinitely)."""
        wait = self[2]
        if wait == WAIT_NONE:
            return 0.0
        return arg if wait == WAIT_ARG else None

    def finish(self, status: str, value: Any, body: Optional[bytes], conn: Any,
               arg: Any = None) -> Any:
        """The result of a reply, or raise the precise exception."""
        if status == self.ok:
            kind = self.kind
            if kind == VALUE:
                return value
            if kind == NOTHING:
                return None
            if kind == YAML:
                return conn._yaml_value(body, self[8])
            if kind == CUSTOM:
                return self.on_ok(conn, value, body, arg)
            return conn._job_type(conn, value, body, kind == RESERVED, conn.encoding)
        if status in self.alt:
            result = self.alt[status]
            if isinstance(result, type) and issubclass(result, BaseException):
                raise result(status)
            return result
        raise fail(self.name, status, value)

    def outcome(self, status: str, value: Any, body: Optional[bytes], conn: Any,
                arg: Any = None) -> Any:
        """Like ``finish``, with a refusal returned as an exception instance
        instead of raised (one item of a batch)."""
        try:
            return self.finish(status, value, body, conn, arg)
        except (CommandFailed, UnexpectedResponse, DeadlineSoon) as exc:
            return exc

    def outcomes(self, replies: List[Reply], conn: Any) -> List[Any]:
        """``outcome`` of every reply (a batch of this command, arg None)."""
        ok, kind = self[0], self[1]
        outcome = self.outcome
        if kind == VALUE:
            return [v if s == ok else outcome(s, v, b, conn) for s, v, b in replies]
        if kind == NOTHING:
            return [None if s == ok else outcome(s, v, b, conn) for s, v, b in replies]
        if kind == RESERVED or kind == PEEKED:              # finish's job, made here
            job, encoding, reserved = conn._job_type, conn.encoding, kind == RESERVED
            return [job(conn, v, b, reserved, encoding) if s == ok else outcome(s, v, b, conn)
                    for s, v, b in replies]
        return [outcome(s, v, b, conn) for s, v, b in replies]


# -- results -------------------------------------------------------------------------

def _stats_dict(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    return conn._impl.parse_yaml(body, NO_KEYS)


def _used(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    conn._using = value
    return value


# the watch list is replaced, never mutated (a subclass may share the class default)
def _watched(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    if arg not in conn._watching:
        conn._watching = conn._watching + [arg]
    return value


def _ignored(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    conn._watching = [w for w in conn._watching if w != arg]
    return value


def _cmd(name: str, ok: str, kind: Union[int, OnOk] = VALUE, **kw: Any) -> Command:
    return Command(name, ok, kind, **kw)


PUT = _cmd("put", "INSERTED", lost="the job may or may not have been inserted")
RESERVE = _cmd("reserve", "RESERVED", RESERVED,
               alt={"DEADLINE_SOON": DeadlineSoon}, safe=True, wait=WAIT_FOREVER)
RESERVE_TIMEOUT = _cmd("reserve", "RESERVED", RESERVED,
                       alt={"TIMED_OUT": None, "DEADLINE_SOON": DeadlineSoon}, safe=True,
                       wait=WAIT_ARG)
RESERVE_JOB = _cmd("reserve-job", "RESERVED", RESERVED, safe=True)
DELETE = _cmd("delete", "DELETED", NOTHING)
RELEASE = _cmd("release", "RELEASED", NOTHING)
BURY = _cmd("bury", "BURIED", NOTHING)
TOUCH = _cmd("touch", "TOUCHED", NOTHING)
KICK = _cmd("kick", "KICKED")
KICK_JOB = _cmd("kick-job", "KICKED", NOTHING)
PEEK = _cmd("peek", "FOUND", PEEKED, alt={"NOT_FOUND": None}, safe=True)
PEEK_READY = _cmd("peek-ready", "FOUND", PEEKED, alt={"NOT_FOUND": None}, safe=True)
PEEK_DELAYED = _cmd("peek-delayed", "FOUND", PEEKED, alt={"NOT_FOUND": None}, safe=True)
PEEK_BURIED = _cmd("peek-buried", "FOUND", PEEKED, alt={"NOT_FOUND": None}, safe=True)
LIST_TUBES = _cmd("list-tubes", "OK", YAML, safe=True)
LIST_TUBE_USED = _cmd("list-tube-used", "USING", safe=True)
LIST_TUBES_WATCHED = _cmd("list-tubes-watched", "OK", YAML, safe=True)
USE = _cmd("use", "USING", _used, safe=True)
WATCH = _cmd("watch", "WATCHING", _watched, safe=True)
IGNORE = _cmd("ignore", "WATCHING", _ignored, alt={"NOT_IGNORED": 1}, safe=True)
PAUSE_TUBE = _cmd("pause-tube", "PAUSED", NOTHING, safe=True)
STATS = _cmd("stats", "OK", YAML, safe=True, keys=SERVER_STR_KEYS)
STATS_TUBE = _cmd("stats-tube", "OK", YAML, safe=True)
STATS_JOB = _cmd("stats-job", "OK", YAML, safe=True)
STATS_JOB_DICT = _cmd("stats-job", "OK", _stats_dict, safe=True)   # parsed whatever parse_yaml says

# Fixed wire text sent from more than one place: the hottest commands' (the
# Cython core's one-call paths conn_reserve, conn_delete and conn_stats send
# these bytes), and that of commands the front ends also send on their own.
RESERVE_LINE = b"reserve\r\n"
RESERVE_TIMEOUT_PREFIX = b"reserve-with-timeout "
RESERVE_NOW = RESERVE_TIMEOUT_PREFIX + b"0\r\n"     # a poll (reserve_many rounds)
DELETE_PREFIX = b"delete "
STATS_LINE = b"stats\r\n"
STATS_JOB_PREFIX = b"stats-job "     # also the priorities read before release_many, bury_many
LIST_TUBE_USED_LINE = b"list-tube-used\r\n"     # also the TLS check's round trip


def release_line(impl: Any, jid: int, priority: int, delay: int) -> bytes:
    """The ``release`` command line, its numbers checked by ``impl``."""
    check = impl.check_uint
    return b"release %d %d %d\r\n" % (
        check("job id", jid, MAX_UINT64), check("priority", priority), check("delay", delay))


def restore_commands(conn: Any, using: str, watching: List[str]) -> List["Item"]:
    """The commands (``use``, ``watch``, ``ignore``, as their methods send
    them) that bring ``conn``'s new connection to the used tube ``using`` and
    the watch list ``watching`` (after a reconnect)."""
    collect = PipelineCommands(conn)
    if using != DEFAULT_TUBE_NAME:
        collect.use(using)
    for name in watching:
        if name != DEFAULT_TUBE_NAME:
            collect.watch(name)
    if DEFAULT_TUBE_NAME not in watching:
        collect.ignore(DEFAULT_TUBE_NAME)
    return collect._take()


class Commands:
    """The command methods of the classic beanstalkc API, written once.

    Subclasses provide ``_impl`` (the core module: encoders and checks),
    ``_encode_put`` (its put encoder),
    ``encoding``, ``_using``/``_watching`` (the tubes asked for), ``_job``
    (a job of theirs), ``_yaml_value`` (a stats or list body as the
    connection's ``parse_yaml`` option says) and ``_run(conn, command, data,
    arg)``, whose return value each method returns: a result, an awaitable
    or the collecting pipeline. The docstrings speak of the sync results; the
    asyncio Connection's methods return awaitables of the same.
    """

    _impl: Any
    _parse: bool
    encoding: Optional[str]
    # the put encoder: ``_impl.encode_put`` (one buffer), or on the sync
    # Connection ``_impl.encode_put_parts`` (a big body leaves from its own buffer)
    _encode_put: Callable[..., Any]

    # _run(conn, cmd, data, arg=None): run ``cmd`` (sent as ``data``) for
    # ``conn`` (the front end's own connection, passed so that a core's bound
    # ``execute`` can serve). An instance attribute on the sync Connection,
    # not a method, so that the lookup stays a plain one on the hot path.
    _run: Callable[..., Any]

    # -- producer ----------------------------------------------------------------
    def put(self, body: Body, priority: int = DEFAULT_PRIORITY, delay: int = 0,
            ttr: int = DEFAULT_TTR) -> Any:
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
        encode = self._encode_put     # a load and a call (called as a method: slower)
        return self._run(self, PUT, encode(body, priority, delay, ttr, self.encoding))

    # -- consumer ----------------------------------------------------------------
    def reserve(self, timeout: Optional[int] = None) -> Any:
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
            return self._run(self, RESERVE, RESERVE_LINE)
        impl = self._impl
        timeout = impl.check_uint("timeout", timeout)
        return self._run(self, RESERVE_TIMEOUT, impl.encode_id(RESERVE_TIMEOUT_PREFIX, timeout),
                             timeout)

    def reserve_job(self, jid: int) -> Any:
        """Send ``reserve-job``: reserve the job ``jid`` (up to 2**64-1) whatever its state.

        Needs beanstalkd >= 1.12 (older servers: ``UnknownCommand``).

        Returns:
            The reserved ``Job``.

        Raises:
            NotFound: no such job, or it is reserved already.
            UnknownCommand: the server is older than 1.12.
        """
        return self._run(self, RESERVE_JOB, self._impl.encode_id(b"reserve-job ", jid))

    def delete(self, jid: int) -> Any:
        """Send ``delete``: remove the job ``jid`` (up to 2**64-1) for good.

        Returns:
            None.

        Raises:
            NotFound: no such job, or it is reserved by another connection.
            SocketError: the reply was lost (never re-sent).
        """
        return self._run(self, DELETE, self._impl.encode_id(DELETE_PREFIX, jid))

    def release(self, jid: int, priority: int = DEFAULT_PRIORITY, delay: int = 0) -> Any:
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
        return self._run(self, RELEASE, release_line(self._impl, jid, priority, delay))

    def bury(self, jid: int, priority: int = DEFAULT_PRIORITY) -> Any:
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
        check = self._impl.check_uint
        return self._run(self, BURY, b"bury %d %d\r\n" % (
            check("job id", jid, MAX_UINT64), check("priority", priority)))

    def touch(self, jid: int) -> Any:
        """Send ``touch``: restart the TTR of a job this connection reserved.

        Args:
            jid: the job id, up to 2**64-1.

        Returns:
            None.

        Raises:
            NotFound: no such job, or this connection does not hold it
                reserved.
        """
        return self._run(self, TOUCH, self._impl.encode_id(b"touch ", jid))

    def kick(self, bound: int = 1) -> Any:
        """Send ``kick``: move up to ``bound`` jobs of the used tube to ready.

        Buried jobs are kicked if there are any, else delayed ones.

        Args:
            bound: the most jobs to kick, 0..2**32-1.

        Returns:
            How many jobs were kicked (int).
        """
        return self._run(self, KICK, b"kick %d\r\n" % self._impl.check_uint("bound", bound))

    def kick_job(self, jid: int) -> Any:
        """Send ``kick-job``: move the buried or delayed job ``jid`` (up to 2**64-1) to ready.

        Returns:
            None.

        Raises:
            NotFound: no such job, or it is neither buried nor delayed.
        """
        return self._run(self, KICK_JOB, self._impl.encode_id(b"kick-job ", jid))

    # -- peek ----------------------------------------------------------------------
    def peek(self, jid: int) -> Any:
        """Send ``peek``: look at the job ``jid`` (up to 2**64-1) without reserving it.

        Returns:
            A ``Job`` with ``reserved=False``, or None when there is no such job.
        """
        return self._run(self, PEEK, self._impl.encode_id(b"peek ", jid))

    def peek_ready(self) -> Any:
        """Send ``peek-ready``: the next ready job of the used tube, unreserved, or None."""
        return self._run(self, PEEK_READY, b"peek-ready\r\n")

    def peek_delayed(self) -> Any:
        """Send ``peek-delayed``: the delayed job of the used tube with the
        shortest delay left, unreserved, or None."""
        return self._run(self, PEEK_DELAYED, b"peek-delayed\r\n")

    def peek_buried(self) -> Any:
        """Send ``peek-buried``: the next buried job of the used tube, unreserved, or None."""
        return self._run(self, PEEK_BURIED, b"peek-buried\r\n")

    # -- tubes -----------------------------------------------------------------------
    def tubes(self) -> Any:
        """Send ``list-tubes``: the names of all existing tubes.

        Returns:
            A list of str (the raw YAML text with ``parse_yaml=False``, or what
            the ``parse_yaml`` callable returns).
        """
        return self._run(self, LIST_TUBES, b"list-tubes\r\n")

    def using(self) -> Any:
        """Send ``list-tube-used``: the name of the tube ``put`` uses (str)."""
        return self._run(self, LIST_TUBE_USED, LIST_TUBE_USED_LINE)

    def use(self, name: str) -> Any:
        """Send ``use``: ``put`` goes to tube ``name`` from now on.

        Args:
            name: a tube name: 1..200 ASCII letters, digits and ``-+/;.$_()``,
                not starting with ``-``. The tube exists while in use.

        Returns:
            The name (str).

        Raises:
            ValueError, TypeError: an invalid name; nothing was sent.
        """
        return self._run(self, USE, b"use %s\r\n" % self._impl.check_name(name))

    def watching(self) -> Any:
        """Send ``list-tubes-watched``: the names of the tubes ``reserve`` takes from.

        Returns:
            A list of str (raw text or the callable's result, per ``parse_yaml``).
        """
        return self._run(self, LIST_TUBES_WATCHED, b"list-tubes-watched\r\n")

    def watch(self, name: str) -> Any:
        """Send ``watch``: ``reserve`` also takes jobs from tube ``name``.

        Args:
            name: a tube name (rules as for ``use``).

        Returns:
            How many tubes are watched now (int).

        Raises:
            ValueError, TypeError: an invalid name; nothing was sent.
        """
        raw = self._impl.check_name(name)
        return self._run(self, WATCH, b"watch %s\r\n" % raw, raw.decode("ascii"))

    def ignore(self, name: str) -> Any:
        """Send ``ignore``: stop watching tube ``name``.

        Args:
            name: a tube name (rules as for ``use``).

        Returns:
            How many tubes are watched now (int). Ignoring the last watched
            tube is refused by the server; that returns 1 and raises nothing.

        Raises:
            ValueError, TypeError: an invalid name; nothing was sent.
        """
        raw = self._impl.check_name(name)
        return self._run(self, IGNORE, b"ignore %s\r\n" % raw, raw.decode("ascii"))

    def pause_tube(self, name: str, delay: int) -> Any:
        """Send ``pause-tube``: let no job of tube ``name`` be reserved for ``delay`` seconds.

        Args:
            name: a tube name (rules as for ``use``).
            delay: seconds, 0..2**32-1 (0 ends a pause).

        Returns:
            None.

        Raises:
            NotFound: no such tube.
        """
        impl = self._impl
        return self._run(self, PAUSE_TUBE, b"pause-tube %s %d\r\n" % (
            impl.check_name(name), impl.check_uint("delay", delay)))

    # -- stats -------------------------------------------------------------------------
    def stats(self) -> Any:
        """Send ``stats``: the server's statistics.

        Returns:
            A dict with int, float, bool and str values (``version``,
            ``hostname``, ``os``, ``id`` always str); the raw text or the
            callable's result, per ``parse_yaml``.
        """
        return self._run(self, STATS, STATS_LINE)

    def stats_tube(self, name: str) -> Any:
        """Send ``stats-tube``: the statistics of tube ``name`` (a dict, as ``stats``).

        Raises:
            NotFound: no such tube.
            ValueError, TypeError: an invalid name; nothing was sent.
        """
        return self._run(self, STATS_TUBE, b"stats-tube %s\r\n" % self._impl.check_name(name))

    def stats_job(self, jid: int) -> Any:
        """Send ``stats-job``: the statistics of job ``jid`` (up to 2**64-1), a dict as ``stats``.

        Keys include ``tube``, ``state`` (ready, delayed, reserved, buried),
        ``pri``, ``age``, ``delay``, ``ttr``, ``time-left``, ``reserves``.

        Raises:
            NotFound: no such job.
        """
        return self._run(self, STATS_JOB, self._impl.encode_id(STATS_JOB_PREFIX, jid))

    def _stats_job_dict(self, jid: int) -> Any:
        """stats-job as a dict, also when parse_yaml is off; through
        ``stats_job`` (which a subclass may override) when it is on."""
        if self._parse:
            return self.stats_job(jid)
        return self._run(self, STATS_JOB_DICT, self._impl.encode_id(STATS_JOB_PREFIX, jid))


class YamlOption:
    """The ``parse_yaml`` option of a connection: True (the built-in typed
    parser), a callable applied to the text, or False (the text)."""

    _impl: Any
    _parse: bool
    _yaml: Optional[Callable[[str], Any]]

    def _set_yaml(self, parse_yaml: Union[bool, Callable[[str], Any]]) -> None:
        if parse_yaml is True:
            self._yaml, self._parse = None, True
        else:
            self._yaml = parse_yaml if callable(parse_yaml) else None
            self._parse = False

    def _yaml_value(self, body: bytes, keys: FrozenSet[str]) -> Any:
        if self._parse:
            return self._impl.parse_yaml(body, keys)
        text = body.decode("utf-8", "replace")
        return self._yaml(text) if self._yaml is not None else text


# -- batches -------------------------------------------------------------------------

Item = Tuple[Command, bytes, Any]                # a pipeline's command, its bytes and arg
Kinds = Union[Command, List[Tuple[Command, Any]]]   # a batch's command, or per item (command, arg)


def split_items(items: List[Item]) -> Tuple[Kinds, List[bytes]]:
    """A pipeline's items as a batch: (command, arg) per item, and the bytes."""
    return [(cmd, arg) for cmd, _, arg in items], [data for _, data, _ in items]


class PutStream:
    """The puts of ``bodies`` for put_many, encoded as they are consumed
    (priority, delay and ttr are checked at once). A body that cannot be
    encoded, or an exception of the iterable, ends the stream: nothing from
    it on is sent, and ``stopped(results)`` then gives the exception to raise."""

    def __init__(self, impl: Any, bodies: Iterable[Body], priority: int, delay: int, ttr: int,
                 encoding: Optional[str]) -> None:
        impl.check_uint("priority", priority)
        impl.check_uint("delay", delay)
        impl.check_uint("ttr", ttr)
        self.args = (priority, delay, ttr, encoding)
        self.encode = impl.encode_put
        self.bodies = bodies
        self.stop: Optional[Tuple[int, BaseException]] = None

    def __iter__(self) -> Iterator[bytes]:
        priority, delay, ttr, encoding = self.args
        encode = self.encode
        items = iter(self.bodies)
        for index in itertools.count():
            try:
                body = next(items)
            except StopIteration:
                return
            except Exception as exc:
                self.stop = (index, exc)
                return
            try:
                data = encode(body, priority, delay, ttr, encoding)
            except Exception as exc:
                self.stop = (index, exc)
                return
            yield data

    def results(self, results: List[Any], raise_errors: bool) -> List[Any]:
        """put_many's return value: ``results``, or raise the exception that
        ended the stream (its message saying what was sent, ``results``
        attached), or (``raise_errors``) BatchError for a refused item."""
        if self.stop is None:
            return checked("put", results, raise_errors)
        index, exc = self.stop
        note = ("put_many item %d: the %d items before it were sent (their results, "
                "ids or exceptions, are in .results); it and all after it were not sent"
                % (index, len(results)))
        if len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = ("%s (%s)" % (exc.args[0], note),)
        exc.results = results  # type: ignore[attr-defined]
        raise exc


def job_ids(jobs: Iterable[Any]) -> Tuple[List[Any], List[Any]]:
    """The jobs (Job or id) as a list, and their ids (checked as they are
    encoded: by_id_commands, stats_commands)."""
    jobs = list(jobs)
    return jobs, [j.jid if isinstance(j, Job) else j for j in jobs]  # id_of


def by_id_commands(impl: Any, cmd: Command, ids: List[Any],
                   tails: Optional[Iterable[bytes]] = None) -> List[bytes]:
    """``cmd`` for every job id, with its argument tail (None: no arguments
    after the id); every id is checked before the list is returned."""
    verb = cmd.name.encode("ascii") + b" "
    if tails is None:
        lines: List[bytes] = impl.encode_ids(verb, ids)
        return lines
    check = impl.check_uint
    return [b"%s%d%s\r\n" % (verb, check("job id", jid, MAX_UINT64), tail)
            for jid, tail in zip(ids, tails)]  # noqa: B905 (tails may be endless)


def stats_commands(impl: Any, ids: List[Any]) -> List[bytes]:
    """A stats-job (STATS_JOB_DICT) for every job id: their priorities, for
    release_many/bury_many; every id is checked before the list is returned."""
    lines: List[bytes] = impl.encode_ids(STATS_JOB_PREFIX, ids)
    return lines


def priorities_of(stats: List[Any]) -> List[int]:
    """Each job's priority from its stats-job result; DEFAULT_PRIORITY for a
    job the server does not know (its release or bury then fails in place)."""
    return [int(s.get("pri", DEFAULT_PRIORITY)) if isinstance(s, dict) else DEFAULT_PRIORITY
            for s in stats]


def unreserve(jobs: List[Any], results: List[Any]) -> None:
    """A Job whose release, bury or delete succeeded is no longer reserved."""
    for job, result in zip(jobs, results):  # noqa: B905 (same length)
        if isinstance(job, Job) and not isinstance(result, BaseException):
            job.reserved = False


class ReserveRounds:
    """reserve_many after its first job: rounds of ``reserve-with-timeout 0``
    (RESERVE_NOW, at most a window each) until ``n`` jobs or a round that
    comes back short. ``want()``: the size of the next round (0: done);
    ``take(results)`` counts a round in; ``failed(exc)`` attaches the jobs
    reserved so far to an exception that ended the rounds."""

    def __init__(self, n: int, first: Any) -> None:
        self.n = n
        self.jobs = [first]
        self.done = False

    def want(self) -> int:
        return 0 if self.done else min(self.n - len(self.jobs), BATCH_WINDOW)

    def take(self, results: List[Any]) -> None:
        got = reserved_jobs(results)
        self.done = len(got) < self.want()
        self.jobs += got

    def failed(self, exc: BaseException) -> None:
        exc.results = (  # type: ignore[attr-defined]
            self.jobs + reserved_jobs(getattr(exc, "results", ())))


def reserved_jobs(results: Iterable[Any]) -> List[Any]:
    """The jobs among reserve results (None: timed out; an exception: refused)."""
    return [j for j in results if isinstance(j, Job)]


def checked(what: str, results: List[Any], raise_errors: bool) -> List[Any]:
    """``results`` of a batch; BatchError instead when ``raise_errors`` and
    some item was refused."""
    if raise_errors:
        failed = sum(isinstance(r, BaseException) for r in results)
        if failed:
            raise BatchError("%d of %d %s commands failed" % (failed, len(results), what),
                             results)
    return results


def lost_note(what: str, confirmed: int) -> str:
    """What a batch cut after ``confirmed`` replies leaves unknown."""
    return "%s past the %d confirmed ones may or may not have been %s" % (
        "jobs" if what == "put" else "commands", confirmed,
        "inserted" if what == "put" else "carried out")


def id_of(job: Union[Job, int]) -> int:
    """The id of a Job, or the id itself."""
    return job.jid if isinstance(job, Job) else job


class PipelineCommands(Commands):
    """Commands collected for one pipelined batch (the front ends' Pipeline
    adds ``execute``); the by-id commands take a Job or an id."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._impl = conn._impl
        self._encode_put = conn._impl.encode_put
        self.encoding = conn.encoding
        self.items: List[Item] = []
        self.results: List[Any] = []

    def _run(self, conn: Any, cmd: Command, data: bytes, arg: Any = None) -> Any:
        self.items.append((cmd, data, arg))
        return self

    def delete(self, jid: Union[Job, int]) -> Any:
        return super().delete(id_of(jid))

    def release(self, jid: Union[Job, int], priority: int = DEFAULT_PRIORITY,
                delay: int = 0) -> Any:
        return super().release(id_of(jid), priority, delay)

    def bury(self, jid: Union[Job, int], priority: int = DEFAULT_PRIORITY) -> Any:
        return super().bury(id_of(jid), priority)

    def touch(self, jid: Union[Job, int]) -> Any:
        return super().touch(id_of(jid))

    def kick_job(self, jid: Union[Job, int]) -> Any:
        return super().kick_job(id_of(jid))

    def _take(self) -> List[Item]:
        items, self.items = self.items, []
        return items
