"""No public method can put a second command on the wire (property tests)."""

import re

from hypothesis import HealthCheck, given, settings, strategies as st

import beanstalkc_fast

NAME = re.compile(rb"\A[A-Za-z0-9+/;.$_()][A-Za-z0-9+/;.$_()-]{0,199}\Z")
names = st.one_of(st.text(max_size=40), st.binary(max_size=40),
                  st.sampled_from(["a\r\nput 0 0 0 0", "x y", "-x", "ok\n", "a" * 201]))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names)
def test_check_name_accepts_only_protocol_names(core, name):
    try:
        raw = core.check_name(name)
    except (ValueError, TypeError):
        return
    assert NAME.match(raw)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names)
def test_tube_methods_send_one_line_or_nothing(conn, name):
    before = conn.stats()
    for method in (conn.use, conn.watch, conn.ignore, conn.stats_tube):
        try:
            method(name)
        except (ValueError, TypeError):
            continue
        except beanstalkc_fast.CommandFailed:
            pass
    after = conn.stats()
    # exactly the commands we meant: no extra put, no unknown command
    assert after["cmd-put"] == before["cmd-put"]
    assert conn.using()   # the connection is still in sync


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.booleans(), st.none()))
def test_integer_arguments_are_checked(core, value):
    try:
        out = core.check_uint("priority", value)
    except (ValueError, TypeError):
        return
    assert type(out) is int and 0 <= out < 2 ** 32
