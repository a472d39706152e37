"""The benchmark suite's CUDA protocol, dry-run on the CPU, and its report script.

``benchmarks/`` is outside the default run (it takes many minutes); these keep
its GPU code path (bf16 autocast, mixed_bfloat16 TF, torch.compile, warm-up and
timed loops) and its README writer from rotting on machines without a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness, report  # noqa: E402


def test_cuda_protocol_dry_run_runs_every_variant_of_the_tiny_vit():
    results = harness.run_protocol(harness.CUDA_DRY_RUN, "vit_tiny")

    # TF, onnxruntime, onnx2torch, fxsurgeon eager / compiled, native eager / compiled
    assert set(results) == set(harness.LABELS)
    for variant, figures in results.items():
        assert math.isfinite(figures["step_s"]) and figures["step_s"] > 0, variant
        assert math.isfinite(figures["latency_min_s"]) and figures["latency_min_s"] > 0, variant
        assert figures["rel_l2"] <= harness.CUDA_DRY_RUN.rel_l2, variant


def test_dry_run_differs_from_the_cuda_protocol_only_in_size_and_device():
    cuda, dry = harness.CUDA, harness.CUDA_DRY_RUN
    differing = {
        f.name
        for f in dataclasses.fields(harness.Protocol)
        if getattr(cuda, f.name) != getattr(dry, f.name)
    }

    assert differing <= {
        "name",
        "device",
        "batch_size",
        "warmup_steps",
        "timed_steps",
        "min_rounds",
        "interleaved_rounds",
        "compile_backend",
        "models",
    }
    assert (cuda.batch_size, cuda.warmup_steps, cuda.timed_steps) == (32, 20, 100)
    assert cuda.autocast is torch.bfloat16 and cuda.tf_policy == "mixed_bfloat16"


def _benchmark_json(path: Path) -> Path:
    def bench(extra, median):  # the fastest round is 0.9x the median
        stats = {"min": median * 0.9, "median": median, "rounds": 5}
        return {"extra_info": extra, "stats": stats}

    step = {"model": "vit_base", "max_abs_diff": 1e-6, "rel_l2": 1e-7, "setup_s": 1.0}
    benchmarks = [
        bench({**step, "variant": "tensorflow"}, 0.4),
        bench({**step, "variant": "onnxruntime"}, 0.3),
        bench({**step, "variant": "fxsurgeon"}, 0.2),
        bench({**step, "variant": "fxsurgeon_compiled"}, 0.25),
        bench({**step, "variant": "native"}, 0.25),
    ]
    for layers in (2, 4, 8, 12, 24):
        benchmarks.append(bench({"kind": "convert", "layers": layers}, 0.5 * layers))
        benchmarks.append(bench({"kind": "optimize", "layers": layers}, 1.0 + 0.75 * layers))
    info = {"protocol": "cpu-fp32", "device": "cpu", "batch_size": 2, "threads": 2}
    data = {
        "datetime": "2026-01-02T03:04:05",
        "machine_info": {"fxsurgeon": {**info, "versions": {"torch": "2.x"}}},
        "benchmarks": benchmarks,
    }
    path.write_text(json.dumps(data))
    return path


def test_report_appends_a_performance_section_then_replaces_only_its_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\n## Usage\n\ntext\n")
    run = report.load(_benchmark_json(tmp_path / "cpu.json"))

    report.write_readme(readme, report.render([run]))
    first = readme.read_text()
    report.write_readme(readme, "new block\n")
    second = readme.read_text()

    assert first.startswith(
        "# project\n\n## Usage\n\ntext\n\n## Performance\n\n<!-- bench:start -->"
    )
    assert "| ViT-Base | fxsurgeon eager | 180.0 | 200.0 | 0.50x | 0.80x |" in first
    assert "optimize 0.90 s + 0.68 s/layer (R² 1.000)" in first
    assert (
        "| ViT-Base: optimize() <= 2x onnx2torch.convert() | 1.67x (9.0 s vs 5.4 s) | yes |"
        in first
    )
    assert "fxsurgeon + compile <= onnxruntime (CPU) | 0.83x onnxruntime | yes |" in first
    assert second == first[: first.index("<!-- bench:start -->")] + (
        "<!-- bench:start -->\nnew block\n<!-- bench:end -->\n"
    )
