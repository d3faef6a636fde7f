"""What the cores and front ends share that is neither a command nor a core."""

import socket
from typing import Any, Optional


def set_keepalive(sock: Any, idle: Optional[int], interval: Optional[int],
                  count: Optional[int]) -> None:
    """SO_KEEPALIVE with the given idle time, probe interval and probe count
    (seconds; None: the OS default), and TCP_USER_TIMEOUT bounding how long
    sent data may stay unacknowledged (a command sent to a vanished host);
    options the platform lacks are skipped."""
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


def note_lost_reply(exc: BaseException, note: str) -> None:
    """Add to a SocketError what its lost reply leaves unknown (``note``,
    e.g. whether a job was inserted); not when nothing was sent
    (ConnectionBroken)."""
    from .errors import ConnectionBroken, SocketError
    if note and isinstance(exc, SocketError) and not isinstance(exc, ConnectionBroken) \
            and exc.args:
        exc.args = ("%s; %s" % (exc.args[0], note),) + exc.args[1:]
