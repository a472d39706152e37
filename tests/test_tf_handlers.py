"""tf2onnx's op handlers as the front door corrects them (fxsurgeon/frontdoor/tf_handlers.py).

onnxruntime runs the export and must give what TensorFlow gives, for every sign of the
operands; the corrections must hold on the first export of a fresh process too (tf2onnx
registers its handlers on import).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _Floors(keras.layers.Layer):
    def call(self, x, y):
        return [tf.math.floormod(x, y), tf.math.floordiv(x, y)]


def _floors_model(dtype: str):
    x = keras.Input((None,), dtype=dtype, name="x")
    y = keras.Input((None,), dtype=dtype, name="y")
    return keras.Model([x, y], _Floors()(x, y))


def _signed_pairs(dtype) -> dict[str, np.ndarray]:
    values = [-9, -8, -7, -4, -1, 0, 1, 3, 4, 7, 8]
    pairs = [(a, b) for a, b in itertools.product(values, values) if b != 0]
    x, y = (np.array([p[i] for p in pairs], dtype=dtype)[None, :] for i in (0, 1))
    return {"x": x, "y": y}


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_floor_mod_and_floor_div_match_tf_for_every_sign(dtype):
    """tf2onnx writes integer FloorMod/FloorDiv with ONNX's truncating Div: -4 % 8 gave -4."""
    model = _floors_model(dtype)
    inputs = _signed_pairs(dtype)
    want = [np.asarray(t) for t in model([tf.constant(v) for v in inputs.values()])]
    proto = fxsurgeon.export_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)
    for name, g, w in zip(("floormod", "floordiv"), got, want, strict=True):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    torch_out = module(*[torch.from_numpy(v) for v in inputs.values()])
    for name, g, w in zip(("floormod", "floordiv"), torch_out, want, strict=True):
        np.testing.assert_array_equal(g.numpy(), w, err_msg=f"optimized {name}")


def test_the_corrections_hold_on_the_first_export_of_a_process():
    """Select is written as Where and integer FloorMod as Mod on the very first export."""
    script = textwrap.dedent(
        """
        import fxsurgeon
        from fxsurgeon._compat import import_tensorflow
        tf = import_tensorflow()
        import keras

        class Ops(keras.layers.Layer):
            def call(self, x, n):
                masked = tf.where(x > 0, x, tf.fill(tf.shape(x), float("-inf")))
                return [masked, tf.math.floormod(n, tf.shape(n)[1])]

        x = keras.Input((4,), name="x")
        n = keras.Input((None,), dtype="int32", name="n")
        proto = fxsurgeon.export_onnx(keras.Model([x, n], Ops()(x, n)))
        print(sorted({node.op_type for node in proto.graph.node}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ops = eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list
    assert "Where" in ops and "Mod" in ops, ops
    assert "Div" not in ops, ops


def test_a_contrib_range_tf2onnx_writes_becomes_onnx_range_in_subgraphs_too():
    """tf2onnx may write a dynamic tf.range as com.microsoft Range without importing the
    domain: invalid. It is ONNX's Range (opset 11), given the ONNX domain; the model
    then checks and runs as np.arange."""
    import onnx
    from onnx import TensorProto, helper

    from fxsurgeon.frontdoor.export import _standard_contrib_ops

    def ranged(name: str) -> onnx.GraphProto:
        node = helper.make_node(
            "Range", ["start", "limit", "delta"], [name], domain="com.microsoft"
        )
        out = helper.make_tensor_value_info(name, TensorProto.INT64, [None])
        return helper.make_graph([node], f"{name}_graph", [], [out])

    branch = helper.make_node(
        "If", ["flag"], ["y"], then_branch=ranged("a"), else_branch=ranged("b")
    )
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, []) for n in ("start", "limit", "delta")
    ] + [helper.make_tensor_value_info("flag", TensorProto.BOOL, [])]
    graph = helper.make_graph(
        [branch], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.INT64, [None])]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(onnx.checker.ValidationError, match="com.microsoft"):
        onnx.checker.check_model(model)
    _standard_contrib_ops(model.graph)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"start": np.array(2), "limit": np.array(11), "delta": np.array(3)}
    (got,) = session.run(None, {**feeds, "flag": np.array(True)})
    np.testing.assert_array_equal(got, np.arange(2, 11, 3))
