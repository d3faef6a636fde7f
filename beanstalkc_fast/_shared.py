"""What the front ends share that is neither a command nor a core: socket
options and the note of a batch stopped by a bad item."""

import socket
from typing import Any, Optional


def set_keepalive(sock: Any, idle: Optional[int], interval: Optional[int],
                  count: Optional[int]) -> None:
    """SO_KEEPALIVE with the given idle time, probe interval and probe count
    (seconds; None: the OS default), and, when all three are given,
    TCP_USER_TIMEOUT bounding how long sent data may stay unacknowledged (a
    command sent to a vanished host); options the platform lacks are skipped."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                       ("TCP_KEEPCNT", count)):
        if value is not None and hasattr(socket, opt):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
            except OSError:
                pass
    if idle is not None and interval is not None and count is not None \
            and hasattr(socket, "TCP_USER_TIMEOUT"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            int((idle + interval * count) * 1000))
        except OSError:
            pass


def note_unsent(exc: BaseException, what: str, index: int) -> None:
    """Add to the message of ``exc``, raised for item ``index`` of a batch
    (a bad body, or an exception of the iterable), that the items before it
    were sent and answered and it and all after it were not."""
    note = ("%s item %d: the %d items before it were sent (their results, ids or "
            "exceptions, are in .results); it and all after it were not sent"
            % (what, index, index))
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = ("%s (%s)" % (exc.args[0], note),)
