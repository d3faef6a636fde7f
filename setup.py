"""Build the Cython core; fall back to the pure-Python core when it cannot be built.

Environment:
  BEANSTALKC_FAST_REQUIRE_EXTENSION=1  a failed extension build is an error (CI, wheels)
  BEANSTALKC_FAST_NO_EXTENSION=1       skip the extension on purpose (pure-Python install)

Without Cython, the generated ``src/_protocol.c`` shipped in the sdist is compiled instead.
Metadata lives in pyproject.toml.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:  # setuptools >= 59 vendors distutils; the names below live in both places
    from setuptools.errors import (CCompilerError, CompileError, ExecError as DistutilsExecError,
                                   PlatformError as DistutilsPlatformError)
except ImportError:  # pragma: no cover - old setuptools
    from distutils.errors import (CCompilerError, CompileError, DistutilsExecError,
                                  DistutilsPlatformError)

HERE = os.path.dirname(os.path.abspath(__file__))
PYX = os.path.join("src", "_protocol.pyx")
C_SOURCE = os.path.join("src", "_protocol.c")
MODULE = "beanstalkc_fast._protocol"


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


REQUIRE = _flag("BEANSTALKC_FAST_REQUIRE_EXTENSION")
SKIP = _flag("BEANSTALKC_FAST_NO_EXTENSION")
BUILD_ERRORS = (CCompilerError, CompileError, DistutilsExecError, DistutilsPlatformError,
                ValueError, OSError)

if REQUIRE and SKIP:
    sys.exit("beanstalkc_fast: BEANSTALKC_FAST_REQUIRE_EXTENSION and BEANSTALKC_FAST_NO_EXTENSION "
             "are both set; pick one")

_warned = []


def warn_pure_python(reason):
    """The one warning a fallback install prints (or the error, when the extension is required)."""
    if REQUIRE:
        raise SystemExit("beanstalkc_fast: the Cython core could not be built and "
                         "BEANSTALKC_FAST_REQUIRE_EXTENSION=1 is set: %s" % (reason,))
    if _warned:
        return
    _warned.append(reason)
    bar = "*" * 78
    sys.stderr.write(
        "\n%s\nWARNING: beanstalkc_fast: the Cython core could not be built (%s).\n"
        "Installing the pure-Python core instead: same API, slower.\n"
        "Install a C compiler and Python headers (Debian: apt-get install build-essential "
        "python3-dev) and reinstall to get it.\n%s\n\n" % (bar, reason, bar))


def extensions():
    if SKIP:
        sys.stderr.write("beanstalkc_fast: BEANSTALKC_FAST_NO_EXTENSION set, "
                         "installing the pure-Python core only\n")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        cythonize = None
    if cythonize is not None and os.path.exists(os.path.join(HERE, PYX)):
        try:
            return cythonize(
                [Extension(MODULE, [PYX])],
                compiler_directives={"language_level": 3, "boundscheck": False,
                                     "wraparound": False},
                quiet=True)
        except Exception as exc:  # Cython compile error: a broken .pyx, not a missing compiler
            if REQUIRE:
                raise
            warn_pure_python("cythonize failed: %s" % (exc,))
            return []
    if os.path.exists(os.path.join(HERE, C_SOURCE)):  # sdist without Cython: the generated C
        return [Extension(MODULE, [C_SOURCE])]
    warn_pure_python("neither Cython nor %s is available" % (C_SOURCE,))
    return []


class OptionalBuildExt(build_ext):
    """build_ext that warns once and carries on when compiling fails (msgpack/aiohttp pattern)."""

    def run(self):
        try:
            super().run()
        except BUILD_ERRORS as exc:  # e.g. DistutilsPlatformError: no compiler at all
            warn_pure_python("%s: %s" % (type(exc).__name__, exc))

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            self._failed.append(ext.name)
            warn_pure_python("%s: %s" % (type(exc).__name__, exc))

    def initialize_options(self):
        super().initialize_options()
        self._failed = []

    def copy_extensions_to_source(self):  # --inplace: copy only what was built
        built = self.extensions
        self.extensions = [ext for ext in built if ext.name not in self._failed]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = built


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
