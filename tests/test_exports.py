"""The package's public names: everything documented is exported, nothing else leaks."""

import inspect
import os
import subprocess
import sys
import types

import beanstalkc_fast
from beanstalkc_fast import errors


def test_all_names_exist():
    for name in beanstalkc_fast.__all__:
        assert hasattr(beanstalkc_fast, name), name
    assert len(set(beanstalkc_fast.__all__)) == len(beanstalkc_fast.__all__)


def test_every_exception_class_is_exported():
    classes = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, BaseException)
               and obj.__module__ == errors.__name__}
    assert "DeadlineSoon" in classes and "NotFound" in classes
    assert classes <= set(beanstalkc_fast.__all__), classes - set(beanstalkc_fast.__all__)
    for name in classes:
        assert getattr(beanstalkc_fast, name) is getattr(errors, name)


def test_pipeline_is_public():
    assert beanstalkc_fast.Pipeline is beanstalkc_fast.connection.Pipeline
    assert "Pipeline" in beanstalkc_fast.__all__


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from beanstalkc_fast import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(beanstalkc_fast.__all__)


def test_no_helper_names_in_dir():
    """Public names in dir() are __all__ plus the package's own submodules
    (``typing`` names, ``os`` and module-level helpers must not show)."""
    leaked = [name for name in dir(beanstalkc_fast)
              if not name.startswith("_") and name not in beanstalkc_fast.__all__
              and not (isinstance(getattr(beanstalkc_fast, name), types.ModuleType)
                       and getattr(beanstalkc_fast, name).__name__.startswith("beanstalkc_fast."))]
    assert leaked == []


def test_pool_and_worker_loaded_on_first_use():
    # a program that only uses Connection does not load the asyncio front
    # end, the pool and the worker; the names work all the same
    code = ("import sys, beanstalkc_fast as b\n"
            "lazy = ('beanstalkc_fast.pool', 'beanstalkc_fast.worker', 'beanstalkc_fast.asyncio')\n"
            "print([m for m in lazy if m in sys.modules])\n"
            "print(b.Pool.__module__, b.PoolJob.__module__, b.Worker.__module__)\n"
            "print(b.Worker is sys.modules['beanstalkc_fast.worker'].Worker, 'Pool' in dir(b))\n"
            "try:\n    b.NoSuchName\nexcept AttributeError as e:\n    print(e)\n")
    where = os.path.dirname(os.path.dirname(os.path.abspath(beanstalkc_fast.__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=where),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines() == [
        "[]", "beanstalkc_fast.pool beanstalkc_fast.pool beanstalkc_fast.worker", "True True",
        "module 'beanstalkc_fast' has no attribute 'NoSuchName'"]
