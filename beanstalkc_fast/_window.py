"""The windows of both cores, written once: the blocking cores' pipeline
driver (``run_window``), the asyncio connection's window (``Window``) and
the result of each of its calls (``Call``).

The pure-Python core imports this module; the Cython core compiles this very
source into itself (``include`` in ``src/_protocol.pyx``), where the
``cython.*`` declarations make C integers of the locals and a C type with
C fields of ``Window`` and ``Call``. Python never evaluates the annotations of local
variables, and without Cython installed the few ``cython`` names evaluated
here are the stand-ins below, so the twin runs as plain Python.
"""

import asyncio
import collections
import contextvars
from threading import get_ident
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

try:
    import cython  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - interpreted without Cython installed
    class cython:  # type: ignore[no-redef]
        """What this module evaluates of Cython's names, as plain Python."""
        compiled = False
        Py_ssize_t = int
        int = int
        bint = bool
        double = float

        @staticmethod
        def cclass(cls: Any) -> Any:
            return cls

        @staticmethod
        def declare(ctype: Any, visibility: str = "private") -> Any:
            return None                    # a class attribute each instance sets

        @staticmethod
        def ccall(func: Any) -> Any:
            return func

        @staticmethod
        def cfunc(func: Any) -> Any:
            return func


def run_window(send: Callable[[bytes], Any], read_reply: Callable[[int], Any],
               read_buffered: Callable[[List[Any], int], int], commands: Iterable[bytes],
               results: List[Any], window: int, max_bytes: int) -> Optional[Exception]:
    """Send ``commands``, appending each reply to ``results`` in order
    (``read_reply(n)`` waits for the next, ``n`` replies being due).

    At most ``window`` commands and ``max_bytes`` bytes (or one larger
    command) are ever written but unanswered; the window is topped up once
    half of it is free, and replies already received are read before writing
    more (``read_buffered(results, most)`` appends up to ``most`` of them
    and returns how many), so neither side's buffers can fill up. An
    exception raised by the iterator stops the batch: the commands not yet
    written are dropped, every written one is answered, and the exception is
    returned for the core to raise.
    """
    w: cython.Py_ssize_t = window
    limit: cython.Py_ssize_t = max_bytes
    sent: cython.Py_ssize_t = 0
    done: cython.Py_ssize_t = 0
    inflight: cython.Py_ssize_t = 0
    size: cython.Py_ssize_t             # ring entries are read into it: C arithmetic
    more: cython.Py_ssize_t
    exhausted: cython.bint = False
    it = iter(commands)
    sizes: List[int] = [0] * w          # ring: size of each unanswered command
    pending: Optional[bytes] = None
    out: List[bytes] = []
    deferred: Optional[Exception] = None
    while True:
        if not exhausted and sent - done <= w // 2 and inflight <= limit // 2:
            while sent - done < w:
                if pending is None:
                    try:
                        pending = next(it, None)
                    except Exception as exc:
                        deferred = exc
                        while out:
                            out.pop()
                            sent -= 1
                            size = sizes[sent % w]
                            inflight -= size
                    if pending is None:
                        exhausted = True
                        break
                size = len(pending)
                if sent > done and inflight + size > limit:
                    break
                out.append(pending)
                sizes[sent % w] = size
                inflight += size
                sent += 1
                pending = None
            if out:
                send(b"".join(out))
                out.clear()
        if done == sent:
            if exhausted:
                return deferred
            continue
        results.append(read_reply(sent - done))
        size = sizes[done % w]
        inflight -= size
        done += 1
        if done < sent:
            more = read_buffered(results, sent - done)
            while more:
                size = sizes[done % w]
                inflight -= size
                done += 1
                more -= 1


@cython.cclass
class Window:
    """The write side of an asyncio connection: its commands written and not
    yet answered (``pending``, entries in reply order: ``count`` commands of
    ``nbytes`` bytes, the reply stream last moving at ``progress``), the
    calls waiting for room (``waiters``), what was written in this loop
    iteration and is not yet flushed (``out``), the read deadline
    (``timeout`` seconds after ``progress``, its ``timer``), and why the
    connection is unusable (``broken``, None while healthy). ``run`` makes a
    call's awaitable in one call into the Cython core.

    The entries and waiters are ``asyncio.Connection``'s (its comments say
    what they hold), and so is reading the replies.
    """

    count = cython.declare(cython.Py_ssize_t, visibility="public")
    nbytes = cython.declare(cython.Py_ssize_t, visibility="public")
    progress = cython.declare(cython.double, visibility="public")
    broken = cython.declare(object, visibility="public")
    auto_reconnect = cython.declare(cython.bint, visibility="public")
    timeout = cython.declare(object, visibility="public")    # seconds or None
    timer = cython.declare(object, visibility="public")      # the deadline's TimerHandle
    transport = cython.declare(object, visibility="public")
    loop = cython.declare(object, visibility="public")
    thread = cython.declare(object, visibility="public")     # the thread that runs loop
    pending = cython.declare(object, visibility="readonly")
    waiters = cython.declare(object, visibility="readonly")
    out = cython.declare(list, visibility="readonly")
    ready = cython.declare(list, visibility="readonly")      # see defer
    abandon = cython.declare(object, visibility="readonly")
    _arm = cython.declare(object)
    _reserved = cython.declare(object)
    _limit = cython.declare(cython.Py_ssize_t)
    _max_bytes = cython.declare(cython.Py_ssize_t)

    def __init__(self, abandon: Callable[[Any], None], arm: Callable[[], None], limit: int,
                 max_bytes: int, reserved: int) -> None:
        """``abandon(result)`` disposes of the result of a call its awaiter
        left (see ``Call.throw``); ``arm()`` sets ``timer`` from ``progress``
        and ``timeout``; at most ``limit`` commands and ``max_bytes`` bytes
        (or one larger command) are unanswered; ``reserved`` is the kind of
        a reserve."""
        self.count = 0
        self.nbytes = 0
        self.progress = 0.0
        self.broken = "not connected"
        self.auto_reconnect = False
        self.timeout = None
        self.timer = None
        self.transport = None
        self.loop = None
        self.thread = None
        self.pending = collections.deque()
        self.waiters = collections.deque()
        self.out = []
        self.ready = []
        self.abandon = abandon
        self._arm = arm
        self._limit = limit
        self._max_bytes = max_bytes
        self._reserved = reserved

    def run(self, conn: Any, cmd: Any, data: bytes, arg: Any = None) -> Any:
        """The awaitable of a call of ``cmd`` (sent as ``data``) on ``conn``.

        In the thread of the connection's loop and healthy, with room and
        nobody waiting (and not a command ``auto_reconnect`` would send
        again), the command is written now (see ``enqueue``) and its result
        future returned: a ``Call`` (a future that is also a coroutine:
        gather needs no Task per call), or for a reserve, and idle (the
        sequential case, where a plain future is cheaper for the awaiting
        Task), the coroutine ``conn._wait`` on a plain future. Without room
        (and without auto_reconnect), a ``Call`` too, queued for ``wake`` to
        write in its turn. Otherwise the coroutine ``conn._send``, which
        waits for room, reconnects and retries."""
        # compiled, a C cast: the Command (a tuple subclass) is indexed in C;
        # interpreted, cmd itself (Cython's own cast() costs a Python call)
        command: tuple = cython.cast(tuple, cmd) if cython.compiled else cmd  # type: ignore[type-arg]
        count: cython.Py_ssize_t = self.count
        size: cython.Py_ssize_t
        reserve: cython.bint
        plain: cython.bint
        if self.broken is None and get_ident() == self.thread:
            size = len(data)
            reserve = command[1] == self._reserved                  # Command.kind
            plain = count == 0 or reserve
            if (not self.waiters
                    and (count == 0 or (count < self._limit       # has_room, inline
                                        and self.nbytes + size <= self._max_bytes))
                    and not (command[7] and self.auto_reconnect)):   # Command.safe
                self.count = count + 1
                self.nbytes += size
                fut = self.loop.create_future() if plain else new_call(self)
                self.enqueue((fut, cmd, arg, size), data, False)
                return conn._wait(fut) if plain else fut
            if not reserve and not self.auto_reconnect:
                call = new_call(self)                 # no room: written by wake in its turn
                self.waiters.append((call, size, cmd, arg, data))
                return call
        return conn._send(cmd, data, arg)

    @cython.ccall  # type: ignore[untyped-decorator]  # cpdef: C calls within
    def has_room(self, size: cython.Py_ssize_t) -> cython.bint:
        """Whether a command of ``size`` bytes may be written now."""
        return self.count < self._limit and (
            self.count == 0 or self.nbytes + size <= self._max_bytes)

    def take(self, items: Iterator[bytes], out: List[bytes], sizes: List[int]) -> Any:
        """Move commands from ``items`` to ``out`` (their sizes to ``sizes``),
        counting each in, while the window has room for it; the first that
        did not fit, or None when ``items`` ran out. An exception of
        ``items`` propagates, the commands taken before it counted in."""
        count: cython.Py_ssize_t = self.count
        nbytes: cython.Py_ssize_t = self.nbytes
        size: cython.Py_ssize_t
        try:
            for data in items:
                size = len(data)
                if count >= self._limit or nbytes + size > self._max_bytes:
                    return data
                count += 1
                nbytes += size
                out.append(data)
                sizes.append(size)
            return None
        finally:
            self.count = count
            self.nbytes = nbytes

    def add(self, entry: Any, data: bytes) -> None:
        """Count a single command, sent as ``data``, and enqueue its ``entry``."""
        self.count += 1
        self.nbytes += len(data)
        self.enqueue(entry, data, False)

    @cython.ccall  # type: ignore[untyped-decorator]  # cpdef: C calls within
    def enqueue(self, entry: Any, data: bytes, now: cython.bint) -> None:
        """Append ``entry`` (its room counted) to ``pending`` and write
        ``data``: at once when nothing is pending or queued, or when ``now``
        (a batch's chunk) and nothing is queued; else queued, so that what is
        issued in one loop iteration goes out in one write."""
        pending = self.pending
        if not pending:
            self.progress = self.loop.time()
            pending.append(entry)
            self.write(data, True)
        else:
            pending.append(entry)
            self.write(data, now)

    @cython.ccall  # type: ignore[untyped-decorator]  # cpdef: C calls within
    def write(self, data: bytes, now: cython.bint) -> None:
        """Write ``data`` after what is queued: at once when nothing is
        queued and ``now``, else queued to go out in one write at the end of
        this loop iteration; the deadline is armed if it is not."""
        out = self.out
        if out:
            out.append(data)
        elif now:
            self.transport.write(data)
        else:
            out.append(data)
            self.loop.call_soon(self.flush)
        if self.timer is None and self.timeout is not None:
            self._arm()

    def flush(self) -> None:
        """Write what is queued (nothing once broken)."""
        out = self.out
        if out and self.broken is None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        del out[:]

    def wake(self) -> None:
        """Grant room to the waiters it now fits, in order: a caller's command
        is written (all of them in one write), a wait for room is woken."""
        waiters = self.waiters
        pending = self.pending
        out: List[bytes] = []
        count: cython.Py_ssize_t = self.count
        nbytes: cython.Py_ssize_t = self.nbytes
        size: cython.Py_ssize_t
        while waiters:
            waiter: tuple = waiters[0]  # type: ignore[type-arg]
            fut = waiter[0]
            size = waiter[1]
            if fut.done():                     # cancelled: nothing is sent
                waiters.popleft()
                continue
            if count >= self._limit or (count and nbytes + size > self._max_bytes):
                break
            waiters.popleft()
            count += 1
            nbytes += size
            if len(waiter) == 2:
                fut.set_result(True)           # its callback runs later: counted below
                continue
            if not pending:
                self.progress = self.loop.time()
            pending.append((fut, waiter[2], waiter[3], size))
            out.append(waiter[4])
        self.count = count
        self.nbytes = nbytes
        if out:
            self.write(out[0] if len(out) == 1 else b"".join(out), True)

    @cython.ccall  # type: ignore[untyped-decorator]  # cpdef: C calls within
    def defer(self, call: Any, fn: Any, context: Any,
              more: Optional[List[Tuple[Any, Any]]]) -> None:
        """Run the callbacks of ``call``, just settled (``fn`` in ``context``
        unless None, then the ``(fn, context)`` pairs of ``more``) soon: in
        one ``run_ready`` with those of every call settled before it runs,
        not one ``loop.call_soon`` each (the loop runs them consecutively
        either way)."""
        ready = self.ready
        if not ready:
            self.loop.call_soon(self.run_ready)
        if fn is not None:
            ready.append(fn)
            ready.append(context)
            ready.append(call)
        if more:
            for fn, context in more:
                ready.append(fn)
                ready.append(context)
                ready.append(call)

    def run_ready(self) -> None:
        """Run the deferred callbacks in order, each in its context; one that
        raises is reported to the loop's exception handler, as asyncio does.
        SystemExit and KeyboardInterrupt propagate; the callbacks after it
        run in a later iteration."""
        ready = self.ready
        self.ready = []
        n: cython.Py_ssize_t = len(ready)
        i: cython.Py_ssize_t = 0
        while i < n:
            fn = ready[i]
            context = ready[i + 1]
            call = ready[i + 2]
            i += 3
            try:
                context.run(fn, call)
            except (SystemExit, KeyboardInterrupt):
                if i < n:
                    if not self.ready:
                        self.loop.call_soon(self.run_ready)
                    self.ready[:0] = ready[i:]
                raise
            except BaseException as exc:
                self.loop.call_exception_handler({
                    "message": "Exception in callback %r(%r)" % (fn, call),
                    "exception": exc, "future": call})


@cython.cclass
class Call:
    """The result of a call on an asyncio connection, made by ``new_call``:
    a future (for ``await``, ``gather``, ``wait_for``, ``shield``: it has
    the methods and attributes asyncio uses of one, so no Task of its own is
    needed) that is also a coroutine (for ``create_task`` and ``TaskGroup``:
    the Task waits on it and returns its result).

    It behaves as an ``asyncio.Future``, except that the done callbacks of
    the calls settled together run from one ``loop.call_soon`` (see
    ``Window.defer``). A Task cancelled while it waits cancels it: the
    connection reads and discards the reply; a job reserved meanwhile is
    handed to the window's ``abandon``. One that fails and is never awaited
    is reported to the loop's exception handler when collected ("exception
    was never retrieved"), as a Future's is: a lost put is worth a log."""

    _asyncio_future_blocking = cython.declare(cython.bint, visibility="public")
    _log_traceback = cython.declare(cython.bint, visibility="public")
    _loop = cython.declare(object, visibility="readonly")
    _window = cython.declare(Window)
    _state = cython.declare(cython.int)            # 0 pending, 1 cancelled, 2 finished
    _result = cython.declare(object)
    _exception = cython.declare(object)
    _exception_tb = cython.declare(object)
    _cancel_message = cython.declare(object, visibility="public")   # read by gather
    _callback0 = cython.declare(object)            # the first callback (no list for one),
    _context0 = cython.declare(object)             # its context,
    _callbacks = cython.declare(list)              # and the others: [(fn, context)] or None

    def __repr__(self) -> str:
        state = ("pending", "cancelled", "finished")[self._state]
        if self._state == 2:
            state += (" exception=%r" % (self._exception,) if self._exception is not None
                      else " result=%r" % (self._result,))
        return "<Call %s>" % state

    def get_loop(self) -> Any:
        """The event loop the call belongs to."""
        return self._loop

    @cython.ccall  # type: ignore[untyped-decorator]  # cpdef: C calls within
    def done(self) -> cython.bint:
        """Whether the call has a result, an exception, or was cancelled."""
        return self._state != 0

    def cancelled(self) -> cython.bint:
        """Whether the call was cancelled."""
        return self._state == 1

    def result(self) -> Any:
        """The result; the exception raised; CancelledError if cancelled;
        InvalidStateError while pending."""
        if self._state == 1:
            raise self._make_cancelled_error()
        if self._state == 0:
            raise asyncio.InvalidStateError("Result is not ready.")
        self._log_traceback = False
        if self._exception is not None:
            raise self._exception.with_traceback(self._exception_tb)
        return self._result

    def exception(self) -> Optional[BaseException]:
        """The exception (None if it has a result); as ``result`` when
        cancelled or pending."""
        if self._state == 1:
            raise self._make_cancelled_error()
        if self._state == 0:
            raise asyncio.InvalidStateError("Exception is not set.")
        self._log_traceback = False
        return self._exception  # type: ignore[no-any-return]

    def add_done_callback(self, fn: Callable[[Any], Any], *, context: Any = None) -> None:
        """Call ``fn(call)`` soon once the call is done (in ``context``, by
        default the current one)."""
        if context is None:
            context = contextvars.copy_context()
        if self._state != 0:
            self._loop.call_soon(fn, self, context=context)
        elif self._callback0 is None and not self._callbacks:
            self._callback0 = fn
            self._context0 = context
        elif self._callbacks is None:
            self._callbacks = [(fn, context)]
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], Any]) -> int:
        """Remove every registration of ``fn``; how many there were."""
        removed = 0
        if self._callback0 is not None and self._callback0 == fn:
            self._callback0 = self._context0 = None
            removed = 1
        if self._callbacks:
            kept = [entry for entry in self._callbacks if entry[0] != fn]
            removed += len(self._callbacks) - len(kept)
            self._callbacks = kept
        return removed

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the pending call (its reply is then read and discarded);
        False if it is done already."""
        if self._state != 0:
            return False
        self._log_traceback = False
        self._state = 1
        self._cancel_message = msg
        self._schedule()
        return True

    @cython.ccall  # type: ignore[untyped-decorator]  # cpdef: C calls within
    def set_result(self, result: Any) -> None:
        """Finish the call with ``result`` (InvalidStateError if done)."""
        if self._state != 0:
            raise asyncio.InvalidStateError("%r is done already" % (self,))
        self._result = result
        self._state = 2
        self._schedule()

    def set_exception(self, exception: Any) -> None:
        """Finish the call with ``exception`` (a class is instantiated)."""
        if self._state != 0:
            raise asyncio.InvalidStateError("%r is done already" % (self,))
        if isinstance(exception, type):
            exception = exception()
        if type(exception) is StopIteration:
            raise TypeError("StopIteration interacts badly with generators "
                            "and cannot be raised into a Future")
        self._exception = exception
        self._exception_tb = exception.__traceback__
        self._state = 2
        self._log_traceback = True
        self._schedule()

    @cython.cfunc  # type: ignore[untyped-decorator]  # cdef: a C method
    def _schedule(self) -> None:
        fn = self._callback0
        context = self._context0
        more = self._callbacks
        if fn is None and not more:
            return
        self._callback0 = self._context0 = self._callbacks = None
        window: Window = self._window
        if self._loop is window.loop:
            window.defer(self, fn, context, more)
            return
        if fn is not None:                     # the connection moved to another loop
            self._loop.call_soon(fn, self, context=context)
        if more:
            for fn, context in more:
                self._loop.call_soon(fn, self, context=context)

    def _make_cancelled_error(self) -> BaseException:
        if self._cancel_message is None:
            return asyncio.CancelledError()
        return asyncio.CancelledError(self._cancel_message)

    # -- the coroutine and iterator protocols (await, yield from, Tasks) -------------
    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        """Yield itself until done, then stop with its result (or raise)."""
        if self._state == 0:
            self._asyncio_future_blocking = True
            return self
        raise StopIteration(self.result())

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Raise the exception thrown in (the driving Task's cancellation
        cancels the call; a job it reserved already is abandoned)."""
        call_throw(self, self._window, typ, val, tb)

    def close(self) -> None:
        """Nobody will wait for the result: as a cancellation."""
        call_abandoned(self, self._window)

    def __del__(self) -> None:
        if self._log_traceback and self._state == 2:
            self._loop.call_exception_handler({
                "message": "Call exception was never retrieved",
                "exception": self._exception, "future": self})


collections.abc.Coroutine.register(Call)


class FutureCall(asyncio.Future):  # type: ignore[type-arg]
    """The pure-Python core's ``Call``: the same future and coroutine, an
    ``asyncio.Future`` (in C) with the coroutine's methods added, cheaper
    for interpreted code than ``Call``'s future methods written in Python.
    Its done callbacks are scheduled one ``loop.call_soon`` each."""

    __slots__ = ("_window",)
    _window: "Window"

    def send(self, value: Any) -> Any:
        """Yield itself until done, then stop with its result (or raise)."""
        if self.done():
            raise StopIteration(self.result())
        self._asyncio_future_blocking = True
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """As ``Call.throw``."""
        call_throw(self, self._window, typ, val, tb)

    def close(self) -> None:
        """As ``Call.close``."""
        call_abandoned(self, self._window)


collections.abc.Coroutine.register(FutureCall)


@cython.cfunc  # type: ignore[untyped-decorator]  # cdef: a C function
def call_throw(call: Any, window: Window, typ: Any, val: Any, tb: Any) -> None:
    """Raise the exception thrown into ``call``; a cancellation abandons it."""
    exc = typ if isinstance(typ, BaseException) else typ(*(() if val is None else (val,)))
    if isinstance(exc, asyncio.CancelledError):
        call_abandoned(call, window)
    raise exc.with_traceback(tb) if tb is not None else exc


@cython.cfunc  # type: ignore[untyped-decorator]  # cdef: a C function
def call_abandoned(call: Any, window: Window) -> None:
    """Nobody waits for ``call`` any more: cancelled if pending, else a
    result it has goes to ``window.abandon``."""
    if not call.done():
        call.cancel()
    elif not call.cancelled() and call.exception() is None:
        window.abandon(call.result())


@cython.cfunc  # type: ignore[untyped-decorator]  # cdef: a C function
def new_call(window: Window) -> Any:
    """A pending ``Call`` on ``window`` (interpreted: a ``FutureCall``)."""
    if cython.compiled:
        call: Call = Call.__new__(Call)
        call._loop = window.loop          # the other fields start as 0, False or None
        call._window = window
        return call
    else:
        fut = FutureCall(loop=window.loop)
        fut._window = window
        return fut
