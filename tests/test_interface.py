"""Both cores against the interface written down in ``beanstalkc_fast._interface``.

The members checked are read from the Protocol classes themselves: a name added
to ``CoreModule`` is checked here without touching this file. A class a core
provides (``Core``; later e.g. a ``Reader``) is checked against the Protocol of
its instances listed in ``INSTANCE_PROTOCOLS``. Signatures are compared where
the core exposes them (Cython's def functions and methods do; a cdef class's
constructor does not); then a small behaviour check runs on a socketpair, no
server needed.
"""

import inspect
import socket
import typing

import pytest

from beanstalkc_fast import _interface

# module-level class in a core -> the Protocol its instances follow
INSTANCE_PROTOCOLS = {"Core": _interface.CoreConnection, "Reader": _interface.ReplyReader}


def _members(proto):
    """(attribute annotations, method functions) a Protocol class declares."""
    hints = typing.get_type_hints(proto)
    methods = {name: fn for name, fn in vars(proto).items()
               if inspect.isfunction(fn) and not name.startswith("_")}
    return hints, methods


def _signature(obj):
    """The signature of ``obj`` without ``self``, or None when not exposed."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None             # a slot wrapper's (*args, **kwargs): nothing to compare
    return params


def _check_signature(where, actual_obj, promised_fn):
    actual = _signature(actual_obj)
    if actual is None:
        return False
    promised = _signature(promised_fn)
    assert [p.name for p in actual] == [p.name for p in promised], where
    for a, p in zip(actual, promised):
        assert a.kind in (p.POSITIONAL_OR_KEYWORD, p.kind), (where, a.name, a.kind)
        if p.default is p.empty:
            assert a.default is a.empty, (where, a.name, "must be required")
        else:
            assert a.default is not a.empty, (where, a.name, "must have a default")
            if p.default is not Ellipsis:   # ``...``: any default
                assert a.default == p.default, (where, a.name, a.default, p.default)
    return True


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def test_module_names_and_signatures(core):
    hints, methods = _members(_interface.CoreModule)
    for name, tp in hints.items():
        value = getattr(core, name)       # AttributeError names what is missing
        assert isinstance(value, typing.get_origin(tp) or tp), (name, type(value))
    compared = []
    for name, fn in methods.items():
        obj = getattr(core, name)
        assert callable(obj), name
        if _check_signature("%s.%s" % (core.__name__, name), obj, fn):
            compared.append(name)
    # the functions' signatures are visible in both cores (Cython: binding=True)
    assert {"check_uint", "check_name", "encode_put", "encode_id", "encode_ids",
            "parse_yaml"} <= set(compared)


@pytest.mark.parametrize("cls_name", sorted(INSTANCE_PROTOCOLS))
def test_instance_methods_and_signatures(core, cls_name):
    cls = getattr(core, cls_name)
    _, methods = _members(INSTANCE_PROTOCOLS[cls_name])
    for name, fn in methods.items():
        method = getattr(cls, name)
        assert callable(method), (cls_name, name)
        assert _check_signature("%s.%s" % (cls_name, name), method, fn), (
            "%s.%s exposes no signature" % (cls_name, name))


def test_core_instance_attributes(core, pair):
    a, _ = pair
    c = core.Core(a, 2.5)
    hints, _ = _members(_interface.CoreConnection)
    for name in hints:
        getattr(c, name)
    assert c.sock is a and c.timeout == 2.5 and c.max_body == core.MAX_BODY
    assert c.broken is None
    c.close()
    assert c.broken == "closed"


def test_functions_behave(core):
    assert core.check_uint("delay", 7) == 7
    with pytest.raises(ValueError):
        core.check_uint("delay", core.MAX_UINT32 + 1)
    with pytest.raises(TypeError):
        core.check_uint("delay", True)
    assert core.check_name("a-b") == b"a-b"
    with pytest.raises(ValueError):
        core.check_name("-a")
    assert core.encode_body("é", "utf-8") == "é".encode()
    assert core.encode_put(b"hi", 1, 2, 3, None) == b"put 1 2 3 2\r\nhi\r\n"
    assert core.encode_id(b"delete ", 9) == b"delete 9\r\n"
    assert core.encode_ids(b"touch ", iter([1, 2 ** 64 - 1])) == [
        b"touch 1\r\n", b"touch 18446744073709551615\r\n"]
    assert core.encode_ids(b"x" * 41 + b" ", [3]) == [b"x" * 41 + b" 3\r\n"]
    assert core.encode_ids(b"delete ", [2.9]) == [b"delete 2\r\n"]     # as beanstalkc's %d
    for bad, error in ((2 ** 64, ValueError), (-1, ValueError), ("1", TypeError),
                       (True, TypeError), (float("nan"), ValueError)):
        with pytest.raises(error, match="job id"):
            core.encode_ids(b"delete ", [1, bad])
    assert core.parse_yaml(b"---\nid: 7\nname: yes\nrusage-utime: 0.5\ndraining: false\n") == {
        "id": 7, "name": "yes", "rusage-utime": 0.5, "draining": False}
    assert core.parse_yaml(b"---\n- default\n- t\n") == ["default", "t"]
    assert core.parse_yaml(b"---\nid: abc\n", frozenset(("id",))) == {"id": "abc"}


def test_core_request_and_pipeline(core, pair):
    a, b = pair
    c = core.Core(a, 5.0)
    b.sendall(b"INSERTED 7\r\n")
    assert c.request(b"put 0 0 1 1\r\nx\r\n") == ("INSERTED", 7, None)
    assert b.recv(100) == b"put 0 0 1 1\r\nx\r\n"
    b.sendall(b"USING t\r\nRESERVED 3 2\r\nhi\r\nNOT_FOUND\r\n")
    results = []
    c.pipeline([b"use t\r\n", b"reserve-job 3\r\n", b"peek 4\r\n"], results)
    assert results == [("USING", "t", None), ("RESERVED", 3, b"hi"), ("NOT_FOUND", None, None)]
    b.close()
    with pytest.raises(core.SocketError):
        c.request(b"stats\r\n")
    assert c.broken is not None
