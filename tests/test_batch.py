"""Pipelined batches: put_many, reserve_many, delete/release/bury_many, pipeline()."""

import pytest

import beanstalkc_fast
from beanstalkc_fast import errors

from conftest import MAX_JOB_SIZE


def test_put_many_order(conn):
    bodies = ["body %d" % i for i in range(100)]
    ids = conn.put_many(bodies)
    assert len(ids) == 100
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 100
    got = []
    for _ in bodies:
        job = conn.reserve(timeout=0)
        got.append((job.jid, job.body))
        job.delete()
    assert got == list(zip(ids, bodies))


def test_put_many_empty(conn):
    assert conn.put_many([]) == []
    assert conn.put_many(iter(())) == []


def test_put_many_options(conn):
    ids = conn.put_many(["a", "b"], priority=7, delay=30, ttr=9)
    for jid in ids:
        stats = conn.stats_job(jid)
        assert (stats["pri"], stats["delay"], stats["ttr"], stats["state"]) == (7, 30, 9, "delayed")


def test_put_many_generator(conn, tube):
    n = 20000
    ids = conn.put_many(("g%d" % i).encode() for i in range(n))
    assert len(ids) == n
    assert ids == sorted(ids)
    assert conn.stats_tube(tube)["current-jobs-ready"] == n
    seen = []
    while True:
        jobs = conn.reserve_many(1000, timeout=0)
        if not jobs:
            break
        seen.extend(j.body for j in jobs)
        conn.delete_many(jobs)
    assert seen == ["g%d" % i for i in range(n)]


def test_put_many_per_item_error(conn_factory, tube):
    c = conn_factory(tube, encoding=None)
    bodies = [b"a", b"b", b"x" * (MAX_JOB_SIZE + 1), b"d"]
    with pytest.raises(beanstalkc_fast.BatchError) as info:
        c.put_many(bodies)
    results = info.value.results
    assert len(results) == 4
    assert isinstance(results[2], errors.JobTooBig)
    assert isinstance(results[2], beanstalkc_fast.CommandFailed)
    ids = [results[0], results[1], results[3]]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids)
    assert info.value.errors == [results[2]]
    # raise_errors=False: the same shape, returned
    results = c.put_many(bodies, raise_errors=False)
    assert isinstance(results[2], errors.JobTooBig)
    assert all(isinstance(results[i], int) for i in (0, 1, 3))
    # the connection still works and holds exactly the good jobs in order
    got = [j.body for j in c.reserve_many(10, timeout=0)]
    assert got == [b"a", b"b", b"d"] * 2


def test_delete_many_missing(conn):
    ids = conn.put_many(["a", "b"])
    missing = 2 ** 63
    with pytest.raises(beanstalkc_fast.BatchError) as info:
        conn.delete_many([ids[0], missing, ids[1]])
    results = info.value.results
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], errors.NotFound)
    assert conn.peek(ids[0]) is None and conn.peek(ids[1]) is None
    results = conn.delete_many([missing, ids[0]], raise_errors=False)
    assert all(isinstance(r, errors.NotFound) for r in results)


def test_delete_many_jobs_and_ids(conn):
    ids = conn.put_many(["a", "b", "c"])
    jobs = conn.reserve_many(2, timeout=0)
    assert conn.delete_many(jobs + [ids[2]]) == [None, None, None]
    assert all(not j.reserved for j in jobs)
    assert conn.peek_ready() is None


def test_reserve_many_empty(conn):
    assert conn.reserve_many(5, timeout=0) == []
    assert conn.reserve_many(0, timeout=0) == []


def test_reserve_many_up_to_n(conn, tube):
    ids = conn.put_many(["j%d" % i for i in range(10)])
    jobs = conn.reserve_many(5, timeout=0)
    assert [j.jid for j in jobs] == ids[:5]
    assert all(j.reserved for j in jobs)
    stats = conn.stats_tube(tube)
    assert stats["current-jobs-reserved"] == 5
    assert stats["current-jobs-ready"] == 5
    more = conn.reserve_many(100, timeout=0)
    assert [j.jid for j in more] == ids[5:]
    assert conn.stats_tube(tube)["current-jobs-reserved"] == 10
    assert conn.reserve_many(3, timeout=0) == []


def test_reserve_many_exactly_window(conn, tube):
    conn.put_many(["x"] * 1100)
    jobs = conn.reserve_many(1030, timeout=0)
    assert len(jobs) == 1030
    assert conn.stats_tube(tube)["current-jobs-reserved"] == 1030


def test_release_many_and_bury_many(conn, tube):
    ids = conn.put_many(["a", "b", "c", "d"], priority=50)
    jobs = conn.reserve_many(4, timeout=0)
    assert conn.release_many(jobs[:2], priority=3, delay=0) == [None, None]
    assert all(not j.reserved for j in jobs[:2])
    assert conn.bury_many(jobs[2:], priority=4) == [None, None]
    assert conn.stats_job(ids[0])["pri"] == 3
    assert conn.stats_job(ids[0])["state"] == "ready"
    assert conn.stats_job(ids[2])["pri"] == 4
    assert conn.stats_job(ids[3])["state"] == "buried"
    stats = conn.stats_tube(tube)
    assert stats["current-jobs-buried"] == 2 and stats["current-jobs-ready"] == 2
    # releasing jobs not reserved fails per item
    with pytest.raises(beanstalkc_fast.BatchError) as info:
        conn.release_many(ids[:2])
    assert all(isinstance(r, errors.NotFound) for r in info.value.results)
    results = conn.bury_many(ids[:1], raise_errors=False)
    assert isinstance(results[0], errors.NotFound)


def test_release_many_delay(conn):
    conn.put_many(["a"])
    jobs = conn.reserve_many(1, timeout=0)
    conn.release_many(jobs, delay=60)
    assert conn.stats_job(jobs[0].jid)["state"] == "delayed"


def test_pipeline(conn):
    existing = conn.put("existing")
    job = conn.reserve(timeout=0)
    with conn.pipeline() as p:
        p.put("one")
        p.delete(2 ** 63)
        p.put("two", priority=1)
        p.touch(job)
        p.bury(job, priority=9)
        p.kick_job(existing)
        p.release(2 ** 63)
    r = p.results
    assert len(r) == 7
    assert isinstance(r[0], int)
    assert isinstance(r[1], errors.NotFound)
    assert isinstance(r[2], int) and r[2] > r[0]
    assert r[3] is None and r[4] is None and r[5] is None
    assert isinstance(r[6], errors.NotFound)
    assert conn.stats_job(existing)["state"] == "ready"
    assert conn.stats_job(existing)["pri"] == 9
    assert conn.reserve(timeout=0).jid == r[2]


def test_pipeline_execute_and_reuse(conn):
    p = conn.pipeline()
    p.put("a").put("b")
    ids = p.execute()
    assert len(ids) == 2 and ids == p.results
    assert p.execute() == []
    p.delete(ids[0])
    assert p.execute() == [None]


def test_pipeline_not_executed_on_exception(conn, tube):
    with pytest.raises(RuntimeError):
        with conn.pipeline() as p:
            p.put("never")
            raise RuntimeError
    assert conn.stats_tube(tube)["total-jobs"] == 0


def test_no_deadlock_large_batches(conn_factory, tube):
    c = conn_factory(tube, encoding=None)
    n = 2000
    size = 64 * 1024

    def body(i):
        head = b"%08d" % i
        return head + bytes([i % 251]) * (size - len(head))

    ids = c.put_many(body(i) for i in range(n))
    assert len(ids) == n
    count = 0
    while count < n:
        jobs = c.reserve_many(700, timeout=0)
        assert jobs
        for j in jobs:
            assert j.body == body(count)
            count += 1
        assert c.delete_many(jobs) == [None] * len(jobs)
    assert count == n
    assert c.reserve(timeout=0) is None
