"""The asyncio worker (``beanstalkc_fast.asyncio.Worker``): the sync Worker's
behaviour with an async handler and N tasks, on the asyncio client.

Only the IO lives here; what to do with a job (``outcome_of``,
``batch_results``, ``RetryPolicy``), when to touch (``Heartbeat``), reconnect
delays (``Backoff``), no job run twice (``Ledger``), counting and recording,
and the steps of consuming themselves (``_SlotBase``: connect, reserve,
handle, settle, touch, written once as generators that yield their IO) come
from ``beanstalkc_fast.worker``; ``_drive`` awaits that IO.

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
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar

from .asyncio import DEFAULT_HOST, DEFAULT_PORT, Connection
from .commands import DEFAULT_TUBE_NAME
from .errors import CommandFailed, SocketError
from .job import Job
from .worker import (ABANDONED, COUNTERS, Bury, Counters, Heartbeat, Ledger, Outcome, Release,
                     Results, RetryPolicy, Steps, _Settings, _SlotBase)

__all__ = ["Worker", "Release", "Bury", "Outcome", "RetryPolicy", "COUNTERS"]

log = logging.getLogger("beanstalkc_fast.worker")

_T = TypeVar("_T")

AsyncHandler = Callable[[Any], Any]


def _uncancel() -> None:
    """A cancellation of the current task was handled (Python >= 3.11 counts them)."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


async def _drive(steps: Steps[_T]) -> _T:
    """Run ``steps`` (see ``beanstalkc_fast.worker.drive``), awaiting every
    request: its result is sent back, its exception (a cancellation too)
    thrown in where it was asked for."""
    send, throw = steps.send, steps.throw
    try:
        function, args = send(None)
        while True:
            try:
                result = await function(*args)
            except BaseException as exc:
                function, args = throw(exc)
            else:
                function, args = send(result)
    except StopIteration as stop:
        value: _T = stop.value
        return value


class _TaskSlot(_SlotBase):
    """One consumer task with its own connection (see the module docstring),
    driving the steps with ``_drive``."""

    _INTERRUPTS = (asyncio.CancelledError,)     # interrupt() cancels a waiting reserve

    def __init__(self, worker: "Worker", row: int) -> None:
        super().__init__(worker, row)
        self.conn: Optional[Connection] = None
        self.beating: Optional["asyncio.Task[None]"] = None
        self.task: Optional["asyncio.Task[None]"] = None

    # -- the task ----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await _drive(self._loop())
        except asyncio.CancelledError:
            if not self.abandoned:
                raise
        except BaseException:
            log.exception("worker %d: stopped by an unexpected error", self.row)
            raise
        finally:
            if self.conn is not None:
                await self.conn.close()     # the server releases anything still reserved

    async def _open(self) -> Connection:
        w = self.worker
        conn = Connection(w.host, w.port, parse_yaml=True, **w.connection_options)
        await conn.connect()
        return conn

    async def _sleep(self, seconds: float) -> None:
        await self.worker._sleep(seconds)

    def _resume(self) -> None:
        _uncancel()

    async def _call(self, jobs: List[Job]) -> Results:
        """Run the handler (awaiting what it returns); cancelled past the
        grace period, release its jobs."""
        w = self.worker
        self.held = (jobs, time.monotonic())
        try:
            result = w.handler(jobs[0] if w.batch is None else jobs)
            if inspect.isawaitable(result):
                result = await result
            results = None if result is None else self._results(result, len(jobs))
        except asyncio.CancelledError:
            self.held = None
            if not self.abandoned:
                raise
            _uncancel()
            await _drive(self._give_up(jobs, w.grace))
            return ABANDONED
        except Exception as exc:
            results = [exc] * len(jobs)
        self.held = None
        return results

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
        hb = self._heartbeat(held)
        if now < hb.due or (self.beating is not None and not self.beating.done()):
            return
        self.beating = asyncio.ensure_future(self._beat(held, hb))

    async def _beat(self, held: Tuple[List[Job], float], hb: Heartbeat) -> None:
        try:
            if self.held is not held or self.conn is None:
                return
            await _drive(self._touch(held, hb))
        except (SocketError, CommandFailed) as exc:
            hb.stop()
            log.warning("worker %d: heartbeat failed: %s", self.row, exc)


class Worker(_Settings):
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
        self._configure(handler, tubes, host, port, concurrency, batch, retry, grace,
                        reserve_timeout, install_signals, on_start, on_outcome, heartbeat_margin,
                        Connection, connection_options)
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

