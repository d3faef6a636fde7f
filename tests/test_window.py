"""The windows of ``_window.py``: the blocking pipeline driver ``run_window``
and the asyncio connection's ``Window``, one source imported by the twin and
compiled into the Cython core. Both builds are driven here without IO,
against a simulated server or loop, and must do exactly the same."""

import contextvars
import inspect
import threading

import pytest
from hypothesis import given, settings, strategies as st

from beanstalkc_fast import _window, commands


def _builds(name):
    """pytest params: ``name`` from the interpreted ``_window`` and, when it is
    built, from the Cython core compiled from the same source."""
    builds = [pytest.param(getattr(_window, name), id="interpreted")]
    try:
        from beanstalkc_fast import _protocol
    except ImportError:
        pass
    else:
        builds.append(pytest.param(getattr(_protocol, name), id="compiled"))
    return builds


class Server:
    """Answers every command once it was sent; records the writes and the
    most commands and bytes ever written but unanswered."""

    def __init__(self, buffered_per_read):
        self.writes = []
        self.unanswered = []          # sizes of the commands sent, not yet answered
        self.most = self.most_bytes = 0
        self.buffered_per_read = buffered_per_read

    def send(self, data):
        parts = data.split(b"\n")[:-1]
        self.writes.append(len(parts))
        self.unanswered.extend(len(p) + 1 for p in parts)
        self.most = max(self.most, len(self.unanswered))
        self.most_bytes = max(self.most_bytes, sum(self.unanswered))

    def read_reply(self, due=None):
        assert self.unanswered, "read a reply that was never asked for"
        assert due in (None, len(self.unanswered))
        return ("OK", self.unanswered.pop(0), None)

    def read_buffered(self, results, most):
        count = min(most, self.buffered_per_read, len(self.unanswered))
        for _ in range(count):
            results.append(self.read_reply())
        return count


def _commands(sizes, fail_at=None):
    for i, size in enumerate(sizes):
        if i == fail_at:
            raise KeyError("item %d" % i)
        yield b"x" * (size - 1) + b"\n"


@pytest.mark.parametrize("run_window", _builds("run_window"))
@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), max_size=200), window=st.integers(1, 40),
       max_bytes=st.integers(1, 2000), buffered=st.integers(0, 50),
       fail_at=st.none() | st.integers(0, 200))
def test_window_limits_and_order(run_window, sizes, window, max_bytes, buffered, fail_at):
    server = Server(buffered)
    results = []
    deferred = run_window(server.send, server.read_reply, server.read_buffered,
                          _commands(sizes, fail_at), results, window, max_bytes)
    stopped = fail_at is not None and fail_at < len(sizes)
    n = fail_at if stopped else len(sizes)
    if stopped:
        assert isinstance(deferred, KeyError)
        # what was collected but not yet written when the iterator failed is dropped
        assert len(results) <= n
    else:
        assert deferred is None
        assert [r[1] for r in results] == sizes
    assert [r[1] for r in results] == sizes[:len(results)]
    assert not server.unanswered                        # every written command answered
    assert server.most <= window
    assert server.most_bytes <= max(max_bytes, max(sizes, default=0))


@pytest.mark.parametrize("run_window", _builds("run_window"))
def test_window_is_topped_up_at_half(run_window):
    server = Server(buffered_per_read=1000)
    results = []
    assert run_window(server.send, server.read_reply, server.read_buffered,
                      _commands([10] * 100), results, 8, 1 << 20) is None
    assert len(results) == 100
    assert server.writes[0] == 8 and all(w >= 4 for w in server.writes[:-1])


def test_the_cython_core_runs_this_very_source():
    _protocol = pytest.importorskip("beanstalkc_fast._protocol")
    assert _protocol.run_window is not _window.run_window
    # compared cleaned: Python 3.13 strips a docstring's indentation when compiling
    assert inspect.cleandoc(_protocol.run_window.__doc__) == \
        inspect.cleandoc(_window.run_window.__doc__)
    assert _protocol.Window is not _window.Window
    assert inspect.cleandoc(_protocol.Window.run.__doc__) == \
        inspect.cleandoc(_window.Window.run.__doc__)
    with pytest.raises(AttributeError):  # a C type: its fields are C fields, no __dict__
        _protocol.Window(None, None, 1, 1, 2).anything = 1


# -- the asyncio connection's write side, _window.Window ------------------------------

class _Fut:
    """A plain future as far as Window uses one (made by the loop)."""

    def __init__(self, kind):
        self.kind = kind
        self._cancelled = False

    def done(self):
        return self._cancelled

    def cancelled(self):
        return self._cancelled

    def cancel(self):
        self._cancelled = True


class _Loop:
    def __init__(self):
        self.soon = []
        self.now = 0.0

    def time(self):
        self.now += 1.0
        return self.now

    def call_soon(self, callback):
        self.soon.append(callback)

    def create_future(self):
        return _Fut("plain")

    def get_debug(self):                 # asyncio.Future(loop=...) asks
        return False


class _Transport:
    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(data)


class _Conn:
    """The connection's side of Window.run: a coroutine it returns is
    recorded as a tuple."""

    def _wait(self, fut):
        return ("wait", fut)

    def _send(self, cmd, data, arg):
        return ("send", data)


_COMMANDS = [commands.PUT, commands.DELETE, commands.RESERVE_TIMEOUT, commands.STATS]
_LIMIT, _MAX_BYTES = 6, 120
_OTHER = st.one_of(
    st.tuples(st.just("answer"), st.integers(1, 4)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("cancel"), st.integers(0, 10)),
    st.tuples(st.just("reset")),                     # a break, then a new connection
    st.tuples(st.just("broken"), st.integers(0, len(_COMMANDS) - 1)),   # a call meanwhile
    st.tuples(st.just("elsewhere"), st.integers(0, len(_COMMANDS) - 1)),  # from another thread
    st.tuples(st.just("reconnecting"), st.booleans()))


@st.composite
def _op(draw):
    """Mostly calls (the window fills and waiters queue), small or large
    (the count or the bytes bind), else one of _OTHER."""
    if draw(st.integers(0, 9)) < 6:
        return ("call", draw(st.integers(0, len(_COMMANDS) - 1)),
                draw(st.integers(2, 12) | st.integers(2, 60)))
    return draw(_OTHER)


_OPS = st.lists(_op(), min_size=20, max_size=80)


def _drive(window_type, ops):
    """Run ``ops`` on a Window of ``window_type`` the way asyncio.Connection
    does; the trace of what it returned and wrote, checking the window's
    invariants after each step."""
    loop, transport, conn = _Loop(), _Transport(), _Conn()
    arms = []
    w = window_type(lambda result: None, lambda: arms.append(w.progress),
                    _LIMIT, _MAX_BYTES, commands.RESERVED)
    w.loop, w.thread, w.transport = loop, threading.get_ident(), transport
    w.timeout, w.broken = 5.0, None
    written, entries, trace = [], [], []
    for n, op in enumerate(ops):
        if op[0] in ("call", "broken", "elsewhere"):
            cmd, size = _COMMANDS[op[1]], op[2] if op[0] == "call" else 5
            data = b"%d" % n + b"x" * (size - 1)
            if op[0] == "broken":
                w.broken = "broken"
            elif op[0] == "elsewhere":
                w.thread = -1
            got = w.run(conn, cmd, data, None)
            w.broken, w.thread = None, threading.get_ident()
            if op[0] != "call":
                assert got == ("send", data)
            if isinstance(got, tuple):
                trace.append((got[0], got[1].kind if got[0] == "wait" else got[1]))
            else:
                trace.append(("call", got in [x[0] for x in w.waiters]))
        elif op[0] == "answer":          # as _received: replies pop the head entries
            for _ in range(min(op[1], len(w.pending))):
                w.pending.popleft()
                w.count -= 1
                w.nbytes -= entries.pop(0)
            if w.waiters and (not w.pending or w.count <= _LIMIT // 2):
                w.wake()
            w.timer = None if not w.pending else w.timer
        elif op[0] == "flush":
            for callback in loop.soon:
                callback()
            loop.soon.clear()
        elif op[0] == "cancel":
            if op[1] < len(w.waiters):
                w.waiters[op[1]][0].cancel()
        elif op[0] == "reset":           # as _break, then connect()
            w.pending.clear()
            w.waiters.clear()
            w.out.clear()
            w.count = w.nbytes = 0
            entries.clear()
            w.timer = None
        else:
            w.auto_reconnect = op[1]
        # everything appended to pending was written (or queued) in that order
        new = [e[3] for e in list(w.pending)[len(entries):]]
        entries.extend(new)
        assert w.count == len(w.pending) == len(entries)
        assert w.nbytes == sum(entries)
        assert w.count <= _LIMIT and (w.count <= 1 or w.nbytes <= _MAX_BYTES)
        assert not any(e[0].cancelled() for e in w.pending)   # cancelled waiting: never sent
        if w.timer is None and w.pending and arms:
            w.timer = "armed"
        trace.append((w.count, w.nbytes, len(w.waiters), tuple(transport.writes),
                      tuple(w.out), len(arms)))
        written = transport.writes
    return trace, written


@settings(max_examples=200, deadline=None)
@given(ops=_OPS)
def test_asyncio_window_builds_agree(ops):
    """Both builds of Window (the twin's, and the Cython core's compiled
    from the same source) return and write exactly the same."""
    traces = [_drive(p.values[0], ops) for p in _builds("Window")]
    assert all(t == traces[0] for t in traces[1:])


@pytest.mark.parametrize("window_type", _builds("Window"))
@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), max_size=60), start=st.integers(0, 12),
       limit=st.integers(1, 20), max_bytes=st.integers(1, 2000),
       fail_at=st.none() | st.integers(0, 60))
def test_asyncio_window_takes_what_fits(window_type, sizes, start, limit, max_bytes, fail_at):
    w = window_type(None, None, limit, max_bytes, 2)
    w.count, w.nbytes = start, start * 10
    out, taken = [], []
    items = _commands(sizes, fail_at)
    try:
        first = w.take(items, out, taken)
    except KeyError:
        first = "raised"
    fits = []                              # what a one-by-one has_room loop takes
    count, nbytes = start, start * 10
    for i, size in enumerate(sizes):
        if i == fail_at or count >= limit or nbytes + size > max_bytes:
            break
        fits.append(size)
        count, nbytes = count + 1, nbytes + size
    assert taken == fits and [len(d) for d in out] == fits
    assert (w.count, w.nbytes) == (count, nbytes)   # counted in, even when items raised
    stop = len(fits)
    if fail_at is not None and fail_at == stop and stop < len(sizes):
        assert first == "raised"
    elif stop < len(sizes):
        assert first == b"x" * (sizes[stop] - 1) + b"\n"   # the next chunk starts with it
    else:
        assert first is None


@pytest.mark.parametrize("window_type", _builds("Window"))
def test_asyncio_window_decides_each_call(window_type):
    ops = [("call", 0, 11),              # 0 idle: written at once, a plain future and _wait
           ("call", 0, 11),              # 1 others pending: a call, queued for one write
           ("call", 2, 11),              # 2 a reserve: a plain future and _wait, queued
           ("flush",)] + [("call", 0, 31)] * 4 + [  # 4-7: 120 bytes fit 5 commands
           ("answer", 4),                # 8: half free: the waiters are written, in order
           ("elsewhere", 0),             # 9: from another thread: _send
           ("broken", 0),                # 10: on a broken connection: _send
           ("reconnecting", True), ("call", 3, 11)]  # 12: safe to repeat: _send
    trace, written = _drive(window_type, ops)
    calls = [t for t in trace if isinstance(t[0], str)]
    assert calls[:3] == [("wait", "plain"), ("call", False), ("wait", "plain")]
    assert calls[3:7] == [("call", False)] * 2 + [("call", True)] * 2   # True: waits for room
    assert calls[7:] == [("send", b"9xxxx"), ("send", b"10xxxx"), ("send", b"12" + b"x" * 10)]
    assert written == [b"0" + b"x" * 10, b"1" + b"x" * 10 + b"2" + b"x" * 10]
    out = trace[-1][4]                   # this iteration's one write, in call order
    assert out == (b"4" + b"x" * 30, b"5" + b"x" * 30, b"6" + b"x" * 30 + b"7" + b"x" * 30)


@pytest.mark.parametrize("window_type", _builds("Window"))
def test_deferred_callbacks_survive_a_raising_one_and_an_interrupt(window_type):
    """Window.defer runs the callbacks of calls settled together from one
    call_soon, in order and each in its context; an exception goes to the
    loop's handler and the rest run; after a KeyboardInterrupt (raised out
    of the loop) the rest run in a later call_soon."""
    loop = _Loop()
    reported = []
    loop.call_exception_handler = reported.append
    w = window_type(None, None, 4, 100, commands.RESERVED)
    w.loop = loop
    var = contextvars.ContextVar("var")
    ran = []

    def callback(call):
        ran.append((var.get(), call))
        if var.get() == "b":
            raise ValueError("b")
        if var.get() == "c":
            raise KeyboardInterrupt

    contexts = {}
    for name in "abcde":
        contexts[name] = contextvars.copy_context()
        contexts[name].run(var.set, name)
    for name in "abc":
        w.defer(name.upper(), callback, contexts[name], None)
    w.defer("D", callback, contexts["d"], [(callback, contexts["e"])])   # two callbacks
    assert len(loop.soon) == 1                          # one call_soon for them all
    with pytest.raises(KeyboardInterrupt):
        loop.soon.pop(0)()
    assert ran == [("a", "A"), ("b", "B"), ("c", "C")]
    assert [type(r["exception"]) for r in reported] == [ValueError]
    assert len(loop.soon) == 1
    loop.soon.pop(0)()
    assert ran[3:] == [("d", "D"), ("e", "D")] and not w.ready
