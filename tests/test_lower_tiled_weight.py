"""A weight tiled or expanded by constant repeats stays a read of the weight.

keras.io's masked autoencoder repeats its learned ``mask_token`` [1, 12] once per masked
patch (``tf.repeat`` with a constant count: tf2onnx's Tile of the initializer). The
lowering folded a Tile or Expand of any constant, so the token became a new constant
(12 copies, no initializer of its own, structural): the learned tensor was gone through
both doors. A weight (`Const.is_weight`) now stays in the graph, read and repeated at
run time, as every other op already keeps it; constants of a formula still fold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fusion_cases import assert_matches_ort, graph, node, optimized

TOKEN = np.random.default_rng(0).standard_normal((1, 1, 4)).astype(np.float32)


@pytest.mark.parametrize("op", ["Tile", "Expand"])
def test_a_tiled_weight_stays_one_parameter(op):
    reps = np.array([1, 3, 1] if op == "Tile" else [1, 3, 4], dtype=np.int64)
    model = graph(
        [node(op, ["token", "reps"], "tokens"), node("Add", ["x", "tokens"], "y")],
        {"x": ["N", 3, 4]},
        ["y"],
        {"token": TOKEN, "reps": reps},
    )
    module = optimized(model)
    (param,) = list(module.parameters())
    assert torch.equal(param.detach().reshape(TOKEN.shape), torch.from_numpy(TOKEN))
    assert_matches_ort(module, model)


def test_a_tiled_formula_constant_still_folds():
    """A one-element constant (a formula's, not a weight) tiled: folded, no node repeats it."""
    model = graph(
        [node("Tile", ["half", "reps"], "halves"), node("Mul", ["x", "halves"], "y")],
        {"x": ["N", 3]},
        ["y"],
        {"half": np.full((1, 1), 0.5, dtype=np.float32), "reps": np.array([1, 3], dtype=np.int64)},
    )
    module = optimized(model)
    assert not list(module.parameters())
    assert "repeat" not in module.code
    assert_matches_ort(module, model)
