"""What a core module provides, written down once.

Both cores (``src/_protocol.pyx`` compiled to ``beanstalkc_fast._protocol``,
and ``beanstalkc_fast._pyprotocol``) implement :class:`CoreModule`; mypy checks
the pure-Python one statically (``__init__.py`` binds it to a ``CoreModule``
variable) and ``tests/test_interface.py`` checks both at run time: names,
signatures where Cython exposes them, and a little behaviour.

Optional: a core may also provide ``conn_put``, ``conn_reserve``,
``conn_delete`` and ``conn_stats`` (the Cython core does). ``connection.py``
then installs them as ``Connection.put``/``reserve``/``delete``/``stats``:
each must do exactly what the
``commands.Commands`` method does (calling it when the connection runs on
another core), with the same signature and checks, in one call, executing
the ``commands`` module's definitions and sending its wire text
(``RESERVE_LINE``, ``DELETE_PREFIX``, ...), never a copy.
"""

import socket
from typing import (Any, Callable, FrozenSet, Iterable, Iterator, List, Optional, Protocol, Tuple,
                    Type, Union)

# A parsed reply: (status, value, body). value is an int (id, count), a str
# (tube name) or None; body is the job or YAML body, or None.
Reply = Tuple[str, Any, Optional[bytes]]

# What a core sends as one command: one buffer, or (what ``encode_put_parts``
# makes of a big body) a tuple of buffers sent in order without being joined.
Data = Union[bytes, Tuple[Any, ...]]


class CoreConnection(Protocol):
    """One connection's socket, read buffer and reply parser (``Core(...)``)."""

    sock: socket.socket
    timeout: Optional[float]
    max_body: int
    broken: Optional[str]        # None while usable, else why it is broken

    def request(self, data: Data, extra: Optional[float] = 0.0) -> Reply:
        """Send one command, read its reply; ``extra``: how long the server may
        legitimately wait before answering (None: indefinitely)."""
        ...

    def execute(self, conn: Any, cmd: Any, data: Data, arg: Any = None) -> Any:
        """Send one command for ``conn`` and return its result as ``cmd`` (a
        ``commands.Command``) defines it; the fast path of the front ends."""
        ...

    def pipeline(self, commands: Iterable[bytes], results: List[Reply],
                 window: int = 512, max_bytes: int = 1 << 18) -> None:
        """Send ``commands``, appending each reply to ``results`` in order."""
        ...

    def close(self, quit: bool = False, reason: str = "closed") -> None:
        """Close the socket; the core stays broken (``broken`` = ``reason``
        unless it already was). ``quit``: first send ``quit`` on a healthy
        idle connection. Safe from another thread."""
        ...


class ReplyReader(Protocol):
    """The sans-IO reply reader (``Reader(...)``): owns the read buffer, turns
    received bytes into complete replies, does no IO."""

    max_body: int

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Writable free space after the unread bytes (at least one byte);
        the view is for one receive: use it only until ``buffer_updated`` or
        the next ``get_buffer`` (the Cython core's view does not hold the
        buffer)."""
        ...

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last ``get_buffer()``."""
        ...

    def feed(self, data: bytes) -> None:
        """Copy ``data`` into the buffer."""
        ...

    def next_reply(self) -> Optional[Reply]:
        """The next complete reply, or None when more bytes are needed."""
        ...

    def pending(self) -> int:
        """Bytes received but not yet returned as part of a reply."""
        ...

    def collect(self, results: List[Any], n: int, ok: str, kind: int,
                conn: Any) -> Tuple[int, Optional[Reply]]:
        """Settle up to ``n`` complete replies with status ``ok`` into
        ``results`` as ``kind`` (VALUE, NOTHING, RESERVED, PEEKED: jobs built
        as ``execute`` builds them); stop at the first other reply, returned
        not appended: ``(taken, that reply or None)``."""
        ...

    def settle(self, pending: Any) -> Tuple[int, int, Optional[Reply]]:
        """Settle the asyncio front end's single commands at the head of
        ``pending`` (tuples ``(future, command, arg, size)``) whose reply is
        success with a value or nothing, popping each and setting its future;
        stop at the first other reply: ``(popped, their sizes summed, that
        reply or None)``."""
        ...


class AsyncWindow(Protocol):
    """The write side of an asyncio connection (``Window(...)``, one source
    for both cores: ``_window.py``): what is written and not yet answered,
    who waits for room, the read deadline, and each call's awaitable made in
    one call into the core."""

    count: int                   # commands written, unanswered
    nbytes: int                  # their bytes
    progress: float              # when the reply stream last moved (loop time)
    broken: Optional[str]        # None while usable, else why it is broken
    auto_reconnect: bool
    timeout: Optional[float]     # the read deadline, seconds after progress
    timer: Any                   # its asyncio.TimerHandle, or None
    transport: Any
    loop: Any                    # the connection's event loop, and
    thread: Any                  # the thread that runs it (threading.get_ident)
    pending: Any                 # deque: the unanswered entries, in reply order
    waiters: Any                 # deque: calls waiting for room, in turn
    out: List[bytes]             # written this loop iteration, not yet flushed

    def run(self, conn: Any, cmd: Any, data: bytes, arg: Any = None) -> Any:
        """The awaitable of a call of ``cmd`` (sent as ``data``) on the asyncio
        connection ``conn``: written now when there is room, else queued or
        left to ``conn._send`` (the rules: ``_window.Window.run``)."""
        ...

    def has_room(self, size: int) -> bool:
        """Whether a command of ``size`` bytes may be written now."""
        ...

    def take(self, items: Iterator[bytes], out: List[bytes], sizes: List[int]) -> Any:
        """Move commands from ``items`` to ``out`` (their sizes to ``sizes``),
        counting each in, while the window has room for it; the first that
        did not fit, or None when ``items`` ran out. An exception of
        ``items`` propagates, the commands taken before it counted in."""
        ...

    def add(self, entry: Any, data: bytes) -> None:
        """Count a single command, sent as ``data``, and enqueue its ``entry``."""
        ...

    def enqueue(self, entry: Any, data: bytes, now: bool) -> None:
        """Append ``entry`` (its room counted) to ``pending`` and write ``data``."""
        ...

    def write(self, data: bytes, now: bool) -> None:
        """Write ``data`` now or with this loop iteration's other writes."""
        ...

    def flush(self) -> None:
        """Write what is queued (nothing once broken)."""
        ...

    def wake(self) -> None:
        """Grant room to the waiters it now fits, in order."""
        ...


class CoreModule(Protocol):
    """The module-level names a core provides."""

    MAX_BODY: int
    MAX_LINE: int
    MAX_UINT32: int
    READ_CHUNK: int
    WRITE_CHUNK: int
    SCATTER_MIN: int             # a put body this big is sent from its own buffer
    NAME_CHARS: FrozenSet[int]
    # the base of job.Job: attributes conn, jid, raw_body, reserved, body and
    # the job methods; the core builds jobs of a subclass directly
    JobBase: Type[Any]

    def Core(self, sock: socket.socket, timeout: Optional[float] = None,
             max_body: int = ...) -> CoreConnection:
        """A core owning ``sock`` (made blocking; timeouts set in the kernel)."""
        ...

    def Reader(self, max_body: int = ...) -> ReplyReader:
        """A sans-IO reply reader (the one a Core parses with)."""
        ...

    def Window(self, abandon: Callable[[Any], None], arm: Callable[[], None], limit: int,
               max_bytes: int, reserved: int) -> AsyncWindow:
        """An asyncio connection's window (see ``_window.Window``)."""
        ...

    @property
    def Call(self) -> type:
        """The type of ``Window.run``'s calls: an asyncio future that is also
        a coroutine (``_window.Call``; the twin's: ``_window.FutureCall``)."""
        ...

    def check_uint(self, name: str, value: Any, maximum: int = ...) -> int:
        """``value`` as a protocol integer in 0..maximum, or TypeError/ValueError."""
        ...

    def check_name(self, name: Any) -> bytes:
        """A tube name as bytes, checked against the protocol's rules."""
        ...

    def encode_body(self, body: Any, encoding: Optional[str]) -> bytes:
        """A job body as bytes: str encoded, bytes-like as is, else TypeError."""
        ...

    def encode_put(self, body: Any, priority: Any, delay: Any, ttr: Any,
                   encoding: Optional[str]) -> bytes:
        """The complete ``put`` command, header and body, in one buffer."""
        ...

    def encode_put_parts(self, body: Any, priority: Any, delay: Any, ttr: Any,
                         encoding: Optional[str]) -> Data:
        """``put`` as a Core sends it: ``encode_put``'s one buffer for a body
        under SCATTER_MIN bytes, else ``(header, body, b"\\r\\n")`` with the
        body's own buffer (never copied); for ``request``/``execute`` only."""
        ...

    def encode_id(self, verb: bytes, jid: Any) -> bytes:
        """``verb`` (with its trailing space) and a job id, as one command line."""
        ...

    def encode_ids(self, verb: bytes, ids: Iterable[Any]) -> List[bytes]:
        """``encode_id`` of every job id in ``ids`` (all checked before the
        list is returned), in order."""
        ...

    def parse_yaml(self, body: bytes, str_keys: FrozenSet[str] = ...) -> Any:
        """The typed value of a stats or list reply: a dict or a list of str."""
        ...
