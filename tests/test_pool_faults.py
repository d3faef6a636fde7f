"""Pool faults with three real beanstalkd processes (binlogs on): one is
killed with SIGKILL while a producer and a consumer run, then restarted on
the same binlog. Nothing acknowledged is lost or deleted twice; the killed
server's jobs are consumed after it comes back, without a new client."""

import asyncio
import os
import signal
import threading
import time
import uuid

import pytest

import beanstalkc_fast
import beanstalkc_fast.asyncio as bsa
from asyncio_support import run_on
from conftest import free_port, start_beanstalkd, stop_beanstalkd
from beanstalkc_fast.errors import SocketError

pytestmark = pytest.mark.server

FIRST, SECOND = 60, 60          # jobs put before / after the kill
OPTIONS = dict(retry_min=0.05, retry_max=0.3, connect_timeout=2, socket_timeout=5)


class Cluster:
    def __init__(self, tmp_path):
        self.args = []
        self.procs = []
        for i in range(3):
            binlog = tmp_path / ("b%d" % i)
            binlog.mkdir()
            args = ["-l", "127.0.0.1", "-p", str(free_port()), "-b", str(binlog)]
            self.args.append(args)
            self.procs.append(start_beanstalkd(args))

    def urls(self, tube):
        return ["beanstalk://127.0.0.1:%s/%s" % (a[3], tube) for a in self.args]

    def name(self, i):
        return "127.0.0.1:%s" % self.args[i][3]

    def kill(self, i):
        os.kill(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait(5)

    def restart(self, i):
        self.procs[i] = start_beanstalkd(self.args[i])

    def stop(self):
        for proc in self.procs:
            stop_beanstalkd(proc)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


class Ledger:
    """What the producer had acknowledged and what the consumer deleted."""

    def __init__(self):
        self.acked = {}              # body -> server
        self.uncertain = set()       # put's reply lost
        self.deleted = []            # bodies whose delete was acknowledged
        self.delete_lost = set()     # delete raised SocketError: may or may not have happened
        self.after_restart = []      # of those, deleted after the restart
        self.restarted = False
        self.placed_after_restart = set()

    def check(self, killed):
        assert len(self.deleted) == len(set(self.deleted)), "a job was deleted twice"
        # a delete whose reply the kill cut off may have happened: that job was consumed
        missing = set(self.acked) - set(self.deleted)
        assert missing <= self.delete_lost and len(missing) <= 1, "acknowledged jobs were lost"
        assert set(self.deleted) <= set(self.acked) | self.uncertain
        assert len(self.acked) >= FIRST + SECOND + 9 - 2
        # the killed server held jobs in its binlog; they came back after the restart
        assert any(self.acked.get(b) == killed for b in self.after_restart)
        # and producers put there again without a new client
        assert killed in self.placed_after_restart

    def done(self, killed):
        return (set(self.acked) <= set(self.deleted) | self.delete_lost
                and any(self.acked.get(b) == killed for b in self.after_restart))

    def record_put(self, body, result):
        if isinstance(result, SocketError):
            assert "may or may not have been inserted" in str(result)
            self.uncertain.add(body)
        else:
            self.acked[body] = result[1]
            if self.restarted:
                self.placed_after_restart.add(result[1])

    def record_delete(self, body):
        self.deleted.append(body)
        if self.restarted:
            self.after_restart.append(body)


def test_kill_one_server_asyncio(cluster, core, loop_name):
    tube = "f-" + uuid.uuid4().hex[:10]
    ledger = Ledger()

    async def main():
        producer = bsa.Pool(cluster.urls(tube), core=core, **OPTIONS)
        consumer = bsa.Pool(cluster.urls(tube), core=core, **OPTIONS)
        stop = asyncio.Event()

        async def produce(start, count):
            for i in range(start, start + count):
                body = "job-%d" % i
                try:
                    ledger.record_put(body, await producer.put_to(body))
                except SocketError as exc:
                    ledger.record_put(body, exc)
                await asyncio.sleep(0.002)

        async def consume():
            while not stop.is_set():
                job = await consumer.reserve(timeout=1)
                if job is None:
                    continue
                await asyncio.sleep(0.003)           # a little work: a backlog builds up
                try:
                    await job.delete()
                except SocketError:                # its server died: the job comes back
                    ledger.delete_lost.add(job.body)
                    continue
                ledger.record_delete(job.body)

        await produce(0, FIRST)
        consuming = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)
        cluster.kill(1)                            # while both run
        await produce(FIRST, SECOND)
        cluster.restart(1)
        ledger.restarted = True
        await asyncio.sleep(0.4)                   # past the longest backoff
        await produce(FIRST + SECOND, 9)
        deadline = time.monotonic() + 20
        while not ledger.done(cluster.name(1)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await consuming
        await producer.close()
        await consumer.close()

    run_on(loop_name, main, guard=60)
    ledger.check(cluster.name(1))


def test_kill_one_server_sync(cluster, core):
    tube = "f-" + uuid.uuid4().hex[:10]
    ledger = Ledger()
    producer = beanstalkc_fast.Pool(cluster.urls(tube), core=core, **OPTIONS)
    consumer = beanstalkc_fast.Pool(cluster.urls(tube), core=core, **OPTIONS)
    stop = threading.Event()
    errors = []

    def produce(start, count):
        for i in range(start, start + count):
            body = "job-%d" % i
            try:
                ledger.record_put(body, producer.put_to(body))
            except SocketError as exc:
                ledger.record_put(body, exc)
            time.sleep(0.002)

    def consume():
        try:
            while not stop.is_set():
                job = consumer.reserve(timeout=1)
                if job is None:
                    continue
                time.sleep(0.003)
                try:
                    job.delete()
                except SocketError:
                    ledger.delete_lost.add(job.body)
                    continue
                ledger.record_delete(job.body)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        produce(0, FIRST)
        thread = threading.Thread(target=consume)
        thread.start()
        time.sleep(0.05)
        cluster.kill(1)
        produce(FIRST, SECOND)
        cluster.restart(1)
        ledger.restarted = True
        time.sleep(0.4)                            # past the longest backoff
        produce(FIRST + SECOND, 9)
        deadline = time.monotonic() + 20
        while not ledger.done(cluster.name(1)) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(10)
    finally:
        producer.close()
        consumer.close()
    assert not errors
    ledger.check(cluster.name(1))
