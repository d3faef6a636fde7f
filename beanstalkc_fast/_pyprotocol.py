"""Pure-Python twin of ``src/_protocol.pyx``: same names, same behaviour.

The core owns the wire format and the IO of one connection: it encodes
commands, sends each in one call, reads exactly one reply per command from its
own buffer (bodies by their announced length) and hands back parsed parts.
After any failure mid-reply it marks itself broken and refuses further use.
"""

import os
import socket
import time
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple, Union

from ._window import FutureCall as Call, Window, run_window  # noqa: F401
from .errors import SocketError, UnexpectedResponse

# what both cores share (limits, name and number rules, socket helpers, value
# typing) lives in _shared; re-exported here as this core's module interface
from ._shared import (_DONTWAIT, _SHAPES, _STR_KEYS, _UNSET, MAX_BODY, MAX_LINE,  # noqa: F401
                      MAX_TIMEOUT, MAX_UINT32, MAX_UINT64, MIN_TIMEOUT, NAME_CHARS, READ_CHUNK,
                      SCATTER_MIN, SEND_FLAGS, WAIT_SLICE, WRITE_CHUNK, Reply, _clamp,
                      _next_slice, _prepare, _scalar, _send_all, _set_timeout, _truncate,
                      body_buffer, check_name, check_uint, encode_body, failure,
                      note_lost_reply, refusal, say_quit, send_flags, send_parts, wake)

__all__ = ["MAX_BODY", "MAX_LINE", "MAX_UINT32", "MAX_UINT64", "READ_CHUNK", "WRITE_CHUNK",
           "SCATTER_MIN", "NAME_CHARS", "Core", "Reader", "check_uint", "check_name",
           "encode_body", "encode_id", "encode_ids", "encode_put", "encode_put_parts", "parse_yaml",
           "parse_head", "send_flags", "JobBase", "Window", "Call"]


def encode_id(verb: bytes, jid: Any) -> bytes:
    """``verb`` (with its trailing space) and a job id, as one command line."""
    return b"%s%d\r\n" % (verb, check_uint("job id", jid, MAX_UINT64))


def encode_ids(verb: bytes, ids: Iterable[Any]) -> List[bytes]:
    """``encode_id`` of every job id in ``ids`` (all checked before the
    list is returned), in order."""
    return [b"%s%d\r\n" % (verb, check_uint("job id", jid, MAX_UINT64)) for jid in ids]


def encode_put(body: Any, priority: Any, delay: Any, ttr: Any,
               encoding: Optional[str]) -> bytes:
    """The complete ``put`` command, header and body, in one buffer."""
    data = encode_body(body, encoding)
    return b"put %d %d %d %d\r\n%s\r\n" % (
        check_uint("priority", priority), check_uint("delay", delay),
        check_uint("ttr", ttr), len(data), data)


# a command as sent: one buffer, or buffers sent in order without joining
Data = Union[bytes, Tuple[Any, ...]]


def encode_put_parts(body: Any, priority: Any, delay: Any, ttr: Any,
                     encoding: Optional[str]) -> Data:
    """The ``put`` command as ``Core`` sends it: ``encode_put``'s one buffer for
    a body under SCATTER_MIN bytes, else ``(header, body, b"\\r\\n")`` with
    the body's own buffer (bytes, bytearray or a byte view of a memoryview:
    never copied), sent without joining."""
    data = body_buffer(body, encoding)
    p, d, t = check_uint("priority", priority), check_uint("delay", delay), check_uint("ttr", ttr)
    n = len(data)
    if n < SCATTER_MIN:
        return b"put %d %d %d %d\r\n%s\r\n" % (p, d, t, n, data)
    return b"put %d %d %d %d\r\n" % (p, d, t, n), data, b"\r\n"


class Core:
    """One connection's socket, read buffer and reply parser.

    IO goes through the socket object's methods with Python-level timeouts
    (``sock.settimeout``): they hold as deadlines across signals (PEP 475)
    and let gevent/eventlet sockets cooperate. The socket's timeout is at
    most WAIT_SLICE: a longer wait (or one without a deadline) is made of
    slices, between which a pending signal's handler runs (a Ctrl-C that
    came just before the wait began, or on another thread).
    """

    def __init__(self, sock: socket.socket, timeout: Optional[float] = None,
                 max_body: int = MAX_BODY) -> None:
        _prepare(sock)
        self.sock = sock
        self.timeout = timeout
        self._reader = Reader(max_body)    # the read buffer and the reply parser
        self.broken: Optional[str] = None
        self._busy = False
        self._closing = False              # close() was called
        self._released = False             # the socket is closed
        self._pid = os.getpid()
        self._current: Any = _UNSET        # timeout now in force on the socket (a slice)
        self._limit: Any = _UNSET          # the bound of each wait (None: none)
        self._cut = False                  # _current was cut to what is left of a wait
        self._on_timeout = self._slice_over   # bound once: the on_timeout of every wait
        self._apply_timeout(timeout)

    @property
    def max_body(self) -> int:
        """The largest reply body accepted (the reader's limit)."""
        return self._reader.max_body

    @max_body.setter
    def max_body(self, value: int) -> None:
        self._reader.max_body = value

    # -- timeouts -----------------------------------------------------------
    def _apply_timeout(self, seconds: Optional[float]) -> None:
        """Bound each wait by ``seconds`` (None: no bound), in slices."""
        if seconds != self._limit or self._cut:
            self._limit = seconds
            self._cut = False
            bound = _clamp(seconds)
            sliced = WAIT_SLICE if bound is None else min(bound, WAIT_SLICE)
            if sliced != self._current:
                self.sock.settimeout(sliced)
                self._current = sliced

    def _slice_over(self, began: Optional[float]) -> float:
        """A slice of a wait ran out: re-raise its timeout when the wait's
        bound is reached, else set up the next slice (the handler of a
        signal that came meanwhile runs before it); when the wait began."""
        now = time.monotonic()
        if began is None:
            began = now - self._current
        if self._limit is not None:
            left = self._limit - (now - began)
            if left <= 0:
                raise
            if left < self._current:
                self._current = _clamp(left)
                self._cut = True
                self.sock.settimeout(self._current)
        return began

    def _deadline(self, extra: Optional[float]) -> Optional[float]:
        """Read timeout for a command that may legitimately wait ``extra`` s."""
        if extra is None or self.timeout is None:
            return None
        return self.timeout + extra

    # -- IO -------------------------------------------------------------------
    def _send(self, data: Data) -> None:
        """Send all of ``data``, one buffer or a tuple of buffers sent in
        order without joining (EPIPE as an error, never SIGPIPE)."""
        if isinstance(data, tuple):
            send_parts(self.sock, data, self._on_timeout)
        else:
            _send_all(self.sock, data, self._on_timeout)

    def _recv_into(self, view: memoryview) -> int:
        """Read what is available into ``view`` (0 at EOF)."""
        return self.sock.recv_into(view)

    # -- entry and exit -----------------------------------------------------
    def _enter(self) -> None:
        if self.broken is not None or self._busy:
            raise refusal(self.broken)
        self._busy = True

    def _leave(self) -> None:
        self._busy = False
        if self._closing:                  # close() came from another thread meanwhile
            self._release()

    def _fail(self, exc: BaseException) -> BaseException:
        """Mark broken and close the socket (so the server frees this
        connection's reservations now); the exception to raise in place of ``exc``."""
        self._release()
        reason, err = failure(exc, self._closing)
        if reason is not None:
            self.broken = reason
        return err

    def _release(self) -> None:
        """Close the socket once; its descriptor is never used again."""
        if not self._released:
            self._released = True
            try:
                self.sock.close()
            except OSError:
                pass

    def close(self, quit: bool = False, reason: str = "closed") -> None:
        """Close the socket; the core stays broken (``broken`` = ``reason``
        unless it already was). ``quit``: on a healthy idle connection first
        send ``quit`` (never blocks, never raises, never SIGPIPE). A call
        blocked in another thread fails at once with SocketError; the
        descriptor is released when that call has left."""
        if self.broken is None:
            self.broken = reason
            if quit and not self._busy:
                say_quit(self.sock)
        self._closing = True
        if self._busy and self._pid == os.getpid():
            wake(self.sock)                    # the blocked call releases the socket
        else:
            self._release()

    # -- one command ----------------------------------------------------------
    def request(self, data: Data, extra: Optional[float] = 0.0) -> Reply:
        """Send one command, read its reply as ``(status, value, body)``.

        ``extra`` is how long the server may legitimately wait before it
        answers (reserve's timeout); None: indefinitely.
        """
        self._enter()
        try:
            self._apply_timeout(self._deadline(extra))
            self._send(data)
            return self._read_reply()
        except BaseException as exc:
            raise self._fail(exc) from exc.__cause__
        finally:
            self._leave()

    def execute(self, conn: Any, cmd: Any, data: Data, arg: Any = None) -> Any:
        """Send one command for ``conn`` and return its result as ``cmd`` (a
        ``commands.Command``) defines it; a SocketError says what the lost
        reply leaves unknown."""
        try:
            if cmd.wait:
                status, value, body = self.request(data, cmd.extra(arg))
            else:
                status, value, body = self.request(data)
        except SocketError as exc:
            note_lost_reply(exc, cmd.lost)
            raise
        return cmd.finish(status, value, body, conn, arg)

    # -- many commands ----------------------------------------------------------
    def pipeline(self, commands: Iterable[bytes], results: List[Reply],
                 window: int = 512, max_bytes: int = WRITE_CHUNK) -> None:
        """Send ``commands``, appending each reply to ``results`` in order.

        At most ``window`` commands and ``max_bytes`` bytes (or one larger
        command) are ever written but unanswered; the window is topped up once
        half of it is free. Replies are read while writing, so neither side's
        buffers can fill up. ``results`` holds every reply read, also when an
        exception escapes. An exception raised by the iterator stops the batch:
        the commands not yet written are dropped, every written one is answered,
        then the exception is raised and the connection stays usable.
        """
        if window < 1:
            raise ValueError("window must be at least 1")
        self._enter()
        try:
            self._apply_timeout(self.timeout)
            deferred = run_window(self._send, self._next_reply, self._read_buffered,
                                  commands, results, window, max_bytes)
        except BaseException as exc:
            raise self._fail(exc) from exc.__cause__
        finally:
            self._leave()
        if deferred is not None:
            raise deferred

    def _next_reply(self, outstanding: int) -> Reply:
        """``_read_reply`` for ``run_window`` (``outstanding``: replies still due)."""
        return self._read_reply()

    def _read_buffered(self, results: List[Reply], most: int) -> int:
        """Append replies to ``results`` while bytes of them are buffered, at
        most ``most``; how many (``run_window``'s ``read_buffered``)."""
        pending, read, append = self._reader.pending, self._read_reply, results.append
        for count in range(most):
            if not pending():
                return count
            append(read())
        return most

    # -- reading ------------------------------------------------------------------
    def _read_reply(self) -> Reply:
        """One reply, receiving straight into the reader's buffer until it is complete."""
        reader = self._reader
        began = None                           # a wait's start, after its first slice
        while True:
            if reader._end != reader._pos:     # with nothing buffered no reply is complete
                reply = reader.next_reply()
                if reply is not None:
                    return reply
            view = reader.get_buffer()
            try:
                n = self._recv_into(view)
            except OSError as exc:
                began = _next_slice(exc, self._on_timeout, began)
                continue
            finally:
                view.release()
            began = None
            if n == 0:
                raise SocketError("connection closed by the server")
            reader.buffer_updated(n)


def parse_yaml(body: bytes, str_keys: FrozenSet[str] = frozenset()) -> Any:
    """The typed value of a stats or list reply: a dict or a list of str.

    Integers become int, ``rusage-*`` float, ``true``/``false`` bool, names,
    versions and the keys in ``str_keys`` stay str (YAML would turn a tube
    named ``yes`` into True, an ``os`` starting with ``#`` into None).
    """
    text = body.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[0] == "---":
        del lines[0]
    if lines and lines[0].startswith("- "):
        return [line[2:] for line in lines if line.startswith("- ")]
    if not lines:
        return {}
    # the last reply of this shape (its first key) and its lines' (key, value)
    shape = lines[0].partition(": ")[0]
    last = _LAST.get(shape)
    if last is not None and last[0] == str_keys and len(last[1]) == len(lines):
        keys = last[0]
        items = [old if line == was else _line_item(line, str_keys)
                 for line, was, old in zip(lines, last[1], last[2])]
    else:
        keys = frozenset(tuple(str_keys))      # a copy: nothing of the caller's is kept
        items = [_line_item(line, str_keys) for line in lines]
        if len(_LAST) >= _SHAPES_KEPT:
            _LAST.clear()
    _LAST[shape] = (keys, lines, items)
    result = dict(items)
    result.pop(_NO_KEY, None)
    return result


# A reply repeats most lines of the last one of its shape (only a few counters
# move): a line that is as it was keeps its (key, value), the others are
# parsed. Values are immutable (int, float, bool, str, None); a few shapes
# exist (stats, stats-tube, stats-job), at most _SHAPES_KEPT are kept.
_SHAPES_KEPT = 32
_LAST: Dict[str, Tuple[FrozenSet[str], List[str], List[Tuple[Any, Any]]]] = {}
_NO_KEY = object()          # the key of a line that is no ``key: value`` (dropped)


def _line_item(line: str, str_keys: FrozenSet[str]) -> Tuple[Any, Any]:
    key, sep, raw = line.partition(": ")
    if sep:
        return key, _scalar(key, raw, str_keys)
    if line.endswith(":") and line:
        return line[:-1], None
    return _NO_KEY, None


def _parse_int(arg: bytes, line: bytes) -> int:
    if not (0 < len(arg) <= 20 and arg.isdigit()):
        raise UnexpectedResponse("malformed integer in reply %r" % (line,))
    value = int(arg)
    if value >= 1 << 64:
        raise UnexpectedResponse("integer out of range in reply %r" % (line,))
    return value


# -- sans-IO reply reader --------------------------------------------------------

# a reply's first word -> (its status, its shape in _SHAPES)
_HEADS = {name.encode("ascii"): (name, shape) for name, shape in _SHAPES.items()}


def parse_head(line: bytes) -> Tuple[str, Any, int]:
    """A reply line (without CRLF) as ``(status, value, body length)``; the
    length is -1 when no body follows. UnexpectedResponse when malformed."""
    status, sep, rest = line.partition(b" ")
    known = _HEADS.get(status)
    if known is None:
        raise UnexpectedResponse("unknown reply %r" % (line[:80],))
    name, shape = known
    args = rest.split(b" ") if sep else []
    # the common replies first: a value (INSERTED id), a job (RESERVED id length)
    if shape == 1 and len(args) == 1:
        return name, _parse_int(args[0], line), -1
    if shape == 3 and len(args) == 2:
        return name, _parse_int(args[0], line), _parse_int(args[1], line)
    if shape == 0:
        if args:
            raise UnexpectedResponse("unexpected arguments in %r" % (line,))
        return name, None, -1
    if shape == 5:
        if len(args) != 1:
            raise UnexpectedResponse("malformed reply %r" % (line,))
        return name, check_name(args[0]).decode("ascii"), -1
    nums = [_parse_int(a, line) for a in args]      # each checked before the count is
    if shape == 2:
        if len(nums) == 1:
            return name, nums[0], -1
        if not nums:
            return name, None, -1
    elif shape == 4 and len(nums) == 1:
        return name, None, nums[0]
    raise UnexpectedResponse("malformed reply %r" % (line,))


class Reader:
    """Sans-IO reply reader: owns the read buffer and turns the bytes received
    into complete replies, with no IO of its own.

    A transport writes into ``get_buffer()`` (a writable view of the free
    space, never empty; an ``asyncio.BufferedProtocol`` hands it out as is),
    reports the count with ``buffer_updated(n)``, then calls ``next_reply()``
    until it returns None ("need more bytes"). A reply is
    ``(status, value, body)``, parsed by the rules of ``Core``; a malformed
    one raises UnexpectedResponse, after which the reader is unusable. A line
    longer than MAX_LINE is refused whatever the chunking.
    """

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.max_body = max_body
        self._buf = bytearray(READ_CHUNK)
        self._pos = 0
        self._end = 0
        self._need = 1                 # bytes wanted from _pos to make progress
        self._head: Optional[Tuple[str, Any, int]] = None   # a line whose body is due

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Writable free space after the unread bytes (at least one byte).

        The buffer is only moved or replaced here, never while a view handed
        out earlier may still be in use; it grows by doubling at most, so a
        lying body length costs no more than twice what the peer really sent.
        """
        have = self._end - self._pos
        need = max(self._need, have + 1)
        size = len(self._buf)
        if have == 0 and size > 4 * READ_CHUNK and need <= READ_CHUNK:
            self._buf = bytearray(READ_CHUNK)          # give back a body-sized buffer
            self._pos = self._end = 0
            size = READ_CHUNK
        if self._pos and size - self._pos < need:
            self._buf[:have] = self._buf[self._pos:self._end]
            self._pos, self._end = 0, have
        if self._end == size:
            grown = bytearray(size + min(size, need - have))
            grown[:have] = self._buf[self._pos:self._end]
            self._buf = grown
            self._pos, self._end = 0, have
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last ``get_buffer()``."""
        if not 0 <= nbytes <= len(self._buf) - self._end:
            raise ValueError("buffer_updated(%d) exceeds the free space" % nbytes)
        self._end += nbytes

    def feed(self, data: bytes) -> None:
        """Copy ``data`` into the buffer (for transports without recv_into)."""
        view = memoryview(data)
        while view:
            room = self.get_buffer()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            room.release()
            self.buffer_updated(n)
            view = view[n:]

    def next_reply(self) -> Optional[Reply]:
        """The next complete reply, or None when more bytes are needed."""
        buf = self._buf
        head = self._head
        if head is None:
            eol = buf.find(b"\n", self._pos, self._end)
            if eol < 0:
                have = self._end - self._pos
                if have > MAX_LINE:
                    raise UnexpectedResponse("reply line longer than %d bytes" % MAX_LINE)
                self._need = have + 1
                return None
            if eol == self._pos or buf[eol - 1] != 13:
                raise UnexpectedResponse("reply line not ended by CRLF")
            if eol - self._pos > MAX_LINE:
                raise UnexpectedResponse("reply line longer than %d bytes" % MAX_LINE)
            line = bytes(buf[self._pos:eol - 1])
            self._pos = eol + 1
            head = parse_head(line)
            if head[2] < 0:
                if self._pos == self._end:
                    self._pos = self._end = 0
                self._need = 1
                return head[0], head[1], None
            if head[2] > self.max_body:
                raise UnexpectedResponse("reply body of %d bytes exceeds %d"
                                         % (head[2], self.max_body))
            self._head = head
        length = head[2]
        if self._end - self._pos < length + 2:
            self._need = length + 2
            return None
        end = self._pos + length
        if buf[end:end + 2] != b"\r\n":
            raise UnexpectedResponse("reply body not followed by CRLF")
        body = bytes(buf[self._pos:end])
        self._pos = end + 2
        self._head = None
        self._need = 1
        if self._pos == self._end:
            self._pos = self._end = 0
        return head[0], head[1], body

    def pending(self) -> int:
        """Bytes received but not yet returned as part of a reply."""
        return self._end - self._pos

    def collect(self, results: List[Any], n: int, ok: str, kind: int,
                conn: Any) -> Tuple[int, Optional[Reply]]:
        """Settle up to ``n`` complete replies into ``results`` as a command
        with success status ``ok`` and result kind ``kind`` (commands.VALUE:
        the value, NOTHING: None, RESERVED/PEEKED: a job built as the core's
        execute builds it, ``conn._job_type(conn, id, body, reserved,
        conn.encoding)``). Stops at the first reply it does not settle (any
        other status or kind), which is returned not appended:
        ``(taken, that reply or None)``. A malformed reply raises as in
        ``next_reply``."""
        taken = 0
        job_type = encoding = None
        if kind == 2 or kind == 3:         # RESERVED, PEEKED
            job_type, encoding = conn._job_type, conn.encoding
        while taken < n:
            reply = self.next_reply()
            if reply is None:
                return taken, None
            status, value, body = reply
            if kind > 3 or status != ok:
                return taken, reply
            if kind == 0:
                results.append(value)
            elif kind == 1:
                results.append(None)
            else:
                assert job_type is not None
                results.append(job_type(conn, value, body, kind == 2, encoding))
            taken += 1
        return taken, None

    def settle(self, pending: Any) -> Tuple[int, int, Optional[Reply]]:
        """Settle the single commands at the head of ``pending`` (a deque of
        the asyncio front end's entries; a caller's command is a tuple
        ``(future, command, arg, size)``) with the complete replies in the
        buffer, while the head's future is not done and its reply is the
        command's success with a value (commands.VALUE) or nothing (NOTHING):
        each entry is popped and its future gets the value or None. Stops at
        the first reply it does not settle, returned: ``(entries popped,
        their sizes summed, that reply or None)``. A malformed reply raises
        as in ``next_reply``."""
        taken = nbytes = 0
        while True:
            reply = self.next_reply()
            if reply is None:
                return taken, nbytes, None
            if not pending:
                return taken, nbytes, reply
            entry = pending[0]
            if entry.__class__ is not tuple:
                return taken, nbytes, reply
            fut, cmd = entry[0], entry[1]
            kind = cmd[1]                  # Command fields by position: ok, kind
            if fut is None or kind > 1 or reply[0] != cmd[0] or fut.done():
                return taken, nbytes, reply
            pending.popleft()
            fut.set_result(reply[1] if kind == 0 else None)
            taken += 1
            nbytes += entry[3]


# -- jobs ------------------------------------------------------------------------------

_UNDECODED: Any = object()


class JobBase:
    """The part of ``job.Job`` a core provides: the attributes, the body
    decoded on first access, ``repr`` and ``delete`` (the other methods are
    ``job.Job``'s). The twin of ``_protocol.JobBase``, which builds jobs and
    runs ``delete`` without a Python frame."""

    __slots__ = ("conn", "jid", "raw_body", "reserved", "_body", "_encoding")

    def __init__(self, conn: Any, jid: int, body: Any, reserved: bool = True,
                 encoding: Optional[str] = None) -> None:
        self.conn = conn
        self.jid = jid
        self.reserved = reserved
        self._encoding = encoding
        if isinstance(body, str):
            self._body: Any = body
            self.raw_body = body.encode(encoding or "utf-8")
        else:
            self._body = _UNDECODED
            self.raw_body = body

    @property
    def body(self) -> Any:
        """The body as str, decoded with the connection's encoding on first
        access (then cached), or as bytes when the encoding is None.
        ``UnicodeDecodeError`` when it does not decode; ``raw_body`` always
        holds the bytes."""
        body = self._body
        if body is _UNDECODED:
            if self._encoding is None:
                return self.raw_body
            body = self._body = self.raw_body.decode(self._encoding)
        return body

    @body.setter
    def body(self, value: Any) -> None:
        self._body = value

    def __repr__(self) -> str:
        return "<%s %r %s>" % (type(self).__name__, self.jid,
                               "reserved" if self.reserved else "unreserved")

    def delete(self) -> None:
        """Send ``delete`` for this job (``NotFound`` when it is gone or
        reserved by another connection); it is no longer reserved."""
        self.conn.delete(self.jid)
        self.reserved = False
