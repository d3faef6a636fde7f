"""Throughput and client CPU per op: both cores, greenstalk when installed, and the
minimal C client (../shared/bench/limit.c), side by side in one run, interleaved.

    python benchmarks/bench.py [--seconds 1] [--repeat 3] [--pin] [--quick]

Starts its own beanstalkd on a free loopback port and stops it by PID.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_SRC = ROOT.parent / "shared" / "bench" / "limit.c"
WORKLOADS = ["put", "resdel", "cycle", "put64k", "stats", "pput", "pres"]
C_NAMES = {"put": "put", "resdel": "resdel", "cycle": "cycle", "put64k": "put",
           "stats": "stats", "pput": "pput", "pres": "pres"}
BATCH = 512


# -- worker: one client, one workload, in its own process ------------------------------

def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _client(kind, port, tube):
    if kind == "greenstalk":
        import greenstalk
        return greenstalk.Client(("127.0.0.1", port), use=tube, watch=tube)
    import beanstalkc_fast
    assert beanstalkc_fast.IMPLEMENTATION == kind, beanstalkc_fast.IMPLEMENTATION
    c = beanstalkc_fast.Connection("127.0.0.1", port, encoding=None)
    c.use(tube)
    c.watch(tube)
    c.ignore("default")
    return c


def _fill(kind, c, n, body):
    if kind == "greenstalk":
        for _ in range(n):
            c.put(body)
    else:
        for i in range(0, n, 10000):
            c.put_many(body for _ in range(min(10000, n - i)))


def _drain(kind, c):
    while True:
        if kind == "greenstalk":
            import greenstalk
            try:
                c.delete(c.reserve(timeout=0))
            except greenstalk.TimedOutError:
                return
        else:
            jobs = c.reserve_many(BATCH, timeout=0)
            if not jobs:
                return
            c.delete_many(jobs)


def _delete(c, job):
    c.delete(job if hasattr(c, "put_many") is False else job.jid)


def worker(kind, port, workload, n):
    """Run ``n`` ops; print {"ops_per_s", "cpu_us_per_op"} as JSON."""
    tube = "b-" + uuid.uuid4().hex[:12]
    c = _client(kind, port, tube)
    body = b"x" * (65536 if workload == "put64k" else 100)
    green = kind == "greenstalk"
    if workload in ("pput", "pres") and green:
        print(json.dumps(None))
        return
    if workload in ("resdel", "pres"):
        _fill(kind, c, n, body)
    t0, c0 = time.perf_counter(), _cpu()
    if workload in ("put", "put64k"):
        put = c.put
        for _ in range(n):
            put(body)
    elif workload == "resdel":
        for _ in range(n):
            _delete(c, c.reserve(timeout=0))
    elif workload == "cycle":
        for _ in range(n):
            c.put(body)
            _delete(c, c.reserve(timeout=0))
    elif workload == "stats":
        for _ in range(n):
            c.stats()
    elif workload == "pput":
        c.put_many(body for _ in range(n))
    elif workload == "pres":
        left = n
        while left:
            jobs = c.reserve_many(min(BATCH, left), timeout=0)
            c.delete_many(jobs)
            left -= len(jobs)
    t1, c1 = time.perf_counter(), _cpu()
    if workload in ("put", "put64k", "pput"):
        _drain(kind, c)
    print(json.dumps({"ops_per_s": n / (t1 - t0), "cpu_us_per_op": (c1 - c0) / n * 1e6}))


# -- driver -------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(pin):
    exe = shutil.which("beanstalkd")
    if exe is None:
        sys.exit("beanstalkd not found: sudo apt-get install -y beanstalkd")
    port = free_port()
    cmd = ([shutil.which("taskset"), "-c", "0"] if pin else []) + \
        [exe, "-l", "127.0.0.1", "-p", str(port), "-z", "1048576"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.025)
    proc.kill()
    sys.exit("beanstalkd did not start")


def build_limit(tmp):
    if not LIMIT_SRC.exists() or not shutil.which("cc"):
        return None
    exe = os.path.join(tmp, "limit")
    r = subprocess.run(["cc", "-O2", "-o", exe, str(LIMIT_SRC)], capture_output=True)
    return exe if r.returncode == 0 else None


def run_c(exe, port, workload, n, pin):
    cmd = ([ "taskset", "-c", "0"] if pin else []) + [
        exe, "-p", str(port), "-w", C_NAMES[workload], "-n", str(n),
        "-s", "65536" if workload == "put64k" else "100"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    d = json.loads(out.strip().splitlines()[-1])
    return {"ops_per_s": d["ops_per_s"],
            "cpu_us_per_op": (d["cpu_user_s"] + d["cpu_sys_s"]) / d["n"] * 1e6}


def run_py(kind, port, workload, n, pin):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
    if kind == "python":
        env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
    cmd = (["taskset", "-c", "0"] if pin else []) + [
        sys.executable, __file__, "--worker", kind, str(port), workload, str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pin", action="store_true", help="server and clients on CPU 0")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, port, workload, n = args.worker
        return worker(kind, int(port), workload, int(n))
    if args.quick:
        args.seconds, args.repeat = 0.2, 1
    clients = ["C", "cython", "python"]
    try:
        import greenstalk  # noqa: F401
        clients.append("greenstalk")
    except ImportError:
        pass
    proc, port = start_server(args.pin)
    tmp = tempfile.mkdtemp()
    try:
        exe = build_limit(tmp)
        if exe is None:
            clients.remove("C")
        results = {}
        for workload in args.workloads.split(","):
            # size every measurement to about --seconds from a short calibration run
            probe = run_py("cython", port, workload, 2000, args.pin)
            n = max(1000, int(probe["ops_per_s"] * args.seconds))
            for _ in range(args.repeat):
                for client in clients:
                    r = (run_c(exe, port, workload, n, args.pin) if client == "C"
                         else run_py(client, port, workload, n, args.pin))
                    if r is not None:
                        results.setdefault((workload, client), []).append(r)
        print_table(results, args)
    finally:
        os.kill(proc.pid, 15)
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(results, args):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    print("%s, %s, %s, %d cores, Python %s, placement: %s, median of %d" % (
        time.strftime("%Y-%m-%d"), " ".join(platform.uname()[i] for i in (0, 2, 4)), cpu,
        os.cpu_count(), platform.python_version(), "pinned to CPU 0" if args.pin else "default",
        args.repeat))
    print()
    print("| workload | client | ops/s | ratio to C | CPU µs/op | CPU ratio to C |")
    print("|---|---|---:|---:|---:|---:|")
    for (workload, client), runs in results.items():
        ops = statistics.median(r["ops_per_s"] for r in runs)
        us = statistics.median(r["cpu_us_per_op"] for r in runs)
        ref = results.get((workload, "C"))
        if ref:
            rops = statistics.median(r["ops_per_s"] for r in ref)
            rus = statistics.median(r["cpu_us_per_op"] for r in ref)
            ratio, cratio = "%.2f" % (ops / rops), "%.2f" % (us / rus)
        else:
            ratio = cratio = "-"
        print("| %s | %s | %.0f | %s | %.1f | %s |" % (workload, client, ops, ratio, us, cratio))


if __name__ == "__main__":
    main()
