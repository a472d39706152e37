"""pytest setup of the benchmark suite (self-contained: nothing from tests/conftest.py).

Options (each also read from an environment variable, the option wins):

* ``--device cpu|cuda`` (``FXSURGEON_BENCH_DEVICE``, default cpu): the protocol,
  `harness.CPU` or `harness.CUDA`;
* ``--dry-run-cuda-protocol`` (``FXSURGEON_BENCH_DRY_RUN=1``): the CUDA
  protocol's code path on the CPU with the tiny ViT and a few steps
  (`harness.CUDA_DRY_RUN`), to check that it runs without a GPU.

Session state: one model (`harness.Case`: the model, its export and
conversions; `harness.Prepared`: every variant ready to run, with the
interleaved timings) is alive at a time; the step-time tests are ordered model
by model.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is imported as a package from the checkout
    sys.path.insert(0, str(ROOT))

import fxsurgeon  # noqa: E402,F401  (first: makes the TF / triton import order safe)
from benchmarks import harness  # noqa: E402

_PROTOCOL_KEY = pytest.StashKey[harness.Protocol]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fxsurgeon benchmarks")
    group.addoption(
        "--device",
        choices=("cpu", "cuda"),
        default=os.environ.get("FXSURGEON_BENCH_DEVICE", "cpu"),
        help="protocol: cpu (fp32, batch 2, 2 threads) or cuda (bf16, batch 32, CUDA events)",
    )
    group.addoption(
        "--dry-run-cuda-protocol",
        action="store_true",
        default=os.environ.get("FXSURGEON_BENCH_DRY_RUN", "") not in ("", "0"),
        help="run the CUDA protocol's code path on the CPU, tiny ViT, a few steps",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--dry-run-cuda-protocol"):
        protocol = harness.CUDA_DRY_RUN
    elif config.getoption("--device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError(
                "--device cuda: torch sees no GPU (use --dry-run-cuda-protocol on a CPU)"
            )
        protocol = harness.CUDA
    else:
        protocol = harness.CPU
    config.stash[_PROTOCOL_KEY] = protocol
    harness.configure(protocol)


def pytest_report_header(config: pytest.Config) -> str:
    p = config.stash[_PROTOCOL_KEY]
    return (
        f"fxsurgeon benchmarks: protocol {p.name}, device {p.device}, batch {p.batch_size}, "
        f"threads {p.threads or 'default'}, warm-up {p.warmup_steps}, timed {p.timed_steps}"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``model_variant`` with the protocol's (model, variant) pairs, model-major."""
    if "model_variant" not in metafunc.fixturenames:
        return
    protocol = metafunc.config.stash[_PROTOCOL_KEY]
    pairs = [(m, v) for m in protocol.models for v in harness.variants_of(m)]
    metafunc.parametrize("model_variant", pairs, ids=[f"{m}-{v}" for m, v in pairs])


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record what the report needs: CPU model and cores, GPU, library versions, protocol."""
    import onnxruntime
    import tensorflow as tf
    import torch
    import transformers

    protocol = config.stash[_PROTOCOL_KEY]
    machine_info["fxsurgeon"] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if protocol.device == "cuda" else None,
        "protocol": protocol.name,
        "device": protocol.device,
        "batch_size": protocol.batch_size,
        "threads": protocol.threads,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "tensorflow": tf.__version__,
            "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__,
            "fxsurgeon": fxsurgeon.__version__,
            "onnx2torch": _version("onnx2torch"),
            "tf2onnx": _version("tf2onnx"),
        },
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@pytest.fixture(scope="session")
def protocol(pytestconfig: pytest.Config) -> harness.Protocol:
    return pytestconfig.stash[_PROTOCOL_KEY]


class _CaseCache:
    """The current model: `harness.Case` and `harness.Prepared`; the next model drops it first."""

    def __init__(self, protocol: harness.Protocol):
        self.protocol = protocol
        self.current: tuple[harness.Case, harness.Prepared] | None = None
        self.failed: dict[str, str] = {}

    def __call__(self, model_name: str) -> tuple[harness.Case, harness.Prepared]:
        if model_name in self.failed:
            pytest.fail(f"{model_name} could not be set up: {self.failed[model_name]}")
        if self.current is None or self.current[0].name != model_name:
            self.current = None  # free the previous model before building the next
            gc.collect()
            try:
                case = harness.Case(model_name, self.protocol)
                self.current = case, harness.prepare_model(case)
            except Exception as exc:
                self.failed[model_name] = f"{type(exc).__name__}: {exc}"
                raise
        return self.current


@pytest.fixture(scope="session")
def case_for(protocol: harness.Protocol) -> _CaseCache:
    """``case_for(model_name)`` -> (`harness.Case`, `harness.Prepared`), kept while its tests run.

    The first test of a model prepares every variant and runs the interleaved
    rounds (`harness.prepare_model`); each variant's test then reports its own.
    """
    return _CaseCache(protocol)
