"""beanstalkc_fast: a fast beanstalkd client with the classic beanstalkc API.

``import beanstalkc_fast as beanstalkc`` is all an existing beanstalkc user
changes. The wire work runs in a Cython core when it is built, else in its
pure-Python twin; ``IMPLEMENTATION`` says which (``"cython"`` or ``"python"``).
Set ``BEANSTALKC_FAST_PUREPYTHON=1`` to force the twin (``0``, ``false``,
``no`` or empty do not: read like setup.py reads its flags).
"""

__version__ = "0.1.0"

from importlib import import_module as _import_module
from typing import TYPE_CHECKING

from ._impl import IMPLEMENTATION, core as _core  # noqa: E402,F401

from .connection import (DEFAULT_HOST, DEFAULT_PORT, DEFAULT_PRIORITY,  # noqa: E402
                         DEFAULT_TTR, DEFAULT_TUBE_NAME, Connection, Pipeline, from_url)
from .endpoint import Endpoint, parse_url  # noqa: E402
from .errors import (BadFormat, BatchError, BeanstalkcException, BodyTypeError, Buried,  # noqa: E402
                     CommandFailed, ConcurrentUseError, ConnectionBroken, DeadlineSoon,
                     Draining, ExpectedCRLF, InternalError, JobTooBig, NotFound, NotIgnored,
                     OutOfMemory, SocketError, UnexpectedResponse, UnknownCommand)
from .job import Job  # noqa: E402
from .stats import JobStats, ServerStats, TubeStats  # noqa: E402

# imported on first use: a program that only uses Connection does not load the
# asyncio front end, the pool and the worker
_LAZY = {"Pool": ".pool", "PoolJob": ".pool", "Worker": ".worker"}
if TYPE_CHECKING:
    from .pool import Pool, PoolJob  # noqa: F401
    from .worker import Worker  # noqa: F401
else:
    def __getattr__(name):
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError("module %r has no attribute %r" % (__name__, name))
        value = getattr(_import_module(module, __name__), name)
        globals()[name] = value
        return value

    def __dir__():
        return sorted(set(globals()) | set(_LAZY))
del TYPE_CHECKING

__all__ = [
    "Connection", "Pipeline", "Job", "from_url", "parse_url", "Endpoint", "IMPLEMENTATION",
    "DEFAULT_HOST", "DEFAULT_PORT",
    "DEFAULT_PRIORITY", "DEFAULT_TTR", "DEFAULT_TUBE_NAME", "BeanstalkcException",
    "UnexpectedResponse", "CommandFailed", "DeadlineSoon", "SocketError", "Buried",
    "BatchError", "ConcurrentUseError", "ConnectionBroken", "NotFound", "JobTooBig",
    "Draining", "NotIgnored", "ExpectedCRLF", "BadFormat", "UnknownCommand", "OutOfMemory",
    "InternalError", "BodyTypeError", "Worker", "ServerStats", "TubeStats", "JobStats",
    "Pool", "PoolJob",
]
