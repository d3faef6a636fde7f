"""Worker: consume jobs with a handler function, the consumer loop done right.

``Worker(handler, tubes=[...], concurrency=N).run()`` reserves jobs on N threads
(or processes), each with its own connection, calls ``handler(job)`` and
settles every job: the handler returns -> the job is deleted; it raises -> the
job is released with a delay that grows with its attempts (counted by the
server) and buried after ``RetryPolicy.max_attempts``; raising or returning
``Release(delay)`` / ``Bury()`` decides explicitly. While a handler runs, its
jobs are touched before their TTR runs out. SIGTERM, SIGINT or ``stop()`` end
it gracefully: no new jobs, running handlers get ``grace`` seconds, then what
is unfinished is released with its priority kept.

The policy parts do no IO and are shared with any other front end (asyncio):
``outcome_of``/``batch_results`` (what a handler's result asks for),
``RetryPolicy`` (release delay or bury), ``Heartbeat`` (when to touch),
``Backoff`` (reconnect delays), ``Ledger`` (no job run twice across
reconnects), ``Counters``. So are the steps of a slot (``_SlotBase``:
connect, reserve, handle, settle, touch): generators that yield the IO they
need, which the sync slot performs with plain calls (``drive``) and the
asyncio slot awaits.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from typing import (Any, Callable, Dict, Generator, Iterable, List, Mapping, NamedTuple, Optional,
                    Sequence, Set, Tuple, Type, TypeVar, Union)

from ._impl import core as _core
from .connection import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TUBE_NAME, Connection
from .errors import CommandFailed, ConcurrentUseError, DeadlineSoon, NotFound, SocketError
from .job import Job

__all__ = ["Worker", "Release", "Bury", "Outcome", "RetryPolicy", "Heartbeat", "Backoff",
           "Ledger", "Counters", "COUNTERS", "outcome_of", "batch_results"]

log = logging.getLogger("beanstalkc_fast.worker")


# -- what a handler can decide -------------------------------------------------------------

def _uint(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 32:
        raise ValueError("%s must be an int in 0..%d, got %r" % (name, 2 ** 32 - 1, value))
    return value


class Release(Exception):
    """Raise or return from a handler: release the job after ``delay``
    seconds at ``priority`` (None keeps the job's). Not a failure: no retry
    policy, no bury (the server still counts it in the job's ``releases``)."""

    def __init__(self, delay: int = 0, priority: Optional[int] = None) -> None:
        super().__init__(delay, priority)
        self.delay = _uint("delay", delay)
        self.priority = None if priority is None else _uint("priority", priority)


class Bury(Exception):
    """Raise or return from a handler: bury the job at ``priority`` (None
    keeps the job's). Not counted as a failure."""

    def __init__(self, priority: Optional[int] = None) -> None:
        super().__init__(priority)
        self.priority = None if priority is None else _uint("priority", priority)


DELETE, RELEASE, BURY, LOST, HANDLED = "delete", "release", "bury", "lost", "handled"


class Outcome(NamedTuple):
    """What happens (happened) to a job: ``action`` is ``"delete"``,
    ``"release"``, ``"bury"`` or ``"lost"`` (the server no longer let this
    worker settle it: its TTR ran out, or the server restarted without a
    binlog). ``priority`` None means the job's own. For a failure, ``attempt``
    is the failed attempt (the server's ``releases`` + 1) and ``error`` the
    exception."""

    action: str
    delay: int = 0
    priority: Optional[int] = None
    attempt: Optional[int] = None
    error: Optional[BaseException] = None


DELETED = Outcome(DELETE)


def outcome_of(result: object) -> Optional[Outcome]:
    """The outcome a handler's result (its return value, or the exception it
    raised) asks for: ``Release``/``Bury`` as told, another exception is a
    failure (None: the retry policy decides), anything else -> delete."""
    if isinstance(result, BaseException):
        if isinstance(result, Release):
            return Outcome(RELEASE, result.delay, result.priority)
        if isinstance(result, Bury):
            return Outcome(BURY, 0, result.priority)
        return None
    return DELETED


def batch_results(result: object, n: int) -> List[object]:
    """The per-job results of a batch handler that returned ``result`` for
    ``n`` jobs: None (every job done), ``Release``/``Bury`` (for every job), or
    a list or tuple of ``n`` results in the order of the jobs; anything else
    fails every job with a TypeError."""
    if result is None or isinstance(result, (Release, Bury)):
        return [result] * n
    if isinstance(result, (list, tuple)) and len(result) == n:
        return list(result)
    error = TypeError("a batch handler returns None or a list of %d per-job results, not %s"
                      % (n, type(result).__name__ if not isinstance(result, (list, tuple))
                         else "%d items" % len(result)))
    return [error] * n


class RetryPolicy:
    """Release a failed job with an exponentially growing delay, capped; bury
    it when the failed attempt is the ``max_attempts``-th. The attempt number
    is the server's ``releases`` counter of the job + 1, so it survives worker
    restarts (a job released by the handler's ``Release`` counts too)."""

    def __init__(self, max_attempts: int = 5, delay: int = 1, factor: float = 2.0,
                 max_delay: int = 3600) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError("max_attempts must be an int >= 1, got %r" % (max_attempts,))
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1:
            raise ValueError("factor must be a number >= 1, got %r" % (factor,))
        self.max_attempts = max_attempts
        self.delay = _uint("delay", delay)
        self.factor = float(factor)
        self.max_delay = _uint("max_delay", max_delay)

    def __repr__(self) -> str:
        return "RetryPolicy(max_attempts=%d, delay=%d, factor=%g, max_delay=%d)" % (
            self.max_attempts, self.delay, self.factor, self.max_delay)

    def delay_for(self, attempt: int) -> int:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        delay = float(self.delay)
        for _ in range(min(attempt - 1, 64)):
            delay *= self.factor
            if delay >= self.max_delay:
                return self.max_delay
        return min(int(delay), self.max_delay)

    def after_failure(self, releases: int, priority: Optional[int] = None,
                      error: Optional[BaseException] = None) -> Outcome:
        """The outcome of a failed attempt of a job the server has released
        ``releases`` times before."""
        attempt = releases + 1
        if attempt >= self.max_attempts:
            return Outcome(BURY, 0, priority, attempt, error)
        return Outcome(RELEASE, self.delay_for(attempt), priority, attempt, error)


class Heartbeat:
    """When to touch jobs while their handler runs. ``first_check`` seconds
    after the reservation (below beanstalkd's smallest TTR, 1 s) the worker
    reads the jobs' TTR and time left (stats-job) and calls ``learned``; from
    then on it touches whenever ``due`` is reached and calls ``touched``. A
    touch comes when the time left falls to ``min(ttr / 2, margin)`` seconds."""

    def __init__(self, jobs: Sequence[Job], reserved_at: float, first_check: float = 0.5,
                 margin: float = 5.0) -> None:
        self.jobs = jobs
        self.due = reserved_at + first_check
        self.ttr: Optional[int] = None
        self.margin = margin
        self.gone: Set[int] = set()         # ids that can no longer be touched

    def _slack(self) -> float:
        assert self.ttr is not None
        return min(self.ttr / 2.0, self.margin)

    def learned(self, now: float, ttr: int, time_left: int) -> None:
        """The smallest TTR and time left (seconds) of the jobs, read at ``now``."""
        self.ttr = max(ttr, 1)
        self.due = now + max(0.0, time_left - self._slack())

    def touched(self, now: float) -> None:
        """Every job was touched at ``now``: its time left is its TTR again."""
        self.due = now + self.ttr - self._slack() if self.ttr is not None else now

    def stop(self) -> None:
        """Nothing more to touch."""
        self.due = float("inf")


class Backoff:
    """Delays between reconnect attempts: ``first``, growing by ``factor``
    up to ``maximum``; ``reset()`` after a success."""

    def __init__(self, first: float = 0.1, factor: float = 2.0, maximum: float = 5.0) -> None:
        self.first, self.factor, self.maximum = first, factor, maximum
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.first


class _Running:
    def __repr__(self) -> str:
        return "RUNNING"


RUNNING = _Running()


class Ledger:
    """Which jobs a worker's handlers are running, and the outcomes it decided
    whose confirmation the server's reply never brought (the connection was
    lost). Shared by every slot of a worker in one process, so that a job the
    server handed out again after a lost connection is not run twice: a slot
    that reserves it finds it ``RUNNING`` (elsewhere; put it back for later) or
    with its pending outcome (apply that instead of running it).

    Job ids are only meaningful for one server's jobs: ``server()`` is told
    the server's id after every (re)connect; a new server id without a binlog
    means the jobs are gone, and the ledger forgets them (``epoch`` + 1)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._running: Dict[int, Tuple[int, int]] = {}     # jid -> (epoch, jid)
        self._pending: "OrderedDict[int, Tuple[int, Outcome]]" = OrderedDict()
        self.limit = limit
        self.epoch = 0
        self.server_id: Optional[str] = None

    def server(self, server_id: Optional[str], binlog: bool) -> bool:
        """Record the server a connection reached; True when it is a new
        server process without a binlog (every job known before is gone)."""
        with self._lock:
            if server_id is not None and server_id == self.server_id:
                return False
            first = self.server_id is None and self.epoch == 0 and server_id is not None
            self.server_id = server_id
            if first or binlog:
                return False
            self.epoch += 1
            self._running.clear()
            self._pending.clear()
            return True

    def begin(self, jid: int) -> Union[None, _Running, Outcome]:
        """A slot reserved ``jid``: None (run it; now recorded as running),
        ``RUNNING`` (a handler of this worker runs it), or the outcome decided
        before that still has to be applied (now the caller's to settle)."""
        if self._pending:
            with self._lock:
                pending = self._pending.pop(jid, None)
            if pending is not None:
                self._running[jid] = (self.epoch, jid)
                return pending[1]
        # the common case without a lock: one atomic dict operation
        entry = self.epoch, jid
        if self._running.setdefault(jid, entry) is not entry:
            return RUNNING
        return None

    def begin_many(self, jids: List[int]) -> List[Union[None, _Running, Outcome]]:
        """``begin`` for every id, in order."""
        if self._pending:
            return [self.begin(jid) for jid in jids]
        running, epoch = self._running, self.epoch
        states: List[Union[None, _Running, Outcome]] = []
        for jid in jids:
            entry = epoch, jid
            states.append(None if running.setdefault(jid, entry) is entry else RUNNING)
        return states

    def end_many(self, jids: Iterable[int]) -> None:
        """``end`` for every id."""
        jids = list(jids)
        pop = self._running.pop
        for jid in jids:
            pop(jid, None)
        if self._pending:
            with self._lock:
                for jid in jids:
                    self._pending.pop(jid, None)

    def end(self, jid: int) -> None:
        """The server confirmed the outcome of ``jid`` (or the job is gone)."""
        self._running.pop(jid, None)
        if self._pending:
            with self._lock:
                self._pending.pop(jid, None)

    def unconfirmed(self, jid: int, outcome: Outcome) -> None:
        """The outcome of ``jid`` was decided but not confirmed (lost reply)."""
        with self._lock:
            entry = self._running.pop(jid, None)
            if entry is None or entry[0] != self.epoch:
                return              # the job went with a restarted server
            self._pending[jid] = (self.epoch, outcome)
            while len(self._pending) > self.limit:
                self._pending.popitem(last=False)

    def pending_deletes(self) -> List[int]:
        """Ids whose unconfirmed outcome is delete (delete also works on a
        ready or delayed job, so a reconnected slot can retry it at once)."""
        with self._lock:
            return [jid for jid, (_, o) in self._pending.items() if o.action == DELETE]


COUNTERS = ("reserved", "processed", "failed", "retried", "buried", "released", "lost",
            "reconnects")
(RESERVED, PROCESSED, FAILED, RETRIED, BURIED, RELEASED, LOST_, RECONNECTS) = range(len(COUNTERS))


class Counters:
    """Counts of every slot in one flat array of ints (a list, or shared memory
    when the slots are processes); a slot writes only its own row, so no lock.
    ``processed``: handler returned and job deleted; ``failed``: handler raised;
    ``retried``/``buried``: after a failure or by decision; ``released``:
    by ``Release`` or at stop; ``lost``: could not be settled (see Outcome)."""

    def __init__(self, slots: int, array: Any = None) -> None:
        self.slots = slots
        self.array: Any = [0] * (slots * len(COUNTERS)) if array is None else array

    def add(self, slot: int, counter: int, n: int = 1) -> None:
        self.array[slot * len(COUNTERS) + counter] += n

    def totals(self) -> Dict[str, int]:
        width = len(COUNTERS)
        values = list(self.array[:self.slots * width])
        return {name: sum(values[i::width]) for i, name in enumerate(COUNTERS)}


# -- the sync worker ---------------------------------------------------------------------------

Handler = Callable[[Any], Any]
_REFUSED_OPTIONS = {
    "auto_reconnect": "the worker reconnects by itself (with backoff, tubes restored)",
    "parse_yaml": "the worker reads stats-job as a dict",
}


def _hook(hook: Optional[Callable[..., Any]], *args: Any) -> None:
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        log.exception("hook %r failed", hook)


def check_settings(handler: Any, tubes: Iterable[str], concurrency: Any, batch: Any,
                   reserve_timeout: Any, grace: Any, retry: Any, connection_class: Any,
                   address: Tuple[Any, ...], connection_options: Dict[str, Any]) -> List[str]:
    """Check a worker's settings (any front end; ``connection_class`` takes
    ``*address, **connection_options``); the tube names, deduplicated."""
    if not callable(handler):
        raise TypeError("handler must be callable, not %s" % type(handler).__name__)
    if isinstance(tubes, (str, bytes)):
        raise TypeError("tubes must be a list of tube names, not a single %s"
                        % type(tubes).__name__)
    names: List[str] = []
    for tube in tubes:
        if not isinstance(tube, str):
            raise TypeError("tube name must be str, not %s" % type(tube).__name__)
        _core.check_name(tube)
        if tube not in names:
            names.append(tube)
    if not names:
        raise ValueError("tubes must name at least one tube")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be an int >= 1, got %r" % (concurrency,))
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                              or batch < 1):
        raise ValueError("batch must be None or an int >= 1, got %r" % (batch,))
    if isinstance(reserve_timeout, bool) or not isinstance(reserve_timeout, int) \
            or reserve_timeout < 1:
        raise ValueError("reserve_timeout must be an int >= 1 (seconds), got %r"
                         % (reserve_timeout,))
    if not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError("grace must be a number of seconds >= 0, got %r" % (grace,))
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError("retry must be a RetryPolicy, not %s" % type(retry).__name__)
    for option, why in _REFUSED_OPTIONS.items():
        if option in connection_options:
            raise TypeError("a Worker does not take %s: %s" % (option, why))
    import inspect              # here: the package import stays light
    try:
        inspect.signature(connection_class).bind(*address, **connection_options)
    except TypeError as exc:
        raise TypeError("bad connection option: %s" % (exc,)) from None
    return names


class _Settings:
    """What every Worker front end keeps of its settings (see check_settings)."""

    def _configure(self, handler: Handler, tubes: Iterable[str], host: str, port: int,
                   concurrency: int, batch: Optional[int], retry: Optional[RetryPolicy],
                   grace: float, reserve_timeout: int, install_signals: bool,
                   on_start: Optional[Callable[[Job], Any]],
                   on_outcome: Optional[Callable[[Job, Outcome], Any]],
                   heartbeat_margin: float, connection_class: Any,
                   connection_options: Dict[str, Any]) -> None:
        """Check the settings (nothing kept when one is bad) and keep them."""
        self.tubes = check_settings(handler, tubes, concurrency, batch, reserve_timeout, grace,
                                    retry, connection_class, (host, port), connection_options)
        self.handler = handler
        self.host = host
        self.port = port
        self.connection_options = connection_options
        self.concurrency = concurrency
        self.batch = batch
        self.retry = retry if retry is not None else RetryPolicy()
        self.grace = float(grace)
        self.reserve_timeout = reserve_timeout
        self.install_signals = install_signals
        self.on_start = on_start
        self.on_outcome = on_outcome
        self.heartbeat_margin = heartbeat_margin


_T = TypeVar("_T")

Request = Tuple[Callable[..., Any], Tuple[Any, ...]]
"""One piece of IO a slot's steps ask for: ``function(*args)``, called by the
sync slot, called and awaited by the asyncio slot."""

Steps = Generator[Request, Any, _T]
"""A slot's decision logic, written once for every front end: it yields the IO
it needs (a Request), is sent the result or has the exception thrown in at the
yield, and returns its value (see ``drive``)."""


def drive(steps: Steps[_T]) -> _T:
    """Run ``steps`` with plain calls (the sync front end): every request's
    result is sent back, its exception thrown in where it was asked for."""
    send, throw = steps.send, steps.throw
    try:
        function, args = send(None)
        while True:
            try:
                result = function(*args)
            except BaseException as exc:
                function, args = throw(exc)
            else:
                function, args = send(result)
    except StopIteration as stop:
        value: _T = stop.value
        return value


class _Abandoned:
    def __repr__(self) -> str:
        return "ABANDONED"


ABANDONED = _Abandoned()        # what a slot's _call returns for a handler given up on

Results = Union[None, List[object], _Abandoned]
"""What a slot's ``_call`` returns: None (every job done), one result per job
(a return value or the exception raised), or ABANDONED."""


class _SlotBase:
    """What every front end's slot shares: counting and recording (no IO), and
    the steps of consuming (connect, reserve, handle, settle, heartbeat) as
    ``Steps`` that yield the IO they need. ``worker`` has the Worker's settings,
    ``ledger``, ``stopping`` and ``_counters``.

    A front end drives the steps (``drive``, or an awaiting twin) and gives
    ``conn`` (a connection with the classic API, plain or awaitable) and the IO
    the two do differently: ``_open``, ``_call``, ``_sleep`` (plain or
    ``async``), ``_INTERRUPTS`` and ``_resume``."""

    conn: Any

    #: exceptions that end a reserve ``interrupt()`` cut short (thrown in at the reserve)
    _INTERRUPTS: Tuple[Type[BaseException], ...] = ()

    def __init__(self, worker: Any, row: int) -> None:
        self.worker = worker
        self.row = row
        self.counts = worker._counters.array          # this slot's row of it
        self.base = row * len(COUNTERS)
        self.conn = None
        self.broken = False
        self.waiting = False                    # in reserve
        self.interrupted = False                # its reserve was ended at stop
        self.abandoned = False                  # its handler was given up on past the grace
        self.connecting = False                 # in _connect
        self.held: Optional[Tuple[List[Job], float]] = None     # in the handler, since
        self.heartbeat: Optional[Heartbeat] = None

    def count(self, counter: int, n: int = 1) -> None:
        self.counts[self.base + counter] += n

    # -- the IO a front end does its own way ---------------------------------------------------
    def _open(self) -> Any:
        """A new connection, connected, with the worker's options."""
        raise NotImplementedError

    def _call(self, jobs: List[Job]) -> Any:
        """Run the handler on ``jobs`` (``held`` meanwhile): their results (see
        ``_results``), or ABANDONED (given up on past the grace period, its
        jobs released: nothing to settle)."""
        raise NotImplementedError

    def _sleep(self, seconds: float) -> Any:
        """Wait ``seconds``, or less when the worker stops meanwhile."""
        raise NotImplementedError

    def _resume(self) -> None:
        """A reserve was ended by one of ``_INTERRUPTS``: the slot goes on."""

    # -- the steps -----------------------------------------------------------------------------
    def _loop(self) -> Steps[None]:
        """Reserve and handle jobs until the worker stops; reconnect with backoff."""
        w = self.worker
        backoff = Backoff()
        while not w.stopping:
            try:
                if self.conn is None or self.broken:
                    self.connecting = True
                    try:
                        yield from self._connect()
                    finally:
                        self.connecting = False
                jobs = yield from self._reserve()
                backoff.reset()
                if jobs:
                    yield from self._handle(jobs)
                    if self.abandoned:
                        return
            except SocketError as exc:
                self.broken = True
                if w.stopping:                      # e.g. interrupted at stop (see interrupt)
                    log.debug("worker %d: %s while stopping", self.row, exc)
                    return
                delay = backoff.next()
                log.warning("worker %d: %s; reconnecting in %.1f s", self.row, exc, delay)
                yield self._sleep, (delay,)
            except Exception:
                self.broken = True
                delay = backoff.next()
                log.exception("worker %d: unexpected error; reconnecting in %.1f s",
                              self.row, delay)
                yield self._sleep, (delay,)

    def _connect(self) -> Steps[None]:
        """Connect (or reconnect: the watch list is restored), tell the ledger
        which server it is, retry the deletes whose reply was lost."""
        w = self.worker
        if self.conn is None:
            conn = yield self._open, ()
            try:
                for tube in w.tubes:
                    yield conn.watch, (tube,)
                if DEFAULT_TUBE_NAME not in w.tubes:
                    yield conn.ignore, (DEFAULT_TUBE_NAME,)
            except BaseException:
                yield conn.close, ()
                raise
            self.conn = conn
        else:
            yield self.conn.reconnect, ()           # restores the watch list
            self.count(RECONNECTS)
            log.info("worker %d: reconnected", self.row)
        self.broken = False
        stats = yield self.conn.stats, ()
        binlog = int(stats.get("binlog-current-index", 0) or 0) > 0
        if w.ledger.server(stats.get("id"), binlog):
            log.warning("worker %d: the server restarted without a binlog: the jobs held "
                        "before are gone", self.row)
        for jid in w.ledger.pending_deletes():
            try:
                yield self.conn.delete, (jid,)
            except NotFound:
                continue                            # reserved elsewhere, or gone
            w.ledger.end(jid)
            log.info("worker %d: job %d deleted after reconnecting", self.row, jid)

    def _reserve(self) -> Steps[List[Job]]:
        """The next job(s), or none (timed out, DEADLINE_SOON, interrupted at stop)."""
        w = self.worker
        conn = self.conn
        self.waiting = True
        try:
            if w.batch is not None:
                jobs: List[Job] = yield conn.reserve_many, (w.batch, w.reserve_timeout)
                return jobs
            job = yield conn.reserve, (w.reserve_timeout,)
        except DeadlineSoon:
            # only when this connection still holds a job it could not settle
            log.debug("worker %d: DEADLINE_SOON", self.row)
            yield self._sleep, (0.1,)
            return []
        except self._INTERRUPTS:
            if not self.interrupted:
                raise
            self._resume()                          # stop: the client releases a late job
            return []
        finally:
            self.waiting = False
        return [job] if job is not None else []

    def _handle(self, jobs: List[Job]) -> Steps[None]:
        """Run the handler on jobs just reserved (unless stopping, or the
        ledger knows them) and settle them."""
        w = self.worker
        self.counts[self.base + RESERVED] += len(jobs)
        if w.stopping:                              # stop: take no new job
            yield from self._release(jobs)
            return
        if len(jobs) == 1:
            state = w.ledger.begin(jobs[0].jid)
            if state is not None:
                yield from self._known(jobs[0], state)
                return
        else:
            jobs = yield from self._admit(jobs)
            if not jobs:
                return
        if w.on_start is not None:
            for job in jobs:
                _hook(w.on_start, job)
        results = yield self._call, (jobs,)         # see Results
        if results is None and (jobs[0].reserved if len(jobs) == 1
                                else all(job.reserved for job in jobs)):
            yield from self._delete(jobs)           # the common case
        elif results is not ABANDONED:
            yield from self._settle(jobs, results)

    def _results(self, result: object, n: int) -> Optional[List[object]]:
        """The per-job results of the handler's return value ``result`` (not
        None) for ``n`` jobs; None: every job done."""
        if self.worker.batch is None:
            return [result] if isinstance(result, (Release, Bury)) else None
        return batch_results(result, n)

    def _admit(self, jobs: List[Job]) -> Steps[List[Job]]:
        """The jobs of a batch to run; settles those the ledger knows."""
        states = self.worker.ledger.begin_many([job.jid for job in jobs])
        if not any(states):
            return jobs
        fresh = []
        for job, state in zip(jobs, states):
            if state is None:
                fresh.append(job)
            else:
                yield from self._known(job, state)
        return fresh

    def _known(self, job: Job, state: Union[_Running, Outcome]) -> Steps[None]:
        """Settle a job the ledger knows (see Ledger): running here already
        (put it back for a second), or run already (apply its outcome)."""
        if state is RUNNING:
            log.info("worker %d: job %d is already running here; released for 1 s",
                     self.row, job.jid)
            yield from self._release([job], delay=1)
        else:
            assert isinstance(state, Outcome)
            log.info("worker %d: job %d already ran; applying its outcome (%s)",
                     self.row, job.jid, state.action)
            yield from self._apply([job], [state])

    def _release(self, jobs: Sequence[Job], delay: int = 0) -> Steps[None]:
        """Release jobs not run (or not finished), with their own priority."""
        for job in jobs:
            try:
                yield job.release, (None, delay)
            except CommandFailed as exc:
                log.warning("worker %d: could not release job %d: %s", self.row, job.jid, exc)
                continue
            self.count(RELEASED)

    def _give_up(self, jobs: Sequence[Job], grace: float) -> Steps[None]:
        """Past the grace period: release the jobs of a handler still running."""
        log.error("worker %d: handler still running at the end of the grace period "
                  "(%.1f s); releasing job(s) %s", self.row, grace,
                  ", ".join(str(job.jid) for job in jobs))
        try:
            if not self.broken:
                yield from self._release(jobs)
        except (SocketError, CommandFailed) as exc:
            log.warning("worker %d: could not release: %s", self.row, exc)

    def _settle(self, jobs: List[Job], results: Optional[List[object]]) -> Steps[None]:
        """Decide and apply the outcome of every job from its handler result
        (None: every job done)."""
        w = self.worker
        if results is None:
            results = [None] * len(jobs)
        outcomes: List[Outcome] = []
        try:
            for job, result in zip(jobs, results):
                outcome = outcome_of(result)
                if outcome is None:                     # a failure: the policy decides
                    self.count(FAILED)
                    assert isinstance(result, BaseException)
                    try:
                        stats = yield self.conn._stats_job_dict, (job.jid,)
                    except NotFound:
                        stats = None
                    outcome = self._failure(job, stats, result)
                outcomes.append(outcome)
        except SocketError:
            # decided outcomes wait in the ledger; an undecided failure will
            # simply run again when the server hands the job out again
            for job, outcome in zip(jobs, outcomes):
                w.ledger.unconfirmed(job.jid, outcome)
            w.ledger.end_many(job.jid for job in jobs[len(outcomes):])
            raise
        yield from self._apply(jobs, outcomes)

    def _delete(self, jobs: List[Job]) -> Steps[None]:
        """Every job done: delete them (one command or batch), count them."""
        w = self.worker
        conn = self.conn
        if len(jobs) == 1:
            job = jobs[0]
            try:
                yield conn.delete, (job.jid,)
            except NotFound as exc:
                self._record(jobs, [DELETED], [exc])
                return
            except SocketError:
                w.ledger.unconfirmed(job.jid, DELETED)
                raise
            job.reserved = False
            w.ledger.end(job.jid)
            self.counts[self.base + PROCESSED] += 1
            if w.on_outcome is not None:
                _hook(w.on_outcome, job, DELETED)
            return
        try:
            replies = yield conn.delete_many, (jobs, False)
        except SocketError as exc:
            confirmed = getattr(exc, "results", [])
            self._record(jobs, [DELETED] * len(confirmed), confirmed)
            for job in jobs[len(confirmed):]:
                w.ledger.unconfirmed(job.jid, DELETED)
            raise
        if w.on_outcome is None and not any(replies):      # every reply None: deleted
            w.ledger.end_many(job.jid for job in jobs)
            self.counts[self.base + PROCESSED] += len(jobs)
        else:
            self._record(jobs, [DELETED] * len(jobs), replies)

    def _apply(self, jobs: List[Job], outcomes: List[Outcome]) -> Steps[None]:
        """Send every outcome (one pipelined batch); record what the server
        confirmed, keep the rest in the ledger when the connection is lost."""
        conn = self.conn
        todo = self._to_send(jobs, outcomes)
        if not todo:
            return
        try:
            for i, (job, o) in enumerate(todo):
                if o.action != DELETE and o.priority is None:   # keep the job's priority
                    try:
                        stats = yield conn._stats_job_dict, (job.jid,)
                        todo[i] = (job, o._replace(priority=int(stats["pri"])))
                    except NotFound:
                        todo[i] = (job, Outcome(LOST, error=o.error))
        except SocketError:
            self._unconfirmed(todo)
            raise
        todo = self._settle_lost(todo)
        if not todo:
            return
        try:
            if all(o.action == DELETE for _, o in todo):
                replies = yield conn.delete_many, ([job for job, _ in todo], False)
            else:
                replies = yield self._queue(conn.pipeline(), todo).execute, ()
        except SocketError as exc:
            self._lost_midway(todo, exc)
            raise
        self._record([job for job, _ in todo], [o for _, o in todo], replies)

    def _heartbeat(self, held: Tuple[List[Job], float]) -> Heartbeat:
        """The Heartbeat of the handler holding ``held`` (a new one for a new handler)."""
        hb = self.heartbeat
        if hb is None or hb.jobs is not held[0]:
            hb = self.heartbeat = Heartbeat(held[0], held[1], margin=self.worker.heartbeat_margin)
        return hb

    def _touch(self, held: Tuple[List[Job], float], hb: Heartbeat) -> Steps[None]:
        """Touch the jobs ``held`` by the running handler, as ``hb`` says, through
        ``conn``; learn their TTR first. Jobs no longer ours are left out."""
        conn = self.conn
        jobs = [job for job in held[0] if job.jid not in hb.gone]
        if not jobs:
            hb.stop()
            return
        if hb.ttr is None:
            stats: List[Any] = []
            for job in jobs:
                try:
                    stats.append((yield conn._stats_job_dict, (job.jid,)))
                except NotFound:
                    self._gone(hb, job)
            if not stats:
                hb.stop()
                return
            hb.learned(time.monotonic(), min(int(s["ttr"]) for s in stats),
                       min(int(s["time-left"]) for s in stats))
            if hb.due > time.monotonic() or self.held is not held:
                return
        pipe = conn.pipeline()
        for job in jobs:
            pipe.touch(job.jid)
        replies = yield pipe.execute, ()
        for job, reply in zip(jobs, replies):
            if isinstance(reply, NotFound) and self.held is held:
                self._gone(hb, job)
            elif isinstance(reply, BaseException):
                raise reply
        hb.touched(time.monotonic())
        log.debug("worker %d: touched %d job(s)", self.row, len(jobs))

    def _gone(self, hb: Heartbeat, job: Job) -> None:
        hb.gone.add(job.jid)
        log.warning("worker %d: job %d of the running handler is no longer reserved by this "
                    "worker (its TTR ran out?)", self.row, job.jid)

    # -- no IO ---------------------------------------------------------------------------------
    def _failure(self, job: Job, stats: Optional[Mapping[str, Any]],
                 error: BaseException) -> Outcome:
        """The outcome of a failed attempt, from the job's stats-job (None: the
        job is no longer this worker's), logged once with the job id."""
        if stats is None:
            return Outcome(LOST, error=error)
        retry: RetryPolicy = self.worker.retry
        outcome = retry.after_failure(int(stats["releases"]), int(stats["pri"]), error)
        if outcome.action == BURY:
            log.error("job %d failed (attempt %d of %d), burying it", job.jid, outcome.attempt,
                      retry.max_attempts, exc_info=error)
        else:
            log.warning("job %d failed (attempt %d of %d), retrying in %d s", job.jid,
                        outcome.attempt, retry.max_attempts, outcome.delay, exc_info=error)
        return outcome

    def _record(self, jobs: List[Job], outcomes: List[Outcome], replies: List[Any]) -> None:
        """The server's replies (None, or the exception) to the outcomes sent
        for ``jobs``, in order (fewer replies: only those are recorded)."""
        for job, o, reply in zip(jobs, outcomes, replies):
            if reply is not None:
                if not isinstance(reply, NotFound):
                    log.error("job %d: %s failed: %r", job.jid, o.action, reply)
                o = Outcome(LOST, error=o.error)
            job.reserved = False
            self._done(job, o)

    def _to_send(self, jobs: Sequence[Job], outcomes: List[Outcome]) -> List[Tuple[Job, Outcome]]:
        """The (job, outcome) pairs still to send; jobs settled by the handler
        itself or already lost are settled here."""
        todo = []
        for job, o in zip(jobs, outcomes):
            if not job.reserved:
                self._done(job, Outcome(HANDLED))   # settled by the handler itself
            elif o.action == LOST:
                self._done(job, o)
            else:
                todo.append((job, o))
        return todo

    def _settle_lost(self, todo: List[Tuple[Job, Outcome]]) -> List[Tuple[Job, Outcome]]:
        """Settle the pairs whose job turned out gone; the others."""
        for job, o in todo:
            if o.action == LOST:
                self._done(job, o)
        return [(job, o) for job, o in todo if o.action != LOST]

    def _unconfirmed(self, todo: Sequence[Tuple[Job, Outcome]]) -> None:
        """Keep the decisions whose reply was lost, to apply after reconnecting."""
        for job, o in todo:
            self.worker.ledger.unconfirmed(job.jid, o)

    def _lost_midway(self, todo: List[Tuple[Job, Outcome]], exc: BaseException) -> None:
        """The connection broke while ``todo`` was sent: record what ``exc.results``
        confirms, keep the rest unconfirmed."""
        confirmed = getattr(exc, "results", [])
        self._record([job for job, _ in todo], [o for _, o in todo], confirmed)
        self._unconfirmed(todo[len(confirmed):])

    @staticmethod
    def _queue(pipe: Any, todo: Sequence[Tuple[Job, Outcome]]) -> Any:
        """Add each outcome's command to ``pipe`` (sync or asyncio Pipeline)."""
        for job, o in todo:
            pri = o.priority if o.priority is not None else 0   # resolved before
            if o.action == DELETE:
                pipe.delete(job.jid)
            elif o.action == RELEASE:
                pipe.release(job.jid, pri, o.delay)
            else:
                pipe.bury(job.jid, pri)
        return pipe

    def _done(self, job: Job, outcome: Outcome) -> None:
        """The job is settled: count it, forget it, tell the hook."""
        self.worker.ledger.end(job.jid)
        action = outcome.action
        if action == DELETE or action == HANDLED:
            self.count(PROCESSED)
        elif action == RELEASE:
            self.count(RETRIED if outcome.error is not None else RELEASED)
        elif action == BURY:
            self.count(BURIED)
        elif action == LOST:
            self.count(LOST_)
            log.warning("job %d was lost before it could be settled (TTR ran out, or the "
                        "server restarted)", job.jid)
        if self.worker.on_outcome is not None:
            _hook(self.worker.on_outcome, job, outcome)


class _Slot(_SlotBase):
    """One worker thread with its own connection, driving the steps with
    plain calls (``drive``).

    The thread holds ``lock`` whenever it uses its connection and releases it
    only while its handler runs; the supervisor (``Worker.run``) takes it then
    to touch the held jobs through the connection that reserved them (a touch
    from any other connection is NOT_FOUND) and, past the grace period, to
    release them: one thread at a time on the connection, always."""

    def __init__(self, worker: "Worker", row: int) -> None:
        super().__init__(worker, row)
        self.lock = threading.Lock()
        self.conn: Optional[Connection] = None
        self.thread = threading.Thread(target=self.run, daemon=True,
                                       name="beanstalkc_fast-worker-%d" % row)

    # -- the thread ----------------------------------------------------------------------------
    def run(self) -> None:
        self.lock.acquire()
        try:
            drive(self._loop())
        except BaseException:
            log.exception("worker %d: stopped by an unexpected error", self.row)
            raise
        finally:
            if not self.abandoned and self.conn is not None:
                self.conn.close()     # the server releases anything still reserved
            self.lock.release()

    def _open(self) -> Connection:
        w = self.worker
        return Connection(w.host, w.port, **w.connection_options)

    def _sleep(self, seconds: float) -> None:
        self.worker._stopping.wait(seconds)

    def _call(self, jobs: List[Job]) -> Results:
        """Run the handler with ``lock`` released (the supervisor may touch or
        release the held jobs meanwhile)."""
        w = self.worker
        results: Optional[List[object]] = None      # None: every job done
        self.held = (jobs, time.monotonic())
        self.lock.release()
        try:
            result = w.handler(jobs[0] if w.batch is None else jobs)
            if result is not None:
                results = self._results(result, len(jobs))
        except BaseException as exc:
            results = [exc] * len(jobs)
        finally:
            self.lock.acquire()
            self.held = None
        return ABANDONED if self.abandoned else results

    # -- the supervisor's side (another thread) --------------------------------------------------
    def beat(self, now: float) -> None:
        """Touch the jobs held by the handler if due (see Heartbeat)."""
        held = self.held
        if held is None:
            return
        hb = self._heartbeat(held)
        if now < hb.due or not self.lock.acquire(blocking=False):
            return                                  # the thread is using its connection
        try:
            if self.held is not held or self.abandoned or self.broken:
                return
            drive(self._touch(held, hb))
        except ConcurrentUseError:
            pass                                    # the handler uses job.conn itself
        except (SocketError, CommandFailed) as exc:
            hb.stop()
            self.broken = isinstance(exc, SocketError) or self.broken
            log.warning("worker %d: heartbeat failed: %s", self.row, exc)
        finally:
            self.lock.release()

    def interrupt(self) -> None:
        """At stop: end the reserve this slot waits in now rather than at its
        timeout. Half-closing the socket makes beanstalkd answer a waiting
        reserve with TIMED_OUT; a job reserved in the meantime is released by
        the slot (it never runs a handler once stopping) or by the server when
        the connection closes. Without access to the socket, the reserve ends
        at its timeout (``reserve_timeout``)."""
        if not self.waiting or self.interrupted:
            return
        self.interrupted = True
        sock = getattr(getattr(self.conn, "_core", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def abandon(self, grace: float) -> None:
        """Past the grace period: release the jobs of a handler still running
        (through this slot's connection) and let the thread go."""
        if self.held is None or not self.lock.acquire(timeout=5):
            return
        try:
            held = self.held
            if held is None:
                return
            self.abandoned = True
            try:
                drive(self._give_up(held[0], grace))
            finally:
                if self.conn is not None:
                    self.conn.close()               # the server releases what is left
        finally:
            self.lock.release()


class Worker(_Settings):
    """Consume jobs from ``tubes`` with ``handler``.

    ``handler(job)`` (or, with ``batch=n``, ``handler(jobs)`` for up to n jobs
    taken with ``reserve_many``; it returns None or one result per job) runs
    in ``concurrency`` threads (``mode="thread"``) or processes
    (``mode="process"``, fork-safe: each makes its own connections), each with
    its own connection made with ``host``, ``port`` and ``connection_options``
    (any ``Connection`` option but ``auto_reconnect`` and ``parse_yaml``).

    Outcome of a job: the handler returns -> delete; raises ``Release`` /
    ``Bury`` (or returns one) -> as told; raises anything else -> ``retry``
    (a RetryPolicy) releases it with backoff or buries it; the error is logged
    once with the job id. The handler should not settle or touch the job
    itself (the worker does; a job it did settle is left alone).

    ``run()`` blocks until ``stop()``, SIGTERM or SIGINT (handlers installed
    when ``run()`` runs in the main thread and ``install_signals``). Then
    no new job is taken (a waiting reserve is ended at once; at the latest
    after ``reserve_timeout`` seconds), running handlers get ``grace``
    seconds to finish, and the jobs of handlers still running are released
    with their priority kept. A second signal ends the grace period at once.

    Hooks (optional, called in the worker thread; errors are logged):
    ``on_start(job)`` before the handler, ``on_outcome(job, outcome)`` after
    the job was settled. ``counters`` are readable while running.
    """

    def __init__(self, handler: Handler, tubes: Iterable[str] = (DEFAULT_TUBE_NAME,), *,
                 host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, concurrency: int = 1,
                 mode: str = "thread", batch: Optional[int] = None,
                 retry: Optional[RetryPolicy] = None, grace: float = 30.0,
                 reserve_timeout: int = 1, install_signals: bool = True,
                 on_start: Optional[Callable[[Job], Any]] = None,
                 on_outcome: Optional[Callable[[Job, Outcome], Any]] = None,
                 heartbeat_margin: float = 5.0, mp_context: Optional[str] = None,
                 **connection_options: Any) -> None:
        if mode not in ("thread", "process"):
            raise ValueError("mode must be 'thread' or 'process', got %r" % (mode,))
        self._configure(handler, tubes, host, port, concurrency, batch, retry, grace,
                        reserve_timeout, install_signals, on_start, on_outcome, heartbeat_margin,
                        Connection, connection_options)
        self.mode = mode
        self.mp_context = mp_context
        self._init_runtime()

    _SETTINGS = ("handler", "tubes", "host", "port", "connection_options", "concurrency", "mode",
                 "batch", "retry", "grace", "reserve_timeout", "install_signals", "on_start",
                 "on_outcome", "heartbeat_margin", "mp_context")

    def _init_runtime(self) -> None:
        self._stopping = threading.Event()
        self.stopping = False           # set with _stopping; a plain read for the hot path
        self._hurry = threading.Event()
        self._tick = threading.Event()
        self._started = False
        self._rows = list(range(self.concurrency))
        self._counters = Counters(self.concurrency)
        self.ledger = Ledger()

    def __getstate__(self) -> Dict[str, Any]:
        """The settings only (a spawned worker process rebuilds the rest)."""
        return {name: getattr(self, name) for name in self._SETTINGS}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    @property
    def counters(self) -> Dict[str, int]:
        """Totals over every thread or process so far (see Counters)."""
        return self._counters.totals()


    def stop(self, grace: Optional[float] = None) -> None:
        """Ask ``run()`` to end (thread-safe, also from a handler); ``grace``
        replaces the grace period (0: release the unfinished jobs now)."""
        if grace is not None:
            self.grace = float(grace)
            if grace <= 0:
                self._hurry.set()
        self.stopping = True
        self._stopping.set()
        self._tick.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stopping.is_set():
            log.warning("signal %d again: ending the grace period now", signum)
            self._hurry.set()
        else:
            log.info("signal %d: stopping", signum)
            self.stopping = True
            self._stopping.set()
        self._tick.set()

    def run(self) -> None:
        """Consume until stopped; returns when every job is settled or
        released (see the class docstring)."""
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        previous = {}
        if self.install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            if self.mode == "process":
                self._run_processes()
            else:
                self._run_threads()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run_threads(self) -> None:
        slots = [_Slot(self, row) for row in self._rows]
        for slot in slots:
            slot.thread.start()
        log.info("worker: %d thread(s) on %s:%s, tubes %s", len(slots), self.host, self.port,
                 self.tubes)
        deadline = None
        while True:
            live = [s for s in slots if s.thread.is_alive() and not s.abandoned]
            if not live:
                break
            now = time.monotonic()
            if self._stopping.is_set():
                if deadline is None:
                    deadline = now + self.grace
                for slot in live:
                    slot.interrupt()
                if now >= deadline or self._hurry.is_set():
                    for slot in live:
                        slot.abandon(self.grace)
            for slot in live:
                slot.beat(now)
            self._tick.wait(0.05 if self._stopping.is_set() else 0.1)
            self._tick.clear()
        log.info("worker: stopped; %s", self.counters)

    # -- processes ------------------------------------------------------------------------------
    def _run_processes(self) -> None:
        import multiprocessing
        method = self.mp_context
        if method is None and sys.platform.startswith("linux"):
            # fork, as before Python 3.14 made forkserver Linux's default: handlers
            # need not be importable by name (mp_context="spawn"/"forkserver" opt in)
            method = "fork"
        ctx = multiprocessing.get_context(method)
        shared = ctx.Array("q", self.concurrency * len(COUNTERS), lock=False)
        self._counters = Counters(self.concurrency, shared)
        procs = {row: self._spawn(ctx, shared, row) for row in self._rows}
        started = {row: time.monotonic() for row in self._rows}
        log.info("worker: %d process(es) on %s:%s, tubes %s", len(procs), self.host, self.port,
                 self.tubes)
        while not self._stopping.is_set():
            for row, proc in procs.items():
                if not proc.is_alive() and not self._stopping.is_set() \
                        and time.monotonic() - started[row] > 1.0:
                    log.error("worker process %d (pid %s) exited with %s; starting another",
                              row, proc.pid, proc.exitcode)
                    procs[row] = self._spawn(ctx, shared, row)
                    started[row] = time.monotonic()
            self._tick.wait(0.2)
            self._tick.clear()
        for proc in procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        hurried = False
        end = time.monotonic() + self.grace + self.reserve_timeout + 5.0
        for proc in procs.values():
            while proc.is_alive() and time.monotonic() < end:
                if self._hurry.is_set() and not hurried:
                    hurried = True
                    for p in procs.values():
                        if p.is_alive() and p.pid is not None:
                            os.kill(p.pid, signal.SIGTERM)
                proc.join(0.05)
            if proc.is_alive():
                log.error("worker process pid %s did not stop; killing it (its jobs come back "
                          "after their TTR)", proc.pid)
                proc.kill()
                proc.join()
        log.info("worker: stopped; %s", self.counters)

    def _spawn(self, ctx: Any, shared: Any, row: int) -> Any:
        proc = ctx.Process(target=_process_main, args=(self, shared, row),
                           name="beanstalkc_fast-worker-%d" % row, daemon=False)
        # blocked until the child has its own handlers (a signal in between
        # would go to a copy of ours)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return proc


def _process_main(parent: Worker, shared: Any, row: int) -> None:
    """A worker process: one slot (counters in the shared row ``row``), its
    own connection, SIGTERM/SIGINT handled like in a thread worker."""
    worker = Worker.__new__(Worker)
    worker.__setstate__(parent.__getstate__())
    worker.mode = "thread"
    worker.concurrency = 1
    worker.install_signals = True
    worker._rows = [row]
    worker._counters = Counters(parent.concurrency, shared)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, worker._on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    worker.run()
