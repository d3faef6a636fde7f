"""Types of the dicts ``stats()``, ``stats_tube()`` and ``stats_job()`` return.

Keys as the protocol names them (``protocol.txt``; beanstalkd 1.12 sends
exactly these), values typed as the built-in parser returns them: counters
int, ``rusage-*`` float, ``draining`` bool, names, versions and ids str.
With ``parse_yaml=False`` or a parser of your own the methods return what
that gives, which is why they are annotated ``Union[ServerStats, Any]``
and so on: a type checker still sees the keys and their value types.

The keys hold hyphens, so these use the functional ``TypedDict`` syntax.
"""

from typing import TypedDict

__all__ = ["ServerStats", "TubeStats", "JobStats"]

ServerStats = TypedDict("ServerStats", {
    "current-jobs-urgent": int,
    "current-jobs-ready": int,
    "current-jobs-reserved": int,
    "current-jobs-delayed": int,
    "current-jobs-buried": int,
    "cmd-put": int,
    "cmd-peek": int,
    "cmd-peek-ready": int,
    "cmd-peek-delayed": int,
    "cmd-peek-buried": int,
    "cmd-reserve": int,
    "cmd-reserve-with-timeout": int,
    "cmd-delete": int,
    "cmd-release": int,
    "cmd-use": int,
    "cmd-watch": int,
    "cmd-ignore": int,
    "cmd-bury": int,
    "cmd-kick": int,
    "cmd-touch": int,
    "cmd-stats": int,
    "cmd-stats-job": int,
    "cmd-stats-tube": int,
    "cmd-list-tubes": int,
    "cmd-list-tube-used": int,
    "cmd-list-tubes-watched": int,
    "cmd-pause-tube": int,
    "job-timeouts": int,
    "total-jobs": int,
    "max-job-size": int,
    "current-tubes": int,
    "current-connections": int,
    "current-producers": int,
    "current-workers": int,
    "current-waiting": int,
    "total-connections": int,
    "pid": int,
    "version": str,
    "rusage-utime": float,
    "rusage-stime": float,
    "uptime": int,
    "binlog-oldest-index": int,
    "binlog-current-index": int,
    "binlog-records-migrated": int,
    "binlog-records-written": int,
    "binlog-max-size": int,
    "draining": bool,
    "id": str,
    "hostname": str,
    "os": str,
    "platform": str,
})
ServerStats.__doc__ = "The reply to ``stats``: the server's counters and identity."

TubeStats = TypedDict("TubeStats", {
    "name": str,
    "current-jobs-urgent": int,
    "current-jobs-ready": int,
    "current-jobs-reserved": int,
    "current-jobs-delayed": int,
    "current-jobs-buried": int,
    "total-jobs": int,
    "current-using": int,
    "current-watching": int,
    "current-waiting": int,
    "cmd-delete": int,
    "cmd-pause-tube": int,
    "pause": int,
    "pause-time-left": int,
})
TubeStats.__doc__ = "The reply to ``stats-tube``: one tube's counters."

JobStats = TypedDict("JobStats", {
    "id": int,
    "tube": str,
    "state": str,            # "ready", "delayed", "reserved" or "buried"
    "pri": int,
    "age": int,
    "delay": int,
    "ttr": int,
    "time-left": int,
    "file": int,
    "reserves": int,
    "timeouts": int,
    "releases": int,
    "buries": int,
    "kicks": int,
})
JobStats.__doc__ = "The reply to ``stats-job``: one job's state and counters."
