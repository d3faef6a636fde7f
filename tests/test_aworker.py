"""The asyncio Worker against a real beanstalkd: both cores × both loops
(``arun``; the subprocess tests pick core and loop by environment). The
policy parts it shares with the sync Worker are tested in test_worker.py.

``BEANSTALKC_FAST_WORKER_JOBS`` sets the job count of the exactly-once test
(default 10,000, as the issue asks)."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import beanstalkc_fast.asyncio as bsa
from beanstalkc_fast.errors import NotFound
from beanstalkc_fast.worker import Bury, Release, RetryPolicy
from test_reliability import OwnServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS = int(os.environ.get("BEANSTALKC_FAST_WORKER_JOBS", "10000"))


async def until(condition, timeout=20.0, interval=0.02):
    """Poll ``await condition()`` (or a plain callable) until true."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("condition not met within %.0f s" % timeout)
        await asyncio.sleep(interval)


def make_worker(server, tube, core, handler, **kwargs):
    kwargs.setdefault("install_signals", False)
    return bsa.Worker(handler, [tube], host="127.0.0.1", port=server.port, core=core, **kwargs)


async def running(worker):
    """Start ``worker.run()`` as a task; the task."""
    task = asyncio.ensure_future(worker.run())
    await asyncio.sleep(0)
    return task


async def finish(worker, task, grace=None):
    worker.stop(grace)
    await asyncio.wait_for(task, 10)


async def kick_delayed(conn, jid, delays):
    """When job ``jid`` is delayed, note its delay and kick it; its stats."""
    stats = await conn.stats_job(jid)
    if stats["state"] == "delayed":
        delays.append(stats["delay"])
        await conn.kick_job(jid)
    return stats


async def gone(conn, jid):
    try:
        await conn.stats_job(jid)
    except NotFound:
        return True
    return False


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="concurrency"):
        bsa.Worker(lambda job: None, ["t"], concurrency=0)
    with pytest.raises(TypeError, match="auto_reconnect"):
        bsa.Worker(lambda job: None, ["t"], auto_reconnect=True)
    with pytest.raises(TypeError, match="bad connection option"):
        bsa.Worker(lambda job: None, ["t"], no_such_option=True)
    with pytest.raises(TypeError, match="callable"):
        bsa.Worker(None, ["t"])


def test_returned_job_is_deleted_with_hooks_and_counters(arun, server, tube, core):
    async def body(connect):
        conn = await connect()
        started, outcomes = [], []

        async def handler(job):
            await asyncio.sleep(0)
            return "anything"

        jid = await conn.put("hello")
        worker = make_worker(server, tube, core, handler, on_start=started.append,
                             on_outcome=lambda job, o: outcomes.append((job.jid, o.action)))
        task = await running(worker)
        await until(lambda: outcomes)
        await finish(worker, task)
        assert [j.jid for j in started] == [jid] and outcomes == [(jid, "delete")]
        assert await gone(conn, jid)
        counts = worker.counters
        assert (counts["reserved"], counts["processed"], counts["failed"]) == (1, 1, 0)
        with pytest.raises(RuntimeError, match="runs once"):
            await worker.run()
    arun(body)


def test_failing_three_times_then_succeeding(arun, server, tube, core, caplog):
    async def body(connect):
        conn = await connect()
        calls = []

        async def handler(job):
            calls.append(job.jid)
            if len(calls) <= 3:
                raise RuntimeError("attempt %d failed" % len(calls))

        jid = await conn.put("flaky")
        worker = make_worker(server, tube, core, handler,
                             retry=RetryPolicy(max_attempts=5, delay=1))
        delays = []

        async def deleted():
            try:
                await kick_delayed(conn, jid, delays)
            except NotFound:
                return True
            return False

        task = await running(worker)
        await until(deleted)
        await until(lambda: worker.counters["processed"] == 1)
        await finish(worker, task)
        assert delays == [1, 2, 4]                    # the server's view of each release
        assert calls == [jid] * 4
        counts = worker.counters
        assert (counts["failed"], counts["retried"], counts["buried"]) == (3, 3, 0)

    with caplog.at_level(logging.WARNING, logger="beanstalkc_fast.worker"):
        arun(body)
    failures = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info for r in failures)


def test_always_failing_job_is_buried_after_max_attempts(arun, server, tube, core, caplog):
    async def body(connect):
        conn = await connect()

        async def handler(job):
            raise ValueError("never works")

        jid = await conn.put("doomed", priority=77)
        worker = make_worker(server, tube, core, handler,
                             retry=RetryPolicy(max_attempts=3, delay=1))
        delays = []
        task = await running(worker)
        await until(lambda: _state_is(kick_delayed(conn, jid, delays), "buried"))
        await until(lambda: worker.counters["buried"] == 1)
        await finish(worker, task)
        stats = await conn.stats_job(jid)
        assert (stats["releases"], stats["buries"], stats["pri"]) == (2, 1, 77)
        assert delays == [1, 2]
        assert worker.counters["failed"] == 3
        return jid

    with caplog.at_level(logging.WARNING, logger="beanstalkc_fast.worker"):
        jid = arun(body)
    buried = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(buried) == 1
    assert "job %d failed (attempt 3 of 3), burying" % jid in buried[0].getMessage()


async def _state_is(stats, state):
    return (await stats)["state"] == state


def test_explicit_release_and_bury_keep_priority(arun, server, tube, core):
    async def body(connect):
        conn = await connect()
        decisions = {}

        async def handler(job):
            decision = decisions[job.body]
            if isinstance(decision, Bury):
                raise decision
            return decision

        decisions.update(rel=Release(delay=30), bury=Bury(), bury9=Bury(priority=9))
        a = await conn.put("rel", priority=5)
        b = await conn.put("bury", priority=6)
        c = await conn.put("bury9", priority=7)
        worker = make_worker(server, tube, core, handler, concurrency=2)
        task = await running(worker)
        await until(lambda: worker.counters["buried"] + worker.counters["released"] == 3)
        await finish(worker, task)
        sa, sb, sc = [await conn.stats_job(j) for j in (a, b, c)]
        assert (sa["state"], sa["pri"], sa["releases"]) == ("delayed", 5, 1)
        assert (sb["state"], sb["pri"]) == ("buried", 6)
        assert (sc["state"], sc["pri"]) == ("buried", 9)
        assert worker.counters["failed"] == 0
    arun(body)


def test_batch_mode_per_job_results(arun, server, tube, core):
    async def body(connect):
        conn = await connect()
        ids = await conn.put_many(["ok", "retry", "bury", "ok"])
        batches = []

        async def handler(jobs):
            batches.append([j.jid for j in jobs])
            return [None if j.body == "ok" else Release(60) if j.body == "retry" else Bury()
                    for j in jobs]

        worker = make_worker(server, tube, core, handler, batch=10)
        task = await running(worker)
        await until(lambda: worker.counters["reserved"] == 4
                    and sum(worker.counters[k] for k in ("processed", "released", "buried")) == 4)
        await finish(worker, task)
        assert sorted(sum(batches, [])) == ids
        states = [(await conn.stats_job(j))["state"] if not await gone(conn, j) else "deleted"
                  for j in ids]
        assert states == ["deleted", "delayed", "buried", "deleted"]
    arun(body)


def test_heartbeat_keeps_jobs_three_times_their_ttr(arun, server, tube, core):
    # one worker in single mode, one in batch mode, at the same time (one wait)
    async def body(connect):
        conn = await connect()
        single = await conn.put("slow", ttr=1)
        await conn.use(tube + "-b")
        batch = await conn.put_many(["slow a", "slow b"], ttr=1)
        calls = []

        async def handler(arg):
            calls.append(arg)
            await asyncio.sleep(3)                     # 3x the TTR

        workers = [make_worker(server, tube, core, handler),
                   make_worker(server, tube + "-b", core, handler, batch=2)]
        tasks = [await running(w) for w in workers]
        await until(lambda: len(calls) == 2)
        thief = await connect()
        await thief.watch(tube + "-b")
        assert await thief.reserve(timeout=2) is None   # never handed out to anyone else
        await until(lambda: [w.counters["processed"] for w in workers] == [1, 2], timeout=10)
        for worker, task in zip(workers, tasks):
            await finish(worker, task)
        assert len(calls) == 2
        assert sorted(j.jid for j in calls if isinstance(j, bsa.Job)) == [single]
        assert sorted(j.jid for arg in calls if isinstance(arg, list) for j in arg) == batch
        for jid in [single] + batch:
            assert await gone(conn, jid)
    arun(body)


def test_deadline_soon_is_handled_not_raised(arun_fake, fake_server, core, caplog):
    # A server that answers the first reserves with DEADLINE_SOON (a real one
    # does when the connection holds a job about to expire), then TIMED_OUT.
    reserves = []

    def serve(sock, srv):
        buf = b""
        while not srv.stop.is_set():
            while b"\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                buf += chunk
            line, _, buf = buf.partition(b"\r\n")
            if line.startswith((b"watch", b"ignore")):
                sock.sendall(b"WATCHING 1\r\n")
            elif line == b"stats":
                body = b"---\nid: fake\nbinlog-current-index: 0\n"
                sock.sendall(b"OK %d\r\n%s\r\n" % (len(body), body))
            elif line.startswith(b"reserve"):
                reserves.append(line)
                if len(reserves) <= 3:
                    sock.sendall(b"DEADLINE_SOON\r\n")
                else:
                    time.sleep(0.05)
                    sock.sendall(b"TIMED_OUT\r\n")
            elif line == b"quit":
                return

    srv = fake_server(serve)

    async def body(connect):
        async def handler(job):
            pass
        worker = bsa.Worker(handler, ["t"], host="127.0.0.1", port=srv.port, core=core,
                            install_signals=False)
        task = await running(worker)
        await until(lambda: len(reserves) >= 5)
        await finish(worker, task)
        assert worker.counters["reconnects"] == 0

    with caplog.at_level(logging.WARNING, logger="beanstalkc_fast.worker"):
        arun_fake(body)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_stop_from_another_thread_ends_a_waiting_reserve(arun, server, tube, core):
    import threading

    async def body(connect):
        conn = await connect()

        async def handler(job):
            pass

        worker = make_worker(server, tube, core, handler, concurrency=2,
                             reserve_timeout=30)   # only the cancel can end the reserve soon
        task = await running(worker)
        await until(lambda: _waiting(conn, tube, 2))
        t0 = time.monotonic()
        threading.Thread(target=worker.stop).start()
        await asyncio.wait_for(task, 10)
        assert time.monotonic() - t0 < 5
        await until(lambda: _waiting(conn, tube, 0))
        jid = await conn.put("after the stop")
        assert (await conn.stats_job(jid))["reserves"] == 0
    arun(body)


async def _waiting(conn, tube, n):
    try:
        return (await conn.stats_tube(tube))["current-waiting"] == n
    except NotFound:
        return n == 0


def test_server_down_at_start_then_up(arun, core, tmp_path):
    own = OwnServer(tmp_path)
    own.stop()

    async def body(connect):
        seen = []

        async def handler(job):
            seen.append(job.body)

        worker = bsa.Worker(handler, ["late"], host="127.0.0.1", port=own.port, core=core,
                            install_signals=False)
        task = await running(worker)
        await asyncio.sleep(0.3)                       # a few failed connects, with backoff
        own.start()
        producer = await connect(tube="late", port=own.port)
        await producer.put("finally")
        await until(lambda: seen == ["finally"], timeout=15)
        await finish(worker, task)

    try:
        arun(body)
    finally:
        own.stop()


def test_stop_lets_a_running_handler_finish(arun, server, tube, core):
    async def body(connect):
        conn = await connect()
        started = []

        async def handler(job):
            started.append(job.jid)
            await asyncio.sleep(0.5)

        worker = make_worker(server, tube, core, handler, concurrency=2)
        task = await running(worker)
        jid = await conn.put("work")
        await until(lambda: started)
        worker.stop()
        await asyncio.wait_for(task, 10)
        assert await gone(conn, jid)                     # finished and deleted
        stats = await conn.stats_tube(tube)
        assert stats["current-jobs-reserved"] == 0 and stats["current-waiting"] == 0
        assert worker.counters["processed"] == 1
    arun(body)


def test_stop_releases_a_hanging_handlers_job_after_grace(arun, server, tube, core, caplog):
    async def body(connect):
        conn = await connect()
        started = []

        async def handler(job):
            started.append(job.jid)
            await asyncio.sleep(3600)

        worker = make_worker(server, tube, core, handler, grace=0.3)
        task = await running(worker)
        jid = await conn.put("stuck", priority=9)
        await until(lambda: started)
        worker.stop()
        await asyncio.wait_for(task, 10)
        stats = await conn.stats_job(jid)
        assert (stats["state"], stats["pri"], stats["reserves"]) == ("ready", 9, 1)
        assert worker.counters["released"] == 1
        return jid

    with caplog.at_level(logging.ERROR, logger="beanstalkc_fast.worker"):
        jid = arun(body)
    assert any("releasing job(s) %d" % jid in r.getMessage() for r in caplog.records)


def test_every_job_processed_exactly_once(arun, server, tube, core):
    async def body(connect):
        conn = await connect()
        ids = await conn.put_many("job %d" % i for i in range(JOBS))
        seen = []

        async def handler(job):
            seen.append(job.jid)

        worker = make_worker(server, tube, core, handler, concurrency=4)
        task = await running(worker)
        await until(lambda: worker.counters["processed"] == JOBS, timeout=120, interval=0.05)
        await finish(worker, task)
        assert len(seen) == JOBS and sorted(seen) == sorted(ids)
        stats = await conn.stats_tube(tube)
        assert stats["current-jobs-ready"] == stats["current-jobs-reserved"] == 0
        assert worker.counters["reserved"] == JOBS
    arun(body, guard=150)


def test_batch_mode_with_tasks_processes_each_job_once(arun, server, tube, core):
    async def body(connect):
        conn = await connect()
        ids = await conn.put_many("b%d" % i for i in range(2000))
        seen = []

        async def handler(jobs):
            seen.extend(j.jid for j in jobs)

        worker = make_worker(server, tube, core, handler, concurrency=3, batch=64)
        task = await running(worker)
        await until(lambda: worker.counters["processed"] == len(ids), timeout=60)
        await finish(worker, task)
        assert sorted(seen) == sorted(ids)
    arun(body)


def test_server_restart_mid_run_resumes_without_duplicates(arun, core, tmp_path):
    own = OwnServer(tmp_path, binlog=True)

    async def body(connect):
        producer = await connect(tube="restart", port=own.port)
        ids = await producer.put_many("r%d" % i for i in range(300))
        await producer.close()
        seen = []

        async def handler(job):
            seen.append(job.jid)
            await asyncio.sleep(0.002)

        worker = bsa.Worker(handler, ["restart"], host="127.0.0.1", port=own.port,
                            concurrency=3, install_signals=False, core=core)
        task = await running(worker)
        await until(lambda: len(seen) >= 100)
        own.kill()                                    # SIGKILL: the binlog keeps the jobs
        own.start()
        await until(lambda: len(set(seen)) == len(ids), timeout=60)
        check = await connect(tube=None, port=own.port)

        async def drained():
            stats = await check.stats_tube("restart")
            return stats["current-jobs-ready"] == stats["current-jobs-reserved"] == \
                stats["current-jobs-delayed"] == 0
        await until(drained, timeout=30)
        await finish(worker, task)
        assert len(seen) == len(ids)                  # no job ran twice
        assert sorted(seen) == sorted(ids)
        assert worker.counters["reconnects"] >= 3

    try:
        arun(body, guard=120)
    finally:
        own.stop()


# -- the process: signals ------------------------------------------------------------------------

CHILD = r"""
import asyncio, logging, sys
import beanstalkc_fast.asyncio as bsa
port, tube, loop, behaviour = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
logging.basicConfig(level=logging.INFO, stream=sys.stderr)

async def handler(job):
    print("started", job.jid, flush=True)
    if behaviour == "slow":
        await asyncio.sleep(1.0)

worker = bsa.Worker(handler, [tube], host="127.0.0.1", port=int(port), concurrency=2)
if loop == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(worker.run())
"""


@pytest.fixture
def child(core, server, loop_name):
    """Start the worker script as a process with the chosen core and loop; killed (by PID) after."""
    if loop_name == "uvloop":
        pytest.importorskip("uvloop")
    procs = []

    def spawn(tube, behaviour="quick"):
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
        if core.__name__.endswith("_pyprotocol"):
            env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(server.port), tube, loop_name,
                                 behaviour], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met within %.0f s" % timeout)
        time.sleep(0.02)


def waiting(conn, tube):
    try:
        return conn.stats_tube(tube)["current-waiting"]
    except Exception:
        return 0


def test_sigterm_while_every_task_waits_exits_promptly(conn, tube, child):
    proc = child(tube)
    wait_for(lambda: waiting(conn, tube) == 2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(10)
    elapsed = time.monotonic() - t0
    assert code == 0, proc.stderr.read().decode()
    assert elapsed < 1.5, "exited %.2f s after SIGTERM" % elapsed


def test_sigterm_during_a_job_finishes_and_deletes_it(conn, tube, child):
    proc = child(tube, behaviour="slow")
    wait_for(lambda: waiting(conn, tube) == 2)
    jid = conn.put("one second of work")
    assert proc.stdout.readline() == b"started %d\n" % jid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.stderr.read().decode()
    assert conn.peek(jid) is None                     # finished and deleted
    stats = conn.stats_tube(tube)
    assert stats["cmd-delete"] == 1 and stats["current-jobs-reserved"] == 0
