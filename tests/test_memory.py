"""Memory, on both cores: long runs do not grow, and the cores keep no references.

Requirement: a long run (a million put/reserve/delete cycles, and a million
batch items) shows no growth of RSS or Python object counts beyond a small
bound; reference counts of objects passed into the extension are unchanged.

* The long runs (marked ``slow``) take their length from the environment
  variable ``BEANSTALKC_FAST_LONG_COUNT`` (default 20000, a few seconds each, so
  the default ``pytest`` run stays quick). The first tenth (at least 2000) is a
  warm-up; around the rest they compare, after ``gc.collect()``, the resident
  set size (Linux only, from /proc/self/statm), ``len(gc.get_objects())`` and
  ``sys.getallocatedblocks()`` against fixed bounds. A leak of one small object
  per cycle already exceeds them at the default count. Every run prints one
  ``[memory]`` line with the numbers (visible with ``-s``). The full count:

      BEANSTALKC_FAST_LONG_COUNT=1000000 python -m pytest -q -s -m slow tests/test_memory.py

  The error paths run count // 8 iterations of about twelve failing calls each.
* The reference-count tests are not slow: each object handed to a core (bodies
  of every type, tube names, job ids, the iterables and lists of the batch
  calls, the raw arguments of ``Core.request``/``Core.pipeline`` and of the
  module functions) has the same ``sys.getrefcount`` after 100 to 1000 rounds
  of use as before (the garbage collector off meanwhile, so that even a
  reference held by a cycle shows; on error paths, whose exceptions make
  cycles, after a collection), and what the cores return is owned by the
  caller alone.
"""

import collections
import gc
import os
import sys

import pytest

import beanstalkc_fast
from beanstalkc_fast import errors

from conftest import free_port, start_beanstalkd, stop_beanstalkd, unique_tube

LONG_COUNT = int(os.environ.get("BEANSTALKC_FAST_LONG_COUNT", "20000"))

# Growth allowed between the two measurements (the warm-up is not measured).
MAX_BLOCK_GROWTH = 1000          # sys.getallocatedblocks()
MAX_OBJECT_GROWTH = 250          # len(gc.get_objects()) after gc.collect()
MAX_RSS_GROWTH = 8 << 20         # bytes; 2 bodies in 7 are 8-12 KiB, so a leaked
                                 # body per cycle costs ~50 MB at 20000 cycles

MISSING_ID = 10 ** 15            # far beyond any id the test servers hand out
TINY_MAX_JOB = 1024              # -z of this module's own server
REFCOUNT_ROUNDS = 1000

BIG_BYTES = bytes(range(256)) * 32           # 8 KiB: beyond pymalloc, shows in RSS
BIG_TEXT = "Grüße, 世界! ☃ " * 600          # about 12 KiB of UTF-8
BODY_KINDS = 7


def make_body(i):
    """Body number ``i``: ASCII str, bytes, non-ASCII str, bytearray,
    memoryview, large bytes, large non-ASCII str in turn; all distinct."""
    kind = i % BODY_KINDS
    if kind == 0:
        return "ascii %d" % i
    if kind == 1:
        return b"bytes %d" % i
    if kind == 2:
        return "non-ascii ü€😀 %d" % i
    if kind == 3:
        return bytearray(b"bytearray %d" % i)
    if kind == 4:
        return memoryview(b"memoryview %d" % i)
    if kind == 5:
        return b"%d:" % i + BIG_BYTES
    return "%d:" % i + BIG_TEXT


def wire(body):
    """The bytes the server stores for ``body`` (connection encoding utf-8)."""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def check_job(job, jid, body, what):
    if job is None or job.jid != jid or job.raw_body != wire(body) or (
            isinstance(body, str) and job.body != body):
        raise AssertionError("%s: expected job %r with %r, got %r" % (
            what, jid, wire(body)[:40], job if job is None else (job.jid, job.raw_body[:40])))


# -- measuring ----------------------------------------------------------------------

try:
    PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    PAGE_SIZE = 4096


def rss_bytes():
    """The resident set size now (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def type_counts():
    return collections.Counter(type(o).__name__ for o in gc.get_objects())


class Snapshot:
    """Allocated blocks, tracked objects and RSS after a full collection."""

    def __init__(self):
        gc.collect()
        gc.collect()
        self.blocks = sys.getallocatedblocks()
        self.objects = len(gc.get_objects())
        self.rss = rss_bytes()


def measure(label, core, warmup, work):
    """Run ``warmup()``, take a snapshot, run ``work()``, take another; print
    and check the growth. The type census is taken before the first and after
    the second snapshot so that it weighs the same in both."""
    warmup()
    types_before = type_counts()
    before = Snapshot()
    work()
    after = Snapshot()
    types_after = type_counts()
    d_blocks = after.blocks - before.blocks
    d_objects = after.objects - before.objects
    rss = ("rss %.1f->%.1f MiB (%+d KiB)" % (
        before.rss / 2 ** 20, after.rss / 2 ** 20, (after.rss - before.rss) // 1024)
        if before.rss is not None and after.rss is not None else "rss n/a")
    summary = "[memory] %s %s: %s, objects %d->%d (%+d), blocks %d->%d (%+d)" % (
        label, core.__name__.rsplit(".", 1)[-1], rss, before.objects, after.objects,
        d_objects, before.blocks, after.blocks, d_blocks)
    print(summary)
    problems = []
    if d_blocks >= MAX_BLOCK_GROWTH:
        problems.append("allocated blocks grew by %d (bound %d)" % (d_blocks, MAX_BLOCK_GROWTH))
    if d_objects >= MAX_OBJECT_GROWTH:
        problems.append("gc objects grew by %d (bound %d)" % (d_objects, MAX_OBJECT_GROWTH))
    if before.rss is not None and after.rss is not None \
            and after.rss - before.rss >= MAX_RSS_GROWTH:
        problems.append("RSS grew by %d bytes (bound %d)" % (
            after.rss - before.rss, MAX_RSS_GROWTH))
    if problems:
        grown = (types_after - types_before).most_common(10)
        raise AssertionError("%s\n%s\ngrowing object types: %r" % (
            summary, "; ".join(problems), grown))


def split(count, minimum_warmup=2000):
    """(warm-up, measured) parts of ``count``: a tenth, at least 2000 (at
    most half), warms up."""
    warm = min(max(count // 10, minimum_warmup), count // 2)
    return warm, count - warm


def assert_tube_empty(conn, tube):
    stats = conn.stats_tube(tube)
    assert (stats["current-jobs-ready"], stats["current-jobs-reserved"],
            stats["current-jobs-delayed"], stats["current-jobs-buried"]) == (0, 0, 0, 0)


# -- workloads --------------------------------------------------------------------------

def run_cycles(conn, start, stop):
    """Cycles ``start..stop-1``: put, reserve (with and without timeout),
    check (every 64th also stats-job), delete (by id or through the job)."""
    for i in range(start, stop):
        body = make_body(i)
        jid = conn.put(body, ttr=120)
        job = conn.reserve() if i & 1 else conn.reserve(timeout=10)
        check_job(job, jid, body, "cycle %d" % i)
        if i % 64 == 0:          # now and then a YAML reply (stats keys, typed values)
            stats = conn.stats_job(jid)
            if stats["id"] != jid or stats["state"] != "reserved":
                raise AssertionError("stats-job %d: %r" % (jid, stats))
        if i & 2:
            job.delete()
        else:
            conn.delete(jid)


def run_batches(conn, start, stop, round_size=2000, chunk=700):
    """Items ``start..stop-1`` in rounds: put_many of a generator, reserve_many
    in chunks (each more than one internal pipeline of 512), check,
    delete_many of the jobs or of their ids."""
    i = start
    while i < stop:
        n = min(round_size, stop - i)
        ids = conn.put_many(make_body(k) for k in range(i, i + n))
        if len(ids) != n:
            raise AssertionError("put_many of %d returned %d ids" % (n, len(ids)))
        done = 0
        while done < n:
            jobs = conn.reserve_many(min(chunk, n - done), timeout=10)
            if not jobs:
                raise AssertionError("reserve_many returned nothing at item %d" % (i + done))
            for j, job in enumerate(jobs):
                check_job(job, ids[done + j], make_body(i + done + j), "item %d" % (i + done + j))
            targets = jobs if (i // round_size) & 1 else [job.jid for job in jobs]
            results = conn.delete_many(targets)
            if results != [None] * len(jobs):
                raise AssertionError("delete_many: %r" % (results[:5],))
            done += len(jobs)
        i += n


class Boom(Exception):
    pass


def failing_bodies(i):
    yield make_body(i)
    yield make_body(i + 1)
    raise Boom(i)


def run_errors(conn, tiny, start, stop):
    """Iterations of failing calls: server errors (NOT_FOUND, JOB_TOO_BIG,
    TIMED_OUT), batch errors, argument errors, an iterator that raises."""
    too_big = b"z" * (TINY_MAX_JOB + 1)
    not_found_calls = (conn.delete, conn.stats_job, conn.touch, conn.kick_job, conn.bury,
                       conn.release, conn.reserve_job)
    for i in range(start, stop):
        missing = MISSING_ID + i
        call = not_found_calls[i % len(not_found_calls)]
        try:
            call(missing)
        except errors.NotFound:
            pass
        else:
            raise AssertionError("%s(%d) did not fail" % (call.__name__, missing))
        if conn.peek(missing) is not None or conn.reserve(timeout=0) is not None:
            raise AssertionError("peek/reserve found a job")
        try:
            conn.delete_many([missing, missing + 1])
        except beanstalkc_fast.BatchError as exc:
            if [type(r) for r in exc.results] != [errors.NotFound, errors.NotFound]:
                raise AssertionError("delete_many results %r" % (exc.results,)) from exc
        else:
            raise AssertionError("delete_many of missing ids did not fail")
        for call, arg, exc_type in ((conn.delete, -1, ValueError), (conn.use, "-bad", ValueError),
                                    (conn.put, 1.5, TypeError), (conn.peek, "7", TypeError)):
            try:
                call(arg)
            except exc_type:
                pass
            else:
                raise AssertionError("%s(%r) did not fail" % (call.__name__, arg))
        try:
            conn.put_many(failing_bodies(i))
        except Boom as exc:
            if exc.results:             # items taken but unsent are dropped
                conn.delete_many(exc.results)
        else:
            raise AssertionError("put_many of a failing iterator did not raise")
        results = tiny.put_many(["small ü %d" % i, too_big, b"small %d" % i], raise_errors=False)
        if not (isinstance(results[0], int) and isinstance(results[1], errors.JobTooBig)
                and isinstance(results[2], int)):
            raise AssertionError("put_many results %r" % (results,))
        tiny.delete_many([results[0], results[2]])
        try:
            tiny.put(too_big)
        except errors.JobTooBig:
            pass
        else:
            raise AssertionError("put of %d bytes did not fail" % len(too_big))


# -- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_server():
    """This module's own beanstalkd with a small maximum job size (-z), so
    JOB_TOO_BIG costs a kilobyte, not megabytes. Stopped by its PID."""
    port = free_port()
    proc = start_beanstalkd(["-l", "127.0.0.1", "-p", str(port), "-z", str(TINY_MAX_JOB)])
    try:
        yield port
    finally:
        stop_beanstalkd(proc)


@pytest.fixture
def tiny(make_conn, tiny_server):
    c = make_conn(tiny_server)
    name = unique_tube()
    c.use(name)
    c.watch(name)
    c.ignore("default")
    return c


def bump_ids(conn):
    """Make sure the server hands out ids above the small-int cache (256), so
    that an id is a fresh int object whose reference count means something."""
    while True:
        ids = conn.put_many([b"bump"] * 300)
        conn.delete_many(ids)
        if ids[0] > 1000:
            return


# -- long runs ----------------------------------------------------------------------------

@pytest.mark.slow
def test_put_reserve_delete_cycles_do_not_grow(conn, core, tube):
    warm, measured = split(LONG_COUNT)
    measure("%d cycles (+%d warm-up)" % (measured, warm), core,
            lambda: run_cycles(conn, 0, warm),
            lambda: run_cycles(conn, warm, warm + measured))
    assert_tube_empty(conn, tube)


@pytest.mark.slow
def test_batch_items_do_not_grow(conn, core, tube):
    warm, measured = split(LONG_COUNT, minimum_warmup=4000)
    measure("%d batch items (+%d warm-up)" % (measured, warm), core,
            lambda: run_batches(conn, 0, warm),
            lambda: run_batches(conn, warm, warm + measured))
    assert_tube_empty(conn, tube)


@pytest.mark.slow
def test_error_paths_do_not_grow(conn, tiny, core, tube):
    warm, measured = split(LONG_COUNT // 8, minimum_warmup=500)
    measure("%d error iterations (+%d warm-up)" % (measured, warm), core,
            lambda: run_errors(conn, tiny, 0, warm),
            lambda: run_errors(conn, tiny, warm, warm + measured))
    assert_tube_empty(conn, tube)
    assert_tube_empty(tiny, tiny.using())


# -- reference counts ----------------------------------------------------------------------

def fresh(obj):
    """A new, unshared copy of a str/bytes/int (never an interned or cached one)."""
    if isinstance(obj, str):
        assert len(obj) > 1
        return obj[:1] + obj[1:]
    if isinstance(obj, bytes):
        return bytes(bytearray(obj))
    return int(str(obj))


def refcounts(objs):
    return [sys.getrefcount(o) for o in objs]


def _local_refcount():
    """sys.getrefcount of an object held by one local variable (2 on CPython
    up to 3.13); compared against rather than hard-coded."""
    x = bytearray(1)
    return sys.getrefcount(x)


def _element_refcount():
    x = [bytearray(1)]
    return sys.getrefcount(x[0])


def assert_refcounts_unchanged(objs, use, rounds=REFCOUNT_ROUNDS, collect=False):
    """``use()`` ``rounds`` times leaves ``sys.getrefcount`` of every object
    as it was. Without ``collect`` the garbage collector is off, so a reference
    held even by a collectable cycle shows; error paths make cycles (exception,
    traceback, frame), and ``collect`` collects them first."""
    gc.collect()
    before = refcounts(objs)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            use()
        if collect:
            gc.collect()
        after = refcounts(objs)
    finally:
        if enabled:
            gc.enable()
    changed = [(i, type(o).__name__, b, a)
               for i, (o, b, a) in enumerate(zip(objs, before, after)) if a != b]
    assert not changed, (
        "reference counts changed after %d rounds (index, type, before, after): %r"
        % (rounds, changed))


def test_refcounts_of_bodies_and_put_arguments(conn):
    bodies = [fresh(b"bytes body " * 3), bytearray(b"bytearray body"),
              memoryview(fresh(b"memoryview body")), fresh("ascii str body"),
              fresh("non-ASCII ü€😀 body"), fresh(b"L" * 100000)]
    priority, delay, ttr, timeout = fresh(70000), fresh(0), fresh(3600), fresh(100000)
    objs = bodies + [priority, ttr, timeout]

    def use():
        for body in bodies:
            jid = conn.put(body, priority, delay, ttr)
            job = conn.reserve(timeout)
            assert job.jid == jid and job.raw_body == wire(body)
            conn.delete(jid)

    assert_refcounts_unchanged(objs, use, rounds=REFCOUNT_ROUNDS // 4)


def test_refcounts_of_job_ids(conn):
    bump_ids(conn)
    jid = conn.put("for the id", ttr=3600)
    assert jid > 1000
    other = fresh(jid)               # an equal id, another object
    pri = fresh(70000)
    objs = [jid, other, pri]

    def use():
        assert conn.peek(jid).jid == jid
        conn.stats_job(jid)
        conn.reserve_job(jid)
        conn.touch(jid)
        conn.bury(jid, pri)
        conn.kick_job(other)
        job = conn.reserve_job(other)
        conn.release(jid, pri, 0)
        assert job.jid == jid

    assert_refcounts_unchanged(objs, use)
    conn.delete(jid)


def test_refcounts_of_tube_names(raw_conn):
    names = [unique_tube(), fresh(unique_tube().encode("ascii"))]

    def use():
        for name in names:
            raw_conn.use(name)
            raw_conn.watch(name)
            raw_conn.stats_tube(name)
            raw_conn.pause_tube(name, 0)
            raw_conn.ignore(name)
        raw_conn.use("default")

    assert_refcounts_unchanged(names, use)


def test_refcounts_of_batch_arguments(conn):
    bump_ids(conn)
    bodies = [fresh(b"batch %d" % i) for i in range(20)] + [fresh("bätch"), bytearray(b"ba")]
    as_list, as_tuple = list(bodies), tuple(bodies)
    objs = bodies + [as_list, as_tuple]

    def use():
        for iterable in (as_list, as_tuple, iter(as_list), (b for b in bodies)):
            before = sys.getrefcount(iterable)
            ids = conn.put_many(iterable)
            assert sys.getrefcount(iterable) == before
            assert len(ids) == len(bodies)
            id_list = list(ids)
            id_refs = refcounts(id_list)
            jobs = conn.reserve_many(len(bodies), timeout=5)
            job_refs = refcounts(jobs)
            assert [j.jid for j in jobs] == ids
            if iterable is as_tuple:
                assert conn.release_many(jobs) == [None] * len(jobs)
                jobs = conn.reserve_many(len(bodies), timeout=5)
                job_refs = refcounts(jobs)
                assert conn.bury_many(jobs) == [None] * len(jobs)
                assert conn.kick(len(jobs)) == len(jobs)
                jobs = conn.reserve_many(len(bodies), timeout=5)
                job_refs = refcounts(jobs)
            target = jobs if isinstance(iterable, list) else id_list
            list_refs = sys.getrefcount(target)
            assert conn.delete_many(target) == [None] * len(jobs)
            assert refcounts(jobs) == job_refs and sys.getrefcount(target) == list_refs
            assert refcounts(id_list) == id_refs

    assert_refcounts_unchanged(objs, use, rounds=REFCOUNT_ROUNDS // 10)


def test_refcounts_on_error_paths(conn, tiny):
    bump_ids(conn)
    missing = fresh(MISSING_ID)
    ids = [fresh(MISSING_ID + 1), fresh(MISSING_ID + 2)]
    bad_priority = "1"
    big = fresh(b"z" * (TINY_MAX_JOB + 1))
    small = fresh(b"small")
    batch = [small, big, small]
    objs = [missing, ids, bad_priority, big, small, batch] + ids

    def use():
        with pytest.raises(errors.NotFound):
            conn.delete(missing)
        assert conn.peek(missing) is None
        with pytest.raises(beanstalkc_fast.BatchError):
            conn.delete_many(ids)
        with pytest.raises(TypeError):
            conn.put(small, bad_priority)
        with pytest.raises(errors.JobTooBig):
            tiny.put(big)
        results = tiny.put_many(batch, raise_errors=False)
        assert isinstance(results[1], errors.JobTooBig)
        tiny.delete_many([results[0], results[2]])

    assert_refcounts_unchanged(objs, use, collect=True)


def test_refcounts_of_core_arguments(conn, core):
    """The core's own entry points: Core.request, Core.pipeline and the
    module functions keep nothing of their arguments."""
    bump_ids(conn)
    c = conn._core
    encoding = fresh("utf-8")
    body, text = fresh(b"core body"), fresh("core ü")
    priority, delay, ttr = fresh(5000), fresh(0), fresh(600)
    command = fresh(b"peek-ready\r\n")
    stats_body = conn._core.request(b"stats\r\n")[2]
    stats_body = fresh(stats_body)
    str_keys = frozenset(["id", fresh("hostname")])
    name = fresh("some-tube-name")
    commands = [fresh(b"list-tube-used\r\n") for _ in range(100)]
    results = []
    objs = [encoding, body, text, priority, ttr, command, stats_body, str_keys,
            name, commands, results]

    local, element = _local_refcount(), _element_refcount()

    def use():
        # (reference counts are read outside assert statements: pytest's
        # assertion rewriting keeps subexpressions in temporaries)
        for b in (body, text):
            data = core.encode_put(b, priority, delay, ttr, encoding)
            data_refs = sys.getrefcount(data)
            status, jid, _ = c.request(data)
            assert status == "INSERTED"
            reply = c.request(command)
            reply_refs, body_refs = sys.getrefcount(reply), sys.getrefcount(reply[2])
            assert (data_refs, reply_refs, body_refs) == (local, local, element)
            assert reply[0] == "FOUND" and reply[2] == wire(b)
            assert c.request(b"delete %d\r\n" % jid)[0] == "DELETED"
        assert core.check_uint("priority", priority) is priority
        assert core.check_name(name) == name.encode()
        parsed = core.parse_yaml(stats_body, str_keys)
        parsed_refs = sys.getrefcount(parsed)
        assert parsed_refs == local and parsed["hostname"]
        c.pipeline(commands, results)
        reply_refs = sys.getrefcount(results[-1])
        assert len(results) == len(commands) and reply_refs == element
        del results[:]

    assert_refcounts_unchanged(objs, use, rounds=REFCOUNT_ROUNDS // 4)


def test_returned_objects_are_owned_by_the_caller(conn):
    """What comes back holds no hidden reference: the id, the job, its body
    (raw and decoded), the lists of the batch calls and their items."""
    bump_ids(conn)
    rc = sys.getrefcount        # read outside assert statements (see above)
    local, element = _local_refcount(), _element_refcount()
    jid = conn.put("returned ü")
    got = [rc(jid)]
    job = conn.reserve(timeout=5)
    got.append(rc(job))
    raw = job.raw_body
    text = job.body
    assert (raw, text) == ("returned ü".encode(), "returned ü")
    got += [rc(raw), rc(text)]           # one more each: job.raw_body, job._body
    del job
    got += [rc(raw), rc(text)]
    assert got == [local, local, local + 1, local + 1, local, local]
    conn.delete(jid)

    ids = conn.put_many([b"first", "second", bytearray(b"third")])
    got = [rc(ids)] + [rc(ids[k]) for k in range(3)]
    jobs = conn.reserve_many(3, timeout=5)
    got += [rc(jobs)] + [rc(jobs[k]) for k in range(3)] + [rc(jobs[k].raw_body) for k in range(3)]
    results = conn.delete_many(jobs)
    got.append(rc(results))
    stats = conn.stats()
    got.append(rc(stats))
    assert got == [local] + [element] * 3 + [local] + [element] * 6 + [local, local]
    assert results == [None] * 3 and [j.body for j in jobs] == ["first", "second", "third"]


@pytest.mark.parametrize("encoding", [None, "utf-8"])
def test_dropped_jobs_free_their_bodies(conn_factory, tube, encoding):
    """Jobs hold their bodies (raw and decoded) only through themselves:
    dropping 3000 reserved jobs gives back what they took."""
    c = conn_factory(tube, encoding=encoding)
    c.put_many([b"small body %d" % i for i in range(3000)])
    gc.collect()
    before = sys.getallocatedblocks()
    jobs = []
    while len(jobs) < 3000:
        jobs += c.reserve_many(3000 - len(jobs), timeout=5)
    assert [j.body for j in jobs[:2]] == [b"small body 0", b"small body 1"] if encoding is None \
        else ["small body 0", "small body 1"]
    for j in jobs:
        j.body
    held = sys.getallocatedblocks() - before
    assert c.delete_many(jobs) == [None] * 3000
    del jobs, j
    gc.collect()
    assert held >= 6000                  # the jobs and their bodies were counted
    assert sys.getallocatedblocks() - before < 300
