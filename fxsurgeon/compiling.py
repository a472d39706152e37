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

The inference form of a GraphModule calls Inductor without Dynamo for the input
signatures it is given first (`Static`): ``torch._inductor.compile`` of the
frozen copy for those exact shapes, strides and dtypes, looked up by signature at
each call. Dynamo's frame evaluation, guards and wrappers cost 25-50 us a call
(keras_cnn: 0.10 ms straight to the compiled graph, 0.13-0.15 ms through
``torch.compile``; onnxruntime 0.04 ms), the bulk of the gap to onnxruntime on
the corpus's small models. A signature is exact, so no guard is lost: any other
call goes through ``torch.compile`` as above (with ``dynamic=None``, Dynamo's own
static-then-dynamic recompiles), as does every call when the graph cannot be
compiled without Dynamo (the reason is kept in ``Static.error``).
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
    if not inference:
        return compiled
    static = None
    if freezing and isinstance(target, fx.GraphModule) and dynamic is not True:
        static = Static(target, inductor_options, limit=None if dynamic is False else 1)
    return NoGrad(compiled, freezing=freezing, static=static)


Signature = tuple[Any, ...]


def _signature(args: tuple[Any, ...]) -> Signature | None:
    """Shape, strides, dtype and device of each of ``args`` in one flat tuple (the
    lookup runs at every call); None unless all are tensors."""
    key: list[Any] = []
    for a in args:
        if not isinstance(a, torch.Tensor):
            return None
        key += (a.shape, a.stride(), a.dtype, a.device)
    return tuple(key)


class Static:
    """The frozen GraphModule compiled by Inductor without Dynamo, one entry per input
    signature (exact shapes, strides, dtypes, devices: an entry is only called with
    what it was compiled for), up to ``limit`` entries (None: no limit). Calls inside
    an autocast region are left to Dynamo, which guards on it."""

    def __init__(self, gm: fx.GraphModule, options: dict[str, Any], *, limit: int | None) -> None:
        self.gm = gm
        self.options = {**options, "freezing": True}
        self.limit = limit
        self.entries: dict[Signature, Any] = {}
        self.error: str | None = None

    def lookup(self, args: tuple[Any, ...]) -> Any:
        """The compiled graph for ``args`` (compiling it while there is room), or None."""
        signature = _signature(args)
        if signature is None:
            return None
        for device in signature[3::4]:
            if torch.is_autocast_enabled(device.type):
                return None  # an autocast region: Dynamo guards on it and compiles for it
        found = self.entries.get(signature)
        if found is not None or self.error is not None:
            return found
        if self.limit is not None and len(self.entries) >= self.limit:
            return None
        from torch._inductor import compile as inductor_compile

        # a GraphModule of its own (Inductor rewrites the graph it is given to return a
        # tuple), sharing the frozen copy's modules and weights
        gm = fx.GraphModule(self.gm, copy.deepcopy(self.gm.graph))
        try:
            with torch.no_grad():
                found = inductor_compile(gm, list(args), options=self.options)
        except Exception as exc:  # noqa: BLE001 - the Dynamo path runs instead, and raises
            self.error = f"{type(exc).__name__}: {exc}"
            return None
        self.entries[signature] = found
        return found


class NoGrad(nn.Module):
    """Calls the compiled inference module under ``torch.no_grad()`` (Inductor's freezing
    needs it), with ``torch._inductor.config.freezing`` set for the call when ``freezing``;
    first the `Static` entry of the call's signature, when there is one."""

    def __init__(
        self, compiled: nn.Module, *, freezing: bool = False, static: Static | None = None
    ) -> None:
        super().__init__()
        self.compiled = compiled
        self.freezing = freezing
        self.static = static

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.static is not None and not kwargs:
            found = self.static.lookup(args)
            if found is not None:
                with torch.no_grad():
                    return found(*args)
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
