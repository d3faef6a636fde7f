"""What a single asyncio call returns: written when called, awaitable as a
future and usable as a coroutine (create_task, TaskGroup, wait_for, shield);
both cores, both loops."""

import asyncio
import contextvars
import gc
import sys
import warnings

import pytest

from asyncio_support import stats_when_ready
from beanstalkc_fast.errors import ConnectionBroken, NotFound, SocketError


async def _ready(conn, tube):
    return (await conn.stats_tube(tube))["current-jobs-ready"]


def test_a_call_works_with_every_asyncio_api(arun, tube):
    async def body(connect):
        c = await connect()
        call = c.put("a")
        assert asyncio.iscoroutine(call)
        jid = await asyncio.create_task(call)
        assert isinstance(jid, int)
        if sys.version_info >= (3, 11):
            async with asyncio.TaskGroup() as group:
                task = group.create_task(c.put("b"))
        else:
            task = asyncio.ensure_future(c.put("b"))
            await task
        assert task.result() > jid
        assert await asyncio.wait_for(c.put("c"), 10) > task.result()
        assert await asyncio.shield(c.peek(jid)) is not None
        assert (await asyncio.ensure_future(c.peek(jid))).body == "a"
        with pytest.raises(NotFound):
            await asyncio.create_task(c.delete(2 ** 62))
        with pytest.raises(NotFound):
            await c.delete(2 ** 62)
        assert await _ready(c, tube) == 3
    arun(body)


def test_a_call_is_a_future_to_every_asyncio_helper(arun, tube):
    """What asyncio reads of a future, on a call written behind another
    (the Cython core's Call is its own C type, the twin's an asyncio.Future)."""
    async def body(connect):
        c = await connect()
        loop = asyncio.get_running_loop()
        first = c.put("first")
        call = c.put("second")                             # behind first: a call
        assert asyncio.isfuture(call) and call.get_loop() is loop
        assert not call.done() and not call.cancelled()
        with pytest.raises(asyncio.InvalidStateError):
            call.result()
        with pytest.raises(asyncio.InvalidStateError):
            call.exception()
        seen = []
        call.add_done_callback(print)
        call.add_done_callback(seen.append)
        call.add_done_callback(print)
        assert call.remove_done_callback(print) == 2        # the first, and a later one
        first_id = await first
        while not call.done():
            await asyncio.sleep(0)
        await asyncio.sleep(0)                             # its callbacks run soon after
        assert seen == [call] and call.exception() is None
        assert call.result() == await call > first_id
        assert "finished" in repr(call)
        late = []
        call.add_done_callback(late.append)                # done already: soon
        await asyncio.sleep(0)
        assert late == [call]
        third = c.put("third")
        missing = c.delete(2 ** 62)
        for next_done in asyncio.as_completed([missing]):
            with pytest.raises(NotFound):
                await next_done
        assert isinstance(missing.exception(), NotFound)
        assert await third > call.result()
    arun(body)


def test_done_callbacks_run_in_order_in_their_contexts_past_a_raising_one(arun, tube):
    """Callbacks of calls settled by one read run in reply order, each in
    the context it was added in; one that raises goes to the loop's
    exception handler and the others still run."""
    var = contextvars.ContextVar("var")

    async def body(connect):
        c = await connect()
        loop = asyncio.get_running_loop()
        reported = []
        loop.set_exception_handler(lambda loop, context: reported.append(context))
        ran = []

        def record(fut):
            ran.append((var.get(), fut.result()))
            if var.get() == 3:
                raise ValueError("callback 3")

        calls = [c.put(str(i)) for i in range(8)]
        for i, call in enumerate(calls[1:], 1):
            var.set(i)
            call.add_done_callback(record)                 # in a copy of the context now
        ids = await asyncio.gather(*calls)
        await asyncio.sleep(0)
        assert ran == list(zip(range(1, 8), ids[1:]))
        assert [type(r["exception"]) for r in reported] == [ValueError]
        assert "Exception in callback" in reported[0]["message"]
    arun(body)


def test_a_failed_call_never_awaited_is_reported_when_collected(arun, tube):
    async def body(connect):
        c = await connect()
        loop = asyncio.get_running_loop()
        reported = []
        loop.set_exception_handler(lambda loop, context: reported.append(context))
        first = c.put("first")
        missing = c.delete(2 ** 62)                        # behind first: a call
        await first
        while not missing.done():                          # its error is never read
            await asyncio.sleep(0)
        del missing
        gc.collect()
        assert len(reported) == 1
        assert "exception was never retrieved" in reported[0]["message"]
        assert isinstance(reported[0]["exception"], NotFound)
    arun(body)


def test_a_put_never_awaited_still_inserts_its_job(arun, tube):
    async def body(connect):
        c = await connect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")           # idle: Python may warn it was not awaited
            c.put("idle")                             # no reference kept, never awaited
            gc.collect()
        assert await _ready(c, tube) == 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = c.put("first")
            c.put("busy")                             # while another is pending: no warning
            gc.collect()
            await first
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
        assert await _ready(c, tube) == 3
        bodies = [(await c.reserve(timeout=0)).body for _ in range(3)]
        assert bodies == ["idle", "first", "busy"]
    arun(body)


def test_gather_of_2000_puts_returns_ids_in_order(arun, tube):
    async def body(connect):
        c = await connect()
        ids = await asyncio.gather(*(c.put(str(i)) for i in range(2000)))
        assert len(set(ids)) == 2000 and ids == sorted(ids)
        jobs = await asyncio.gather(*(c.peek(jid) for jid in ids))
        assert [job.body for job in jobs] == [str(i) for i in range(2000)]
    arun(body)


def test_cancelled_task_over_a_reserve_releases_its_job(arun, tube):
    async def body(connect):
        consumer = await connect()
        producer = await connect()
        task = asyncio.create_task(consumer.reserve())
        await asyncio.sleep(0.05)                 # written, waiting
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        jid = await producer.put("for-nobody", priority=7, ttr=100)
        stats = await stats_when_ready(producer, jid)
        assert (stats["state"], stats["pri"], stats["reserves"]) == ("ready", 7, 1)
        assert (await consumer.reserve(timeout=0)).jid == jid
    arun(body)


def test_cancelled_task_over_a_written_call_keeps_the_connection_in_step(arun, tube):
    async def body(connect):
        c = await connect()
        task = asyncio.create_task(c.put("written"))     # written at once
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        jid = await c.put("next")                          # gets its own reply
        assert (await c.peek(jid)).body == "next"
        assert await _ready(c, tube) == 2                  # the cancelled put was sent
        assert c._w.count == 0
    arun(body)


def test_errors_at_call_time_are_validation_errors_only(arun, tube):
    async def body(connect):
        c = await connect()
        with pytest.raises(ValueError):
            c.put("x", priority=-1)                       # refused at once, nothing sent
        await c.close()
        call = c.put("after-close")                        # no exception yet
        with pytest.raises(ConnectionBroken):
            await call
    arun(body)


def test_a_call_made_off_the_loop_runs_on_it(arun, tube):
    async def body(connect):
        c = await connect()
        loop = asyncio.get_running_loop()

        def in_thread():
            return asyncio.run_coroutine_threadsafe(c.put("from-thread"), loop).result(10)

        jid = await loop.run_in_executor(None, in_thread)
        assert (await c.peek(jid)).body == "from-thread"
    arun(body)


def test_calls_beyond_the_window_wait_in_turn_without_a_task_each(arun, tube):
    async def body(connect):
        c = await connect()
        loop = asyncio.get_running_loop()
        made = []
        default_factory = loop.get_task_factory()

        def counting(loop, coro, **kwargs):
            made.append(coro)
            if default_factory is not None:
                return default_factory(loop, coro, **kwargs)
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(counting)
        try:
            calls = [c.put(str(i)) for i in range(1500)]   # 512 written, 988 wait their turn
            assert c._w.count == 512 and len(c._waiters) == 988
            ids = await asyncio.gather(*calls)
        finally:
            loop.set_task_factory(default_factory)
        # a Task for the first call only (idle, it was a coroutine): none for the rest
        # (Python 3.9's ensure_future makes a Task of anything that is a coroutine)
        if sys.version_info >= (3, 10):
            assert [coro.__qualname__ for coro in made] == ["Connection._wait"]
        assert ids == sorted(ids) and len(set(ids)) == 1500
        assert c._w.count == 0 and not c._waiters
    arun(body)


def test_a_waiting_call_cancelled_before_its_turn_sends_nothing(arun, tube):
    async def body(connect):
        c = await connect()
        calls = [c.put(str(i)) for i in range(600)]
        for call in calls[550:]:
            call.cancel()                                  # still waiting for room
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, int) for o in outcomes[:550])
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[550:])
        assert await _ready(c, tube) == 550
        assert c._w.count == 0
    arun(body)


def test_calls_waiting_for_room_when_the_connection_closes_are_not_sent(arun, tube):
    async def body(connect):
        c = await connect()
        watcher = await connect()
        calls = [c.put(str(i)) for i in range(600)]
        await c.close()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        waited = outcomes[512:]                            # never written
        assert all(isinstance(o, ConnectionBroken) for o in waited), set(map(type, waited))
        assert "closed by close()" in str(waited[0])
        assert all(isinstance(o, (int, SocketError)) for o in outcomes[:512])
        assert await _ready(watcher, tube) <= 512
    arun(body)


def test_calls_keep_no_reference_to_what_they_wrote(arun, tube):
    """The window (in the core) drops each body, command and future once
    answered: refcounts of a body and of the connection's own objects are
    back where they were after thousands of gathered and sequential puts."""
    async def body(connect):
        c = await connect(encoding=None)
        payload = b"p" * 100                               # bytes: written as is, never copied
        await asyncio.gather(*[c.put(payload) for _ in range(600)])    # warm up
        gc.collect()
        before = sys.getrefcount(payload), sys.getrefcount(c), len(gc.get_objects())
        for _ in range(3):
            await asyncio.gather(*[c.put(payload) for _ in range(1000)])
            for _ in range(200):
                await c.put(payload)
        gc.collect()
        after = sys.getrefcount(payload), sys.getrefcount(c), len(gc.get_objects())
        assert after[:2] == before[:2]
        assert after[2] - before[2] < 200                  # 3,600 calls: nothing per call
        assert c._w.count == 0 and not c._pending and not c._waiters and not c._w.out
    arun(body)
