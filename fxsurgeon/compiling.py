"""``fxsurgeon.compile(model, inference=...)``: ``torch.compile`` with the recipe measured here.

The recipe (README, "Compiling"), found by timing converted corpus models on the
CPU with two threads, interleaved rounds, fastest and median of each variant:

* training (``inference=False``, the default): plain ``torch.compile`` with
  Inductor's default mode and ``dynamic=None`` (static first, a dynamic
  recompile when a size changes). The parameters stay the model's own trainable
  ``nn.Parameter``s: the compiled module shares them, gradients reach them.
  ``mode="max-autotune-no-cudagraphs"`` was no faster on the corpus models and
  autotunes at every compile, so it is not the default; pass ``mode=`` to choose.
* inference (``inference=True``): a copy of the model with its BatchNorms
  folded (`fxsurgeon.freeze`) compiled with Inductor's ``freezing`` (weights
  become constants: constant folding, and on the CPU oneDNN weight prepacking),
  Inductor's C++ wrapper, and no guards on the copy's modules (it is private and
  its weights are constants of the compiled graph). It is always called under
  ``torch.no_grad()`` (freezing applies only without grad, and a call with grad
  would recompile). It is a snapshot: later changes to the model's weights do
  not reach it.

Freezing is the one option that cannot go through ``torch.compile(options=...)``:
Dynamo reads ``torch._inductor.config.freezing`` itself while it traces, to make
parameters graph constants, and ``options`` reach Inductor only after tracing. So
given as an option (torch 2.14), the parameters stay graph inputs: Inductor
neither folds nor prepacks them, and convolutions stay on ATen's default path
(on the CPU at batch 1, its im2col kernel: keras_resnet50v2 ran 3x slower than
frozen). The inference module therefore sets ``freezing`` for the duration of each
of its calls (about 4 us) and restores it. Every other Inductor option is passed
through ``options``, scoped to the compiled module; nothing is left set in
``torch._inductor.config`` after a call.
On CUDA the same call applies; ``mode="max-autotune"`` (CUDA graphs) is the
user's choice, since its outputs are overwritten by the next call.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import fx, nn

from .inference import freeze

__all__ = ["compile"]


def compile(  # noqa: A001 - fxsurgeon.compile mirrors torch.compile
    model: nn.Module,
    *,
    inference: bool = False,
    backend: str = "inductor",
    mode: str | None = None,
    dynamic: bool | None = None,
    fullgraph: bool = True,
    options: dict[str, Any] | None = None,
) -> nn.Module:
    """``model`` compiled with the measured recipe; the model given is never mutated.

    ``inference=False`` returns ``torch.compile(model, ...)``: it shares the
    model's parameters, for training. ``inference=True`` returns a module that
    runs a frozen, compiled copy under ``torch.no_grad()``. ``mode`` and
    ``options`` are Inductor's (they may be given together: the mode's options
    come first, ``options`` override them); other backends take neither.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fxsurgeon.compile expects a torch.nn.Module, got {type(model).__name__}")
    inductor_options = _inductor_options(backend, mode, dynamic, options)
    freezing = inference and backend == "inductor"
    if freezing:
        inductor_options = {"cpp_wrapper": True, **inductor_options}
    target = _inference_copy(model) if inference else model
    kwargs: dict[str, Any] = {"backend": backend, "dynamic": dynamic, "fullgraph": fullgraph}
    options_given = dict(inductor_options)
    if inference:  # the private copy's modules never change: guard the inputs only
        options_given["guard_filter_fn"] = torch.compiler.skip_guard_on_all_nn_modules_unsafe
    if options_given:
        kwargs["options"] = options_given
    compiled = cast(nn.Module, torch.compile(target, **kwargs))
    return NoGrad(compiled, freezing=freezing) if inference else compiled


class NoGrad(nn.Module):
    """Calls the compiled inference module under ``torch.no_grad()`` (Inductor's freezing
    needs it), with ``torch._inductor.config.freezing`` set for the call when ``freezing``."""

    def __init__(self, compiled: nn.Module, *, freezing: bool = False) -> None:
        super().__init__()
        self.compiled = compiled
        self.freezing = freezing

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.freezing:
            with torch.no_grad():
                return self.compiled(*args, **kwargs)
        from torch._inductor import config

        before = config.freezing
        config.freezing = True
        try:
            with torch.no_grad():
                return self.compiled(*args, **kwargs)
        finally:
            config.freezing = before


def _inference_copy(model: nn.Module) -> nn.Module:
    """An eval copy: BatchNorms folded into their convolutions for a GraphModule."""
    if isinstance(model, fx.GraphModule):
        return freeze(model)
    return copy.deepcopy(model).eval()


def _inductor_options(
    backend: str, mode: str | None, dynamic: bool | None, options: dict[str, Any] | None
) -> dict[str, Any]:
    """The Inductor options of ``mode`` then ``options`` (torch.compile takes one or the other)."""
    if backend != "inductor":
        if mode is not None or options:
            raise ValueError(
                f"mode= and options= are Inductor's; backend={backend!r} takes neither"
            )
        return {}
    merged: dict[str, Any] = {}
    if mode is not None and mode != "default":
        from torch._inductor import list_mode_options

        merged.update(list_mode_options(mode, dynamic))
    merged.update(options or {})
    return merged
