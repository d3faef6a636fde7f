"""The YAML subset parser against PyYAML and between the two cores."""

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import unique_tube

SERVER_STR_KEYS = frozenset(("id",))
# keys where real YAML gets beanstalkd's output wrong; the parser keeps them str
YAML_MISTAKE_KEYS = ("os", "id", "hostname", "version", "name", "tube")
ODD_TUBES = ("yes", "no", "123", "1.5", "true", "null", "0x10", "1e3")


def raw(conn, command):
    status, value, body = conn._core.request(command)
    assert status == "OK"
    return body


def compare(parsed, body, mistake_keys=YAML_MISTAKE_KEYS):
    expected = yaml.safe_load(body.decode("utf-8"))
    assert isinstance(parsed, dict)
    assert set(parsed) == set(expected)
    for key in mistake_keys:
        if key in parsed:
            assert isinstance(parsed[key], str), key
            # YAML may have produced None/int/float/bool; the text must survive
            assert ("%s: %s\n" % (key, parsed[key])) in body.decode() or \
                ('%s: "%s"\n' % (key, parsed[key])) in body.decode(), key
            del parsed[key], expected[key]
    assert parsed == expected
    for key, value in parsed.items():
        assert type(value) is type(expected[key]), key


def test_stats_matches_yaml(conn, core):
    body = raw(conn, b"stats\r\n")
    parsed = core.parse_yaml(body, SERVER_STR_KEYS)
    assert isinstance(parsed["id"], str)
    assert isinstance(parsed["rusage-utime"], float)
    assert parsed["draining"] is False
    compare(parsed, body)


def test_stats_os_and_id_mistakes(core):
    body = (b"---\nid: 1234567890\nhostname: 1234\nos: #1 SMP Debian\nversion: 1.12\n"
            b"pid: 42\nrusage-utime: 0.5\ndraining: false\n")
    parsed = core.parse_yaml(body, SERVER_STR_KEYS)
    assert parsed == {"id": "1234567890", "hostname": "1234", "os": "#1 SMP Debian",
                      "version": "1.12", "pid": 42, "rusage-utime": 0.5, "draining": False}
    assert all(type(parsed[k]) is str for k in ("id", "hostname", "os", "version"))
    loaded = yaml.safe_load(body)
    assert loaded["os"] is None and loaded["id"] == 1234567890


def test_non_ascii_values_decoded_as_utf8(core):
    # a hostname or os with non-ASCII text must not crash stats
    body = "---\nhostname: h\u00f4te\nos: \u00e9\npid: 1\n".encode("utf-8")
    assert core.parse_yaml(body, SERVER_STR_KEYS) == {"hostname": "h\u00f4te", "os": "\u00e9",
                                                       "pid": 1}
    assert core.parse_yaml("- t\u00e9\n".encode("utf-8"), frozenset()) == ["t\u00e9"]


def test_stats_tube_matches_yaml(conn, core, tube):
    conn.put("x")
    body = raw(conn, b"stats-tube %s\r\n" % tube.encode())
    parsed = core.parse_yaml(body, frozenset())
    assert parsed["name"] == tube
    compare(parsed, body)


@pytest.mark.parametrize("name", ODD_TUBES)
def test_stats_tube_odd_names(conn, core, name):
    conn.watch(name)
    body = raw(conn, b"stats-tube %s\r\n" % name.encode())
    parsed = core.parse_yaml(body, frozenset())
    assert parsed["name"] == name
    compare(parsed, body)


def test_stats_job_matches_yaml(conn, core):
    conn.use("123")
    jid = conn.put("x", priority=5)
    body = raw(conn, b"stats-job %d\r\n" % jid)
    parsed = core.parse_yaml(body, frozenset())
    assert parsed["tube"] == "123"
    assert parsed["id"] == jid
    compare(parsed, body, ("tube", "state"))


def test_list_tubes_matches_yaml(conn, core):
    names = list(ODD_TUBES) + [unique_tube()]
    for name in names:
        conn.watch(name)
    for command in (b"list-tubes\r\n", b"list-tubes-watched\r\n"):
        body = raw(conn, command)
        parsed = core.parse_yaml(body, frozenset())
        loaded = yaml.safe_load(body.decode())
        assert isinstance(parsed, list) and len(parsed) == len(loaded)
        assert all(isinstance(t, str) for t in parsed)
        for p, y in zip(parsed, loaded):
            if isinstance(y, str):
                assert p == y
            else:
                assert p in ODD_TUBES
        for name in names:
            assert name in parsed


def test_empty_like_inputs(core):
    for body in (b"", b"---\n", b"---", b"\n\n"):
        result = core.parse_yaml(body, frozenset())
        assert result in ({}, [])


# -- differential: the two cores agree on anything -------------------------------

YAMLISH = st.lists(st.sampled_from([
    b"---\n", b"- ", b"\n", b": ", b":", b"name", b"id", b"os", b"pri", b"rusage-utime",
    b"123", b"-5", b"1.5", b"-0.25", b"true", b"false", b"yes", b"\"q\"", b"\"", b"#",
    b"\xff", b"\xc3\xa9", b"\x00", b"\r", b" ", b"a", b"--", b".", b"1.", b".5", b"\xd9\xa3",
    b"\xef\xbc\x91", b"\xc2\xb2", b"99999999999999999999999",
]), max_size=40).map(b"".join)
KEYSETS = st.sampled_from([frozenset(), SERVER_STR_KEYS, frozenset(("pri", "a"))])
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001
        return ("err", type(exc))


def _typed(value):
    """Value with types made explicit (True == 1 == 1.0 otherwise)."""
    if isinstance(value, dict):
        return {k: (type(v).__name__, v) for k, v in value.items()}
    if isinstance(value, list):
        return [(type(v).__name__, v) for v in value]
    return (type(value).__name__, value)


@FAST
@given(body=st.one_of(st.binary(max_size=300), YAMLISH), keys=KEYSETS)
def test_parse_yaml_never_crashes(core, body, keys):
    result = core.parse_yaml(body, keys)
    assert isinstance(result, (dict, list))


ASCII_YAMLISH = YAMLISH.filter(lambda b: b.isascii())


DECIMALS = st.builds(
    lambda neg, whole, frac: ("-" if neg else "") + whole + "." + frac,
    st.booleans(), st.text("0123456789", min_size=1, max_size=12),
    st.text("0123456789", min_size=1, max_size=12))


@FAST
@given(value=DECIMALS, key=st.sampled_from(["rusage-utime", "x"]))
def test_parse_yaml_decimal_values_exact(core, value, key):
    """Short decimals take a fast path in the Cython core (digits / 10**k):
    the same float as float(), sign of zero included, on both sides of its
    15-digit limit."""
    got = core.parse_yaml(("---\n%s: %s\n" % (key, value)).encode(), frozenset())[key]
    assert type(got) is float and repr(got) == repr(float(value))


@FAST
@given(body=st.one_of(st.binary(max_size=300).filter(lambda b: b.isascii()), ASCII_YAMLISH),
       keys=KEYSETS)
def test_parse_yaml_cores_agree_ascii(both_cores, body, keys):
    py, cy = both_cores
    a = _outcome(py.parse_yaml, body, keys)
    b = _outcome(cy.parse_yaml, body, keys)
    if a[0] == "ok" and b[0] == "ok":
        assert _typed(a[1]) == _typed(b[1])
    else:
        assert a == b


@FAST
@given(body=st.one_of(st.binary(max_size=300), YAMLISH), keys=KEYSETS)
def test_parse_yaml_cores_agree(both_cores, body, keys):
    py, cy = both_cores
    a = _outcome(py.parse_yaml, body, keys)
    b = _outcome(cy.parse_yaml, body, keys)
    if a[0] == "ok" and b[0] == "ok":
        assert _typed(a[1]) == _typed(b[1])
    else:
        assert a == b


class FakeSock:
    """Serves ``chunks`` to recv_into, then EOF; records what was sent."""

    def __init__(self, chunks):
        self.chunks = [bytes(c) for c in chunks if c]
        self.sent = b""
        self.closed = False

    def recv_into(self, view, nbytes=0):
        if not self.chunks:
            return 0
        chunk = self.chunks[0]
        n = min(len(view), len(chunk)) if not nbytes else min(nbytes, len(view), len(chunk))
        view[:n] = chunk[:n]
        if n < len(chunk):
            self.chunks[0] = chunk[n:]
        else:
            self.chunks.pop(0)
        return n

    def sendall(self, data, flags=0):
        self.sent += bytes(data)

    def send(self, data, flags=0):
        self.sent += bytes(data)
        return len(data)

    def settimeout(self, value):
        pass

    def setsockopt(self, *args):
        pass

    def close(self):
        self.closed = True


def split(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


REPLY_TOKENS = st.lists(st.sampled_from([
    b"RESERVED", b"FOUND", b"OK", b"INSERTED", b"BURIED", b"KICKED", b"USING", b"WATCHING",
    b"DELETED", b"TIMED_OUT", b"NOT_FOUND", b"DEADLINE_SOON", b"JOB_TOO_BIG", b" ", b"  ",
    b"\r\n", b"\r", b"\n", b"0", b"1", b"3", b"12", b"-1", b"abc", b"a b", b"\x00",
    b"18446744073709551616", b"18446744073709551615", b"999999999999", b"tube-1", b"\xff",
    b"x" * 1100, b"+1", b"\xd9\xa3",
]), max_size=25).map(b"".join)


def _run_core(module, data, cuts, mode):
    sock = FakeSock(split(data, cuts))
    core = module.Core(sock, 5.0)
    try:
        if mode == "request":
            return ("ok", core.request(b"peek 1\r\n"))
        results = []
        try:
            core.pipeline([b"peek 1\r\n"] * 3, results)
        except Exception as exc:  # noqa: BLE001
            return ("err", type(exc), results)
        return ("ok", results)
    except Exception as exc:  # noqa: BLE001
        return ("err", type(exc))


@FAST
@given(data=st.one_of(REPLY_TOKENS, st.binary(max_size=200)),
       cuts=st.lists(st.integers(min_value=0, max_value=10 ** 6), max_size=8),
       mode=st.sampled_from(["request", "pipeline"]))
def test_core_split_invariant(core, data, cuts, mode):
    whole = _run_core(core, data, [], mode)
    assert _run_core(core, data, cuts, mode) == whole


@FAST
@given(data=st.one_of(REPLY_TOKENS, st.binary(max_size=200)),
       cuts=st.lists(st.integers(min_value=0, max_value=10 ** 6), max_size=8),
       mode=st.sampled_from(["request", "pipeline"]))
def test_cores_agree_on_replies(both_cores, data, cuts, mode):
    py, cy = both_cores
    assert _run_core(py, data, cuts, mode) == _run_core(cy, data, cuts, mode)


@pytest.mark.parametrize("reply,expected", [
    (b"FOUND 5 3\r\na\r\n\r\n", ("FOUND", 5, b"a\r\n")),
    (b"FOUND 5 0\r\n\r\n", ("FOUND", 5, b"")),
    (b"INSERTED 18446744073709551615\r\n", ("INSERTED", 2 ** 64 - 1, None)),
    (b"BURIED\r\n", ("BURIED", None, None)),
    (b"BURIED 4\r\n", ("BURIED", 4, None)),
    (b"USING foo\r\n", ("USING", "foo", None)),
    (b"OK 3\r\nabc\r\n", ("OK", None, b"abc")),
])
def test_core_known_replies(core, reply, expected):
    for cuts in ([], list(range(len(reply)))):
        assert _run_core(core, reply, cuts, "request") == ("ok", expected)


# The Cython parser remembers the key layout of replies it has seen and parses a
# reply with the same keys into a copy; every near miss must still come out right.
LAYOUT_KEYS = st.lists(st.text("abcdefgh-:_ ", min_size=0, max_size=6), min_size=4, max_size=8)
LAYOUT_VALUES = st.sampled_from(["1", "-7", "0.5", "true", "false", "x y", '"q"', "", "#c", "yes",
                                 "99999999999999999999", "a: b"])


def _body(pairs):
    return ("---\n" + "".join("%s: %s\n" % kv for kv in pairs)).encode("ascii")


@FAST
@given(keys=LAYOUT_KEYS, values=st.lists(LAYOUT_VALUES, min_size=8, max_size=8),
       data=st.data(), str_keys=KEYSETS)
def test_parse_yaml_layout_reuse_agrees(both_cores, keys, values, data, str_keys):
    py, cy = both_cores
    pairs = list(zip(keys, values))
    variants = [pairs, [(k, values[-1 - i]) for i, (k, _) in enumerate(pairs)],
                pairs[:-1], pairs + [("extra", "3")], pairs[1:] + pairs[:1],
                [(k + "x" if i == 2 else k, v) for i, (k, v) in enumerate(pairs)],
                pairs[:2] + [(pairs[2][0] + ":", "")] + pairs[3:]]
    variants += [data.draw(st.permutations(pairs))]
    for variant in variants * 2:
        body = _body(variant)
        a = _outcome(py.parse_yaml, body, str_keys)
        b = _outcome(cy.parse_yaml, body, str_keys)
        assert _typed(a[1]) == _typed(b[1]) if a[0] == b[0] == "ok" else a == b, body


def test_parse_yaml_layout_reuse_on_real_replies(both_cores, conn):
    py, cy = both_cores
    jid = conn.put("x")
    for command, keys in ((b"stats\r\n", frozenset(("id",))),
                          (b"stats-job %d\r\n" % jid, frozenset()),
                          (b"stats-tube default\r\n", frozenset())) * 3:
        status, _, body = conn._core.request(command)
        assert status == "OK"
        assert _typed(py.parse_yaml(body, keys)) == _typed(cy.parse_yaml(body, keys))


def test_parse_yaml_value_reuse_follows_str_keys(core):
    # the Cython parser hands out a line's value object again when the line's
    # raw value is unchanged; the typing (str_keys) and new values still apply
    long = "9" * 30                                   # beyond what it remembers
    body = _body([("k-one", "7"), ("k-two", "0.25"), ("k-three", long), ("k-four", "x"),
                  ("k-five", "true")])
    plain = {"k-one": 7, "k-two": 0.25, "k-three": int(long), "k-four": "x", "k-five": True}
    for str_keys, expected in ((frozenset(), plain),
                               (frozenset(("k-one", "k-five")),
                                dict(plain, **{"k-one": "7", "k-five": "true"})),
                               (frozenset(), plain)) * 2:
        assert _typed(core.parse_yaml(body, str_keys)) == _typed(expected)
    changed = body.replace(b"k-one: 7", b"k-one: 8").replace(b"0.25", b"0.5")
    assert core.parse_yaml(changed) == dict(plain, **{"k-one": 8, "k-two": 0.5})
    assert core.parse_yaml(body) == plain
    # a value too long to remember, between two replies with the short one
    longer = body.replace(b"k-one: 7", b"k-one: " + b"5" * 40)
    for reply, one in ((longer, int("5" * 40)), (body, 7), (longer, int("5" * 40))):
        assert core.parse_yaml(reply) == dict(plain, **{"k-one": one})
    # a changed line that is not ASCII: the exact path decodes it
    odd = body.replace(b"k-four: x", "k-four: é".encode())
    assert core.parse_yaml(odd) == dict(plain, **{"k-four": "é"})
    assert core.parse_yaml(body) == plain
    # what a caller does to its dict stays out of the next reply's
    first = core.parse_yaml(body)
    first["k-one"] = "mine"
    del first["k-two"]
    assert core.parse_yaml(body) == plain


def test_parse_yaml_reentered_mid_reply(core, monkeypatch):
    # the GIL can change hands in the middle of a parse (a GC finalizer runs,
    # or the Python fallback for an odd value): a parse of the same key layout
    # meanwhile, here from that fallback, must not mix the two replies
    from beanstalkc_fast import _shared
    body_a = _body([("r-one", "1"), ("r-two", "#odd"), ("r-three", "3"), ("r-four", "4")])
    body_b = _body([("r-one", "10"), ("r-two", "2"), ("r-three", "30"), ("r-four", "40")])
    core.parse_yaml(body_a)
    core.parse_yaml(body_b)                    # the layout known, b's values remembered
    real, inner = _shared._scalar, []

    def scalar(key, raw, str_keys):
        if not inner:
            inner.append(core.parse_yaml(body_b))
        return real(key, raw, str_keys)

    monkeypatch.setattr(_shared, "_scalar", scalar)
    assert core.parse_yaml(body_a) == {"r-one": 1, "r-two": "#odd", "r-three": 3, "r-four": 4}
    assert inner in ([], [{"r-one": 10, "r-two": 2, "r-three": 30, "r-four": 40}])
    assert core.parse_yaml(body_b) == {"r-one": 10, "r-two": 2, "r-three": 30, "r-four": 40}
    assert core.parse_yaml(body_a) == {"r-one": 1, "r-two": "#odd", "r-three": 3, "r-four": 4}


def test_parse_yaml_lines_shifted_by_a_longer_value(core):
    # lines before and after a changed one are taken as they were; after it,
    # at their new place when its length changed
    keys = ["s-a", "s-b", "s-c", "s-d", "s-e", "s-f"]
    py = __import__("beanstalkc_fast._pyprotocol", fromlist=["parse_yaml"])
    for values in (["1", "2", "3", "4", "5", "6"], ["1", "2", "333", "4", "5", "6"],
                   ["1", "2", "3", "4", "5", "6"], ["9", "2", "3", "4", "5", "6"],
                   ["9", "2", "3", "4", "5", "66"], ["9", "2", "3", "4", "5", "6"],
                   ["1", "22", "3", "4", "55", "6"], ["1", "22", "3", "4", "55", "6"],
                   ["true", "x", "0.5", "4", "y", "6"], ["1", "2", "3", "4", "5", "6"]):
        body = _body(list(zip(keys, values)))
        assert _typed(core.parse_yaml(body)) == _typed(py.parse_yaml(body)), values


def test_parse_yaml_unchanged_lines_keep_their_values_around_changes(both_cores):
    # The layout path takes a line that is byte for byte as it was (at its old
    # place, or moved by a longer or shorter value before it) without parsing
    # it: its value is the very object of the last result. A line whose value
    # grew or shrank is parsed again. (Were a changed line taken as unchanged,
    # the next line would be misread and the whole reply parsed afresh: new
    # objects everywhere, which this test sees.) The twin keeps no layouts (it
    # compares lines: see test_twin_reuse_bounded_and_right).
    core = both_cores[1]
    keys = ["u-%d" % k for k in range(8)]
    base = [str(10**6 + k) for k in range(8)]        # large ints: each parse makes new ones
    variants = [base[:3] + ["1000003999"] + base[4:],     # a longer value in the middle
                base[:3] + ["7"] + base[4:],              # a shorter one
                base[:7] + ["123456789012"],              # the last line longer
                ["5"] + base[1:6] + ["42", base[7]]]      # two changes, lines between moved
    core.parse_yaml(_body(list(zip(keys, base))))         # the layout is learnt
    for variant in variants:
        first = core.parse_yaml(_body(list(zip(keys, base))))
        second = core.parse_yaml(_body(list(zip(keys, variant))))
        for key, old, new in zip(keys, base, variant):
            assert second[key] == int(new)
            if old == new:
                assert second[key] is first[key], (variant, key)


def test_twin_reuse_bounded_and_right():
    # the twin keeps the last reply of each shape (first key) and the
    # (key, value) of its lines: replies with changing lines, lines added and
    # taken away, other str_keys and ever new shapes come out right, and it
    # keeps at most _SHAPES_KEPT shapes
    from beanstalkc_fast import _pyprotocol as py
    base = [("b-first", "1"), ("b-x", "1"), ("b-y", "0.5"), ("b-z", "x")]
    plain = {"b-first": 1, "b-x": 1, "b-y": 0.5, "b-z": "x"}
    for i in range(5):
        assert _typed(py.parse_yaml(_body(base))) == _typed(plain)
        changed = base[:2] + [("b-y", str(i))] + base[3:]
        assert _typed(py.parse_yaml(_body(changed))) == _typed(dict(plain, **{"b-y": i}))
        assert py.parse_yaml(_body(base + [("b-extra", "2")])) == dict(plain, **{"b-extra": 2})
        assert py.parse_yaml(_body(base[:3])) == {"b-first": 1, "b-x": 1, "b-y": 0.5}
        assert py.parse_yaml(_body(base), frozenset(["b-x"]))["b-x"] == "1"
        assert py.parse_yaml(_body(base))["b-x"] == 1
    for n in range(2 * py._SHAPES_KEPT):
        assert py.parse_yaml(_body([("s-%d" % n, "1")] + base)) == dict(plain, **{"s-%d" % n: 1})
        assert len(py._LAST) <= py._SHAPES_KEPT
