"""What the front ends share that is neither a command nor a core: socket options."""

import socket
from typing import Any


def set_keepalive(sock: Any, idle: int, interval: int, count: int) -> None:
    """SO_KEEPALIVE with the given idle time, probe interval and probe count
    (seconds), and TCP_USER_TIMEOUT bounding how long sent data may stay
    unacknowledged (a command sent to a vanished host); options the platform
    lacks are skipped."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                       ("TCP_KEEPCNT", count)):
        if hasattr(socket, opt):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
            except OSError:
                pass
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            int((idle + interval * count) * 1000))
        except OSError:
            pass
