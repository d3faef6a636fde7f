"""Jobs as the cores build them (issue 11): ``job.Job`` and subclasses, the
``_job_type`` a front end chooses, and ``job.delete()`` on every path. Both cores."""

import pytest

import beanstalkc_fast
from beanstalkc_fast import Connection, Job, NotFound


def test_reserved_job_is_a_job_with_a_dict(conn):
    jid = conn.put(b"body")
    job = conn.reserve(timeout=0)
    assert type(job) is Job and isinstance(job, beanstalkc_fast.Job)
    assert (job.conn, job.jid, job.raw_body, job.body, job.reserved) == (
        conn, jid, b"body", "body", True)
    job.note = 1
    assert vars(job) == {"note": 1}
    job.delete()
    assert job.reserved is False
    with pytest.raises(NotFound):
        conn.delete(jid)


def test_job_type_subclass_without_init_keeps_its_class(conn):
    class Tagged(Job):
        def tag(self):
            return "tagged %d" % self.jid

    conn._job_type = Tagged
    jid = conn.put("x")
    job = conn.peek(jid)
    assert type(job) is Tagged and job.reserved is False and job.tag() == "tagged %d" % jid
    job = conn.reserve(timeout=0)
    assert type(job) is Tagged and job.reserved is True and job.body == "x"
    job.delete()


def test_job_type_with_own_init_is_called(conn):
    seen = []

    class Counted(Job):
        def __init__(self, conn, jid, body, reserved=True, encoding=None):
            seen.append((jid, body, reserved, encoding))
            super().__init__(conn, jid, body, reserved, encoding)

    conn._job_type = Counted
    jid = conn.put(b"y")
    job = conn.reserve(timeout=0)
    assert type(job) is Counted and seen == [(jid, b"y", True, "utf-8")]
    job.delete()


def test_job_delete_goes_through_an_overridden_delete(core, server, tube):
    deleted = []

    class Logging(Connection):
        def delete(self, jid):
            deleted.append(jid)
            return super().delete(jid)

    c = Logging(host="127.0.0.1", port=server.port, core=core)
    try:
        c.use(tube)
        c.watch(tube)
        jid = c.put("z")
        c.reserve(timeout=0).delete()
        assert deleted == [jid]
        with pytest.raises(NotFound):
            c.delete(jid)
    finally:
        c.close()


def test_job_delete_under_auto_reconnect(make_conn, server, tube):
    c = make_conn(server.port, auto_reconnect=True)
    c.use(tube)
    c.watch(tube)
    jid = c.put("w")
    job = c.reserve(timeout=0)
    job.delete()
    assert job.reserved is False
    with pytest.raises(NotFound):
        c.delete(jid)


def test_fast_commands_check_arguments_before_sending(conn):
    with pytest.raises(TypeError):
        conn.put(None)
    with pytest.raises(ValueError):
        conn.put("x", priority=-1)
    with pytest.raises(ValueError):
        conn.reserve(timeout=2 ** 32)
    with pytest.raises(TypeError):
        conn.reserve(timeout="1")
    with pytest.raises(ValueError):
        conn.delete(-1)
    assert conn.reserve(timeout=0.9) is None         # truncated to 0, as with %d
    assert conn.using() == conn._using               # nothing half-sent broke the stream


def test_sync_methods_keep_the_commands_signatures():
    # the Cython core's one-call put/reserve/delete stand in for Commands'
    import inspect

    from beanstalkc_fast.commands import Commands
    for name in ("put", "reserve", "delete"):
        ours, theirs = getattr(Connection, name), getattr(Commands, name)
        assert [(p.name, p.default) for p in inspect.signature(ours).parameters.values()] == \
            [(p.name, p.default) for p in inspect.signature(theirs).parameters.values()], name
        assert ours.__doc__ == theirs.__doc__
