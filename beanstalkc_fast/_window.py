"""The windowed pipeline driver of both blocking cores, written once.

The pure-Python core imports it; the Cython core compiles this very source
into itself (``include`` in ``src/_protocol.pyx``), where the ``cython.*``
annotations of the locals make them C integers (Python never evaluates the
annotations of local variables, so the twin runs without Cython installed).
"""

from typing import Any, Callable, Iterable, List, Optional

try:
    import cython  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - interpreted without Cython installed
    pass


def run_window(send: Callable[[bytes], Any], read_reply: Callable[[int], Any],
               read_buffered: Callable[[List[Any], int], int], commands: Iterable[bytes],
               results: List[Any], window: int, max_bytes: int) -> Optional[Exception]:
    """Send ``commands``, appending each reply to ``results`` in order
    (``read_reply(n)`` waits for the next, ``n`` replies being due).

    At most ``window`` commands and ``max_bytes`` bytes (or one larger
    command) are ever written but unanswered; the window is topped up once
    half of it is free, and replies already received are read before writing
    more (``read_buffered(results, most)`` appends up to ``most`` of them
    and returns how many), so neither side's buffers can fill up. An
    exception raised by the iterator stops the batch: the commands not yet
    written are dropped, every written one is answered, and the exception is
    returned for the core to raise.
    """
    w: cython.Py_ssize_t = window
    limit: cython.Py_ssize_t = max_bytes
    sent: cython.Py_ssize_t = 0
    done: cython.Py_ssize_t = 0
    inflight: cython.Py_ssize_t = 0
    size: cython.Py_ssize_t             # ring entries are read into it: C arithmetic
    more: cython.Py_ssize_t
    exhausted: cython.bint = False
    it = iter(commands)
    sizes: List[int] = [0] * w          # ring: size of each unanswered command
    pending: Optional[bytes] = None
    out: List[bytes] = []
    deferred: Optional[Exception] = None
    while True:
        if not exhausted and sent - done <= w // 2 and inflight <= limit // 2:
            while sent - done < w:
                if pending is None:
                    try:
                        pending = next(it, None)
                    except Exception as exc:
                        deferred = exc
                        while out:
                            out.pop()
                            sent -= 1
                            size = sizes[sent % w]
                            inflight -= size
                    if pending is None:
                        exhausted = True
                        break
                size = len(pending)
                if sent > done and inflight + size > limit:
                    break
                out.append(pending)
                sizes[sent % w] = size
                inflight += size
                sent += 1
                pending = None
            if out:
                send(b"".join(out))
                out.clear()
        if done == sent:
            if exhausted:
                return deferred
            continue
        results.append(read_reply(sent - done))
        size = sizes[done % w]
        inflight -= size
        done += 1
        if done < sent:
            more = read_buffered(results, sent - done)
            while more:
                size = sizes[done % w]
                inflight -= size
                done += 1
                more -= 1
