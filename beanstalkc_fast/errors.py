"""Exception hierarchy, compatible with beanstalkc and finer grained.

``except beanstalkc.CommandFailed`` keeps working for every server error;
the subclasses let a caller catch exactly one status.
"""

from typing import Any, Dict, List, Optional, Type, cast


class BeanstalkcException(Exception):
    """Base of every exception this package raises, except the
    ``ValueError``/``TypeError`` of a bad argument (raised before sending)."""


class UnexpectedResponse(BeanstalkcException):
    """The server sent a reply that the command does not allow, or a
    malformed one; the connection is broken afterwards (``reconnect()``)."""


class SocketError(BeanstalkcException):
    """The connection failed, timed out or was lost; it is now broken.

    Call ``reconnect()`` (or use ``auto_reconnect=True``). Whether the
    command took effect is unknown; for ``put`` the message says so. After a
    batch, ``results`` holds what was confirmed before the loss.
    """

    @staticmethod
    def wrap(exc: BaseException, message: str = "") -> "SocketError":
        """A ``SocketError`` for the OS error ``exc`` (kept as its cause)."""
        err = SocketError(message or str(exc) or exc.__class__.__name__)
        err.__cause__ = exc
        return err


class ConnectionBroken(SocketError):
    """The connection was already broken by an earlier failure, ``close()``
    or ``fork()``; nothing of this command was sent."""


class DeadlineSoon(BeanstalkcException):
    """A job reserved by this connection is about to exceed its TTR.

    Raised by ``reserve`` (the server's ``DEADLINE_SOON`` reply, within a
    second of that job's TTR). Not a ``CommandFailed``; the connection stays
    usable: finish, ``touch()``, release or bury the job you hold, then
    reserve again.
    """


class CommandFailed(BeanstalkcException):
    """The server refused a command; args are ``(command, status, results)``.

    Base of one subclass per refusal status (``NotFound``, ``JobTooBig``,
    ...); the connection stays usable.
    """

    status = ""

    @property
    def command(self) -> str:
        """The command that failed, e.g. ``"delete"``."""
        return cast(str, self.args[0])


class NotFound(CommandFailed):
    """``NOT_FOUND``: no such job (or tube), or not in a state the command allows."""
    status = "NOT_FOUND"


class JobTooBig(CommandFailed):
    """``JOB_TOO_BIG``: the body is larger than the server's ``-z`` limit."""
    status = "JOB_TOO_BIG"


class Draining(CommandFailed):
    """``DRAINING``: the server is in drain mode and takes no new jobs."""
    status = "DRAINING"


class Buried(CommandFailed):
    """The server buried the job on put or release (out of memory for its
    priority queue); the job exists: its id is ``jid`` (None for release)."""

    status = "BURIED"

    @property
    def jid(self) -> Optional[int]:
        results = self.args[2]
        return int(results[0]) if results else None


class NotIgnored(CommandFailed):
    """``NOT_IGNORED``: the last watched tube cannot be ignored
    (``Connection.ignore`` returns 1 instead of raising it)."""
    status = "NOT_IGNORED"


class ExpectedCRLF(CommandFailed):
    """``EXPECTED_CRLF``: a job body was not followed by CRLF (a client bug)."""
    status = "EXPECTED_CRLF"


class BadFormat(CommandFailed):
    """``BAD_FORMAT``: the server could not parse the command (a client bug)."""
    status = "BAD_FORMAT"


class UnknownCommand(CommandFailed):
    """``UNKNOWN_COMMAND``: the server does not know the command (e.g.
    ``reserve-job`` on beanstalkd older than 1.12)."""
    status = "UNKNOWN_COMMAND"


class OutOfMemory(CommandFailed):
    """``OUT_OF_MEMORY``: the server could not allocate memory for the job."""
    status = "OUT_OF_MEMORY"


class InternalError(CommandFailed):
    """``INTERNAL_ERROR``: a bug in the server."""
    status = "INTERNAL_ERROR"


class BodyTypeError(TypeError, AssertionError):
    """A job body that is neither str nor bytes-like (or a str when the
    connection's encoding is None). A TypeError, and an AssertionError as
    beanstalkc raised: ``except TypeError`` and ``except AssertionError``
    both catch it. Nothing was sent."""


class ConcurrentUseError(BeanstalkcException):
    """Two threads used one connection at the same time.

    Nothing was sent; the connection is unharmed. Use one connection per
    thread.
    """


class BatchError(BeanstalkcException):
    """Some items of a batch failed. ``results`` holds, for every item in
    order, its result or the exception it raised.

    Raised by the ``*_many`` batches after every reply was read; the
    connection stays usable.
    """

    def __init__(self, message: str, results: List[Any]) -> None:
        super().__init__(message, results)
        self.results = results

    @property
    def errors(self) -> List[BaseException]:
        """The exception instances in ``results``."""
        return [r for r in self.results if isinstance(r, BaseException)]


ERROR_CLASSES: Dict[str, Type[CommandFailed]] = {
    cls.status: cls
    for cls in (NotFound, JobTooBig, Draining, Buried, NotIgnored, ExpectedCRLF,
                BadFormat, UnknownCommand, OutOfMemory, InternalError)
}


def command_failed(command: str, status: str, results: List[str]) -> CommandFailed:
    """The precise CommandFailed subclass for ``status``."""
    return ERROR_CLASSES.get(status, CommandFailed)(command, status, results)
