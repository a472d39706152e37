"""Score ONE corpus model: ``python -m corpus.score NAME --out FILE.json``.

Each line of the scoreboard is a pass/fail with its figures and, on failure, a
one-line reason; an exception fails that line only (``Type: message``). Two
front doors are scored, each with its own lines:

* ``A``: ``fxsurgeon.tensorflow.from_onnx(export(name), tf_model=model)`` then
  ``fxsurgeon.optimize`` (what ``from_tensorflow`` does, with the cached export);
* ``B``: the design's one-liner ``fxsurgeon.optimize(onnx2torch.convert(onnx))``.

Lines per door: ``diff`` (every output vs TF at batch 1, 3 and each size),
``params`` (trainable count vs TF) and ``names`` (`corpus.learned`), ``onnx2torch_left``, ``compile_eager``,
``compile_inductor``, ``grads`` (`corpus.grads`: a gradient wherever TF's tape gives
one), ``fusion.<key>`` per nominal key,
``softmax_left`` (models with attention); door A also has ``convert`` (the
``fxsurgeon convert --example-inputs`` round trip, checked on the first case, loaded
with TF/onnx2torch/fxsurgeon blocked)
and ``bfloat16`` / ``half`` (a copy after ``.to(torch.bfloat16)`` / ``.half()``
runs every case, judged by `fxsurgeon.verify`'s fp64 rule, that of
torch._dynamo's accuracy checker, against the float32 optimized model).
``latency`` (``--latency``) is measured separately, 2 threads, after scoring: eager
fxsurgeon, `fxsurgeon.compile`'s inference form, raw onnx2torch, onnxruntime, the twin.
The record is JSON: ``{"name", "family", "lines": {"A.diff": {...}}, "wall": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import learned
from .grads import grads_line

ATOL = 1e-5
DOORS = ("A", "B")
FUSION_KEYS = ("sdpa", "layer_norm", "rms_norm", "gelu", "linear")
#: the half-precision lines of door A: line key -> how the copy is cast
PRECISIONS = ("bfloat16", "half")
CONVERT_TIMEOUT_S = 600
LATENCY_ROUNDS = 21

#: the blocked-import loader of the ``convert`` line: model.py + safetensors, nothing else
LOADER = """
import json, sys
BLOCKED = ("tensorflow", "onnx2torch", "fxsurgeon", "tf2onnx", "keras", "tf_keras")
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} cannot be imported in this process")
        return None
sys.meta_path.insert(0, Blocker())
import numpy as np
import torch
from safetensors.torch import load_file
outdir, data = sys.argv[1], sys.argv[2]
sys.path.insert(0, outdir)
import model as generated
plain = generated.Model()
plain.load_state_dict(load_file(f"{outdir}/model.safetensors"))
plain.eval()
arrays = np.load(data)
result = []
for case in json.loads(str(arrays["cases"])):
    inputs = [torch.from_numpy(arrays[k]) for k in case["inputs"]]
    with torch.no_grad():
        out = plain(*inputs)
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    if len(out) != len(case["outputs"]):
        raise SystemExit(f"{len(out)} outputs, TF has {len(case['outputs'])}")
    result.append([float(np.abs(o.numpy().astype(np.float64) - arrays[k]).max())
                   for o, k in zip(out, case["outputs"])])
print(json.dumps({"diffs": result, "imported": sorted(
    m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, shortened."""
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    return message if len(message) <= limit else message[: limit - 3] + "..."


def line(ok: bool | None, value: Any = None, reason: str = "", **extra: Any) -> dict[str, Any]:
    """One scoreboard line: ``ok`` True/False, None when not run."""
    return {"ok": ok, "value": value, "reason": reason, **extra}


class Scorer:
    """Computes the lines of one model; ``record()`` is the JSON record."""

    def __init__(self, name: str, *, doors: tuple[str, ...] = DOORS) -> None:
        self.name = name
        self.doors = doors
        self.lines: dict[str, dict[str, Any]] = {}
        self.wall: dict[str, float] = {}
        self.family = ""
        self.model: Any = None
        self.proto: Any = None
        self._optimized: dict[str, Any] = {}
        self._cases: list[tuple[str, dict[str, np.ndarray], list[np.ndarray]]] = []

    # ------------------------------------------------------------------ plumbing

    def run(self, key: str, compute: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        try:
            result = compute()
        except Exception as exc:  # noqa: BLE001 - one line fails, the rest go on
            result = line(False, reason=one_line(exc))
        result["seconds"] = round(time.perf_counter() - start, 2)
        self.lines[key] = result

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "lines": self.lines, "wall": self.wall}

    def expected_keys(self, door: str) -> list[str]:
        keys = ["diff", "params", "names", "onnx2torch_left", "compile_eager", "compile_inductor"]
        keys += ["grads"]
        keys += [f"fusion.{k}" for k in FUSION_KEYS if self.model and k in self.model.nominal]
        if self.model is not None and self.model.nominal.get("sdpa", 0) > 0:
            keys.append("softmax_left")
        if door == "A":
            keys += ["convert", *PRECISIONS]
        return [f"{door}.{k}" for k in keys]

    # ------------------------------------------------------------------ export

    def export(self) -> bool:
        from . import build

        start = time.perf_counter()
        try:
            family, _ = build.load_builders()[self.name]
            self.family = family
            self.model = build.build(self.name)
            if self.model.xfail:
                raise RuntimeError(f"xfail: {self.model.xfail}")
            self.proto = build.export(self.name)
            self.lines["export"] = line(True, **_static_dims(self.proto))
        except Exception as exc:  # noqa: BLE001
            self.lines["export"] = line(False, reason=one_line(exc))
        self.wall["export"] = round(time.perf_counter() - start, 2)
        self.lines["export"]["seconds"] = self.wall["export"]
        if self.lines["export"]["ok"]:
            return True
        for door in self.doors:
            for key in self.expected_keys(door):
                self.lines[key] = line(None, reason="not run: " + self.lines["export"]["reason"])
        return False

    def input_names(self) -> list[str]:
        initializers = {t.name for t in self.proto.graph.initializer}
        return [i.name for i in self.proto.graph.input if i.name not in initializers]

    def ordered(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The inputs in ONNX graph input order (by name, else by position)."""
        names = self.input_names()
        if set(names) == set(inputs):
            return [inputs[n] for n in names]
        if len(names) != len(inputs):
            raise ValueError(f"the ONNX graph takes {names}, the builder makes {list(inputs)}")
        return list(inputs.values())

    def cases(self) -> list[tuple[str, dict[str, np.ndarray], list[np.ndarray]]]:
        """(label, inputs, TF outputs): batch 1 and 3, then each size at batch 2."""
        if not self._cases:
            specs = [("batch 1", 1, 1, None), ("batch 3", 3, 3, None)]
            specs += [(f"size {s} batch 2", 2, 10 + i, s) for i, s in enumerate(self.model.sizes)]
            for label, batch, seed, size in specs:
                inputs = self.model.make_inputs(batch, seed, size)
                self._check_static(label, inputs)
                self._cases.append((label, inputs, list(self.model.tf_outputs(inputs))))
        return self._cases

    def _check_static(self, label: str, inputs: dict[str, np.ndarray]) -> None:
        """A case must not vary a dim the export made static (a size in the signature, or one
        the model's Python forced: ``export``'s ``static_dims``): its builder's ``sizes``
        vary another dim then."""
        graph_inputs = {i.name: i for i in self.proto.graph.input}
        for name, array in zip(self.input_names(), self.ordered(inputs), strict=True):
            dims = graph_inputs[name].type.tensor_type.shape.dim
            for d, dim in enumerate(dims):
                if dim.HasField("dim_value") and d < array.ndim and array.shape[d] != dim.dim_value:
                    raise ValueError(
                        f"{label}: input {name} dim {d} is {array.shape[d]}, static "
                        f"{dim.dim_value} in the export"
                    )

    def torch_inputs(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        import torch

        return [torch.from_numpy(np.ascontiguousarray(a)) for a in self.ordered(inputs)]

    # ------------------------------------------------------------------ the front doors

    def optimized(self, door: str) -> Any:
        """The optimized module of ``door``; re-raises its exception on every use."""
        if door not in self._optimized:
            start = time.perf_counter()
            try:
                self._optimized[door] = (True, _optimize(self._convert(door)))
            except Exception as exc:  # noqa: BLE001
                self._optimized[door] = (False, exc)
            self.wall[f"optimize_{door}"] = round(time.perf_counter() - start, 2)
        ok, value = self._optimized[door]
        if not ok:
            raise value
        return value

    def _convert(self, door: str) -> Any:
        import onnx

        from fxsurgeon._compat import import_onnx2torch
        from fxsurgeon.tensorflow import from_onnx

        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        if door == "A":
            return from_onnx(proto, tf_model=self.model.model)
        return import_onnx2torch().convert(proto)

    def score_door(self, door: str) -> None:
        p = f"{door}."
        self.run(p + "diff", lambda: self.diff(self.optimized(door), self.cases()))
        self.run(p + "params", lambda: self.params(self.optimized(door), door))
        self.run(p + "names", lambda: self.names(self.optimized(door)))
        self.run(p + "onnx2torch_left", lambda: self.onnx2torch_left(self.optimized(door)))
        counts: dict[str, Any] = {}
        for key in self.expected_keys(door):
            if key.startswith(p + "fusion.") or key == p + "softmax_left":
                self.run(key, lambda key=key: self.fusion(door, key[len(p) :], counts))
        self.run(p + "grads", lambda: self.grads(self.optimized(door), door))
        # The eager backend is cheap: it captures the graph at every case (batch 1,
        # 3 and each size, so dynamic shapes are traced). Inductor's C++ codegen is a
        # third of a model's scoring time: one compile, at batch 3.
        self.run(p + "compile_eager", lambda: self.compiled(door, "eager", slice(None)))
        self.run(p + "compile_inductor", lambda: self.compiled(door, "inductor", slice(1, 2)))
        if door == "A":
            self.run("A.convert", self.convert)
            for how in PRECISIONS:
                self.run(f"A.{how}", lambda how=how: self.precision(self.optimized(door), how))

    # ------------------------------------------------------------------ the lines

    def diff(self, module: Any, cases: list) -> dict[str, Any]:
        import torch

        worst, where, per_case = -1.0, "", {}
        for label, inputs, expected in cases:
            with torch.no_grad():
                out = module(*self.torch_inputs(inputs))
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            if len(out) != len(expected):
                raise ValueError(f"{label}: {len(out)} outputs, TF has {len(expected)}")
            for name, got, want in zip(self.model.output_names, out, expected, strict=False):
                if tuple(got.shape) != tuple(want.shape):
                    raise ValueError(f"{label}, {name}: shape {tuple(got.shape)}, TF {want.shape}")
                value = float(np.abs(got.detach().double().numpy() - want).max(initial=0.0))
                if not math.isfinite(value):
                    value = math.inf
                per_case[label] = max(per_case.get(label, 0.0), value)
                if value > worst:
                    worst, where = value, f"{label}, output {name}"
        ok = worst <= ATOL
        reason = "" if ok else f"max |diff| {worst:.3g} > {ATOL:g} at {where}"
        return line(ok, worst, reason, where=where, per_case=per_case)

    def params(self, module: Any, door: str = "A") -> dict[str, Any]:
        return learned.params_line(self, module, door)

    def names(self, module: Any) -> dict[str, Any]:
        return learned.names_line(self, module)

    def unread_trainable(self) -> int:
        return learned.unread_trainable(self)

    def onnx2torch_left(self, module: Any) -> dict[str, Any]:
        from fxsurgeon.pipeline import count_onnx2torch_modules

        census = count_onnx2torch_modules(module)
        left = sum(census.values())
        top = ", ".join(f"{k} x{v}" for k, v in sorted(census.items(), key=lambda kv: -kv[1])[:4])
        return line(left == 0, left, f"{left} left: {top}" if left else "", census=census)

    def fusion(self, door: str, key: str, counts: dict[str, Any]) -> dict[str, Any]:
        if not counts:
            counts.update(fusion_counts(self.optimized(door)))
        found = counts["softmax" if key == "softmax_left" else key.split(".", 1)[1]]
        if key == "softmax_left":  # beyond the softmaxes the builder says are not attention
            kept = self.model.nominal.get("softmax", 0)
            reason = f"{found} softmax left, {kept} not attention" if found != kept else ""
            return line(found == kept, found, reason, nominal=kept)
        nominal = self.model.nominal[key.split(".", 1)[1]]
        if key == "fusion.linear" and door == "B" and found > nominal:
            constants = learned.constant_linears(self, self.optimized(door))
            if found - constants == nominal:
                note = f"nominal plus {constants} by constants of the TF graph read as kernels;"
                note += " ONNX carries no trainability flag, door A (the TF model in hand) is exact"
                return line(True, found, nominal=nominal, note=note)
        ok = found == nominal
        return line(ok, found, "" if ok else f"{found} found, nominal {nominal}", nominal=nominal)

    def grads(self, module: Any, door: str = "A") -> dict[str, Any]:
        return grads_line(self, module, door)

    def compiled(self, door: str, backend: str, cases: slice) -> dict[str, Any]:
        import torch

        module = self.optimized(door)
        torch._dynamo.reset()
        try:
            compiled = torch.compile(module, fullgraph=True, backend=backend)
            return self.diff(compiled, self.cases()[cases])
        finally:
            torch._dynamo.reset()

    def precision(self, module: Any, how: str) -> dict[str, Any]:
        """A copy cast by ``.to(torch.bfloat16)`` or ``.half()`` runs every case.

        Judged by `fxsurgeon.verify` against the float32 module: its fp64 rule
        (torch._dynamo's ``same(ref, res, fp64_ref=...)``) compares the error of
        the low-precision copy with float32's, both against a float64 run.
        """
        import copy

        import torch

        from fxsurgeon.verify import verify

        dtype = torch.bfloat16 if how == "bfloat16" else torch.float16
        low = copy.deepcopy(module)
        low = low.to(dtype) if how == "bfloat16" else low.half()
        # The float inputs as the low copy sees them, for the float64 reference too (as
        # torch._dynamo's accuracy check casts the inputs before its fp64 run): an integer
        # output computed from their order (ViT-MAE's argsort of the noise) then has one answer.
        cases = [
            [_rounded(a, dtype) for a in self.ordered(inputs)] for _, inputs, _ in self.cases()
        ]
        report = verify(low, module, inputs=cases)
        floats = [r for r in report.results if r.ref_dtype and "float" in r.ref_dtype]
        wrong = sorted({str(r.dtype) for r in floats} - {str(dtype).removeprefix("torch.")})
        if wrong:
            return line(False, None, f"floating outputs in {wrong}, not {how}")
        if report.passed:
            return line(True, report.max_abs)
        bad = report.failures[0]
        reason = (
            f"{len(report.failures)} of {len(report.results)} outputs fail the fp64 rule; "
            f"first: output {bad.output} case {bad.case}: {bad.message or bad.tolerance}"
        )
        return line(False, report.max_abs, reason[:300])

    def convert(self) -> dict[str, Any]:
        """``fxsurgeon convert`` on the cached ONNX (``--example-inputs``: the first case),
        then model.py loaded with imports blocked."""
        from . import build

        with tempfile.TemporaryDirectory(prefix=f"corpus-{self.name}-") as tmp:
            outdir = Path(tmp) / "out"
            # the corpus's own first case feeds convert's checks: made-up inputs break some
            # models' contracts (hf_bart_seqcls' eos count, hf_gpt2_double_heads' mc_token_ids)
            examples = Path(tmp) / "examples.npz"
            _, first, _ = self.cases()[0]
            np.savez(examples, **dict(zip(self.input_names(), self.ordered(first), strict=True)))
            run = subprocess.run(
                [sys.executable, "-m", "fxsurgeon", "convert", str(build.onnx_path(self.name))]
                + ["-o", str(outdir), "-q", "--no-compile-check"]
                + ["--example-inputs", str(examples)],
                capture_output=True,
                text=True,
                timeout=CONVERT_TIMEOUT_S,
            )
            if run.returncode != 0:
                tail = (run.stderr.strip() or run.stdout.strip() or "no output").splitlines()[-1]
                return line(False, None, f"fxsurgeon convert exited {run.returncode}: {tail}")
            arrays: dict[str, Any] = {}
            cases = []
            for i, (label, inputs, expected) in enumerate(self.cases()):
                keys_in = [f"in_{i}_{j}" for j in range(len(inputs))]
                keys_out = [f"out_{i}_{j}" for j in range(len(expected))]
                arrays.update(zip(keys_in, self.ordered(inputs), strict=True))
                arrays.update(
                    zip(keys_out, (np.asarray(e, np.float64) for e in expected), strict=True)
                )
                cases.append({"label": label, "inputs": keys_in, "outputs": keys_out})
            data = Path(tmp) / "data.npz"
            np.savez(data, cases=json.dumps(cases), **arrays)
            load = subprocess.run(
                [sys.executable, "-c", LOADER, str(outdir), str(data)],
                capture_output=True,
                text=True,
                timeout=CONVERT_TIMEOUT_S,
                cwd=tmp,
            )
        if load.returncode != 0:
            tail = (load.stderr.strip() or "no output").splitlines()[-1]
            return line(False, None, f"loading model.py failed: {tail}")
        result = json.loads(load.stdout.strip().splitlines()[-1])
        worst, where = -1.0, ""
        for case, diffs in zip(cases, result["diffs"], strict=True):
            for name, value in zip(self.model.output_names, diffs, strict=False):
                if value > worst or not math.isfinite(value):
                    worst, where = value, f"{case['label']}, output {name}"
        ok = worst <= ATOL and not result["imported"]
        reason = "" if ok else f"max |diff| {worst:.3g} at {where}"
        if result["imported"]:
            reason = f"model.py imported {result['imported']}"
        return line(ok, worst, reason, where=where)

    # ------------------------------------------------------------------ latency

    def latency(self) -> dict[str, Any]:
        """Latency (ms) of raw onnx2torch, fxsurgeon (A) eager and compiled, onnxruntime, the twin.

        ``compiled``: `fxsurgeon.compile(A, inference=True)`, compiled in the warm-up
        call (a failure leaves it out: ``compiled_error``); onnxruntime is left out where
        it has no kernel for a node (``onnxruntime_error``: keras_causal_transformer's
        Where(16) of its band part), and raw onnx2torch where its own modules fail to run
        (``onnx2torch_error``: tfk_sort_scatter's ConstantOfShape sized by the data, which
        fxsurgeon lowers by ONNX semantics). Interleaved rounds (one
        call of each per round); ratios of the fastest, ``median_ratios`` of medians.
        """
        import torch

        import fxsurgeon

        _, inputs, _ = self.cases()[0]
        tensors = self.torch_inputs(inputs)
        variants: dict[str, Callable[[], Any]] = {}
        extra: dict[str, Any] = {}
        raw = self._convert("B").eval()
        variants["onnx2torch"] = lambda: raw(*tensors)
        optimized = self.optimized("A")
        variants["fxsurgeon"] = lambda: optimized(*tensors)
        compiled = fxsurgeon.compile(optimized, inference=True)
        variants["compiled"] = lambda: compiled(*tensors)
        try:
            variants["onnxruntime"] = _ort_runner(
                self.proto, self.input_names(), self.ordered(inputs)
            )
        except Exception as exc:  # noqa: BLE001 - a kernel onnxruntime lacks: no ratio to it
            extra["onnxruntime_error"] = one_line(exc)
        if self.model.twin is not None:
            twin = self.model.twin()
            feed = (self.model.twin_inputs or _by_name)(inputs)
            variants["twin"] = lambda: twin(**feed)
            if getattr(twin, "twin_note", ""):
                extra["twin_note"] = twin.twin_note
        torch._dynamo.reset()
        with torch.no_grad():
            for key, call in list(variants.items()):
                try:
                    call()  # warm up (and compile)
                except Exception as exc:  # noqa: BLE001 - only these variants may fail
                    if key not in ("compiled", "onnxruntime", "onnx2torch"):
                        raise
                    extra[f"{key}_error"] = one_line(exc)
                    del variants[key]
            times = _interleaved(variants, LATENCY_ROUNDS)
        torch._dynamo.reset()
        best = {k: min(v) for k, v in times.items()}
        median = {k: statistics.median(v) for k, v in times.items()}
        return line(
            True,
            latency_ratios(best),
            best_ms=best,
            median_ms=median,
            median_ratios=latency_ratios(median),
            rounds=LATENCY_ROUNDS,
            threads=torch.get_num_threads(),
            **extra,
        )


#: the ratios of the latency line: (numerator, denominator) variants; below 1 = faster
LATENCY_RATIOS = (("fxsurgeon", "onnx2torch"), ("fxsurgeon", "twin"), ("fxsurgeon", "onnxruntime"))
LATENCY_RATIOS += (("compiled", "onnxruntime"), ("compiled", "fxsurgeon"))


def latency_ratios(ms: dict[str, float]) -> dict[str, float]:
    """``"a/b"``: ms[a] / ms[b] for each pair of `LATENCY_RATIOS` both measured."""
    return {f"{a}/{b}": round(ms[a] / ms[b], 3) for a, b in LATENCY_RATIOS if a in ms and b in ms}


def _interleaved(variants: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per call: ``rounds`` rounds, one call of every variant per round."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for key, call in variants.items():
            start = time.perf_counter()
            call()
            times[key].append((time.perf_counter() - start) * 1e3)
    return times


def _static_dims(proto: Any) -> dict[str, Any]:
    """The export line's ``static_dims``: the dims the model's Python forced static."""
    from fxsurgeon.source import export_static_dims

    forced = [str(f) for f in export_static_dims(proto)]
    return {"static_dims": forced} if forced else {}


def _optimize(gm: Any) -> Any:
    import fxsurgeon

    return fxsurgeon.optimize(gm)


def _by_name(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    return {k: torch.from_numpy(v) for k, v in inputs.items()}


def _ort_runner(proto: Any, names: list[str], arrays: list[np.ndarray]) -> Callable[[], Any]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = dict(zip(names, arrays, strict=True))
    return lambda: session.run(None, feed)


def fusion_counts(module: Any) -> dict[str, int]:
    """Fused ops in ``module``'s graph: functional calls and the modules the params phase builds."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    functions = {
        "sdpa": {F.scaled_dot_product_attention},
        "layer_norm": {F.layer_norm},
        "rms_norm": {getattr(F, "rms_norm", None)} - {None},
        "gelu": {F.gelu},
        "linear": {F.linear},
        "softmax": {torch.softmax, F.softmax, torch.Tensor.softmax},
    }
    modules = {
        "layer_norm": (nn.LayerNorm,),
        "rms_norm": (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else (),
        "gelu": (nn.GELU,),
        "linear": (nn.Linear,),
        "softmax": (nn.Softmax,),
    }
    counts = dict.fromkeys(functions, 0)
    for node in module.graph.nodes:
        for key, targets in functions.items():
            if node.op == "call_function" and node.target in targets:
                counts[key] += 1
            if node.op == "call_method" and key == "softmax" and node.target == "softmax":
                counts[key] += 1
        if node.op == "call_module":
            sub = module.get_submodule(node.target)
            for key, classes in modules.items():
                if classes and isinstance(sub, classes):
                    counts[key] += 1
    return counts


def _rounded(array: np.ndarray, dtype: Any) -> np.ndarray:
    """A float array rounded to ``dtype`` and back to its own type; others as they are."""
    import torch

    if not np.issubdtype(array.dtype, np.floating):
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.to(dtype).to(tensor.dtype).numpy()


def score(name: str, *, doors: tuple[str, ...] = DOORS, latency: bool = False) -> dict[str, Any]:
    """The record of ``name`` (in this process); ``latency`` measures only the latency line."""
    scorer = Scorer(name, doors=doors)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if scorer.export():
            if latency:
                scorer.run("latency", scorer.latency)
            else:
                for door in doors:
                    door_start = time.perf_counter()
                    scorer.score_door(door)
                    scorer.wall[f"door_{door}"] = round(time.perf_counter() - door_start, 2)
    scorer.wall["total"] = round(time.perf_counter() - start, 2)
    return scorer.record()


def configure_threads(threads: int) -> None:
    """torch and TF thread counts, and the inductor cache under the user cache dir."""
    from .build import CACHE_DIR

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CACHE_DIR.parent / "inductor"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import torch

    from fxsurgeon._compat import import_tensorflow

    torch.set_num_threads(threads)
    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corpus.score", description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--out", required=True, help="the JSON record to write")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency", action="store_true", help="measure only the latency line")
    args = parser.parse_args(argv)
    import fxsurgeon  # noqa: F401 - the safe import order, before TensorFlow

    configure_threads(args.threads)
    record = score(args.name, latency=args.latency)
    # CPU seconds (this process and its waited-for children): wall time on an idle machine
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    record["wall"]["cpu"] = round(sum(u.ru_utime + u.ru_stime for u in usage), 1)
    Path(args.out).write_text(json.dumps(record, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
