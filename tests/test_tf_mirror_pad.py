"""``tf.pad(x, paddings, "SYMMETRIC")`` (TF's MirrorPad SYMMETRIC) as reversed slices
concatenated around x (fxsurgeon/frontdoor/tf_mirror_pad.py): no Compress, sizes symbolic;
TF, onnxruntime, both doors and Inductor agree. REFLECT / CONSTANT pads, run-time paddings
and a Compress on a condition from the data keep their own paths."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import helper
from onnx_cases import assert_lowered, assert_matches_ort, init, make_model, tensor_info

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch, import_tensorflow

tf = import_tensorflow()
keras = pytest.importorskip("keras")
rng = np.random.default_rng(11)


class _Pad(keras.layers.Layer):
    def __init__(self, paddings, mode, **kwargs):
        super().__init__(**kwargs)
        self.paddings, self.mode = paddings, mode

    def call(self, x):
        return tf.pad(x, self.paddings, self.mode)


def _model(rank: int, paddings, mode: str, dtype: str = "float32"):
    x = keras.Input((None,) * (rank - 1), dtype=dtype, name="x")
    return keras.Model(x, _Pad(paddings, mode)(x))


def _export(model):
    proto = fxsurgeon.export_onnx(model)
    return proto, [n.op_type for n in proto.graph.node]


def _doors(model, proto):
    door_a = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    door_b = fxsurgeon.optimize(import_onnx2torch().convert(proto))
    return door_a, door_b


def _agree(model, proto, modules, x: np.ndarray) -> None:
    want = np.asarray(model(tf.constant(x)))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], want)
    for module in modules:
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


CASES = [  # rank, paddings, run-time shapes (pads up to the full edge of the smallest)
    (3, [[0, 0], [1, 2], [3, 0]], [(2, 3, 4), (1, 5, 3), (2, 2, 6)]),
    (3, [[0, 0], [0, 0], [0, 0]], [(2, 3, 4)]),
    (4, [[0, 0], [1, 1], [2, 2], [0, 0]], [(2, 4, 4, 3), (1, 2, 5, 1), (1, 6, 2, 2)]),
    (4, [[0, 0], [3, 0], [0, 1], [0, 2]], [(1, 3, 2, 2), (2, 5, 4, 3)]),
]


@pytest.mark.parametrize(("rank", "paddings", "shapes"), CASES)
def test_symmetric_pads_match_tf_without_compress_through_both_doors(rank, paddings, shapes):
    model = _model(rank, paddings, "SYMMETRIC")
    proto, ops = _export(model)
    assert "Compress" not in ops and "Pad" not in ops, ops
    modules = _doors(model, proto)
    for module in modules:
        assert_lowered(module)
    for shape in shapes:
        _agree(model, proto, modules, rng.standard_normal(shape).astype(np.float32))


def test_symmetric_pad_of_integers_matches_tf():
    model = _model(3, [[1, 1], [2, 0], [0, 3]], "SYMMETRIC", dtype="int32")
    proto, ops = _export(model)
    assert "Compress" not in ops and "Cast" not in ops, ops
    modules = _doors(model, proto)
    _agree(model, proto, modules, rng.integers(-9, 9, (2, 3, 4)).astype(np.int32))


def test_symmetric_pad_compiles_with_inductor_on_dynamic_sizes():
    model = _model(4, [[0, 0], [1, 2], [2, 1], [0, 0]], "SYMMETRIC")
    proto, _ = _export(model)
    for module in _doors(model, proto):
        compiled = torch.compile(module, fullgraph=True, backend="inductor", dynamic=True)
        for shape in [(2, 4, 5, 3), (1, 3, 6, 2)]:
            x = rng.standard_normal(shape).astype(np.float32)
            with torch.no_grad():
                got = compiled(torch.from_numpy(x)).numpy()
            np.testing.assert_array_equal(got, np.asarray(model(tf.constant(x))))


@pytest.mark.parametrize("mode", ["REFLECT", "CONSTANT"])
def test_reflect_and_constant_pads_stay_one_onnx_pad(mode):
    model = _model(3, [[0, 0], [1, 2], [2, 1]], mode)
    proto, ops = _export(model)
    pads = [n for n in proto.graph.node if n.op_type == "Pad"]
    assert len(pads) == 1 and "Concat" not in ops, ops
    modes = [a.s for a in pads[0].attribute if a.name == "mode"]
    assert (modes or [b"constant"]) == [mode.lower().encode()]  # ONNX's default: constant
    _agree(model, proto, _doors(model, proto), rng.standard_normal((2, 4, 5)).astype(np.float32))


class _WidthPad(keras.layers.Layer):
    def call(self, t, w):
        zeros = tf.zeros(2, tf.int32)
        return tf.pad(t, tf.stack([zeros, zeros, tf.concat([w, w], 0)]), "SYMMETRIC")


def test_symmetric_pads_computed_at_run_time_keep_tf2onnx_s_handler():
    """Paddings from the data are no constant widths: tf2onnx's Pad + Compress, as before."""
    x = keras.Input((None, None), name="x")
    width = keras.Input((), dtype="int32", name="w", batch_size=1)
    model = keras.Model([x, width], _WidthPad()(x, width))
    ops = [n.op_type for n in fxsurgeon.export_onnx(model).graph.node]
    assert "Compress" in ops, ops


def test_a_compress_on_a_condition_from_the_data_keeps_nonzero():
    """Compress(x, x[0] > 0) on axis 1: its size is read from the data (nonzero)."""
    nodes = [
        helper.make_node("Gather", ["x", "zero"], ["row"], axis=0),
        helper.make_node("Greater", ["row", "zero_f"], ["keep"]),
        helper.make_node("Compress", ["x", "keep"], ["y"], axis=1),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", np.float32, ["n", "m"])],
        [tensor_info("y", np.float32, None)],
        [init("zero", np.array(0, np.int64)), init("zero_f", np.array(0, np.float32))],
    )
    v = rng.standard_normal((2, 7)).astype(np.float32)
    module = assert_matches_ort(model, [v])
    assert any("nonzero" in str(n.target) for n in module.graph.nodes)
