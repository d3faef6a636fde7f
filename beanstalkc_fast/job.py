"""Job: a job handed out by reserve or peek, with shortcuts to act on it."""

from typing import TYPE_CHECKING, Any, Optional

from ._impl import core as _core

if TYPE_CHECKING:
    from ._pyprotocol import JobBase
    from .connection import Connection
else:
    # the attributes and methods, from the core the package uses: the Cython
    # core builds its jobs and runs job.delete() without a Python frame
    JobBase = _core.JobBase


class Job(JobBase):
    """A job: ``jid``, ``body``, the ``conn`` it came from, and whether this
    connection holds it ``reserved``.

    Made by ``reserve``/``reserve_job`` (``reserved=True``) and the ``peek``
    commands (``reserved=False``). ``body`` is decoded with the connection's
    encoding on first access; a body that does not decode raises
    ``UnicodeDecodeError`` there, while ``raw_body`` (bytes) and every method
    still work, so no job is lost to a decoding error. With
    ``encoding=None`` ``body`` is the bytes.

    The methods (``delete``, ``release``, ``bury``, ``kick``, ``touch``,
    ``stats``) send one command on ``conn`` and raise what that
    ``Connection`` method raises.

    ``Job(conn, jid, body, reserved)`` builds one by hand as with beanstalkc
    (a str body is kept as given, ``raw_body`` is its UTF-8 encoding). Jobs
    take other attributes too (``job.data = ...``); a subclass (a connection's
    ``_job_type``) may override any method.
    """

    # no __slots__: the attributes users add live in a __dict__ made on
    # first use (the core's JobBase has none, so a job costs no dict)

    conn: "Connection"

    # delete(), the attributes and the body come from the core's JobBase

    def _priority(self) -> int:
        stats = self.conn._stats_job_dict(self.jid)
        return int(stats["pri"])

    def release(self, priority: Optional[int] = None, delay: int = 0) -> None:
        """Send ``release``: put this job back to ready (or delayed for ``delay``
        seconds), keeping its priority unless ``priority`` (0..2**32-1, 0 the
        most urgent) is given; keeping it costs a ``stats-job`` first.

        A no-op unless this connection holds the job reserved (``reserved``).
        """
        if self.reserved:
            pri = self._priority() if priority is None else priority
            self.conn.release(self.jid, pri, delay)
            self.reserved = False

    def bury(self, priority: Optional[int] = None) -> None:
        """Send ``bury``: set this job aside until kicked, keeping its priority
        unless ``priority`` (0..2**32-1) is given (a ``stats-job`` first).

        A no-op unless this connection holds the job reserved (``reserved``).
        """
        if self.reserved:
            pri = self._priority() if priority is None else priority
            self.conn.bury(self.jid, pri)
            self.reserved = False

    def kick(self) -> None:
        """Send ``kick-job``: make this job ready if it is buried or delayed
        (``NotFound`` otherwise)."""
        self.conn.kick_job(self.jid)

    def touch(self) -> None:
        """Send ``touch``: restart this job's TTR, so the server does not
        release it to another worker yet; a no-op unless reserved."""
        if self.reserved:
            self.conn.touch(self.jid)

    def stats(self) -> Any:
        """Send ``stats-job``: this job's statistics (see ``Connection.stats_job``);
        ``NotFound`` when the job is gone."""
        return self.conn.stats_job(self.jid)
