"""The sans-IO Reader of both cores against each other and against the
blocking Core: byte streams split at arbitrary points give the same replies
and the same exceptions."""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import load_core

from beanstalkc_fast.errors import SocketError, UnexpectedResponse

NAME = st.text(alphabet="abcXYZ019-+/;.$_()", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-"))
BODY = st.binary(max_size=300)
UINT = st.integers(0, 2 ** 64 - 1)


def _with_body(status, jid, body):
    head = b"%s %d %d" % (status, jid, len(body)) if jid is not None else \
        b"%s %d" % (status, len(body))
    return head + b"\r\n" + body + b"\r\n"


GOOD = st.one_of(
    st.builds(lambda n: b"INSERTED %d\r\n" % n, UINT),
    st.builds(lambda j, b: _with_body(b"RESERVED", j, b), UINT, BODY),
    st.builds(lambda j, b: _with_body(b"FOUND", j, b), UINT, BODY),
    st.builds(lambda b: _with_body(b"OK", None, b), BODY),
    st.sampled_from([b"DELETED\r\n", b"TIMED_OUT\r\n", b"NOT_FOUND\r\n", b"KICKED\r\n",
                     b"BURIED\r\n", b"RELEASED\r\n", b"TOUCHED\r\n", b"NOT_IGNORED\r\n",
                     b"PAUSED\r\n", b"DEADLINE_SOON\r\n", b"JOB_TOO_BIG\r\n"]),
    st.builds(lambda n: b"USING %s\r\n" % n.encode(), NAME),
    st.builds(lambda n: b"WATCHING %d\r\n" % n, st.integers(0, 2 ** 32)),
    st.builds(lambda n: b"KICKED %d\r\n" % n, UINT),
)
BAD = st.one_of(
    st.binary(max_size=40).map(lambda b: b + b"\r\n"),
    st.sampled_from([b"INSERTED\r\n", b"INSERTED 1 2\r\n", b"INSERTED -1\r\n",
                     b"INSERTED 18446744073709551616\r\n", b"DELETED 1\r\n",
                     b"RESERVED 1 3\r\nabcd\r\n", b"OK 2\r\nab\n\n", b"INSERTED 1\n",
                     b"\r\n", b"USING -x\r\n", b"USING a b\r\n", b"OK x\r\n",
                     b"OK 99999999999\r\n", b"FOUND 1\r\n"]),
)
LONG = st.integers(1000, 1100).map(lambda n: b"INSERTED " + b"1" * n + b"\r\n")


def run_reader(core, chunks):
    """Every reply of ``chunks`` fed in order, then ("need more",) or the exception."""
    reader = core.Reader(max_body=1 << 20)
    out = []
    try:
        for chunk in chunks:
            view = reader.get_buffer(-1)
            assert len(view) > 0
            pos = 0
            while pos < len(chunk):          # the chunk may exceed the free space
                view = reader.get_buffer(-1)
                n = min(len(view), len(chunk) - pos)
                view[:n] = chunk[pos:pos + n]
                view.release()
                reader.buffer_updated(n)
                pos += n
                while True:
                    reply = reader.next_reply()
                    if reply is None:
                        break
                    out.append(reply)
    except (UnexpectedResponse, ValueError) as exc:
        out.append((type(exc), str(exc)))
        return out
    out.append(("need more",))
    return out


class ChunkSocket:
    """Hands out ``chunks`` to recv_into, one chunk (or the part that fits) per call."""

    def __init__(self, chunks):
        self.chunks = [c for c in chunks if c]

    def settimeout(self, t):
        pass

    def setsockopt(self, *args):
        pass

    def sendall(self, data, flags=0):
        pass

    def send(self, data, flags=0):
        return len(data)

    def close(self):
        pass

    def recv_into(self, view):
        if not self.chunks:
            return 0
        chunk = self.chunks[0]
        n = min(len(chunk), len(view))
        view[:n] = chunk[:n]
        if n == len(chunk):
            self.chunks.pop(0)
        else:
            self.chunks[0] = chunk[n:]
        return n


def run_core(core, chunks):
    c = core.Core(ChunkSocket(chunks), None, 1 << 20)
    out = []
    while True:
        try:
            out.append(c.request(b"x\r\n"))
        except SocketError:
            out.append(("need more",))
            return out
        except (UnexpectedResponse, ValueError) as exc:
            out.append((type(exc), str(exc)))
            return out


@st.composite
def split_stream(draw, parts):
    data = b"".join(draw(st.lists(parts, max_size=8)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    chunks, last = [], 0
    for cut in cuts + [len(data)]:
        chunks.append(data[last:cut])
        last = cut
    return chunks


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split_stream(st.one_of(GOOD, GOOD, GOOD, BAD)))
def test_readers_and_cores_agree(both_cores, chunks):
    py, cy = both_cores
    expected = run_reader(py, chunks)
    assert run_reader(cy, chunks) == expected
    assert run_core(py, chunks) == expected
    assert run_core(cy, chunks) == expected


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split_stream(st.one_of(GOOD, LONG)))
def test_long_lines_refused_whatever_the_split(both_cores, chunks):
    """A line over MAX_LINE bytes is refused by the Reader however it arrives
    (the blocking Core refuses it at least when it arrives in pieces)."""
    py, cy = both_cores
    expected = run_reader(py, chunks)
    assert run_reader(cy, chunks) == expected
    long_line = any(len(line) > 1000 for line in b"".join(chunks).split(b"\n"))
    assert (expected[-1][0] is UnexpectedResponse) == long_line
    for core in (py, cy):
        got = run_core(core, chunks)
        assert got[:-1] == expected[:len(got) - 1]
        assert got[-1][0] in (UnexpectedResponse, "need more")


@pytest.mark.parametrize("name", ["python", "cython"])
def test_reader_buffer_grows_for_a_body_and_shrinks_after(name):
    core = load_core(name)
    reader = core.Reader()
    body = bytes(range(256)) * 1200                      # 300 KiB
    data = b"RESERVED 7 %d\r\n" % len(body) + body + b"\r\nDELETED\r\n"
    sizes, pos, replies = [], 0, []
    while pos < len(data):
        view = reader.get_buffer(-1)
        sizes.append(len(view))
        n = min(len(view), len(data) - pos, 50000)
        view[:n] = data[pos:pos + n]
        view.release()
        reader.buffer_updated(n)
        pos += n
        reply = reader.next_reply()
        while reply is not None:
            replies.append(reply)
            reply = reader.next_reply()
    assert replies == [("RESERVED", 7, body), ("DELETED", None, None)]
    assert max(sizes) >= 50000
    assert len(reader.get_buffer(-1)) <= 1 << 16        # given back once empty


@pytest.mark.parametrize("name", ["python", "cython"])
def test_reader_refuses_body_over_max_body(name):
    reader = load_core(name).Reader(max_body=10)
    reader.feed(b"OK 11\r\n")
    with pytest.raises(UnexpectedResponse, match="exceeds 10"):
        reader.next_reply()


@pytest.mark.parametrize("name", ["python", "cython"])
def test_buffer_updated_checks_the_count(name):
    reader = load_core(name).Reader()
    room = len(reader.get_buffer(-1))
    with pytest.raises(ValueError):
        reader.buffer_updated(room + 1)
    with pytest.raises(ValueError):
        reader.buffer_updated(-1)


# -- Reader.collect: a uniform batch's replies settled in one call -----------------

class FakeConn:
    """What collect reads from a connection: ``_job_type`` and ``encoding``."""

    def __init__(self, job_type, encoding="utf-8"):
        self._job_type = job_type
        self.encoding = encoding


def _job_types(core):
    """A JobBase subclass the core builds itself, and one with its own __init__."""
    class Plain(core.JobBase):
        pass

    class Custom(core.JobBase):
        def __init__(self, conn, jid, body, reserved=True, encoding=None):
            super().__init__(conn, jid, body, reserved, encoding)
            self.custom = True

    return Plain, Custom


def _settled(x):
    """A comparable form of a collected result (jobs by their attributes)."""
    if hasattr(x, "jid"):
        return ("job", type(x).__name__, x.conn, x.jid, x.raw_body, x.reserved,
                getattr(x, "custom", False))
    return x


def _per_item(reply, ok, kind, conn):
    """What the per-item path settles ``reply`` to, or None when it does not."""
    status, value, body = reply
    if status != ok or kind > 3:
        return None
    if kind == 0:
        return (value,)
    if kind == 1:
        return (None,)
    return (conn._job_type(conn, value, body, kind == 2, conn.encoding),)


def run_collect(core, chunks, ok, kind, n, conn, step):
    """Feed ``chunks``; after each, collect (at most ``step`` per call) until
    ``n`` are settled, recording every reply handed back."""
    reader = core.Reader(max_body=1 << 20)
    results, trace, taken = [], [], 0
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while taken < n:
                got, other = reader.collect(results, min(step, n - taken), ok, kind, conn)
                assert len(results) == taken + got
                taken += got
                if other is not None:
                    trace.append(("other", taken, other))
                elif got < step:
                    break
    except (UnexpectedResponse, ValueError) as exc:   # malformed (ValueError: a bad name)
        trace.append((type(exc), str(exc)))
    return [_settled(r) for r in results], trace, reader.pending()


def expect_collect(core, chunks, ok, kind, n, conn):
    """The same through next_reply and the per-item rules."""
    reader = core.Reader(max_body=1 << 20)
    results, trace = [], []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while len(results) < n:
                reply = reader.next_reply()
                if reply is None:
                    break
                settled = _per_item(reply, ok, kind, conn)
                if settled is None:
                    trace.append(("other", len(results), reply))
                else:
                    results.append(settled[0])
    except (UnexpectedResponse, ValueError) as exc:   # malformed (ValueError: a bad name)
        trace.append((type(exc), str(exc)))
    return [_settled(r) for r in results], trace, reader.pending()


KINDS = st.sampled_from([("INSERTED", 0), ("DELETED", 1), ("RESERVED", 2), ("FOUND", 3),
                         ("OK", 5), ("TIMED_OUT", 1)])


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split_stream(st.one_of(GOOD, GOOD, GOOD, GOOD, BAD)), KINDS, st.integers(0, 10),
       st.integers(1, 4), st.booleans(), st.sampled_from(["utf-8", None]))
def test_collect_settles_as_the_per_item_path(both_cores, chunks, ok_kind, n, step,
                                              custom, encoding):
    """Split streams, mixed statuses, malformed replies: collect settles the
    same results, hands back the same other replies, and stops where the
    per-item path stops, on both cores."""
    ok, kind = ok_kind
    outcomes = []
    for core in both_cores:
        conn = FakeConn(_job_types(core)[custom], encoding)
        expected = expect_collect(core, chunks, ok, kind, n, conn)
        got = run_collect(core, chunks, ok, kind, n, conn, step)
        assert got == expected
        outcomes.append([[x[:2] + x[3:] if isinstance(x, tuple) and x[0] == "job" else x
                          for x in got[0]], got[1], got[2]])
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("name", ["python", "cython"])
def test_collect_stops_at_a_refusal_and_builds_jobs(name):
    core = load_core(name)
    plain, custom = _job_types(core)
    reader = core.Reader()
    reader.feed(b"RESERVED 1 2\r\nab\r\nRESERVED 2 0\r\n\r\nTIMED_OUT\r\n"
                b"RESERVED 3 1\r\n\xff\r\n")
    results = ["earlier"]
    conn = FakeConn(plain)
    assert reader.collect(results, 5, "RESERVED", 2, conn) == (2, ("TIMED_OUT", None, None))
    assert reader.collect(results, 5, "RESERVED", 2, FakeConn(custom, None)) == (1, None)
    assert results[0] == "earlier"
    jobs = results[1:]
    assert [type(j) for j in jobs] == [plain, plain, custom]
    assert [(j.jid, j.raw_body, j.reserved) for j in jobs] == [
        (1, b"ab", True), (2, b"", True), (3, b"\xff", True)]
    assert jobs[0].conn is conn and jobs[0].body == "ab" and jobs[2].body == b"\xff"
    assert jobs[2].custom is True
    assert reader.pending() == 0
    # n bounds what is taken; the rest stays for the next call
    reader.feed(b"DELETED\r\nDELETED\r\n")
    assert reader.collect(results, 1, "DELETED", 1, conn) == (1, None)
    assert reader.pending() == len(b"DELETED\r\n")
    assert reader.collect(results, 0, "DELETED", 1, conn) == (0, None)
    # a kind it does not settle: the next reply is handed back as is
    assert reader.collect(results, 3, "DELETED", 5, conn) == (0, ("DELETED", None, None))
    reader.feed(b"INSERTED 7\r\nBOGUS\r\n")
    with pytest.raises(UnexpectedResponse):
        reader.collect(results, 3, "INSERTED", 0, conn)
    assert results[-1] == 7


class FakeFuture:
    """What settle needs of a future: done() and set_result()."""

    def __init__(self, done):
        self._done = done
        self.value = "unset"

    def done(self):
        return self._done

    def set_result(self, value):
        assert not self._done
        self._done, self.value = True, value


class NotSingle:
    """An entry that is not a single command's tuple (a batch's chunk)."""


def _entries(draw_specs):
    from beanstalkc_fast import commands
    cmds = {"put": commands.PUT, "delete": commands.DELETE, "reserve": commands.RESERVE,
            "use": commands.USE, "stats": commands.STATS}
    out = []
    for spec, done, size in draw_specs:
        if spec == "chunk":
            out.append(NotSingle())
        elif spec == "housekeeping":
            out.append((None, commands.STATS_JOB_DICT, print, size))
        else:
            out.append((FakeFuture(done), cmds[spec], None, size))
    return out


def _settle_trace(core, chunks, specs, drain):
    """Feed ``chunks`` to a reader with pending entries made of ``specs``;
    after each, ``drain(reader, pending, trace)`` records what it settles.
    (trace, entries left, bytes left)."""
    import collections
    reader = core.Reader(max_body=1 << 20)
    pending = collections.deque(_entries(specs))
    trace = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            drain(reader, pending, trace)
    except (UnexpectedResponse, ValueError) as exc:   # malformed (ValueError: a bad name)
        trace.append((type(exc), str(exc)))
    return trace, len(pending), reader.pending()


def _expected_settle(core, chunks, specs):
    """settle's rules, through next_reply: (popped, bytes, handed back) per call."""
    def drain(reader, pending, trace):
        taken = nbytes = 0
        while True:
            reply = reader.next_reply()
            if reply is None:
                break
            head = pending[0] if pending else None
            if (head.__class__ is not tuple or head[0] is None or head[1][1] > 1
                    or reply[0] != head[1][0] or head[0].done()):
                trace.append((taken, nbytes, reply))
                taken = nbytes = 0
                continue
            pending.popleft()
            head[0].set_result(reply[1] if head[1][1] == 0 else None)
            taken, nbytes = taken + 1, nbytes + head[3]
        trace.append((taken, nbytes, None))
    return _settle_trace(core, chunks, specs, drain)


def _run_settle(core, chunks, specs):
    def drain(reader, pending, trace):
        while True:
            taken, nbytes, reply = reader.settle(pending)
            trace.append((taken, nbytes, reply))
            if reply is None:
                break
    return _settle_trace(core, chunks, specs, drain)


SPECS = st.lists(st.tuples(
    st.sampled_from(["put", "put", "delete", "reserve", "use", "stats", "chunk",
                     "housekeeping"]),
    st.sampled_from([False, False, False, True]),          # its future done (cancelled)
    st.integers(1, 100)), max_size=10)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split_stream(st.one_of(GOOD, GOOD, GOOD, GOOD, BAD)), SPECS)
def test_settle_pops_what_the_per_reply_rules_pop(both_cores, chunks, specs):
    """Split streams, mixed entries (done futures, housekeeping, chunks,
    kinds settle leaves alone): settle pops the same entries, sets the same
    results and hands back the same replies as the per-reply rules, on both
    cores."""
    outcomes = []
    for core in both_cores:
        got = _run_settle(core, chunks, specs)
        assert got == _expected_settle(core, chunks, specs)
        outcomes.append(got)
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("name", ["python", "cython"])
def test_settle_sets_values_and_stops_at_the_first_other_reply(name):
    import collections
    from beanstalkc_fast import commands
    core = load_core(name)
    reader = core.Reader()
    futs = [FakeFuture(False) for _ in range(4)]
    pending = collections.deque([(futs[0], commands.PUT, None, 10),
                                 (futs[1], commands.DELETE, None, 20),
                                 (futs[2], commands.DELETE, None, 5),
                                 (futs[3], commands.PUT, None, 7)])
    reader.feed(b"INSERTED 5\r\nDELETED\r\nNOT_FOUND\r\nINSERTED 6\r\n")
    assert reader.settle(pending) == (2, 30, ("NOT_FOUND", None, None))
    assert [f.value for f in futs] == [5, None, "unset", "unset"]
    assert len(pending) == 2                  # the refused one is left to the caller
    pending.popleft()
    assert reader.settle(pending) == (1, 7, None)
    assert futs[3].value == 6 and not pending and reader.pending() == 0
    reader.feed(b"INSERTED 1\r\n")            # nobody waiting: handed back
    assert reader.settle(pending) == (0, 0, ("INSERTED", 1, None))
