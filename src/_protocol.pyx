# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython core: the twin of ``beanstalkc_fast/_pyprotocol.py``, same names and
behaviour, with the read buffer, reply parsing and pipelining in C."""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memchr, memcmp, memmove

import socket

from beanstalkc_fast.errors import (ConcurrentUseError, ConnectionBroken, SocketError,
                                    UnexpectedResponse)
from beanstalkc_fast._pyprotocol import (MAX_BODY, MAX_LINE, MAX_UINT32, NAME_CHARS,
                                         READ_CHUNK, WRITE_CHUNK, _set_timeout,
                                         check_name, encode_body)
from beanstalkc_fast import _pyprotocol

cdef Py_ssize_t C_MAX_LINE = MAX_LINE
cdef Py_ssize_t C_READ_CHUNK = READ_CHUNK

# status word -> (interned str, shape); shapes as in _pyprotocol._SHAPES
cdef dict _SHAPES = {s.encode("ascii"): (s, shape) for s, shape in _pyprotocol._SHAPES.items()}


def check_uint(str name, value, maximum=MAX_UINT32):
    """``value`` as a protocol integer in 0..maximum, or TypeError/ValueError."""
    if type(value) is int and 0 <= value <= maximum:
        return value
    return _pyprotocol.check_uint(name, value, maximum)


def encode_put(body, priority, delay, ttr, encoding):
    """The complete ``put`` command, header and body, in one buffer."""
    cdef bytes data
    if type(body) is bytes:
        data = body
    else:
        data = encode_body(body, encoding)
    return b"put %d %d %d %d\r\n%s\r\n" % (
        check_uint("priority", priority), check_uint("delay", delay),
        check_uint("ttr", ttr), PyBytes_GET_SIZE(data), data)


cdef inline bint _is_int(const char *p, Py_ssize_t n):
    cdef Py_ssize_t i = 0
    if n > 0 and p[0] == b'-':
        i = 1
    if i >= n:
        return False
    while i < n:
        if p[i] < b'0' or p[i] > b'9':
            return False
        i += 1
    return n < 19


cdef inline bint _is_float(const char *p, Py_ssize_t n):
    cdef Py_ssize_t i = 0, dot = -1
    if n > 0 and p[0] == b'-':
        i = 1
    cdef Py_ssize_t start = i
    while i < n:
        if p[i] == b'.':
            if dot >= 0:
                return False
            dot = i
        elif p[i] < b'0' or p[i] > b'9':
            return False
        i += 1
    return dot > start and dot < n - 1


cdef inline long long _to_ll(const char *p, Py_ssize_t n):
    cdef long long v = 0
    cdef Py_ssize_t i = 0
    cdef bint neg = n > 0 and p[0] == b'-'
    if neg:
        i = 1
    while i < n:
        v = v * 10 + (p[i] - 48)
        i += 1
    return -v if neg else v


def parse_yaml(bytes body, frozenset str_keys=frozenset()):
    """The typed value of a stats or list reply: a dict or a list of str
    (see ``_pyprotocol.parse_yaml`` for the typing rules)."""
    cdef const char *p = PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t pos = 0, eol, colon, vstart, vlen
    cdef const char *nl
    cdef const char *line
    cdef Py_ssize_t llen
    cdef dict result
    cdef list items
    cdef str key, raw
    cdef bint is_list
    for i in range(n):
        if <unsigned char>p[i] >= 128:               # not ASCII: take the exact, slower path
            return _pyprotocol.parse_yaml(body, str_keys)
    if n >= 4 and memcmp(p, b"---\n", 4) == 0:
        pos = 4
    is_list = n - pos >= 2 and p[pos] == b'-' and p[pos + 1] == b' '
    result = {}
    items = []
    while pos < n:
        nl = <const char *>memchr(p + pos, b'\n', n - pos)
        eol = (nl - p) if nl != NULL else n
        line = p + pos
        llen = eol - pos
        pos = eol + 1
        if is_list:
            if llen >= 2 and line[0] == b'-' and line[1] == b' ':
                items.append(line[2:llen].decode("ascii"))
            continue
        colon = 0
        while colon + 1 < llen and not (line[colon] == b':' and line[colon + 1] == b' '):
            colon += 1
        if colon + 1 >= llen:
            if llen >= 1 and line[llen - 1] == b':':
                result[line[:llen - 1].decode("ascii")] = None
            continue
        key = line[:colon].decode("ascii")
        vstart = colon + 2
        vlen = llen - vstart
        if vlen >= 2 and line[vstart] == b'"' and line[llen - 1] == b'"':
            result[key] = line[vstart + 1:llen - 1].decode("ascii")
        elif key in str_keys or key in _pyprotocol._STR_KEYS:
            result[key] = line[vstart:llen].decode("ascii")
        elif _is_int(line + vstart, vlen):
            result[key] = _to_ll(line + vstart, vlen)
        elif vlen == 4 and memcmp(line + vstart, b"true", 4) == 0:
            result[key] = True
        elif vlen == 5 and memcmp(line + vstart, b"false", 5) == 0:
            result[key] = False
        elif _is_float(line + vstart, vlen):
            result[key] = float(line[vstart:llen])
        else:
            raw = line[vstart:llen].decode("ascii")
            result[key] = _pyprotocol._scalar(key, raw, str_keys)
    return items if is_list else result


cdef class Core:
    """One connection's socket, read buffer and reply parser."""

    cdef public object sock
    cdef public object timeout
    cdef public object max_body
    cdef public object broken
    cdef bint _busy
    cdef object _current
    cdef bytearray _buf
    cdef object _view
    cdef Py_ssize_t _pos, _end
    cdef object _recv_into, _sendall

    def __init__(self, sock, timeout=None, max_body=MAX_BODY):
        sock.settimeout(None)
        self.sock = sock
        self.timeout = timeout
        self.max_body = max_body
        self.broken = None
        self._busy = False
        self._current = -1.0
        self._buf = bytearray(READ_CHUNK)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._end = 0
        self._recv_into = sock.recv_into
        self._sendall = sock.sendall
        self._apply_timeout(timeout)

    cdef _apply_timeout(self, seconds):
        if seconds != self._current:
            _set_timeout(self.sock, seconds)
            self._current = seconds

    cdef _deadline(self, extra):
        if extra is None or self.timeout is None:
            return None
        return self.timeout + extra

    cdef _enter(self):
        if self.broken is not None:
            raise ConnectionBroken("connection is broken (%s); call reconnect()" % self.broken)
        if self._busy:
            raise ConcurrentUseError(
                "connection used by two threads at once; use one Connection per thread")
        self._busy = True

    cdef _fail(self, exc):
        if isinstance(exc, SocketError):
            self.broken = str(exc)
            return exc
        if isinstance(exc, UnexpectedResponse):
            self.broken = "unexpected response: %s" % (exc,)
            return exc
        if isinstance(exc, OSError):
            self.broken = "socket error: %s" % (exc,)
            err = SocketError(self.broken)
            err.__cause__ = exc
            return err
        self.broken = "interrupted: %r" % (exc,)
        return exc

    def close(self):
        """Close the socket; the core stays broken."""
        if self.broken is None:
            self.broken = "closed"
        try:
            self.sock.close()
        except OSError:
            pass

    def request(self, data, extra=0.0):
        """Send one command, read its reply as ``(status, value, body)``."""
        self._enter()
        try:
            if extra != 0.0 or self._current != self.timeout:
                self._apply_timeout(self._deadline(extra))
            self._sendall(data)
            return self._read_reply()
        except BaseException as exc:
            raise self._fail(exc) from exc.__cause__
        finally:
            self._busy = False

    def pipeline(self, commands, list results, Py_ssize_t window=512,
                 Py_ssize_t max_bytes=WRITE_CHUNK):
        """Send ``commands``, appending each reply to ``results`` in order
        (see the twin for the contract)."""
        cdef Py_ssize_t sent = 0, done = 0, inflight = 0, size
        cdef Py_ssize_t *sizes
        cdef bint exhausted = False
        cdef object pending = None
        cdef list out = []
        if window < 1:
            raise ValueError("window must be at least 1")
        deferred = None
        self._enter()
        sizes = <Py_ssize_t *>PyMem_Malloc(window * sizeof(Py_ssize_t))
        try:
            if sizes == NULL:
                raise MemoryError()
            self._apply_timeout(self.timeout)
            it = iter(commands)
            while True:
                if not exhausted and sent - done <= window // 2 and inflight <= max_bytes // 2:
                    while sent - done < window:
                        if pending is None:
                            try:
                                pending = next(it, None)
                            except Exception as exc:
                                deferred = exc
                                while out:
                                    out.pop()
                                    sent -= 1
                                    inflight -= sizes[sent % window]
                            if pending is None:
                                exhausted = True
                                break
                        size = len(pending)
                        if sent > done and inflight + size > max_bytes:
                            break
                        out.append(pending)
                        sizes[sent % window] = size
                        inflight += size
                        sent += 1
                        pending = None
                    if out:
                        self._sendall(b"".join(out))
                        del out[:]
                if done == sent:
                    if exhausted:
                        break
                    continue
                results.append(self._read_reply())
                inflight -= sizes[done % window]
                done += 1
                while done < sent and self._pos < self._end:
                    results.append(self._read_reply())
                    inflight -= sizes[done % window]
                    done += 1
        except BaseException as exc:
            raise self._fail(exc) from exc.__cause__
        finally:
            self._busy = False
            PyMem_Free(sizes)
        if deferred is not None:
            raise deferred

    cdef int _fill(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t have, size, n
        cdef char *b
        while self._end - self._pos < need:
            have = self._end - self._pos
            size = PyByteArray_GET_SIZE(self._buf)
            if self._pos and size - self._pos < need:
                b = PyByteArray_AS_STRING(self._buf)
                memmove(b, b + self._pos, have)
                self._pos = 0
                self._end = have
            if self._end == size:
                self._view.release()
                PyByteArray_Resize(self._buf, size + min(size, need - have))
                self._view = memoryview(self._buf)
            n = self._recv_into(self._view[self._end:])
            if n == 0:
                raise SocketError("connection closed by the server")
            self._end += n
        return 0

    cdef Py_ssize_t _read_line(self) except -1:
        """Offset of the next line's CRLF; the line starts at ``_pos``."""
        cdef const char *b
        cdef const char *hit
        cdef Py_ssize_t scanned = 0, have
        while True:
            b = PyByteArray_AS_STRING(self._buf)
            have = self._end - self._pos
            if have > scanned:
                hit = <const char *>memchr(b + self._pos + scanned, b'\n', have - scanned)
                if hit != NULL:
                    if hit == b + self._pos or (hit - 1)[0] != b'\r':
                        raise UnexpectedResponse("reply line not ended by CRLF")
                    return (hit - b) - 1
                scanned = have
            if have > C_MAX_LINE:
                raise UnexpectedResponse("reply line longer than %d bytes" % MAX_LINE)
            self._fill(have + 1)

    cdef bytes _read_body(self, object length):
        cdef Py_ssize_t n, end
        cdef const char *b
        if length > self.max_body:
            raise UnexpectedResponse("reply body of %d bytes exceeds %d" % (length, self.max_body))
        n = length
        self._fill(n + 2)
        b = PyByteArray_AS_STRING(self._buf)
        end = self._pos + n
        if b[end] != b'\r' or b[end + 1] != b'\n':
            raise UnexpectedResponse("reply body not followed by CRLF")
        body = PyBytes_FromStringAndSize(b + self._pos, n)
        self._pos = end + 2
        if self._pos == self._end:
            self._pos = self._end = 0
            if PyByteArray_GET_SIZE(self._buf) > 4 * C_READ_CHUNK:
                self._view.release()
                PyByteArray_Resize(self._buf, C_READ_CHUNK)
                self._view = memoryview(self._buf)
        return body

    cdef tuple _read_reply(self):
        cdef Py_ssize_t cr = self._read_line()
        cdef const char *b = PyByteArray_AS_STRING(self._buf)
        cdef const char *line = b + self._pos
        cdef Py_ssize_t llen = cr - self._pos
        cdef Py_ssize_t sp = 0, a0, a1, nargs = 0
        cdef bytes raw = PyBytes_FromStringAndSize(line, llen)
        self._pos = cr + 2
        if self._pos == self._end:
            self._pos = self._end = 0
        while sp < llen and line[sp] != b' ':
            sp += 1
        entry = _SHAPES.get(raw[:sp])
        if entry is None:
            raise UnexpectedResponse("unknown reply %r" % (raw[:80],))
        name, shape = <tuple>entry
        args = raw[sp + 1:].split(b" ") if sp < llen else []
        if shape == 0:
            if args:
                raise UnexpectedResponse("unexpected arguments in %r" % (raw,))
            return (name, None, None)
        if shape == 5:
            if len(args) != 1:
                raise UnexpectedResponse("malformed reply %r" % (raw,))
            return (name, check_name(args[0]).decode("ascii"), None)
        nums = [_parse_int(a, raw) for a in args]
        if shape == 1 or shape == 2:
            if len(nums) == 1:
                return (name, nums[0], None)
            if shape == 2 and not nums:
                return (name, None, None)
        elif shape == 3:
            if len(nums) == 2:
                return (name, nums[0], self._read_body(nums[1]))
        elif len(nums) == 1:
            return (name, None, self._read_body(nums[0]))
        raise UnexpectedResponse("malformed reply %r" % (raw,))


cdef object _parse_int(bytes arg, bytes line):
    cdef const char *p = PyBytes_AS_STRING(arg)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(arg), i
    cdef unsigned long long v = 0
    if n == 0 or n > 20:
        raise UnexpectedResponse("malformed integer in reply %r" % (line,))
    for i in range(n):
        if p[i] < b'0' or p[i] > b'9':
            raise UnexpectedResponse("malformed integer in reply %r" % (line,))
    if n < 19:
        for i in range(n):
            v = v * 10 + <unsigned long long>(p[i] - 48)
        return v
    value = int(arg)
    if value >= (1 << 64):
        raise UnexpectedResponse("integer out of range in reply %r" % (line,))
    return value
