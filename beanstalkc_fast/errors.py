"""Exception hierarchy, compatible with beanstalkc and finer grained.

``except beanstalkc.CommandFailed`` keeps working for every server error;
the subclasses let a caller catch exactly one status.
"""

from typing import Any, Dict, List, Optional, Type, cast


class BeanstalkcException(Exception):
    """Base of every exception this package raises."""


class UnexpectedResponse(BeanstalkcException):
    """The server sent a reply that the command does not allow."""


class SocketError(BeanstalkcException):
    """The connection failed, timed out or was lost; it is now broken."""

    @staticmethod
    def wrap(exc: BaseException, message: str = "") -> "SocketError":
        err = SocketError(message or str(exc) or exc.__class__.__name__)
        err.__cause__ = exc
        return err


class ConnectionBroken(SocketError):
    """The connection was already broken by an earlier failure, ``close()``
    or ``fork()``; nothing of this command was sent."""


class DeadlineSoon(BeanstalkcException):
    """A job reserved by this connection is about to exceed its TTR."""


class CommandFailed(BeanstalkcException):
    """The server refused a command; args are ``(command, status, results)``."""

    status = ""

    @property
    def command(self) -> str:
        return cast(str, self.args[0])


class NotFound(CommandFailed):
    status = "NOT_FOUND"


class JobTooBig(CommandFailed):
    status = "JOB_TOO_BIG"


class Draining(CommandFailed):
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
    status = "NOT_IGNORED"


class ExpectedCRLF(CommandFailed):
    status = "EXPECTED_CRLF"


class BadFormat(CommandFailed):
    status = "BAD_FORMAT"


class UnknownCommand(CommandFailed):
    status = "UNKNOWN_COMMAND"


class OutOfMemory(CommandFailed):
    status = "OUT_OF_MEMORY"


class InternalError(CommandFailed):
    status = "INTERNAL_ERROR"


class ConcurrentUseError(BeanstalkcException):
    """Two threads used one connection at the same time."""


class BatchError(BeanstalkcException):
    """Some items of a batch failed. ``results`` holds, for every item in
    order, its result or the exception it raised."""

    def __init__(self, message: str, results: List[Any]) -> None:
        super().__init__(message, results)
        self.results = results

    @property
    def errors(self) -> List[BaseException]:
        return [r for r in self.results if isinstance(r, BaseException)]


ERROR_CLASSES: Dict[str, Type[CommandFailed]] = {
    cls.status: cls
    for cls in (NotFound, JobTooBig, Draining, Buried, NotIgnored, ExpectedCRLF,
                BadFormat, UnknownCommand, OutOfMemory, InternalError)
}


def command_failed(command: str, status: str, results: List[str]) -> CommandFailed:
    """The precise CommandFailed subclass for ``status``."""
    return ERROR_CLASSES.get(status, CommandFailed)(command, status, results)
