"""Sync Pool: the asyncio Pool run on a private event loop in a background
thread, behind blocking methods (one implementation of the pool's logic).

Every call, and every action of a job it hands out, runs on that loop; the
caller's thread blocks until it is done. So jobs act on their own server's
connection safely from any thread. See ``beanstalkc_fast._apool`` for the
delivery guarantees.
"""

import asyncio
import threading
from typing import Any, Coroutine, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar, Union

from . import asyncio as bsa  # first: it imports _apool at its end
from . import _apool
from .commands import DEFAULT_PRIORITY, DEFAULT_TTR
from .errors import ConnectionBroken

__all__ = ["Pool", "PoolJob"]

T = TypeVar("T")


class PoolJob:
    """A job handed out by a sync Pool: ``jid``, ``body``, ``raw_body``,
    ``reserved``, ``server``; its actions go to its server."""

    def __init__(self, pool: "Pool", job: bsa.Job) -> None:
        self._pool = pool
        self._job = job
        self.jid: int = job.jid
        self.server: str = getattr(job, "server", "")

    @property
    def body(self) -> Any:
        return self._job.body

    @property
    def raw_body(self) -> bytes:
        return self._job.raw_body

    @property
    def reserved(self) -> bool:
        return bool(self._job.reserved)

    def delete(self) -> None:
        """Delete this job."""
        self._pool._run(self._job.delete())

    def release(self, priority: Optional[int] = None, delay: int = 0) -> None:
        """Release this job (keeping its priority unless given)."""
        self._pool._run(self._job.release(priority, delay))

    def bury(self, priority: Optional[int] = None) -> None:
        """Bury this job (keeping its priority unless given)."""
        self._pool._run(self._job.bury(priority))

    def touch(self) -> None:
        """Ask for more time to work on this job."""
        self._pool._run(self._job.touch())

    def kick(self) -> None:
        """Kick this job if it is buried or delayed."""
        self._pool._run(self._job.kick())

    def stats(self) -> Any:
        """Statistics of this job."""
        return self._pool._run(self._job.stats())

    def __repr__(self) -> str:
        return "<PoolJob %s on %s>" % (self.jid, self.server)


class Pool:
    """Several beanstalkd servers as one queue, with blocking methods; the
    arguments are the asyncio Pool's (``beanstalkc_fast.asyncio.Pool``)."""

    def __init__(self, servers: Sequence[_apool.ServerSpec], **options: Any) -> None:
        self._apool = _apool.Pool(servers, **options)   # checks the arguments first
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="beanstalkc_fast-pool", daemon=True)
        self._thread.start()
        self._lock = threading.Lock()
        self._closed = False

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the pool's loop and wait for its result."""
        if self._closed:
            coro.close()
            raise ConnectionBroken("the pool is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync Pool cannot be called from its own loop thread")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()           # e.g. KeyboardInterrupt: the loop cancels the call
            raise

    def _wrap(self, value: Any) -> Any:
        return PoolJob(self, value) if isinstance(value, bsa.Job) else value

    @property
    def servers(self) -> List[str]:
        """The servers' names (``host:port``), in the order given."""
        return self._apool.servers

    def healthy(self) -> List[str]:
        """The servers whose command connection is up now."""
        return self._run(self._healthy())

    async def _healthy(self) -> List[str]:
        return self._apool.healthy()

    def put(self, body: Any, priority: int = DEFAULT_PRIORITY, delay: int = 0,
            ttr: int = DEFAULT_TTR, key: Optional[Union[str, bytes]] = None) -> int:
        """See ``asyncio.Pool.put``."""
        return self._run(self._apool.put(body, priority, delay, ttr, key))

    def put_to(self, body: Any, priority: int = DEFAULT_PRIORITY, delay: int = 0,
               ttr: int = DEFAULT_TTR,
               key: Optional[Union[str, bytes]] = None) -> Tuple[int, str]:
        """See ``asyncio.Pool.put_to``: ``(id, server)``."""
        return self._run(self._apool.put_to(body, priority, delay, ttr, key))

    def put_many(self, bodies: Iterable[Any], priority: int = DEFAULT_PRIORITY,
                 delay: int = 0, ttr: int = DEFAULT_TTR) -> List[Tuple[int, str]]:
        """See ``asyncio.Pool.put_many``: ``(id, server)`` per body."""
        return self._run(self._apool.put_many(list(bodies), priority, delay, ttr))

    def use(self, name: str) -> str:
        """Use tube ``name`` on every server (and on every reconnect)."""
        return self._run(self._apool.use(name))

    def using(self) -> str:
        """The tube puts go to."""
        return self._apool.using()

    def watching(self) -> List[str]:
        """The tubes reserve takes jobs from."""
        return self._apool.watching()

    def watch(self, name: str) -> int:
        """Watch ``name`` on every server; the number of watched tubes."""
        return self._run(self._apool.watch(name))

    def ignore(self, name: str) -> int:
        """Stop watching ``name`` on every server; the number of watched tubes."""
        return self._run(self._apool.ignore(name))

    def reserve(self, timeout: Optional[float] = None) -> Optional[PoolJob]:
        """The first job ready on any server, waiting on all at once; None
        when ``timeout`` expires."""
        return self._wrap(self._run(self._apool.reserve(timeout)))  # type: ignore[no-any-return]

    def reserve_many(self, n: int, timeout: Optional[float] = None) -> List[PoolJob]:
        """Up to ``n`` jobs from all servers (waits up to ``timeout`` for the first)."""
        return [PoolJob(self, j) for j in self._run(self._apool.reserve_many(n, timeout))]

    def delete_many(self, jobs: Iterable[PoolJob]) -> None:
        """Delete jobs of this pool, pipelined per server."""
        self._run(self._apool.delete_many([j._job for j in jobs]))

    def stats(self) -> Dict[str, Any]:
        """``{server: stats}`` of every reachable server."""
        return self._run(self._apool.stats())

    def stats_tube(self, name: str) -> Dict[str, Any]:
        """Tube ``name``'s counts summed over the reachable servers."""
        return self._run(self._apool.stats_tube(name))

    def _peek(self, coro: Coroutine[Any, Any, Dict[str, Any]]) -> Dict[str, Any]:
        return {k: self._wrap(v) for k, v in self._run(coro).items()}

    def peek(self, jid: int) -> Dict[str, Any]:
        """``{server: PoolJob or None}``: job ``jid`` on each server."""
        return self._peek(self._apool.peek(jid))

    def peek_ready(self) -> Dict[str, Any]:
        """``{server: PoolJob or None}``: the next ready job of each server."""
        return self._peek(self._apool.peek_ready())

    def peek_delayed(self) -> Dict[str, Any]:
        """``{server: PoolJob or None}``: the next delayed job of each server."""
        return self._peek(self._apool.peek_delayed())

    def peek_buried(self) -> Dict[str, Any]:
        """``{server: PoolJob or None}``: the next buried job of each server."""
        return self._peek(self._apool.peek_buried())

    def kick(self, bound: int = 1) -> int:
        """Kick up to ``bound`` jobs on every server; how many were kicked."""
        return self._run(self._apool.kick(bound))

    def close(self) -> None:
        """Close every connection (jobs held go back) and stop the pool's thread."""
        with self._lock:
            if self._closed:
                return
            try:
                self._run(self._apool.close())
            finally:
                self._closed = True
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5)
                if not self._thread.is_alive():
                    self._loop.close()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
