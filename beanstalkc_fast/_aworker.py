"""The asyncio worker (``beanstalkc_fast.asyncio.Worker``): the sync Worker's
behaviour with an async handler and N tasks, on the asyncio client.

Only the IO lives here; what to do with a job (``outcome_of``,
``batch_results``, ``RetryPolicy``), when to touch (``Heartbeat``), reconnect
delays (``Backoff``), no job run twice (``Ledger``), counting and recording
(``_SlotBase``) come from ``beanstalkc_fast.worker``.

Every task has a connection of its own and never has a reserve outstanding
while its handler runs: the asyncio connection answers in order, so a touch
queued behind a waiting reserve would wait with it. The heartbeat touches
through that connection while the handler runs (the handler may use the
job's connection too: commands pipeline). At stop a task waiting in reserve
is cancelled (the client releases a job that arrives for a cancelled
reserve); past the grace period a running handler is cancelled and its jobs
released with their priority kept.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from .asyncio import DEFAULT_HOST, DEFAULT_PORT, Connection
from .asyncio import Job as AsyncJob
from .commands import DEFAULT_TUBE_NAME
from .errors import CommandFailed, DeadlineSoon, NotFound, SocketError
from .job import Job
from .worker import (COUNTERS, DELETE, DELETED, FAILED, LOST, RECONNECTS, RELEASED, RESERVED,
                     RUNNING, Backoff, Bury, Counters, Heartbeat, Ledger, Outcome, Release,
                     RetryPolicy, _hook, _Running, _SlotBase, batch_results, check_settings,
                     outcome_of)

__all__ = ["Worker", "Release", "Bury", "Outcome", "RetryPolicy", "COUNTERS"]

log = logging.getLogger("beanstalkc_fast.worker")

AsyncHandler = Callable[[Any], Any]


def _uncancel() -> None:
    """A cancellation of the current task was handled (Python >= 3.11 counts them)."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


class _TaskSlot(_SlotBase):
    """One consumer task with its own connection (see the module docstring)."""

    def __init__(self, worker: "Worker", row: int) -> None:
        super().__init__(worker, row)
        self.conn: Optional[Connection] = None
        self.broken = False
        self.waiting = False                    # in reserve
        self.interrupted = False                # its reserve was cancelled at stop
        self.abandoned = False                  # cancelled past the grace period
        self.connecting = False                 # in _connect
        self.held: Optional[Tuple[List[AsyncJob], float]] = None
        self.heartbeat: Optional[Heartbeat] = None
        self.beating: Optional["asyncio.Task[None]"] = None
        self.task: Optional["asyncio.Task[None]"] = None

    # -- the task ----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            if not self.abandoned:
                raise
        except BaseException:
            log.exception("worker %d: stopped by an unexpected error", self.row)
            raise
        finally:
            if self.conn is not None:
                await self.conn.close()     # the server releases anything still reserved

    async def _loop(self) -> None:
        w = self.worker
        backoff = Backoff()
        while not w.stopping:
            try:
                if self.conn is None or self.broken:
                    self.connecting = True
                    try:
                        await self._connect()
                    finally:
                        self.connecting = False
                jobs = await self._reserve()
                backoff.reset()
                if jobs:
                    await self._handle(jobs)
                    if self.abandoned:
                        return
            except SocketError as exc:
                self.broken = True
                if w.stopping:
                    log.debug("worker %d: %s while stopping", self.row, exc)
                    return
                delay = backoff.next()
                log.warning("worker %d: %s; reconnecting in %.1f s", self.row, exc, delay)
                await w._sleep(delay)
            except Exception:
                self.broken = True
                delay = backoff.next()
                log.exception("worker %d: unexpected error; reconnecting in %.1f s",
                              self.row, delay)
                await w._sleep(delay)

    async def _connect(self) -> None:
        w = self.worker
        if self.conn is None:
            conn = Connection(w.host, w.port, parse_yaml=True, **w.connection_options)
            await conn.connect()
            try:
                for tube in w.tubes:
                    await conn.watch(tube)
                if DEFAULT_TUBE_NAME not in w.tubes:
                    await conn.ignore(DEFAULT_TUBE_NAME)
            except BaseException:
                await conn.close()
                raise
            self.conn = conn
        else:
            await self.conn.reconnect()             # restores the watch list
            self.count(RECONNECTS)
            log.info("worker %d: reconnected", self.row)
        self.broken = False
        stats = await self.conn.stats()
        binlog = int(stats.get("binlog-current-index", 0) or 0) > 0
        if w.ledger.server(stats.get("id"), binlog):
            log.warning("worker %d: the server restarted without a binlog: the jobs held "
                        "before are gone", self.row)
        for jid in w.ledger.pending_deletes():
            try:
                await self.conn.delete(jid)
            except NotFound:
                continue                            # reserved elsewhere, or gone
            w.ledger.end(jid)
            log.info("worker %d: job %d deleted after reconnecting", self.row, jid)

    async def _reserve(self) -> List[AsyncJob]:
        w = self.worker
        conn = self.conn
        assert conn is not None
        self.waiting = True
        try:
            if w.batch is not None:
                return await conn.reserve_many(w.batch, w.reserve_timeout)
            job = await conn.reserve(w.reserve_timeout)
        except DeadlineSoon:
            # only when this connection still holds a job it could not settle
            log.debug("worker %d: DEADLINE_SOON", self.row)
            await w._sleep(0.1)
            return []
        except asyncio.CancelledError:
            if not self.interrupted:
                raise
            _uncancel()                             # stop: the client releases a late job
            return []
        finally:
            self.waiting = False
        return [job] if job is not None else []

    async def _handle(self, jobs: List[AsyncJob]) -> None:
        w = self.worker
        self.count(RESERVED, len(jobs))
        if w.stopping:                              # stop: take no new job
            await self._release(jobs)
            return
        if len(jobs) == 1:
            state = w.ledger.begin(jobs[0].jid)
            if state is not None:
                await self._known(jobs[0], state)
                return
        else:
            jobs = await self._admit(jobs)
            if not jobs:
                return
        if w.on_start is not None:
            for job in jobs:
                _hook(w.on_start, job)
        results: Optional[List[object]] = None      # None: every job done
        self.held = (jobs, time.monotonic())
        try:
            if w.batch is None:
                result = w.handler(jobs[0])
                if inspect.isawaitable(result):
                    result = await result
                if isinstance(result, (Release, Bury)):
                    results = [result]
            else:
                result = w.handler(jobs)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    results = batch_results(result, len(jobs))
        except asyncio.CancelledError:
            self.held = None
            if not self.abandoned:
                raise
            _uncancel()
            await self._give_up(jobs)
            return
        except Exception as exc:
            results = [exc] * len(jobs)
        self.held = None
        await self._settle(jobs, results)

    async def _give_up(self, jobs: List[AsyncJob]) -> None:
        """Past the grace period: release the jobs of the cancelled handler."""
        log.error("worker %d: handler still running at the end of the grace period "
                  "(%.1f s); releasing job(s) %s", self.row, self.worker.grace,
                  ", ".join(str(job.jid) for job in jobs))
        try:
            if not self.broken:
                await self._release(jobs)
        except (SocketError, CommandFailed) as exc:
            log.warning("worker %d: could not release: %s", self.row, exc)

    async def _admit(self, jobs: List[AsyncJob]) -> List[AsyncJob]:
        """The jobs of a batch to run; settles those the ledger knows."""
        states = self.worker.ledger.begin_many([job.jid for job in jobs])
        if not any(states):
            return jobs
        fresh = []
        for job, state in zip(jobs, states):
            if state is None:
                fresh.append(job)
            else:
                await self._known(job, state)
        return fresh

    async def _known(self, job: AsyncJob, state: Union[_Running, Outcome]) -> None:
        """Settle a job the ledger knows: running here already (put it back
        for a second), or run already (apply its outcome)."""
        if state is RUNNING:
            log.info("worker %d: job %d is already running here; released for 1 s",
                     self.row, job.jid)
            await self._release([job], delay=1)
        else:
            assert isinstance(state, Outcome)
            log.info("worker %d: job %d already ran; applying its outcome (%s)",
                     self.row, job.jid, state.action)
            await self._apply([job], [state])

    async def _release(self, jobs: List[AsyncJob], delay: int = 0) -> None:
        """Release jobs not run (or not finished), with their own priority."""
        for job in jobs:
            try:
                await job.release(delay=delay)
            except CommandFailed as exc:
                log.warning("worker %d: could not release job %d: %s", self.row, job.jid, exc)
                continue
            self.count(RELEASED)

    async def _settle(self, jobs: List[AsyncJob], results: Optional[List[object]]) -> None:
        """Decide and apply the outcome of every job from its handler result
        (None: every job done)."""
        w = self.worker
        conn = self.conn
        assert conn is not None
        if results is None:
            if all(job.reserved for job in jobs):
                await self._delete(jobs)            # the common case
                return
            results = [None] * len(jobs)
        outcomes: List[Outcome] = []
        try:
            for job, result in zip(jobs, results):
                outcome = outcome_of(result)
                if outcome is None:                     # a failure: the policy decides
                    self.count(FAILED)
                    assert isinstance(result, BaseException)
                    try:
                        stats: Optional[Dict[str, Any]] = await conn._stats_job_dict(job.jid)
                    except NotFound:
                        stats = None
                    outcome = self._failure(job, stats, result)
                outcomes.append(outcome)
        except SocketError:
            for job, outcome in zip(jobs, outcomes):
                w.ledger.unconfirmed(job.jid, outcome)
            w.ledger.end_many(job.jid for job in jobs[len(outcomes):])
            raise
        await self._apply(jobs, outcomes)

    async def _delete(self, jobs: List[AsyncJob]) -> None:
        """Every job done: delete them, count them."""
        w = self.worker
        conn = self.conn
        assert conn is not None
        if len(jobs) == 1:
            job = jobs[0]
            try:
                await conn.delete(job.jid)
            except NotFound as exc:
                self._record(jobs, [DELETED], [exc])  # type: ignore[arg-type]
                return
            except SocketError:
                w.ledger.unconfirmed(job.jid, DELETED)
                raise
            job.reserved = False
            self._done(job, DELETED)
            return
        try:
            replies = await conn.delete_many(jobs, raise_errors=False)
        except SocketError as exc:
            confirmed = getattr(exc, "results", [])
            self._record(jobs, [DELETED] * len(confirmed), confirmed)  # type: ignore[arg-type]
            for job in jobs[len(confirmed):]:
                w.ledger.unconfirmed(job.jid, DELETED)
            raise
        self._record(jobs, [DELETED] * len(jobs), replies)  # type: ignore[arg-type]

    async def _apply(self, jobs: List[AsyncJob], outcomes: List[Outcome]) -> None:
        """Send every outcome (pipelined); record what the server confirmed,
        keep the rest in the ledger when the connection is lost."""
        conn = self.conn
        assert conn is not None
        todo = self._to_send(jobs, outcomes)
        if not todo:
            return
        try:
            for i, (job, o) in enumerate(todo):
                if o.action != DELETE and o.priority is None:   # keep the job's priority
                    try:
                        pri = int((await conn._stats_job_dict(job.jid))["pri"])
                        todo[i] = (job, o._replace(priority=pri))
                    except NotFound:
                        todo[i] = (job, Outcome(LOST, error=o.error))
        except SocketError:
            self._unconfirmed(todo)
            raise
        todo = self._settle_lost(todo)
        if not todo:
            return
        try:
            replies = await self._queue(conn.pipeline(), todo).execute()
        except SocketError as exc:
            self._lost_midway(todo, exc)
            raise
        self._record([job for job, _ in todo], [o for _, o in todo], replies)

    # -- the supervisor's side ----------------------------------------------------------------
    def interrupt(self) -> None:
        """At stop: cancel the reserve this task waits in now."""
        if self.waiting and not self.interrupted and self.task is not None:
            self.interrupted = True
            self.task.cancel()

    def abandon(self) -> None:
        """Past the grace period: cancel the running handler (its jobs are
        then released by the task), or a connect that hangs."""
        if (self.held is not None or self.connecting) and not self.abandoned \
                and self.task is not None:
            self.abandoned = True
            self.task.cancel()

    def beat(self, now: float) -> None:
        """Touch the jobs held by the handler if due (see Heartbeat)."""
        held = self.held
        if held is None or self.broken:
            return
        hb = self.heartbeat
        if hb is None or hb.jobs is not held[0]:
            hb = self.heartbeat = Heartbeat(held[0], held[1], margin=self.worker.heartbeat_margin)
        if now < hb.due or (self.beating is not None and not self.beating.done()):
            return
        self.beating = asyncio.ensure_future(self._beat(held, hb))

    async def _beat(self, held: Tuple[List[AsyncJob], float], hb: Heartbeat) -> None:
        conn = self.conn
        try:
            if self.held is not held or conn is None:
                return
            jobs = [job for job in held[0] if job.jid not in hb.gone]
            if not jobs:
                hb.stop()
                return
            if hb.ttr is None:
                stats = []
                for job in jobs:
                    try:
                        stats.append(await conn._stats_job_dict(job.jid))
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
            for job, reply in zip(jobs, await pipe.execute()):
                if isinstance(reply, NotFound) and self.held is held:
                    self._gone(hb, job)
                elif isinstance(reply, BaseException):
                    raise reply
            hb.touched(time.monotonic())
            log.debug("worker %d: touched %d job(s)", self.row, len(jobs))
        except (SocketError, CommandFailed) as exc:
            hb.stop()
            log.warning("worker %d: heartbeat failed: %s", self.row, exc)

    def _gone(self, hb: Heartbeat, job: Job) -> None:
        hb.gone.add(job.jid)
        log.warning("worker %d: job %d of the running handler is no longer reserved by this "
                    "worker (its TTR ran out?)", self.row, job.jid)


class Worker:
    """Consume jobs from ``tubes`` with an async ``handler``, in
    ``concurrency`` tasks, each with its own asyncio connection (made with
    ``host``, ``port`` and ``connection_options``: any option of
    ``beanstalkc_fast.asyncio.Connection`` but ``auto_reconnect`` and
    ``parse_yaml``).

    ``await handler(job)`` (or, with ``batch=n``, ``await handler(jobs)`` for
    up to n jobs taken with ``reserve_many``) and its outcome are the sync
    ``beanstalkc_fast.Worker``'s: return -> delete; ``Release`` / ``Bury`` ->
    as told; another exception -> ``retry`` releases it with backoff or buries
    it. While it runs its jobs are touched before their TTR runs out. A plain
    function works too (it runs in the event loop, so it must not block).

    ``await run()`` consumes until ``stop()``, SIGTERM or SIGINT (handlers
    installed with ``loop.add_signal_handler`` when run in the main thread and
    ``install_signals``): a waiting reserve is cancelled at once, running
    handlers get ``grace`` seconds, then they are cancelled and their jobs
    released with their priority kept. A second signal ends the grace period.
    ``counters``, ``on_start(job)`` and ``on_outcome(job, outcome)`` as in
    the sync Worker.
    """

    def __init__(self, handler: AsyncHandler, tubes: Iterable[str] = (DEFAULT_TUBE_NAME,), *,
                 host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, concurrency: int = 1,
                 batch: Optional[int] = None, retry: Optional[RetryPolicy] = None,
                 grace: float = 30.0, reserve_timeout: int = 1, install_signals: bool = True,
                 on_start: Optional[Callable[[Job], Any]] = None,
                 on_outcome: Optional[Callable[[Job, Outcome], Any]] = None,
                 heartbeat_margin: float = 5.0, **connection_options: Any) -> None:
        self.tubes = check_settings(handler, tubes, concurrency, batch, reserve_timeout, grace,
                                    retry, Connection, (host, port), connection_options)
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
        self.stopping = False
        self._hurry = False
        self._started = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake: Optional[asyncio.Event] = None       # the supervisor's tick
        self._stopped: Optional[asyncio.Event] = None    # set at stop
        self._counters = Counters(concurrency)
        self.ledger = Ledger()

    @property
    def counters(self) -> Dict[str, int]:
        """Totals over every task so far (see ``beanstalkc_fast.worker.Counters``)."""
        return self._counters.totals()

    def stop(self, grace: Optional[float] = None) -> None:
        """Ask ``run()`` to end (from the loop, or thread-safe from another
        thread); ``grace`` replaces the grace period (0: release the
        unfinished jobs now)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self.stop, grace)
                return
        if grace is not None:
            self.grace = float(grace)
            if grace <= 0:
                self._hurry = True
        self._set_stopping()

    def _set_stopping(self) -> None:
        self.stopping = True
        if self._stopped is not None:
            self._stopped.set()
        if self._wake is not None:
            self._wake.set()

    def _on_signal(self, signum: int) -> None:
        if self.stopping:
            log.warning("signal %d again: ending the grace period now", signum)
            self._hurry = True
        else:
            log.info("signal %d: stopping", signum)
        self._set_stopping()

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when stopped meanwhile."""
        assert self._stopped is not None
        if not self.stopping:
            try:
                await asyncio.wait_for(self._stopped.wait(), seconds)
            except asyncio.TimeoutError:
                pass

    async def run(self) -> None:
        """Consume until stopped; returns when every job is settled or
        released (see the class docstring)."""
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        if self.stopping:
            self._stopped.set()
        signals: List[signal.Signals] = []
        if self.install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, int(sig))
                signals.append(sig)
        slots = [_TaskSlot(self, row) for row in range(self.concurrency)]
        for slot in slots:
            slot.task = loop.create_task(slot.run())
        log.info("worker: %d task(s) on %s:%s, tubes %s", len(slots), self.host, self.port,
                 self.tubes)
        try:
            await self._supervise(slots)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            tasks = [s.task for s in slots if s.task is not None]
            tasks += [s.beating for s in slots if s.beating is not None]
            for task in tasks:
                if not task.done():
                    task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("worker: a task ended with %r", task.exception())
        log.info("worker: stopped; %s", self.counters)

    async def _supervise(self, slots: List[_TaskSlot]) -> None:
        assert self._wake is not None
        deadline: Optional[float] = None
        abandoned_at: Optional[float] = None
        while True:
            live = [s for s in slots if s.task is not None and not s.task.done()]
            if not live:
                return
            now = time.monotonic()
            if self.stopping:
                if deadline is None:
                    deadline = now + self.grace
                for slot in live:
                    slot.interrupt()
                if now >= deadline or self._hurry:
                    for slot in live:
                        slot.abandon()
                    if abandoned_at is None:
                        abandoned_at = now
                    elif now > abandoned_at + 5.0:
                        log.error("worker: %d task(s) ignore cancellation; leaving them (the "
                                  "server releases their jobs when the connection closes)",
                                  len(live))
                        return
            for slot in live:
                slot.beat(now)
            try:
                await asyncio.wait_for(self._wake.wait(), 0.05 if self.stopping else 0.1)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

