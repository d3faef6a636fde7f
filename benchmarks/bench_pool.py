"""Throughput of beanstalkc_fast.Pool over 1, 2 and 3 beanstalkd servers.

    python benchmarks/bench_pool.py [--jobs 60000] [--batch 1000] [--repeat 3]
                                    [--core cython|python]

Rows per pool size: ``put_many`` (batches of ``--batch`` spread over the
servers, pipelined) and ``reserve_many+delete_many`` (drain the tube in
batches), in jobs/s (median of ``--repeat``), with a plain single
``Connection`` on one server as the reference. Starts its own beanstalkd
processes on free loopback ports (no binlog) and stops them by PID. Also
prints the client's CPU per job (user+sys of all its threads).
"""

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import beanstalkc_fast  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(port: int) -> "subprocess.Popen[bytes]":
    exe = shutil.which("beanstalkd")
    if exe is None:
        sys.exit("beanstalkd not on PATH")
    proc = subprocess.Popen([exe, "-l", "127.0.0.1", "-p", str(port)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit("beanstalkd did not start")
            time.sleep(0.02)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn):  # type: ignore[no-untyped-def]
    t0, c0 = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - t0, cpu() - c0


def run_pool(addrs, jobs, batch, core):  # type: ignore[no-untyped-def]
    tube = "bench-" + uuid.uuid4().hex[:8]
    body = b"x" * 100
    with beanstalkc_fast.Pool(["beanstalk://%s:%d/%s" % (h, p, tube) for h, p in addrs],
                              core=core) as pool:
        def put() -> None:
            for _ in range(jobs // batch):
                pool.put_many([body] * batch)

        def drain() -> None:
            left = jobs
            while left:
                got = pool.reserve_many(batch, timeout=1)
                pool.delete_many(got)
                left -= len(got)
        return timed(put), timed(drain)


def run_conn(addr, jobs, batch, core):  # type: ignore[no-untyped-def]
    tube = "bench-" + uuid.uuid4().hex[:8]
    body = b"x" * 100
    conn = beanstalkc_fast.Connection(*addr)
    conn.use(tube)
    conn.watch(tube)
    conn.ignore("default")

    def put() -> None:
        for _ in range(jobs // batch):
            conn.put_many([body] * batch)

    def drain() -> None:
        left = jobs
        while left:
            got = conn.reserve_many(batch, timeout=1)
            conn.delete_many(got)
            left -= len(got)
    try:
        return timed(put), timed(drain)
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=60000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--core", default="cython", choices=["cython", "python"])
    a = ap.parse_args()
    core = (__import__("beanstalkc_fast._protocol", fromlist=["x"]) if a.core == "cython"
            else __import__("beanstalkc_fast._pyprotocol", fromlist=["x"]))
    ports = [free_port() for _ in range(3)]
    procs = [start(p) for p in ports]
    addrs = [("127.0.0.1", p) for p in ports]
    try:
        rows = []
        cases = [("Connection, 1 server", lambda: run_conn(addrs[0], a.jobs, a.batch, core))]
        cases += [("Pool, %d server%s" % (n, "s" if n > 1 else ""),
                   (lambda n=n: run_pool(addrs[:n], a.jobs, a.batch, core)))
                  for n in (1, 2, 3)]
        for label, fn in cases:
            runs = [fn() for _ in range(a.repeat)]
            put = statistics.median(a.jobs / r[0][0] for r in runs)
            drain = statistics.median(a.jobs / r[1][0] for r in runs)
            put_cpu = statistics.median(r[0][1] / a.jobs * 1e6 for r in runs)
            drain_cpu = statistics.median(r[1][1] / a.jobs * 1e6 for r in runs)
            rows.append((label, put, put_cpu, drain, drain_cpu))
        print("core: %s, %d jobs of 100 bytes, batches of %d, median of %d, %d CPUs"
              % (a.core, a.jobs, a.batch, a.repeat, os.cpu_count() or 0))
        print("| client | put_many jobs/s | client µs/job | reserve_many+delete_many jobs/s "
              "| client µs/job |")
        print("|---|---:|---:|---:|---:|")
        for label, put, put_cpu, drain, drain_cpu in rows:
            print("| %s | %.0f | %.1f | %.0f | %.1f |" % (label, put, put_cpu, drain, drain_cpu))
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(5)


if __name__ == "__main__":
    main()
