"""Save an optimized model as readable PyTorch source + safetensors, and load it back.

``save(optimized, outdir)`` writes:

* ``model.py``: standalone source that imports only torch (see
  `fxsurgeon.codegen`), with a ``Model`` class and a ``load(path)`` helper;
* ``model.safetensors``: the weights under the names of ``state_dict()``, plus
  the structural constants too big to be written into model.py under
  ``__constants__.<Class>.<name>`` (``Model.load_state_dict`` takes them out);
* ``report.md`` and ``report.json`` (`fxsurgeon.report.ConversionReport`).

Nothing is pickled: no GraphModule, no ``torch.save``. Before returning,
`save` imports the written model.py, loads the weights and compares its
outputs with the GraphModule's on example inputs; if the classes written for
repeated blocks do not reproduce the model, it writes everything inline
instead, and if that fails too it raises `CodegenError`.

``load(outdir)`` imports ``outdir/model.py`` and calls its ``load``: it needs
neither TensorFlow nor onnx2torch. Importing model.py runs it, like importing
any Python file: load only folders you trust (or read model.py first, which is
the point of it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from .codegen import (
    RENAMED_KEY,
    BlockClass,
    CodegenError,
    Generated,
    generate,
    with_identifier_names,
)
from .errors import InputError
from .report import ConversionReport, write_report
from .source import SOURCE_META_KEY

__all__ = ["MODEL_PY", "WEIGHTS", "Saved", "load", "save"]

MODEL_PY = "model.py"
WEIGHTS = "model.safetensors"
#: How far model.py's outputs may be from the GraphModule's (they run the same ops).
CHECK_ATOL = 1e-6


@dataclass
class Saved:
    """What `save` wrote, and how model.py compared with the GraphModule."""

    directory: Path
    classes: list[BlockClass] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    check_max_abs: float | None = None  # None: no example inputs to check with
    inline: bool = False  # the block classes did not reproduce the model
    report: ConversionReport | None = None

    @property
    def model_py(self) -> Path:
        return self.directory / MODEL_PY

    @property
    def weights(self) -> Path:
        return self.directory / WEIGHTS


def save(
    model: fx.GraphModule,
    directory: str | os.PathLike,
    *,
    report: ConversionReport | None = None,
    example_inputs: Sequence[torch.Tensor] | None = None,
    reuse_blocks: bool = True,
    check: bool = True,
) -> Saved:
    """Write ``model`` (what `fxsurgeon.optimize` returned) as ``directory/model.py`` + weights.

    Args:
        model: the optimized GraphModule.
        directory: created if missing; model.py, model.safetensors and the
            reports in it are replaced.
        report: the conversion report to complete and write (``fxsurgeon
            convert`` passes its own); default: one made from the model.
        example_inputs: inputs for the check of model.py against ``model``;
            default: made from the input shapes the model carries.
        reuse_blocks: one class per kind of repeated block (False: all inline).
        check: run model.py against ``model`` before returning.

    Raises:
        InputError: ``model`` is not a GraphModule.
        CodegenError: the model cannot be written as standalone PyTorch, or
            model.py does not compute what ``model`` computes.
    """
    if not isinstance(model, fx.GraphModule):
        raise InputError(
            f"save() takes the GraphModule fxsurgeon.optimize returned, got {type(model).__name__}"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inputs = _example_inputs(model, example_inputs) if check else None
    model = with_identifier_names(model)  # a renamed copy when a name is no identifier
    generated = _generate(model, reuse_blocks)
    _write(directory, model, generated)
    saved = Saved(directory, generated.classes, generated.fallbacks)
    notes: list[str] = []
    if inputs is not None:
        try:
            saved.check_max_abs = _check(directory, model, inputs)
        except CodegenError as exc:
            if not (reuse_blocks and generated.classes):
                raise
            notes.append(f"block classes dropped: {exc}")
            generated = _generate(model, reuse_blocks=False)
            _write(directory, model, generated)
            saved = Saved(directory, [], generated.fallbacks, inline=True)
            saved.check_max_abs = _check(directory, model, inputs)
    elif check:
        notes.append("model.py not checked against the GraphModule: no example inputs known")

    report = report if report is not None else ConversionReport.of(model)
    report.output_dir = report.output_dir or str(directory)
    report.codegen = {
        "classes": [
            {"name": c.name, "instances": c.instances, "digest": c.digest, "nodes": c.nodes}
            for c in saved.classes
        ],
        "fallbacks": list(saved.fallbacks),
        "renamed": dict(model.meta.get(RENAMED_KEY, {})),
        "self_check_max_abs": saved.check_max_abs,
        "notes": notes,
    }
    write_report(directory, report)
    saved.report = report
    return saved


def load(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """The model in ``directory`` (written by `save`) with its weights, in eval mode.

    Imports ``directory/model.py`` (nothing else of fxsurgeon, no TensorFlow, no
    onnx2torch) and calls its ``load``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory")
    for name in (MODEL_PY, WEIGHTS):
        if not (directory / name).is_file():
            raise InputError(f"{directory}: no {name} (not a folder fxsurgeon.save wrote)")
    module = _import_model_py(directory / MODEL_PY)
    if not callable(getattr(module, "load", None)):
        raise InputError(f"{directory / MODEL_PY}: has no load() function")
    return module.load(directory / WEIGHTS, device=device)


# --------------------------------------------------------------------------- internals


def _generate(model: fx.GraphModule, reuse_blocks: bool) -> Generated:
    source = model.meta.get(SOURCE_META_KEY)
    input_names = [s.name for s in source.input_specs] if source is not None else None
    output_names = list(source.output_names) if source is not None else None
    return generate(
        model,
        reuse_blocks=reuse_blocks,
        input_names=input_names,
        output_names=output_names,
        docstring=_docstring(model),
    )


def _docstring(model: fx.GraphModule) -> str:
    from . import __version__

    source = model.meta.get(SOURCE_META_KEY)
    lines = [f"The model, as plain PyTorch (written by fxsurgeon {__version__})."]
    if source is not None:
        lines.append("")
        lines.append("Inputs (positional; None is a dynamic dim):")
        for spec in source.input_specs:
            dims = ", ".join("None" if d is None else str(d) for d in spec.shape)
            lines.append(f"    {spec.name}: {str(spec.dtype).removeprefix('torch.')} [{dims}]")
        lines.append(f"Returns: {', '.join(source.output_names)}")
    lines += [
        "",
        "Weights: model.safetensors beside this file, under the state_dict() names;",
        "``load()`` below builds the model and loads them.",
    ]
    return "\n".join(lines)


def _write(directory: Path, model: fx.GraphModule, generated: Generated) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    state = model.state_dict()
    for name, value in [*state.items(), *generated.constants.items()]:
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in seen:
            tensor = tensor.clone()  # safetensors refuses tensors sharing memory (tied weights)
        seen.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
    _atomic(directory / WEIGHTS, lambda path: save_file(tensors, path, metadata={"format": "pt"}))
    _atomic(directory / MODEL_PY, lambda path: Path(path).write_text(generated.source))


def _atomic(target: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _import_model_py(path: Path) -> Any:
    """Import a generated model.py under a name unique to its path and content."""
    digest = hashlib.sha256(str(path.resolve()).encode() + path.read_bytes()).hexdigest()[:16]
    name = f"fxsurgeon_saved_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect and torch.compile look the source up there
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise InputError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module


def _example_inputs(
    model: fx.GraphModule, given: Sequence[torch.Tensor] | None
) -> tuple[torch.Tensor, ...] | None:
    if given is not None:
        return tuple(given)
    if model.meta.get("fxsurgeon.examples") is not None:  # pipeline.EXAMPLES_KEY
        return tuple(model.meta["fxsurgeon.examples"])
    source = model.meta.get(SOURCE_META_KEY)
    if source is not None and source.input_specs:
        from .shapes import example_inputs_from_specs

        return example_inputs_from_specs(source.input_specs).first
    made = []
    for node in model.graph.nodes:
        if node.op != "placeholder":
            continue
        shape, dtype = node.meta.get("fxs_shape"), node.meta.get("fxs_dtype")
        if shape is None or dtype is None:
            return None
        dims = [2 if d is None else d for d in shape]
        made.append(
            torch.randn(dims).to(dtype)
            if dtype.is_floating_point
            else torch.ones(dims, dtype=dtype)
        )
    return tuple(made)


def _check(directory: Path, model: fx.GraphModule, inputs: tuple[torch.Tensor, ...]) -> float:
    """Max |model.py - GraphModule| on ``inputs``; CodegenError beyond `CHECK_ATOL`."""
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    try:
        written = load(directory, device=device)
    except Exception as exc:  # a model.py that does not load is a codegen fault, like a diff
        raise CodegenError(f"model.py does not load: {type(exc).__name__}: {exc}") from exc
    inputs = tuple(t.to(device) for t in inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _flatten(model(*inputs))
            got = _flatten(written(*inputs))
    except Exception as exc:
        raise CodegenError(
            f"model.py fails on example inputs: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    if len(expected) != len(got):
        raise CodegenError(f"model.py returns {len(got)} outputs, the model {len(expected)}")
    worst = 0.0
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        if not isinstance(e, torch.Tensor):
            if e != g:
                raise CodegenError(f"model.py output {i} is {g!r}, the model's {e!r}")
            continue
        if e.shape != g.shape or e.dtype != g.dtype:
            raise CodegenError(
                f"model.py output {i} is {g.dtype}{list(g.shape)}, the model's {e.dtype}{list(e.shape)}"
            )
        if e.numel():
            diff = (e.double() - g.double()).abs()
            both_nan = e.isnan() & g.isnan() if e.is_floating_point() else None
            if both_nan is not None:
                diff = diff.masked_fill(both_nan, 0.0)
            worst = max(worst, float(diff.max()))
    if not worst <= CHECK_ATOL:
        raise CodegenError(f"model.py differs from the model by {worst:.3g} (> {CHECK_ATOL:g})")
    return worst


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flatten(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flatten(item)]
    return [value]
