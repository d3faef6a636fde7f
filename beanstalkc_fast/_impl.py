"""Which protocol core the package uses, chosen once: the Cython core
(``_protocol``, built from ``src/_protocol.pyx``) when it imports, else its
pure-Python twin (``_pyprotocol``). ``BEANSTALKC_FAST_PUREPYTHON=1`` forces the
twin; ``BEANSTALKC_FAST_REQUIRE_EXTENSION=1`` makes a missing extension an
error. Each connection can also be handed a core of its own (``core=``)."""

import os

from . import _pyprotocol
from ._interface import CoreModule

# mypy checks that _pyprotocol provides everything a CoreModule promises
# (tests/test_interface.py checks both cores at run time)
core: CoreModule
IMPLEMENTATION: str


def _flag(name: str) -> bool:
    """An environment flag as setup.py reads it: unset, empty, 0, false, no are off."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


if _flag("BEANSTALKC_FAST_PUREPYTHON"):
    core, IMPLEMENTATION = _pyprotocol, "python"
else:
    try:
        from . import _protocol  # type: ignore[attr-defined]
        core, IMPLEMENTATION = _protocol, "cython"
    except ImportError:
        if _flag("BEANSTALKC_FAST_REQUIRE_EXTENSION"):
            raise
        core, IMPLEMENTATION = _pyprotocol, "python"
