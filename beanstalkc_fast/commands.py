"""Every beanstalkd command, defined once.

A ``Command`` says which reply means success, what the result is, which
other replies are results rather than errors, how long the server may
legitimately wait before answering, and whether the command is safe to send
again after its reply was lost. ``Commands`` holds the public command
methods, each written once: it validates the arguments, encodes the command
with the connection's core and hands ``(command, bytes, arg)`` to
``self._execute``. The sync Connection returns the result from there, the
asyncio Connection an awaitable, a Pipeline records the command; all of them
turn a reply into a result with ``Command.finish`` (or ``outcome`` in
batches), so no front end spells out a command's reply handling.
"""

from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple, Union

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

# how long a command may wait for its reply beyond the read deadline
WAIT_NONE = 0.0                    # not at all
WAIT_FOREVER = None                # indefinitely (reserve without timeout)
WAIT_ARG = -1.0                    # the command's ``arg`` seconds (reserve-with-timeout)


def fail(command: str, status: str, value: Any) -> Exception:
    """The exception for a reply ``status`` that is not a result of ``command``:
    the precise CommandFailed subclass, else UnexpectedResponse."""
    results = [] if value is None else [str(value)]
    if status in ERROR_CLASSES:
        return command_failed(command, status, results)
    return UnexpectedResponse(command, status, results)


OnOk = Callable[[Any, Any, Any, Any], Any]     # (conn, value, body, arg) -> result


class Command:
    """One command's reply handling (see the module docstring)."""

    __slots__ = ("name", "ok", "on_ok", "alt", "safe", "wait", "lost", "keys")

    def __init__(self, name: str, ok: str, on_ok: Optional[OnOk] = None,
                 alt: Optional[Dict[str, Any]] = None, safe: bool = False,
                 wait: Optional[float] = WAIT_NONE, lost: str = "",
                 keys: FrozenSet[str] = NO_KEYS) -> None:
        self.name = name
        self.ok = ok                # the success status
        self.on_ok = on_ok          # result of a success; None: the reply's value
        self.alt = alt or {}        # other statuses that are results (an exception class: raised)
        self.safe = safe            # may be sent again after its reply was lost
        self.wait = wait            # WAIT_NONE, WAIT_FOREVER or WAIT_ARG
        self.lost = lost            # what a lost reply leaves unknown, for the SocketError
        self.keys = keys            # stats keys whose values stay str

    def __repr__(self) -> str:
        return "<Command %s>" % self.name

    def extra(self, arg: Any) -> Optional[float]:
        """Seconds the server may wait before answering, beyond the read
        deadline (None: indefinitely)."""
        wait = self.wait
        if wait is WAIT_ARG:
            return float(arg)
        return wait

    def finish(self, status: str, value: Any, body: Optional[bytes], conn: Any,
               arg: Any = None) -> Any:
        """The result of a reply, or raise the precise exception."""
        if status == self.ok:
            on_ok = self.on_ok
            return value if on_ok is None else on_ok(conn, value, body, arg)
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


# -- results -------------------------------------------------------------------------

def _nothing(conn: Any, value: Any, body: Any, arg: Any) -> None:
    return None


def _reserved(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    return conn._job(value, body, True)


def _peeked(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    return conn._job(value, body, False)


def _yaml(keys: FrozenSet[str]) -> OnOk:
    def result(conn: Any, value: Any, body: Any, arg: Any) -> Any:
        return conn._yaml_value(body, keys)
    return result


def _stats_dict(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    return conn._impl.parse_yaml(body, NO_KEYS)


def _used(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    conn._using = value
    return value


def _watched(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    if arg not in conn._watching:
        conn._watching.append(arg)
    return value


def _ignored(conn: Any, value: Any, body: Any, arg: Any) -> Any:
    if arg in conn._watching:
        conn._watching.remove(arg)
    return value


def _cmd(name: str, ok: str, on_ok: Optional[OnOk] = None, **kw: Any) -> Command:
    return Command(name, ok, on_ok, **kw)


PUT = _cmd("put", "INSERTED", lost="the job may or may not have been inserted")
RESERVE = _cmd("reserve", "RESERVED", _reserved,
               alt={"DEADLINE_SOON": DeadlineSoon}, safe=True, wait=WAIT_FOREVER)
RESERVE_TIMEOUT = _cmd("reserve", "RESERVED", _reserved,
                       alt={"TIMED_OUT": None, "DEADLINE_SOON": DeadlineSoon}, safe=True,
                       wait=WAIT_ARG)
RESERVE_JOB = _cmd("reserve-job", "RESERVED", _reserved, safe=True)
DELETE = _cmd("delete", "DELETED", _nothing)
RELEASE = _cmd("release", "RELEASED", _nothing)
BURY = _cmd("bury", "BURIED", _nothing)
TOUCH = _cmd("touch", "TOUCHED", _nothing)
KICK = _cmd("kick", "KICKED")
KICK_JOB = _cmd("kick-job", "KICKED", _nothing)
PEEK = _cmd("peek", "FOUND", _peeked, alt={"NOT_FOUND": None}, safe=True)
PEEK_READY = _cmd("peek-ready", "FOUND", _peeked, alt={"NOT_FOUND": None}, safe=True)
PEEK_DELAYED = _cmd("peek-delayed", "FOUND", _peeked, alt={"NOT_FOUND": None}, safe=True)
PEEK_BURIED = _cmd("peek-buried", "FOUND", _peeked, alt={"NOT_FOUND": None}, safe=True)
LIST_TUBES = _cmd("list-tubes", "OK", _yaml(NO_KEYS), safe=True)
LIST_TUBE_USED = _cmd("list-tube-used", "USING", safe=True)
LIST_TUBES_WATCHED = _cmd("list-tubes-watched", "OK", _yaml(NO_KEYS), safe=True)
USE = _cmd("use", "USING", _used, safe=True)
WATCH = _cmd("watch", "WATCHING", _watched, safe=True)
IGNORE = _cmd("ignore", "WATCHING", _ignored, alt={"NOT_IGNORED": 1}, safe=True)
PAUSE_TUBE = _cmd("pause-tube", "PAUSED", _nothing, safe=True)
STATS = _cmd("stats", "OK", _yaml(SERVER_STR_KEYS), safe=True)
STATS_TUBE = _cmd("stats-tube", "OK", _yaml(NO_KEYS), safe=True)
STATS_JOB = _cmd("stats-job", "OK", _yaml(NO_KEYS), safe=True)
STATS_JOB_DICT = _cmd("stats-job", "OK", _stats_dict, safe=True)   # parsed whatever parse_yaml says


def restore_commands(using: str, watching: List[str], check_name: Callable[[Any], bytes]
                     ) -> List[Tuple[Command, bytes, Any]]:
    """The commands that bring a new connection to the used tube ``using``
    and the watch list ``watching`` (after a reconnect)."""
    commands: List[Tuple[Command, bytes, Any]] = []
    if using != DEFAULT_TUBE_NAME:
        commands.append((USE, b"use %s\r\n" % check_name(using), None))
    for name in watching:
        if name != DEFAULT_TUBE_NAME:
            commands.append((WATCH, b"watch %s\r\n" % check_name(name), name))
    if DEFAULT_TUBE_NAME not in watching:
        commands.append((IGNORE, b"ignore default\r\n", DEFAULT_TUBE_NAME))
    return commands


class Commands:
    """The command methods of the classic beanstalkc API, written once.

    Subclasses provide ``_impl`` (the core module: encoders and checks),
    ``encoding``, ``_using``/``_watching`` (the tubes asked for), ``_job``
    (a job of theirs), ``_yaml_value`` (a stats or list body as the
    connection's ``parse_yaml`` option says) and ``_execute(command, data,
    arg)``, whose return value each method returns: a result, an awaitable
    or the collecting pipeline.
    """

    _impl: Any
    encoding: Optional[str]

    def _execute(self, cmd: Command, data: bytes, arg: Any = None) -> Any:
        raise NotImplementedError

    # -- producer ----------------------------------------------------------------
    def put(self, body: Body, priority: int = DEFAULT_PRIORITY, delay: int = 0,
            ttr: int = DEFAULT_TTR) -> Any:
        """Insert a job into the used tube; its id."""
        return self._execute(PUT, self._impl.encode_put(body, priority, delay, ttr,
                                                        self.encoding))

    # -- consumer ----------------------------------------------------------------
    def reserve(self, timeout: Optional[int] = None) -> Any:
        """Reserve a job from the watched tubes; None when ``timeout`` expires."""
        if timeout is None:
            return self._execute(RESERVE, b"reserve\r\n")
        impl = self._impl
        timeout = impl.check_uint("timeout", timeout)
        return self._execute(RESERVE_TIMEOUT, impl.encode_id(b"reserve-with-timeout ", timeout),
                             timeout)

    def reserve_job(self, jid: int) -> Any:
        """Reserve the job ``jid`` (beanstalkd >= 1.12)."""
        return self._execute(RESERVE_JOB, self._impl.encode_id(b"reserve-job ", jid))

    def delete(self, jid: int) -> Any:
        """Delete a job."""
        return self._execute(DELETE, self._impl.encode_id(b"delete ", jid))

    def release(self, jid: int, priority: int = DEFAULT_PRIORITY, delay: int = 0) -> Any:
        """Release a reserved job back to ready (or delayed)."""
        check = self._impl.check_uint
        return self._execute(RELEASE, b"release %d %d %d\r\n" % (
            check("job id", jid, MAX_UINT64), check("priority", priority),
            check("delay", delay)))

    def bury(self, jid: int, priority: int = DEFAULT_PRIORITY) -> Any:
        """Bury a reserved job."""
        check = self._impl.check_uint
        return self._execute(BURY, b"bury %d %d\r\n" % (
            check("job id", jid, MAX_UINT64), check("priority", priority)))

    def touch(self, jid: int) -> Any:
        """Ask for more time to work on a reserved job."""
        return self._execute(TOUCH, self._impl.encode_id(b"touch ", jid))

    def kick(self, bound: int = 1) -> Any:
        """Kick at most ``bound`` buried (else delayed) jobs; how many were kicked."""
        return self._execute(KICK, b"kick %d\r\n" % self._impl.check_uint("bound", bound))

    def kick_job(self, jid: int) -> Any:
        """Kick one buried or delayed job."""
        return self._execute(KICK_JOB, self._impl.encode_id(b"kick-job ", jid))

    # -- peek ----------------------------------------------------------------------
    def peek(self, jid: int) -> Any:
        """The job ``jid``, unreserved, or None."""
        return self._execute(PEEK, self._impl.encode_id(b"peek ", jid))

    def peek_ready(self) -> Any:
        """The next ready job of the used tube, or None."""
        return self._execute(PEEK_READY, b"peek-ready\r\n")

    def peek_delayed(self) -> Any:
        """The delayed job of the used tube with the shortest delay left, or None."""
        return self._execute(PEEK_DELAYED, b"peek-delayed\r\n")

    def peek_buried(self) -> Any:
        """The next buried job of the used tube, or None."""
        return self._execute(PEEK_BURIED, b"peek-buried\r\n")

    # -- tubes -----------------------------------------------------------------------
    def tubes(self) -> Any:
        """All existing tubes."""
        return self._execute(LIST_TUBES, b"list-tubes\r\n")

    def using(self) -> Any:
        """The tube that put uses."""
        return self._execute(LIST_TUBE_USED, b"list-tube-used\r\n")

    def use(self, name: str) -> Any:
        """Put into tube ``name`` from now on; the name."""
        return self._execute(USE, b"use %s\r\n" % self._impl.check_name(name))

    def watching(self) -> Any:
        """The watched tubes."""
        return self._execute(LIST_TUBES_WATCHED, b"list-tubes-watched\r\n")

    def watch(self, name: str) -> Any:
        """Watch tube ``name`` too; the number of watched tubes."""
        raw = self._impl.check_name(name)
        return self._execute(WATCH, b"watch %s\r\n" % raw, raw.decode("ascii"))

    def ignore(self, name: str) -> Any:
        """Stop watching ``name``; the number of watched tubes. Ignoring the
        last watched tube is silently refused and returns 1."""
        raw = self._impl.check_name(name)
        return self._execute(IGNORE, b"ignore %s\r\n" % raw, raw.decode("ascii"))

    def pause_tube(self, name: str, delay: int) -> Any:
        """Let no job of tube ``name`` be reserved for ``delay`` seconds."""
        impl = self._impl
        return self._execute(PAUSE_TUBE, b"pause-tube %s %d\r\n" % (
            impl.check_name(name), impl.check_uint("delay", delay)))

    # -- stats -------------------------------------------------------------------------
    def stats(self) -> Any:
        """Server statistics."""
        return self._execute(STATS, b"stats\r\n")

    def stats_tube(self, name: str) -> Any:
        """Statistics of tube ``name``."""
        return self._execute(STATS_TUBE, b"stats-tube %s\r\n" % self._impl.check_name(name))

    def stats_job(self, jid: int) -> Any:
        """Statistics of job ``jid``."""
        return self._execute(STATS_JOB, self._impl.encode_id(b"stats-job ", jid))

    def _stats_job_dict(self, jid: int) -> Any:
        """Statistics of job ``jid`` as a dict, whatever ``parse_yaml`` says."""
        return self._execute(STATS_JOB_DICT, self._impl.encode_id(b"stats-job ", jid))


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

Item = Tuple[Command, bytes, Any]


def put_items(impl: Any, bodies: Iterable[Body], priority: int, delay: int, ttr: int,
              encoding: Optional[str]) -> Iterable[Item]:
    """The put of every body, encoded as it is consumed; arguments checked now."""
    impl.check_uint("priority", priority)
    impl.check_uint("delay", delay)
    impl.check_uint("ttr", ttr)
    encode = impl.encode_put
    return ((PUT, encode(body, priority, delay, ttr, encoding), None) for body in bodies)


def by_id_items(impl: Any, cmd: Command, ids: List[int], tail: bytes) -> List[Item]:
    """``cmd`` for every job id, with the same argument ``tail`` (checked ids)."""
    verb = cmd.name.encode("ascii")
    check = impl.check_uint
    return [(cmd, b"%s %d%s\r\n" % (verb, check("job id", jid, MAX_UINT64), tail), None)
            for jid in ids]


RESERVE_NOW: Item = (RESERVE_TIMEOUT, b"reserve-with-timeout 0\r\n", 0)


def batch_failed(what: str, results: List[Any]) -> Optional[BatchError]:
    """The BatchError for ``results`` holding refusals, else None."""
    failed = sum(isinstance(r, BaseException) for r in results)
    if not failed:
        return None
    return BatchError("%d of %d %s commands failed" % (failed, len(results), what), results)


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
        self.encoding = conn.encoding
        self.items: List[Item] = []
        self.results: List[Any] = []

    def _execute(self, cmd: Command, data: bytes, arg: Any = None) -> Any:
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
