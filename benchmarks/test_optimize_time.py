"""How long ``fxsurgeon.optimize()`` takes, against ``onnx2torch.convert()``, and how it grows with depth.

The models are ViT-Base-wide TFViTForImageClassification with 2, 4, 8, 12 and
24 encoder layers (12 is the seed ViT-Base itself); their exports take minutes
and are cached under ``.cache/bench/``. For each depth, one benchmark times
``onnx2torch.convert(onnx)`` and one ``fxsurgeon.optimize(from_onnx(onnx,
tf_model=...))`` (the conversion ``optimize`` starts from is not timed). Each
checks the module it made against TensorFlow (max abs 1e-4, batch 2) after
timing; nothing timed is asserted. The report fits time = a + b * layers.

Whole-run figures with pytest-benchmark, 3 rounds each (the report takes the
fastest), CPU only: the run under ``--device cuda`` skips them (``optimize``
runs on the CPU whatever the protocol).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import fxsurgeon
from benchmarks import harness, models
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.tensorflow import from_onnx

DEPTHS = (2, 4, 8, 12, 24)
GROUP = "optimize() vs onnx2torch.convert(), ViT-Base width, by depth"
ATOL = 1e-4
CONVERT_ROUNDS = 3
OPTIMIZE_ROUNDS = 3


@dataclass
class Depth:
    layers: int
    bench: models.BenchModel
    onnx: Any
    inputs: list[torch.Tensor]
    reference: np.ndarray


@pytest.fixture(scope="module")
def depth_model(protocol):
    """``depth_model(layers)`` -> `Depth`; one kept at a time (the tests run depth by depth)."""
    if protocol.name != harness.CPU.name:
        pytest.skip("optimize() timing runs on the CPU whatever the protocol: use --device cpu")
    _warm_up()
    tf = import_tensorflow()
    current: dict[int, Depth] = {}

    def get(layers: int) -> Depth:
        if layers not in current:
            current.clear()
            gc.collect()
            bench = models.build(f"vit_base_L{layers}")
            onnx = models.export(bench)
            inputs = bench.make_inputs(2, 1)
            (reference,) = bench.tf_call(
                bench.model, {k: tf.constant(v) for k, v in inputs.items()}
            )
            current[layers] = Depth(
                layers,
                bench,
                onnx,
                [torch.from_numpy(v) for v in inputs.values()],
                reference.numpy(),
            )
        return current[layers]

    yield get
    current.clear()


def _warm_up() -> None:
    """One-off costs (imports, pattern loading) on the tiny ViT, so the first depth does not pay them."""
    bench = models.build("vit_tiny")
    onnx = models.export(bench)
    import_onnx2torch().convert(onnx)
    fxsurgeon.optimize(from_onnx(onnx, tf_model=bench.model))


PAIRS = [(layers, kind) for layers in DEPTHS for kind in ("convert", "optimize")]


@pytest.mark.parametrize(
    ("layers", "kind"), PAIRS, ids=[f"L{layers}-{kind}" for layers, kind in PAIRS]
)
def test_transform_time(benchmark, depth_model, layers, kind):
    depth = depth_model(layers)
    benchmark.group = GROUP
    benchmark.extra_info.update(kind=kind, layers=layers, model=f"vit_base_L{layers}")
    if kind == "convert":
        convert = import_onnx2torch().convert
        with harness.OthersCpu() as others:
            module = benchmark.pedantic(
                convert, args=(depth.onnx,), rounds=CONVERT_ROUNDS, iterations=1
            )
    else:
        converted = from_onnx(depth.onnx, tf_model=depth.bench.model)
        with harness.OthersCpu() as others:
            module = benchmark.pedantic(
                fxsurgeon.optimize, args=(converted,), rounds=OPTIMIZE_ROUNDS, iterations=1
            )
        report = fxsurgeon.report_of(module)
        benchmark.extra_info.update(
            phases_s=dict(report.timings),
            nodes_before=report.nodes_before,
            nodes_after=report.nodes_after,
            matches=dict(report.matches),
        )
    benchmark.extra_info["others_cpu_share"] = others.share
    with torch.no_grad():
        out = module(*depth.inputs)
    diff = float(np.abs(out.numpy() - depth.reference).max())
    benchmark.extra_info["max_abs_diff"] = diff
    assert diff <= ATOL, f"{kind}, {layers} layers: max |out - TF| = {diff:.3g} > {ATOL:g}"
