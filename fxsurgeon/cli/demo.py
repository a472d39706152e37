"""The demo: the article's ViT through TF -> ONNX -> onnx2torch -> fxsurgeon.

Prints a before/after table (onnx2torch's GraphModule vs the model.py that
convert writes): onnx2torch modules, fx nodes, trainable parameters, max
difference against TensorFlow, whether ``torch.compile(fullgraph=True)`` works,
eager latency, and the latency of onnxruntime on the exported graph and of the
native transformers twin (``ViTForImageClassification``, same config and weights).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..examples import native_twin, seed_vit
from ..frontdoor import ONNX2TORCH_WARNINGS_KEY, export_onnx, from_onnx
from ..pipeline import LazyOptimized, count_onnx2torch_modules, optimize, report_of
from ..save import load, save
from .progress import _Steps

__all__ = ["run_demo"]


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


@contextlib.contextmanager
def native_logs_to(path: str) -> Iterator[None]:
    """Send what C/C++ code writes to file descriptor 2 into ``path``; Python's stderr stays.

    TensorFlow's and XLA's C++ loggers write to fd 2 before absl is initialised
    (``cudart_stub``, ``cpu_feature_guard``, grappler's session lines), whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says. fd 2 goes to the file; ``sys.stderr`` is rebound
    to a duplicate of the original descriptor, so Python's own messages still show.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)


def _quiet_python_loggers() -> None:
    """transformers' notice that its TF classes are deprecated, inductor's "no CUDA runtime"."""
    for name in ("transformers", "torch.utils.cpp_extension"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()


def _quietly(function: Any, *args: Any) -> Any:
    """Run onnx2torch's modules with their UserWarnings (about its own indexing) kept silent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"onnx2torch(\.|$)")
        return function(*args)


def run_demo(tiny: bool = False, compile: bool = True, batch_size: int = 2) -> dict[str, Any]:
    """Run convert's path on the seed ViT and print the before/after table.

    The steps are the ones ``fxsurgeon convert`` runs (export with tf2onnx,
    onnx2torch, optimize, save model.py + safetensors, load model.py), shown
    with the same progress display. TensorFlow's and tf2onnx's Python logs are
    silenced by the front door, their C++ log lines go to ``native-stderr.log``
    in the demo folder (`native_logs_to`), onnx2torch's warnings are counted,
    not printed.
    """
    folder = tempfile.mkdtemp(prefix="fxsurgeon-demo-")
    native_log = os.path.join(folder, "native-stderr.log")
    with native_logs_to(native_log):
        return _run(folder, native_log, tiny, compile, batch_size)


def _run(folder: str, native_log: str, tiny: bool, compile: bool, batch_size: int) -> dict:
    _quiet_python_loggers()
    steps = _Steps(quiet=False)
    kind = "tiny" if tiny else "ViT-Base"
    with steps.step("build", f"building TFViTForImageClassification ({kind}, random weights)"):
        example = seed_vit(tiny=tiny)
    with steps.step("export", "exporting to ONNX with tf2onnx"):
        proto = export_onnx(example.model, example.input_signature)
    with steps.step("onnx2torch", "converting with onnx2torch"):
        converted = from_onnx(proto, tf_model=example.model)
    with steps.step("optimize", "optimizing (fxsurgeon.optimize)"):
        optimized = _quietly(optimize, converted)  # it runs onnx2torch's modules
        assert not isinstance(optimized, LazyOptimized)  # from_onnx records the inputs: eager
    with steps.step("save", f"writing {folder}/model.py and model.safetensors"):
        save(optimized, folder)
    loaded = load(folder)

    inputs = example.make_inputs(batch_size, seed=1)
    expected = example.tf_outputs(inputs)
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        diff_before = float(np.abs(_quietly(converted, x).numpy() - expected).max())
        diff_after = float(np.abs(loaded(x).numpy() - expected).max())

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
        with steps.step("compile", "torch.compile(fullgraph=True), both models"):
            rows["compile(fullgraph=True)"] = (  # type: ignore[assignment]
                _quietly(_compiles, converted, x, expected)[0],
                _compiles(loaded, x, expected)[0],
            )
    with steps.step("latency", "timing eager passes, onnxruntime, the native twin"):
        before_s, after_s = _quietly(_latency, converted, x), _latency(loaded, x)
        ort_s = _ort_latency(proto, inputs)
        twin = native_twin(example)
        with torch.no_grad():
            twin_diff = float(np.abs(twin(x).logits.numpy() - expected).max())
        twin_s = _latency(_Logits(twin), x)
    rows[f"latency (ms, batch {batch_size})"] = (before_s * 1e3, after_s * 1e3)

    warned = converted.meta.get(ONNX2TORCH_WARNINGS_KEY, [])
    print()
    print(
        f"{example.name}: {example.trainable_parameters:,} trainable TF parameters; "
        f"optimize() took {steps.timings['optimize']:.1f} s; model.py in {folder}"
    )
    print(f"{'':28} {'onnx2torch':>22} {'fxsurgeon':>22}")
    for name, (before, after) in rows.items():
        print(f"{name:28} {_fmt(before):>22} {_fmt(after):>22}")
    print(f"{'onnxruntime latency (ms)':28} {_fmt(ort_s * 1e3):>45}")
    twin_line = f"{_fmt(twin_s * 1e3)} (max |diff| vs TF {_fmt(twin_diff)})"
    print(f"{'native PyTorch twin (ms)':28} {twin_line:>45}")
    if report.matches:
        print("fusions: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.matches.items())))
    print(f"onnx2torch warnings while converting: {len(warned)} (captured, not printed)")
    print(f"TensorFlow's native log lines: in {native_log}")
    return {
        "rows": rows,
        "optimize_s": steps.timings["optimize"],
        "tf_parameters": example.trainable_parameters,
        "onnxruntime_s": ort_s,
        "native_s": twin_s,
        "native_diff": twin_diff,
        "onnx2torch_warnings": len(warned),
        "directory": folder,
    }


class _Logits(torch.nn.Module):
    """The twin's logits alone, so that it is timed on the same call as the others."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def _ort_latency(proto: Any, inputs: np.ndarray) -> float:
    """Median seconds of one onnxruntime run of the exported graph (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: inputs}
    session.run(None, feed)
    times: list[float] = []
    deadline = time.perf_counter() + 1.0
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1e-2 or value != value else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)[:22]
