"""User-space instructions per operation of beanstalkc_fast, counted by callgrind
(valgrind): deterministic figures to set beside the noisy wall-clock benchmark.

    python benchmarks/instructions.py [-n 1000] [--workloads put,resdel,put64k,stats]
                                      [--cores cython,python]

`make profile` runs it. For each core, one client process runs under
`valgrind --tool=callgrind`: it connects, then for each workload (on its own tube)
runs the operation N times, then 3N times, marking the sections with os.getppid(),
before which callgrind dumps its counters (--dump-before=getppid). I(N) and I(3N)
are the two sections' instructions;
(I(3N) - I(N)) / 2N is the cost of one operation with interpreter startup, imports,
connecting and the per-section overhead cancelled out. Prefill (resdel) and cleanup
are done by this driver outside valgrind. Workloads: put (100 B body), resdel
(reserve(timeout=0) + Job + job.delete()), put64k (64 KiB body), stats (parsed dict),
pput (put_many, per job) and pres (reserve_many(512, timeout=0) + delete_many, per job);
asyncio (not run by default, --workloads aput,...): aput (awaited put), aputuv (on uvloop),
agather (puts gathered 1,000 at a time; agatheruv on uvloop), aput_many (put_many), ares_many
(reserve_many(512, timeout=0) + delete_many), bench.py's A1-A4 shapes.
Starts its own beanstalkd on a free loopback port and stops it by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(ROOT)]   # bench.py, and the package in this tree
import bench  # noqa: E402  (server start/stop and the core environment, shared with bench.py)

WORKLOADS = ["put", "resdel", "put64k", "stats", "pput", "pres"]
ASYNC_WORKLOADS = ["aput", "aputuv", "agather", "agatheruv", "aput_many", "ares_many"]
BODY = {"put": 100, "resdel": 100, "put64k": 65536, "stats": 100, "pput": 100, "pres": 100,
        "aput": 100, "aputuv": 100, "agather": 100, "agatheruv": 100, "aput_many": 100,
        "ares_many": 100}
PREFILLED = ("resdel", "pres", "ares_many")   # 4N jobs put by the driver, all taken by the client
PUTTING = ("put", "put64k", "pput", "aput", "aputuv", "agather", "agatheruv",
           "aput_many")  # leave 4N jobs
# fewer of the costly operations: 4N 64 KiB jobs sit in the server at once, and
# parsing stats in pure Python is slow under callgrind
SCALE = {"put64k": 10, "stats": 4}


def _op_put(c: Any, n: int, body: bytes) -> None:
    put = c.put
    for _ in range(n):
        put(body)


def _op_resdel(c: Any, n: int, body: bytes) -> None:
    reserve = c.reserve
    for _ in range(n):
        reserve(timeout=0).delete()


def _op_stats(c: Any, n: int, body: bytes) -> None:
    stats = c.stats
    for _ in range(n):
        stats()


def _op_pput(c: Any, n: int, body: bytes) -> None:
    c.put_many([body] * n)


def _op_pres(c: Any, n: int, body: bytes) -> None:
    reserve_many, delete_many = c.reserve_many, c.delete_many
    while n:
        jobs = reserve_many(min(512, n), timeout=0)
        delete_many(jobs)
        n -= len(jobs)


OPS: Dict[str, Callable[[Any, int, bytes], None]] = {
    "put": _op_put, "put64k": _op_put, "resdel": _op_resdel, "stats": _op_stats,
    "pput": _op_pput, "pres": _op_pres}


async def _aop(c: Any, workload: str, n: int, body: bytes) -> None:
    """n operations of an asyncio workload on the asyncio connection c."""
    if workload in ("aput", "aputuv"):
        for _ in range(n):
            await c.put(body)
    elif workload in ("agather", "agatheruv"):
        for k in range(0, n, 1000):
            await asyncio.gather(*[c.put(body) for _ in range(min(1000, n - k))])
    elif workload == "aput_many":
        for k in range(0, n, 5000):
            await c.put_many([body] * min(5000, n - k))
    else:                                   # ares_many
        while n:
            jobs = await c.reserve_many(min(512, n), timeout=0)
            await c.delete_many(jobs)
            n -= len(jobs)


async def _aclient(workload: str, n: int, tube: str, port: int, mark: Callable[[], Any]) -> None:
    import beanstalkc_fast.asyncio as bsa
    c = await bsa.connect("127.0.0.1", port, encoding=None)
    await c.use(tube)
    await c.watch(tube)
    await c.ignore("default")
    body = b"x" * BODY[workload]
    mark()                  # dump 3k+1
    await _aop(c, workload, n, body)
    mark()                  # dump 3k+2
    await _aop(c, workload, 3 * n, body)
    mark()                  # dump 3k+3
    await c.close()


def client(plan: List[Tuple[str, int, str]], port: int) -> None:
    """The profiled process: connect; then for each (workload, n, tube) of the plan,
    switch to the tube and run the operation n times, then 3n times, with a
    getppid() mark before and after each section (callgrind dumps at each mark)."""
    import beanstalkc_fast as bc
    c = bc.Connection(host="127.0.0.1", port=port, encoding=None)
    watched, mark = "default", os.getppid
    for workload, n, tube in plan:
        if workload in ASYNC_WORKLOADS:     # a connection of its own, in an event loop
            loop: asyncio.AbstractEventLoop
            if workload in bench.UVLOOP_WORKLOADS:
                import site
                site.main()                 # run with -S: uvloop is in site-packages
                import uvloop
                loop = uvloop.new_event_loop()
            else:
                loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(_aclient(workload, n, tube, port, mark))
            finally:
                loop.close()
            continue
        c.use(tube)
        c.watch(tube)
        c.ignore(watched)
        watched = tube
        op, body = OPS[workload], b"x" * BODY[workload]
        mark()              # dump 3k+1: startup or the previous workload's tail, tube switch
        op(c, n, body)
        mark()              # dump 3k+2: N operations
        op(c, 3 * n, body)
        mark()              # dump 3k+3: 3N operations
    c.close()


def _connect(port: int, tube: str) -> Any:
    import beanstalkc_fast as bc
    c = bc.Connection(host="127.0.0.1", port=port, encoding=None)
    c.use(tube)
    c.watch(tube)
    c.ignore("default")
    return c


def _drain(c: Any) -> int:
    count = 0
    while True:
        jobs = c.reserve_many(512, timeout=0)
        if not jobs:
            return count
        c.delete_many(jobs)
        count += len(jobs)


def callgrind_total(out_file: str) -> int:
    """Total instructions (Ir) recorded in a callgrind output file."""
    with open(out_file) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise SystemExit("no totals in %s" % out_file)


def instructions(core: str, sizes: Dict[str, int], port: int,
                 tmp: str) -> Dict[str, Tuple[int, int]]:
    """{workload: (I(N), I(3N))}: instructions of N and of 3N operations of each
    workload, counted in one client process under callgrind."""
    plan = [(w, n, "profile-%s-%s-%s" % (w, core, uuid.uuid4().hex[:8]))
            for w, n in sizes.items()]
    helpers = {}
    for w, n, tube in plan:
        helpers[w] = _connect(port, tube)
        if w in PREFILLED:
            body = b"x" * BODY[w]
            for k in range(0, 4 * n, 10000):
                helpers[w].put_many([body] * min(10000, 4 * n - k))
    out = os.path.join(tmp, "callgrind." + core)
    env = bench.Runner(port, False, None).client_env(core)
    env["PYTHONHASHSEED"] = "0"
    cmd = ["valgrind", "--tool=callgrind", "--dump-before=getppid",
           "--callgrind-out-file=" + out, sys.executable, "-S", str(Path(__file__).resolve()),
           "--port", str(port), "--plan", ",".join("%s:%d:%s" % step for step in plan)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (" ".join(cmd), r.stderr[-2000:]))
    counts = {}
    for k, (w, n, _tube) in enumerate(plan):
        left = _drain(helpers[w])
        helpers[w].close()
        expected = 4 * n if w in PUTTING else 0
        if left != expected:
            raise SystemExit("%s %s: %d jobs left in the tube, expected %d"
                             % (core, w, left, expected))
        counts[w] = (callgrind_total("%s.%d" % (out, 3 * k + 2)),
                     callgrind_total("%s.%d" % (out, 3 * k + 3)))
    return counts


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1000,
                    help="N: operations in the shorter section (put64k: N/10, stats: N/4)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--cores", default=",".join(bench.CORES))
    ap.add_argument("--plan", help=argparse.SUPPRESS)       # client mode (internal)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plan:
        steps = [step.split(":") for step in args.plan.split(",")]
        return client([(w, int(n), tube) for w, n, tube in steps], args.port)

    workloads = [w for w in args.workloads.split(",") if w]
    cores = [c for c in args.cores.split(",") if c]
    bad = ([w for w in workloads if w not in WORKLOADS + ASYNC_WORKLOADS]
           + [c for c in cores if c not in bench.CORES])
    if bad:
        ap.error("unknown workload/core: %s" % ",".join(bad))
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: sudo apt-get install -y valgrind")
    exe = shutil.which("beanstalkd")
    if exe is None:
        raise SystemExit(bench.NOT_FOUND)

    proc, port = bench.start_server(exe, False)
    rows = []
    try:
        runner = bench.Runner(port, False, None)
        for core in cores:
            why = runner.check_impl(core)
            if why:
                raise SystemExit("%s: %s" % (core, why))
        with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
            sizes = {w: max(10, args.n // SCALE.get(w, 1)) for w in workloads}
            for core in cores:
                counts = instructions(core, sizes, port, tmp)
                for w, n in sizes.items():
                    one, three = counts[w]
                    per_op = (three - one) / (2 * n)
                    rows.append((w, core, n, per_op))
                    print("  %-7s %-7s N=%-6d I(N)=%d I(3N)=%d  -> %.0f per op"
                          % (w, core, n, one, three, per_op), file=sys.stderr)
    finally:
        bench.stop(proc)

    print("Instructions per operation (callgrind, user space, (I(3N) - I(N)) / 2N), %s %s"
          % (platform.python_implementation(), platform.python_version()))
    print()
    print("| workload | core | N | instructions/op |")
    print("|---|---|---:|---:|")
    for w, core, n, per_op in rows:
        print("| %s | %s | %d | %s |" % (w, core, n, format(int(round(per_op)), ",")))


if __name__ == "__main__":
    main()
