"""Throughput and client CPU per op of beanstalkc_fast (Cython core and pure-Python
core), greenstalk when importable, and the minimal C client ../shared/bench/limit.c,
side by side in one run against one beanstalkd, interleaved round-robin, median of
--repeat measurements.

    python benchmarks/bench.py [--seconds 1] [--repeat 3] [--pin] [--quick]
                               [--workloads put,resdel,...] [--clients C,cython,...]
                               [--limit-src PATH]

Starts its own beanstalkd on a free loopback port and stops it by PID at the end.
Every measurement runs in its own subprocess on a fresh tube; CPU is the client's
user+sys time (getrusage(RUSAGE_SELF)) over the timed section only.
Stdlib only; greenstalk is optional.
"""

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LIMIT_SRC = ROOT.parent / "shared" / "bench" / "limit.c"

WORKLOADS = ["put", "resdel", "cycle", "put64k", "stats", "pput", "pres"]
CLIENTS = ["C", "cython", "python", "greenstalk"]
BATCH_WORKLOADS = ("pput", "pres")
PUT_WORKLOADS = ("put", "put64k", "pput")
# workload -> (limit.c workload, body bytes)
C_WORKLOADS = {"put": ("put", 100), "resdel": ("resdel", 100), "cycle": ("cycle", 100),
               "put64k": ("put", 65536), "stats": ("stats", 100),
               "pput": ("pput", 100), "pres": ("pres", 100)}
# calibration sizes (ops) per workload
PROBE_N = {"put": 500, "resdel": 500, "cycle": 300, "put64k": 200, "stats": 500,
           "pput": 5000, "pres": 5000}
MIN_N = 200
BATCH = 512                  # limit.c's default -B / -W
SEGMENT_BYTES = 128 << 20    # put workloads drain (untimed) every 128 MiB, like limit.c
NOT_FOUND = "beanstalkd not found: sudo apt-get install -y beanstalkd"


def body_size(workload):
    return 65536 if workload == "put64k" else 100


# ------------------------------------------------------------------------------------
# worker: one client, one workload, one measurement, in its own process
# ------------------------------------------------------------------------------------

def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Timer:
    """Accumulates wall and CPU time over possibly several timed segments."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._c0 = _cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        t1 = time.perf_counter()
        c1 = _cpu()
        self.wall += t1 - self._t0
        self.cpu += c1 - self._c0
        return False


def _connect(impl, port, tube):
    if impl == "greenstalk":
        import greenstalk
        return greenstalk.Client(("127.0.0.1", port), encoding=None, use=tube, watch=tube)
    import beanstalkc_fast as bc
    if bc.IMPLEMENTATION != impl:
        raise SystemExit("beanstalkc_fast.IMPLEMENTATION is %r, expected %r"
                         % (bc.IMPLEMENTATION, impl))
    try:
        c = bc.Connection(host="127.0.0.1", port=port, encoding=None)
    except TypeError:  # no encoding option: classic defaults
        c = bc.Connection(host="127.0.0.1", port=port)
    c.use(tube)
    c.watch(tube)
    c.ignore("default")
    return c


def _has_batch(c):
    return all(hasattr(c, m) for m in ("put_many", "reserve_many", "delete_many"))


def _fill(impl, c, n, body):
    """Untimed prefill of n jobs."""
    if impl != "greenstalk" and hasattr(c, "put_many"):
        left = n
        while left:
            k = min(left, 10000)
            c.put_many([body] * k)
            left -= k
    else:
        for _ in range(n):
            c.put(body)


def _drain(impl, c):
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


def _run_put(impl, c, n, body, batch):
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


def _run_resdel(impl, c, n, body):
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


def _run_cycle(impl, c, n, body):
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


def _run_stats(c, n):
    s = c.stats()
    if not isinstance(s, dict) or "current-jobs-ready" not in s:
        raise SystemExit("stats() did not return a parsed dict: %r" % (type(s),))
    timer = _Timer()
    stats = c.stats
    with timer:
        for _ in range(n):
            stats()
    return timer


def _run_pres(impl, c, n, body):
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


def worker(impl, port, workload, n):
    """Run one measurement of n ops; print one JSON line."""
    tube = "bench-%s-%s-%s" % (workload, impl, uuid.uuid4().hex[:10])
    c = _connect(impl, port, tube)
    if workload in BATCH_WORKLOADS and (impl == "greenstalk" or not _has_batch(c)):
        print(json.dumps({"skip": "no put_many/reserve_many/delete_many"}))
        return
    body = b"x" * body_size(workload)
    if workload in PUT_WORKLOADS:
        timer = _run_put(impl, c, n, body, batch=(workload == "pput"))
    elif workload == "resdel":
        timer = _run_resdel(impl, c, n, body)
    elif workload == "cycle":
        timer = _run_cycle(impl, c, n, body)
    elif workload == "stats":
        timer = _run_stats(c, n)
    elif workload == "pres":
        timer = _run_pres(impl, c, n, body)
    else:
        raise SystemExit("unknown workload %r" % workload)
    _drain(impl, c)  # leave the tube empty whatever happened
    c.close()
    print(json.dumps({"impl": impl, "workload": workload, "n": n, "seconds": timer.wall,
                      "ops_per_s": n / timer.wall, "cpu_us_per_op": timer.cpu / n * 1e6}))


# ------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------

def _pin_prefix(pin):
    """(argv prefix, preexec_fn) placing a child on CPU 0 when pin is set."""
    if not pin:
        return [], None
    taskset = shutil.which("taskset")
    if taskset:
        return [taskset, "-c", "0"], None
    return [], lambda: os.sched_setaffinity(0, {0})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def start_server(exe, pin):
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


def build_limit(src, tmp):
    cc = shutil.which("cc")
    if cc is None:
        return None, "no C compiler (cc)"
    if not src.is_file():
        return None, "%s not found" % src
    exe = os.path.join(tmp, "limit")
    r = subprocess.run([cc, "-O2", "-o", exe, str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        return None, "cc failed: %s" % r.stderr.strip()[-300:]
    return exe, None


class Runner:
    def __init__(self, port, pin, limit):
        self.port, self.pin, self.limit = port, pin, limit
        self.prefix, self.preexec = _pin_prefix(pin)

    def _env(self, impl):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
        if impl == "python":
            env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
        return env

    def _run(self, cmd, env=None):
        r = subprocess.run(self.prefix + cmd, capture_output=True, text=True, env=env,
                           preexec_fn=self.preexec, timeout=600)
        lines = r.stdout.strip().splitlines()
        if r.returncode != 0 or not lines:
            err = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
            return {"error": err[:200]}
        return json.loads(lines[-1])

    def measure(self, client, workload, n):
        """{"ops_per_s", "cpu_us_per_op"} or {"skip"/"error": reason}."""
        if client == "C":
            cw, size = C_WORKLOADS[workload]
            d = self._run([self.limit, "-p", str(self.port), "-w", cw, "-n", str(n),
                           "-s", str(size), "-W", str(BATCH), "-B", str(BATCH)])
            if "error" in d:
                return d
            if d.get("verified") is False:
                return {"error": "limit: verification failed"}
            return {"ops_per_s": d["ops_per_s"],
                    "cpu_us_per_op": (d["cpu_user_s"] + d["cpu_sys_s"]) / d["n"] * 1e6}
        return self._run([sys.executable, str(Path(__file__).resolve()), "--worker",
                          "--impl", client, "--port", str(self.port),
                          "--workload", workload, "-n", str(n)], env=self._env(client))

    def check_impl(self, impl):
        """None when the core is importable as itself, else the reason."""
        code = "import beanstalkc_fast as b; print(b.IMPLEMENTATION)"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=self._env(impl), cwd=tempfile.gettempdir())
        got = r.stdout.strip()
        if r.returncode != 0:
            return "import failed: %s" % (r.stderr.strip().splitlines() or ["?"])[-1]
        if got != impl:
            return "IMPLEMENTATION is %r (core not built?)" % got
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(args):
    try:
        uname = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uname = "%s %s %s" % (platform.system(), platform.release(), platform.machine())
    return ("%s | %s | %s | nproc %d | Python %s (%s) | placement: %s | "
            "median of %d, ~%gs per measurement" % (
                time.strftime("%Y-%m-%d %H:%M %Z"), uname, cpu_model(),
                len(os.sched_getaffinity(0)), platform.python_version(),
                platform.python_implementation(),
                "pinned (server and clients on CPU 0)" if args.pin else "default",
                args.repeat, args.seconds))


def table(results, workloads, clients):
    out = ["| workload | client | ops/s | ratio to C | CPU µs/op | CPU ratio to C |",
           "|---|---|---:|---:|---:|---:|"]
    med = {}
    for key, runs in results.items():
        if runs:
            med[key] = (statistics.median(r["ops_per_s"] for r in runs),
                        statistics.median(r["cpu_us_per_op"] for r in runs))
    for w in workloads:
        ref = med.get((w, "C"))
        for cl in clients:
            if (w, cl) not in med:
                continue
            ops, us = med[(w, cl)]
            if ref and cl != "C":
                ratio = "%.2f" % (ops / ref[0])
                cratio = "%.2f" % (us / ref[1]) if ref[1] > 0 else "-"
            elif ref:
                ratio = cratio = "1.00"
            else:
                ratio = cratio = "-"
            out.append("| %s | %s | %s | %s | %.1f | %s |" % (
                w, cl, format(int(round(ops)), ","), ratio, us, cratio))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="target seconds per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per cell (median)")
    ap.add_argument("--pin", action="store_true", help="server and clients on CPU 0 (taskset)")
    ap.add_argument("--quick", action="store_true", help="smoke run: --seconds 0.2 --repeat 1")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--limit-src", type=Path, default=DEFAULT_LIMIT_SRC)
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("-n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        return worker(args.impl, args.port, args.workload, args.n)

    if args.quick:
        args.seconds, args.repeat = 0.2, 1
    workloads = [w for w in args.workloads.split(",") if w]
    clients = [c for c in args.clients.split(",") if c]
    bad = [w for w in workloads if w not in WORKLOADS] + [c for c in clients if c not in CLIENTS]
    if bad:
        ap.error("unknown workload/client: %s (workloads: %s; clients: %s)"
                 % (",".join(bad), ",".join(WORKLOADS), ",".join(CLIENTS)))

    exe = shutil.which("beanstalkd")
    if exe is None:
        print(NOT_FOUND, file=sys.stderr)
        sys.exit(2)

    notes = []
    tmp = tempfile.mkdtemp(prefix="bench-")
    proc = None
    try:
        limit = None
        if "C" in clients:
            limit, why = build_limit(args.limit_src, tmp)
            if limit is None:
                notes.append("C reference skipped: %s" % why)
                clients.remove("C")
        proc, port = start_server(exe, args.pin)
        runner = Runner(port, args.pin, limit)
        for impl in ("cython", "python"):
            if impl in clients:
                why = runner.check_impl(impl)
                if why:
                    notes.append("%s skipped: %s" % (impl, why))
                    clients.remove(impl)
        if "greenstalk" in clients and importlib.util.find_spec("greenstalk") is None:
            notes.append("greenstalk skipped: not installed (pip install greenstalk)")
            clients.remove("greenstalk")

        print(header(args), file=sys.stderr)
        results = {}
        for w in workloads:
            sizes = {}
            for cl in clients:  # calibration: size each measurement to ~--seconds
                probe = runner.measure(cl, w, PROBE_N[w])
                if "skip" in probe or "error" in probe:
                    kind = "skip" if "skip" in probe else "error"
                    notes.append("%s/%s %s: %s" % (w, cl, "skipped" if kind == "skip"
                                                   else "failed", probe[kind]))
                    continue
                sizes[cl] = max(MIN_N, int(probe["ops_per_s"] * args.seconds))
            for rep in range(args.repeat):
                for cl in clients:  # round-robin: C, cython, python, greenstalk
                    if cl not in sizes:
                        continue
                    r = runner.measure(cl, w, sizes[cl])
                    if "error" in r or "skip" in r:
                        notes.append("%s/%s run %d failed: %s"
                                     % (w, cl, rep + 1, r.get("error", r.get("skip"))))
                        continue
                    results.setdefault((w, cl), []).append(r)
                    print("  %-7s %-10s run %d: %10.0f ops/s %8.1f CPU us/op" % (
                        w, cl, rep + 1, r["ops_per_s"], r["cpu_us_per_op"]),
                        file=sys.stderr)
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    print(header(args))
    print()
    print(table(results, workloads, clients))
    print()
    print("Bodies are 100 bytes (put64k: 64 KiB), read as raw bytes (encoding=None). "
          "CPU = client user+sys over the timed section. Batch workloads use "
          "put_many / reserve_many(%d, timeout=0)+delete_many (C: pipelined, window %d)."
          % (BATCH, BATCH))
    for n in notes:
        print("- " + n)


if __name__ == "__main__":
    main()
