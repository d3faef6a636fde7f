"""Overhead of beanstalkc_fast.Worker: a trivial handler through the Worker
(single and batch mode, one thread; and the asyncio Worker, one task) against
the hand-written loops it replaces,
per core, with the ratio; the project's C reference client (benchmarks/refclient.c) as the
reference when it builds.

    python benchmarks/bench_worker.py [--jobs 20000] [--batch-jobs 200000]
                                      [--repeat 3] [--quick] [--cores cython,python]

Rows:
  single  hand-written ``job = conn.reserve(timeout=1); job.delete()`` per job
          vs ``Worker(handler)`` (C: refclient ``resdel``, reserve-with-timeout 0 + delete)
  batch   hand-written ``jobs = conn.reserve_many(512, timeout=1); conn.delete_many(jobs)``
          vs ``Worker(handler, batch=512)`` (C: refclient ``pres``, pipelined)
  asyncio single / asyncio batch
          the same loops written with ``beanstalkc_fast.asyncio`` (``await``)
          vs ``beanstalkc_fast.asyncio.Worker`` with an ``async def`` handler
          (one task, the default asyncio event loop)

Starts its own beanstalkd on a free loopback port and stops it by PID. Every
measurement runs in its own subprocess on a fresh, prefilled tube (prefill
untimed); the timed section runs from the first reserve (the Worker: from
``run()``, connecting included) to the last job. Measurements are interleaved
round-robin; the table shows medians of jobs/s and client CPU (user+sys of
all threads) per job. Stdlib only.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 512
KINDS = {"single": ("loop", "worker"), "batch": ("batchloop", "batchworker"),
         "asyncio single": ("aloop", "aworker"), "asyncio batch": ("abatchloop", "abatchworker")}
C_WORKLOAD = {"single": "resdel", "batch": "pres"}
C_KIND = {"asyncio single": "single", "asyncio batch": "batch"}      # the same C row


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- one measurement, in its own process ---------------------------------------------------

def measure(port, workload, n):
    import beanstalkc_fast
    from beanstalkc_fast import Connection, Worker

    tube = "bw-" + uuid.uuid4().hex[:12]
    producer = Connection("127.0.0.1", port)
    producer.use(tube)
    for start in range(0, n, 50000):
        producer.put_many([b"x" * 100] * min(50000, n - start))
    producer.close()

    if workload.startswith("a"):
        import asyncio
        t0, c0, t1, c1 = asyncio.run(measure_async(port, tube, workload, n))
    elif workload in ("loop", "batchloop"):
        conn = Connection("127.0.0.1", port)
        conn.watch(tube)
        conn.ignore("default")
        c0, t0 = _cpu(), time.perf_counter()
        if workload == "loop":
            for _ in range(n):
                job = conn.reserve(timeout=1)
                job.delete()
        else:
            left = n
            while left:
                jobs = conn.reserve_many(min(BATCH, left), timeout=1)
                conn.delete_many(jobs)
                left -= len(jobs)
        t1, c1 = time.perf_counter(), _cpu()
        conn.close()
    else:
        count = [0]
        end = [0.0, 0.0]

        def finish():
            end[:] = [time.perf_counter(), _cpu()]
            worker.stop()

        if workload == "worker":
            def handler(job):
                count[0] += 1
                if count[0] == n:
                    finish()
            worker = Worker(handler, [tube], host="127.0.0.1", port=port,
                            install_signals=False)
        else:
            def handler(jobs):
                count[0] += len(jobs)
                if count[0] >= n:
                    finish()
            worker = Worker(handler, [tube], host="127.0.0.1", port=port, batch=BATCH,
                            install_signals=False)
        c0, t0 = _cpu(), time.perf_counter()
        worker.run()
        t1, c1 = end
        if worker.counters["processed"] != n:
            raise SystemExit("worker processed %d of %d" % (worker.counters["processed"], n))
    print(json.dumps({"impl": beanstalkc_fast.IMPLEMENTATION, "n": n,
                      "ops_per_s": n / (t1 - t0), "cpu_us_per_op": (c1 - c0) / n * 1e6}))


async def measure_async(port, tube, workload, n):
    """The asyncio workloads; (t0, cpu0, t1, cpu1)."""
    import beanstalkc_fast.asyncio as bsa

    if workload in ("aloop", "abatchloop"):
        conn = await bsa.connect("127.0.0.1", port)
        await conn.watch(tube)
        await conn.ignore("default")
        c0, t0 = _cpu(), time.perf_counter()
        if workload == "aloop":
            for _ in range(n):
                job = await conn.reserve(timeout=1)
                await conn.delete(job.jid)
        else:
            left = n
            while left:
                jobs = await conn.reserve_many(min(BATCH, left), timeout=1)
                await conn.delete_many(jobs)
                left -= len(jobs)
        t1, c1 = time.perf_counter(), _cpu()
        await conn.close()
        return t0, c0, t1, c1
    count = [0]
    end = [0.0, 0.0]

    def finish():
        end[:] = [time.perf_counter(), _cpu()]
        worker.stop()

    if workload == "aworker":
        async def handler(job):
            count[0] += 1
            if count[0] == n:
                finish()
        worker = bsa.Worker(handler, [tube], host="127.0.0.1", port=port, install_signals=False)
    else:
        async def handler(jobs):
            count[0] += len(jobs)
            if count[0] >= n:
                finish()
        worker = bsa.Worker(handler, [tube], host="127.0.0.1", port=port, batch=BATCH,
                            install_signals=False)
    c0, t0 = _cpu(), time.perf_counter()
    await worker.run()
    if worker.counters["processed"] != n:
        raise SystemExit("worker processed %d of %d" % (worker.counters["processed"], n))
    return t0, c0, end[0], end[1]


# -- the driver --------------------------------------------------------------------------------

def _bench():
    """benchmarks/bench.py: its server start/stop and C client build serve here too."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench
    return bench


def start_server():
    exe = shutil.which("beanstalkd")
    if exe is None:
        raise SystemExit("beanstalkd not found: sudo apt-get install -y beanstalkd")
    return _bench().start_server(exe, False)


def stop_server(proc):
    _bench().stop(proc)


def run_json(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        err = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
        return {"error": err[:200]}
    return json.loads(lines[-1])


def measure_python(port, core, workload, n):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]]
                                                      if env.get("PYTHONPATH") else []))
    env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
    if core == "python":
        env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
    d = run_json([sys.executable, str(Path(__file__).resolve()), "--measure", workload,
                  "--port", str(port), "-n", str(n)], env)
    if "impl" in d and d["impl"] != core:
        return {"error": "asked for the %s core, got %s" % (core, d["impl"])}
    return d


def measure_c(limit, port, kind, n):
    d = run_json([limit, "-p", str(port), "-w", C_WORKLOAD[kind], "-n", str(n), "-s", "100",
                  "-W", str(BATCH), "-B", str(BATCH)])
    if "error" in d:
        return d
    return {"ops_per_s": d["ops_per_s"],
            "cpu_us_per_op": (d["cpu_user_s"] + d["cpu_sys_s"]) / d["n"] * 1e6}


def build_limit(tmp):
    """The project's C reference client (benchmarks/refclient.c), built as bench.py builds it."""
    exe, why = _bench().build_refclient()
    if exe is None:
        print("C reference skipped: %s" % why, file=sys.stderr)
    return exe


def median(results, key):
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20000, help="jobs per single-mode run")
    ap.add_argument("--batch-jobs", type=int, default=200000, help="jobs per batch-mode run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores", default="cython,python")
    ap.add_argument("--quick", action="store_true", help="smoke run: few jobs, 1 repeat")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("-n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.port, args.measure, args.n)
        return
    if args.quick:
        args.jobs, args.batch_jobs, args.repeat = 2000, 20000, 1
    cores = [c for c in args.cores.split(",") if c]
    sizes = {"single": args.jobs, "batch": args.batch_jobs, "asyncio single": args.jobs,
             "asyncio batch": args.batch_jobs}
    proc, port = start_server()
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            limit = build_limit(tmp)
            for rep in range(args.repeat):
                for kind, workloads in KINDS.items():
                    if limit and not kind.startswith("asyncio"):
                        r = measure_c(limit, port, kind, sizes[kind])
                        results.setdefault(("C", kind, "loop"), []).append(r)
                    for core in cores:
                        for workload in workloads:
                            print("rep %d: %s %s %s" % (rep + 1, core, kind, workload),
                                  file=sys.stderr, flush=True)
                            r = measure_python(port, core, workload, sizes[kind])
                            if "error" in r:
                                print("  error: %s" % r["error"], file=sys.stderr)
                            results.setdefault((core, kind, workload), []).append(r)
    finally:
        stop_server(proc)

    print("| core | mode | hand-written jobs/s | Worker jobs/s | Worker / hand-written "
          "| CPU µs/job hand-written | CPU µs/job Worker | C jobs/s (refclient) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for core in cores:
        for kind, (loop, work) in KINDS.items():
            lo = median(results.get((core, kind, loop), []), "ops_per_s")
            wo = median(results.get((core, kind, work), []), "ops_per_s")
            lc = median(results.get((core, kind, loop), []), "cpu_us_per_op")
            wc = median(results.get((core, kind, work), []), "cpu_us_per_op")
            c = median(results.get(("C", C_KIND.get(kind, kind), "loop"), []), "ops_per_s")
            fmt = lambda v, f="%.0f": "-" if v is None else f % v  # noqa: E731
            ratio = "%.2f" % (wo / lo) if lo and wo else "-"
            print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                core, kind, fmt(lo), fmt(wo), ratio, fmt(lc, "%.1f"), fmt(wc, "%.1f"),
                fmt(c)))


if __name__ == "__main__":
    main()
