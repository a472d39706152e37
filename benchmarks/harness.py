"""Protocols, variants and the timing loops of the benchmark suite.

A *protocol* fixes the device, batch size, precision, threads and step counts;
a *variant* is one way of running a model (TF, onnxruntime, onnx2torch,
fxsurgeon eager / compiled, transformers' native PyTorch eager / compiled).

`prepare_model` builds every variant's `Runner` (`prepare`: check the outputs
against TensorFlow fp32, warm up), then times all of them round-robin
(`interleaved_latency`): one step of each variant per round, so that load from
other processes lands on every variant alike. The pytest-benchmark tests then
time each variant on its own (`Runner.timed_step`) and, on a GPU, with the
article's loop (`protocol_step_time`, CUDA events). The CPU dry run of the CUDA
protocol (``tests/test_bench_protocol.py``) goes through the same functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.tensorflow import from_onnx

from . import models
from .report import VARIANTS

__all__ = [
    "CPU",
    "CUDA",
    "CUDA_DRY_RUN",
    "LABELS",
    "Case",
    "NotApplicable",
    "OthersCpu",
    "Protocol",
    "Prepared",
    "Runner",
    "configure",
    "interleaved_latency",
    "prepare",
    "prepare_model",
    "protocol_step_time",
    "run_protocol",
    "variants_of",
]

#: Variant -> how the report names it. Order = table order.
LABELS = VARIANTS  # defined in report.py, which must import neither torch nor TF


@dataclass(frozen=True)
class Protocol:
    """How one benchmark run measures.

    ``timed_steps`` is exact on CUDA (the article's 100); on CPU it is the most
    pytest-benchmark rounds, fewer when a step is slow: enough rounds for
    ``min_time_s`` but at least ``min_rounds``. ``interleaved_rounds`` rounds of
    every variant round-robin come first, stopping early (after at least
    ``min_rounds``) once they took ``interleaved_max_s``. Outputs are checked
    against TF fp32 with ``atol``
    (max abs difference) when ``rel_l2`` is None, else with the relative L2
    error ``|out - ref| / |ref|`` per output (bf16 cannot meet an absolute 1e-4).
    """

    name: str
    device: str  # where the torch models run: "cpu" or "cuda"
    batch_size: int
    threads: int | None  # torch / TF intra-op / onnxruntime intra-op threads
    warmup_steps: int
    timed_steps: int
    min_rounds: int
    min_time_s: float
    interleaved_rounds: int
    interleaved_max_s: float
    autocast: torch.dtype | None  # torch.autocast dtype for the torch variants
    tf_policy: str | None  # Keras mixed-precision policy for the TF variant
    compile_backend: str
    models: tuple[str, ...]
    atol: float = 1e-4
    rel_l2: float | None = None

    @property
    def reduced_precision(self) -> bool:
        return self.autocast is not None


CPU = Protocol(
    name="cpu-fp32",
    device="cpu",
    batch_size=2,
    threads=2,
    warmup_steps=3,
    timed_steps=30,
    min_rounds=5,
    min_time_s=3.0,
    interleaved_rounds=30,
    interleaved_max_s=60.0,
    autocast=None,
    tf_policy=None,
    compile_backend="inductor",
    models=("vit_base", "bert_base", "resnet50"),
)

#: The article's GPU protocol: batch 32, bf16 autocast (TF: mixed_bfloat16),
#: TF32 matmuls for what stays fp32, 20 warm-up steps, 100 timed steps.
CUDA = Protocol(
    name="cuda-bf16",
    device="cuda",
    batch_size=32,
    threads=None,
    warmup_steps=20,
    timed_steps=100,
    min_rounds=100,
    min_time_s=0.0,
    interleaved_rounds=10,
    interleaved_max_s=60.0,
    autocast=torch.bfloat16,
    tf_policy="mixed_bfloat16",
    compile_backend="inductor",
    models=("vit_base", "bert_base", "resnet50"),
    rel_l2=5e-2,
)

#: The CUDA protocol's code path on the CPU, small: tiny ViT, 2 + 3 steps, and
#: torch.compile with the "eager" backend (Dynamo traces, Inductor does not
#: generate code), so that it runs in seconds.
CUDA_DRY_RUN = dataclasses.replace(
    CUDA,
    name="cuda-bf16-dry-run",
    device="cpu",
    batch_size=2,
    warmup_steps=2,
    timed_steps=3,
    min_rounds=3,
    interleaved_rounds=2,
    compile_backend="eager",
    models=("vit_tiny",),
)


class NotApplicable(Exception):
    """This variant cannot run under this protocol here (the reason is the message)."""


def configure(protocol: Protocol) -> None:
    """Process-wide settings; call before TensorFlow runs anything."""
    tf = import_tensorflow()
    if protocol.threads is not None:
        torch.set_num_threads(protocol.threads)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(protocol.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as exc:  # TF's runtime is already up
            warnings.warn(f"TF threads not set: {exc}", stacklevel=2)
    if protocol.device == "cuda":
        torch.set_float32_matmul_precision("high")
        for gpu in tf.config.list_physical_devices("GPU"):
            # TF takes the whole GPU by default, leaving torch nothing.
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpu, True)


def variants_of(model_name: str) -> tuple[str, ...]:
    """The variants that apply to a model: the native ones need a transformers class."""
    has_native = models.has_native(model_name)
    return tuple(v for v in LABELS if has_native or not v.startswith("native"))


# --------------------------------------------------------------------------- one model


class Case:
    """One model under one protocol: the TF model, its export and conversions, the inputs.

    ``converted`` (fxsurgeon.from_onnx, i.e. onnx2torch.convert plus the variable
    map) and ``optimized`` are made on the CPU before any variant moves a module
    to the GPU; the native model and the mixed-precision TF model on first use.
    """

    def __init__(self, model_name: str, protocol: Protocol):
        self.name = model_name
        self.protocol = protocol
        self.bench = models.build(model_name)
        self.onnx = models.export(self.bench)
        self.inputs = self.bench.make_inputs(protocol.batch_size, 1)
        self.reference = _numpy(self.bench.tf_call(self.bench.model, self._tf_inputs()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.converted = from_onnx(self.onnx, tf_model=self.bench.model)
        start = time.perf_counter()
        self.optimized = fxsurgeon.optimize(self.converted)
        self.optimize_s = time.perf_counter() - start
        self._native: torch.nn.Module | None = None
        self._tf_model: Any = None

    @property
    def native(self) -> torch.nn.Module:
        if self._native is None:
            self._native = models.native(self.bench)
        return self._native

    @property
    def tf_model(self) -> Any:
        """The Keras model the protocol asks for: fp32, or a mixed-precision copy."""
        if self.protocol.tf_policy is None:
            return self.bench.model
        if self._tf_model is None:
            self._tf_model = models.build_with_policy(self.bench, self.protocol.tf_policy)
        return self._tf_model

    def _tf_inputs(self) -> dict[str, Any]:
        tf = import_tensorflow()
        return {k: tf.constant(v) for k, v in self.inputs.items()}

    def torch_inputs(self, native: bool = False) -> list[torch.Tensor]:
        """The inputs in graph order: the ONNX dtypes, or int64 token ids for a native model."""
        out = []
        for value in self.inputs.values():
            tensor = torch.from_numpy(value)
            out.append(tensor.long() if native and tensor.dtype == torch.int32 else tensor)
        return out


@dataclass
class Runner:
    """A variant ready to run: ``step()`` runs one forward pass on the prepared inputs."""

    variant: str
    step: Callable[[], Any]
    to_numpy: Callable[[Any], list[np.ndarray]]
    synchronize: Callable[[], None]
    cuda_events: bool  # torch on a GPU: time with CUDA events
    setup_s: float = 0.0  # first call (tracing, compilation), not timed
    check: dict[str, float] = dataclasses.field(default_factory=dict)

    def timed_step(self) -> None:
        """One step and a device synchronisation: what pytest-benchmark times."""
        self.step()
        self.synchronize()


def prepare(case: Case, variant: str) -> Runner:
    """Build the runner, check its outputs against TF fp32 (raises on a mismatch), warm it up."""
    makers = {
        "tensorflow": _tensorflow,
        "onnxruntime": _onnxruntime,
        "onnx2torch": lambda c: _torch(c, "onnx2torch", c.converted, compiled=False),
        "fxsurgeon": lambda c: _torch(c, "fxsurgeon", c.optimized, compiled=False),
        "fxsurgeon_compiled": lambda c: _torch(c, "fxsurgeon_compiled", c.optimized, compiled=True),
        "native": lambda c: _torch(c, "native", c.native, compiled=False, native=True),
        "native_compiled": lambda c: _torch(
            c, "native_compiled", c.native, compiled=True, native=True
        ),
    }
    runner = makers[variant](case)
    start = time.perf_counter()
    outputs = runner.to_numpy(runner.step())
    runner.synchronize()
    runner.setup_s = time.perf_counter() - start
    runner.check = check_outputs(outputs, case.reference, case.bench.output_names, case.protocol)
    for _ in range(case.protocol.warmup_steps):
        runner.step()
    runner.synchronize()
    return runner


@dataclass
class Prepared:
    """A model's runners, the errors of the variants that could not be prepared, the latencies."""

    runners: dict[str, Runner]
    errors: dict[str, BaseException]
    latency: dict[str, list[float]]  # interleaved: seconds per step, one per round
    others_cpu_share: float | None  # CPU other processes took during those rounds

    def runner(self, variant: str) -> Runner:
        """The variant's runner; its preparation error (check failure, NotApplicable) re-raised."""
        if variant in self.errors:
            raise self.errors[variant]
        return self.runners[variant]


def prepare_model(case: Case) -> Prepared:
    """`prepare` every variant, then time them all round-robin (`interleaved_latency`)."""
    runners, errors = {}, {}
    for variant in variants_of(case.name):
        try:
            runners[variant] = prepare(case, variant)
        except Exception as exc:  # noqa: BLE001 - re-raised in that variant's own test
            errors[variant] = exc
    protocol = case.protocol
    with OthersCpu() as others:
        latency = interleaved_latency(
            runners, protocol.interleaved_rounds, protocol.min_rounds, protocol.interleaved_max_s
        )
    return Prepared(runners, errors, latency, others.share)


def interleaved_latency(
    runners: dict[str, Runner], rounds: int, min_rounds: int = 1, max_s: float = float("inf")
) -> dict[str, list[float]]:
    """Seconds per step of each runner, ``rounds`` rounds of one step of each, round-robin.

    The order rotates every round, so that no variant always follows the same
    one. Stops early, after at least ``min_rounds``, once ``max_s`` have gone.
    A step is timed with the wall clock and a device synchronisation
    (`Runner.timed_step`).
    """
    order = list(runners)
    times: dict[str, list[float]] = {variant: [] for variant in order}
    begin = time.perf_counter()
    for index in range(rounds):
        if index >= min_rounds and time.perf_counter() - begin > max_s:
            break
        shift = index % max(len(order), 1)
        for variant in order[shift:] + order[:shift]:
            start = time.perf_counter()
            runners[variant].timed_step()
            times[variant].append(time.perf_counter() - start)
    return times


class OthersCpu:
    """The share of the machine's CPU time that other processes used inside the ``with``.

    From ``/proc/stat`` (all busy time) minus ``/proc/self/stat`` (this
    process, all threads); ``share`` is None where those do not exist. 0.5 on a
    2-core machine: another process kept one core busy, which stalls torch's
    2-thread OpenMP regions far more than TF's or onnxruntime's thread pools.
    """

    share: float | None = None

    def __enter__(self) -> OthersCpu:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        if self._start is None or end is None:
            return
        busy, total, own = (b - a for a, b in zip(self._start, end, strict=True))
        self.share = max(0.0, (busy - own) / total) if total > 0 else None

    @staticmethod
    def _read() -> tuple[int, int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        idle = fields[3] + fields[4]  # idle + iowait
        busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
        return busy, busy + idle, int(own[11]) + int(own[12])  # utime + stime


def rounds_for(runner: Runner, protocol: Protocol) -> int:
    """How many timed rounds: ``timed_steps``, fewer (not under ``min_rounds``) for slow steps."""
    if protocol.min_time_s <= 0:
        return protocol.timed_steps
    start = time.perf_counter()
    runner.timed_step()
    estimate = time.perf_counter() - start
    wanted = math.ceil(protocol.min_time_s / max(estimate, 1e-6))
    return max(protocol.min_rounds, min(protocol.timed_steps, wanted))


def protocol_step_time(runner: Runner, steps: int) -> float:
    """Seconds per step over ``steps`` back-to-back steps, one synchronisation at the end.

    Torch on a GPU is timed with CUDA events recorded around the loop; the rest
    (TF, onnxruntime, anything on the CPU) with the wall clock after a device
    synchronisation.
    """
    runner.synchronize()
    if runner.cuda_events:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            runner.step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / steps
    begin = time.perf_counter()
    for _ in range(steps):
        runner.step()
    runner.synchronize()
    return (time.perf_counter() - begin) / steps


def run_protocol(protocol: Protocol, model_name: str) -> dict[str, dict[str, float]]:
    """Every variant of one model through ``protocol`` without pytest-benchmark (the dry run).

    Returns variant -> {"step_s" (the protocol's loop), "latency_min_s" (the
    interleaved rounds), "setup_s", and the output check figures}; a variant
    that does not apply here is left out, any other failure is raised.
    """
    prepared = prepare_model(Case(model_name, protocol))
    results = {}
    for variant in variants_of(model_name):
        try:
            runner = prepared.runner(variant)
        except NotApplicable:
            continue
        results[variant] = {
            "step_s": protocol_step_time(runner, protocol.timed_steps),
            "latency_min_s": min(prepared.latency[variant]),
            "setup_s": runner.setup_s,
            **runner.check,
        }
    return results


# --------------------------------------------------------------------------- variants


def _numpy(outputs: Any) -> list[np.ndarray]:
    return [np.asarray(o.numpy() if hasattr(o, "numpy") else o, dtype=np.float32) for o in outputs]


def _tensorflow(case: Case) -> Runner:
    tf = import_tensorflow()
    if case.protocol.device == "cuda" and not tf.config.list_physical_devices("GPU"):
        # Else TF would quietly run on the CPU: install tensorflow[and-cuda].
        raise NotApplicable("TensorFlow sees no GPU (pip install 'tensorflow[and-cuda]')")
    model, call = case.tf_model, case.bench.tf_call
    device = "/GPU:0" if case.protocol.device == "cuda" else "/CPU:0"
    with tf.device(device):
        inputs = case._tf_inputs()
    function = tf.function(lambda tensors: call(model, tensors))

    def step() -> Any:
        with tf.device(device):
            return function(inputs)

    def synchronize() -> None:
        if case.protocol.device == "cuda":
            tf.test.experimental.sync_devices()

    return Runner("tensorflow", step, _numpy, synchronize, cuda_events=False)


def _onnxruntime(case: Case) -> Runner:
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if case.protocol.device == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise NotApplicable(f"onnxruntime has no {provider} here (install onnxruntime-gpu)")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    # Idle intra-op threads spin by default, holding the cores that the next
    # variant of an interleaved round needs (and on a 2-core machine with other
    # load it was slower, not faster: 565 vs 660 ms a ViT-Base step).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if case.protocol.threads is not None:
        options.intra_op_num_threads = case.protocol.threads
    session = ort.InferenceSession(case.onnx.SerializeToString(), options, providers=[provider])
    feeds = dict(case.inputs)  # numpy, in the graph's input dtypes (int32 ids)
    return Runner(
        "onnxruntime",
        lambda: session.run(None, feeds),
        _numpy,
        lambda: None,  # run() returns host arrays: nothing left in flight
        cuda_events=False,
    )


def _torch(
    case: Case, variant: str, module: torch.nn.Module, *, compiled: bool, native: bool = False
) -> Runner:
    protocol = case.protocol
    device = torch.device(protocol.device)
    module = module.to(device).eval()
    inputs = [t.to(device) for t in case.torch_inputs(native)]
    names = list(case.inputs)
    output_names = case.bench.output_names
    if compiled:  # the recipe's inference form; the transformers model may break the graph
        module = fxsurgeon.compile(
            module, inference=True, backend=protocol.compile_backend, fullgraph=not native
        )
    autocast = (
        (lambda: torch.autocast(device.type, dtype=protocol.autocast))
        if protocol.autocast is not None
        else contextlib.nullcontext
    )

    if native:

        def step() -> Any:
            with torch.no_grad(), autocast():
                out = module(**dict(zip(names, inputs, strict=True)))
            return [out[k] for k in output_names]

    else:

        def step() -> Any:
            with torch.no_grad(), autocast():
                return module(*inputs)

    def to_numpy(out: Any) -> list[np.ndarray]:
        items = list(out) if isinstance(out, (list, tuple)) else [out]
        return [t.detach().float().cpu().numpy() for t in items]

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return Runner(variant, step, to_numpy, synchronize, cuda_events=device.type == "cuda")


def check_outputs(
    outputs: list[np.ndarray],
    reference: list[np.ndarray],
    names: tuple[str, ...],
    protocol: Protocol,
) -> dict[str, float]:
    """Max abs difference and relative L2 error against TF fp32; AssertionError past the tolerance."""
    if len(outputs) != len(reference):
        raise AssertionError(f"{len(outputs)} outputs, TF has {len(reference)}")
    max_abs, rel_l2 = 0.0, 0.0
    for name, got, want in zip(names, outputs, reference, strict=True):
        if got.shape != want.shape:
            raise AssertionError(f"{name}: shape {got.shape}, TF has {want.shape}")
        if not np.isfinite(got).all():
            raise AssertionError(f"{name}: non-finite values")
        diff = np.abs(got.astype(np.float64) - want)
        max_abs = max(max_abs, float(diff.max()))
        rel_l2 = max(rel_l2, float(np.linalg.norm(diff) / max(np.linalg.norm(want), 1e-30)))
    if protocol.rel_l2 is None and max_abs > protocol.atol:
        raise AssertionError(f"max |out - TF| = {max_abs:.3g} > {protocol.atol:g}")
    if protocol.rel_l2 is not None and rel_l2 > protocol.rel_l2:
        raise AssertionError(f"|out - TF| / |TF| = {rel_l2:.3g} > {protocol.rel_l2:g}")
    return {"max_abs_diff": max_abs, "rel_l2": rel_l2}
