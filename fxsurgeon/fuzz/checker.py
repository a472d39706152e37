"""Checking one case: optimize it and compare against onnxruntime (and a float64 judge)."""

from __future__ import annotations

import math
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .graph import _F32, CHECK_SIZES, FuzzCase

# --------------------------------------------------------------------------- checking


@dataclass
class FuzzOutcome:
    """The verdict on one graph: ``status`` is pass / error / mismatch / crash / invalid."""

    seed: int
    status: str
    blocks: list[str]
    kind: str = ""  # the error's class and first words, for counting
    message: str = ""
    fired: dict[str, int] = field(default_factory=dict)
    declined: Counter = field(default_factory=Counter)
    unfused: Counter = field(default_factory=Counter)
    diagnosis: str = ""
    seconds: float = 0.0
    judged: bool = False  # passed by the float64 judge (see `check`)

    @property
    def bad(self) -> bool:
        """A silent numeric change, a crash or an invalid graph: what the fuzzer hunts."""
        return self.status in ("mismatch", "crash", "invalid", "codegen")

    @property
    def repro(self) -> str:
        return f"python -m fxsurgeon fuzz --seed {self.seed} --count 1"


def _feeds(case: FuzzCase, batch: int, seq: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for name, dims, dtype in case.inputs:
        shape = tuple(batch if d == "N" else seq if d == "S" else int(d) for d in dims)
        if name == "ids":
            feeds[name] = rng.integers(0, case.vocab, shape).astype(np.int64)
        elif name == "attention_mask":
            lengths = rng.integers(1, shape[1] + 1, shape[0])
            feeds[name] = (np.arange(shape[1])[None, :] < lengths[:, None]).astype(_F32)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


#: block family -> the rules whose matches count one per block of that family
_FAMILY_RULES = {
    "linear": ("linear_matmul", "linear_gemm"),  # one per Dense; bias/tensordot come along
    "layer_norm": ("layer_norm_",),
    "rms_norm": ("rms_norm_",),
    "gelu_tanh": ("gelu_tanh_",),
    "gelu_erf": ("gelu_erf_",),
    "sdpa": ("sdpa_",),
    "reshape_noop": ("reshape_noop",),
    "permute": ("permute_",),
}


def _family_counts(fired: dict[str, int]) -> Counter:
    """Rule matches by the family names the blocks use."""
    out: Counter = Counter()
    for rule, n in fired.items():
        for family, prefixes in _FAMILY_RULES.items():
            if rule.startswith(prefixes):
                out[family] += n
    return out


def check(
    case: FuzzCase,
    *,
    patterns: Sequence[str] | None = None,
    diagnose: bool = True,
    codegen: bool = False,
) -> FuzzOutcome:
    """Optimize the case's graph and compare it with onnxruntime at `CHECK_SIZES`.

    With ``codegen``, a graph that passes is also written as model.py
    (`fxsurgeon.save`), loaded back and run on the same inputs: its outputs
    must equal the optimized GraphModule's bit for bit (status ``codegen``
    otherwise, a bug like a mismatch).
    """
    import onnx
    import onnxruntime as ort

    from ..errors import FxSurgeonError
    from ..frontdoor import from_onnx
    from ..pipeline import optimize, report_of
    from ..verify import verify

    start = time.perf_counter()
    outcome = FuzzOutcome(case.seed, "pass", list(case.blocks))
    try:
        onnx.checker.check_model(case.model, full_check=True)
        session = ort.InferenceSession(
            case.model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        rng = np.random.default_rng([case.seed, 7])
        feeds = [_feeds(case, batch, seq, rng) for batch, seq in CHECK_SIZES]
        output_names = [o.name for o in session.get_outputs()]
        expected = [dict(zip(output_names, session.run(None, f), strict=True)) for f in feeds]
    except Exception as exc:  # noqa: BLE001 - any rejection of the graph is the generator's fault
        outcome.status, outcome.kind = "invalid", type(exc).__name__
        outcome.message = f"the generated graph is not valid ONNX: {type(exc).__name__}: {exc}"
        outcome.seconds = time.perf_counter() - start
        return outcome
    converted = None
    try:
        converted = from_onnx(case.model)
        optimized = optimize(converted, patterns=patterns)
        outcome.fired = dict(report_of(optimized).matches)
        report = verify(optimized, expected, inputs=feeds, scale_atol=True)
    except FxSurgeonError as exc:
        outcome.status, outcome.kind = "error", _error_kind(exc)
        outcome.message = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - anything else is a bug to report
        outcome.status, outcome.kind = "crash", type(exc).__name__
        outcome.message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    else:
        problems = [r.message for r in report.results if not r.passed]
        problems += [
            f"output {r.output!r}: dtype {r.dtype}, onnxruntime gives {r.ref_dtype}"
            for r in report.results
            if r.passed and r.dtype != r.ref_dtype
        ]
        shapes_ok = all(r.shape == r.ref_shape and r.dtype == r.ref_dtype for r in report.results)
        if problems and shapes_ok and _float64_judge(case, optimized, feeds, expected):
            outcome.judged = True
            problems = []
        if problems:
            outcome.status, outcome.kind = "mismatch", "mismatch"
            outcome.message = "; ".join(problems[:3])
            if diagnose and converted is not None:
                outcome.diagnosis = _diagnose(converted, case, feeds, expected, patterns)
    if codegen and outcome.status == "pass":
        _check_codegen(outcome, optimized, case, feeds)
    fired = _family_counts(outcome.fired)
    if outcome.status != "pass":  # nothing was fused or declined: optimize did not finish
        outcome.seconds = time.perf_counter() - start
        return outcome
    for family, n in case.near.items():
        left = max(0, case.exact[family] + n - fired[family])
        outcome.declined[family] += min(n, left)
    for family, n in case.exact.items():
        if family in ("linear", "layer_norm", "rms_norm", "gelu_tanh", "gelu_erf", "sdpa"):
            outcome.unfused[family] += max(0, n - fired[family])
    outcome.seconds = time.perf_counter() - start
    return outcome


def _check_codegen(outcome: FuzzOutcome, optimized: Any, case: FuzzCase, feeds: list) -> None:
    """model.py of ``optimized`` must load and give its outputs bit for bit.

    A `CodegenError` is a clear error (not a bug) only when optimize's report
    lists an onnx2torch module it left unconverted: model.py cannot import onnx2torch.
    """
    import tempfile

    import torch

    from ..codegen import CodegenError
    from ..pipeline import report_of
    from ..save import load, save

    order = [name for name, _, _ in case.inputs]
    try:
        with tempfile.TemporaryDirectory(prefix="fxsurgeon-fuzz-") as folder:
            inputs = tuple(torch.from_numpy(feeds[0][n]) for n in order)
            save(optimized, folder, example_inputs=inputs)
            loaded = load(folder)
            for feed in feeds:
                inputs = tuple(torch.from_numpy(feed[n]) for n in order)
                with torch.no_grad():
                    expected, got = optimized(*inputs), loaded(*inputs)
                expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
                got = list(got) if isinstance(got, (list, tuple)) else [got]
                for i, (e, g) in enumerate(zip(expected, got, strict=True)):
                    _assert_bitwise(i, e, g)
    except CodegenError as exc:
        if not report_of(optimized).unconverted:
            _codegen_failed(outcome, exc)
            return
        # optimize left an onnx2torch module (its report says which): a clear error, no bug
        outcome.status, outcome.kind = "error", _error_kind(exc)
        outcome.message = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other failure of model.py is a codegen bug
        _codegen_failed(outcome, exc)


def _codegen_failed(outcome: FuzzOutcome, exc: BaseException) -> None:
    outcome.status, outcome.kind = "codegen", f"codegen: {type(exc).__name__}"
    outcome.message = f"model.py: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"


def _assert_bitwise(index: int, expected: Any, got: Any) -> None:
    if (got.dtype, got.shape) != (expected.dtype, expected.shape):
        raise AssertionError(
            f"output {index}: {got.dtype}{list(got.shape)}, the GraphModule's "
            f"{expected.dtype}{list(expected.shape)}"
        )
    if expected.is_floating_point() and not expected.isnan().equal(got.isnan()):
        raise AssertionError(f"output {index}: NaNs in other places")
    if not expected.nan_to_num().equal(got.nan_to_num()):
        diff = (expected.double() - got.double()).abs().nan_to_num().max()
        raise AssertionError(f"output {index} differs from the GraphModule's by {diff:.3g}")


#: A float32 result passes the float64 judge when its max error against the float64
#: truth is at most the fp32 tolerance plus this many times onnxruntime's own error.
JUDGE_FACTOR = 4.0


def _float64_judge(case: FuzzCase, optimized: Any, feeds: list, expected: list) -> bool:
    """True when the optimized model is about as close to exact arithmetic as onnxruntime.

    Some graphs amplify float32 rounding (a norm over values that nearly cancel,
    LogSoftmax then LayerNorm): two correct float32 implementations then differ
    by more than 1e-5 x scale. The graph is run once more in float64 (onnx's
    reference evaluator on a float64 copy) as the truth; the model passes when,
    for every output, ``max |model - truth| <= tol + JUDGE_FACTOR * max |ort - truth|``.
    A real change of the numbers (a wrong constant, a dropped term) is orders of
    magnitude over onnxruntime's own error and still fails.
    """
    import torch
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(_float64_model(case.model))
        names = [o.name for o in case.model.graph.output]
        order = [name for name, _, _ in case.inputs]
        for feed, ort_out in zip(feeds, expected, strict=True):
            wide = {k: v.astype(np.float64) if v.dtype == _F32 else v for k, v in feed.items()}
            truth = dict(zip(names, evaluator.run(None, wide), strict=True))
            with torch.no_grad():
                got = optimized(*(torch.from_numpy(feed[n]) for n in order))
            got = list(got) if isinstance(got, (list, tuple)) else [got]
            for name, value in zip(names, got, strict=True):
                ref, exact = ort_out[name].astype(np.float64), truth[name].astype(np.float64)
                mine = value.detach().numpy().astype(np.float64)
                finite = np.abs(ref[np.isfinite(ref)])
                tol = 1e-5 * max(1.0, float(finite.max()) if finite.size else 1.0)
                if _max_error(mine, exact) > tol + JUDGE_FACTOR * _max_error(ref, exact):
                    return False
    except Exception:  # noqa: BLE001 - no judgement: the mismatch stands
        return False
    return True


def _max_error(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    with np.errstate(invalid="ignore"):
        diff = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))
    return float(np.nan_to_num(diff, nan=math.inf).max()) if diff.size else 0.0


def _float64_model(model: Any) -> Any:
    """A copy of the fuzz graph computing in float64 (initializers, inputs, outputs, Casts)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    graph = wide.graph
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT:
            value = numpy_helper.to_array(tensor).astype(np.float64)
            graph.initializer[i].CopyFrom(numpy_helper.from_array(value, tensor.name))
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    del graph.value_info[:]
    for node in graph.node:
        for attribute in node.attribute:
            if (
                node.op_type == "Cast"
                and attribute.name == "to"
                and attribute.i == TensorProto.FLOAT
            ):
                attribute.i = TensorProto.DOUBLE
    return wide


def _error_kind(exc: BaseException) -> str:
    """The error's class and the first words of its reason (node names left out), for counting."""
    first = str(exc).split("\n")[0]
    if "while lowering" in first:  # "while lowering %node = ...: reason"
        first = first.rsplit(": ", 1)[-1]
    elif "failed at node" in first:  # "...failed at node %n = ...(...): RuntimeError: reason"
        first = "running the model failed: " + first.rsplit("): ", 1)[-1]
    words = " ".join(first.split()[:10])
    return f"{type(exc).__name__}: {words}"


def _diagnose(converted: Any, case: FuzzCase, feeds: list, expected: list, patterns: Any) -> str:
    """Which rewrite (or the lowering) broke the graph, by `fxsurgeon.bisect` against onnxruntime."""
    from ..verify import bisect

    try:
        result = bisect(converted, expected, inputs=feeds, patterns=patterns)
    except Exception as exc:  # noqa: BLE001 - the diagnosis must not hide the finding
        return f"bisect failed: {type(exc).__name__}: {exc}"
    text = result.message
    if result.rewrite is not None:
        text += "\n" + result.rewrite.describe()
    return text
