"""The operator command line, run as a subprocess (``python -m beanstalkc_fast``)
against the suite's real beanstalkd, once per core (the ``core`` fixture's
choice is passed on as BEANSTALKC_FAST_PUREPYTHON)."""

import base64
import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from beanstalkc_fast import Connection

from conftest import MAX_JOB_SIZE, free_port, start_beanstalkd, stop_beanstalkd, unique_tube
from test_transports import unix_server  # noqa: F401  (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_env(core, url):
    env = dict(os.environ)
    env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
    if core.__name__.endswith("_pyprotocol"):
        env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["BEANSTALK_URL"] = url
    return env


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.raw = proc.stdout
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(core, server):
    """run(*args, input=b"", rc=0, url=None): the command's Result, its exit
    status checked; never a traceback."""
    env = cli_env(core, "127.0.0.1:%d" % server.port)

    def run(*args, input=b"", rc=0, url=None, extra_env=None):
        e = dict(env, **(extra_env or {}))
        argv = [sys.executable, "-m", "beanstalkc_fast"]
        if url is not None:
            argv += ["--url", url]
        proc = subprocess.run(argv + list(args), input=input, cwd=ROOT, env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                              timeout=60)
        res = Result(proc)
        assert "Traceback" not in res.err, res.err
        assert res.rc == rc, (args, res.rc, res.out, res.err)
        if rc:
            assert len(res.err.strip().splitlines()) == 1, res.err
        return res

    run.env = env
    return run


@pytest.fixture
def bconn(conn_factory, tube):
    """A connection (bytes bodies) using and watching only the test's tube,
    which is emptied afterwards."""
    c = conn_factory(tube, encoding=None)
    yield c
    empty_tube(c, tube)


def empty_tube(c, tube):
    c.use(tube)
    for peek in (c.peek_ready, c.peek_delayed, c.peek_buried):
        job = peek()
        while job is not None:
            c.delete(job.jid)
            job = peek()


def tube_bodies(c):
    """Every job of ``c``'s tube as {body: (state, pri, ttr)}: looked at by id
    from the highest id the server gave out (no job taken)."""
    probe = c.put(b"probe")
    c.delete(probe)
    found = {}
    for jid in range(1, probe):
        job = c.peek(jid)
        if job is None:
            continue
        st = c.stats_job(jid)
        if st["tube"] == c.using():
            found.setdefault(job.raw_body, []).append((st["state"], st["pri"], st["ttr"]))
    return found


def test_version_names_the_core(cli, core):
    name = "python" if core.__name__.endswith("_pyprotocol") else "cython"
    res = cli("--version")
    assert re.fullmatch(r"beanstalkc_fast \d+\.\d+\.\d+\S* \(%s core\)\n" % name, res.out), res.out


def test_put_and_peek(cli, bconn, tube):
    jid = int(cli("put", "--tube", tube, "--priority", "7", "--ttr", "33", "héllo").out)
    res = cli("peek", str(jid))
    lines = res.out.splitlines()
    assert lines[0].split() == ["id", str(jid)]
    assert ["tube", tube] in [line.split() for line in lines]
    assert ["priority", "7"] in [line.split() for line in lines]
    assert ["ttr", "33"] in [line.split() for line in lines]
    assert lines[-1] == "héllo"
    info = cli("--json", "peek", "ready", "--tube", tube).json()
    assert (info["id"], info["state"], info["priority"], info["ttr"], info["body"],
            info["body_encoding"]) == (jid, "ready", 7, 33, "héllo", "utf-8")
    # a binary body from stdin, delayed
    binary = b"\x00\xff\xfe\r\nbin"
    jid2 = int(cli("put", "--tube", tube, "--delay", "100", input=binary).out)
    assert bconn.peek(jid2).raw_body == binary
    res = cli("peek", "delayed", "--tube", tube)
    assert res.out.splitlines()[-1] == repr(binary)
    info = cli("peek", "delayed", "--tube", tube, "--json").json()
    assert info["state"] == "delayed" and 0 < info["time-left"] <= 100
    assert info["body_encoding"] == "base64"
    res = cli("peek", "buried", "--tube", tube, rc=1)
    assert "no buried job" in res.err and "127.0.0.1:" in res.err


def test_put_lines_pipelined(cli, bconn, tube):
    res = cli("put", "--lines", "--tube", tube, "--priority", "3",
              input=b"one\r\ntwo\n\n\xffthree\nfour")
    ids = [int(x) for x in res.out.split()]
    assert len(ids) == 4 and ids == sorted(ids)
    assert [bconn.peek(i).raw_body for i in ids] == [b"one", b"two", b"\xffthree", b"four"]
    assert all(bconn.stats_job(i)["pri"] == 3 for i in ids)
    assert cli("put", "--lines", "--tube", tube, "--json", "a\nb").json() == [ids[-1] + 1,
                                                                              ids[-1] + 2]


def test_stats(cli, bconn, tube):
    jid = bconn.put(b"x", priority=5)
    text = cli("stats").out.splitlines()
    assert any(line.split()[0] == "current-jobs-ready" for line in text)
    assert all(len(line) <= 80 for line in text)
    assert cli("stats", "--json").json()["current-jobs-ready"] >= 1
    tube_stats = cli("stats", "--tube", tube, "--json").json()
    assert (tube_stats["name"], tube_stats["current-jobs-ready"]) == (tube, 1)
    assert ["current-jobs-ready", "1"] in [line.split() for line in
                                           cli("stats", "--tube", tube).out.splitlines()]
    job_stats = cli("stats", "--job", str(jid), "--json").json()
    assert (job_stats["id"], job_stats["pri"], job_stats["tube"]) == (jid, 5, tube)
    bconn.delete(jid)
    res = cli("stats", "--job", str(jid), rc=1)
    assert "job %d not found" % jid in res.err
    cli("stats", "--tube", unique_tube(), rc=1)
    cli("stats", "--tube", tube, "--job", "1", rc=2)


def test_tubes_table_and_json(cli, bconn, tube, conn_factory):
    long_tube = "L" + "x" * 150
    other = conn_factory(long_tube)
    other.put(b"x")
    bconn.put(b"r1")
    bconn.put(b"r2")
    bconn.put(b"d", delay=100)
    bconn.put(b"b")
    job = bconn.reserve(timeout=0)
    bconn.bury(job.jid)                       # the first ready job
    bconn.pause_tube(tube, 50)
    lines = cli("tubes").out.splitlines()
    assert lines[0].split() == ["TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "WAITING",
                                "PAUSED"]
    assert all(len(line) <= 80 for line in lines)
    row = [line.split() for line in lines if line.startswith(tube + " ")]
    assert len(row) == 1 and row[0][1:6] == ["2", "0", "1", "1", "0"]
    assert re.fullmatch(r"\d+s", row[0][6])
    assert any(line.startswith("Lxxx") and "~" in line for line in lines)
    rows = {r["tube"]: r for r in cli("tubes", "--json").json()}
    assert rows[long_tube]["ready"] == 1
    assert (rows[tube]["ready"], rows[tube]["delayed"], rows[tube]["buried"]) == (2, 1, 1)
    assert 0 < rows[tube]["paused"] <= 50
    other.delete(other.peek_ready().jid)


def test_kick_bury_delete_pause(cli, bconn, tube):
    a, b, c = bconn.put(b"a", priority=9), bconn.put(b"b"), bconn.put(b"c")
    assert cli("bury", str(a)).out.strip() == "buried job %d" % a
    assert (bconn.stats_job(a)["state"], bconn.stats_job(a)["pri"]) == ("buried", 9)
    bconn.reserve_job(b)
    res = cli("bury", str(b), rc=1)                     # reserved by another client
    assert "job %d not found or reserved" % b in res.err
    bconn.release(b)
    cli("bury", str(b))
    assert cli("kick", "1", "--tube", tube).out.startswith("kicked 1 job ")
    assert bconn.stats_job(a)["state"] == "ready"
    assert cli("kick", "5", "--tube", tube, "--json").json() == {"kicked": 1}
    cli("bury", str(c))
    cli("kick-job", str(c))
    assert bconn.stats_job(c)["state"] == "ready"
    res = cli("kick-job", str(c), rc=1)
    assert "job %d not found" % c in res.err
    res = cli("delete", str(a), str(b), "999999999", rc=1)
    assert res.out.split("\n")[:2] == ["deleted %d" % a, "deleted %d" % b]
    assert "job 999999999" in res.err
    assert bconn.peek(a) is None and bconn.peek(b) is None
    cli("delete", str(c))
    cli("pause", tube, "40")
    assert 0 < bconn.stats_tube(tube)["pause-time-left"] <= 40
    cli("pause", unique_tube(), "1", rc=1)
    cli("pause", tube, "0")


def test_drain(cli, bconn, tube):
    bconn.put(b"r")
    bconn.put(b"d", delay=100)
    bconn.bury(bconn.reserve(timeout=0).jid)
    bconn.put(b"r2")
    bconn.put(b"r3")
    res = cli("drain", tube, rc=2)
    assert "--yes" in res.err
    assert bconn.stats_tube(tube)["current-jobs-ready"] == 2
    assert cli("drain", tube, "--state", "buried", "--yes").out.startswith("deleted 1 job ")
    st = bconn.stats_tube(tube)
    assert (st["current-jobs-ready"], st["current-jobs-delayed"], st["current-jobs-buried"]) == \
        (2, 1, 0)
    bconn.pause_tube(tube, 60)                   # paused tubes drain too
    assert cli("drain", tube, "--yes", "--json").json() == {"deleted": 3}
    assert bconn.stats_tube(tube)["current-jobs-ready"] == 0
    assert bconn.stats_tube(tube)["current-jobs-delayed"] == 0
    bconn.pause_tube(tube, 0)


BODIES = [bytes(range(256)), b"", b"\xff\xfe not utf-8", "ütf-8 ☃\r\nline two\n".encode(),
          b"{\"json\": true}", b"x" * 70000]


def fill(c):
    """Jobs of every state and some priorities/TTRs; {body: (state, pri, ttr)}."""
    want = {}
    for i, body in enumerate(BODIES):
        c.put(body, priority=100 + i, ttr=30 + i)
        want[body] = [("ready", 100 + i, 30 + i)]
    c.put(b"later\x00", priority=5, delay=300, ttr=7)
    want[b"later\x00"] = [("delayed", 5, 7)]
    c.put(b"dead\x80", priority=6, ttr=8)
    jid = c.peek_ready().jid    # the priority-6 job is the first ready one
    c.reserve_job(jid)
    c.bury(jid, 6)
    want[b"dead\x80"] = [("buried", 6, 8)]
    return want


def test_export_keeps_jobs_and_import_round_trips(cli, bconn, tube, conn_factory):
    filled = time.monotonic()
    want = fill(bconn)
    bconn.pause_tube(tube, 60)                  # paused tubes export too
    res = cli("export", tube)
    lines = [json.loads(line) for line in res.raw.splitlines()]
    assert "exported %d jobs" % len(lines) in res.err
    assert [r["state"] for r in lines] == ["buried", "delayed"] + ["ready"] * len(BODIES)
    assert [r["priority"] for r in lines[2:]] == sorted(r["priority"] for r in lines[2:])
    assert {r["body_encoding"] for r in lines} == {"utf-8", "base64"}
    # the delay left (whole seconds, as the server counts), however slow this machine is
    delay = lines[1]["delay"]
    assert 300 - (time.monotonic() - filled) - 1 <= delay <= 300
    assert tube_bodies(bconn) == want           # nothing moved, priorities kept
    assert bconn.stats_tube(tube)["current-jobs-reserved"] == 0
    copy = unique_tube()
    imported = time.monotonic()
    assert cli("import", "--tube", copy, input=res.raw).out.strip() == \
        "imported %d jobs" % len(lines)
    target = conn_factory(copy, encoding=None)
    assert tube_bodies(target) == want          # byte-exact bodies, states, priorities, TTRs
    left = target.stats_job(target.peek_delayed().jid)["time-left"]
    assert delay - (time.monotonic() - imported) - 1 <= left <= delay   # the delay carried over
    only_buried = cli("export", copy, "--state", "buried").raw.splitlines()
    assert [json.loads(x)["body"] for x in only_buried] == ["ZGVhZIA="]
    cli("drain", copy, "--yes")
    cli("drain", tube, "--yes")


def test_export_move_pipe_to_another_server(cli, bconn, tube, conn_factory):
    want = fill(bconn)
    port = free_port()
    proc = start_beanstalkd(["-l", "127.0.0.1", "-p", str(port), "-z", str(MAX_JOB_SIZE)])
    try:
        export = subprocess.Popen([sys.executable, "-m", "beanstalkc_fast", "export", tube,
                                   "--move"], cwd=ROOT, env=cli.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        imp = subprocess.run([sys.executable, "-m", "beanstalkc_fast", "--url",
                              "beanstalk://127.0.0.1:%d" % port, "import", "-"], cwd=ROOT,
                             env=cli.env, stdin=export.stdout, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=60)
        export.stdout.close()
        assert export.wait(60) == 0 and imp.returncode == 0, (export.stderr.read(), imp.stderr)
        export.stderr.close()
        assert imp.stdout.decode().strip() == "imported %d jobs" % len(BODIES + [1, 2])
        st = bconn.stats_tube(tube)
        assert st["current-jobs-ready"] + st["current-jobs-delayed"] + \
            st["current-jobs-buried"] == 0
        with Connection("127.0.0.1", port, encoding=None) as far:
            far.use(tube)
            assert tube_bodies(far) == want
    finally:
        stop_beanstalkd(proc)


def test_export_move_killed_midway_loses_nothing(cli, bconn, tube):
    n = 3000
    bodies = [b"job-%05d-\xff" % i for i in range(n)]
    bconn.put_many(bodies[:1000])
    bconn.put_many(bodies[1000:2000], delay=300)
    bconn.put_many(bodies[2000:])
    for _ in range(200):                       # some buried ones too
        bconn.bury(bconn.reserve_job(bconn.peek_ready().jid).jid)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "bcf-move-%s.jsonl" % uuid.uuid4().hex)
    try:
        with open(path, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "beanstalkc_fast", "export", tube,
                                     "--move"], cwd=ROOT, env=cli.env, stdout=f,
                                    stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while os.path.getsize(path) == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(random.uniform(0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with open(path, "rb") as f:
            raw = f.read()
    finally:
        os.unlink(path)
    lines = raw.split(b"\n")
    written = []
    for line in lines[:-1]:          # every line ended by \n was written whole
        rec = json.loads(line)
        assert rec["body_encoding"] == "base64"
        written.append(base64.b64decode(rec["body"]))
    assert len(written) == len(set(written))
    # the killed connection's reserved job goes back when the server sees it close
    deadline = time.monotonic() + 10
    while bconn.stats_tube(tube)["current-jobs-reserved"] and time.monotonic() < deadline:
        time.sleep(0.01)
    remaining = []
    for state in ("ready", "delayed", "buried"):
        peek = getattr(bconn, "peek_" + state)
        while True:
            job = peek()
            if job is None:
                break
            remaining.append(job.raw_body)
            bconn.delete(job.jid)
    both = set(written) & set(remaining)
    assert set(written) | set(remaining) == set(bodies)            # none in neither
    assert len(written) + len(remaining) - len(both) == n
    # none in both, but for the one job whose line was flushed when the kill
    # came before its delete went out (the documented at-least-once window)
    assert both <= {written[-1]} if written else not both, (len(both), len(written))
    assert written, "the export was killed before it wrote anything"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
def test_export_to_a_full_disk_keeps_every_job(cli, bconn, tube, move):
    want = fill(bconn)
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "beanstalkc_fast", "export", tube] +
                              ["--move"] * move, cwd=ROOT, env=cli.env, stdout=full,
                              stderr=subprocess.PIPE, check=False, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "No space left" in err
    assert bconn.stats_tube(tube)["current-jobs-reserved"] == 0   # held jobs given back
    assert tube_bodies(bconn) == want


def test_import_rejects_bad_input_before_sending(cli, bconn, tube):
    good = json.dumps({"body": "ok", "tube": tube}).encode()
    res = cli("import", input=good + b"\n{not json\n", rc=2)
    assert "line 2" in res.err
    assert bconn.stats_tube(tube)["current-jobs-ready"] == 0 if tube in bconn.tubes() else True
    res = cli("import", input=json.dumps({"body": "x", "priority": -1}).encode(), rc=2)
    assert "priority" in res.err
    too_big = json.dumps({"body": "x" * (MAX_JOB_SIZE + 1), "tube": tube}).encode()
    res = cli("import", input=good + b"\n" + too_big + b"\n" + good + b"\n", rc=1)
    assert res.out.strip() == "imported 2 jobs"
    assert "input line 2: not imported: put: JOB_TOO_BIG" in res.err
    assert bconn.stats_tube(tube)["current-jobs-ready"] == 2
    res = cli("import", "/nonexistent/file.jsonl", rc=2)
    assert "/nonexistent/file.jsonl" in res.err


def test_unreachable_and_usage_errors(cli):
    port = free_port()
    res = cli("tubes", url="127.0.0.1:%d" % port, rc=3)
    assert res.err.startswith("beanstalkc-fast: 127.0.0.1:%d: " % port)
    res = cli("tubes", rc=3, extra_env={"BEANSTALK_URL": "beanstalk://127.0.0.1:%d" % port})
    assert "127.0.0.1:%d" % port in res.err
    cli("tubes", url="ftp://x:1", rc=2)
    cli("tubes", url="host:99999", rc=2)
    cli("frobnicate", rc=2)
    cli("peek", "nothing", rc=2)
    cli("put", "--priority", "-1", "x", rc=2)
    cli("delete", "abc", rc=2)
    cli(rc=2)


def test_unix_socket_url(cli, unix_server):  # noqa: F811
    assert cli("put", "--tube", "unix", "via unix", url="unix://" + unix_server).out.strip() == "1"
    rows = cli("tubes", "--json", url="unix://" + unix_server).json()
    row = [r for r in rows if r["tube"] == "unix"]
    assert len(row) == 1 and row[0]["ready"] == 1


# -- top, as a person sees it ----------------------------------------------------

def capture(sock):
    return subprocess.run(["tmux", "-L", sock, "capture-pane", "-p"], stdout=subprocess.PIPE,
                          check=True, timeout=10).stdout.decode("utf-8", "replace")


def wait_screen(sock, predicate, timeout=20):
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = capture(sock)
        if predicate(screen):
            return screen
        time.sleep(0.1)
    raise AssertionError("screen never matched:\n" + screen)


needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


@contextlib.contextmanager
def top_in_tmux(cli, url):
    """``top`` in a 100x30 terminal of a tmux server of our own (yields its
    socket name); afterwards the pane shows EXIT=<status> and the stty flags
    icanon/echo. Only this tmux server is killed at the end."""
    env = " ".join(shlex.quote(x) for x in ("PYTHONPATH=" + cli.env["PYTHONPATH"],
                                            "BEANSTALK_URL=" + url))
    core = "BEANSTALKC_FAST_PUREPYTHON=1" if "BEANSTALKC_FAST_PUREPYTHON" in cli.env else \
        "-u BEANSTALKC_FAST_PUREPYTHON"
    command = ("cd %s && env %s %s %s -m beanstalkc_fast top; echo EXIT=$?; "
               "stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\?icanon' -e '-\\?echo'; sleep 60"
               % (shlex.quote(ROOT), core, env, shlex.quote(sys.executable)))
    sock = "bcf-cli-%s" % uuid.uuid4().hex[:12]
    subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-x", "100",
                    "-y", "30", command], check=True, timeout=10)
    try:
        yield sock
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], check=False, timeout=10)


def exit_screen(sock):
    """The status top exited with, checking the terminal is back in cooked
    mode with echo and the full-screen view is gone."""
    screen = wait_screen(sock, lambda s: "EXIT=" in s and "echo" in s.split("EXIT=")[1])
    after = screen.split("EXIT=")[1].split()
    assert "icanon" in after and "echo" in after            # cooked mode and echo back
    assert "TUBE" not in screen                              # the full screen is gone
    return int(after[0])


@needs_tmux
def test_top_under_tmux(cli, conn_factory):
    # '$' sorts before the other tubes' names: the row is on screen however many
    # tubes other tests left behind
    tube = "$top-" + uuid.uuid4().hex[:12]
    bconn = conn_factory(tube, encoding=None)
    for body in (b"1", b"2", b"3", b"4"):
        bconn.put(body)
    bconn.bury(bconn.reserve_job(bconn.peek_ready().jid).jid)
    with top_in_tmux(cli, cli.env["BEANSTALK_URL"]) as sock:
        row = re.compile(r"^%s +3 +0 +0 +1 +0 +- " % re.escape(tube), re.M)
        screen = wait_screen(sock, lambda s: row.search(s) is not None)
        assert "TUBE" in screen and "READY" in screen and "beanstalkd " in screen
        # the rates appear once a second sample exists; a put shows in the counts
        bconn.put(b"5")
        row = re.compile(r"^%s +4 +0 +0 +1 +0 +- +\d+\.\d +\d+\.\d" % re.escape(tube), re.M)
        wait_screen(sock, lambda s: row.search(s) is not None)
        # narrower window: redrawn within it
        subprocess.run(["tmux", "-L", sock, "resize-window", "-x", "60", "-y", "12"], check=True,
                       timeout=10)
        wait_screen(sock, lambda s: "TUBE" in s and all(
            len(line.rstrip()) <= 60 for line in s.splitlines()))
        subprocess.run(["tmux", "-L", sock, "send-keys", "q"], check=True, timeout=10)
        assert exit_screen(sock) == 0
    empty_tube(bconn, tube)


def test_top_needs_a_terminal(cli):
    res = cli("top", rc=2)                 # stdin and stdout are pipes here
    assert "top needs a terminal" in res.err


@needs_tmux
def test_top_server_gone_exits_3_and_restores_terminal(cli):
    port = free_port()
    proc = start_beanstalkd(["-l", "127.0.0.1", "-p", str(port)])
    try:
        with top_in_tmux(cli, "127.0.0.1:%d" % port) as sock:
            wait_screen(sock, lambda s: re.search(r"^default +0 ", s, re.M) is not None)
            stop_beanstalkd(proc)
            assert exit_screen(sock) == 3
            screen = capture(sock)
            assert re.search(r"^beanstalkc-fast: 127\.0\.0\.1:%d: .+$" % port, screen, re.M), screen
            assert "Traceback" not in screen
    finally:
        stop_beanstalkd(proc)


# -- server-free pieces ------------------------------------------------------------

@pytest.mark.parametrize("url, kwargs", [
    ("localhost:11300", {"host": "localhost", "port": 11300}),
    ("example.org", {"host": "example.org", "port": 11300}),
    ("beanstalk://10.0.0.5:1234/", {"host": "10.0.0.5", "port": 1234}),
    ("[::1]:11301", {"host": "::1", "port": 11301}),
    ("beanstalk://[::1]", {"host": "::1", "port": 11300}),
    ("unix:///run/beanstalkd.sock", {"unix_socket": "/run/beanstalkd.sock"}),
    ("beanstalk://h:7?socket_timeout=2.5&auto_reconnect=yes",
     {"host": "h", "port": 7, "socket_timeout": 2.5, "auto_reconnect": True}),
    ("h?connect_timeout=none", {"host": "h", "port": 11300, "connect_timeout": None}),
])
def test_parse_url(url, kwargs):
    from beanstalkc_fast.cli import parse_url
    assert parse_url(url) == kwargs


def test_parse_url_beanstalks():
    import ssl
    from beanstalkc_fast.cli import parse_url
    kwargs = parse_url("beanstalks://127.0.0.1:1?server_hostname=localhost")
    assert isinstance(kwargs.pop("ssl"), ssl.SSLContext)
    assert kwargs == {"host": "127.0.0.1", "port": 1, "server_hostname": "localhost"}


@pytest.mark.parametrize("url, message", [
    ("", "host is missing"), ("ftp://x:1", "scheme"), ("host:0", "port"), ("host:65536", "port"),
    ("host:http", "port"), ("[::1", "malformed"), ("unix://relative/path", "unix"),
    (":11300", "host is missing"), ("[::1]x", "IPv6"), ("h/tube", "tubes as arguments"),
    ("h?encoding=latin-1", "encoding has no meaning"), ("h?nope=1", "unknown"),
    ("beanstalks://h?ca_file=/nonexistent.pem", "ca_file"),
    ("beanstalk://h?ca_file=/x.pem", "beanstalks")])
def test_parse_url_rejects(url, message):
    from beanstalkc_fast.cli import UsageError, parse_url
    with pytest.raises(UsageError, match=message):
        parse_url(url)


def test_tls_url(cli, tunnel):
    base = "beanstalks://localhost:%d" % tunnel.ports["valid"]
    res = cli("--json", "tubes", url=base + "?ca_file=" + tunnel.path("ca.pem"))
    assert "default" in [row["tube"] for row in res.json()]
    res = cli("tubes", url=base, rc=3)                       # the system CAs do not trust it
    assert "certificate verify failed" in res.err


def test_table_fits_and_aligns():
    from beanstalkc_fast.cli import table
    lines = table(["TUBE", "READY"], [["a" * 200, 1], ["b", 12345]], width=30)
    assert all(len(line) <= 30 for line in lines)
    assert lines[1].endswith("~      1") and lines[2].endswith("  12345")
    assert lines[2].startswith("b ")


def test_parse_record_round_trips_body_fields():
    from beanstalkc_fast.cli import UsageError, body_fields, parse_record
    for body in (b"text \xe2\x98\x83", b"\x00\xff", b""):
        rec = dict(body_fields(body), priority=1, ttr=2, delay=3, tube="t", state="buried")
        job = parse_record(json.dumps(rec).encode(), 1)
        assert (job["body"], job["priority"], job["ttr"], job["delay"], job["tube"],
                job["state"]) == (body, 1, 2, 3, "t", "buried")
    for bad in (b"[]", b'{"nobody": 1}', b'{"body": "x", "state": "reserved"}',
                b'{"body": "!!", "body_encoding": "base64"}', b'{"body": "x", "ttr": true}'):
        with pytest.raises(UsageError, match="line 7"):
            parse_record(bad, 7)
