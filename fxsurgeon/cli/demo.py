"""The demo: the article's ViT through TF -> ONNX -> onnx2torch -> fxsurgeon.

Prints a before/after table: onnx2torch modules, fx nodes, trainable
parameters, max difference against TensorFlow, whether
``torch.compile(fullgraph=True)`` works, and eager latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..examples import seed_vit
from ..frontdoor import from_tensorflow
from ..pipeline import count_onnx2torch_modules, optimize, report_of

__all__ = ["run_demo"]


def _step(message: str) -> Callable[[], None]:
    print(f"- {message} ...", end="", flush=True)
    start = time.perf_counter()
    return lambda: print(f" {time.perf_counter() - start:.1f} s", flush=True)


def _latency(module: torch.nn.Module, inputs: torch.Tensor) -> float:
    from torch.utils.benchmark import Timer

    with torch.no_grad():
        timer = Timer(
            "m(x)", globals={"m": module, "x": inputs}, num_threads=torch.get_num_threads()
        )
        return timer.blocked_autorange(min_run_time=1.0).median


def _compiles(
    module: torch.nn.Module, inputs: torch.Tensor, expected: np.ndarray
) -> tuple[str, float]:
    try:
        compiled = torch.compile(module, fullgraph=True)
        with torch.no_grad():
            out = compiled(inputs).numpy()
    except Exception as exc:  # the point of the column is to show the failure
        return f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}", float("nan")
    return "yes", float(np.abs(out - expected).max())


def run_demo(tiny: bool = False, compile: bool = True, batch_size: int = 2) -> dict[str, Any]:
    """Run the whole path on the seed ViT and print the before/after table."""
    done = _step(
        f"building TFViTForImageClassification ({'tiny' if tiny else 'ViT-Base'}, random weights)"
    )
    example = seed_vit(tiny=tiny)
    done()
    done = _step("exporting with tf2onnx and converting with onnx2torch")
    converted = from_tensorflow(example.model, example.input_signature)
    done()
    done = _step("fxsurgeon.optimize")
    start = time.perf_counter()
    optimized = optimize(converted)
    optimize_s = time.perf_counter() - start
    done()

    inputs = example.make_inputs(batch_size, seed=1)
    expected = example.tf_outputs(inputs)
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        diff_before = float(np.abs(converted(x).numpy() - expected).max())
        diff_after = float(np.abs(optimized(x).numpy() - expected).max())

    report = report_of(optimized)
    rows = {
        "onnx2torch modules": (
            sum(count_onnx2torch_modules(converted).values()),
            sum(report.onnx2torch_after.values()),
        ),
        "fx nodes": (report.nodes_before, report.nodes_after),
        "trainable parameters": (report.trainable_before, report.trainable_after),
        "max |diff| vs TF": (diff_before, diff_after),
    }
    if compile:
        done = _step("torch.compile(fullgraph=True), both models")
        rows["compile(fullgraph=True)"] = (  # type: ignore[assignment]
            _compiles(converted, x, expected)[0],
            _compiles(optimized, x, expected)[0],
        )
        done()
    done = _step("timing eager forward passes")
    before_s, after_s = _latency(converted, x), _latency(optimized, x)
    done()
    rows[f"latency (ms, batch {batch_size})"] = (before_s * 1e3, after_s * 1e3)

    print()
    print(
        f"{example.name}: {example.trainable_parameters:,} trainable TF parameters; optimize() took {optimize_s:.1f} s"
    )
    print(f"{'':28} {'onnx2torch':>22} {'fxsurgeon':>22}")
    for name, (before, after) in rows.items():
        print(f"{name:28} {_fmt(before):>22} {_fmt(after):>22}")
    if report.matches:
        print("fusions: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.matches.items())))
    return {"rows": rows, "optimize_s": optimize_s, "tf_parameters": example.trainable_parameters}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1e-2 or value != value else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)[:22]
