"""beanstalkc_fast: a fast beanstalkd client with the classic beanstalkc API.

``import beanstalkc_fast as beanstalkc`` is all an existing beanstalkc user
changes. The wire work runs in a Cython core when it is built, else in its
pure-Python twin; ``IMPLEMENTATION`` says which (``"cython"`` or ``"python"``).
Set ``BEANSTALKC_FAST_PUREPYTHON=1`` to force the twin.
"""

import os

from ._interface import CoreModule

__version__ = "0.1.0"

# mypy checks that _pyprotocol provides everything a CoreModule promises
# (tests/test_interface.py checks both cores at run time)
_core: CoreModule
if os.environ.get("BEANSTALKC_FAST_PUREPYTHON"):
    from . import _pyprotocol
    _core = _pyprotocol
    IMPLEMENTATION = "python"
else:
    try:
        from . import _protocol  # type: ignore[attr-defined]
        _core = _protocol
        IMPLEMENTATION = "cython"
    except ImportError:
        if os.environ.get("BEANSTALKC_FAST_REQUIRE_EXTENSION"):
            raise
        from . import _pyprotocol
        _core = _pyprotocol
        IMPLEMENTATION = "python"

from .connection import (DEFAULT_HOST, DEFAULT_PORT, DEFAULT_PRIORITY,  # noqa: E402
                         DEFAULT_TTR, DEFAULT_TUBE_NAME, Connection)
from .errors import *  # noqa: E402,F401,F403
from .errors import (BatchError, BeanstalkcException, Buried, CommandFailed, ConnectionBroken,  # noqa: E402,E501
                     ConcurrentUseError, DeadlineSoon, SocketError, UnexpectedResponse)
from .job import Job  # noqa: E402
from .stats import JobStats, ServerStats, TubeStats  # noqa: E402

__all__ = [
    "Connection", "Job", "IMPLEMENTATION", "DEFAULT_HOST", "DEFAULT_PORT",
    "DEFAULT_PRIORITY", "DEFAULT_TTR", "DEFAULT_TUBE_NAME", "BeanstalkcException",
    "UnexpectedResponse", "CommandFailed", "DeadlineSoon", "SocketError", "Buried",
    "BatchError", "ConcurrentUseError", "ConnectionBroken",
    "ServerStats", "TubeStats", "JobStats",
]
