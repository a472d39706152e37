"""Shared fixtures: the test-model zoo (tests/zoo.py), built and exported once per session."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import pytest  # noqa: E402
import zoo as _zoo  # noqa: E402  (tests/ is on sys.path: pytest puts conftest dirs there)


@pytest.fixture(scope="session")
def zoo():
    """The tests/zoo.py module."""
    return _zoo


@pytest.fixture(scope="session")
def zoo_model():
    """``zoo_model(name)`` -> the built `zoo.ZooModel` (shared: do not change its weights)."""
    return _zoo.build


@pytest.fixture(scope="session")
def zoo_onnx():
    """``zoo_onnx(name)`` -> its ONNX ModelProto (disk-cached export)."""
    return _zoo.export


@pytest.fixture
def zoo_gm():
    """``zoo_gm(name)`` -> a fresh copy of its GraphModule from ``from_onnx``, free to modify."""
    return lambda name: copy.deepcopy(_zoo.convert(name))
