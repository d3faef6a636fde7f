"""``beanstalkc-fast work``: the Worker from the command line, as a subprocess
against the suite's beanstalkd, once per core; the handler module is written to
tmp_path and found through PYTHONPATH."""

import os
import signal
import subprocess
import sys
import time

import pytest

from test_cli import cli_env

HANDLERS = r'''
import asyncio, os

def handle(job):
    with open(os.environ["SEEN"], "a") as f:
        f.write("%s\n" % job.body)

def handle_many(jobs):
    with open(os.environ["SEEN"], "a") as f:
        f.write("".join("%s\n" % job.body for job in jobs))

async def ahandle(job):
    await asyncio.sleep(0)
    with open(os.environ["SEEN"], "a") as f:
        f.write("%s\n" % job.body)

def fail(job):
    raise RuntimeError("no")
'''


@pytest.fixture
def work(core, server, tmp_path):
    """Start ``beanstalkc-fast work ARGS...`` with the chosen core; killed (by PID) after."""
    (tmp_path / "myhandlers.py").write_text(HANDLERS)
    procs = []

    def start(*args):
        env = cli_env(core, "127.0.0.1:%d" % server.port)
        env["PYTHONPATH"] += os.pathsep + str(tmp_path)
        env["SEEN"] = str(tmp_path / "seen")
        proc = subprocess.Popen([sys.executable, "-m", "beanstalkc_fast", "work"] + list(args),
                                env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield start
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


def seen(tmp_path):
    try:
        return (tmp_path / "seen").read_text().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("args", [
    ["myhandlers:handle", "--concurrency", "2"],
    ["myhandlers:handle_many", "--batch", "8"],
    ["myhandlers:ahandle", "--concurrency", "3"],                   # asyncio, chosen by itself
    ["myhandlers:handle_many", "--batch", "8", "--mode", "asyncio"],
], ids=["thread", "thread-batch", "async", "asyncio-batch"])
def test_work_processes_jobs_and_stops_on_sigterm(work, conn, tube, tmp_path, args):
    conn.put_many("j%d" % i for i in range(50))
    proc = work(*args, "--tube", tube, "--tube", tube + "-other", "--json")
    wait_for(lambda: len(seen(tmp_path)) >= 50)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.stderr.read().decode()
    assert sorted(seen(tmp_path)) == sorted("j%d" % i for i in range(50))
    assert b'"processed": 50' in proc.stdout.read()
    stats = conn.stats_tube(tube)
    assert stats["current-jobs-ready"] == stats["current-jobs-reserved"] == 0


def test_work_buries_after_max_attempts(work, conn, tube):
    jid = conn.put("bad")
    proc = work("myhandlers:fail", "--tube", tube, "--max-attempts", "1")
    wait_for(lambda: conn.stats_job(jid)["state"] == "buried")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0, proc.stderr.read().decode()
    assert b"job %d failed (attempt 1 of 1), burying" % jid in proc.stderr.read()


@pytest.mark.parametrize("args, message", [
    (["nocolon"], b"use module:function"),
    (["no_such_module_x:f"], b"cannot import no_such_module_x"),
    (["myhandlers:missing"], b"myhandlers has no missing"),
    (["myhandlers:ahandle", "--mode", "thread"], b"needs --mode asyncio"),
    (["myhandlers:handle", "--concurrency", "0"], b"concurrency must be an int >= 1"),
    (["myhandlers:ahandle", "--url", "beanstalk://127.0.0.1:1?auto_reconnect=true"],
     b"does not take auto_reconnect"),
])
def test_work_usage_errors(work, args, message):
    proc = work(*args)
    assert proc.wait(10) == 2
    assert message in proc.stderr.read()


def test_work_help(work):
    proc = work("--help")
    assert proc.wait(10) == 0
    text = proc.stdout.read()
    assert b"module:function" in text and b"--concurrency" in text and b"SIGTERM" in text
