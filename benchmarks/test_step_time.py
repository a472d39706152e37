"""Step time of every variant of every model, side by side (one pytest-benchmark group per model).

The first test of a model prepares all its variants: each is checked against
TensorFlow fp32 on the same inputs (`harness.check_outputs`: max abs 1e-4 on
the CPU fp32 protocol, relative L2 5e-2 under bf16) and warmed up; then all are
timed round-robin, one step of each per round (`harness.interleaved_latency`,
into ``extra_info["latency_s"]``), so that load from other processes on a
shared machine lands on every variant alike. Each test re-raises its variant's
check failure, then has pytest-benchmark time the variant on its own (one step
and a synchronisation per round). Under the CUDA protocol the article's figure
(100 back-to-back steps between two CUDA events) goes into
``extra_info["protocol_step_s"]``. Nothing timed is asserted.
"""

from __future__ import annotations

import statistics

import pytest

from benchmarks import harness


def test_step_time(benchmark, case_for, protocol, model_variant):
    model_name, variant = model_variant
    case, prepared = case_for(model_name)
    try:
        runner = prepared.runner(variant)  # raises the variant's check failure
    except harness.NotApplicable as exc:
        pytest.skip(str(exc))

    latency = prepared.latency[variant]
    benchmark.group = f"{model_name} ({protocol.name}, batch {protocol.batch_size})"
    benchmark.extra_info.update(
        model=model_name,
        variant=variant,
        label=harness.LABELS[variant],
        protocol=protocol.name,
        batch_size=protocol.batch_size,
        setup_s=runner.setup_s,
        optimize_s=case.optimize_s,
        latency_s=latency,
        latency_min_s=min(latency),
        latency_median_s=statistics.median(latency),
        others_cpu_share=prepared.others_cpu_share,
        **runner.check,
    )
    rounds = harness.rounds_for(runner, protocol)
    benchmark.pedantic(runner.timed_step, rounds=rounds, iterations=1, warmup_rounds=0)
    if protocol.device == "cuda":
        benchmark.extra_info["protocol_step_s"] = harness.protocol_step_time(
            runner, protocol.timed_steps
        )
