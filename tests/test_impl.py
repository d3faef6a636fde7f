"""Which core the package picked."""

import os

import pytest

import beanstalkc_fast


def test_implementation_is_known():
    assert beanstalkc_fast.IMPLEMENTATION in ("cython", "python")


@pytest.mark.skipif(not os.environ.get("BEANSTALKC_FAST_EXPECT"),
                    reason="BEANSTALKC_FAST_EXPECT not set")
def test_implementation_matches_expectation():
    assert beanstalkc_fast.IMPLEMENTATION == os.environ["BEANSTALKC_FAST_EXPECT"]


@pytest.mark.skipif(os.environ.get("BEANSTALKC_FAST_REQUIRE_EXTENSION") != "1",
                    reason="BEANSTALKC_FAST_REQUIRE_EXTENSION not set")
def test_required_extension_is_used():
    assert beanstalkc_fast.IMPLEMENTATION == "cython"
    from beanstalkc_fast import _protocol  # noqa: F401


def test_core_fixture_matches_module(core):
    assert hasattr(core, "Core")
    for name in ("check_uint", "check_name", "encode_put", "encode_id", "parse_yaml"):
        assert callable(getattr(core, name))


def test_conn_uses_chosen_core(conn, core):
    assert isinstance(conn._core, core.Core)
