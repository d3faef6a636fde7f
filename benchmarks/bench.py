"""Throughput and client CPU per op of beanstalkc_fast (Cython core and pure-Python
core; sync and asyncio), the peer clients (greenstalk; aiostalk for asyncio) and the
project's own minimal C client (benchmarks/refclient.c), side by side in one run
against one beanstalkd, interleaved round-robin, median of --repeat measurements,
ratios to the C client (asyncio workloads: to its pipelined rate, in a second table),
each the median of the rounds' own ratios (client and C measured back to back).

    python benchmarks/bench.py [--seconds 0.7] [--repeat 3] [--pin] [--quick]
                               [--no-peers] [--no-chart] [--publish]
                               [--workloads put,resdel,...] [--clients C,cython,...]

`make bench` runs it (BENCH_ARGS=... passes options). It builds the C client with
`cc -O2` into benchmarks/build/, installs missing peers and matplotlib (for the
chart) into the benchmark-only virtual environment .venv-bench/ (or the user site
when no venv can be made), starts its own beanstalkd on a free loopback port and
stops it by PID at the end. Every measurement runs in its own process on a fresh
tube; CPU is the client's user+sys time over the timed section only. The Markdown
table goes to stdout and, with the JSON and the chart, to benchmarks/results/runs/.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import site
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
REF_SRC = BENCH_DIR / "refclient.c"
RESULTS_DIR = BENCH_DIR / "results"          # published chart and table (committed)
RUNS_DIR = RESULTS_DIR / "runs"              # every run's outputs (not committed)
# the benchmark-only venv, one per base interpreter (same path inside the venv and outside it)
VENV = ROOT / ".venv-bench" / ("%s-%d.%d-%s" % (
    sys.implementation.name, *sys.version_info[:2],
    hashlib.sha1(sys.base_prefix.encode()).hexdigest()[:8]))

SYNC_WORKLOADS = ("put", "resdel", "cycle", "put64k", "stats")
BATCH_WORKLOADS = ("pput", "pres")
# asyncio (beanstalkc_fast.asyncio, aiostalk): aput = sequential awaited put (aputuv: the same
# on uvloop), agather = single puts issued concurrently GATHER at a time on one connection
# (agatheruv: on uvloop),
# aput_many = put_many, ares_many = reserve_many + delete_many. Their C reference is the
# pipelined C client (pput; ares_many: pres), the limit for an asyncio client.
ASYNC_WORKLOADS = ("aput", "aputuv", "agather", "agatheruv", "aput_many", "ares_many")
UVLOOP_WORKLOADS = ("aputuv", "agatheruv")
ASYNC_BATCH_WORKLOADS = ("aput_many", "ares_many")
WORKLOADS = list(SYNC_WORKLOADS + BATCH_WORKLOADS + ASYNC_WORKLOADS)
PUT_WORKLOADS = ("put", "put64k", "pput")
# workload -> (refclient workload, body bytes)
C_WORKLOADS = {"put": ("put", 100), "resdel": ("resdel", 100), "cycle": ("cycle", 100),
               "put64k": ("put", 65536), "stats": ("stats", 100),
               "pput": ("pput", 100), "pres": ("pres", 100),
               "aput": ("pput", 100), "aputuv": ("pput", 100), "agather": ("pput", 100),
               "agatheruv": ("pput", 100),
               "aput_many": ("pput", 100), "ares_many": ("pres", 100)}
# ops per calibration probe; --quick measures once with these sizes, uncalibrated
PROBE_N = {"put": 500, "resdel": 500, "cycle": 300, "put64k": 200, "stats": 500,
           "pput": 5000, "pres": 5000,
           "aput": 500, "aputuv": 500, "agather": 5000, "agatheruv": 5000,
           "aput_many": 5000, "ares_many": 5000}
GATHER = 1000                # agather: puts in flight per asyncio.gather
MIN_N = 200
BATCH = 512                  # pipelining window and batch size (C: -W/-B)
SEGMENT_BYTES = 128 << 20    # put workloads drain (untimed) every 128 MiB, like the C client
NOT_FOUND = "beanstalkd not found: sudo apt-get install -y beanstalkd"

CORES = ("cython", "python")


@dataclass(frozen=True)
class Peer:
    """Another client measured beside ours; installed on demand unless --no-peers."""
    module: str                   # import name
    requirement: str              # pip requirement
    workloads: Tuple[str, ...]    # the workloads it can run (others are skipped)
    optional: bool = False        # when it fails to install or to run, its rows say "skipped"


# Peers by client name: a Peer entry, a connect function in CONNECT (ACONNECT for asyncio),
# and runners in RUNNERS (ARUNNERS). aiostalk has no batch API and serializes nothing: its
# concurrent calls on one connection would race for the reply stream, so no agather row.
PEERS: Dict[str, Peer] = {
    "greenstalk": Peer("greenstalk", "greenstalk", SYNC_WORKLOADS),
    "aiostalk": Peer("aiostalk", "aiostalk", ("aput", "aputuv"), optional=True),
}
CHART = ("matplotlib", "matplotlib")          # optional: the chart (import name, requirement)
CLIENTS = ["C", *CORES, *PEERS]


def body_size(workload: str) -> int:
    return C_WORKLOADS[workload][1]


# ------------------------------------------------------------------------------------
# worker: one client, one workload, one measurement, in its own process
# ------------------------------------------------------------------------------------

def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


SERVER_PID: Optional[int] = None     # the worker's beanstalkd, whose CPU is counted too


def _server_cpu() -> float:
    """beanstalkd's user+system CPU seconds so far (clock ticks: 10 ms), or 0."""
    if SERVER_PID is None:
        return 0.0
    try:
        with open("/proc/%d/stat" % SERVER_PID) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime


class _Timer:
    """Accumulates wall, CPU and the server's CPU time over possibly several
    timed segments."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.server = 0.0

    def __enter__(self) -> "_Timer":
        self._s0 = _server_cpu()
        self._c0 = _cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        t1 = time.perf_counter()
        c1 = _cpu()
        self.wall += t1 - self._t0
        self.cpu += c1 - self._c0
        self.server += _server_cpu() - self._s0


def _connect_core(impl: str, port: int, tube: str) -> Any:
    import beanstalkc_fast as bc
    if bc.IMPLEMENTATION != impl:
        raise SystemExit("beanstalkc_fast.IMPLEMENTATION is %r, expected %r"
                         % (bc.IMPLEMENTATION, impl))
    c = bc.Connection(host="127.0.0.1", port=port, encoding=None)
    c.use(tube)
    c.watch(tube)
    c.ignore("default")
    return c


def _connect_greenstalk(impl: str, port: int, tube: str) -> Any:
    import greenstalk
    return greenstalk.Client(("127.0.0.1", port), encoding=None, use=tube, watch=tube)


CONNECT: Dict[str, Callable[[str, int, str], Any]] = {
    "cython": _connect_core, "python": _connect_core, "greenstalk": _connect_greenstalk,
}


def _has_batch(c: Any) -> bool:
    return all(hasattr(c, m) for m in ("put_many", "reserve_many", "delete_many"))


def _fill(impl: str, c: Any, n: int, body: bytes) -> None:
    """Untimed prefill of n jobs."""
    if impl in CORES and hasattr(c, "put_many"):
        left = n
        while left:
            k = min(left, 10000)
            c.put_many([body] * k)
            left -= k
    else:
        for _ in range(n):
            c.put(body)


def _drain(impl: str, c: Any) -> int:
    """Untimed: delete every ready job of the watched tube; returns the count."""
    count = 0
    if impl == "greenstalk":
        import greenstalk
        while True:
            try:
                job = c.reserve(timeout=0)
            except greenstalk.TimedOutError:
                return count
            c.delete(job)
            count += 1
    if _has_batch(c):
        while True:
            jobs = c.reserve_many(BATCH, timeout=0)
            if not jobs:
                return count
            c.delete_many(jobs)
            count += len(jobs)
    while True:
        job = c.reserve(timeout=0)
        if job is None:
            return count
        job.delete()
        count += 1


def _run_put(impl: str, c: Any, n: int, body: bytes, batch: bool) -> _Timer:
    timer = _Timer()
    seg = max(1, SEGMENT_BYTES // len(body))
    left = n
    put = c.put
    while left:
        k = min(left, seg)
        if batch:
            bodies = [body] * k
            with timer:
                ids = c.put_many(bodies)
            if len(ids) != k:
                raise SystemExit("put_many returned %d ids for %d bodies" % (len(ids), k))
        else:
            with timer:
                for _ in range(k):
                    put(body)
        drained = _drain(impl, c)
        if drained != k:
            raise SystemExit("drained %d jobs, expected %d" % (drained, k))
        left -= k
    return timer


def _run_resdel(impl: str, c: Any, n: int, body: bytes) -> _Timer:
    _fill(impl, c, n, body)
    timer = _Timer()
    reserve = c.reserve
    if impl == "greenstalk":
        delete = c.delete
        with timer:
            for _ in range(n):
                delete(reserve(timeout=0))
    else:
        with timer:
            for _ in range(n):
                reserve(timeout=0).delete()
    return timer


def _run_cycle(impl: str, c: Any, n: int, body: bytes) -> _Timer:
    timer = _Timer()
    put, reserve = c.put, c.reserve
    if impl == "greenstalk":
        delete = c.delete
        with timer:
            for _ in range(n):
                put(body)
                delete(reserve(timeout=0))
    else:
        with timer:
            for _ in range(n):
                put(body)
                reserve(timeout=0).delete()
    return timer


def _run_stats(impl: str, c: Any, n: int, body: bytes) -> _Timer:
    s = c.stats()
    if not isinstance(s, dict) or "current-jobs-ready" not in s:
        raise SystemExit("stats() did not return a parsed dict: %r" % (type(s),))
    timer = _Timer()
    stats = c.stats
    with timer:
        for _ in range(n):
            stats()
    return timer


def _run_pres(impl: str, c: Any, n: int, body: bytes) -> _Timer:
    _fill(impl, c, n, body)
    timer = _Timer()
    reserve_many, delete_many = c.reserve_many, c.delete_many
    left = n
    with timer:
        while left:
            jobs = reserve_many(min(BATCH, left), timeout=0)
            if not jobs:
                break
            delete_many(jobs)
            left -= len(jobs)
    if left:
        raise SystemExit("pres: %d prefilled jobs missing" % left)
    return timer


# workload -> runner(impl, connection, n, body) returning the timed sections
RUNNERS: Dict[str, Callable[[str, Any, int, bytes], _Timer]] = {
    "put": lambda impl, c, n, body: _run_put(impl, c, n, body, batch=False),
    "put64k": lambda impl, c, n, body: _run_put(impl, c, n, body, batch=False),
    "pput": lambda impl, c, n, body: _run_put(impl, c, n, body, batch=True),
    "resdel": _run_resdel,
    "cycle": _run_cycle,
    "stats": _run_stats,
    "pres": _run_pres,
}


# --- asyncio workloads: the same measurements, each inside one event loop ---

async def _aconnect_core(impl: str, port: int, tube: str) -> Any:
    import beanstalkc_fast.asyncio as aio
    core = importlib.import_module(
        "beanstalkc_fast._protocol" if impl == "cython" else "beanstalkc_fast._pyprotocol")
    c = await aio.connect("127.0.0.1", port, encoding=None, core=core)
    await c.use(tube)
    await c.watch(tube)
    await c.ignore("default")
    return c


async def _aconnect_aiostalk(impl: str, port: int, tube: str) -> Any:
    aiostalk: Any = importlib.import_module("aiostalk")  # optional: may be missing for mypy
    c = aiostalk.Client(("127.0.0.1", port), encoding=None, use=tube, watch=tube)
    await c.connect()
    return c


ACONNECT: Dict[str, Callable[[str, int, str], Awaitable[Any]]] = {
    "cython": _aconnect_core, "python": _aconnect_core, "aiostalk": _aconnect_aiostalk,
}


async def _adrain(impl: str, c: Any) -> int:
    """Untimed: delete every ready job of the watched tube; returns the count."""
    count = 0
    if impl == "aiostalk":
        import greenstalk  # aiostalk raises greenstalk's errors
        while True:
            try:
                job = await c.reserve(timeout=0)
            except greenstalk.TimedOutError:
                return count
            await c.delete(job)
            count += 1
    while True:
        jobs = await c.reserve_many(BATCH, timeout=0)
        if not jobs:
            return count
        await c.delete_many(jobs)
        count += len(jobs)


async def _arun_put(impl: str, c: Any, n: int, body: bytes, mode: str) -> _Timer:
    """mode: "seq" (awaited one by one), "gather" (GATHER concurrent puts), "many" (put_many)."""
    timer = _Timer()
    seg = max(1, SEGMENT_BYTES // len(body))
    left = n
    put = c.put
    while left:
        k = min(left, seg)
        if mode == "many":
            bodies = [body] * k
            with timer:
                ids = await c.put_many(bodies)
            if len(ids) != k:
                raise SystemExit("put_many returned %d ids for %d bodies" % (len(ids), k))
        elif mode == "gather":
            with timer:
                done = 0
                while done < k:
                    g = min(GATHER, k - done)
                    await asyncio.gather(*[put(body) for _ in range(g)])
                    done += g
        else:
            with timer:
                for _ in range(k):
                    await put(body)
        drained = await _adrain(impl, c)
        if drained != k:
            raise SystemExit("drained %d jobs, expected %d" % (drained, k))
        left -= k
    return timer


async def _arun_res_many(impl: str, c: Any, n: int, body: bytes) -> _Timer:
    left = n
    while left:  # untimed prefill
        k = min(left, 10000)
        await c.put_many([body] * k)
        left -= k
    timer = _Timer()
    reserve_many, delete_many = c.reserve_many, c.delete_many
    left = n
    with timer:
        while left:
            jobs = await reserve_many(min(BATCH, left), timeout=0)
            if not jobs:
                break
            await delete_many(jobs)
            left -= len(jobs)
    if left:
        raise SystemExit("ares_many: %d prefilled jobs missing" % left)
    return timer


ARUNNERS: Dict[str, Callable[[str, Any, int, bytes], Awaitable[_Timer]]] = {
    "aput": lambda impl, c, n, body: _arun_put(impl, c, n, body, "seq"),
    "aputuv": lambda impl, c, n, body: _arun_put(impl, c, n, body, "seq"),
    "agather": lambda impl, c, n, body: _arun_put(impl, c, n, body, "gather"),
    "agatheruv": lambda impl, c, n, body: _arun_put(impl, c, n, body, "gather"),
    "aput_many": lambda impl, c, n, body: _arun_put(impl, c, n, body, "many"),
    "ares_many": _arun_res_many,
}


async def _aworker(impl: str, port: int, workload: str, n: int, tube: str) -> Optional[_Timer]:
    c = await ACONNECT[impl](impl, port, tube)
    if workload in ASYNC_BATCH_WORKLOADS and not _has_batch(c):
        await c.close()
        return None
    timer = await ARUNNERS[workload](impl, c, n, b"x" * body_size(workload))
    await _adrain(impl, c)  # leave the tube empty whatever happened
    await c.close()
    return timer


def worker(impl: str, port: int, workload: str, n: int) -> None:
    """Run one measurement of n ops; print one JSON line."""
    tube = "bench-%s-%s-%s" % (workload, impl, uuid.uuid4().hex[:10])
    if workload in ASYNC_WORKLOADS:
        if workload in UVLOOP_WORKLOADS:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        atimer = asyncio.run(_aworker(impl, port, workload, n, tube))
        if atimer is None:
            print(json.dumps({"skip": "no put_many/reserve_many/delete_many"}))
            return
        print(json.dumps({"impl": impl, "workload": workload, "n": n, "seconds": atimer.wall,
                          "ops_per_s": n / atimer.wall,
                          "cpu_us_per_op": atimer.cpu / n * 1e6,
                          "server_cpu_us_per_op": atimer.server / n * 1e6}))
        return
    c = CONNECT[impl](impl, port, tube)
    if workload in BATCH_WORKLOADS and not _has_batch(c):
        print(json.dumps({"skip": "no put_many/reserve_many/delete_many"}))
        return
    timer = RUNNERS[workload](impl, c, n, b"x" * body_size(workload))
    _drain(impl, c)  # leave the tube empty whatever happened
    c.close()
    print(json.dumps({"impl": impl, "workload": workload, "n": n, "seconds": timer.wall,
                      "ops_per_s": n / timer.wall, "cpu_us_per_op": timer.cpu / n * 1e6,
                      "server_cpu_us_per_op": timer.server / n * 1e6}))


# ------------------------------------------------------------------------------------
# setup: the C client, the peers and matplotlib
# ------------------------------------------------------------------------------------

def build_refclient(src: Path = REF_SRC) -> Tuple[Optional[str], Optional[str]]:
    """(path of the C client built from src, None), rebuilt with `cc -O2` into
    benchmarks/build/ when older than its source, or (None, why it could not be built)."""
    exe = BENCH_DIR / "build" / src.stem
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return str(exe), None
    cc = os.environ.get("CC") or shutil.which("cc")
    if not cc:
        return None, "no C compiler (cc)"
    exe.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, "-O2", "-Wall", "-o", str(exe), str(src)]
    print("bench: " + " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, "cc failed: %s" % r.stderr.strip()[-300:]
    return str(exe), None


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _in_bench_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def provide(wanted: Dict[str, str], argv: List[str]) -> List[str]:
    """Make the modules {import name: pip requirement} importable. Missing ones are
    installed into the benchmark venv (created with --system-site-packages; this
    script then re-runs itself under it) or, when no venv can be made, into the user
    site. Returns a note for each module that stays missing."""
    missing = {m: r for m, r in wanted.items() if not _importable(m)}
    if not missing:
        return []
    if not _in_bench_venv() and not os.environ.get("BENCH_NO_VENV"):
        python = VENV / "bin" / "python"
        if not python.exists():
            print("bench: creating %s for %s" % (VENV.relative_to(ROOT), ", ".join(missing)),
                  file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)],
                           capture_output=True)
        if python.exists():
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])
    where = str(VENV.relative_to(ROOT)) if _in_bench_venv() else "the user site"
    notes = []
    for module, req in missing.items():
        print("bench: installing %s into %s" % (req, where), file=sys.stderr)
        base = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        tries = [base + [req]] if _in_bench_venv() else [
            base + ["--user", req], base + ["--user", "--break-system-packages", req]]
        for cmd in tries:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode == 0:
                break
        if not _in_bench_venv():
            site.addsitedir(site.getusersitepackages())
        importlib.invalidate_caches()
        if not _importable(module):
            err = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
            notes.append("%s not installed (%s)" % (req, err[:200]))
    return notes


# ------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------

def _pin_prefix(pin: bool) -> Tuple[List[str], Optional[Callable[[], None]]]:
    """(argv prefix, preexec_fn) placing a child on CPU 0 when pin is set."""
    if not pin:
        return [], None
    taskset = shutil.which("taskset")
    if taskset:
        return [taskset, "-c", "0"], None
    return [], lambda: os.sched_setaffinity(0, {0})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def start_server(exe: str, pin: bool) -> Tuple["subprocess.Popen[bytes]", int]:
    prefix, preexec = _pin_prefix(pin)
    for _ in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        proc = subprocess.Popen(prefix + [exe, "-l", "127.0.0.1", "-p", str(port),
                                          "-z", "1048576"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=preexec)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return proc, port
            except OSError:
                time.sleep(0.02)
        stop(proc)
    raise SystemExit("beanstalkd did not start")


Result = Dict[str, Any]


class Runner:
    def __init__(self, port: int, pin: bool, refclient: Optional[str],
                 server_pid: Optional[int] = None) -> None:
        self.port, self.pin, self.refclient = port, pin, refclient
        self.server_pid = server_pid
        self.prefix, self.preexec = _pin_prefix(pin)

    def client_env(self, impl: str) -> Dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
        if impl == "python":
            env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
        return env

    def _run(self, cmd: List[str], env: Optional[Dict[str, str]] = None) -> Result:
        r = subprocess.run(self.prefix + cmd, capture_output=True, text=True, env=env,
                           preexec_fn=self.preexec, timeout=600)
        lines = r.stdout.strip().splitlines()
        if r.returncode not in (0, 1) or not lines:
            err = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
            return {"error": err[:200]}
        result: Result = json.loads(lines[-1])
        return result

    def measure(self, client: str, workload: str, n: int) -> Result:
        """{"ops_per_s", "cpu_us_per_op"} or {"skip"/"error": reason}."""
        if client == "C":
            assert self.refclient is not None
            cw, size = C_WORKLOADS[workload]
            server = [] if self.server_pid is None else ["-P", str(self.server_pid)]
            d = self._run([self.refclient, "-p", str(self.port), "-w", cw, "-n", str(n),
                           "-s", str(size), "-W", str(BATCH), "-B", str(BATCH), *server])
            if "error" in d:
                return d
            if d.get("verified") is not True:
                return {"error": "refclient: verification failed"}
            result = {"ops_per_s": d["ops_per_s"],
                      "cpu_us_per_op": (d["cpu_user_s"] + d["cpu_sys_s"]) / d["n"] * 1e6}
            if d.get("server_cpu_s") is not None:
                result["server_cpu_us_per_op"] = d["server_cpu_s"] / d["n"] * 1e6
            return result
        if client in PEERS and workload not in PEERS[client].workloads:
            return {"skip": "no %s workload" % workload}
        server = [] if self.server_pid is None else ["--server-pid", str(self.server_pid)]
        return self._run([sys.executable, str(Path(__file__).resolve()), "--worker",
                          "--impl", client, "--port", str(self.port), *server,
                          "--workload", workload, "-n", str(n)], env=self.client_env(client))

    def check_impl(self, impl: str) -> Optional[str]:
        """None when the core is importable as itself, else the reason."""
        code = "import beanstalkc_fast as b; print(b.IMPLEMENTATION)"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=self.client_env(impl), cwd=tempfile.gettempdir())
        got = r.stdout.strip()
        if r.returncode != 0:
            return "import failed: %s" % (r.stderr.strip().splitlines() or ["?"])[-1]
        if got != impl:
            return "IMPLEMENTATION is %r (core not built? run make build)" % got
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(args: argparse.Namespace, peers: Dict[str, str]) -> Dict[str, Any]:
    """Where and how this run was made (the table's header line and the JSON's "run")."""
    try:
        bs = subprocess.run(["beanstalkd", "-v"], capture_output=True, text=True)
        server = (bs.stdout or bs.stderr).strip()
    except OSError:
        server = "beanstalkd"
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "os": "%s %s %s" % (platform.system(), platform.release(), platform.machine()),
            "cpu": cpu_model(), "nproc": len(os.sched_getaffinity(0)),
            "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
            "server": server, "peers": peers,
            "placement": "pinned (server and clients on CPU 0)" if args.pin else "default",
            "repeat": args.repeat, "seconds": args.seconds, "quick": args.quick,
            "reference": args.ref.name}


def header(run: Dict[str, Any]) -> str:
    peers = "".join(", %s %s" % kv for kv in run["peers"].items())
    size = ("quick: one uncalibrated measurement" if run["quick"] else
            "median of %d, ~%gs per measurement" % (run["repeat"], run["seconds"]))
    return "%s | %s | %s | nproc %d | %s | %s%s | placement: %s | %s | C: %s" % (
        run["date"], run["os"], run["cpu"], run["nproc"], run["python"], run["server"],
        peers, run["placement"], size, run.get("reference", REF_SRC.name))


Cells = Dict[Tuple[str, str], Dict[str, Any]]


def summarize(results: Dict[Tuple[str, str], List[Result]]) -> Cells:
    """Median ops/s and CPU per op per (workload, client), with ratios to C."""
    cells: Cells = {}
    for key, runs in results.items():
        if runs:
            server = [r["server_cpu_us_per_op"] for r in runs if "server_cpu_us_per_op" in r]
            cells[key] = {"ops_per_s": statistics.median(r["ops_per_s"] for r in runs),
                          "cpu_us_per_op": statistics.median(r["cpu_us_per_op"] for r in runs),
                          "server_cpu_us_per_op": statistics.median(server) if server else None,
                          "runs": runs}
    for (w, _cl), cell in cells.items():
        ref = cells.get((w, "C"))
        cell["ratio"] = paired_ratio(cell["runs"], ref["runs"], "ops_per_s") if ref else None
        cell["cpu_ratio"] = (paired_ratio(cell["runs"], ref["runs"], "cpu_us_per_op")
                             if ref and ref["cpu_us_per_op"] > 0 else None)
    return cells


def paired_ratio(runs: List[Result], ref_runs: List[Result], key: str) -> Optional[float]:
    """The median over rounds of runs[i][key] / ref_runs[i][key], each pair measured
    back to back in one round (a machine whose speed drifts between rounds moves both
    alike); the ratio of the medians when the runs carry no round (older JSON)."""
    ref = {r["round"]: r[key] for r in ref_runs if "round" in r and r[key] > 0}
    pairs = [r[key] / ref[r["round"]] for r in runs if r.get("round") in ref]
    if pairs:
        return statistics.median(pairs)
    base = statistics.median(r[key] for r in ref_runs)
    return statistics.median(r[key] for r in runs) / base if base > 0 else None


def table(cells: Cells, workloads: List[str], clients: List[str]) -> str:
    out = [("| workload | client | ops/s | ratio to C | CPU µs/op | CPU ratio to C "
            "| server CPU µs/op |"),
           "|---|---|---:|---:|---:|---:|---:|"]
    for w in workloads:
        for cl in clients:
            cell = cells.get((w, cl))
            if cell is None:
                continue
            ratio = "-" if cell["ratio"] is None else "%.2f" % cell["ratio"]
            cratio = "-" if cell["cpu_ratio"] is None else "%.2f" % cell["cpu_ratio"]
            server = cell.get("server_cpu_us_per_op")
            out.append("| %s | %s | %s | %s | %.1f | %s | %s |" % (
                w, cl, format(int(round(cell["ops_per_s"])), ","), ratio,
                cell["cpu_us_per_op"], cratio, "-" if server is None else "%.1f" % server))
    return "\n".join(out)


ASYNC_LEGEND = (
    "asyncio (beanstalkc_fast.asyncio; aiostalk): aput = sequential awaited put, aputuv = aput on "
    "uvloop, agather = single puts issued concurrently %d at a time on one connection (agatheruv: "
    "on uvloop), aput_many = "
    "put_many, ares_many = reserve_many(%d, timeout=0) + delete_many. \"ratio to C\" is to the C "
    "client's pipelined rate (pput; ares_many: pres); \"to aiostalk\" divides by aiostalk's "
    "row of the same workload (aput, aputuv), else by its sequential put on the same loop (aput, "
    "aputuv); \"to sync "
    "put\" divides by the same client's sync put (aiostalk: greenstalk's), when put ran too."
    % (GATHER, BATCH))


SYNC_TWIN = {"aiostalk": "greenstalk"}   # an asyncio peer's sync sibling (to sync put)


def _optional(client: str) -> bool:
    return client in PEERS and PEERS[client].optional


def atable(cells: Cells, skipped: Dict[Tuple[str, str], str], workloads: List[str],
           clients: List[str]) -> str:
    """The asyncio workloads' table: ratios to the pipelined C client, to aiostalk (its
    row of the same workload, else its sequential put) and (aput, aputuv) to the client's
    own sync put; skipped rows say why."""
    out = [("| workload | client | ops/s | ratio to C pipelined | CPU µs/op | CPU ratio to C "
            "| to aiostalk | to sync put |"),
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for w in workloads:
        peer = cells.get((w, "aiostalk")) or cells.get(
            ("aputuv" if w in UVLOOP_WORKLOADS else "aput", "aiostalk"))
        for cl in clients + [c for c in PEERS if c not in clients and _optional(c)]:
            cell = cells.get((w, cl))
            if cell is None:
                if (w, cl) in skipped:
                    out.append("| %s | %s | skipped: %s | | | | | |" % (w, cl, skipped[(w, cl)]))
                continue
            sync = cells.get(("put", SYNC_TWIN.get(cl, cl)))

            def r(x: Optional[float]) -> str:
                return "-" if x is None else "%.2f" % x
            out.append("| %s | %s | %s | %s | %.1f | %s | %s | %s |" % (
                w, cl, format(int(round(cell["ops_per_s"])), ","), r(cell["ratio"]),
                cell["cpu_us_per_op"], r(cell["cpu_ratio"]),
                r(cell["ops_per_s"] / peer["ops_per_s"] if peer and cl != "C" else None),
                r(cell["ops_per_s"] / sync["ops_per_s"]
                  if sync and cl != "C" and w in ("aput", "aputuv") else None)))
    return "\n".join(out)


def chart(cells: Cells, workloads: List[str], clients: List[str], title: str,
          path: Path) -> Optional[str]:
    """Draw ops/s as a ratio to the C client, one bar per client and workload, into
    path (PNG). Returns why not when matplotlib is missing or nothing has a ratio."""
    if not _importable("matplotlib"):
        return "matplotlib not installed"
    importlib.import_module("matplotlib").use("Agg")  # no display needed
    plt: Any = importlib.import_module("matplotlib.pyplot")
    shown = [cl for cl in clients if cl != "C"
             and any(cells.get((w, cl), {}).get("ratio") for w in workloads)]
    rows = [w for w in workloads if any(cells.get((w, cl), {}).get("ratio") for cl in shown)]
    if not rows:
        return "no ratios to the C client to draw"
    fig, ax = plt.subplots(figsize=(max(10, 1.1 * len(rows)), 4.8), dpi=110)
    width = 0.8 / len(shown)
    for i, cl in enumerate(shown):
        xs = [j + (i - (len(shown) - 1) / 2) * width for j, w in enumerate(rows)
              if cells.get((w, cl), {}).get("ratio")]
        ys = [cells[(w, cl)]["ratio"] for w in rows if cells.get((w, cl), {}).get("ratio")]
        bars = ax.bar(xs, ys, width * 0.92, label=cl)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--", label="C client = 1")
    ax.set_xticks(range(len(rows)), rows)
    ax.set_ylabel("ops/s relative to the C client")
    ax.set_title("\n".join(textwrap.wrap(title, 120)), fontsize=8)
    ax.legend(fontsize=8, ncol=len(shown) + 1, loc="upper left")
    ax.set_ylim(0, max(1.25, max(c["ratio"] or 0 for c in cells.values()) * 1.15))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.7, help="target seconds per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per cell (median)")
    ap.add_argument("--pin", action="store_true", help="server and clients on CPU 0 (taskset)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: one small uncalibrated measurement per cell; "
                         "matplotlib is not installed for it (the chart is drawn if present)")
    ap.add_argument("--no-peers", action="store_true",
                    help="neither install nor measure the peer clients (%s)" % ", ".join(PEERS))
    ap.add_argument("--no-chart", action="store_true", help="no chart, no matplotlib install")
    ap.add_argument("--publish", action="store_true",
                    help="also write the table and chart to benchmarks/results/ (for the README)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--ref", type=Path, default=REF_SRC, metavar="C_SOURCE",
                    help="C reference client to build and quote ratios against "
                         "(default: benchmarks/refclient.c; same flags and JSON as "
                         "../shared/bench/limit.c)")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("-n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        global SERVER_PID
        SERVER_PID = args.server_pid
        return worker(args.impl, args.port, args.workload, args.n)

    if args.quick:
        args.repeat = 1
    workloads = [w for w in args.workloads.split(",") if w]
    clients = [c for c in args.clients.split(",") if c]
    bad = [w for w in workloads if w not in WORKLOADS] + [c for c in clients if c not in CLIENTS]
    if bad:
        ap.error("unknown workload/client: %s (workloads: %s; clients: %s)"
                 % (",".join(bad), ",".join(WORKLOADS), ",".join(CLIENTS)))
    if args.no_peers:
        clients = [c for c in clients if c not in PEERS]

    exe = shutil.which("beanstalkd")
    if exe is None:
        print(NOT_FOUND, file=sys.stderr)
        sys.exit(2)

    wanted = {PEERS[c].module: PEERS[c].requirement for c in clients if c in PEERS}
    draw = not args.no_chart
    if draw and not args.quick:
        wanted[CHART[0]] = CHART[1]
    notes = provide(wanted, argv)
    skipped: Dict[Tuple[str, str], str] = {}   # (workload, optional peer) -> why no number
    for cl in [c for c in clients if c in PEERS and not _importable(PEERS[c].module)]:
        clients.remove(cl)
        notes.append("%s skipped: not installed" % cl)
        for w in PEERS[cl].workloads:
            skipped[(w, cl)] = "not installed"
    peer_versions = {}
    for cl in clients:
        if cl in PEERS:
            try:
                peer_versions[cl] = importlib.metadata.version(PEERS[cl].requirement)
            except importlib.metadata.PackageNotFoundError:
                peer_versions[cl] = "?"

    failures: List[str] = []   # each one makes the run exit 1
    refclient = None
    if "C" in clients:
        refclient, why = build_refclient(args.ref.resolve())
        if refclient is None:
            failures.append("C client not built: %s" % why)
            clients.remove("C")

    run = machine(args, peer_versions)
    print(header(run), file=sys.stderr)
    proc = None
    results: Dict[Tuple[str, str], List[Result]] = {}
    try:
        proc, port = start_server(exe, args.pin)
        runner = Runner(port, args.pin, refclient, proc.pid)
        for impl in CORES:
            if impl in clients:
                why = runner.check_impl(impl)
                if why:
                    failures.append("%s not measured: %s" % (impl, why))
                    clients.remove(impl)
        for w in workloads:
            sizes = {}
            for cl in clients:  # calibration: size each measurement to ~--seconds
                if args.quick:
                    sizes[cl] = PROBE_N[w]
                    continue
                probe = runner.measure(cl, w, PROBE_N[w])
                if "skip" in probe or "error" in probe:
                    if "error" in probe and _optional(cl):
                        skipped[(w, cl)] = probe["error"]
                    elif "error" in probe:
                        failures.append("%s/%s failed: %s" % (w, cl, probe["error"]))
                    continue
                sizes[cl] = max(MIN_N, int(probe["ops_per_s"] * args.seconds))
            for rep in range(args.repeat):
                for cl in clients:  # round-robin: C, cython, python, peers
                    if cl not in sizes:
                        continue
                    r = runner.measure(cl, w, sizes[cl])
                    if "skip" in r:
                        continue
                    if "error" in r and _optional(cl):
                        skipped[(w, cl)] = r["error"]
                        continue
                    if "error" in r:
                        failures.append("%s/%s run %d failed: %s"
                                        % (w, cl, rep + 1, r["error"]))
                        continue
                    r["round"] = rep
                    results.setdefault((w, cl), []).append(r)
                    print("  %-7s %-10s run %d: %10.0f ops/s %8.1f CPU us/op" % (
                        w, cl, rep + 1, r["ops_per_s"], r["cpu_us_per_op"]),
                        file=sys.stderr)
    finally:
        if proc is not None:
            stop(proc)

    cells = summarize(results)
    head = header(run)
    sync_w = [w for w in workloads if w not in ASYNC_WORKLOADS]
    async_w = [w for w in workloads if w in ASYNC_WORKLOADS]
    async_part = ["", atable(cells, skipped, async_w, clients), "", ASYNC_LEGEND] if async_w else []
    md = "\n".join([head, "", table(cells, sync_w, clients)] + async_part + ["",
                    "Bodies are 100 bytes (put64k: 64 KiB), read as raw bytes (encoding=None). "
                    "Ratios to C: the median over rounds of each round's ratio (a round measures "
                    "C and then every client, back to back). "
                    "CPU = client user+sys over the timed section; server CPU = beanstalkd's "
                    "user+sys over it (10 ms clock ticks; for the C client, as it reports "
                    "it). Batch workloads use put_many / reserve_many(%d, timeout=0)+delete_many "
                    "(C: pipelined, window %d). "
                    "Peers without a batch API have no batch rows." % (BATCH, BATCH)]
                   + ["- " + n for n in notes + failures]) + "\n"
    print(md)

    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RUNS_DIR / ("bench-%s%s%s" % (time.strftime("%Y%m%d-%H%M%S"),
                                         "-pinned" if args.pin else "",
                                         "-quick" if args.quick else ""))
    saved = [stem.with_suffix(".md"), stem.with_suffix(".json")]
    saved[0].write_text(md)
    saved[1].write_text(json.dumps({
        "run": run, "workloads": workloads, "clients": clients,
        "notes": notes, "failures": failures,
        "skipped": [{"workload": w, "client": cl, "why": why} for (w, cl), why in skipped.items()],
        "cells": [{"workload": w, "client": cl, **cells[(w, cl)]}
                  for w in workloads for cl in clients if (w, cl) in cells]}, indent=1) + "\n")
    png = stem.with_suffix(".png")
    why_not = chart(cells, workloads, clients, head, png) if draw else "--no-chart"
    if why_not is None:
        saved.append(png)
    if args.publish:
        RESULTS_DIR.mkdir(exist_ok=True)
        shutil.copyfile(saved[0], RESULTS_DIR / "bench.md")
        saved.append(RESULTS_DIR / "bench.md")
        if why_not is None:
            shutil.copyfile(png, RESULTS_DIR / "bench.png")
            saved.append(RESULTS_DIR / "bench.png")
    print("Results: " + ", ".join(str(p.relative_to(ROOT)) for p in saved)
          + ("" if why_not is None else " (no chart: %s)" % why_not))
    if failures:
        print("bench: FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)

if __name__ == "__main__":
    main()
