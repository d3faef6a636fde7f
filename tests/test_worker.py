"""Worker: outcomes, retries, heartbeats, stop, concurrency and faults against a
real beanstalkd, both cores (subprocess tests pick the core by environment);
the IO-free policy parts on their own.

``BEANSTALKC_FAST_WORKER_JOBS`` sets the job count of the exactly-once tests
(default 10,000, as the issue asks; they take a few seconds each)."""

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

import beanstalkc_fast
from beanstalkc_fast.errors import NotFound, SocketError
from beanstalkc_fast.worker import (Backoff, Bury, Counters, Heartbeat, Ledger, Outcome, Release,
                                    RetryPolicy, Worker, batch_results, drive, outcome_of)
from test_reliability import OwnServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS = int(os.environ.get("BEANSTALKC_FAST_WORKER_JOBS", "10000"))


def wait_for(condition, timeout=20.0, interval=0.02):
    """Poll ``condition()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("condition not met within %.0f s" % timeout)
        time.sleep(interval)


@pytest.fixture
def start(make_conn):
    """Run Workers in background threads (the core chosen by make_conn); stop them after."""
    running = []

    def start(worker):
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        return thread

    yield start
    for worker, thread in running:
        worker.stop(grace=0)
        thread.join(10)
        assert not thread.is_alive()


def worker_on(server, tube, handler, **kwargs):
    kwargs.setdefault("install_signals", False)
    return Worker(handler, [tube], host="127.0.0.1", port=server.port, **kwargs)


def kick_delayed(conn, jid, delays):
    """When job ``jid`` is delayed, note its delay (from stats-job) and kick it."""
    stats = conn.stats_job(jid)
    if stats["state"] == "delayed":
        delays.append(stats["delay"])
        conn.kick_job(jid)
    return stats


# -- the policy parts (no IO) -----------------------------------------------------------------

def test_retry_policy_grows_caps_and_buries():
    policy = RetryPolicy(max_attempts=6, delay=2, factor=3, max_delay=50)
    assert [policy.delay_for(a) for a in range(1, 6)] == [2, 6, 18, 50, 50]
    assert policy.after_failure(0, 9) == Outcome("release", 2, 9, 1)
    assert policy.after_failure(3, 9).delay == 50
    assert policy.after_failure(5, 9) == Outcome("bury", 0, 9, 6)
    assert policy.after_failure(40, 9).action == "bury"
    assert RetryPolicy(max_attempts=10 ** 6).delay_for(10 ** 6) == 3600


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"delay": -1}, {"factor": 0.5},
                                    {"max_delay": 2 ** 32}, {"max_attempts": True}])
def test_retry_policy_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_outcome_of_handler_results():
    assert outcome_of(None) == outcome_of("anything") == Outcome("delete")
    assert outcome_of(Release(5, 7)) == Outcome("release", 5, 7)
    assert outcome_of(Release()) == Outcome("release", 0, None)
    assert outcome_of(Bury()) == Outcome("bury", 0, None)
    assert outcome_of(ValueError("x")) is None           # a failure: the policy decides
    with pytest.raises(ValueError):
        Release(-1)
    with pytest.raises(ValueError):
        Bury(priority=2 ** 32)


def test_batch_results():
    err = ValueError()
    assert batch_results(None, 3) == [None, None, None]
    assert batch_results([1, err, None], 3) == [1, err, None]
    bury = Bury()
    assert batch_results(bury, 2) == [bury, bury]
    wrong = batch_results([None], 2)
    assert len(wrong) == 2 and isinstance(wrong[0], TypeError) and "2 per-job" in str(wrong[0])
    assert isinstance(batch_results(7, 1)[0], TypeError)


def test_heartbeat_schedule():
    hb = Heartbeat([], reserved_at=100.0, first_check=0.5, margin=5.0)
    assert hb.due == 100.5
    hb.learned(100.5, ttr=120, time_left=119)
    assert hb.due == 100.5 + 114                      # touch when 5 s are left
    hb.touched(200.0)
    assert hb.due == 200.0 + 115
    short = Heartbeat([], reserved_at=0.0)
    short.learned(0.5, ttr=2, time_left=1)
    assert short.due == 0.5                           # at once: 1 s left of 2
    short.touched(0.6)
    assert short.due == pytest.approx(1.6)            # every ttr / 2
    short.stop()
    assert short.due == float("inf")


def test_backoff():
    b = Backoff(first=0.1, factor=2, maximum=0.5)
    assert [b.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    b.reset()
    assert b.next() == 0.1


def test_ledger_running_pending_and_server_restart():
    ledger = Ledger()
    assert not ledger.server("a", binlog=False)        # first server seen
    assert ledger.begin(5) is None
    assert ledger.begin(5) is ledger.begin(5)          # RUNNING, twice
    ledger.unconfirmed(5, Outcome("delete"))           # the reply was lost
    assert ledger.pending_deletes() == [5]
    assert ledger.begin(5) == Outcome("delete")        # handed out again: apply, do not run
    ledger.end(5)
    assert ledger.begin(5) is None
    ledger.end(5)
    assert not ledger.server("a", binlog=False)        # same server process: nothing forgotten
    assert not ledger.server("b", binlog=True)         # restarted with a binlog: same jobs
    ledger.begin(6)
    assert ledger.server("c", binlog=False)            # restarted without: the jobs are gone
    ledger.unconfirmed(6, Outcome("delete"))           # a job of the old server: dropped
    assert ledger.pending_deletes() == []
    assert ledger.begin(6) is None


def test_counters_rows_and_totals():
    c = Counters(2)
    c.add(0, 1)
    c.add(1, 1, 4)
    c.add(1, 2)
    totals = c.totals()
    assert totals["processed"] == 5 and totals["failed"] == 1 and totals["reserved"] == 0


def _steps(io, lose):
    """Slot-like steps over the IO functions ``io`` (plain or async)."""
    seen = [(yield io["echo"], (1,))]
    try:
        yield io["fail"], (NotFound("NOT_FOUND"),)
    except NotFound as exc:                 # thrown in at the yield that asked for it
        seen.append(exc)
    if lose:
        yield io["fail"], (SocketError("lost"),)    # not caught: out of the driver
    return seen


def _fail(exc):
    raise exc


async def _aecho(x):
    return x


async def _afail(exc):
    raise exc


@pytest.mark.parametrize("front_end", ["sync", "asyncio"])
def test_both_drivers_send_results_and_throw_exceptions_in(front_end):
    """The contract of worker.drive and _aworker._drive the slot steps rely on."""
    if front_end == "sync":
        run, io = drive, {"echo": lambda x: x, "fail": _fail}
    else:
        import asyncio
        from beanstalkc_fast._aworker import _drive
        run, io = (lambda steps: asyncio.run(_drive(steps))), {"echo": _aecho, "fail": _afail}
    seen = run(_steps(io, lose=False))
    assert seen[0] == 1 and isinstance(seen[1], NotFound) and len(seen) == 2
    with pytest.raises(SocketError, match="lost"):
        run(_steps(io, lose=True))


@pytest.mark.parametrize("kwargs, error", [
    ({"handler": None}, TypeError),
    ({"tubes": "jobs"}, TypeError),
    ({"tubes": []}, ValueError),
    ({"tubes": ["bad name"]}, ValueError),
    ({"concurrency": 0}, ValueError),
    ({"mode": "fiber"}, ValueError),
    ({"batch": 0}, ValueError),
    ({"reserve_timeout": 0}, ValueError),
    ({"grace": -1}, ValueError),
    ({"retry": 3}, TypeError),
    ({"auto_reconnect": True}, TypeError),
    ({"parse_yaml": False}, TypeError),
    ({"socket_timout": 3}, TypeError),
])
def test_bad_arguments_fail_early(kwargs, error):
    args = {"handler": lambda job: None, "tubes": ["jobs"], "port": 1}
    args.update(kwargs)
    with pytest.raises(error):
        Worker(**args)


def test_worker_runs_once():
    w = Worker(lambda job: None, port=1, install_signals=False)
    w.stop()
    w.run()                                          # already stopped: returns
    with pytest.raises(RuntimeError):
        w.run()


# -- outcomes ---------------------------------------------------------------------------------

def test_returned_job_is_deleted_with_hooks_and_counters(server, conn, tube, start):
    events = []
    jid = conn.put("hello")
    worker = worker_on(server, tube, lambda job: events.append(("handler", job.body)),
                       on_start=lambda job: events.append(("start", job.jid)),
                       on_outcome=lambda job, o: events.append(("outcome", job.jid, o.action)))
    start(worker)
    wait_for(lambda: worker.counters["processed"] == 1)
    assert events == [("start", jid), ("handler", "hello"), ("outcome", jid, "delete")]
    assert conn.peek(jid) is None
    assert worker.counters["reserved"] == 1 and worker.counters["failed"] == 0


def test_failing_hooks_are_logged_and_ignored(server, conn, tube, start, caplog):
    def bad_hook(*args):
        raise KeyError("hook bug")

    jid = conn.put("x")
    worker = worker_on(server, tube, lambda job: None, on_start=bad_hook, on_outcome=bad_hook)
    with caplog.at_level(logging.ERROR, logger="beanstalkc_fast.worker"):
        start(worker)
        wait_for(lambda: worker.counters["processed"] == 1)
    assert conn.peek(jid) is None
    assert len([r for r in caplog.records if "hook" in r.getMessage()]) == 2


def test_failing_three_times_then_succeeding(server, conn, tube, start, caplog):
    calls = []

    def handler(job):
        calls.append(job.jid)
        if len(calls) <= 3:
            raise RuntimeError("attempt %d failed" % len(calls))

    jid = conn.put("flaky")
    worker = worker_on(server, tube, handler, retry=RetryPolicy(max_attempts=5, delay=1))
    delays = []
    def deleted():
        try:
            kick_delayed(conn, jid, delays)
        except beanstalkc_fast.NotFound:
            return True
        return False

    with caplog.at_level(logging.WARNING, logger="beanstalkc_fast.worker"):
        start(worker)
        wait_for(deleted)
    wait_for(lambda: worker.counters["processed"] == 1)
    assert delays == [1, 2, 4]                        # the server's view of each release
    assert conn.peek(jid) is None                     # deleted
    assert calls == [jid] * 4
    counts = worker.counters
    assert (counts["failed"], counts["retried"], counts["buried"]) == (3, 3, 0)
    failures = [r for r in caplog.records if "job %d failed" % jid in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info for r in failures)   # once per failure


def test_always_failing_job_is_buried_after_max_attempts(server, conn, tube, start, caplog):
    def handler(job):
        raise ValueError("never works")

    jid = conn.put("doomed", priority=77)
    worker = worker_on(server, tube, handler, retry=RetryPolicy(max_attempts=3, delay=1))
    delays = []
    with caplog.at_level(logging.WARNING, logger="beanstalkc_fast.worker"):
        start(worker)
        wait_for(lambda: kick_delayed(conn, jid, delays)["state"] == "buried")
    stats = conn.stats_job(jid)
    assert (stats["releases"], stats["buries"], stats["pri"]) == (2, 1, 77)
    assert delays == [1, 2]
    wait_for(lambda: worker.counters["buried"] == 1)
    assert worker.counters["failed"] == 3
    buried = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(buried) == 1 and "job %d failed (attempt 3 of 3), burying" % jid in \
        buried[0].getMessage()


def test_attempts_come_from_the_server(server, conn, tube, start):
    # a job already released twice (say, by an earlier worker) is on its 3rd attempt
    jid = conn.put("old")
    for _ in range(2):
        conn.reserve(timeout=0).release()
    worker = worker_on(server, tube, lambda job: 1 / 0, retry=RetryPolicy(max_attempts=3))
    start(worker)
    wait_for(lambda: conn.stats_job(jid)["state"] == "buried")
    assert conn.stats_job(jid)["releases"] == 2


def test_explicit_release_and_bury_keep_priority(server, conn, tube, start):
    a = conn.put("release me", priority=42)
    b = conn.put("bury me", priority=43)
    c = conn.put("release at 5", priority=44)

    def handler(job):
        if job.jid == a:
            raise Release(delay=30)
        if job.jid == b:
            return Bury()
        return Release(delay=20, priority=5)

    outcomes = {}
    worker = worker_on(server, tube, handler, on_outcome=lambda job, o: outcomes.update(
        {job.jid: o}))
    start(worker)
    wait_for(lambda: len(outcomes) == 3)
    sa, sb, sc = conn.stats_job(a), conn.stats_job(b), conn.stats_job(c)
    assert (sa["state"], sa["delay"], sa["pri"]) == ("delayed", 30, 42)
    assert (sb["state"], sb["pri"]) == ("buried", 43)
    assert (sc["state"], sc["delay"], sc["pri"]) == ("delayed", 20, 5)
    assert worker.counters["failed"] == 0 and worker.counters["released"] == 2
    assert outcomes[b].action == "bury" and outcomes[a] == Outcome("release", 30, 42)


def test_job_settled_by_the_handler_is_left_alone(server, conn, tube, start):
    jid = conn.put("self-service")
    worker = worker_on(server, tube, lambda job: job.bury())
    start(worker)
    wait_for(lambda: worker.counters["processed"] == 1)
    assert conn.stats_job(jid)["state"] == "buried"


def test_batch_mode_per_job_results(server, conn, tube, start):
    ids = conn.put_many(["ok", "fail", "later", "bury", "ok2"])
    batches = []

    def handler(jobs):
        batches.append([j.jid for j in jobs])
        by_body = {"ok": None, "fail": ValueError("no"), "later": Release(delay=60),
                   "bury": Bury(), "ok2": "any value"}
        return [by_body[j.body] for j in jobs]

    worker = worker_on(server, tube, handler, batch=10,
                       retry=RetryPolicy(max_attempts=3, delay=50))
    start(worker)
    wait_for(lambda: sum(worker.counters[k] for k in ("processed", "retried", "released",
                                                      "buried")) == 5)
    assert batches == [ids]                          # one batch
    assert conn.peek(ids[0]) is None and conn.peek(ids[4]) is None
    fail, later, bury = (conn.stats_job(j) for j in ids[1:4])
    assert (fail["state"], fail["delay"]) == ("delayed", 50)
    assert (later["state"], later["delay"]) == ("delayed", 60)
    assert bury["state"] == "buried"


def test_batch_handler_raising_fails_every_job(server, conn, tube, start):
    ids = conn.put_many(["a", "b", "c"])
    worker = worker_on(server, tube, lambda jobs: 1 / 0, batch=5,
                       retry=RetryPolicy(max_attempts=5, delay=100))
    start(worker)
    wait_for(lambda: worker.counters["retried"] == 3)
    assert [conn.stats_job(j)["state"] for j in ids] == ["delayed"] * 3


# -- long jobs: heartbeats ------------------------------------------------------------------

@pytest.mark.parametrize("batch", [None, 3], ids=["single", "batch"])
def test_heartbeat_keeps_a_job_three_times_its_ttr(server, conn, conn_factory, tube, start,
                                                    batch):
    ids = conn.put_many(["slow"] * (batch or 1), ttr=2)
    calls = []

    def handler(arg):
        calls.append(arg)
        time.sleep(6)                                # 3x the TTR
    worker = worker_on(server, tube, handler, batch=batch)
    start(worker)
    thief = conn_factory(tube)
    wait_for(lambda: calls)
    assert thief.reserve(timeout=5) is None          # never handed out to anyone else
    wait_for(lambda: worker.counters["processed"] == len(ids), timeout=15)
    assert len(calls) == 1
    assert all(conn.peek(j) is None for j in ids)


def test_deadline_soon_is_handled_not_raised(fake_server, make_conn, start, caplog):
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
    worker = Worker(lambda job: None, ["t"], host="127.0.0.1", port=srv.port,
                    install_signals=False)
    with caplog.at_level(logging.WARNING, logger="beanstalkc_fast.worker"):
        thread = start(worker)
        wait_for(lambda: len(reserves) >= 5)
        worker.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert worker.counters["reconnects"] == 0


# -- stop -------------------------------------------------------------------------------------

def test_stop_lets_a_running_handler_finish(server, conn, tube, start):
    jid = conn.put("finish me")
    running = threading.Event()

    def handler(job):
        running.set()
        time.sleep(0.5)

    worker = worker_on(server, tube, handler)
    thread = threading.Thread(target=worker.run)
    thread.start()
    running.wait(10)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert conn.peek(jid) is None and worker.counters["processed"] == 1


def test_stop_releases_a_hanging_handlers_job_after_grace(server, conn, tube):
    jid = conn.put("hang", priority=7)
    running, forever = threading.Event(), threading.Event()

    def handler(job):
        running.set()
        forever.wait(30)

    worker = worker_on(server, tube, handler, grace=0.3)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        running.wait(10)
        worker.stop()
        thread.join(10)
        assert not thread.is_alive()                  # run() returned, handler still hangs
        stats = conn.stats_job(jid)
        assert (stats["state"], stats["pri"], stats["reserves"]) == ("ready", 7, 1)
        assert worker.counters["released"] == 1 and worker.counters["processed"] == 0
    finally:
        forever.set()                                 # the abandoned thread leaves quietly
    time.sleep(0.1)
    assert conn.stats_job(jid)["state"] == "ready"


def test_stop_from_the_handler_takes_no_new_job(server, conn, tube, start):
    calls = []
    worker_box = []

    def handler(job):
        calls.append(job.jid)
        worker_box[0].stop()

    first, second = conn.put_many(["one", "two"])
    worker = worker_on(server, tube, handler, batch=None)
    worker_box.append(worker)
    thread = start(worker)
    thread.join(10)
    assert calls == [first]
    assert conn.stats_job(second)["state"] == "ready"


# -- concurrency: every job exactly once ------------------------------------------------------

@pytest.mark.parametrize("mode", ["thread", "process"])
def test_every_job_processed_exactly_once(server, conn, tube, start, tmp_path, mode):
    ids = conn.put_many("job %d" % i for i in range(JOBS))
    log_path = str(tmp_path / "seen")
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def handler(job):
        os.write(fd, b"%d\n" % job.jid)              # O_APPEND: one line per write, any process

    try:
        worker = worker_on(server, tube, handler, concurrency=4, mode=mode)
        thread = start(worker)
        wait_for(lambda: worker.counters["processed"] == JOBS, timeout=120, interval=0.1)
        worker.stop()
        thread.join(15)
        assert not thread.is_alive()
    finally:
        os.close(fd)
    with open(log_path) as f:
        seen = [int(line) for line in f]
    assert len(seen) == JOBS and sorted(seen) == sorted(ids)
    stats = conn.stats_tube(tube)
    assert stats["current-jobs-ready"] == stats["current-jobs-reserved"] == 0
    assert worker.counters["reserved"] == JOBS


def test_batch_mode_with_threads_processes_each_job_once(server, conn, tube, start):
    ids = conn.put_many("b%d" % i for i in range(2000))
    seen = []
    worker = worker_on(server, tube, lambda jobs: seen.extend(j.jid for j in jobs),
                       concurrency=3, batch=64)
    start(worker)
    wait_for(lambda: worker.counters["processed"] == len(ids), timeout=60)
    assert sorted(seen) == sorted(ids)


# -- faults -------------------------------------------------------------------------------------

def test_server_restart_mid_run_resumes_without_duplicates(make_conn, tmp_path, start):
    own = OwnServer(tmp_path, binlog=True)
    try:
        producer = make_conn(own.port)
        producer.use("restart")
        ids = producer.put_many("r%d" % i for i in range(300))
        seen = []

        def handler(job):
            seen.append(job.jid)
            time.sleep(0.002)

        worker = Worker(handler, ["restart"], host="127.0.0.1", port=own.port, concurrency=3,
                        install_signals=False)
        start(worker)
        wait_for(lambda: len(seen) >= 100)
        own.kill()                                    # SIGKILL: the binlog keeps the jobs
        own.start()
        wait_for(lambda: len(set(seen)) == len(ids), timeout=60)
        check = make_conn(own.port)
        wait_for(lambda: check.stats_tube("restart")["current-jobs-ready"] == 0
                 and check.stats_tube("restart")["current-jobs-reserved"] == 0
                 and check.stats_tube("restart")["current-jobs-delayed"] == 0, timeout=30)
        assert len(seen) == len(ids)                  # no job ran twice
        assert sorted(seen) == sorted(ids)
        assert worker.counters["reconnects"] >= 3
    finally:
        own.stop()


def test_server_down_at_start_then_up(make_conn, tmp_path, start):
    own = OwnServer(tmp_path)
    own.stop()
    seen = []
    worker = Worker(lambda job: seen.append(job.body), ["late"], host="127.0.0.1",
                    port=own.port, install_signals=False)
    start(worker)
    time.sleep(0.3)                                   # a few failed connects, with backoff
    own.start()
    try:
        producer = make_conn(own.port)
        producer.use("late")
        producer.put("finally")
        wait_for(lambda: seen == ["finally"], timeout=15)
    finally:
        own.stop()


# -- the process: signals and kill -9 ------------------------------------------------------------

CHILD = r"""
import logging, sys, time
import beanstalkc_fast
port, tube, mode, behaviour, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
logging.basicConfig(level=logging.INFO, stream=sys.stderr)

def handler(job):
    print("started", job.jid, flush=True)
    if behaviour == "slow":
        time.sleep(1.0)
    elif behaviour == "hang":
        time.sleep(3600)

beanstalkc_fast.Worker(handler, [tube], host="127.0.0.1", port=int(port), concurrency=int(n),
                       mode=mode).run()
"""


@pytest.fixture
def child(core, server):
    """Start the worker script as a process with the chosen core; killed (by PID) after."""
    procs = []

    def spawn(tube, mode="thread", behaviour="quick", concurrency=2):
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
        if core.__name__.endswith("_pyprotocol"):
            env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(server.port), tube, mode,
                                 behaviour, str(concurrency)], cwd=ROOT, env=env,
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


def read_line(proc, timeout=30):
    """The next line the child prints; fails after ``timeout`` seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        pytest.fail("the worker process printed nothing for %d s" % timeout)
    return proc.stdout.readline()


def watching(conn, tube):
    try:
        return conn.stats_tube(tube)
    except beanstalkc_fast.NotFound:
        return None


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_sigterm_while_every_worker_waits_exits_promptly(conn, tube, child, mode):
    proc = child(tube, mode)
    wait_for(lambda: (watching(conn, tube) or {}).get("current-waiting") == 2, timeout=30)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(10)
    elapsed = time.monotonic() - t0
    assert code == 0, proc.stderr.read().decode()
    assert elapsed < 1.5, "exited %.2f s after SIGTERM" % elapsed


def test_sigterm_during_a_job_finishes_and_deletes_it(conn, tube, child):
    proc = child(tube, behaviour="slow")
    wait_for(lambda: (watching(conn, tube) or {}).get("current-waiting") == 2, timeout=30)
    jid = conn.put("one second of work")
    assert read_line(proc) == b"started %d\n" % jid          # the handler runs
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.stderr.read().decode()
    assert conn.peek(jid) is None                     # finished and deleted
    stats = conn.stats_tube(tube)
    assert stats["cmd-delete"] == 1 and stats["current-jobs-reserved"] == 0


def test_second_sigterm_ends_the_grace_period(conn, tube, child):
    proc = child(tube, behaviour="hang", concurrency=1)       # grace: the default 30 s
    jid = conn.put("stuck", priority=9)
    assert read_line(proc) == b"started %d\n" % jid
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert proc.poll() is None                                # waiting for the handler
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.stderr.read().decode()
    stats = conn.stats_job(jid)
    assert (stats["state"], stats["pri"], stats["reserves"]) == ("ready", 9, 1)
    assert b"releasing job(s) %d" % jid in proc.stderr.read()


def test_kill_9_of_the_worker_gives_its_job_back_within_ttr(conn, tube, child):
    # one worker connection: with two, the server may hand the job returned by
    # one dying connection to the other before it sees that one die too
    proc = child(tube, behaviour="hang", concurrency=1)
    jid = conn.put("orphan", ttr=3)
    assert read_line(proc) == b"started %d\n" % jid
    proc.kill()                                       # SIGKILL, by PID
    proc.wait()
    job = conn.reserve(timeout=3 + 2)                 # the server's guarantee: TTR at the latest
    assert job is not None and job.jid == jid
    assert conn.stats_job(jid)["reserves"] == 2, proc.stderr.read().decode()
