"""Every Connection and Job method against a live beanstalkd, on both cores."""

import pytest

import beanstalkc_fast
from beanstalkc_fast import errors

from conftest import MAX_JOB_SIZE, unique_tube


# -- put / reserve / delete ----------------------------------------------------

def test_put_reserve_delete(conn):
    jid = conn.put("hello")
    assert isinstance(jid, int) and jid > 0
    job = conn.reserve(timeout=0)
    assert job.jid == jid
    assert job.body == "hello"
    assert job.reserved
    job.delete()
    assert not job.reserved
    assert conn.peek(jid) is None
    assert conn.reserve(timeout=0) is None


def test_delete_missing_is_not_found(conn):
    with pytest.raises(errors.NotFound) as info:
        conn.delete(2 ** 63)
    assert isinstance(info.value, beanstalkc_fast.CommandFailed)
    assert info.value.command == "delete"


def test_reserve_timeout_returns_none(conn):
    assert conn.reserve(timeout=0) is None
    assert conn.reserve(timeout=1) is None


def test_reserve_without_timeout(conn):
    jid = conn.put("x")
    job = conn.reserve()
    assert job.jid == jid
    job.delete()


def test_fifo_order_same_priority(conn):
    ids = [conn.put("job %d" % i) for i in range(10)]
    got = []
    for _ in ids:
        job = conn.reserve(timeout=0)
        got.append((job.jid, job.body))
        job.delete()
    assert got == [(jid, "job %d" % i) for i, jid in enumerate(ids)]


def test_priorities_order(conn):
    conn.put("low", priority=1000)
    conn.put("urgent", priority=0)
    conn.put("middle", priority=500)
    bodies = []
    for _ in range(3):
        job = conn.reserve(timeout=0)
        bodies.append(job.body)
        job.delete()
    assert bodies == ["urgent", "middle", "low"]


def test_delayed_job_not_reservable_now(conn):
    jid = conn.put("later", delay=60)
    assert conn.reserve(timeout=0) is None
    assert conn.stats_job(jid)["state"] == "delayed"
    assert conn.peek_delayed().jid == jid
    conn.kick_job(jid)
    job = conn.reserve(timeout=0)
    assert job.jid == jid
    job.delete()


# -- release / bury / kick / touch -------------------------------------------------

def test_release_with_priority_and_delay(conn):
    jid = conn.put("r", priority=10)
    job = conn.reserve(timeout=0)
    job.release(priority=77, delay=60)
    assert not job.reserved
    stats = conn.stats_job(jid)
    assert stats["pri"] == 77
    assert stats["state"] == "delayed"
    assert stats["delay"] == 60
    assert conn.reserve(timeout=0) is None


def test_release_keeps_priority(conn):
    jid = conn.put("r", priority=4242)
    job = conn.reserve(timeout=0)
    job.release()
    stats = conn.stats_job(jid)
    assert stats["pri"] == 4242
    assert stats["state"] == "ready"


def test_release_keeps_priority_without_yaml(conn_factory, tube):
    c = conn_factory(tube, parse_yaml=False)
    jid = c.put("r", priority=4242)
    job = c.reserve(timeout=0)
    job.release()
    text = c.stats_job(jid)
    assert isinstance(text, str)
    assert "\npri: 4242\n" in text
    job = c.reserve(timeout=0)
    job.bury()
    assert "\npri: 4242\n" in c.stats_job(jid)
    assert "\nstate: buried\n" in c.stats_job(jid)


def test_release_priority_zero_honoured(conn):
    jid = conn.put("r", priority=99)
    job = conn.reserve(timeout=0)
    job.release(priority=0)
    assert conn.stats_job(jid)["pri"] == 0
    job = conn.reserve(timeout=0)
    job.bury(priority=0)
    assert conn.stats_job(jid)["pri"] == 0


def test_connection_release_and_bury_direct(conn):
    jid = conn.put("d")
    conn.reserve(timeout=0)
    conn.release(jid, 5, 0)
    assert conn.stats_job(jid)["pri"] == 5
    conn.reserve(timeout=0)
    conn.bury(jid, 6)
    assert conn.stats_job(jid)["pri"] == 6
    assert conn.stats_job(jid)["state"] == "buried"


def test_release_unreserved_not_found(conn):
    jid = conn.put("x")
    with pytest.raises(errors.NotFound):
        conn.release(jid)
    with pytest.raises(errors.NotFound):
        conn.bury(jid)
    with pytest.raises(errors.NotFound):
        conn.touch(jid)


def test_job_methods_noop_when_not_reserved(conn):
    jid = conn.put("x", priority=3)
    job = conn.peek(jid)
    assert not job.reserved
    job.release()
    job.bury()
    job.touch()
    assert conn.stats_job(jid)["state"] == "ready"


def test_bury_and_kick(conn):
    ids = [conn.put("b%d" % i) for i in range(3)]
    for _ in ids:
        conn.reserve(timeout=0).bury()
    assert conn.peek_buried().jid == ids[0]
    assert conn.stats_tube(conn.using())["current-jobs-buried"] == 3
    assert conn.kick(2) == 2
    assert conn.stats_tube(conn.using())["current-jobs-buried"] == 1
    assert conn.kick(10) == 1
    assert conn.kick() == 0
    assert conn.peek_buried() is None


def test_kick_job_and_job_kick(conn):
    jid = conn.put("k")
    job = conn.reserve(timeout=0)
    job.bury()
    job.kick()
    assert conn.stats_job(jid)["state"] == "ready"
    with pytest.raises(errors.NotFound):
        conn.kick_job(jid)


def test_touch(conn):
    jid = conn.put("t", ttr=5)
    job = conn.reserve(timeout=0)
    job.touch()
    conn.touch(jid)
    assert conn.stats_job(jid)["state"] == "reserved"
    job.delete()


def test_deadline_soon(conn):
    conn.put("short", ttr=1)
    job = conn.reserve(timeout=0)
    assert job is not None
    with pytest.raises(beanstalkc_fast.DeadlineSoon):
        conn.reserve(timeout=5)
    # the connection is still usable
    assert conn.using()


def test_reserve_job(conn):
    a = conn.put("a")
    b = conn.put("b")
    job = conn.reserve_job(b)
    assert job.jid == b and job.body == "b" and job.reserved
    with pytest.raises(errors.NotFound):
        conn.reserve_job(2 ** 63)
    job.delete()
    assert conn.reserve(timeout=0).jid == a


# -- peek ---------------------------------------------------------------------------

def test_peeks(conn):
    assert conn.peek_ready() is None
    assert conn.peek_delayed() is None
    assert conn.peek_buried() is None
    assert conn.peek(2 ** 63) is None
    r = conn.put("ready")
    d = conn.put("delayed", delay=100)
    b = conn.put("buried", priority=0)
    conn.reserve(timeout=0).bury()
    for job, jid, body in ((conn.peek_ready(), r, "ready"),
                           (conn.peek_delayed(), d, "delayed"),
                           (conn.peek_buried(), b, "buried"),
                           (conn.peek(d), d, "delayed")):
        assert job.jid == jid
        assert job.body == body
        assert not job.reserved
    job = conn.peek(r)
    assert job.stats()["id"] == r
    job.delete()
    assert conn.peek(r) is None


# -- tubes -----------------------------------------------------------------------------

def test_default_state(raw_conn):
    assert raw_conn.using() == "default"
    assert raw_conn.watching() == ["default"]
    assert "default" in raw_conn.tubes()


def test_use_watch_ignore(raw_conn):
    a, b = unique_tube(), unique_tube()
    assert raw_conn.use(a) == a
    assert raw_conn.using() == a
    assert raw_conn.watch(b) == 2
    assert raw_conn.watch(b) == 2
    assert sorted(raw_conn.watching()) == sorted(["default", b])
    assert raw_conn.ignore("default") == 1
    assert raw_conn.watching() == [b]
    # ignoring the last watched tube is refused and returns 1
    assert raw_conn.ignore(b) == 1
    assert raw_conn.watching() == [b]
    tubes = raw_conn.tubes()
    assert a in tubes and b in tubes
    assert all(isinstance(t, str) for t in tubes)


def test_watching_returns_names_str(conn, tube):
    assert conn.watching() == [tube]
    assert conn.using() == tube


def test_put_goes_to_used_tube_only(conn_factory, tube):
    producer = conn_factory()
    producer.use(tube)
    other = conn_factory(unique_tube())
    jid = producer.put("x")
    assert other.reserve(timeout=0) is None
    consumer = conn_factory(tube)
    assert consumer.reserve(timeout=0).jid == jid


def test_pause_tube(conn, tube):
    conn.put("p")
    conn.pause_tube(tube, 60)
    assert conn.reserve(timeout=0) is None
    stats = conn.stats_tube(tube)
    assert stats["pause"] == 60
    conn.pause_tube(tube, 0)
    assert conn.reserve(timeout=1) is not None
    with pytest.raises(errors.NotFound):
        conn.pause_tube(unique_tube(), 1)


# -- stats typing -----------------------------------------------------------------------

def test_stats_typing(conn):
    stats = conn.stats()
    assert isinstance(stats, dict)
    assert isinstance(stats["id"], str)
    assert isinstance(stats["hostname"], str)
    assert isinstance(stats["version"], str)
    assert isinstance(stats["os"], str)
    assert isinstance(stats["draining"], bool) and stats["draining"] is False
    assert isinstance(stats["rusage-utime"], float)
    assert isinstance(stats["rusage-stime"], float)
    assert isinstance(stats["pid"], int)
    assert isinstance(stats["current-jobs-ready"], int)
    assert isinstance(stats["max-job-size"], int)
    assert stats["max-job-size"] == MAX_JOB_SIZE
    for key, value in stats.items():
        if key.startswith("rusage-"):
            assert type(value) is float, key
        elif key.startswith(("current-", "cmd-", "total-")):
            assert type(value) is int, key


def test_stats_tube_typing(conn, tube):
    conn.put("x")
    stats = conn.stats_tube(tube)
    assert stats["name"] == tube
    assert isinstance(stats["name"], str)
    assert stats["current-jobs-ready"] == 1
    for key, value in stats.items():
        if key != "name":
            assert type(value) is int, key
    with pytest.raises(errors.NotFound):
        conn.stats_tube(unique_tube())


def test_stats_tube_numeric_name_stays_str(conn):
    for name in ("123", "1.5", "yes", "true"):
        conn.watch(name)
        stats = conn.stats_tube(name)
        assert stats["name"] == name
        conn.ignore(name)


def test_stats_job_typing(conn, tube):
    jid = conn.put("x", priority=12, ttr=30)
    stats = conn.stats_job(jid)
    assert stats["id"] == jid and type(stats["id"]) is int
    assert stats["tube"] == tube and isinstance(stats["tube"], str)
    assert stats["state"] == "ready"
    assert stats["pri"] == 12
    assert stats["ttr"] == 30
    for key, value in stats.items():
        if key not in ("tube", "state"):
            assert type(value) is int, key
    with pytest.raises(errors.NotFound):
        conn.stats_job(2 ** 63)


def test_parse_yaml_false_gives_text(conn_factory, tube):
    c = conn_factory(tube, parse_yaml=False)
    jid = c.put("x")
    for text in (c.stats(), c.stats_tube(tube), c.stats_job(jid), c.tubes(), c.watching()):
        assert isinstance(text, str)
        assert text.startswith("---")
    assert "name: %s" % tube in c.stats_tube(tube)


def test_parse_yaml_callable_receives_text(conn_factory, tube):
    seen = []

    def parser(text):
        seen.append(text)
        return ("parsed", len(seen))

    c = conn_factory(tube, parse_yaml=parser)
    assert c.stats() == ("parsed", 1)
    assert c.watching() == ("parsed", 2)
    assert all(isinstance(t, str) and t.startswith("---") for t in seen)
    assert seen[1] == "---\n- %s\n" % tube


# -- bodies ----------------------------------------------------------------------------------

def test_binary_bodies(conn_factory, tube):
    c = conn_factory(tube, encoding=None)
    bodies = [b"", b"\r\n", b"a\r\nb", b"\x00\x01\x02", b"\r\n\r\n\x00", b"x" * 1000 + b"\r\n",
              bytes(range(256))]
    for body in bodies:
        c.put(body)
    for body in bodies:
        job = c.reserve(timeout=0)
        assert isinstance(job.body, bytes)
        assert job.body == body
        assert job.raw_body == body
        job.delete()


def test_bytes_like_bodies(conn):
    for body in (b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview")):
        conn.put(body)
    assert [conn.reserve(timeout=0).raw_body for _ in range(3)] == [
        b"bytes", b"bytearray", b"memoryview"]


def test_unicode_body(conn):
    conn.put("h\u00e9llo \u2603\r\n")
    job = conn.reserve(timeout=0)
    assert job.body == "h\u00e9llo \u2603\r\n"
    assert job.raw_body == "h\u00e9llo \u2603\r\n".encode("utf-8")


def test_other_encoding(conn_factory, tube):
    c = conn_factory(tube, encoding="latin-1")
    c.put("caf\u00e9")
    job = c.reserve(timeout=0)
    assert job.raw_body == b"caf\xe9"
    assert job.body == "caf\u00e9"


def test_encoding_none_requires_bytes(conn_factory, tube):
    c = conn_factory(tube, encoding=None)
    with pytest.raises(TypeError):
        c.put("text")
    c.put(b"ok")
    assert c.reserve(timeout=0).body == b"ok"


def test_undecodable_body_still_returned(conn_factory, tube):
    producer = conn_factory(tube, encoding=None)
    jid = producer.put(b"\xff\xfe bad utf-8")
    c = conn_factory(tube)
    job = c.reserve(timeout=0)
    assert job.jid == jid
    assert job.raw_body == b"\xff\xfe bad utf-8"
    with pytest.raises(UnicodeDecodeError):
        job.body
    job.bury()
    assert c.stats_job(jid)["state"] == "buried"
    assert c.peek_buried().raw_body == b"\xff\xfe bad utf-8"


def test_large_body_up_to_limit(conn_factory, tube):
    c = conn_factory(tube, encoding=None)
    body = bytes(range(256)) * (MAX_JOB_SIZE // 256)
    assert len(body) == MAX_JOB_SIZE
    jid = c.put(body)
    job = c.reserve(timeout=0)
    assert job.jid == jid
    assert job.body == body
    job.delete()


def test_job_too_big(conn_factory, tube):
    c = conn_factory(tube, encoding=None)
    with pytest.raises(errors.JobTooBig) as info:
        c.put(b"x" * (MAX_JOB_SIZE + 1))
    assert isinstance(info.value, beanstalkc_fast.CommandFailed)
    assert issubclass(errors.JobTooBig, beanstalkc_fast.CommandFailed)
    # the connection survives
    jid = c.put(b"small")
    assert c.reserve(timeout=0).jid == jid


# -- lifecycle -----------------------------------------------------------------------------------

def test_context_manager_and_close_twice(make_conn, server):
    with make_conn(server.port) as c:
        assert c.using() == "default"
    with pytest.raises(beanstalkc_fast.SocketError):
        c.using()
    c.close()
    c.close()


def test_reconnect_restores_tubes(conn, tube):
    conn.reconnect()
    assert conn.using() == tube
    assert conn.watching() == [tube]


def test_connect_refused(make_conn):
    from conftest import free_port
    with pytest.raises(beanstalkc_fast.SocketError):
        make_conn(free_port())


def test_job_repr(conn):
    conn.put("x")
    job = conn.reserve(timeout=0)
    assert "reserved" in repr(job)
    assert str(job.jid) in repr(job)
