"""asyncio Pool: several beanstalkd servers as one queue, with failover.

Built on the public API of ``beanstalkc_fast.asyncio.Connection`` only. Each
server has two connections: one for commands (put, use, stats, peek, kick)
and one for reserving (reserve, and the actions of the jobs it hands out).

Delivery guarantees (see also the README's "Pool" section):

- ``put`` returns only after the server answered INSERTED. A server that
  refuses the connection, or whose connection was already broken (nothing
  written), is skipped and the next one gets the job. A put whose reply was
  lost is never sent elsewhere: SocketError "may or may not have been
  inserted".
- ``reserve`` waits on every server at once (one reserve per server). A job
  that arrives for a reserve that did not win is kept and handed out by the
  next ``reserve`` (it stays reserved on its server meanwhile); one not
  handed out within ``hold`` seconds is released with its priority kept, and
  ``close()`` releases all of them (closing a connection releases its jobs).
- A job acts on the server (and connection) that reserved it. Finish with a
  job before the next ``reserve`` on the same pool: a job's delete waits
  behind that reserve otherwise. Give each concurrent consumer its own Pool.
"""

import asyncio
import functools
import hashlib
import itertools
from typing import Any, Coroutine, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from . import asyncio as bsa
from .commands import DEFAULT_PRIORITY, DEFAULT_TTR, DEFAULT_TUBE_NAME
from .endpoint import check_tube, connection_kwargs, parse_url
from .errors import ConnectionBroken, NotFound, SocketError

__all__ = ["Pool"]

ServerSpec = Union[str, Tuple[str, int]]


class _Server:
    """One server of the pool: its connections and its health."""

    def __init__(self, name: str, kwargs: Dict[str, Any]) -> None:
        self.name = name
        self.kwargs = kwargs
        self.conn: Optional[bsa.Connection] = None      # commands
        self.rconn: Optional[bsa.Connection] = None     # reserve and job actions
        self.failures = 0
        self.retry_at = 0.0
        self.task: Optional["asyncio.Task[Optional[bsa.Job]]"] = None

    def healthy(self) -> bool:
        return self.conn is not None and self.conn.broken is None


class Pool:
    """Several beanstalkd servers as one queue (asyncio).

    ``servers``: URLs (``beanstalk://host:port``) or ``(host, port)`` pairs;
    ``options``: the asyncio Connection's options for every server.
    ``retry_min``/``retry_max``: backoff (seconds) before a failed server is
    tried again (doubling per failure). ``hold``: how long a job reserved but
    not handed out is kept before it is released.
    """

    def __init__(self, servers: Sequence[ServerSpec], retry_min: float = 0.1,
                 retry_max: float = 5.0, hold: float = 0.5, **options: Any) -> None:
        if not servers:
            raise ValueError("a Pool needs at least one server")
        self._servers: List[_Server] = []
        tube: Optional[str] = None
        for spec in servers:
            if isinstance(spec, str):
                endpoint = parse_url(spec)
                kwargs = connection_kwargs(endpoint, options)
                if endpoint.tube is not None:
                    if tube is not None and tube != endpoint.tube:
                        raise ValueError("the pool's URLs name different tubes: %r, %r"
                                         % (tube, endpoint.tube))
                    tube = endpoint.tube
                name = endpoint.address
            elif isinstance(spec, tuple) and len(spec) == 2:
                kwargs = dict(options, host=spec[0], port=spec[1])
                name = "%s:%s" % spec
            else:
                raise ValueError("a pool server is a URL or a (host, port) pair, not %r"
                                 % (spec,))
            bsa.Connection(**kwargs)          # its options checked now (nothing connects)
            if any(s.name == name for s in self._servers):
                raise ValueError("server %s given twice" % (name,))
            self._servers.append(_Server(name, kwargs))
        self._using = tube or DEFAULT_TUBE_NAME
        self._watching = [tube] if tube else [DEFAULT_TUBE_NAME]
        self._retry = (retry_min, retry_max)
        self.hold = hold
        self._next = itertools.count()
        self._ready: List[bsa.Job] = []                 # reserved, not yet handed out
        self._closed = False
        self._tasks: Set["asyncio.Future[None]"] = set()  # closes and releases under way
        self._errors: List[BaseException] = []      # refusals of reserves for the caller

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on its own, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def servers(self) -> List[str]:
        """The servers' names (``host:port``), in the order given."""
        return [s.name for s in self._servers]

    def healthy(self) -> List[str]:
        """The servers whose command connection is up now."""
        return [s.name for s in self._servers if s.healthy()]

    # -- health ------------------------------------------------------------------
    def _failed(self, server: _Server) -> None:
        """Drop the server's command connection and schedule a retry."""
        loop = asyncio.get_running_loop()
        server.failures += 1
        low, high = self._retry
        server.retry_at = loop.time() + min(high, low * 2 ** (server.failures - 1))
        conn, server.conn = server.conn, None
        if conn is not None:
            self._background(conn.close())

    async def _open(self, server: _Server, reserving: bool) -> bsa.Connection:
        """A new connection to ``server`` with the pool's tubes (SocketError)."""
        conn = bsa.Connection(**server.kwargs)
        await conn.connect()
        try:
            if reserving:
                for name in self._watching:
                    await conn.watch(name)
                if DEFAULT_TUBE_NAME not in self._watching:
                    await conn.ignore(DEFAULT_TUBE_NAME)
            elif self._using != DEFAULT_TUBE_NAME:
                await conn.use(self._using)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _command_conn(self, server: _Server, force: bool = False) -> Optional[bsa.Connection]:
        """The server's command connection, (re)connected when its backoff has
        passed (or ``force``); None when it is down."""
        if self._closed:
            raise ConnectionBroken("the pool is closed")
        if server.healthy():
            return server.conn
        if not force and asyncio.get_running_loop().time() < server.retry_at:
            return None
        try:
            server.conn = await self._open(server, reserving=False)
        except SocketError:
            self._failed(server)
            return None
        server.failures = 0
        return server.conn

    # -- producing ---------------------------------------------------------------------
    def _order(self, key: Optional[Union[str, bytes]]) -> List[_Server]:
        """Servers in the order a put tries them: round robin, or by
        rendezvous hashing of ``key`` (stable across processes)."""
        if key is None:
            start = next(self._next) % len(self._servers)
            return self._servers[start:] + self._servers[:start]
        if not isinstance(key, (str, bytes)):
            raise TypeError("key must be str or bytes, not %s" % type(key).__name__)
        raw = key.encode("utf-8") if isinstance(key, str) else key

        def score(server: _Server) -> bytes:
            return hashlib.blake2b(raw + b"\0" + server.name.encode("utf-8"),
                                   digest_size=8).digest()
        return sorted(self._servers, key=score, reverse=True)

    async def put(self, body: Any, priority: int = DEFAULT_PRIORITY, delay: int = 0,
                  ttr: int = DEFAULT_TTR, key: Optional[Union[str, bytes]] = None) -> int:
        """Put the job on a healthy server (round robin, or chosen by ``key``);
        its id on that server. SocketError when no server took it, or when
        its reply was lost (it may or may not have been inserted: never sent
        again elsewhere)."""
        job_id, _ = await self.put_to(body, priority, delay, ttr, key)
        return job_id

    async def put_to(self, body: Any, priority: int = DEFAULT_PRIORITY, delay: int = 0,
                     ttr: int = DEFAULT_TTR,
                     key: Optional[Union[str, bytes]] = None) -> Tuple[int, str]:
        """Like ``put``; ``(id, server)``."""
        order = self._order(key)
        for force in (False, True):           # all down: try each once regardless
            for server in order:
                conn = await self._command_conn(server, force)
                if conn is None:
                    continue
                try:
                    return int(await conn.put(body, priority, delay, ttr)), server.name
                except ConnectionBroken:      # nothing written: the next server
                    self._failed(server)
                except SocketError as exc:    # written, reply lost: never resent
                    self._failed(server)
                    exc.args = ("%s: %s" % (server.name, exc.args[0]),)
                    raise
        raise SocketError("no server took the job: all of %s are down"
                          % ", ".join(self.servers))

    async def put_many(self, bodies: Iterable[Any], priority: int = DEFAULT_PRIORITY,
                       delay: int = 0, ttr: int = DEFAULT_TTR) -> List[Tuple[int, str]]:
        """Put every body, spread in contiguous slices over the healthy servers
        and pipelined; ``(id, server)`` per body, in order. When a server fails
        during its slice, SocketError after all slices, whose ``results`` hold
        ``(id, server)`` or an exception per body."""
        items = list(bodies)
        if not items:
            return []
        up = [s for s in self._order(None) if await self._command_conn(s) is not None]
        if not up:
            up = [s for s in self._servers if await self._command_conn(s, True) is not None]
        if not up:
            raise SocketError("no server took the jobs: all of %s are down"
                              % ", ".join(self.servers))
        size = -(-len(items) // len(up))
        slices = [(server, items[i * size:(i + 1) * size]) for i, server in enumerate(up)]

        async def one(server: _Server, part: List[Any]) -> List[Any]:
            conn = server.conn
            assert conn is not None
            try:
                ids = await conn.put_many(part, priority, delay, ttr)
            except SocketError as exc:
                self._failed(server)
                got = list(getattr(exc, "results", ()))
                got += [exc] * (len(part) - len(got))
                return [(r, server.name) if isinstance(r, int) else r for r in got]
            return [(int(r), server.name) for r in ids]

        parts = await asyncio.gather(*(one(s, p) for s, p in slices if p))
        results = [r for part in parts for r in part]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            err = SocketError("put_many: %d of %d jobs may or may not have been inserted (%s)"
                              % (len(failed), len(results), failed[0]))
            err.results = results  # type: ignore[attr-defined]
            raise err
        return results

    # -- tubes ------------------------------------------------------------------------------
    async def use(self, name: str) -> str:
        """Use tube ``name`` on every server (and on every reconnect)."""
        check_tube(name)
        for server in self._servers:
            if server.healthy():
                assert server.conn is not None
                await server.conn.use(name)
        self._using = name
        return name

    def using(self) -> str:
        """The tube puts go to."""
        return self._using

    def watching(self) -> List[str]:
        """The tubes reserve takes jobs from."""
        return list(self._watching)

    async def watch(self, name: str) -> int:
        """Watch tube ``name`` on every server; the number of watched tubes."""
        check_tube(name)
        if name not in self._watching:
            self._watching.append(name)
            await self._rewatch()
        return len(self._watching)

    async def ignore(self, name: str) -> int:
        """Stop watching ``name`` on every server; the number of watched tubes
        (ignoring the last one is refused and returns 1, as on a connection)."""
        check_tube(name)
        if name in self._watching and len(self._watching) > 1:
            self._watching.remove(name)
            await self._rewatch()
        return len(self._watching)

    async def _rewatch(self) -> None:
        """The reserving connections reopen with the new watch list (a
        reserve in flight would hold a watch sent behind it)."""
        await self._drop_reserving()

    async def _drop_reserving(self) -> None:
        for server in self._servers:
            task, server.task = server.task, None
            if task is not None:
                task.cancel()
            conn, server.rconn = server.rconn, None
            if conn is not None:
                await conn.close()          # the server releases what it held
        self._ready = []

    # -- consuming --------------------------------------------------------------------------
    async def _reserve_on(self, server: _Server, timeout: Optional[int]) -> Optional[bsa.Job]:
        """Reserve one job on ``server``, (re)connecting with backoff first."""
        loop = asyncio.get_running_loop()
        while server.rconn is None or server.rconn.broken is not None:
            server.rconn = None
            wait = server.retry_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                server.rconn = await self._open(server, reserving=True)
            except SocketError:
                self._failed(server)
        try:
            job = await server.rconn.reserve(timeout)
        except SocketError:
            self._failed(server)
            server.rconn = None
            raise
        if job is not None:
            job.server = server.name
        return job  # type: ignore[no-any-return]

    def _start(self, server: _Server, timeout: Optional[int]) -> "asyncio.Task[Optional[bsa.Job]]":
        task = asyncio.ensure_future(self._reserve_on(server, timeout))
        server.task = task
        task.add_done_callback(functools.partial(self._done, server))
        return task

    def _done(self, server: _Server, task: "asyncio.Task[Optional[bsa.Job]]") -> None:
        """A server's reserve finished: keep its job (released after ``hold``
        unless handed out), or its refusal for the caller."""
        if server.task is task:
            server.task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, SocketError):     # e.g. DeadlineSoon: the caller's
                self._errors.append(exc)
            return
        job = task.result()
        if job is not None:
            if self._closed:
                return                              # its connection's close releases it
            self._ready.append(job)
            asyncio.get_running_loop().call_later(self.hold, self._expire, job)

    def _expire(self, job: bsa.Job) -> None:
        """A job kept too long without a taker goes back, priority kept."""
        for i, kept in enumerate(self._ready):
            if kept is job:
                del self._ready[i]
                self._background(self._give_back(job))
                return

    async def _give_back(self, job: bsa.Job) -> None:
        try:
            await job.release()
        except Exception:             # noqa: S110 (the server releases it when the link drops)
            pass

    async def reserve(self, timeout: Optional[float] = None) -> Optional[bsa.Job]:
        """The first job ready on any server (waiting on all of them at once);
        None when ``timeout`` (seconds) expires. The job's ``server`` names
        its server; its actions go there."""
        jobs = await self.reserve_many(1, timeout)
        return jobs[0] if jobs else None

    async def reserve_many(self, n: int, timeout: Optional[float] = None) -> List[bsa.Job]:
        """Up to ``n`` jobs from all servers: waits (up to ``timeout``) for
        the first, then takes what the servers have ready now."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError("n must be an int >= 0, not %r" % (n,))
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, (int, float))
                                    or not 0 <= timeout < 2 ** 32):
            raise ValueError("timeout must be None or a number of seconds >= 0, not %r"
                             % (timeout,))
        if self._closed:
            raise ConnectionBroken("the pool is closed")
        if n == 0:
            return []
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._ready:
            if self._errors:
                raise self._errors.pop(0)
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            secs = None if remaining is None else int(-(-remaining // 1))
            fresh = [self._start(s, secs) for s in self._servers if s.task is None]
            tasks = {s.task for s in self._servers if s.task is not None}
            if tasks:
                await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0)                  # the done callbacks run
            if self._ready or deadline is None or loop.time() < deadline:
                continue
            pending = [t for t in fresh if not t.done() and secs is not None]
            if pending:                             # they answer about now
                await asyncio.wait(pending, timeout=2.0)
                await asyncio.sleep(0)
            break
        jobs, self._ready = self._ready[:n], self._ready[n:]
        if len(jobs) < n:
            try:
                jobs += await self._ready_now(n - len(jobs))
            except asyncio.CancelledError:
                self._ready[:0] = jobs              # kept for the next reserve
                raise
        return jobs

    async def _ready_now(self, n: int) -> List[bsa.Job]:
        """Up to ``n`` jobs the idle reserving connections get at once."""
        idle = [s for s in self._servers if s.task is None and s.rconn is not None
                and s.rconn.broken is None]
        got: List[bsa.Job] = []
        for server in idle:
            if len(got) >= n:
                break
            assert server.rconn is not None
            try:
                more = await server.rconn.reserve_many(n - len(got), 0)
            except SocketError:
                self._failed(server)
                server.rconn = None
                continue
            for job in more:
                job.server = server.name  # type: ignore[attr-defined]
            got += more
        return got

    async def delete_many(self, jobs: Iterable[bsa.Job]) -> None:
        """Delete jobs handed out by this pool, pipelined per server."""
        by_conn: Dict[int, List[bsa.Job]] = {}
        for job in jobs:
            by_conn.setdefault(id(job.conn), []).append(job)
        await asyncio.gather(*(group[0].conn.delete_many(group) for group in by_conn.values()))

    # -- per server ------------------------------------------------------------------------
    async def _each(self, method: str, *args: Any) -> Dict[str, Any]:
        """``{server: result}`` of one command on every reachable server."""
        out: Dict[str, Any] = {}
        for server in self._servers:
            conn = await self._command_conn(server)
            if conn is None:
                continue
            try:
                out[server.name] = await getattr(conn, method)(*args)
            except NotFound:
                out[server.name] = None
            except SocketError:
                self._failed(server)
        return out

    async def stats(self) -> Dict[str, Any]:
        """``{server: stats}`` of every reachable server."""
        return await self._each("stats")

    async def stats_tube(self, name: str) -> Dict[str, Any]:
        """Tube ``name``'s counts summed over the reachable servers (``name``
        kept); NotFound when no server has the tube."""
        found = [s for s in (await self._each("stats_tube", name)).values() if s is not None]
        if not found:
            raise NotFound("stats-tube", "NOT_FOUND", None)
        total: Dict[str, Any] = {"name": name}
        for stats in found:
            for field, value in stats.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    total[field] = total.get(field, 0) + value
        return total

    async def peek(self, jid: int) -> Dict[str, Any]:
        """``{server: Job or None}``: job ``jid`` on each server."""
        return await self._each("peek", jid)

    async def peek_ready(self) -> Dict[str, Any]:
        """``{server: Job or None}``: the next ready job of each server."""
        return await self._each("peek_ready")

    async def peek_delayed(self) -> Dict[str, Any]:
        """``{server: Job or None}``: the next delayed job of each server."""
        return await self._each("peek_delayed")

    async def peek_buried(self) -> Dict[str, Any]:
        """``{server: Job or None}``: the next buried job of each server."""
        return await self._each("peek_buried")

    async def kick(self, bound: int = 1) -> int:
        """Kick up to ``bound`` jobs on every server; how many were kicked."""
        return sum(int(v) for v in (await self._each("kick", bound)).values() if v)

    async def close(self) -> None:
        """Close every connection; jobs reserved and not yet handed out go
        back (the server releases a closed connection's jobs, priorities kept)."""
        self._closed = True
        await self._drop_reserving()
        for server in self._servers:
            conn, server.conn = server.conn, None
            if conn is not None:
                await conn.close()

    async def __aenter__(self) -> "Pool":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
