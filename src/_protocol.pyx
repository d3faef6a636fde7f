# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython core: the twin of ``beanstalkc_fast/_pyprotocol.py``, same names and
behaviour, with the read buffer, reply parsing and pipelining in C."""

from cpython.bytearray cimport (PyByteArray_AS_STRING, PyByteArray_FromStringAndSize,
                                PyByteArray_GET_SIZE)
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_SetItem
from cpython.exc cimport PyErr_CheckSignals
from cpython.float cimport PyFloat_FromDouble
from cpython.long cimport (PyLong_AsLongLongAndOverflow, PyLong_FromLong, PyLong_FromLongLong,
                           PyLong_FromUnsignedLongLong)
from cpython.method cimport PyMethod_Check, PyMethod_GET_FUNCTION, PyMethod_GET_SELF
from cpython.object cimport PyObject, PyTypeObject
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.limits cimport LONG_MAX, ULLONG_MAX
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp, memcpy, memmove

import os
import socket

from beanstalkc_fast.errors import SocketError, UnexpectedResponse
# what both cores share, written once (re-exported as this core's module interface)
from beanstalkc_fast._shared import (MAX_BODY, MAX_LINE, MAX_UINT32, NAME_CHARS,  # no-cython-lint
                                     READ_CHUNK, SCATTER_MIN, WRITE_CHUNK, _UNSET, _clamp,
                                     _prepare, _send_all, _set_timeout, body_buffer, check_name,
                                     encode_body, failure, note_lost_reply, refusal, say_quit,
                                     send_parts, wake)
from beanstalkc_fast._shared import plain_socket as _plain_socket
from beanstalkc_fast import _shared
from beanstalkc_fast import _pyprotocol      # the exact, slower paths (non-ASCII stats, long verbs)

cdef extern from "Python.h":
    object PyMemoryView_FromMemory(char *mem, Py_ssize_t size, int flags)
    int PyBUF_WRITE
    dict _PyDict_NewPresized(Py_ssize_t minused)
    dict PyDict_Copy(object d)
    PyObject *_PyType_Lookup(type t, str name)     # borrowed, or NULL; cached by the type

cdef extern from *:
    """
    /* Direct socket IO without the GIL. POSIX only: on Windows the core
       keeps using the socket object's methods (see Core.__init__). */
    #ifdef _WIN32
    #define BSF_DIRECT_IO 0
    static Py_ssize_t bsf_send(int fd, const char *b, Py_ssize_t n) { return -1; }
    static Py_ssize_t bsf_send_now(int fd, const char *b, Py_ssize_t n) { return -1; }
    static Py_ssize_t bsf_recv(int fd, char *b, Py_ssize_t n) { return -1; }
    static Py_ssize_t bsf_recv_now(int fd, char *b, Py_ssize_t n) { return -1; }
    typedef struct { void *iov_base; size_t iov_len; } bsf_iovec;
    static Py_ssize_t bsf_sendv(int fd, bsf_iovec *v, int n, int now) { return -1; }
    static int bsf_errno(void) { return 0; }
    static void bsf_nap(double s) { }
    static void bsf_yield(void) { }

    static double bsf_now(void) { return 0.0; }
    #define BSF_EINTR (-1)
    #define BSF_EAGAIN (-1)
    #define BSF_EWOULDBLOCK (-1)
    #else
    #include <errno.h>
    #include <string.h>
    #include <time.h>
    #include <sched.h>
    #include <sys/types.h>
    #include <sys/socket.h>
    #include <sys/uio.h>
    #ifndef MSG_NOSIGNAL
    #define MSG_NOSIGNAL 0
    #endif
    #define BSF_DIRECT_IO 1
    static Py_ssize_t bsf_send(int fd, const char *b, Py_ssize_t n) {
        return (Py_ssize_t)send(fd, b, (size_t)n, MSG_NOSIGNAL);
    }
    static Py_ssize_t bsf_recv(int fd, char *b, Py_ssize_t n) {
        return (Py_ssize_t)recv(fd, b, (size_t)n, 0);
    }
    /* never block: worth trying before giving up the GIL */
    static Py_ssize_t bsf_recv_now(int fd, char *b, Py_ssize_t n) {
        return (Py_ssize_t)recv(fd, b, (size_t)n, MSG_DONTWAIT);
    }
    static Py_ssize_t bsf_send_now(int fd, const char *b, Py_ssize_t n) {
        return (Py_ssize_t)send(fd, b, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    /* scatter-gather send of n buffers; now: never blocks */
    typedef struct iovec bsf_iovec;
    static Py_ssize_t bsf_sendv(int fd, bsf_iovec *v, int n, int now) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = v;
        m.msg_iovlen = (size_t)n;
        return (Py_ssize_t)sendmsg(fd, &m, MSG_NOSIGNAL | (now ? MSG_DONTWAIT : 0));
    }
    static int bsf_errno(void) { return errno; }
    static void bsf_yield(void) { sched_yield(); }
    static void bsf_nap(double s) {
        struct timespec ts;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)(s * 1e9);
        nanosleep(&ts, NULL);
    }

    /* monotonic seconds, only to re-arm a timeout after EINTR: the coarse
       clock (a few ms resolution) is a plain memory read in the vDSO */
    static double bsf_now(void) {
        struct timespec ts;
    #ifdef CLOCK_MONOTONIC_COARSE
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    #else
        clock_gettime(CLOCK_MONOTONIC, &ts);
    #endif
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    #define BSF_EINTR EINTR
    #define BSF_EAGAIN EAGAIN
    #define BSF_EWOULDBLOCK EWOULDBLOCK
    #endif

    /* powers of ten a double holds exactly */
    static const double bsf_pow10[16] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
                                         1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

    /* "00" "01" ... "99": two decimal digits per table entry */
    static const char bsf_pairs[201] =
        "00010203040506070809101112131415161718192021222324"
        "25262728293031323334353637383940414243444546474849"
        "50515253545556575859606162636465666768697071727374"
        "75767778798081828384858687888990919293949596979899";

    /* An int object's value when it is small and not negative (the common
       case), read without a call: 1 and *out set, else 0 (then ask the API). */
    static int bsf_small_uint(PyObject *v, unsigned long long *out) {
    #if defined(PYPY_VERSION) || defined(Py_LIMITED_API)
        return 0;
    #elif PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject *)v)) {
            Py_ssize_t x = PyUnstable_Long_CompactValue((PyLongObject *)v);
            if (x >= 0) { *out = (unsigned long long)x; return 1; }
        }
        return 0;
    #else
        Py_ssize_t size = Py_SIZE(v);
        if (size == 0) { *out = 0; return 1; }
        if (size == 1) { *out = ((PyLongObject *)v)->ob_digit[0]; return 1; }
        if (size == 2) {
            *out = (unsigned long long)((PyLongObject *)v)->ob_digit[0]
                   | ((unsigned long long)((PyLongObject *)v)->ob_digit[1] << PyLong_SHIFT);
            return 1;
        }
        return 0;
    #endif
    }
    """
    int BSF_DIRECT_IO, BSF_EINTR, BSF_EAGAIN, BSF_EWOULDBLOCK
    ctypedef struct bsf_iovec:
        void *iov_base
        size_t iov_len
    Py_ssize_t bsf_sendv(int fd, bsf_iovec *v, int n, int now) nogil
    Py_ssize_t bsf_send(int fd, const char *b, Py_ssize_t n) nogil
    Py_ssize_t bsf_send_now(int fd, const char *b, Py_ssize_t n) nogil
    Py_ssize_t bsf_recv(int fd, char *b, Py_ssize_t n) nogil
    Py_ssize_t bsf_recv_now(int fd, char *b, Py_ssize_t n) nogil
    int bsf_errno() nogil
    double bsf_now() nogil
    const char *bsf_pairs
    const double *bsf_pow10
    int bsf_small_uint(object v, unsigned long long *out) noexcept
    void bsf_nap(double s) nogil
    void bsf_yield() nogil

cdef Py_ssize_t C_MAX_LINE = MAX_LINE
cdef object _NO_EXTRA = 0.0
cdef Py_ssize_t C_READ_CHUNK = READ_CHUNK
# The longest a blocking send or receive waits in the kernel before the core
# looks at signals again (_shared.WAIT_SLICE, the twin's too).
cdef double WAIT_SLICE = _shared.WAIT_SLICE
# A receive tried without blocking (and without giving up the GIL) while it
# keeps finding the reply already there; after misses, only every PROBE-th.
cdef enum:
    TRY_CREDIT = 4
    PROBE_EVERY = 16
cdef Py_ssize_t C_SCATTER_MIN = SCATTER_MIN
cdef double NAP_SECONDS = 50e-6             # see Core._nap
cdef Py_ssize_t NAP_MIN_OUTSTANDING = 32
cdef Py_ssize_t NAP_FEW = 4                 # bytes per reply due: fewer after the yield, nap

# Reply status words, the frequent first, matched by length and memcmp (no
# allocation); entry i is (interned str, shape) with shapes as in _shared._SHAPES.
cdef enum:
    MAX_STATUS = 32
_FREQUENT = ["INSERTED", "RESERVED", "DELETED", "OK", "FOUND", "TIMED_OUT", "NOT_FOUND",
             "USING", "WATCHING", "RELEASED", "BURIED", "TOUCHED", "KICKED"]
cdef list _STATUS_BYTES = [w.encode("ascii") for w in
                           _FREQUENT + sorted(set(_shared._SHAPES) - set(_FREQUENT))]
cdef list _STATUS_ENTRIES = [(intern(w.decode("ascii")), _shared._SHAPES[w.decode("ascii")])
                             for w in _STATUS_BYTES]   # interned: "==" on the literals is "is"
cdef const char *_status_words[MAX_STATUS]
cdef Py_ssize_t _status_lens[MAX_STATUS]
cdef Py_ssize_t _n_status = len(_STATUS_BYTES)
assert _n_status <= MAX_STATUS
for _i, _w in enumerate(_STATUS_BYTES):
    _status_words[_i] = PyBytes_AS_STRING(_w)
    _status_lens[_i] = PyBytes_GET_SIZE(_w)


cdef inline Py_ssize_t _status_index(const char *word, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(_n_status):
        if _status_lens[i] == n and memcmp(_status_words[i], word, n) == 0:
            return i
    return -1


def check_uint(str name, value, maximum=MAX_UINT32):
    """``value`` as a protocol integer in 0..maximum, or TypeError/ValueError."""
    if type(value) is int and 0 <= value <= maximum:
        return value
    return _shared.check_uint(name, value, maximum)


cdef unsigned long long _uint(str name, value, unsigned long long maximum) except? ULLONG_MAX:
    """``value`` checked as a protocol integer in 0..maximum (errors: the twin's)."""
    cdef int overflow = 0
    cdef long long v
    cdef unsigned long long u
    if type(value) is int:
        if bsf_small_uint(value, &u) and u <= maximum:
            return u
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0 and 0 <= v and <unsigned long long>v <= maximum:
            return <unsigned long long>v
    return _shared.check_uint(name, value, maximum)


cdef inline char *_put_digits(char *out, unsigned long long v) noexcept:
    """Write ``v`` in decimal at ``out``; the end of what was written."""
    cdef char tmp[20]
    cdef char *t = tmp + 20
    cdef unsigned int r
    cdef Py_ssize_t n
    while v >= 100:
        r = <unsigned int>(v % 100)
        v //= 100
        t -= 2
        t[0] = bsf_pairs[2 * r]
        t[1] = bsf_pairs[2 * r + 1]
    if v >= 10:
        t -= 2
        t[0] = bsf_pairs[2 * v]
        t[1] = bsf_pairs[2 * v + 1]
    else:
        t -= 1
        t[0] = <char>(48 + v)
    n = tmp + 20 - t
    while n:
        out[0] = t[0]
        out += 1
        t += 1
        n -= 1
    return out


def encode_id(bytes verb, jid):
    """``verb`` (with its trailing space) and a job id, as one command line."""
    cdef unsigned long long v = _uint("job id", jid, ULLONG_MAX)
    if PyBytes_GET_SIZE(verb) > 40:
        return _pyprotocol.encode_id(verb, jid)
    return _id_line(verb, v)


def encode_ids(bytes verb, ids):
    """``encode_id`` of every job id in ``ids`` (all checked before the
    list is returned), in order."""
    cdef list lines = []
    if PyBytes_GET_SIZE(verb) > 40:
        return _pyprotocol.encode_ids(verb, ids)
    for jid in ids:
        lines.append(_id_line(verb, _uint("job id", jid, ULLONG_MAX)))
    return lines


cdef bytes _id_line(bytes verb, unsigned long long v):
    """``verb`` (at most 40 bytes, with its trailing space) and ``v``, as one command line."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(verb)
    cdef char line[64]
    cdef char *e
    memcpy(line, PyBytes_AS_STRING(verb), n)
    e = _put_digits(line + n, v)
    e[0] = b'\r'
    e[1] = b'\n'
    return PyBytes_FromStringAndSize(line, e + 2 - line)


cdef char *_put_head(char *e, unsigned long long p, unsigned long long d,
                     unsigned long long t, Py_ssize_t n) noexcept:
    """Write ``put p d t n\\r\\n`` at ``e`` (room for 96 bytes); the end of it."""
    memcpy(e, b"put ", 4)
    e = _put_digits(e + 4, p)
    e[0] = b' '
    e = _put_digits(e + 1, d)
    e[0] = b' '
    e = _put_digits(e + 1, t)
    e[0] = b' '
    e = _put_digits(e + 1, <unsigned long long>n)
    e[0] = b'\r'
    e[1] = b'\n'
    return e + 2


cdef bytes _put_one(const char *body, Py_ssize_t n, unsigned long long p,
                    unsigned long long d, unsigned long long t):
    """The whole put command, header, body and CRLF, in one new bytes."""
    cdef char head[96]
    cdef Py_ssize_t h = _put_head(head, p, d, t, n) - head
    cdef bytes out = PyBytes_FromStringAndSize(NULL, h + n + 2)
    cdef char *o = PyBytes_AS_STRING(out)
    memcpy(o, head, h)
    memcpy(o + h, body, n)
    o[h + n] = b'\r'
    o[h + n + 1] = b'\n'
    return out


def encode_put(body, priority, delay, ttr, encoding):
    """The complete ``put`` command, header and body, in one buffer."""
    cdef bytes data = body if type(body) is bytes else encode_body(body, encoding)
    cdef unsigned long long p = _uint("priority", priority, 0xFFFFFFFFULL)
    cdef unsigned long long d = _uint("delay", delay, 0xFFFFFFFFULL)
    cdef unsigned long long t = _uint("ttr", ttr, 0xFFFFFFFFULL)
    return _put_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), p, d, t)


cdef bytes _CRLF = b"\r\n"


def encode_put_parts(body, priority, delay, ttr, encoding):
    """The ``put`` command as ``Core`` sends it: ``encode_put``'s one buffer for
    a body under SCATTER_MIN bytes, else ``(header, body, b"\\r\\n")`` with
    the body's own buffer (never copied), sent without joining (see the twin)."""
    return _encode_put_parts(body, priority, delay, ttr, encoding)


cdef object _encode_put_parts(body, priority, delay, ttr, encoding):
    cdef unsigned long long p, d, t
    cdef char head[96]
    cdef Py_ssize_t n
    cdef Py_buffer view
    if type(body) is bytes and PyBytes_GET_SIZE(body) < C_SCATTER_MIN:    # the usual case
        p = _uint("priority", priority, 0xFFFFFFFFULL)
        d = _uint("delay", delay, 0xFFFFFFFFULL)
        t = _uint("ttr", ttr, 0xFFFFFFFFULL)
        return _put_one(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body), p, d, t)
    data = body_buffer(body, encoding)
    p = _uint("priority", priority, 0xFFFFFFFFULL)
    d = _uint("delay", delay, 0xFFFFFFFFULL)
    t = _uint("ttr", ttr, 0xFFFFFFFFULL)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    n = view.len
    try:
        if n < C_SCATTER_MIN:
            return _put_one(<const char *>view.buf, n, p, d, t)
    finally:
        PyBuffer_Release(&view)
    return (PyBytes_FromStringAndSize(head, _put_head(head, p, d, t, n) - head), data, _CRLF)


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


cdef inline bint _short_decimal(const char *p, Py_ssize_t n, double *out) noexcept:
    """The value of ``p`` (``_is_float`` holds) when it has at most 15
    digits (e.g. rusage-utime's "0.123456"): digits / 10**k, exact operands
    and one correctly rounded division, so the double float() gives."""
    cdef unsigned long long m = 0
    cdef Py_ssize_t i = 1 if p[0] == b'-' else 0, digits = 0, frac = -1
    while i < n:
        if p[i] == b'.':
            frac = 0
        else:
            m = m * 10 + <unsigned long long>(p[i] - 48)
            digits += 1
            if frac >= 0:
                frac += 1
        i += 1
    if digits > 15:
        return False
    out[0] = <double>m / bsf_pow10[frac]
    if p[0] == b'-':
        out[0] = -out[0]
    return True


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


# Interned key strings of stats replies, looked up by the key's bytes without
# allocating: the server sends the same few dozen keys in every reply.
cdef enum:
    KEY_SLOTS = 512
    KEY_MAX = 40

cdef struct KeySlot:
    Py_ssize_t n
    char key[KEY_MAX]
    PyObject *name             # a reference held for the life of the process
    bint fixed_str             # in _shared._STR_KEYS

cdef KeySlot _key_slots[KEY_SLOTS]
cdef frozenset _STR_KEYS = _shared._STR_KEYS


cdef str _key(const char *p, Py_ssize_t n, bint *fixed_str):
    cdef unsigned int h = 2166136261u
    cdef Py_ssize_t i
    cdef int probe
    cdef KeySlot *slot = NULL
    cdef KeySlot *free = NULL
    cdef str name
    if n < KEY_MAX:
        for i in range(n):
            h = (h ^ <unsigned char>p[i]) * 16777619u
        for probe in range(4):
            slot = &_key_slots[(h + probe) % KEY_SLOTS]
            if slot.name == NULL:
                free = slot
                break
            if slot.n == n and memcmp(slot.key, p, n) == 0:
                fixed_str[0] = slot.fixed_str
                return <str>slot.name
    name = p[:n].decode("ascii")
    fixed_str[0] = name in _STR_KEYS
    if free != NULL:
        name = intern(name)
        Py_INCREF(name)
        free.name = <PyObject *>name
        free.n = n
        memcpy(free.key, p, n)
        free.fixed_str = fixed_str[0]
    return name


cdef inline Py_ssize_t _line_end(const char *p, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """Offset of the newline ending the line at ``pos`` (``n`` for the last line)."""
    cdef const char *nl = <const char *>memchr(p + pos, b'\n', n - pos)
    return (nl - p) if nl != NULL else n


cdef inline bint _all_ascii(const char *p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i = 0
    cdef uint64_t w
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        if w & 0x8080808080808080ULL:
            return False
        i += 8
    while i < n:
        if <unsigned char>p[i] >= 128:
            return False
        i += 1
    return True


cdef object _value(str key, bint as_str, const char *line, Py_ssize_t vstart,
                   Py_ssize_t llen, frozenset str_keys):
    """The typed value of one ``key: value`` line (rules of the twin's _scalar);
    ``as_str``: the key's values stay str."""
    cdef const char *v = line + vstart
    cdef Py_ssize_t vlen = llen - vstart, i
    cdef long long x = 0
    cdef unsigned char d
    cdef double f
    if not as_str and 0 < vlen < 19:              # the common case, an int: one pass
        i = 1 if v[0] == b'-' else 0
        if i < vlen:
            while i < vlen:
                d = <unsigned char>v[i] - 48
                if d > 9:
                    break
                x = x * 10 + d
                i += 1
            if i == vlen:
                return PyLong_FromLongLong(-x if v[0] == b'-' else x)
    if vlen >= 2 and v[0] == b'"' and line[llen - 1] == b'"':
        return line[vstart + 1:llen - 1].decode("ascii")
    if as_str:
        return line[vstart:llen].decode("ascii")
    if _is_int(v, vlen):
        return _to_ll(v, vlen)
    if vlen == 4 and memcmp(v, b"true", 4) == 0:
        return True
    if vlen == 5 and memcmp(v, b"false", 5) == 0:
        return False
    if _is_float(v, vlen):
        if _short_decimal(v, vlen, &f):
            return PyFloat_FromDouble(f)
        return float(line[vstart:llen])
    return _shared._scalar(key, line[vstart:llen].decode("ascii"), str_keys)


cdef struct LineSlot:
    const char *raw            # the key's bytes (in _Layout.raws)
    Py_ssize_t klen
    PyObject *key              # the key (in _Layout.keys)
    # the line in _Layout.last (without its newline) whose value snapshot
    # holds; llen -1: none (nor is last read)
    Py_ssize_t off, llen
    bint vas_str               # the as_str its value was made with


cdef class _Layout:
    """The keys of a reply seen before, in order: a reply with the same keys
    is parsed line by line against them, without looking keys up, into
    ``snapshot`` (the dict of the last reply, ``last``; never handed out: a
    copy of it is). A line that is the same as in ``last`` keeps its
    (immutable) value object: only the lines that changed are parsed."""
    cdef tuple keys, raws, fixed
    cdef tuple flags_for           # the str_keys ``as_str`` was computed for (a copy)
    # commands.SERVER_STR_KEYS once found to be those (it lives as long as
    # the process: no caller's object is kept)
    cdef frozenset flags_seen
    cdef bytes as_str              # per key: its values stay str
    cdef LineSlot *slots
    cdef Py_ssize_t count
    cdef dict snapshot
    cdef char *last                # a copy of the last reply (nothing of a caller's is kept)
    cdef Py_ssize_t last_n, last_room
    # a parse is filling snapshot (the GIL can change hands inside one: a GC
    # finalizer, the Python fallback for an odd value)
    cdef bint busy

    def __cinit__(self, tuple keys, tuple raws, tuple fixed):
        cdef Py_ssize_t i
        self.keys, self.raws, self.fixed = keys, raws, fixed
        self.count = len(keys)
        self.snapshot = _PyDict_NewPresized(self.count)
        self.last = NULL
        self.last_n = self.last_room = 0
        self.slots = <LineSlot *>PyMem_Malloc(self.count * sizeof(LineSlot))
        if self.slots == NULL:
            raise MemoryError()
        for i in range(self.count):
            self.slots[i].raw = PyBytes_AS_STRING(raws[i])
            self.slots[i].klen = PyBytes_GET_SIZE(raws[i])
            self.slots[i].key = <PyObject *>keys[i]
            self.slots[i].llen = -1

    def __dealloc__(self):
        PyMem_Free(self.slots)
        PyMem_Free(self.last)

    cdef int keep(self, bytes body) except -1:
        """Copy ``body`` to ``last``."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
        cdef char *buf
        if n > self.last_room:
            buf = <char *>PyMem_Realloc(self.last, n)
            if buf == NULL:
                raise MemoryError()
            self.last, self.last_room = buf, n
        memcpy(self.last, PyBytes_AS_STRING(body), n)
        self.last_n = n
        return 0

    cdef void forget(self) noexcept:
        """No line is known any more (a parse stopped half way)."""
        cdef Py_ssize_t i
        for i in range(self.count):
            self.slots[i].llen = -1

    cdef bytes flags(self, frozenset str_keys):
        if str_keys is self.flags_seen:
            return self.as_str
        if not self._same_keys(str_keys):
            self.as_str = bytes([f or (k in str_keys) for k, f in zip(self.keys, self.fixed)])
            self.flags_for = tuple(str_keys)
        self.flags_seen = str_keys if str_keys is _SERVER_STR_KEYS else None
        return self.as_str

    cdef bint _same_keys(self, frozenset str_keys):
        # a few membership tests instead of a set comparison
        cdef Py_ssize_t i, size = len(str_keys)
        if self.flags_for is None or PyTuple_GET_SIZE(self.flags_for) != size:
            return False
        for i in range(size):
            if self.flags_for[i] not in str_keys:
                return False
        return True


cdef dict _LAYOUTS = {}        # first key -> _Layout; a few reply shapes exist


cdef inline Py_ssize_t _common_prefix(const char *a, const char *b, Py_ssize_t n) noexcept:
    """How many bytes ``a`` and ``b`` (``n`` each) share from the start."""
    cdef Py_ssize_t i = 0
    cdef uint64_t x, y
    cdef uint64_t x1, y1, x2, y2
    while i + 16 <= n:                  # two words a step: runs are long
        memcpy(&x1, a + i, 8)
        memcpy(&y1, b + i, 8)
        memcpy(&x2, a + i + 8, 8)
        memcpy(&y2, b + i + 8, 8)
        if (x1 ^ y1) | (x2 ^ y2):
            break
        i += 16
    while i + 8 <= n:
        memcpy(&x, a + i, 8)
        memcpy(&y, b + i, 8)
        if x != y:
            break
        i += 8
    while i < n and a[i] == b[i]:
        i += 1
    return i


cdef object _parse_known(_Layout layout, bytes body, Py_ssize_t pos, frozenset str_keys):
    """The dict of a reply whose keys are exactly ``layout``'s, else None."""
    try:
        result = _parse_lines(layout, body, pos, str_keys)
        if result is not None:
            layout.keep(body)
            return result
    except BaseException:
        layout.forget()
        raise
    layout.forget()
    return None


cdef object _parse_lines(_Layout layout, bytes body, Py_ssize_t pos, frozenset str_keys):
    cdef const char *p = PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t i = 0, count = layout.count, llen, klen
    cdef dict snapshot = layout.snapshot
    cdef const char *as_str = PyBytes_AS_STRING(layout.flags(str_keys))
    cdef const char *last = layout.last
    cdef Py_ssize_t last_n = layout.last_n
    cdef const char *line
    cdef const char *q
    cdef const char *end = p + n
    cdef LineSlot *slot
    # a run: the bytes of this reply from the line where it starts up to
    # run_end equal those of the last reply at that line's old place, found
    # by one word-wise scan that covers the unchanged lines up to the next
    # change. A run ends inside a changed line (at its first byte that
    # differs, at most its new length), so the lines of a run all keep the
    # offset between their old and new places; a longer or shorter value
    # changes that offset for the lines after it, which start a new run.
    cdef Py_ssize_t run_end = 0
    while pos < n:
        if i >= count:
            return None
        slot = &layout.slots[i]
        line = p + pos
        llen = slot.llen
        if llen >= 0 and slot.vas_str == as_str[i]:
            if pos >= run_end:
                run_end = pos + _common_prefix(line, last + slot.off,
                                               min(n - pos, last_n - slot.off))
            if pos + llen < run_end:
                # this line and its newline are as they were (its value is in
                # snapshot), and so may be the next ones of the run
                while True:
                    slot.off = pos
                    pos += llen + 1
                    i += 1
                    if i >= count:
                        break
                    slot += 1
                    llen = slot.llen
                    if llen < 0 or pos + llen >= run_end or slot.vas_str != as_str[i]:
                        break
                continue
        klen = slot.klen
        if n - pos < klen + 2 or line[klen] != b':' or line[klen + 1] != b' ' \
                or _common_prefix(line, slot.raw, klen) != klen:
            return None
        q = line + klen + 2                # values are short: no memchr call
        while q < end and q[0] != b'\n':
            q += 1
        llen = q - line
        if not _all_ascii(line, llen):
            return None                    # the exact, slower path decodes it
        PyDict_SetItem(snapshot, <object>slot.key,
                       _value(<str>slot.key, as_str[i], line, klen + 2, llen, str_keys))
        slot.off = pos
        slot.llen = llen if q < end else -1     # the last line, with no newline: not kept
        slot.vas_str = as_str[i]
        pos += llen + 1
        i += 1
    return PyDict_Copy(snapshot) if i == count else None


def parse_yaml(bytes body, frozenset str_keys=frozenset()):
    """The typed value of a stats or list reply: a dict or a list of str
    (see ``_pyprotocol.parse_yaml`` for the typing rules)."""
    return _parse_yaml(body, str_keys)


cdef object _parse_yaml(bytes body, frozenset str_keys):
    cdef const char *p = PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t pos = 0, eol, colon
    cdef const char *nl
    cdef const char *line
    cdef Py_ssize_t llen
    cdef dict result
    cdef list items, keys, raws, fixed
    cdef str key
    cdef bint is_list, fixed_str = False, plain = True
    cdef _Layout layout
    if n >= 4 and memcmp(p, b"---\n", 4) == 0:
        pos = 4
    is_list = n - pos >= 2 and p[pos] == b'-' and p[pos + 1] == b' '
    nl = NULL if is_list else <const char *>memchr(p + pos, b':', n - pos)
    if nl != NULL and _all_ascii(p + pos, nl - p - pos):
        # a known layout checks the lines it parses itself (see _parse_lines)
        layout = _LAYOUTS.get(_key(p + pos, nl - p - pos, &fixed_str))
        if layout is not None and layout.busy:
            plain = False      # another thread is inside it (see _Layout): leave it be
        elif layout is not None:
            layout.busy = True
            try:
                result = _parse_known(layout, body, pos, str_keys)
            finally:
                layout.busy = False
            if result is not None:
                return result
    if not _all_ascii(p, n):                      # take the exact, slower path
        return _pyprotocol.parse_yaml(body, str_keys)
    if is_list:
        items = []
        while pos < n:
            eol = _line_end(p, pos, n)
            if eol - pos >= 2 and p[pos] == b'-' and p[pos + 1] == b' ':
                items.append(p[pos + 2:eol].decode("ascii"))
            pos = eol + 1
        return items
    keys, raws, fixed = [], [], []
    result = {}
    while pos < n:
        eol = _line_end(p, pos, n)
        line = p + pos
        llen = eol - pos
        pos = eol + 1
        nl = <const char *>memchr(line, b':', llen)
        while nl != NULL and nl + 1 < line + llen and nl[1] != b' ':
            nl = <const char *>memchr(nl + 1, b':', line + llen - nl - 1)
        if nl == NULL or nl + 1 >= line + llen:
            plain = False
            if llen >= 1 and line[llen - 1] == b':':
                result[_key(line, llen - 1, &fixed_str)] = None
            continue
        colon = nl - line
        key = _key(line, colon, &fixed_str)
        result[key] = _value(key, fixed_str or (str_keys and key in str_keys), line, colon + 2,
                             llen, str_keys)
        keys.append(key)
        raws.append(line[:colon])
        fixed.append(fixed_str)
    if plain and len(keys) >= 4 and len(keys) == len(result):
        if len(_LAYOUTS) >= 32:                   # bounded, whatever a server sends
            _LAYOUTS.clear()
        _LAYOUTS[keys[0]] = _Layout(tuple(keys), tuple(raws), tuple(fixed))
    return result


# the windowed pipeline driver, the twin's own source compiled here: run_window
include "../beanstalkc_fast/_window.py"


# -- sans-IO reply reader (twin: _pyprotocol.Reader) ------------------------------

cdef class Reader:
    """Sans-IO reply reader: owns the read buffer and turns the bytes received
    into complete replies, with no IO of its own (see the twin for the contract)."""

    cdef bytearray _buf
    cdef Py_ssize_t _pos, _end, _need
    cdef public object max_body
    cdef bint _has_head             # a line was parsed; its body is due
    cdef object _h_name, _h_value
    cdef object _r_body             # the body of the reply _step completed
    cdef bytearray _lent            # the buffer get_buffer's view points into
    cdef unsigned long long _h_len

    def __init__(self, max_body=MAX_BODY):
        self.max_body = max_body
        self._buf = bytearray(READ_CHUNK)
        self._pos = 0
        self._end = 0
        self._need = 1
        self._has_head = False

    def get_buffer(self, Py_ssize_t sizehint=-1):
        """Writable free space after the unread bytes (at least one byte).

        The view points into the buffer without holding it (a view of the
        whole bytearray and a slice of it cost ~2k instructions per read):
        the buffer is kept alive until the next get_buffer, and a transport
        uses a view only until its buffer_updated (asyncio's contract)."""
        self._make_room()
        self._lent = self._buf
        return PyMemoryView_FromMemory(PyByteArray_AS_STRING(self._buf) + self._end,
                                       PyByteArray_GET_SIZE(self._buf) - self._end, PyBUF_WRITE)

    cdef int _make_room(self) except -1:
        cdef Py_ssize_t have = self._end - self._pos
        cdef Py_ssize_t need = self._need if self._need > have else have + 1
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(self._buf)
        cdef char *b
        cdef bytearray grown
        if have == 0 and size > 4 * C_READ_CHUNK and need <= C_READ_CHUNK:
            self._buf = PyByteArray_FromStringAndSize(NULL, C_READ_CHUNK)
            self._pos = self._end = 0
            size = C_READ_CHUNK
        if self._pos and size - self._pos < need:
            b = PyByteArray_AS_STRING(self._buf)
            memmove(b, b + self._pos, have)
            self._pos = 0
            self._end = have
        if self._end == size:
            grown = PyByteArray_FromStringAndSize(NULL, size + min(size, need - have))
            memcpy(PyByteArray_AS_STRING(grown), PyByteArray_AS_STRING(self._buf) + self._pos,
                   have)
            self._buf = grown
            self._pos = 0
            self._end = have
        return 0

    def buffer_updated(self, Py_ssize_t nbytes):
        """``nbytes`` were written at the start of the last ``get_buffer()``."""
        if nbytes < 0 or nbytes > PyByteArray_GET_SIZE(self._buf) - self._end:
            raise ValueError("buffer_updated(%d) exceeds the free space" % nbytes)
        self._end += nbytes

    def feed(self, data):
        """Copy ``data`` into the buffer (for transports without recv_into)."""
        cdef const unsigned char[:] view = memoryview(data).cast("B")
        cdef Py_ssize_t done = 0, total = view.shape[0], n
        while done < total:
            self._make_room()
            n = min(PyByteArray_GET_SIZE(self._buf) - self._end, total - done)
            memcpy(PyByteArray_AS_STRING(self._buf) + self._end, &view[done], n)
            self._end += n
            done += n

    def next_reply(self):
        """The next complete reply ``(status, value, body)``, or None when more
        bytes are needed."""
        return self._next()

    def pending(self):
        """Bytes received but not yet returned as part of a reply."""
        return self._end - self._pos

    def collect(self, list results, Py_ssize_t n, ok, int kind, conn):
        """Settle up to ``n`` complete replies of one command kind into
        ``results`` (see the twin); ``(taken, first reply not settled or None)``."""
        cdef Py_ssize_t taken = 0
        job_type = encoding = None
        if kind == 2 or kind == 3:         # RESERVED, PEEKED: jobs as _execute builds them
            job_type = conn._job_type
            encoding = conn.encoding
        while taken < n:
            if not self._step():
                return taken, None
            status = self._h_name
            if kind > 3 or (status is not ok and status != ok):
                return taken, self._take()
            if kind == 0:
                results.append(self._h_value)
            elif kind == 1:
                results.append(None)
            else:
                results.append(_build_job(job_type, conn, self._h_value, self._r_body,
                                          kind == 2, encoding))
            self._h_value = None
            self._r_body = None
            taken += 1
        return taken, None

    def settle(self, pending):
        """Settle the asyncio front end's single commands at the head of
        ``pending`` with the replies in the buffer (see the twin);
        ``(popped, their sizes summed, first reply not settled or None)``."""
        cdef Py_ssize_t taken = 0, nbytes = 0
        cdef int kind
        cdef tuple entry, cmd              # typed: a Command (tuple subclass) indexed in C
        cdef Call call
        while True:
            if not self._step():
                return taken, nbytes, None
            if not pending:
                return taken, nbytes, self._take()
            head = pending[0]
            if type(head) is not tuple:
                return taken, nbytes, self._take()
            entry = <tuple>head
            fut = entry[0]
            cmd = <tuple>entry[1]
            kind = cmd[1]                  # Command fields by position: ok, kind
            ok = cmd[0]
            status = self._h_name
            if fut is None or kind > 1 or (status is not ok and status != ok):
                return taken, nbytes, self._take()
            if type(fut) is Call:              # C calls: no method lookups
                call = <Call>fut
                if call._state != 0:
                    return taken, nbytes, self._take()
                pending.popleft()
                call.set_result(self._h_value if kind == 0 else None)
            else:
                if fut.done():
                    return taken, nbytes, self._take()
                pending.popleft()
                fut.set_result(self._h_value if kind == 0 else None)
            self._h_value = None
            self._r_body = None
            taken += 1
            nbytes += <Py_ssize_t>entry[3]

    cdef object _next(self):
        """The next complete reply as a tuple, or None (see ``_step``)."""
        if not self._step():
            return None
        return self._take()

    cdef tuple _take(self):
        """The reply ``_step`` completed, as ``(status, value, body)``."""
        reply = (self._h_name, self._h_value, self._r_body)
        self._h_value = None               # keep no reference to what was handed out
        self._r_body = None
        return reply

    cdef int _step(self) except -1:
        """Parse the next complete reply into ``_h_name``, ``_h_value`` and
        ``_r_body`` (None: no body) and return 1; 0 when more bytes are
        needed. The caller takes the parts and clears the last two."""
        cdef const char *b
        cdef const char *hit
        cdef Py_ssize_t have, start
        if not self._has_head:
            b = PyByteArray_AS_STRING(self._buf)
            have = self._end - self._pos
            hit = <const char *>memchr(b + self._pos, b'\n', have)
            if hit == NULL:
                if have > C_MAX_LINE:
                    raise UnexpectedResponse("reply line longer than %d bytes" % MAX_LINE)
                self._need = have + 1
                return 0
            if hit == b + self._pos or (hit - 1)[0] != b'\r':
                raise UnexpectedResponse("reply line not ended by CRLF")
            if hit - (b + self._pos) > C_MAX_LINE:
                raise UnexpectedResponse("reply line longer than %d bytes" % MAX_LINE)
            start = self._pos
            self._pos = (hit - b) + 1
            if not self._parse_head(b + start, (hit - b) - 1 - start):
                if self._pos == self._end:
                    self._pos = self._end = 0
                self._need = 1
                self._r_body = None
                return 1
            if self._h_len > self.max_body:
                raise UnexpectedResponse("reply body of %d bytes exceeds %d"
                                         % (self._h_len, self.max_body))
            self._has_head = True
        return self._body()

    cdef int _body(self) except -1:
        cdef Py_ssize_t n = <Py_ssize_t>self._h_len, end
        cdef const char *b
        if self._end - self._pos < n + 2:
            self._need = n + 2
            return 0
        b = PyByteArray_AS_STRING(self._buf)
        end = self._pos + n
        if b[end] != b'\r' or b[end + 1] != b'\n':
            raise UnexpectedResponse("reply body not followed by CRLF")
        self._r_body = PyBytes_FromStringAndSize(b + self._pos, n)
        self._pos = end + 2
        self._has_head = False
        self._need = 1
        if self._pos == self._end:
            self._pos = self._end = 0
        return 1

    cdef int _parse_head(self, const char *line, Py_ssize_t llen) except -1:
        """Parse a reply line into _h_name/_h_value/_h_len; 1 when a body follows."""
        cdef Py_ssize_t sp = 0, start, pos, i
        cdef int nargs = 0, shape
        cdef tuple entry
        cdef unsigned long long nums[2]
        while sp < llen and line[sp] != b' ':
            sp += 1
        i = _status_index(line, sp)
        if i < 0:
            raise UnexpectedResponse("unknown reply %r" % (line[:min(llen, 80)],))
        entry = <tuple>_STATUS_ENTRIES[i]
        self._h_name = entry[0]
        shape = entry[1]
        self._h_value = None
        if shape == 0:
            if sp < llen:
                raise UnexpectedResponse("unexpected arguments in %r" % (line[:llen],))
            return 0
        if shape == 5:
            if sp == llen or memchr(line + sp + 1, b' ', llen - sp - 1) != NULL:
                raise UnexpectedResponse("malformed reply %r" % (line[:llen],))
            self._h_value = check_name(line[sp + 1:llen]).decode("ascii")
            return 0
        pos = sp
        while pos < llen:                  # line[pos] is a space
            start = pos + 1
            pos = start
            while pos < llen and line[pos] != b' ':
                pos += 1
            if nargs < 2:
                nums[nargs] = _parse_uint(line + start, pos - start, line, llen)
            else:
                _parse_uint(line + start, pos - start, line, llen)
            nargs += 1
        if shape == 1 or shape == 2:
            if nargs == 1:
                self._h_value = _int(nums[0])
                return 0
            if shape == 2 and nargs == 0:
                return 0
        elif shape == 3:
            if nargs == 2:
                self._h_value = _int(nums[0])
                self._h_len = nums[1]
                return 1
        elif nargs == 1:
            self._h_len = nums[0]
            return 1
        raise UnexpectedResponse("malformed reply %r" % (line[:llen],))


cdef class Core:
    """One connection's socket, read buffer and reply parser.

    A plain blocking stdlib socket gets IO straight on its descriptor without
    the GIL, with kernel timeouts (SO_RCVTIMEO/SO_SNDTIMEO) re-armed with the
    time left after a signal; any other socket object is used through its
    methods with Python-level timeouts, as in the twin.
    """

    cdef public object sock
    cdef object _timeout
    cdef Reader _reader          # the read buffer and the reply parser
    cdef public object broken
    cdef bint _busy
    cdef bint _closing           # close() was called
    cdef bint _released          # the socket is closed
    cdef object _pid
    cdef object _current         # timeout now in force on the socket
    cdef double _wait            # _current as clamped seconds, < 0: none
    cdef object _recv_into
    cdef int _fd                 # >= 0: IO straight on the descriptor, without the GIL
    cdef bint _short             # the kernel timeouts hold what was left after a signal
    cdef bint _at_base           # the socket timeouts are the plain per-command ones
    cdef int _hits               # > 0: try a receive without blocking first
    cdef unsigned int _probe     # receives since the last try without blocking

    def __init__(self, sock, timeout=None, max_body=MAX_BODY):
        if _COMMANDS is None:
            _load_commands()              # for execute's YAML path
        _prepare(sock)
        self._fd = -1
        if BSF_DIRECT_IO and _plain_socket(sock):
            self._fd = sock.fileno()
        self.sock = sock
        self._timeout = timeout
        self._reader = Reader(max_body)
        self.broken = None
        self._busy = False
        self._closing = False
        self._released = False
        self._pid = os.getpid()
        self._current = _UNSET
        self._wait = -1.0
        self._recv_into = sock.recv_into
        self._apply_timeout(timeout)

    @property
    def max_body(self):
        """The largest reply body accepted (the reader's limit)."""
        return self._reader.max_body

    @max_body.setter
    def max_body(self, value):
        self._reader.max_body = value

    @property
    def timeout(self):
        """The read timeout of every command (None: forever); a change
        takes effect on the next command."""
        return self._timeout

    @timeout.setter
    def timeout(self, value):
        self._timeout = value
        self._at_base = False

    cdef _apply_timeout(self, seconds):
        if seconds is not self._current and seconds != self._current:
            clamped = _clamp(seconds)
            self._wait = -1.0 if clamped is None else clamped
            if self._fd >= 0:
                _set_timeout(self.sock, self._slice())
            else:
                self.sock.settimeout(clamped)
            self._current = seconds
            self._short = False
        self._at_base = seconds == self._timeout

    cdef inline double _slice(self) noexcept:
        """The kernel timeout of one wait: the whole wait, at most WAIT_SLICE."""
        return WAIT_SLICE if self._wait < 0 or self._wait > WAIT_SLICE else self._wait

    cdef int _io_error(self, int err, double started, double wait) except -1:
        """Raise for a failed send/recv; return 0 to retry: after a signal,
        or when a slice of a longer wait (``wait`` s from ``started``, < 0:
        forever) ended. Signals are looked at in both cases, so a Ctrl-C
        that came just before the wait interrupts it within WAIT_SLICE."""
        cdef double left
        if err == BSF_EAGAIN or err == BSF_EWOULDBLOCK:
            if self.sock.gettimeout() is not None:
                # made non-blocking behind our back (conn._socket.settimeout):
                # the descriptor's mode belongs to the core, take it back
                self.sock.settimeout(None)
                return 0
        elif err != BSF_EINTR:
            raise OSError(err, os.strerror(err))
        PyErr_CheckSignals()              # raises KeyboardInterrupt on Ctrl-C
        if wait >= 0:
            left = wait - (bsf_now() - started)
            if left < WAIT_SLICE:
                self._rearm(left)
        return 0

    cdef _rearm(self, double left):
        """Kernel timeouts set to what is ``left`` of this wait (the kernel
        restarts them from zero after EINTR); socket.timeout when nothing is.
        The next wait restores the full timeout (see ``_restore``)."""
        if left <= 0:
            raise socket.timeout("timed out")
        _set_timeout(self.sock, left)
        self._short = True

    cdef _restore(self):
        _set_timeout(self.sock, self._slice())
        self._short = False

    cdef int _send(self, data) except -1:
        """Send all of ``data``, one buffer or a tuple of buffers sent in
        order without joining (EPIPE as an error, never SIGPIPE)."""
        cdef const char *p
        cdef Py_ssize_t n, r
        cdef int err = 0, fd = self._fd
        cdef double started, wait
        if type(data) is not bytes:
            if type(data) is tuple:
                return self._send_parts(<tuple>data)
            data = bytes(data)
        if fd < 0:
            _send_all(self.sock, data)
            return 0
        p = PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
        r = bsf_send_now(fd, p, n)          # usually all of it, with no GIL round trip
        if r > 0:
            p += r
            n -= r
        elif r < 0:
            err = bsf_errno()
            if err != BSF_EAGAIN and err != BSF_EWOULDBLOCK:
                self._io_error(err, 0.0, -1.0)
        if n == 0:
            return 0
        if self._short:
            self._restore()
        wait = self._wait
        started = bsf_now() if wait >= 0 else 0.0
        while n > 0:
            with nogil:
                r = bsf_send(fd, p, n)
                if r < 0:
                    err = bsf_errno()
            if r < 0:
                self._io_error(err, started, wait)
            else:
                p += r
                n -= r
                if n > 0:
                    PyErr_CheckSignals()      # a signal cut this send short: its handler now
        return 0

    cdef int _send_parts(self, tuple parts) except -1:
        """Send the buffers ``parts`` (at most 4) in order from their own
        memory with sendmsg: first a try that never blocks (the socket's
        buffer usually takes all of it: no GIL round trip), then what is
        left without the GIL: partial sends resumed, a signal's handler run
        and the timeout re-armed with what is left, as in ``_send``."""
        cdef Py_buffer views[4]
        cdef bsf_iovec iov[4]
        cdef bsf_iovec *v = iov
        cdef int cnt = 0, i, err = 0, fd = self._fd
        cdef Py_ssize_t r
        cdef bint tried = False
        cdef double started, wait
        if fd < 0:
            send_parts(self.sock, parts)
            return 0
        if len(parts) > 4:
            raise ValueError("at most 4 parts")
        try:
            for part in parts:
                PyObject_GetBuffer(part, &views[cnt], PyBUF_SIMPLE)
                iov[cnt].iov_base = views[cnt].buf
                iov[cnt].iov_len = <size_t>views[cnt].len
                cnt += 1
            if self._short:
                self._restore()
            wait = self._wait
            started = bsf_now() if wait >= 0 else 0.0
            i = cnt
            while i > 0:
                if tried:
                    with nogil:
                        r = bsf_sendv(fd, v, i, 0)
                        if r < 0:
                            err = bsf_errno()
                    if r < 0:
                        self._io_error(err, started, wait)
                        continue
                else:
                    tried = True
                    r = bsf_sendv(fd, v, i, 1)
                    if r < 0:
                        err = bsf_errno()
                        if err != BSF_EAGAIN and err != BSF_EWOULDBLOCK:
                            self._io_error(err, started, wait)
                        continue
                while i > 0 and <size_t>r >= v[0].iov_len:
                    r -= <Py_ssize_t>v[0].iov_len
                    v += 1
                    i -= 1
                if i > 0:
                    v[0].iov_base = <char *>v[0].iov_base + r
                    v[0].iov_len -= <size_t>r
                    PyErr_CheckSignals()      # a signal cut this send short: its handler now
        finally:
            for i in range(cnt):
                PyBuffer_Release(&views[i])
        return 0

    cdef Py_ssize_t _recv(self) except -1:
        """Read what is available (at least one byte, 0 at EOF) into the
        reader's free space; the reader is told of it by the caller. While
        replies keep being there already, they are taken without blocking
        and without giving up the GIL; else the GIL is given up for a
        blocking receive (in slices of at most WAIT_SLICE, see _io_error)."""
        cdef char *p
        cdef Py_ssize_t room, r
        cdef int err = 0, fd = self._fd
        cdef double wait
        cdef double started = 0.0
        cdef Reader reader = self._reader
        if fd < 0:
            view = reader.get_buffer(-1)
            try:
                return self._recv_into(view)
            finally:
                view.release()
        reader._make_room()
        p = PyByteArray_AS_STRING(reader._buf) + reader._end
        room = PyByteArray_GET_SIZE(reader._buf) - reader._end
        self._probe += 1
        if self._hits > 0 or self._probe % PROBE_EVERY == 0:
            self._probe = 0
            r = bsf_recv_now(fd, p, room)
            if r >= 0:
                self._hits = TRY_CREDIT
                return r
            err = bsf_errno()
            if err != BSF_EAGAIN and err != BSF_EWOULDBLOCK and err != BSF_EINTR:
                self._io_error(err, 0.0, -1.0)
            self._hits -= 2 if self._hits > 1 else self._hits
        if self._short:
            self._restore()
        wait = self._wait
        with nogil:
            if wait >= 0:
                started = bsf_now()
            while True:
                r = bsf_recv(fd, p, room)
                if r >= 0:
                    return r
                err = bsf_errno()
                with gil:
                    self._io_error(err, started, wait)

    cdef _deadline(self, extra):
        if extra is None or self._timeout is None:
            return None
        return self._timeout + extra

    cdef _enter(self):
        if self.broken is not None or self._busy:
            raise refusal(self.broken)
        self._busy = True

    cdef inline _leave(self):
        self._busy = False
        if self._closing:                 # close() came from another thread meanwhile
            self._release()

    cdef _fail(self, exc):
        """Mark broken and close the socket (so the server frees this
        connection's reservations now); the exception to raise."""
        self._release()
        reason, err = failure(exc, self._closing)
        if reason is not None:
            self.broken = reason
        return err

    cdef _release(self):
        """Close the socket once; its descriptor number is never used again."""
        self._fd = -1
        if not self._released:
            self._released = True
            try:
                self.sock.close()
            except OSError:
                pass

    def close(self, quit=False, reason="closed"):
        """Close the socket; the core stays broken (see the twin)."""
        if self.broken is None:
            self.broken = reason
            if quit and not self._busy:
                say_quit(self.sock)
        self._closing = True
        if self._busy and self._pid == os.getpid():
            wake(self.sock)                    # the blocked call releases the socket
        else:
            self._release()

    def request(self, data, extra=_NO_EXTRA):
        """Send one command, read its reply as ``(status, value, body)``."""
        self._exchange(data, extra, None)
        return self._reader._take()

    cdef int _exchange(self, data, extra, lost) except -1:
        """Send one command and wait for its reply, left parsed in the reader
        (see ``Reader._step``); a SocketError gets the note ``lost`` (what
        the lost reply leaves unknown) when given."""
        self._enter()
        try:
            if extra is not _NO_EXTRA and extra != 0:     # reserve(timeout=0): the base one
                self._apply_timeout(self._deadline(extra))
            elif not self._at_base:
                self._apply_timeout(self._timeout)
            self._send(data)
            self._await_reply()
        except BaseException as exc:
            err = self._fail(exc)
            if lost:
                note_lost_reply(err, lost)
            raise err from exc.__cause__
        finally:
            self._leave()
        return 0

    def pipeline(self, commands, list results, Py_ssize_t window=512,
                 Py_ssize_t max_bytes=WRITE_CHUNK):
        """Send ``commands``, appending each reply to ``results`` in order
        (see the twin for the contract); driven by ``run_window``, the twin's
        own driver compiled into this module."""
        if window < 1:
            raise ValueError("window must be at least 1")
        self._enter()
        try:
            self._apply_timeout(self._timeout)
            deferred = run_window(self._send_chunk, self._next_reply, self._read_buffered,
                                  commands, results, window, max_bytes)
        except BaseException as exc:
            raise self._fail(exc) from exc.__cause__
        finally:
            self._leave()
        if deferred is not None:
            raise deferred

    def _send_chunk(self, data):
        """``_send`` for ``run_window``."""
        self._send(data)

    def _read_buffered(self, list results, Py_ssize_t most):
        """Append replies to ``results`` while bytes of them are buffered, at
        most ``most``; how many (``run_window``'s ``read_buffered``)."""
        cdef Reader reader = self._reader
        cdef Py_ssize_t count = 0
        while count < most and reader._end > reader._pos:
            results.append(self._read_reply())
            count += 1
        return count

    def _next_reply(self, Py_ssize_t outstanding):
        """``_read_reply`` for ``run_window`` (``outstanding``: replies still
        due): when none has come yet and many are due, ``_nap`` first."""
        if outstanding >= NAP_MIN_OUTSTANDING and self._reader._end == self._reader._pos:
            self._nap(outstanding)
        return self._read_reply()

    cdef int _nap(self, Py_ssize_t outstanding) except -1:
        """Let ``outstanding`` replies gather, then take what has come (never
        blocking). Asleep in recv, the client is woken by every reply the
        server writes (a context switch on both sides per reply). So it first
        yields its CPU: when the server shares that CPU, it runs now and
        answers all it was sent. When little has come after that, the server
        runs elsewhere: the client sleeps NAP_SECONDS and finds a run of
        replies. Signal handlers run after the nap."""
        cdef Reader reader = self._reader
        cdef Py_ssize_t r
        cdef int fd = self._fd
        cdef char *p
        cdef Py_ssize_t room, got
        if fd < 0:
            return 0
        reader._make_room()
        p = PyByteArray_AS_STRING(reader._buf) + reader._end
        room = PyByteArray_GET_SIZE(reader._buf) - reader._end
        with nogil:
            bsf_yield()                       # on a shared CPU: the server runs now
            r = bsf_recv_now(fd, p, room)
            got = r if r > 0 else 0
            if r < 0 or 0 < got < NAP_FEW * outstanding:   # a few: the server runs elsewhere
                bsf_nap(NAP_SECONDS)
                r = bsf_recv_now(fd, p + got, room - got)  # errors and EOF: _recv meets them again
                if r > 0:
                    got += r
        reader._end += got
        PyErr_CheckSignals()                  # a signal during the nap: its handler now
        return 0

    cdef tuple _read_reply(self):
        """One reply, receiving straight into the reader's buffer until it is complete."""
        self._await_reply()
        return self._reader._take()

    cdef int _await_reply(self) except -1:
        """Receive until the reader holds a complete reply (see ``Reader._step``)."""
        cdef Reader reader = self._reader
        cdef Py_ssize_t n
        while not reader._step():
            n = self._recv()
            if n == 0:
                raise SocketError("connection closed by the server")
            reader._end += n
        return 0

    def execute(self, conn, cmd, data, arg=None):
        """Send one command for ``conn`` and return its result as ``cmd`` (a
        ``commands.Command``) defines it (see the twin). The usual results
        (a value, None, a Job) are made here; the others by ``cmd.finish``."""
        if not isinstance(cmd, tuple):
            raise TypeError("cmd must be a commands.Command")
        return self._execute(conn, <tuple>cmd, data, arg)

    cdef object _execute(self, conn, tuple c, data, arg):
        cdef Reader reader = self._reader
        wait = c[2]                        # c: (ok, kind, wait, lost, ...)
        if wait == 0:                      # WAIT_NONE
            self._exchange(data, _NO_EXTRA, c[3])
        else:                              # WAIT_ARG: arg seconds; WAIT_FOREVER: None
            self._exchange(data, arg if wait == 1 else None, c[3])
        status = reader._h_name
        value = reader._h_value
        body = reader._r_body
        reader._h_value = None
        reader._r_body = None
        if status == c[0]:
            kind = c[1]
            if kind == 0:                  # VALUE
                return value
            if kind == 1:                  # NOTHING
                return None
            if kind == 2 or kind == 3:     # RESERVED, PEEKED
                return _make_job(conn, value, body, kind == 2)
            if kind == 5:                  # YAML
                if (conn._parse is True and _PyType_Lookup(type(conn), "_yaml_value")
                        == <PyObject *>_YAML_VALUE):
                    return _parse_yaml(body, c[8])     # what _yaml_value does, without its frame
                return conn._yaml_value(body, c[8])
        return c.finish(status, value, body, conn, arg)


cdef inline object _int(unsigned long long v):
    """``v`` as an int; ids and counts fit a C long, which has the fast path."""
    if v <= <unsigned long long>LONG_MAX:
        return PyLong_FromLong(<long>v)
    return PyLong_FromUnsignedLongLong(v)


cdef unsigned long long _parse_uint(const char *p, Py_ssize_t n, const char *line,
                                    Py_ssize_t llen) except? ULLONG_MAX:
    """A reply's decimal integer in 0..2**64-1, else UnexpectedResponse."""
    cdef unsigned long long v = 0, d
    cdef Py_ssize_t i
    if n == 0 or n > 20:
        raise UnexpectedResponse("malformed integer in reply %r" % (line[:llen],))
    for i in range(n):
        d = <unsigned long long>(<unsigned char>p[i]) - 48
        if d > 9:
            raise UnexpectedResponse("malformed integer in reply %r" % (line[:llen],))
        if n == 20 and v > (ULLONG_MAX - d) // 10:    # only 20 digits can overflow
            raise UnexpectedResponse("integer out of range in reply %r" % (line[:llen],))
        v = v * 10 + d
    return v


# -- jobs (twin: _pyprotocol.JobBase) ----------------------------------------------

cdef object _UNDECODED = object()
cdef tuple _EMPTY = ()
cdef type _fast_job = None         # the last job type found to keep JobBase's construction
cdef object _CORE_EXECUTE = Core.__dict__["execute"]   # conn._run is usually it, bound


cdef class JobBase:
    """The part of ``job.Job`` a core provides: the attributes, the body
    decoded on first access, ``repr`` and ``delete``, here without a Python
    frame (the other methods are ``job.Job``'s). Twin: ``_pyprotocol.JobBase``."""

    cdef public object conn, jid, raw_body, reserved
    cdef object _body, _encoding

    def __init__(self, conn, jid, body, reserved=True, encoding=None):
        self.conn = conn
        self.jid = jid
        self.reserved = reserved
        self._encoding = encoding
        if isinstance(body, str):
            self._body = body
            self.raw_body = body.encode(encoding or "utf-8")
        else:
            self._body = _UNDECODED
            self.raw_body = body

    @property
    def body(self):
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
    def body(self, value):
        self._body = value

    def __repr__(self):
        return "<%s %r %s>" % (type(self).__name__, self.jid,
                               "reserved" if self.reserved else "unreserved")

    def delete(self):
        """Send ``delete`` for this job (``NotFound`` when it is gone or
        reserved by another connection); it is no longer reserved."""
        conn = self.conn
        # the stock Connection.delete (looked up on the type, as a call would): without its frame
        if _PyType_Lookup(type(conn), "delete") == <PyObject *>_CONN_DELETE:
            _delete(conn, self.jid)
        else:
            conn.delete(self.jid)
        self.reserved = False


cdef object _make_job(conn, jid, body, bint reserved):
    """``conn._job_type(conn, jid, body, reserved, conn.encoding)``, built
    here when the type keeps JobBase's ``__new__`` and ``__init__``."""
    return _build_job(conn._job_type, conn, jid, body, reserved, conn.encoding)


cdef object _build_job(job_type, conn, jid, body, bint reserved, encoding):
    """``job_type(conn, jid, body, reserved, encoding)``, built here when the
    type keeps JobBase's ``__new__`` and ``__init__``."""
    global _fast_job
    cdef JobBase job
    if job_type is not _fast_job:
        if not (isinstance(job_type, type) and issubclass(job_type, JobBase)
                and job_type.__init__ is JobBase.__init__
                and job_type.__new__ is JobBase.__new__):
            return job_type(conn, jid, body, reserved, encoding)
        _fast_job = job_type
    job = (<PyTypeObject *>job_type).tp_new(<type>job_type, <PyObject *>_EMPTY, NULL)
    job.conn = conn
    job.jid = jid
    job.reserved = reserved
    job._encoding = encoding
    job._body = _UNDECODED
    job.raw_body = body
    return job


# -- the hottest commands of the sync Connection, one call into C each -------------
# connection.py installs conn_put, conn_reserve, conn_delete and conn_stats as
# Connection's put, reserve, delete and stats. Each does what its Commands
# method does: through this core's Core when the connection runs on one (its
# _run is a Core's execute), else by calling the Commands method itself.

# The command definitions and the hot commands' fixed wire text, taken from
# beanstalkc_fast.commands on first use (commands imports the job module, which
# imports this one): defined there once, executed here.
cdef type _COMMANDS = None               # the Commands class (None: not loaded yet)
cdef object _PUT, _RESERVE, _RESERVE_TIMEOUT, _DELETE, _STATS    # commands.Command: tuples
cdef object _YAML_VALUE                  # YamlOption._yaml_value, as the class holds it
cdef frozenset _SERVER_STR_KEYS
cdef bytes _RESERVE_LINE, _RESERVE_TIMEOUT_PREFIX, _RESERVE_NOW, _DELETE_PREFIX, _STATS_LINE


cdef int _load_commands() except -1:
    global _PUT, _RESERVE, _RESERVE_TIMEOUT, _DELETE, _STATS, _COMMANDS
    global _YAML_VALUE, _SERVER_STR_KEYS
    global _RESERVE_LINE, _RESERVE_TIMEOUT_PREFIX, _RESERVE_NOW, _DELETE_PREFIX, _STATS_LINE
    from beanstalkc_fast import commands as c
    _PUT, _RESERVE, _RESERVE_TIMEOUT = c.PUT, c.RESERVE, c.RESERVE_TIMEOUT
    _DELETE, _STATS = c.DELETE, c.STATS
    _YAML_VALUE = c.YamlOption.__dict__["_yaml_value"]
    _SERVER_STR_KEYS = c.SERVER_STR_KEYS
    _RESERVE_LINE, _RESERVE_TIMEOUT_PREFIX = c.RESERVE_LINE, c.RESERVE_TIMEOUT_PREFIX
    _RESERVE_NOW, _DELETE_PREFIX, _STATS_LINE = c.RESERVE_NOW, c.DELETE_PREFIX, c.STATS_LINE
    _COMMANDS = c.Commands                # last: it says all the above are there
    return 0


cdef inline Core _fast_core(conn):
    """The Core whose ``execute`` is ``conn._run`` (bound), else None."""
    run = conn._run
    if PyMethod_Check(run) and PyMethod_GET_FUNCTION(run) == <PyObject *>_CORE_EXECUTE:
        return <Core>PyMethod_GET_SELF(run)
    return None


def conn_put(self, body, priority=2147483648, delay=0, ttr=120):
    """``Commands.put`` in one call."""
    if _COMMANDS is None:
        _load_commands()
    cdef Core core = _fast_core(self)
    if core is None:
        return _COMMANDS.put(self, body, priority, delay, ttr)
    # a bytes body is sent as is whatever the encoding: no need to look it up
    encoding = None if type(body) is bytes else self.encoding
    return core._execute(self, <tuple>_PUT, _encode_put_parts(body, priority, delay, ttr, encoding),
                         None)


def conn_reserve(self, timeout=None):
    """``Commands.reserve`` in one call."""
    if _COMMANDS is None:
        _load_commands()
    cdef Core core = _fast_core(self)
    cdef unsigned long long t
    if core is None:
        return _COMMANDS.reserve(self, timeout)
    if timeout is None:
        return core._execute(self, <tuple>_RESERVE, _RESERVE_LINE, None)
    t = _uint("timeout", timeout, 0xFFFFFFFFULL)
    if type(timeout) is not int:
        timeout = PyLong_FromUnsignedLongLong(t)
    return core._execute(self, <tuple>_RESERVE_TIMEOUT,
                         _RESERVE_NOW if t == 0 else _id_line(_RESERVE_TIMEOUT_PREFIX, t), timeout)


def conn_delete(self, jid):
    """``Commands.delete`` in one call."""
    return _delete(self, jid)


cdef object _delete(conn, jid):
    if _COMMANDS is None:
        _load_commands()
    cdef Core core = _fast_core(conn)
    if core is None:
        return _COMMANDS.delete(conn, jid)
    data = _id_line(_DELETE_PREFIX, _uint("job id", jid, ULLONG_MAX))
    return core._execute(conn, <tuple>_DELETE, data, None)


cdef object _CONN_DELETE = conn_delete


def conn_stats(self):
    """``Commands.stats`` in one call."""
    if _COMMANDS is None:
        _load_commands()
    cdef Core core = _fast_core(self)
    if core is None:
        return _COMMANDS.stats(self)
    return core._execute(self, <tuple>_STATS, _STATS_LINE, None)
