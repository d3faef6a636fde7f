"""The windowed pipeline driver, ``_window.run_window``: one source, imported
by the twin and compiled into the Cython core. Both builds are driven here
without IO, against a simulated server, and must do exactly the same."""

import inspect

import pytest
from hypothesis import given, settings, strategies as st

from beanstalkc_fast import _window


def _drivers():
    drivers = [pytest.param(_window.run_window, id="interpreted")]
    try:
        from beanstalkc_fast import _protocol
    except ImportError:
        pass
    else:
        drivers.append(pytest.param(_protocol.run_window, id="compiled"))
    return drivers


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


@pytest.mark.parametrize("run_window", _drivers())
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


@pytest.mark.parametrize("run_window", _drivers())
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
