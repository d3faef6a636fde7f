"""Running asyncio tests without a plugin: both cores × both loops.

``arun(body)`` runs ``await body(connect)`` on a fresh event loop of the
chosen kind, with a 60 s guard so that no test hangs; ``connect(tube=...)``
opens an asyncio connection with the chosen core (by default to the suite's
server, on the test's fresh tube) and closes it when the test ends.
"""

import asyncio

import pytest

import beanstalkc_fast.asyncio as bsa

LOOP_NAMES = ["asyncio", "uvloop"]


def loop_factory(name):
    """A new event loop of kind ``name`` (uvloop skips when not installed)."""
    if name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_on(name, main, guard=60):
    loop = loop_factory(name)
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), guard))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def make_runner(loop_name, core, default_port, default_tube):
    def arun(body, guard=60):
        async def main():
            made = []

            async def connect(tube=default_tube, port=default_port, **kwargs):
                conn = await bsa.connect("127.0.0.1", port, core=core, **kwargs)
                made.append(conn)
                if tube is not None:
                    await conn.use(tube)
                    await conn.watch(tube)
                    await conn.ignore("default")
                return conn

            try:
                return await body(connect)
            finally:
                for conn in made:
                    await conn.close()

        return run_on(loop_name, main, guard)
    return arun


async def stats_when_ready(conn, jid, tries=100):
    """``stats_job(jid)`` once the job is ready again (a release for a
    cancelled caller follows at once), or after ``tries`` looks."""
    for _ in range(tries):
        stats = await conn.stats_job(jid)
        if stats["state"] == "ready":
            break
        await asyncio.sleep(0.01)
    return stats
