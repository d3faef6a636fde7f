"""Job: a job handed out by reserve or peek, with shortcuts to act on it."""

from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from .connection import Connection


class Job:
    """A job: ``jid``, ``body``, the ``conn`` it came from, and whether this
    connection holds it ``reserved``.

    ``body`` is decoded with the connection's encoding on first access; a body
    that does not decode raises there, while ``raw_body`` and every method
    still work, so no job is lost to a decoding error.
    """

    __slots__ = ("conn", "jid", "raw_body", "reserved", "_body", "_encoding")

    def __init__(self, conn: "Connection", jid: int, body: bytes,
                 reserved: bool = True, encoding: Optional[str] = None) -> None:
        self.conn = conn
        self.jid = jid
        self.raw_body = body
        self.reserved = reserved
        self._encoding = encoding
        self._body: Any = None

    @property
    def body(self) -> Union[str, bytes]:
        if self._encoding is None:
            return self.raw_body
        if self._body is None:
            self._body = self.raw_body.decode(self._encoding)
        return self._body

    def __repr__(self) -> str:
        return "<Job %d %s>" % (self.jid, "reserved" if self.reserved else "unreserved")

    def _priority(self) -> int:
        stats = self.conn._stats_job_dict(self.jid)
        return int(stats["pri"])

    def delete(self) -> None:
        """Delete this job."""
        self.conn.delete(self.jid)
        self.reserved = False

    def release(self, priority: Optional[int] = None, delay: int = 0) -> None:
        """Release this job back to ready (keeping its priority unless given);
        a no-op unless this connection holds it reserved."""
        if self.reserved:
            pri = self._priority() if priority is None else priority
            self.conn.release(self.jid, pri, delay)
            self.reserved = False

    def bury(self, priority: Optional[int] = None) -> None:
        """Bury this job (keeping its priority unless given); a no-op unless
        this connection holds it reserved."""
        if self.reserved:
            pri = self._priority() if priority is None else priority
            self.conn.bury(self.jid, pri)
            self.reserved = False

    def kick(self) -> None:
        """Kick this job if it is buried or delayed."""
        self.conn.kick_job(self.jid)

    def touch(self) -> None:
        """Ask for more time to work on this job; a no-op unless reserved."""
        if self.reserved:
            self.conn.touch(self.jid)

    def stats(self) -> Any:
        """Statistics of this job (see ``Connection.stats_job``)."""
        return self.conn.stats_job(self.jid)
