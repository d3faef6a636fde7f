"""asyncio faults and bounds with a scripted fake server, and random
cancellations against the real one: both cores, both loops."""

import asyncio
import select
import threading
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from conftest import read_until
import beanstalkc_fast.asyncio as bsa
from beanstalkc_fast.errors import ConnectionBroken, SocketError, UnexpectedResponse


def read_lines(sock, count, buf=b""):
    """Read until ``count`` CRLF-ended lines arrived; (lines, leftover)."""
    while buf.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    lines = buf.split(b"\r\n")
    return lines[:count], b"\r\n".join(lines[count:])


def quiet(sock, seconds):
    """True when nothing arrives on ``sock`` for ``seconds``."""
    return not select.select([sock], [], [], seconds)[0]


def test_cut_with_100_callers_fails_all(arun_fake, fake_server):
    def handler(sock, srv):
        read_lines(sock, 100)
        sock.close()

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port)
        results = await asyncio.gather(*(c.peek(i + 1) for i in range(100)),
                                       return_exceptions=True)
        assert len(results) == 100
        assert all(isinstance(r, SocketError) for r in results)
        assert "closed by the server" in str(results[0])
        with pytest.raises(ConnectionBroken):
            await c.peek(1)
        await c.close()
        await c.close()
    arun_fake(body, guard=20)


def test_cut_with_callers_beyond_the_window(arun_fake, fake_server):
    def handler(sock, srv):
        read_lines(sock, 512)
        time.sleep(0.1)
        sock.close()

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port)
        results = await asyncio.gather(*(c.peek(i + 1) for i in range(600)),
                                       return_exceptions=True)
        assert all(type(r) is SocketError for r in results[:512])       # written, lost
        assert all(type(r) is ConnectionBroken for r in results[512:])  # never written
    arun_fake(body, guard=20)


def test_batch_cut_keeps_the_confirmed_results(arun_fake, fake_server):
    def handler(sock, srv):
        _, rest = read_lines(sock, 2 * 512)         # a put is two lines
        sock.sendall(b"".join(b"INSERTED %d\r\n" % (i + 1) for i in range(512)))
        read_lines(sock, 2 * 488, rest)
        sock.sendall(b"".join(b"INSERTED %d\r\n" % (i + 1) for i in range(512, 700)))
        time.sleep(0.1)
        sock.close()

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port)
        with pytest.raises(SocketError, match="past the 700 confirmed ones") as info:
            await c.put_many([b"x"] * 1000)
        assert info.value.results == list(range(1, 701))
    arun_fake(body, guard=20)


def test_missed_read_deadline_fails_every_caller(arun_fake, fake_server):
    def handler(sock, srv):
        read_until(sock)
        srv.stop.wait(10)

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port, socket_timeout=0.3)
        results = await asyncio.gather(*(c.stats() for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, SocketError) and "timed out" in str(r) for r in results)
        assert c.broken is not None
    arun_fake(body, guard=20)


def test_reserve_timeout_extends_the_deadline(arun_fake, fake_server):
    def handler(sock, srv):
        assert read_until(sock) == b"reserve-with-timeout 1\r\n"
        time.sleep(0.5)
        sock.sendall(b"TIMED_OUT\r\n")
        read_until(sock)
        sock.sendall(b"USING default\r\n")
        srv.stop.wait(10)

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port, socket_timeout=0.2)
        assert await c.reserve(timeout=1) is None
        assert await c.using() == "default"
    arun_fake(body, guard=20)
    assert not srv.errors


def test_malformed_reply_head_gets_it_others_socket_error(arun_fake, fake_server):
    def handler(sock, srv):
        read_lines(sock, 3)
        sock.sendall(b"HELLO WORLD\r\nNOT_FOUND\r\n")
        srv.stop.wait(10)

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port)
        results = await asyncio.gather(*(c.peek(i + 1) for i in range(3)),
                                       return_exceptions=True)
        assert isinstance(results[0], UnexpectedResponse)
        assert all(type(r) is SocketError for r in results[1:])   # nothing more parsed
        with pytest.raises(ConnectionBroken):
            await c.peek(1)
    arun_fake(body, guard=20)


def test_window_bound_and_cancel_before_write(arun_fake, fake_server):
    seen = {}

    def handler(sock, srv):
        lines, rest = read_lines(sock, 512)
        seen["first"] = len(lines) + rest.count(b"\r\n")
        seen["quiet"] = quiet(sock, 0.3)            # nothing beyond the window
        sock.sendall(b"NOT_FOUND\r\n" * 512)
        lines, rest = read_lines(sock, 88, rest)
        seen["quiet2"] = quiet(sock, 0.3)
        seen["lines"] = lines
        sock.sendall(b"NOT_FOUND\r\n" * 88)
        srv.stop.wait(10)

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port)
        tasks = [asyncio.ensure_future(c.peek(i + 1)) for i in range(600)]
        late = asyncio.ensure_future(c.peek(999999))
        await asyncio.sleep(0.1)
        assert c._w.count == 512
        late.cancel()
        assert await asyncio.gather(*tasks) == [None] * 600
        with pytest.raises(asyncio.CancelledError):
            await late
        assert c._w.count == 0
    arun_fake(body, guard=20)
    assert seen["first"] == 512 and seen["quiet"] and seen["quiet2"]
    assert b"peek 999999" not in seen["lines"]


def test_byte_bound(arun_fake, fake_server):
    seen = []

    def handler(sock, srv):
        pending = b""
        answered = 0
        while answered < 5:
            while not quiet(sock, 0.3):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    return
                pending += chunk
            n = pending.count(b"put ")
            seen.append(n)
            sock.sendall(b"".join(b"INSERTED %d\r\n" % (answered + i + 1) for i in range(n)))
            answered += n
            pending = b""
        srv.stop.wait(10)

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port)
        big = b"x" * 100000
        assert await asyncio.gather(*(c.put(big) for _ in range(5))) == [1, 2, 3, 4, 5]
    arun_fake(body, guard=30)
    assert seen[0] == 2                           # 256 KiB holds two, not three
    assert sum(seen) == 5


class Emulator:
    """A tiny beanstalkd stand-in: answers use/watch/ignore/peek-ready/put;
    ``cut`` says which (connection number, command) to drop the link at."""

    def __init__(self, cut):
        self.cut = cut
        self.conns = []
        self.lock = threading.Lock()

    def __call__(self, sock, srv):
        with self.lock:
            n = len(self.conns)
            log = []
            self.conns.append(log)
        buf = b""
        jid = 0
        while True:
            while b"\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b"\r\n", 1)
            log.append(line)
            verb = line.split(b" ")[0]
            if (n, verb) in self.cut:
                sock.close()
                return
            if verb == b"put":
                size = int(line.split(b" ")[4])
                while len(buf) < size + 2:
                    buf += sock.recv(65536)
                buf = buf[size + 2:]
                jid += 1
                sock.sendall(b"INSERTED %d\r\n" % jid)
            elif verb == b"use":
                sock.sendall(b"USING %s\r\n" % line.split(b" ")[1])
            elif verb in (b"watch", b"ignore"):
                sock.sendall(b"WATCHING 1\r\n")
            else:
                sock.sendall(b"NOT_FOUND\r\n")


def test_auto_reconnect_repeats_safe_commands_only(arun_fake, fake_server):
    emu = Emulator({(0, b"peek-ready"), (1, b"put")})
    srv = fake_server(emu)

    async def body(connect):
        c = await connect(port=srv.port, auto_reconnect=True)
        assert await c.use("work") == "work"
        assert await c.peek_ready() is None          # cut, reconnected, sent again
        with pytest.raises(SocketError, match="may or may not have been inserted"):
            await c.put("once")                      # cut: never sent again
        assert await c.put("next") == 1              # a new connection first
    arun_fake(body, guard=20)
    assert emu.conns[0] == [b"use work", b"peek-ready"]
    assert emu.conns[1] == [b"use work", b"peek-ready", b"put 2147483648 0 120 4"]
    assert emu.conns[2][0] == b"use work" and emu.conns[2][1].startswith(b"put")


def test_without_auto_reconnect_broken_until_reconnect(arun_fake, fake_server):
    emu = Emulator({(0, b"peek-ready")})
    srv = fake_server(emu)

    async def body(connect):
        c = await connect(port=srv.port)
        await c.watch("w")
        with pytest.raises(SocketError):
            await c.peek_ready()
        with pytest.raises(ConnectionBroken):
            await c.peek_ready()
        await c.reconnect()
        assert await c.peek_ready() is None
    arun_fake(body, guard=20)
    assert emu.conns[1][:2] == [b"watch w", b"peek-ready"]


def test_close_fails_pending_callers(arun_fake, fake_server):
    def handler(sock, srv):
        read_until(sock)
        srv.stop.wait(10)

    srv = fake_server(handler)

    async def body(connect):
        c = await connect(port=srv.port)
        task = asyncio.ensure_future(c.reserve())
        await asyncio.sleep(0.05)
        await c.close()
        with pytest.raises(SocketError):
            await task
    arun_fake(body, guard=20)


# -- random cancellations against the real server ------------------------------------

OPS = st.sampled_from(["put", "put", "put", "reserve0", "reserve", "peek", "stats_tube",
                       "delete_missing", "use", "reserve_many", "put_many", "kick"])
PLAN = st.lists(st.tuples(OPS, st.one_of(st.none(), st.integers(0, 12))),
                min_size=100, max_size=550)


# no shrinking: a failing plan of hundreds of commands takes minutes to shrink
@settings(max_examples=6, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(plan=PLAN)
def test_random_cancellations_keep_the_connection_in_step(arun, plan):
    tube = "cx-" + uuid.uuid4().hex[:12]

    async def body(connect):
        c = await connect(tube=tube)
        watcher = await connect(tube=tube)
        put_ids = []

        async def op(kind):
            if kind == "put":
                jid = await c.put("p")
                put_ids.append(jid)
                return jid
            if kind == "put_many":
                ids = await c.put_many(["a", "b", "c"])
                put_ids.extend(ids)
                return ids
            if kind == "reserve0":
                return await c.reserve(timeout=0)
            if kind == "reserve":
                return await c.reserve(timeout=1)
            if kind == "reserve_many":
                return await c.reserve_many(3, timeout=0)
            if kind == "peek":
                return await c.peek_ready()
            if kind == "stats_tube":
                return await c.stats_tube(tube)
            if kind == "delete_missing":
                try:
                    await c.delete(10 ** 15)
                except Exception as exc:
                    return exc
            if kind == "use":
                return await c.use(tube)
            return await c.kick(1)

        async def cancel_later(task, steps):
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()

        tasks = [asyncio.ensure_future(op(kind)) for kind, _ in plan]
        cancels = [asyncio.ensure_future(cancel_later(t, steps))
                   for t, (_, steps) in zip(tasks, plan) if steps is not None]  # noqa: B905
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*cancels)
        held = []
        for r in results:
            for job in (r if isinstance(r, list) else [r]):
                if isinstance(job, bsa.Job) and job.reserved:
                    held.append(job)
        await c.release_many(held)
        stats = await c.stats()                          # still in step
        assert isinstance(stats, dict) and "current-jobs-reserved" in stats
        assert await c.using() == tube
        for _ in range(200):                             # releases of cancelled reserves
            reserved = (await watcher.stats_tube(tube))["current-jobs-reserved"]
            if reserved == 0:
                break
            await asyncio.sleep(0.01)
        assert reserved == 0
        for jid in put_ids:
            assert await watcher.peek(jid) is not None
        jobs = await watcher.reserve_many(10 ** 4, timeout=0)
        await watcher.delete_many(jobs)

    arun(body, guard=60)
