"""``beanstalkc-fast top``: a live full-screen view of a server and its tubes.

Refreshes every ``interval`` seconds; put and delete rates are the change of
the server's counters between two samples. ``q`` quits; a terminal resize
redraws at the new size. Standard-library curses only.
"""

import os
import sys
import time
from typing import Any, Dict, List, Mapping, Optional

from beanstalkc_fast.cli import UsageError, table, tube_rows
from beanstalkc_fast.connection import Connection


class Sample:
    """One look at the server: when, its stats and its tubes' counts."""

    def __init__(self, conn: Connection) -> None:
        self.stats: Mapping[str, Any] = conn.stats()
        self.tubes: List[Dict[str, Any]] = tube_rows(conn)
        self.at = time.monotonic()


def rate(now: Sample, before: Optional[Sample], value_now: Any, value_before: Any) -> str:
    """Change per second between two samples, '-' without an earlier one."""
    if before is None or value_before is None or now.at <= before.at:
        return "-"
    return "%.1f" % (max(0, value_now - value_before) / (now.at - before.at),)


def uptime(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return ("%dd" % days if days else "") + "%02d:%02d:%02d" % (hours, rest // 60, rest % 60)


def screen_lines(now: Sample, before: Optional[Sample], where: str, interval: float,
                 width: int, height: int) -> List[str]:
    """The text of the screen, at most ``height`` lines."""
    s = now.stats
    b = before.stats if before is not None else {}
    lines = [
        "beanstalkd %s at %s  up %s  connections %d  %s" % (
            s.get("version", "?"), where, uptime(s.get("uptime", 0)),
            s.get("current-connections", 0), time.strftime("%H:%M:%S")),
        "jobs: ready %d  reserved %d  delayed %d  buried %d  urgent %d  total %d" % (
            s["current-jobs-ready"], s["current-jobs-reserved"], s["current-jobs-delayed"],
            s["current-jobs-buried"], s["current-jobs-urgent"], s["total-jobs"]),
        "per second: put %s  delete %s  reserve %s    tubes %d   (q quits)" % (
            rate(now, before, s["cmd-put"], b.get("cmd-put")),
            rate(now, before, s["cmd-delete"], b.get("cmd-delete")),
            rate(now, before, s["cmd-reserve"] + s["cmd-reserve-with-timeout"],
                 b["cmd-reserve"] + b["cmd-reserve-with-timeout"] if b else None),
            len(now.tubes)),
        "",
    ]
    old = {t["tube"]: t for t in before.tubes} if before is not None else {}
    rows = []
    for t in now.tubes:
        o = old.get(t["tube"], {})
        rows.append([t["tube"], t["ready"], t["reserved"], t["delayed"], t["buried"],
                     t["waiting"], "%ds" % t["paused"] if t["paused"] else "-",
                     rate(now, before if o else None, t["total-jobs"], o.get("total-jobs")),
                     rate(now, before if o else None, t["cmd-delete"], o.get("cmd-delete"))])
    body = table(["TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "WAITING", "PAUSED", "PUT/S",
                  "DEL/S"], rows, width=max(width - 1, 20))
    room = height - len(lines)
    if len(body) > room > 1:
        body = body[:room - 1] + ["... %d more tubes" % (len(body) - room + 1,)]
    return (lines + body)[:height]


def draw(scr: Any, lines: List[str]) -> None:
    import curses
    scr.erase()
    height, width = scr.getmaxyx()
    for y, text in enumerate(lines[:height]):
        try:
            scr.addnstr(y, 0, text, max(width - 1, 0))
        except curses.error:      # a tiny or just-shrunk window
            pass
    scr.refresh()


def _loop(scr: Any, conn: Connection, interval: float, where: str) -> int:
    import curses
    try:
        curses.curs_set(0)
    except curses.error:
        pass
    before: Optional[Sample] = None
    while True:
        now = Sample(conn)
        deadline = now.at + interval
        redraw = True
        while True:
            if redraw:
                height, width = scr.getmaxyx()
                draw(scr, screen_lines(now, before, where, interval, width, height))
                redraw = False
            left = deadline - time.monotonic()
            if left <= 0:
                break
            scr.timeout(max(1, int(left * 1000)))
            key = scr.getch()
            if key in (ord("q"), ord("Q")):
                return 0
            if key == curses.KEY_RESIZE:
                curses.update_lines_cols()
                redraw = True
        before = now


def run(conn: Connection, interval: float, where: str) -> int:
    """Show the live view until ``q``; the exit status. The terminal is
    restored however it ends."""
    if not interval > 0:
        raise UsageError("--interval must be positive")
    try:
        import curses
    except ImportError:
        raise UsageError("top needs the curses module, which this Python lacks") from None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("top needs a terminal (stdin and stdout)")
    for name in ("LINES", "COLUMNS"):   # curses would trust these over the real size
        os.environ.pop(name, None)
    try:
        result: int = curses.wrapper(_loop, conn, interval, where)
    except curses.error as exc:
        raise UsageError("cannot drive the terminal (TERM=%s): %s"
                         % (os.environ.get("TERM", ""), exc)) from None
    return result
