"""Compare torch.compile recipes on one corpus model: ``python -m benchmarks.compile_recipes NAME``.

The measurement behind `fxsurgeon.compile`'s recipe (README, "Compiling"). The
model is door A of the corpus scorer (``from_onnx(export, tf_model=...)`` then
``optimize``), on the corpus model's own inputs at ``--batch`` (and ``--size``,
the sequence length of a text model). Each variant compiles its own copy (its
own Dynamo cache), is checked against eager, then all are timed in interleaved
rounds under ``torch.no_grad()``, in a shuffled order per round, so that load
from other processes lands on every variant alike. Printed: the fastest and the
median round (ms) and their ratio to ``default`` (plain ``torch.compile``).
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

VARIANTS = ("eager", "default", "max-autotune", "options-freezing", "dynamic", "recipe")
VARIANTS += ("recipe-dynamo",)


def builders(fxsurgeon: Any) -> dict[str, Callable[[Any], Any]]:
    """Variant -> how it compiles a copy of the model."""
    return {
        "eager": lambda m: m,
        "default": lambda m: fxsurgeon.compile(m),
        "max-autotune": lambda m: fxsurgeon.compile(m, mode="max-autotune-no-cudagraphs"),
        # the inference recipe until 9875749: BatchNorms folded, Inductor's freezing given
        # through torch.compile(options=), which Dynamo does not see while it traces
        # (the parameters stay graph inputs: nothing frozen)
        "options-freezing": lambda m: fxsurgeon.compile(
            fxsurgeon.freeze(m), options={"freezing": True}
        ),
        "dynamic": lambda m: fxsurgeon.compile(m, dynamic=True),
        "recipe": lambda m: fxsurgeon.compile(m, inference=True),
        # the inference recipe until the Dynamo-free first signature: every call through Dynamo
        "recipe-dynamo": lambda m: _through_dynamo(fxsurgeon.compile(m, inference=True)),
    }


def _through_dynamo(compiled: Any) -> Any:
    compiled.static = None
    return compiled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_recipes")
    parser.add_argument("name", help="a corpus model (python -m corpus lists them)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=None, help="sequence length (text models)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--onnxruntime", action="store_true", help="time onnxruntime on the export too"
    )
    args = parser.parse_args(argv)

    import fxsurgeon  # the safe import order, before TensorFlow
    from corpus.score import Scorer, configure_threads

    configure_threads(args.threads)
    import torch

    scorer = Scorer(args.name)
    if not scorer.export():
        raise SystemExit(f"{args.name}: {scorer.lines['export']['reason']}")
    model = scorer.optimized("A").eval()
    inputs = scorer.torch_inputs(scorer.model.make_inputs(args.batch, 0, args.size))
    print(args.name, [tuple(t.shape) for t in inputs], f"{torch.get_num_threads()} threads")
    make = builders(fxsurgeon)
    names = args.variants.split(",")
    calls: dict[str, Any] = {}
    with torch.no_grad():
        want = _outputs(model(*inputs))
        for name in names:
            start = time.perf_counter()
            calls[name] = make[name](copy.deepcopy(model))
            got = _outputs(calls[name](*inputs))
            diff = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
            print(
                f"  {name}: first call {time.perf_counter() - start:.1f} s, max |diff| {diff:.2g}"
            )
        if args.onnxruntime:
            from corpus.score import _ort_runner

            arrays = [t.numpy() for t in inputs]
            run = _ort_runner(scorer.proto, scorer.input_names(), arrays)
            calls["onnxruntime"] = lambda *_: run()
            names.append("onnxruntime")
        times = _rounds(calls, inputs, args.rounds)
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{'variant':14} {'fastest ms':>10} {'median ms':>10} {'fastest/def':>11} {'median/def':>10}"
    )
    for name in names:
        ratios = [
            f"{s[name] / s['default']:.3f}" if "default" in s else "-" for s in (best, median)
        ]
        print(f"{name:14} {best[name]:10.3f} {median[name]:10.3f} {ratios[0]:>11} {ratios[1]:>10}")
    return 0


def _outputs(out: Any) -> list[Any]:
    items = list(out) if isinstance(out, (list, tuple)) else [out]
    return [t for t in items if t.is_floating_point()]


def _rounds(calls: dict[str, Any], inputs: list[Any], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per call: two warm-up calls each, then shuffled interleaved rounds."""
    for call in calls.values():
        call(*inputs)
        call(*inputs)
    order, shuffle = list(calls), random.Random(0).shuffle
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            start = time.perf_counter()
            calls[name](*inputs)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


if __name__ == "__main__":
    raise SystemExit(main())
