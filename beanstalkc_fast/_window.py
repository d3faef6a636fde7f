"""The windows of both cores, written once: the blocking cores' pipeline
driver (``run_window``) and the asyncio connection's window (``Window``).

The pure-Python core imports this module; the Cython core compiles this very
source into itself (``include`` in ``src/_protocol.pyx``), where the
``cython.*`` declarations make C integers of the locals and a C type with
C fields of ``Window``. Python never evaluates the annotations of local
variables, and without Cython installed the few ``cython`` names evaluated
here are the stand-ins below, so the twin runs as plain Python.
"""

import collections
from threading import get_ident
from typing import Any, Callable, Iterable, List, Optional

try:
    import cython  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - interpreted without Cython installed
    class cython:  # type: ignore[no-redef]
        """What this module evaluates of Cython's names, as plain Python."""
        compiled = False
        Py_ssize_t = int
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
    _call = cython.declare(object)
    _arm = cython.declare(object)
    _reserved = cython.declare(object)
    _limit = cython.declare(cython.Py_ssize_t)
    _max_bytes = cython.declare(cython.Py_ssize_t)

    def __init__(self, call: Any, arm: Callable[[], None], limit: int, max_bytes: int,
                 reserved: int) -> None:
        """``call(loop=...)`` makes a call's result future; ``arm()`` sets
        ``timer`` from ``progress`` and ``timeout``; at most ``limit``
        commands and ``max_bytes`` bytes (or one larger command) are
        unanswered; ``reserved`` is the kind of a reserve."""
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
        self._call = call
        self._arm = arm
        self._limit = limit
        self._max_bytes = max_bytes
        self._reserved = reserved

    def run(self, conn: Any, cmd: Any, data: bytes, arg: Any = None) -> Any:
        """The awaitable of a call of ``cmd`` (sent as ``data``) on ``conn``.

        In the thread of the connection's loop and healthy, with room and
        nobody waiting (and not a command ``auto_reconnect`` would send
        again), the command is written now (see ``enqueue``) and its result
        future returned: a ``call`` (a future that is also a coroutine:
        gather needs no Task per call), or for a reserve, and idle (the
        sequential case, where a plain future is cheaper for the awaiting
        Task), the coroutine ``conn._wait`` on a plain future. Without room
        (and without auto_reconnect), a ``call`` too, queued for ``wake`` to
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
                fut = self.loop.create_future() if plain else self._call(loop=self.loop)
                self.enqueue((fut, cmd, arg, size), data, False)
                return conn._wait(fut) if plain else fut
            if not reserve and not self.auto_reconnect:
                call = self._call(loop=self.loop)     # no room: written by wake in its turn
                self.waiters.append((call, size, cmd, arg, data))
                return call
        return conn._send(cmd, data, arg)

    @cython.ccall  # type: ignore[untyped-decorator]  # cpdef: C calls within
    def has_room(self, size: cython.Py_ssize_t) -> cython.bint:
        """Whether a command of ``size`` bytes may be written now."""
        return self.count < self._limit and (
            self.count == 0 or self.nbytes + size <= self._max_bytes)

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
