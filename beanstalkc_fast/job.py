"""Job: a job handed out by reserve or peek, with shortcuts to act on it."""

from typing import TYPE_CHECKING

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

    __slots__ = ()

    conn: "Connection"
