"""The multi-server Pool (asyncio and sync) against three real beanstalkd
processes, on both cores (and both event loops for asyncio)."""

import asyncio
import threading
import uuid

import pytest

import beanstalkc_fast
import beanstalkc_fast.asyncio as bsa
from asyncio_support import run_on
from conftest import free_port, read_until, start_beanstalkd, stop_beanstalkd
from beanstalkc_fast.errors import SocketError

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def three():
    """Three beanstalkd servers: ``[(host, port), ...]``."""
    procs, addrs = [], []
    try:
        for _ in range(3):
            port = free_port()
            procs.append(start_beanstalkd(["-l", "127.0.0.1", "-p", str(port)]))
            addrs.append(("127.0.0.1", port))
        yield addrs
    finally:
        for proc in procs:
            stop_beanstalkd(proc)


def name(addr):
    return "%s:%d" % addr


@pytest.fixture
def tube():
    return "p-" + uuid.uuid4().hex[:12]


@pytest.fixture
def arun(loop_name):
    def run(main):
        return run_on(loop_name, main, guard=60)
    return run


async def on_tube(pool, tube):
    await pool.use(tube)
    await pool.watch(tube)
    await pool.ignore("default")
    return pool


def dead_addr():
    return ("127.0.0.1", free_port())          # nothing listens there


# -- asyncio ---------------------------------------------------------------------------
def test_round_robin_spreads_puts(arun, core, three, tube):
    async def main():
        async with bsa.Pool(three, core=core) as pool:
            await on_tube(pool, tube)
            placed = [(await pool.put_to(b"x"))[1] for _ in range(6)]
            assert sorted(placed) == sorted([name(a) for a in three] * 2)
            total = await pool.stats_tube(tube)
            assert total["name"] == tube and total["current-jobs-ready"] == 6
            assert set(await pool.stats()) == {name(a) for a in three}
    arun(main)


def test_keys_stick_and_only_a_leaving_servers_keys_move(arun, core, three, tube):
    keys = ["user-%d" % i for i in range(24)]

    async def main():
        async with bsa.Pool(three[:2], core=core) as two:
            await on_tube(two, tube)
            before = {k: (await two.put_to(b"k", key=k))[1] for k in keys}
            again = {k: (await two.put_to(b"k", key=k))[1] for k in keys}
        # the same two plus a server that refuses connections: its keys go to
        # their next choice, which is where the two-server pool put them
        async with bsa.Pool(three[:2] + [dead_addr()], core=core, retry_min=5) as pool:
            await on_tube(pool, tube)
            after = {k: (await pool.put_to(b"k", key=k))[1] for k in keys}
            assert name(three[0]) in pool.healthy()
        assert before == again == after
        assert set(before.values()) == {name(three[0]), name(three[1])}
    arun(main)


def test_refused_server_is_skipped(arun, core, three, tube):
    async def main():
        dead = dead_addr()
        async with bsa.Pool([dead] + three, core=core, retry_min=5) as pool:
            await on_tube(pool, tube)
            placed = [(await pool.put_to(b"x"))[1] for _ in range(6)]
            assert name(dead) not in placed and len(placed) == 6
            assert name(dead) not in pool.healthy()
        async with bsa.Pool([dead], core=core) as pool:
            with pytest.raises(SocketError, match="all of .* are down"):
                await pool.put(b"nowhere")
    arun(main)


def test_lost_put_reply_is_not_sent_elsewhere(arun, core, three, tube, fake_server):
    def handler(sock, srv):
        while True:
            line = read_until(sock)
            if line.startswith(b"use "):
                sock.sendall(b"USING " + line[4:])
            elif line.startswith(b"put "):
                return                             # read the put, close: reply lost

    fake = fake_server(handler)

    async def main():
        async with bsa.Pool([("127.0.0.1", fake.port), three[0]], core=core) as pool:
            await on_tube(pool, tube)
            with pytest.raises(SocketError, match="may or may not have been inserted"):
                await pool.put(b"once")
            async with bsa.connect(*three[0], core=core) as conn:
                with pytest.raises(beanstalkc_fast.NotFound):
                    await conn.stats_tube(tube)      # nothing was put there
            assert (await pool.put_to(b"next"))[1] == name(three[0])
    arun(main)


def test_reserve_waits_on_all_servers(arun, core, three, tube):
    async def main():
        async with bsa.Pool(three, core=core) as pool:
            await on_tube(pool, tube)
            assert await pool.reserve(timeout=0) is None
            waiting = asyncio.ensure_future(pool.reserve())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            async with bsa.connect(*three[2], core=core) as conn:
                await conn.use(tube)
                jid = await conn.put(b"third", priority=9)
            job = await waiting
            assert (job.body, job.jid, job.server) == ("third", jid, name(three[2]))
            await job.bury()                       # goes to the third server
            assert (await pool.stats_tube(tube))["current-jobs-buried"] == 1
            assert await pool.kick(5) == 1
            job = await pool.reserve(timeout=1)
            assert job.server == name(three[2])
            await job.delete()
            assert (await pool.stats_tube(tube))["total-jobs"] == 1
            assert (await pool.stats_tube(tube))["current-jobs-ready"] == 0
    arun(main)


def test_jobs_not_handed_out_go_back_with_priority(arun, core, three, tube):
    async def main():
        async with bsa.Pool(three, core=core, hold=0.5) as pool:
            await on_tube(pool, tube)
            for _ in range(3):
                await pool.put(b"p", priority=7)
            job = await pool.reserve(timeout=1)
            # the other servers' reserves may still be on their way: until they
            # land, the other two jobs are ready without having been held
            for _ in range(100):                   # they arrive and are held (0.5 s)
                stats = await pool.stats_tube(tube)
                if stats["current-jobs-reserved"] == 3:
                    break
                await asyncio.sleep(0.01)
            assert (stats["current-jobs-reserved"], stats["current-jobs-ready"]) == (3, 0)
            for _ in range(100):                   # then go back
                stats = await pool.stats_tube(tube)
                if stats["current-jobs-ready"] == 2:
                    break
                await asyncio.sleep(0.1)
            assert (stats["current-jobs-reserved"], stats["current-jobs-ready"]) == (1, 2)
            ready = [j for j in (await pool.peek_ready()).values() if j is not None]
            assert len(ready) == 2
            assert [(await j.stats())["pri"] for j in ready] == [7, 7]
            await job.delete()
            got = []
            for _ in range(10):                    # a loaded machine may hand them out one by one
                got += await pool.reserve_many(5, timeout=1)
                if len(got) >= 2:
                    break
            assert len(got) == 2
        async with bsa.Pool(three, core=core) as pool:   # close() gave them back
            for _ in range(100):               # once each server has read the quit
                stats = await pool.stats_tube(tube)
                if stats["current-jobs-reserved"] == 0:
                    break
                await asyncio.sleep(0.05)
            assert (stats["current-jobs-reserved"], stats["current-jobs-ready"]) == (0, 2)
    arun(main)


def test_put_many_spreads_and_reserve_many_fans_in(arun, core, three, tube):
    async def main():
        async with bsa.Pool(three, core=core) as pool:
            await on_tube(pool, tube)
            placed = await pool.put_many([b"m%d" % i for i in range(30)])
            assert sorted(s for _, s in placed) == sorted([name(a) for a in three] * 10)
            got = []
            while len(got) < 30:
                more = await pool.reserve_many(30, timeout=1)
                assert more
                got += more
            assert sorted(j.body for j in got) == sorted("m%d" % i for i in range(30))
            await pool.delete_many(got)
            assert (await pool.stats_tube(tube))["current-jobs-ready"] == 0
            assert (await pool.stats_tube(tube))["current-jobs-reserved"] == 0
    arun(main)


def test_bad_input_is_refused_before_sending(arun, core, three, tube):
    async def main():
        async with bsa.Pool(three, core=core) as pool:
            await on_tube(pool, tube)
            for call in (lambda: pool.put(b"x", priority=-1), lambda: pool.put(b"x", key=7),
                         lambda: pool.watch("-bad"), lambda: pool.use(""),
                         lambda: pool.reserve(timeout=-1), lambda: pool.reserve_many(-1)):
                with pytest.raises((ValueError, TypeError)):
                    await call()
            assert await pool.reserve_many(0) == []
            assert pool.watching() == [tube] and pool.using() == tube
            assert (await pool.stats_tube(tube))["total-jobs"] == 0
        with pytest.raises(ValueError, match="different tubes"):
            bsa.Pool(["beanstalk://127.0.0.1:1/a", "beanstalk://127.0.0.1:2/b"])
        with pytest.raises(ValueError, match="given twice"):
            bsa.Pool([three[0], three[0]])
        with pytest.raises(ValueError):
            bsa.Pool([])
        with pytest.raises(ValueError, match="socket_timeout"):
            bsa.Pool(three, socket_timeout=-1)     # checked before any connection
        with pytest.raises(ValueError, match="bogus"):
            bsa.Pool(["beanstalk://127.0.0.1:1?bogus=1"])
    arun(main)


# -- sync ------------------------------------------------------------------------------------
def test_sync_pool(core, three, tube):
    with beanstalkc_fast.Pool(["beanstalk://%s:%d/%s" % (a + (tube,)) for a in three],
                              core=core) as pool:
        assert pool.using() == tube and pool.watching() == [tube]
        ids = pool.put_many([b"a", b"b", b"c"])
        assert len({s for _, s in ids}) == 3
        got = []
        while len(got) < 3:
            job = pool.reserve(timeout=1)
            assert job is not None
            got.append(job)
        assert sorted(j.body for j in got) == ["a", "b", "c"]
        done = []
        worker = threading.Thread(target=lambda: done.extend(j.delete() for j in got))
        worker.start()                             # jobs act from any thread
        worker.join(10)
        assert len(done) == 3
        assert pool.stats_tube(tube)["current-jobs-reserved"] == 0

        waiting = []
        consumer = threading.Thread(target=lambda: waiting.append(pool.reserve(timeout=10)))
        consumer.start()
        pool.put(b"late", key="k")
        consumer.join(10)
        assert waiting[0].body == "late" and waiting[0].reserved
        waiting[0].release()
        assert pool.stats_tube(tube)["current-jobs-ready"] == 1
    with pytest.raises(beanstalkc_fast.ConnectionBroken):
        pool.put(b"closed")


def test_pool_over_tls(core, tunnel, tube):
    # beanstalks:// URLs through the suite's stunnel, the CA given as a query option
    url = "beanstalks://localhost:%d/%s?ca_file=%s" % (
        tunnel.ports["valid"], tube, tunnel.path("ca.pem"))
    with beanstalkc_fast.Pool([url], core=core) as pool:
        jid = pool.put(b"over tls")
        job = pool.reserve(timeout=1)
        assert job is not None and (job.jid, job.body) == (jid, "over tls")
        job.delete()
        assert pool.stats_tube(tube)["current-jobs-ready"] == 0
