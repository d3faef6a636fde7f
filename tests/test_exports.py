"""The package's public names: everything documented is exported, nothing else leaks."""

import inspect
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
