"""beanstalkc-fast: an operator's command line for beanstalkd.

Inspect a server (``stats``, ``tubes``, ``peek``), act on jobs (``put``,
``kick``, ``kick-job``, ``delete``, ``bury``, ``pause``), move jobs between
servers (``export`` / ``import``), empty a tube (``drain``) and watch it live
(``top``), and run a handler function over a tube's jobs (``work``: the
``beanstalkc_fast.Worker``, or the asyncio one for an ``async def``
handler). Built on the public ``beanstalkc_fast.Connection``.

Exit status: 0 success, 1 the server refused a command, 2 usage or input
error, 3 the server cannot be reached (or the connection was lost).
"""

import argparse
import base64
import json
import math
import os
import sys
import time
from typing import (IO, Any, Callable, Dict, Iterable, Iterator, List, Mapping, NoReturn, Optional,
                    Sequence, Set, Tuple)

import beanstalkc_fast
from beanstalkc_fast import Connection
from beanstalkc_fast import endpoint as _endpoint
from beanstalkc_fast.errors import (BatchError, CommandFailed, NotFound, SocketError,
                                    UnexpectedResponse)

PROG = "beanstalkc-fast"
DEFAULT_URL = "localhost:11300"
WIDTH = 80
STATES = ("ready", "delayed", "buried")
# export/drain walk the states in this order: a delayed job that becomes ready
# meanwhile is still met by the ready pass.
EXPORT_ORDER = ("buried", "delayed", "ready")
IMPORT_CHUNK = 1000

EXPORT_HELP = """\
Write the tube's jobs as JSON lines to stdout, one object per job:
  {"id", "tube", "state", "priority", "ttr", "delay", "body", "body_encoding"}
body_encoding is "utf-8" (body is the text) or "base64" (body is the bytes,
base64-encoded). delay is the delay left at export time. Bodies round-trip
byte-exact through import.

How every job is found (peek only shows the first job of a state): peek the
first job of the state, reserve it by id (reserve-job, beanstalkd >= 1.12),
write its line, then
  ready, delayed  hold it reserved, so the next peek shows the next job; at the
                  end release them all with their priority (delayed ones with
                  the delay they have left);
  buried          bury it again with its priority: it moves to the end of the
                  buried list, so the walk stops when it meets the first again.
States are walked buried, delayed, ready. Paused tubes export too.
With --move a job is deleted right after its line was written and flushed
and nothing is held.

If writing fails (disk full, closed pipe) the job being written is put back
as it was, the held jobs are released, and export exits with status 1.

Limits: jobs reserved by consumers are not exported. A consumer can take a
ready job before the export reaches it. If the export is killed, held jobs
go back to ready (held delayed jobs become ready early; at most one buried
job ends ready); with --move, nothing is lost, but a kill in the instant
between the flush of a line and its delete leaves that last job both in the
file and in the tube. A held job whose TTR runs out is released by the
server early (written once). Export and release count as reserves/releases
in the job's stats."""


class UsageError(Exception):
    """Bad arguments or input: exit status 2."""


class ServerError(Exception):
    """A server refused a command in a way we report as such: exit status 1."""


# -- server address -----------------------------------------------------------

def parse_url(url: str) -> Dict[str, Any]:
    """Connection keyword arguments for ``--url``: any URL ``from_url`` takes
    (``beanstalk://``, ``beanstalks://`` with TLS options, ``unix:///path``,
    options as query parameters; see ``endpoint.parse_url``), or a bare
    ``host[:port]`` / ``[v6addr][:port]``. UsageError otherwise, and for a
    tube or an encoding/parse_yaml option (the commands name their tubes and
    handle bodies as bytes)."""
    text = url.strip()
    try:
        where = _endpoint.parse_url(text if "://" in text else "beanstalk://" + text)
        kwargs = _endpoint.connection_kwargs(where, {})
    except ValueError as exc:
        raise UsageError("bad --url %r: %s" % (url, exc)) from None
    if where.tube is not None:
        raise UsageError("bad --url %r: the commands take their tubes as arguments, "
                         "not in the URL" % (url,))
    for name in ("encoding", "parse_yaml"):
        if name in kwargs:
            raise UsageError("bad --url %r: option %s has no meaning for %s" % (url, name, PROG))
    return kwargs


def server_name(kwargs: Dict[str, Any]) -> str:
    """How errors name the server."""
    if "unix_socket" in kwargs:
        return "unix://" + str(kwargs["unix_socket"])
    host = str(kwargs["host"])
    return "%s:%d" % ("[%s]" % host if ":" in host else host, kwargs["port"])


def connect(args: argparse.Namespace) -> Connection:
    """A connection (bodies as bytes) to the server of ``args``; the URL's
    timeouts win over the defaults."""
    kwargs: Dict[str, Any] = {"connect_timeout": 5.0, "socket_timeout": 30.0}
    kwargs.update(args.server)
    return Connection(encoding=None, **kwargs)


# -- output helpers -----------------------------------------------------------

def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def print_json(value: Any) -> None:
    out(json.dumps(value, ensure_ascii=False, sort_keys=False))


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, marking a cut with '~'."""
    return text if len(text) <= width else text[:max(width - 1, 0)] + "~"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int = WIDTH) -> List[str]:
    """Aligned lines within ``width`` columns: the first column is left-aligned
    and cut when needed; the others are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(headers[i])] + [len(r[i]) for r in cells]) for i in range(len(headers))]
    rest = sum(widths[1:]) + 2 * (len(widths) - 1)
    widths[0] = max(min(widths[0], width - rest), 4)
    lines = []
    for row in [list(headers)] + cells:
        parts = [clip(row[0], widths[0]).ljust(widths[0])]
        parts += [row[i].rjust(widths[i]) for i in range(1, len(row))]
        lines.append("  ".join(parts).rstrip())
    return lines


def key_values(pairs: Iterable[Tuple[str, Any]], width: int = WIDTH) -> List[str]:
    """``key  value`` lines, values aligned and cut to fit ``width``."""
    items = [(k, _scalar(v)) for k, v in pairs]
    kw = max([len(k) for k, _ in items] + [1])
    return [("%s  %s" % (k.ljust(kw), clip(v, width - kw - 2))).rstrip() for k, v in items]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def body_fields(body: bytes) -> Dict[str, str]:
    """JSON fields for a body: the text when it is UTF-8, else base64."""
    try:
        return {"body": body.decode("utf-8"), "body_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode("ascii"), "body_encoding": "base64"}


def body_text(body: bytes) -> str:
    """A body for people: the text when it is UTF-8, else escaped bytes."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return repr(body)


def jid_arg(text: str) -> int:
    """argparse type: a job id."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError("not a job id: %r" % (text,))
    return int(text)


def uint_arg(text: str) -> int:
    """argparse type: a non-negative integer below 2**32."""
    if not text.isdigit() or int(text) >= 2 ** 32:
        raise argparse.ArgumentTypeError("not an integer in 0..4294967295: %r" % (text,))
    return int(text)


# -- read commands ------------------------------------------------------------

def cmd_stats(conn: Connection, args: argparse.Namespace) -> int:
    if args.tube is not None and args.job is not None:
        raise UsageError("stats takes --tube or --job, not both")
    if args.tube is not None:
        stats = _not_found(lambda: conn.stats_tube(args.tube), "tube %r" % (args.tube,))
    elif args.job is not None:
        stats = _not_found(lambda: conn.stats_job(args.job), "job %d" % (args.job,))
    else:
        stats = conn.stats()
    if args.json:
        print_json(stats)
    else:
        for line in key_values(stats.items()):
            out(line)
    return 0


def _not_found(call: Callable[[], Any], what: str) -> Any:
    try:
        return call()
    except NotFound:
        raise ServerError("%s not found" % (what,)) from None


TUBE_COLUMNS = ("tube", "ready", "reserved", "delayed", "buried", "waiting", "paused")


def tube_rows(conn: Connection) -> List[Dict[str, Any]]:
    """Counts of every tube, sorted by name (tubes that vanish meanwhile are left out)."""
    rows = []
    for name in sorted(conn.tubes()):
        try:
            st = conn.stats_tube(name)
        except NotFound:
            continue
        rows.append({"tube": name,
                     "ready": st["current-jobs-ready"], "reserved": st["current-jobs-reserved"],
                     "delayed": st["current-jobs-delayed"], "buried": st["current-jobs-buried"],
                     "waiting": st["current-waiting"], "paused": st["pause-time-left"],
                     "total-jobs": st["total-jobs"], "cmd-delete": st["cmd-delete"]})
    return rows


def cmd_tubes(conn: Connection, args: argparse.Namespace) -> int:
    rows = tube_rows(conn)
    if args.json:
        print_json([{k: r[k] for k in TUBE_COLUMNS} for r in rows])
        return 0
    lines = table([c.upper() for c in TUBE_COLUMNS],
                  [[r["tube"], r["ready"], r["reserved"], r["delayed"], r["buried"], r["waiting"],
                    "%ds" % r["paused"] if r["paused"] else "-"] for r in rows])
    for line in lines:
        out(line)
    return 0


def job_info(conn: Connection, jid: int, body: bytes) -> Dict[str, Any]:
    """What ``peek`` shows of one job."""
    st = conn.stats_job(jid)
    info = {"id": jid, "tube": st["tube"], "state": st["state"], "priority": st["pri"],
            "age": st["age"], "ttr": st["ttr"], "delay": st["delay"], "time-left": st["time-left"]}
    info.update(body_fields(body))
    return info


def cmd_peek(conn: Connection, args: argparse.Namespace) -> int:
    what = args.what
    if what in STATES:
        conn.use(args.tube)
        job = getattr(conn, "peek_" + what)()
        if job is None:
            raise ServerError("no %s job in tube %r" % (what, args.tube))
    else:
        if args.tube != "default":
            raise UsageError("peek ID takes no --tube")
        try:
            jid = jid_arg(what)
        except argparse.ArgumentTypeError:
            raise UsageError(
                "peek what? ready, delayed, buried or a job id, not %r" % (what,)) from None
        job = conn.peek(jid)
        if job is None:
            raise ServerError("job %d not found" % (jid,))
    try:
        info = job_info(conn, job.jid, job.raw_body)
    except NotFound:
        raise ServerError("job %d went away" % (job.jid,)) from None
    if args.json:
        print_json(info)
        return 0
    for line in key_values((k, info[k]) for k in
                           ("id", "tube", "state", "priority", "age", "ttr", "delay", "time-left")):
        out(line)
    out("body (%d bytes):" % (len(job.raw_body),))
    out(body_text(job.raw_body))
    return 0


# -- write commands -----------------------------------------------------------

def _read_input(path: Optional[str]) -> IO[bytes]:
    if path is None or path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UsageError("cannot read %s: %s" % (path, exc.strerror)) from None


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Non-empty lines of ``stream`` without their line end."""
    for line in stream:
        line = line.rstrip(b"\n")
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:
            yield line


def cmd_put(conn: Connection, args: argparse.Namespace) -> int:
    conn.use(args.tube)
    if args.lines:
        if args.body is not None:
            bodies: Iterable[bytes] = [b for b in os.fsencode(args.body).splitlines() if b]
        else:
            bodies = _lines(sys.stdin.buffer)
        try:
            ids = conn.put_many(bodies, args.priority, args.delay, args.ttr)
        except BatchError as exc:
            ids = exc.results
            for r in ids:
                if isinstance(r, BaseException):
                    err("put: %s" % (describe(r),))
            _print_ids(args, [r for r in ids if not isinstance(r, BaseException)])
            return 1
        _print_ids(args, ids)
        return 0
    body = os.fsencode(args.body) if args.body is not None else sys.stdin.buffer.read()
    jid = conn.put(body, args.priority, args.delay, args.ttr)
    _print_ids(args, [jid])
    return 0


def _print_ids(args: argparse.Namespace, ids: List[Any]) -> None:
    if args.json:
        print_json(ids)
    else:
        for jid in ids:
            out(str(jid))


def cmd_kick(conn: Connection, args: argparse.Namespace) -> int:
    conn.use(args.tube)
    n = conn.kick(args.bound)
    if args.json:
        print_json({"kicked": n})
    else:
        out("kicked %d job%s in tube %s" % (n, "" if n == 1 else "s", args.tube))
    return 0


def cmd_kick_job(conn: Connection, args: argparse.Namespace) -> int:
    try:
        conn.kick_job(args.id)
    except NotFound:
        raise ServerError("job %d not found or not buried/delayed" % (args.id,)) from None
    out("kicked job %d" % (args.id,))
    return 0


def cmd_delete(conn: Connection, args: argparse.Namespace) -> int:
    results = conn.delete_many(args.ids, raise_errors=False)
    failed = 0
    for jid, r in zip(args.ids, results):
        if r is None:
            out("deleted %d" % (jid,))
        else:
            failed += 1
            err("job %d: %s" % (jid, "not found (or reserved by another client)"
                                if isinstance(r, NotFound) else describe(r)))
    return 1 if failed else 0


def cmd_bury(conn: Connection, args: argparse.Namespace) -> int:
    try:
        pri = conn.stats_job(args.id)["pri"]
        conn.reserve_job(args.id)
    except NotFound:
        raise ServerError("job %d not found or reserved by another client" % (args.id,)) from None
    except UnexpectedResponse as exc:
        raise ServerError("cannot reserve job %d to bury it (reserve-job needs beanstalkd "
                          ">= 1.12): %s" % (args.id, describe(exc))) from None
    conn.bury(args.id, pri)
    out("buried job %d" % (args.id,))
    return 0


def cmd_pause(conn: Connection, args: argparse.Namespace) -> int:
    try:
        conn.pause_tube(args.tube, args.seconds)
    except NotFound:
        raise ServerError("tube %r not found" % (args.tube,)) from None
    out("paused tube %s for %d s" % (args.tube, args.seconds))
    return 0


# -- export / import / drain --------------------------------------------------

class Exporter:
    """Writes the jobs of one tube as JSON lines; see EXPORT_HELP."""

    def __init__(self, conn: Connection, tube: str, move: bool, stream: IO[bytes]) -> None:
        self.conn = conn
        self.tube = tube
        self.move = move
        self.stream = stream
        self.written = 0
        self.seen: Set[int] = set()
        # jid -> (priority, deadline of its delay or None): released at the end
        self.held: Dict[int, Tuple[int, Optional[float]]] = {}

    def write(self, record: Dict[str, Any]) -> None:
        """Write and flush one job's line: only then may the job be deleted."""
        self.stream.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        self.stream.flush()
        self.written += 1

    def record(self, jid: int, body: bytes, stats: Mapping[str, Any], state: str,
               delay: int) -> Dict[str, Any]:
        rec: Dict[str, Any] = {"id": jid, "tube": self.tube, "state": state,
                               "priority": stats["pri"], "ttr": stats["ttr"], "delay": delay}
        rec.update(body_fields(body))
        return rec

    def delete(self, jid: int) -> None:
        try:
            self.conn.delete(jid)
        except CommandFailed as exc:    # e.g. its TTR ran out and a consumer took it
            err("warning: job %d was written but could not be deleted (%s); it is also "
                "still on the server" % (jid, describe(exc)))

    def walk(self, state: str) -> None:
        """Export every job of ``state``: peek the first, reserve it by id,
        write it, then delete it (--move), bury it again (buried: it moves to
        the end of the list) or hold it reserved (ready, delayed) so that the
        next peek shows the next job. Works on paused tubes too."""
        conn = self.conn
        peek = getattr(conn, "peek_" + state)
        rotated: Set[int] = set()
        while True:
            job = peek()
            if job is None or job.jid in rotated:
                return
            jid = job.jid
            try:
                stats = conn.stats_job(jid)
                conn.reserve_job(jid)
            except NotFound:        # deleted or reserved by someone else meanwhile
                continue
            if jid in self.seen:    # held, its TTR ran out, back again: hold it again
                continue
            self.seen.add(jid)
            left = stats["time-left"] if stats["state"] == "delayed" else 0
            try:
                self.write(self.record(jid, job.raw_body, stats, state, left))
            except (OSError, KeyboardInterrupt):    # not written: put it back as it was
                if state == "buried":
                    conn.bury(jid, stats["pri"])
                else:
                    conn.release(jid, stats["pri"], left)
                raise
            if self.move:
                self.delete(jid)
            elif state == "buried":
                conn.bury(jid, stats["pri"])
                rotated.add(jid)
            else:
                self.held[jid] = (stats["pri"], time.monotonic() + left if left else None)

    def release_held(self) -> None:
        """Give back the held jobs: ready ones with their priority, delayed
        ones with their priority and the delay they have left."""
        now = time.monotonic()
        for jid, (pri, deadline) in self.held.items():
            delay = 0 if deadline is None else max(0, math.ceil(deadline - now))
            try:
                self.conn.release(jid, pri, delay)
            except NotFound:      # its TTR ran out meanwhile: the server released it
                pass
        self.held.clear()


def cmd_export(conn: Connection, args: argparse.Namespace) -> int:
    conn.use(args.tube)
    exporter = Exporter(conn, args.tube, args.move, sys.stdout.buffer)
    states = EXPORT_ORDER if args.state == "all" else (args.state,)
    lost = False
    try:
        for state in states:
            exporter.walk(state)
    except SocketError:
        lost = True       # the server gives the held jobs back when it sees the connection go
        raise
    finally:
        if not lost:
            exporter.release_held()
    err("%s %d job%s from tube %s" % ("moved" if args.move else "exported", exporter.written,
                                      "" if exporter.written == 1 else "s", args.tube))
    return 0


def parse_record(line: bytes, number: int) -> Dict[str, Any]:
    """One exported job, checked (UsageError naming the line otherwise)."""
    try:
        rec = json.loads(line)
        if not isinstance(rec, dict):
            raise ValueError("not an object")
        enc = rec.get("body_encoding", "utf-8")
        text = rec["body"]
        if not isinstance(text, str):
            raise ValueError("body is not a string")
        if enc == "base64":
            body = base64.b64decode(text.encode("ascii"), validate=True)
        elif enc == "utf-8":
            body = text.encode("utf-8")
        else:
            raise ValueError("unknown body_encoding %r" % (enc,))
        job = {"body": body, "tube": rec.get("tube", "default"), "state": rec.get("state", "ready"),
               "line": number}
        for key, default in (("priority", beanstalkc_fast.DEFAULT_PRIORITY), ("ttr", 120),
                             ("delay", 0)):
            value = rec.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2 ** 32:
                raise ValueError("%s must be an integer in 0..4294967295" % (key,))
            job[key] = value
        if not isinstance(job["tube"], str) or job["state"] not in STATES:
            raise ValueError("bad tube or state")
        return job
    except (ValueError, KeyError, UnicodeError) as exc:
        raise UsageError("input line %d: not an exported job (%s)" % (number, exc)) from None


BURY_HOLD = 3600   # an imported buried job waits delayed, out of consumers' reach, until buried


def cmd_import(conn: Connection, args: argparse.Namespace) -> int:
    stream = _read_input(args.file)
    total = 0
    failed = 0
    chunk: List[Dict[str, Any]] = []
    tube: Optional[str] = None

    def flush() -> None:
        nonlocal total, failed
        if not chunk:
            return
        pipe = conn.pipeline()
        for job in chunk:
            delay = BURY_HOLD if job["state"] == "buried" else job["delay"]
            pipe.put(job["body"], job["priority"], delay, job["ttr"])
        for job, result in zip(chunk, pipe.execute()):
            if isinstance(result, BaseException):
                failed += 1
                err("input line %d: not imported: %s" % (job["line"], describe(result)))
                continue
            if job["state"] == "buried":
                conn.reserve_job(result)
                conn.bury(result, job["priority"])
            total += 1
        chunk.clear()

    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        job = parse_record(line, number)
        target = args.tube if args.tube is not None else job["tube"]
        if target != tube or len(chunk) >= IMPORT_CHUNK:
            flush()
            if target != tube:
                conn.use(target)
                tube = target
        chunk.append(job)
    flush()
    if args.json:
        print_json({"imported": total, "failed": failed})
    else:
        out("imported %d job%s" % (total, "" if total == 1 else "s"))
    return 1 if failed else 0


def cmd_drain(conn: Connection, args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError("drain deletes jobs for good: add --yes to do it")
    conn.use(args.tube)
    states = EXPORT_ORDER if args.state == "all" else (args.state,)
    deleted = 0
    for state in states:
        peek = getattr(conn, "peek_" + state)
        while True:
            job = peek()
            if job is None:
                break
            try:
                conn.delete(job.jid)
                deleted += 1
            except NotFound:        # reserved by a consumer meanwhile: not ours to delete
                pass
    if args.json:
        print_json({"deleted": deleted})
    else:
        out("deleted %d job%s from tube %s" % (deleted, "" if deleted == 1 else "s", args.tube))
    return 0


def cmd_top(conn: Connection, args: argparse.Namespace) -> int:
    from beanstalkc_fast import _top
    return _top.run(conn, args.interval, server_name(args.server))


WORK_HELP = """\
Run the handler module:function (imported from the current directory or
PYTHONPATH) over the jobs of the tubes with beanstalkc_fast.Worker: the
handler returns -> the job is deleted; it raises -> released with a delay
growing with the job's attempts (1, 2, 4... s, capped), buried at the
--max-attempts-th failure; raising (or returning) beanstalkc_fast.worker.
Release(delay) / Bury() decides explicitly. Jobs are touched while the
handler runs (TTR heartbeat).

An `async def` handler runs on the asyncio worker (--concurrency tasks);
a plain function in --concurrency threads, or processes with --mode process.
With --batch N the handler gets a list of up to N jobs and returns None or
one result per job.

SIGTERM or SIGINT: no new job is taken, running handlers get --grace seconds,
then their jobs are released with their priority kept; a second signal ends
the grace period. Exit status 0 after a stop."""


def load_handler(spec: str) -> Callable[..., Any]:
    """The function named by ``module:function`` (UsageError otherwise)."""
    import importlib
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError("bad handler %r: use module:function" % (spec,))
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError("cannot import %s: %s" % (module_name, exc)) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError("%s has no %s" % (module_name, attr)) from None
    if not callable(obj):
        raise UsageError("%s is not callable" % (spec,))
    return obj  # type: ignore[no-any-return]


def cmd_work(conn: None, args: argparse.Namespace) -> int:
    import asyncio
    import inspect
    import logging
    from beanstalkc_fast.worker import RetryPolicy, Worker
    handler = load_handler(args.handler)
    is_async = inspect.iscoroutinefunction(handler)
    mode = args.mode or ("asyncio" if is_async else "thread")
    if is_async and mode != "asyncio":
        raise UsageError("%s is an async def handler: it needs --mode asyncio" % (args.handler,))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    retry = RetryPolicy(max_attempts=args.max_attempts, delay=args.retry_delay,
                        max_delay=args.retry_max_delay)
    options: Dict[str, Any] = dict(args.server)
    host = options.pop("host", beanstalkc_fast.DEFAULT_HOST)
    port = options.pop("port", beanstalkc_fast.DEFAULT_PORT)
    settings = dict(tubes=args.tube or ["default"], host=host, port=port,
                    concurrency=args.concurrency, batch=args.batch, retry=retry,
                    grace=args.grace, reserve_timeout=args.reserve_timeout, **options)
    try:        # bad settings (a --url option a Worker does not take): a usage error
        if mode == "asyncio":
            from beanstalkc_fast.asyncio import Worker as AsyncWorker
            aworker = AsyncWorker(handler, **settings)
        else:
            worker = Worker(handler, mode=mode, **settings)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    if mode == "asyncio":
        asyncio.run(aworker.run())
        counters = aworker.counters
    else:
        worker.run()
        counters = worker.counters
    if args.json:
        print_json(counters)
    return 0


# -- argument parsing and main ------------------------------------------------

def describe(exc: BaseException) -> str:
    """One line for an exception from the client."""
    if isinstance(exc, CommandFailed):
        return "%s: %s" % (exc.args[0], exc.args[1]) if len(exc.args) > 1 else str(exc)
    if isinstance(exc, UnexpectedResponse) and len(exc.args) > 1:
        return "%s: unexpected reply %s" % (exc.args[0], exc.args[1])
    return str(exc) or exc.__class__.__name__


def err(text: str) -> None:
    sys.stderr.write("%s: %s\n" % (PROG, text))


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (exit status 2)."""

    def error(self, message: str) -> "NoReturn":
        self.exit(2, "%s: %s (see %s --help)\n" % (PROG, message, self.prog))


def build_parser() -> argparse.ArgumentParser:
    version = "beanstalkc_fast %s (%s core)" % (beanstalkc_fast.__version__,
                                                beanstalkc_fast.IMPLEMENTATION)
    common = Parser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help="server: host:port, beanstalk://host:port[?options], "
                             "beanstalks://host:port?ca_file=... (TLS) or unix:///path "
                             "(default: $BEANSTALK_URL or %s)" % (DEFAULT_URL,))
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    parser = Parser(
        prog=PROG, parents=[common],
        description="Inspect, move and watch a beanstalkd server.",
        epilog="Exit status: 0 ok, 1 server refused, 2 usage error, 3 server unreachable.")
    parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, func: Callable[..., int], help: str,
                **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help,
                           description=kw.pop("description", help), **kw)
        p.set_defaults(func=func)
        return p

    p = command("stats", cmd_stats, "server statistics, or of a tube or a job")
    p.add_argument("--tube", help="statistics of this tube")
    p.add_argument("--job", type=jid_arg, metavar="ID", help="statistics of this job")

    command("tubes", cmd_tubes, "one line per tube with its job counts")

    p = command("peek", cmd_peek,
                "show a job: the first ready/delayed/buried one of a tube, or by id")
    p.add_argument("what", metavar="ready|delayed|buried|ID")
    p.add_argument("--tube", default="default")

    p = command("put", cmd_put, "put a job (body from the argument or stdin); prints its id")
    p.add_argument("body", nargs="?", metavar="BODY")
    p.add_argument("--tube", default="default")
    p.add_argument("--priority", type=uint_arg, default=beanstalkc_fast.DEFAULT_PRIORITY)
    p.add_argument("--delay", type=uint_arg, default=0)
    p.add_argument("--ttr", type=uint_arg, default=beanstalkc_fast.DEFAULT_TTR)
    p.add_argument("--lines", action="store_true",
                   help="one job per non-empty input line, pipelined")

    p = command("kick", cmd_kick, "kick up to N buried (else delayed) jobs of a tube")
    p.add_argument("bound", type=uint_arg, metavar="N")
    p.add_argument("--tube", default="default")

    p = command("kick-job", cmd_kick_job, "kick one buried or delayed job")
    p.add_argument("id", type=jid_arg, metavar="ID")

    p = command("delete", cmd_delete, "delete jobs by id (pipelined)")
    p.add_argument("ids", type=jid_arg, nargs="+", metavar="ID")

    p = command("bury", cmd_bury, "bury a ready or delayed job (reserve-job, then bury; "
                                  "beanstalkd >= 1.12)")
    p.add_argument("id", type=jid_arg, metavar="ID")

    p = command("pause", cmd_pause, "let no job of TUBE be reserved for SECONDS")
    p.add_argument("tube", metavar="TUBE")
    p.add_argument("seconds", type=uint_arg, metavar="SECONDS")

    p = command("export", cmd_export, "write a tube's jobs as JSON lines to stdout",
                description=EXPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tube", metavar="TUBE")
    p.add_argument("--state", choices=STATES + ("all",), default="all")
    p.add_argument("--move", action="store_true",
                   help="delete each job once its line is written and flushed")

    p = command("import", cmd_import, "put exported jobs (JSON lines) back, pipelined")
    p.add_argument("file", metavar="FILE|-", nargs="?", default="-")
    p.add_argument("--tube", help="put every job into this tube (default: each job's own)")

    p = command("drain", cmd_drain, "delete every job of a tube in a state")
    p.add_argument("tube", metavar="TUBE")
    p.add_argument("--state", choices=STATES + ("all",), default="all")
    p.add_argument("--yes", action="store_true", help="really delete")

    p = command("top", cmd_top, "live view of the server and its tubes (q quits)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")

    p = command("work", cmd_work, "run a handler function over the jobs of tubes (a worker)",
                description=WORK_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(connect=False)
    p.add_argument("handler", metavar="module:function")
    p.add_argument("--tube", action="append", metavar="TUBE",
                   help="a tube to take jobs from (repeatable; default: default)")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="threads, processes or tasks, each with its own connection (default 1)")
    p.add_argument("--mode", choices=("thread", "process", "asyncio"),
                   help="default: asyncio for an async def handler, else thread")
    p.add_argument("--batch", type=int, metavar="N",
                   help="give the handler lists of up to N jobs (reserve_many)")
    p.add_argument("--max-attempts", type=int, default=5, metavar="N",
                   help="bury a job at its N-th failed attempt (default 5)")
    p.add_argument("--retry-delay", type=uint_arg, default=1, metavar="SECONDS",
                   help="release delay after the first failure, doubling (default 1)")
    p.add_argument("--retry-max-delay", type=uint_arg, default=3600, metavar="SECONDS",
                   help="cap of the release delay (default 3600)")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="time running handlers get at stop (default 30)")
    p.add_argument("--reserve-timeout", type=int, default=1, metavar="SECONDS",
                   help="reserve timeout of each round (default 1)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="info")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    url = getattr(args, "url", None) or os.environ.get("BEANSTALK_URL") or DEFAULT_URL
    try:
        args.server = parse_url(url)
    except UsageError as exc:
        err(str(exc))
        return 2
    where = server_name(args.server)
    conn = None
    try:
        if getattr(args, "connect", True):
            conn = connect(args)
        status: int = args.func(conn, args)
        sys.stdout.flush()
        return status
    except UsageError as exc:
        err(str(exc))
        return 2
    except ServerError as exc:
        err("%s: %s" % (where, exc))
        return 1
    except SocketError as exc:
        err("%s: %s" % (where, describe(exc)))
        return 3
    except (CommandFailed, UnexpectedResponse, BatchError) as exc:
        err("%s: %s" % (where, describe(exc)))
        return 1
    except ValueError as exc:       # the client's argument checks
        err(str(exc))
        return 2
    except BrokenPipeError:
        _quiet_stdout()
        if args.command == "export":    # the jobs not written stay on the server
            err("output closed; the jobs not written are still on the server")
        return 1
    except OSError as exc:              # writing the output (or reading a file) failed
        err("%s: %s" % (exc.filename or "output", exc.strerror or exc))
        return 1
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    finally:
        if conn is not None:
            conn.close()


def _quiet_stdout() -> None:
    # stdout's reader went away: route further writes (at exit) nowhere.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
