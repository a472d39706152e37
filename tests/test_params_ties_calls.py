"""Ties of uniform values through a parent layer called twice (fxsurgeon/params/ties.py).

A Siamese network's embedding model applied to two images reads its one-channel
BatchNorm's single-element gamma (a uniform value: any scope difference splits it) under
``m/embedding_1/bn`` and ``m/embedding_3/bn``; its random conv kernel, read under
``m/embedding_1/conv`` and ``m/embedding_3/conv`` and tied, proves the two scopes calls of
one layer, so the gamma is one parameter. Without that proof, or where the scopes differ
otherwise, uniform reads stay split (tf2onnx merges equal variables of distinct layers).
"""

from __future__ import annotations

import torch
from torch import fx

from fxsurgeon.params.records import _Use
from fxsurgeon.params.ties import _tie_groups


def _read_in(scope: str, value: torch.Tensor, initializer: str) -> _Use:
    graph = fx.Graph()
    node = graph.get_attr(initializer)
    x = graph.placeholder("x")
    graph.call_function(torch.mul, (x, node))
    return _Use(
        node, node, tuple(range(value.dim())), value, tuple(value.shape), initializer, scope
    )


def _keys(uses: list[_Use]) -> list[tuple]:
    keys = _tie_groups(uses)
    return [keys[id(u)] for u in uses]


GAMMA = torch.tensor([1.0126])
KERNEL = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(0))


def _twice(first: str, second: str, bn_a: str = "bn", bn_b: str = "bn") -> list[_Use]:
    return [
        _read_in(f"m/{first}/{bn_a}/batchnorm", GAMMA, "gamma"),
        _read_in(f"m/{second}/{bn_b}/batchnorm", GAMMA, "gamma"),
    ]


def test_a_single_value_read_in_two_calls_of_one_proven_layer_is_one_parameter():
    gammas = _twice("embedding_1", "embedding_3")
    kernels = [
        _read_in("m/embedding_1/conv/convolution", KERNEL, "kernel"),
        _read_in("m/embedding_3/conv/convolution", KERNEL, "kernel"),
    ]
    keys = _keys([*gammas, *kernels])
    assert keys[0] == keys[1]
    assert keys[2] == keys[3]


def test_without_a_random_tie_the_single_value_stays_split():
    """Refusal: nothing proves ``embedding_1`` and ``embedding_3`` one layer."""
    keys = _keys(_twice("embedding_1", "embedding_3"))
    assert keys[0] != keys[1]


def test_a_tie_across_differently_named_parents_proves_nothing():
    """Refusal: a tied embedding read by ``encoder`` and ``decoder`` does not make their
    other sublayers one."""
    gammas = _twice("encoder", "decoder")
    table = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    tables = [
        _read_in("m/encoder/shared", table, "table"),
        _read_in("m/decoder/shared", table, "table"),
    ]
    keys = _keys([*gammas, *tables])
    assert keys[2] == keys[3]
    assert keys[0] != keys[1]


def test_different_sublayers_of_a_proven_layer_stay_split():
    """Refusal: ``bn_a`` and ``bn_b`` inside the one embedding layer are two layers whose
    equal (merged) values are two parameters."""
    gammas = _twice("embedding_1", "embedding_3", "bn_a", "bn_b")
    kernels = [
        _read_in("m/embedding_1/conv/convolution", KERNEL, "kernel"),
        _read_in("m/embedding_3/conv/convolution", KERNEL, "kernel"),
    ]
    keys = _keys([*gammas, *kernels])
    assert keys[0] != keys[1]
