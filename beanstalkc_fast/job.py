"""Job: a job handed out by reserve or peek, with shortcuts to act on it."""

from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from .connection import Connection

_UNDECODED: Any = object()


class Job:
    """A job: ``jid``, ``body``, the ``conn`` it came from, and whether this
    connection holds it ``reserved``.

    ``body`` is decoded with the connection's encoding on first access; a body
    that does not decode raises there, while ``raw_body`` and every method
    still work, so no job is lost to a decoding error. ``Job(conn, jid, body,
    reserved)`` builds one by hand as with beanstalkc (a str body is kept as
    given, ``raw_body`` is its UTF-8 encoding). Jobs take other attributes too
    (``job.data = ...``).
    """

    __slots__ = ("conn", "jid", "raw_body", "reserved", "_body", "_encoding", "__dict__")

    def __init__(self, conn: "Connection", jid: int, body: Union[str, bytes],
                 reserved: bool = True, encoding: Optional[str] = None) -> None:
        self.conn = conn
        self.jid = jid
        self.reserved = reserved
        self._encoding = encoding
        if isinstance(body, str):
            self._body: Any = body
            self.raw_body = body.encode(encoding or "utf-8")
        else:
            self._body = _UNDECODED
            self.raw_body = body

    @property
    def body(self) -> Union[str, bytes]:
        """The body: str (decoded) unless the connection's encoding is None."""
        body = self._body
        if body is _UNDECODED:
            if self._encoding is None:
                return self.raw_body
            body = self._body = self.raw_body.decode(self._encoding)
        return body  # type: ignore[no-any-return]

    @body.setter
    def body(self, value: Any) -> None:
        self._body = value

    def __repr__(self) -> str:
        return "<%s %r %s>" % (type(self).__name__, self.jid,
                               "reserved" if self.reserved else "unreserved")

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
