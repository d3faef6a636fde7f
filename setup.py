"""Build the Cython core; fall back to the pure-Python core when it cannot be built.

BEANSTALKC_FAST_REQUIRE_EXTENSION=1 makes a failed build an error (CI, wheels);
BEANSTALKC_FAST_NO_EXTENSION=1 skips the extension on purpose.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE = bool(os.environ.get("BEANSTALKC_FAST_REQUIRE_EXTENSION"))
SKIP = bool(os.environ.get("BEANSTALKC_FAST_NO_EXTENSION"))


def extensions():
    if SKIP:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if os.path.exists("src/_protocol.c"):
            return [Extension("beanstalkc_fast._protocol", ["src/_protocol.c"])]
        if REQUIRE:
            raise
        return []
    return cythonize(
        [Extension("beanstalkc_fast._protocol", ["src/_protocol.pyx"])],
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False})


class OptionalBuildExt(build_ext):
    """build_ext that warns once and carries on when compiling fails."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, broken toolchain, ...
            self._give_up(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc):
        if REQUIRE:
            raise exc
        sys.stderr.write(
            "WARNING: beanstalkc_fast: the Cython core could not be built (%s); "
            "installing the pure-Python core, which is slower.\n" % (exc,))


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
