"""Drop-in for beanstalkc code (issue 9): the classic surface as user code
touches it, both cores. Each test is a pattern found in real beanstalkc users."""

import json
import socket
import threading

import pytest

import beanstalkc_fast
from beanstalkc_fast import CommandFailed, Connection, Job, NotFound, SocketError
from conftest import free_port


def test_job_takes_attributes(conn):
    # worker code: job.data = json.loads(job.body)
    conn.put(json.dumps({"n": 1}))
    job = conn.reserve(timeout=1)
    job.data = json.loads(job.body)
    job.attempts = 1
    assert job.data == {"n": 1} and job.attempts == 1
    # the job's own attributes stay out of its __dict__ (slots, or the core's fields)
    assert "jid" not in vars(job) and vars(job)["data"] == {"n": 1}
    job.body = "replaced"                 # beanstalkc's body was a plain attribute
    assert job.body == "replaced"
    job.delete()


def test_job_built_by_hand():
    job = Job(None, 1, "x")
    assert (job.conn, job.jid, job.body, job.reserved) == (None, 1, "x", True)
    assert job.raw_body == b"x"
    assert repr(job) == "<Job 1 reserved>"
    assert repr(Job(None, "7", b"y", False)) == "<Job '7' unreserved>"


def test_job_built_by_hand_acts_on_the_server(conn):
    # console tools build Job(conn, jid, None, True) for one-off commands
    jid = conn.put("one-off")
    job = Job(conn, jid, None, True)
    assert job.stats()["state"] == "ready"
    job.delete()
    assert conn.peek(jid) is None


def test_job_subclass(conn):
    class QueueJob(Job):
        def __init__(self, conn, body, jid=1):
            super().__init__(conn, jid, body)
            self.tries = 0

    jid = conn.put("sub")
    job = QueueJob(conn, "sub", jid)
    job.tries += 1
    assert (job.jid, job.body, job.tries) == (jid, "sub", 1)
    job.delete()


def test_connection_subclass_overrides_reach_the_job(make_conn, server, tube):
    calls = []

    class Audited(Connection):
        def release(self, jid, priority=beanstalkc_fast.DEFAULT_PRIORITY, delay=0):
            calls.append(("release", jid, priority, delay))
            super().release(jid, priority, delay)

        def stats_job(self, jid):
            calls.append(("stats_job", jid))
            return super().stats_job(jid)

    make_conn(server.port)                # patches the core under test
    c = Audited("127.0.0.1", server.port)
    try:
        c.use(tube)
        c.watch(tube)
        jid = c.put("x", 5)
        job = c.reserve(timeout=1)
        job.release(delay=0)              # priority kept: read through stats_job
        assert calls == [("stats_job", jid), ("release", jid, 5, 0)]
    finally:
        c.close()


def test_connection_subclass_without_init(make_conn, server, tube):
    # beanstalkc subclasses set a few attributes, skip __init__ and call connect()
    class Worker(Connection):
        def __init__(self, host, port, tube):
            self.tube, self.host, self.port = tube, host, port
            self._connect_timeout = socket.getdefaulttimeout()

        def connect(self):
            super().connect()
            self.ignore("default")
            self.watch(self.tube)

    make_conn(server.port)
    producer = make_conn(server.port)
    producer.use(tube)
    producer.put("work")
    w = Worker("127.0.0.1", server.port, tube)
    w.connect()
    try:
        job = w.reserve(timeout=1)
        assert job.body == "work"
        job.delete()
        # ignoring the only watched tube first is refused, as by beanstalkd
        assert sorted(w.watching()) == sorted(["default", tube])
    finally:
        w.close()


def test_positional_arguments_in_beanstalkc_order(make_conn, server, tube):
    make_conn(server.port)
    c = Connection("127.0.0.1", server.port, True, 5)   # host, port, parse_yaml, connect_timeout
    try:
        assert (c.host, c.port, c.connect_timeout) == ("127.0.0.1", server.port, 5)
        c.use(tube)
        c.watch(tube)
        jid = c.put("p", 10, 0, 30)                      # body, priority, delay, ttr
        stats = c.stats_job(jid)
        assert (stats["pri"], stats["delay"], stats["ttr"]) == (10, 0, 30)
        job = c.reserve(0)
        c.release(jid, 20, 0)                            # jid, priority, delay
        assert c.stats_job(jid)["pri"] == 20
        job = c.reserve(0)
        c.bury(job.jid, 30)                              # jid, priority
        assert c.stats_job(jid)["pri"] == 30
        assert c.kick(1) == 1                            # bound
        c.pause_tube(tube, 0)                            # name, delay
        c.delete(jid)
    finally:
        c.close()


def test_job_attributes(conn):
    jid = conn.put("attrs")
    job = conn.reserve(timeout=1)
    assert (job.jid, job.body, job.conn, job.reserved) == (jid, "attrs", conn, True)
    job.delete()
    assert job.reserved is False


def test_socket_escape_hatch(conn, server):
    sock = conn._socket
    assert isinstance(sock, socket.socket)
    assert sock.getpeername()[1] == server.port
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    assert conn.using()                    # still works after touching an option
    conn.close()
    conn.connect()
    assert conn._socket is not sock        # the new connection's socket


def test_connect_error_args_like_beanstalkc(core, make_conn):
    # code in the wild re-raises with e.args[0].args / reads e.args[0].errno
    with pytest.raises(SocketError) as info:
        make_conn(free_port())
    cause = info.value.args[0]
    assert isinstance(cause, ConnectionRefusedError)
    assert cause.args[0] == 111 or cause.errno is not None
    assert "refused" in str(info.value).lower()


def test_command_failed_args_like_beanstalkc(conn):
    with pytest.raises(CommandFailed) as info:
        conn.delete(2 ** 40)
    assert info.value.args == ("delete", "NOT_FOUND", [])
    assert isinstance(info.value, NotFound)
    # console tools test e.args[1] to map NOT_FOUND to their own error
    assert info.value.args[1] == "NOT_FOUND"


def test_connect_timeout_default_read_when_connecting(make_conn, server, monkeypatch):
    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(7.5)
        assert make_conn(server.port).connect_timeout == 7.5
        assert make_conn(server.port, connect_timeout=None).connect_timeout is None
        socket.setdefaulttimeout(None)
        assert make_conn(server.port).connect_timeout is None
    finally:
        socket.setdefaulttimeout(old)


def test_default_timeout_does_not_bound_commands(make_conn, server, tube):
    # beanstalkc reset its socket to blocking after connecting: a global
    # default timeout never cut a long reserve short; neither here
    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(0.2)
        c = make_conn(server.port)
        c.watch(tube)
        c.ignore("default")
        assert c.reserve(timeout=1) is None    # waits the full second, no SocketError
        assert c.using() == "default"
    finally:
        socket.setdefaulttimeout(old)


def test_connection_handed_from_thread_to_thread(conn):
    results = []

    def step(action):
        t = threading.Thread(target=lambda: results.append(action()))
        t.start()
        t.join(10)

    step(lambda: conn.put("handed"))
    step(lambda: conn.reserve(timeout=1))
    job = results[1]
    step(lambda: job.delete())
    assert results[0] == job.jid and job.body == "handed"
    assert conn.peek(job.jid) is None


def test_connect_on_an_open_connection(conn, tube):
    # kombu's transport calls connect() right after Connection(...)
    old = conn._socket
    conn.connect()
    assert old.fileno() == -1              # the first socket is closed, not leaked
    assert conn.using() == tube            # and the tubes come along
    assert conn.watching() == [tube]


def test_reprs(conn, server):
    assert repr(conn).endswith("127.0.0.1:%d open>" % server.port)
    conn.close()
    assert repr(conn).endswith("closed>")


def test_reserve_float_timeout_sends_truncated_and_waits_that(conn):
    try:
        conn._impl.check_uint("timeout", 0.5)
    except TypeError:
        pytest.skip("this core's check_uint does not take floats yet")
    sent = []
    execute = conn._run

    def spy(c, cmd, data, arg=None):
        sent.append((data, cmd.extra(arg)))
        return execute(c, cmd, data, arg)

    conn._run = spy
    assert conn.reserve(timeout=1.9) is None
    assert sent == [(b"reserve-with-timeout 1\r\n", 1)]


def test_settimeout_on_the_raw_socket(conn, core):
    # a logging handler in the wild does conn._socket.settimeout(5) after
    # connecting: Python then makes the descriptor non-blocking, and the core
    # must neither report that as a timeout nor break the connection
    conn._socket.settimeout(5)
    assert conn.reserve(timeout=1) is None
    assert conn.using()


# -- patterns from real beanstalkc programs run against this package ---------------------
# (worker daemons, console tools, a Flask extension, a logging handler; see the closing
# note of issue 9). The programs themselves are not part of the project.

def test_worker_buries_twice_and_checks_delete_with_stats(conn):
    # a worker daemon buries a failed job, then buries it again on its generic
    # failure path; after a successful delete it calls job.stats() and takes
    # CommandFailed as proof the job is gone
    jid = conn.put("fails")
    job = conn.reserve(timeout=1)
    job.bury()
    job.bury()                            # not reserved any more: nothing sent, no error
    assert conn.stats_job(jid)["state"] == "buried"
    assert conn.stats_job(jid)["buries"] == 1
    conn.kick(1)
    job = conn.reserve(timeout=1)
    job.delete()
    with pytest.raises(CommandFailed) as info:
        job.stats()
    assert info.value.args[1] == "NOT_FOUND"


def test_inspect_by_reserve_and_delayed_release(conn):
    # a console tool lists ready jobs by reserving each and releasing it with a
    # delay, so the next reserve does not get the same job again
    jids = [conn.put(f"j{i}") for i in range(3)]
    seen = []
    for _ in jids:
        job = conn.reserve(timeout=0)
        seen.append(job.jid)
        job.release(delay=1)
    assert seen == jids
    assert conn.reserve(timeout=0) is None
    assert [conn.stats_job(j)["state"] for j in jids] == ["delayed"] * 3
    assert conn.peek_buried() is None
    assert conn.kick() == 1               # no buried jobs: kick moves a delayed one (bound 1)
    assert sorted(conn.stats_job(j)["state"] for j in jids) == ["delayed", "delayed", "ready"]


def test_raw_socket_timeout_shorter_than_a_reserve(conn):
    # a logging handler bounds the raw socket with conn._socket.settimeout(2) and
    # later reserves longer than that on the same connection: the client's own
    # deadline (the reserve's timeout) decides, the connection stays usable
    conn._socket.settimeout(0.1)
    assert conn.reserve(timeout=1) is None
    jid = conn.put("after")
    assert conn.peek(jid).body == "after"


def test_subclass_initialised_later_from_a_config(make_conn, server, tube):
    # a Flask extension: Connection subclass built without arguments, its
    # init_app() calls Connection.__init__ with keywords read from app.config
    class Beanstalk(Connection):
        def __init__(self, app=None):
            if app is not None:
                self.init_app(app)

        def init_app(self, app):
            kwargs = {n: app["BEANSTALK_" + n.upper()] for n in ("host", "port", "parse_yaml")
                      if app.get("BEANSTALK_" + n.upper())}
            super().__init__(**kwargs)

    make_conn(server.port)
    ext = Beanstalk()
    ext.init_app({"BEANSTALK_HOST": "127.0.0.1", "BEANSTALK_PORT": server.port})
    try:
        ext.use(tube)
        jid = ext.put("from the web app")
        assert ext.peek(jid).body == "from the web app"
        assert ext.stats_tube(tube)["name"] == tube
    finally:
        ext.close()
