"""The asyncio front end against the suite's beanstalkd: both cores, both loops."""

import asyncio

import pytest

import beanstalkc_fast
import beanstalkc_fast.asyncio as bsa
from asyncio_support import stats_when_ready
from beanstalkc_fast.errors import (BatchError, ConnectionBroken, DeadlineSoon, NotFound,
                                    SocketError)


def test_connect_forms_and_protocol(arun, server, core):
    async def body(connect):
        async with bsa.connect("127.0.0.1", server.port, core=core) as c:
            assert await c.using() == "default"
            assert isinstance(c._proto, asyncio.BufferedProtocol)
            assert isinstance(c._proto.reader, core.Reader)
        assert c.broken == "closed"
        c2 = await bsa.connect("127.0.0.1", server.port, core=core)
        async with c2:
            assert await c2.tubes()
        async with await bsa.connect("127.0.0.1", server.port, core=core) as c3:
            assert await c3.stats()
        with pytest.raises(ConnectionBroken):
            await c3.put("x")
    arun(body)


def test_connect_refused(arun_fake, core):
    from conftest import free_port

    async def body(connect):
        with pytest.raises(SocketError, match="cannot connect"):
            await connect(port=free_port())
    arun_fake(body)


def test_put_reserve_delete_and_job_actions(arun, tube):
    async def body(connect):
        c = await connect()
        jid = await c.put("hello", priority=7)
        assert isinstance(jid, int)
        job = await c.reserve(timeout=0)
        assert (job.jid, job.body, job.raw_body, job.reserved) == (jid, "hello", b"hello", True)
        assert isinstance(job, bsa.Job)
        await job.touch()
        await job.release()                       # keeps priority 7
        stats = await c.stats_job(jid)
        assert (stats["state"], stats["pri"]) == ("ready", 7)
        assert job.reserved is False
        await job.release()                       # no-op: not reserved
        job = await c.reserve(timeout=0)
        await job.bury()
        assert (await job.stats())["state"] == "buried"
        assert (await c.stats_job(jid))["pri"] == 7
        assert (await c.peek_buried()).jid == jid
        await job.kick()
        assert (await c.peek_ready()).jid == jid
        job = await c.reserve(timeout=0)
        await job.delete()
        assert job.reserved is False
        with pytest.raises(NotFound):
            await c.delete(jid)
        assert await c.reserve(timeout=0) is None
        assert await c.peek(jid) is None
    arun(body)


def test_commands_and_results(arun, tube):
    async def body(connect):
        c = await connect()
        assert await c.using() == tube
        assert await c.watching() == [tube]
        assert await c.watch("other-" + tube) == 2
        assert await c.ignore("other-" + tube) == 1
        assert await c.ignore(tube) == 1                  # last tube: refused, 1
        assert tube in await c.tubes()
        d = await c.put("later", delay=60)
        assert (await c.peek_delayed()).jid == d
        assert await c.kick(5) == 1
        assert (await c.peek(d)).body == "later"
        k = await c.put("k", delay=60)
        await c.kick_job(k)
        assert (await c.stats_job(k))["state"] == "ready"
        job = await c.reserve_job(k)
        assert job.reserved and job.jid == k
        await c.release(k, 3, 0)
        assert (await c.stats_job(k))["pri"] == 3
        job = await c.reserve_job(k)
        await c.bury(k, 4)
        assert (await c.stats_tube(tube))["current-jobs-buried"] == 1
        await c.pause_tube(tube, 1)
        assert (await c.stats_tube(tube))["pause"] == 1
        assert isinstance((await c.stats())["id"], str)
        with pytest.raises(ValueError):
            await c.use("-bad")
        with pytest.raises(TypeError):
            await c.put(3.5)
    arun(body)


def test_parse_yaml_and_encoding_options(arun, tube):
    async def body(connect):
        raw = await connect(parse_yaml=False, encoding=None)
        assert isinstance(await raw.stats_tube(tube), str)
        assert (await raw.put(b"\xff")) > 0
        job = await raw.reserve(timeout=0)
        assert job.body == b"\xff"
        await job.release()                        # priority from stats-job, parsed anyway
        seen = []
        custom = await connect(parse_yaml=lambda text: seen.append(text) or "parsed")
        assert await custom.stats() == "parsed" and seen[0].startswith("---")
    arun(body)


def test_deadline_soon(arun, tube):
    async def body(connect):
        c = await connect()
        await c.put("x", ttr=1)
        await c.reserve(timeout=0)
        with pytest.raises(DeadlineSoon):
            await c.reserve(timeout=2)
    arun(body)


def test_gather_is_pipelined_in_order(arun, tube):
    async def body(connect):
        c = await connect()
        bodies = ["b%d" % i for i in range(1500)]
        ids = await asyncio.gather(*(c.put(b) for b in bodies))
        assert ids == sorted(ids) and len(set(ids)) == 1500
        peeks = await asyncio.gather(*(c.peek(i) for i in ids[:300]))
        assert [p.body for p in peeks] == bodies[:300]
        mixed = await asyncio.gather(c.stats_tube(tube), c.put("z"), c.peek(ids[0]), c.using())
        assert mixed[0]["current-jobs-ready"] == 1500 and mixed[3] == tube
        jobs = await c.reserve_many(2000, timeout=0)
        assert len(jobs) == 1501
        await c.delete_many(jobs)
    arun(body)


def test_reserve_holds_its_place_in_the_reply_order(arun, tube):
    async def body(connect):
        consumer = await connect()
        producer = await connect()
        order = []

        async def reserve():
            job = await consumer.reserve(timeout=5)
            order.append("reserve")
            return job

        async def put():
            jid = await consumer.put("from-consumer")
            order.append("put")
            return jid

        waiting = asyncio.ensure_future(reserve())
        await asyncio.sleep(0.05)
        putting = asyncio.ensure_future(put())
        await asyncio.sleep(0.2)
        assert not putting.done()                  # answered only after the reserve
        await producer.put("wanted")
        job = await waiting
        await putting
        assert order == ["reserve", "put"] and job.body == "wanted"
    arun(body)


def test_batches(arun, tube):
    async def body(connect):
        c = await connect()
        assert await c.put_many([]) == []
        ids = await c.put_many(("j%d" % i for i in range(700)), priority=9)
        assert len(ids) == 700 and ids == sorted(ids)
        jobs = await c.reserve_many(1000, timeout=0)
        assert [j.body for j in jobs] == ["j%d" % i for i in range(700)]
        assert await c.release_many(jobs[:100], priority=2, delay=0) == [None] * 100
        assert all(not j.reserved for j in jobs[:100])
        assert (await c.stats_job(ids[0]))["pri"] == 2
        assert await c.bury_many(jobs[100:200], priority=3) == [None] * 100
        assert (await c.stats_tube(tube))["current-jobs-buried"] == 100
        with pytest.raises(BatchError) as info:
            await c.delete_many(jobs[200:] + [ids[0], 10 ** 12])
        results = info.value.results
        assert results[:500] == [None] * 500
        assert results[-2] is None and isinstance(results[-1], NotFound)
        assert await c.reserve_many(0) == []
        rest = await c.reserve_many(500, timeout=0)
        assert len(rest) == 99
        await c.delete_many(rest)
        assert await c.reserve_many(5, timeout=0) == []
    arun(body)


def test_batches_and_single_calls_interleaved(arun, tube):
    async def body(connect):
        c = await connect()
        async with c.pipeline() as p:
            p.put("p0")
            p.peek(10 ** 12)
        many, *singles = await asyncio.gather(
            c.put_many("m%d" % i for i in range(1500)),
            *(c.put("s%d" % i) for i in range(600)), c.put_many(["n0", "n1"]))
        assert len(many) == 1500 and len(singles) == 601
        ids = p.results[:1] + many + singles[:600] + singles[600]
        assert p.results[1] is None and len(set(ids)) == 2103
        at = [0, 1, 1500, 1501, 2100, 2101, 2102]
        assert [(await c.peek(ids[i])).body for i in at] == [
            "p0", "m0", "m1499", "s0", "s599", "n0", "n1"]
        jobs = await c.reserve_many(3000, timeout=0)
        assert sorted(j.jid for j in jobs) == sorted(ids)
        assert await c.delete_many(jobs) == [None] * 2103
    arun(body)


def test_batch_validation_before_anything_is_written(arun, tube):
    async def body(connect):
        c = await connect()
        with pytest.raises(ValueError):
            await c.put_many(["a"], priority=-1)
        with pytest.raises(TypeError):
            await c.delete_many(["x"])
        with pytest.raises(TypeError) as info:             # a bad body mid-stream
            await c.put_many(["a", "b", 3, "c"])
        assert len(info.value.results) == 2
        assert (await c.stats_tube(tube))["current-jobs-ready"] == 2
    arun(body)


def test_pipeline(arun, tube):
    async def body(connect):
        c = await connect()
        async with c.pipeline() as p:
            p.put("a").put("b")
            p.delete(10 ** 12)
            p.stats_tube(tube)
        assert len(p.results) == 4
        assert isinstance(p.results[2], NotFound)
        assert p.results[3]["current-jobs-ready"] == 2
        job = await c.reserve(timeout=0)
        async with c.pipeline() as p:
            p.release(job, 5)
            p.kick_job(job)                    # a Job is taken for its id; ready: refused
        assert isinstance(p.results[1], beanstalkc_fast.CommandFailed)
        p2 = c.pipeline()
        try:
            async with p2:
                p2.put("never")
                raise RuntimeError
        except RuntimeError:
            pass
        assert p2.results == [] and (await c.stats_tube(tube))["current-jobs-ready"] == 2
    arun(body)


def test_reconnect_restores_tubes(arun, tube):
    async def body(connect):
        c = await connect()
        await c.watch("second-" + tube)
        await c.reconnect()
        assert await c.using() == tube
        assert sorted(await c.watching()) == sorted([tube, "second-" + tube])
    arun(body)


def test_cancelled_reserve_releases_its_job_keeping_priority(arun, tube):
    async def body(connect):
        consumer = await connect()
        producer = await connect()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consumer.reserve(), 0.1)
        jid = await producer.put("for-nobody", priority=11, ttr=100)
        stats = await stats_when_ready(producer, jid)
        assert (stats["state"], stats["pri"], stats["reserves"]) == ("ready", 11, 1)
        assert await consumer.using() == tube      # still in step
        job = await consumer.reserve(timeout=0)
        assert job.jid == jid
    arun(body)


def test_cancelled_use_still_takes_effect(arun, tube):
    async def body(connect):
        c = await connect()
        task = asyncio.ensure_future(c.use("moved-" + tube))   # written at once
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await c.using() == "moved-" + tube
        await c.reconnect()
        assert await c.using() == "moved-" + tube
    arun(body)


def test_keepalive_options_applied(arun):
    import socket

    async def body(connect):
        c = await connect(keepalive_idle=33, keepalive_interval=7, keepalive_count=4)
        sock = c._w.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 33
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 7
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    arun(body)


def test_bad_options_refused_before_connecting():
    with pytest.raises(ValueError):
        bsa.Connection(socket_timeout=-1)
    with pytest.raises(ValueError):
        bsa.Connection(connect_timeout="3")


def test_waits_do_not_block_the_loop(arun, tube):
    async def body(connect):
        c = await connect()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        assert await c.reserve(timeout=1) is None
        t.cancel()
        assert ticks >= 5
    arun(body)
