"""Readable, standalone PyTorch source for a model `optimize` made.

``generate(gm)`` writes the GraphModule as the ``model.py`` a person would
write: one ``nn.Module`` class, ``Model``, whose ``__init__`` rebuilds the
module hierarchy (plain ``nn.Module()`` containers, torch.nn leaves built from
their own attributes, parameters and buffers under their ``state_dict``
names) and whose ``forward`` is the graph as statements:

* one statement per node; variables named after the module called
  (``query = self.attention.query(hidden_states)``), the op (``gelu``), the
  model's input and output names (``pixel_values``, ``logits``); a shape op
  (reshape, permute, ...) whose operand dies there reuses its name
  (``value = value.permute(0, 2, 1, 3)``);
* attribute reads are inlined (``self.embeddings.cls_token``), operators are
  infix, slices are slices (``x[:, :1]``), no ``_tensor_constant0`` and no
  ``; x = None``;
* structural constants (tensors no TF variable holds, the non-persistent
  buffers under ``constants``) become non-persistent buffers of the class
  that reads them: written as literals when small, else loaded from
  ``model.safetensors`` under `CONSTANTS_PREFIX` by a load_state_dict hook.

Repeated blocks. Sibling containers with the same structure (``layer_0`` ..
``layer_11``: same children, same leaf configurations, same parameter shapes)
are candidates for one class instantiated N times. For each instance the
region of the graph that belongs to it is computed:

1. seeds: the nodes that call its modules or read its parameters, plus the
   nodes whose TF scope (``node.meta["fxsurgeon.onnx_node"]``) lies under the
   instance's own scope (the common scope of its seeds, when the instances'
   scopes are distinct);
2. closure: every node on a path between two seeds;
3. absorption: pure nodes all of whose users are in the region and whose scope
   is unknown or the instance's (``size = hidden_states.size(0)``);
4. checks: no call of a module outside the instance, and convexity (no path
   leaves the region and comes back), so the region is a function call.

Each region is then canonicalised: its nodes in a topological order whose
ties are broken by scope relative to the instance and a structural hash; each
node written as (op, target relative to the instance, arguments as internal
indices / region inputs / literals / own parameters relative to the instance
/ constants by value digest). Instances with equal encodings compute the same
function of the same relative parameters: they share one class whose forward
is the representative's region; any other instance stays inline. The digest
of the encoding is reported. Correctness comes first: `fxsurgeon.save` also
runs the written model against the GraphModule and falls back to inline code
if they differ.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import heapq
import inspect
import keyword
import math
import operator
import re
import textwrap
import types
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import FxSurgeonError
from .nn import KerasBatchNorm

__all__ = [
    "CONSTANTS_PREFIX",
    "BlockClass",
    "CodegenError",
    "Generated",
    "generate",
]

#: Key prefix of the structural constants stored in model.safetensors:
#: ``__constants__.<ClassName>.<buffer>``. load_state_dict on the generated
#: model takes them out of the state dict (they are not in ``state_dict()``).
CONSTANTS_PREFIX = "__constants__."
#: Constants with at most this many elements are written into model.py.
INLINE_LIMIT = 64
#: The smallest region (call nodes) worth a class of its own.
MIN_REGION_NODES = 2

_SCOPE_KEY = "fxsurgeon.onnx_node"
_INT32_MAX = 2**31 - 1
_COPYABLE_MODULES: tuple[type[nn.Module], ...] = (KerasBatchNorm,)


class CodegenError(FxSurgeonError):
    """The model cannot be written as standalone PyTorch; names the node or module."""


@dataclass
class BlockClass:
    """A class of model.py instantiated for several repeated blocks."""

    name: str
    instances: list[str]
    digest: str  # sha256 of the canonical region encoding (first 16 hex digits)
    nodes: int  # call nodes in one block


@dataclass
class Generated:
    """What `generate` wrote.

    ``source`` is model.py; ``constants`` the structural constants too big to
    be literals, keyed as they go into model.safetensors; ``classes`` the
    classes made for repeated blocks; ``fallbacks`` why candidate repeated
    blocks stayed inline.
    """

    source: str
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    classes: list[BlockClass] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)


def generate(
    gm: fx.GraphModule,
    *,
    reuse_blocks: bool = True,
    input_names: Iterable[str] | None = None,
    output_names: Iterable[str] | None = None,
    docstring: str | None = None,
    class_name: str = "Model",
) -> Generated:
    """Write ``gm`` as the source of a standalone module (see the module docstring).

    Args:
        gm: an optimized GraphModule (anything whose calls are torch, operator
            and math functions, tensor methods and torch.nn / fxsurgeon.nn modules).
        reuse_blocks: one class per kind of repeated block; False writes
            everything inline in ``Model.forward``.
        input_names, output_names: names for the forward's parameters and
            returned values (the ONNX graph's); default: the placeholders'.
        docstring: the class docstring.
        class_name: the name of the top-level class.

    Raises:
        CodegenError: a node calls something model.py cannot import without
            fxsurgeon (an onnx2torch module left unconverted, a Python function
            from a pattern file), or a module cannot be rebuilt from its attributes.
    """
    return _Generator(
        gm,
        reuse_blocks=reuse_blocks,
        input_names=list(input_names) if input_names is not None else None,
        output_names=list(output_names) if output_names is not None else None,
        docstring=docstring,
        class_name=class_name,
    ).run()


# --------------------------------------------------------------------------- rendering


def _function_names() -> dict[int, tuple[str, Any]]:
    """id(function) -> (how model.py writes it, the function)."""
    table: dict[int, tuple[str, Any]] = {}

    def add(prefix: str, namespace: Any) -> None:
        for name in sorted(dir(namespace)):
            if name.startswith("_") or not name[0].islower():
                continue
            obj = getattr(namespace, name, None)
            if obj is None or isinstance(obj, (type, types.ModuleType)) or not callable(obj):
                continue
            table.setdefault(id(obj), (f"{prefix}.{name}", obj))

    add("F", F)  # F.gelu rather than torch._C._nn.gelu
    add("torch", torch)
    for sub in ("special", "linalg", "fft"):
        add(f"torch.{sub}", getattr(torch, sub))
    add("math", math)
    add("operator", operator)
    return table


_FUNCTIONS: dict[int, tuple[str, Any]] | None = None

_BINARY = {
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.truediv: "/",
    operator.floordiv: "//",
    operator.mod: "%",
    operator.pow: "**",
    operator.matmul: "@",
    operator.and_: "&",
    operator.or_: "|",
    operator.xor: "^",
    operator.lshift: "<<",
    operator.rshift: ">>",
    operator.eq: "==",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
}
_UNARY = {operator.neg: "-", operator.pos: "+", operator.invert: "~"}

#: torch functions written as tensor methods: ``x.reshape(-1, 4)`` for ``torch.reshape(x, (-1, 4))``.
_AS_METHOD = {
    torch.reshape: ("reshape", True),  # (method, the 2nd argument is a shape to unpack)
    torch.permute: ("permute", True),
    torch.transpose: ("transpose", False),
    torch.squeeze: ("squeeze", False),
    torch.unsqueeze: ("unsqueeze", False),
    torch.flatten: ("flatten", False),
}
#: Functions and methods whose result may take the name of their operand when it dies.
_SAME_VALUE_FUNCTIONS = {
    torch.reshape,
    torch.permute,
    torch.transpose,
    torch.squeeze,
    torch.unsqueeze,
    torch.flatten,
    operator.getitem,
}
_SAME_VALUE_METHODS = {
    "reshape",
    "view",
    "permute",
    "transpose",
    "squeeze",
    "unsqueeze",
    "flatten",
    "contiguous",
    "to",
    "float",
    "half",
    "double",
    "type",
    "expand",
    "expand_as",
    "clone",
    "detach",
}
_FUNCTION_BASES = {
    F.scaled_dot_product_attention: "attn",
    operator.add: "add",
    operator.sub: "sub",
    operator.mul: "mul",
    operator.truediv: "div",
    operator.floordiv: "div",
    operator.pow: "pow",
    operator.matmul: "matmul",
    operator.neg: "neg",
    operator.getitem: "item",
    builtins.getattr: "attr",
}
_RESERVED = (
    set(keyword.kwlist)
    | set(dir(builtins))
    | {"self", "torch", "F", "nn", "math", "operator", "load", "os"}
)


def _function_text(target: Any) -> str:
    """How model.py writes a call_function target, checked to resolve to that very object."""
    global _FUNCTIONS
    if _FUNCTIONS is None:
        _FUNCTIONS = _function_names()
    found = _FUNCTIONS.get(id(target))
    if found is not None and found[1] is target:
        return found[0]
    name = getattr(target, "__name__", None)
    if name and getattr(builtins, name, None) is target:
        return name
    qualified = fx.node._get_qualified_name(target) if callable(target) else repr(target)
    if qualified.startswith(("torch.", "math.", "operator.")):
        namespace = {"torch": torch, "math": math, "operator": operator}
        try:
            resolved = eval(qualified, namespace)  # noqa: S307 - a dotted name built above
        except Exception:  # noqa: BLE001 - any failure means "not importable as written"
            resolved = None
        if resolved is target:
            return qualified
    raise CodegenError(
        f"calls {qualified}, which model.py cannot reach through torch, math or operator"
    )


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    return repr(value)


def _string_text(value: str) -> str:
    return (
        '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if "\n" not in value
        else repr(value)
    )


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _attr_chain(base: str, dotted: str) -> str:
    """``self.a.b`` for ``a.b``; ``getattr`` for components that are no identifiers."""
    out = base
    for part in dotted.split(".") if dotted else []:
        out = f"{out}.{part}" if _is_identifier(part) else f"getattr({out}, {_string_text(part)})"
    return out


def _snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    name = re.sub(r"\W+", "_", name).strip("_").lower()
    if not name:
        return "x"
    return f"x_{name}" if name[0].isdigit() else name


def _camel(name: str) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts)
    return text if text and not text[0].isdigit() else f"Block{text}"


class _Namer:
    """Unique identifiers within one function."""

    def __init__(self, taken: Iterable[str] = ()):
        self.taken = set(_RESERVED) | set(taken)

    def fresh(self, base: str) -> str:
        base = _snake(base)
        if base not in self.taken:
            self.taken.add(base)
            return base
        for i in range(1, 1_000_000):
            name = f"{base}_{i}"
            if name not in self.taken:
                self.taken.add(name)
                return name
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------- helpers


def _walk(arg: Any) -> Iterable[fx.Node]:
    """Every fx.Node inside an argument structure."""
    if isinstance(arg, fx.Node):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for a in arg:
            yield from _walk(a)
    elif isinstance(arg, dict):
        for a in arg.values():
            yield from _walk(a)
    elif isinstance(arg, slice):
        yield from _walk((arg.start, arg.stop, arg.step))


def _inputs(node: fx.Node) -> list[fx.Node]:
    return list(_walk((node.args, node.kwargs)))


def _within(target: str, path: str) -> bool:
    return not path or target == path or target.startswith(path + ".")


def _relative(target: str, path: str) -> str:
    return target[len(path) + 1 :] if path else target


def _digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous()
    raw = data.view(torch.uint8) if data.numel() else data
    return hashlib.sha256(raw.numpy().tobytes() if raw.numel() else b"").hexdigest()[:16]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --------------------------------------------------------------------------- regions


@dataclass
class _Region:
    """The graph nodes that belong to one instance of a repeated block."""

    path: str
    nodes: list[fx.Node]  # canonical order
    inputs: list[fx.Node]  # values from outside, in first-use order
    outputs: list[fx.Node]  # nodes used outside, canonical order
    encoding: tuple
    digest: str
    scope: str | None


@dataclass
class _Class:
    name: str
    representative: _Region
    regions: list[_Region]
    input_order: list[int] = field(default_factory=list)
    param_names: list[str] = field(default_factory=list)
    return_names: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class _Constant:
    attr: str  # buffer name in its owner class
    tensor: torch.Tensor


class _Generator:
    def __init__(
        self,
        gm: fx.GraphModule,
        *,
        reuse_blocks: bool,
        input_names: list[str] | None,
        output_names: list[str] | None,
        docstring: str | None,
        class_name: str,
    ):
        self.gm = gm
        self.graph = gm.graph
        self.reuse_blocks = reuse_blocks
        self.input_names = input_names
        self.output_names = output_names
        self.docstring = docstring
        self.class_name = class_name
        self.order = {n: i for i, n in enumerate(self.graph.nodes)}
        self.modules = dict(gm.named_modules(remove_duplicate=False))
        self.state_keys = set(gm.state_dict(keep_vars=True))
        self.classes: dict[tuple, _Class] = {}  # encoding -> class
        self.class_names: set[str] = {class_name, "KerasBatchNorm"}
        self.fallbacks: list[str] = []
        self.big_constants: dict[str, torch.Tensor] = {}
        self.copied_sources: dict[str, str] = {}
        self._signatures: dict[str, tuple] = {}
        self._ctor_cache: dict[str, tuple[str, nn.Module]] = {}
        self._check_targets()

    # ------------------------------------------------------------------ checks

    def _check_targets(self) -> None:
        for node in self.graph.nodes:
            if node.op == "call_module" and node.target not in self.modules:
                raise CodegenError(f"node {node.format_node()} calls a module that does not exist")
            if node.op == "get_attr":
                value = self._fetch(node.target)
                if not isinstance(value, torch.Tensor):
                    raise CodegenError(
                        f"node {node.format_node()} reads a {type(value).__name__}, not a tensor"
                    )

    def _fetch(self, target: str) -> Any:
        owner, _, name = target.rpartition(".")
        module = self.modules.get(owner)
        if module is None:
            raise CodegenError(f"get_attr {target}: no module {owner!r}")
        return getattr(module, name)

    def is_state(self, target: str) -> bool:
        """A parameter or persistent buffer (it is in the state dict), not a constant."""
        return target in self.state_keys

    # ------------------------------------------------------------------ entry

    def run(self) -> Generated:
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        output = next(n for n in self.graph.nodes if n.op == "output")
        body_nodes = [n for n in self.graph.nodes if n.op not in ("placeholder", "output")]
        names = self.input_names or []
        param_names = [
            names[i] if i < len(names) else str(p.target) for i, p in enumerate(placeholders)
        ]
        root = _Body(
            self,
            owner="",
            owner_class=self.class_name,
            nodes=body_nodes,
            params=placeholders,
            param_names=param_names,
            returns=output.args[0],
            output_names=self.output_names,
        )
        forward = root.emit()
        instances = {r.path: c.name for c in self.classes.values() for r in c.regions}
        init = self._init_lines(
            self.gm, "", root.constants, self.class_name, root_level=True, instances=instances
        )
        source = self._module_source(init, forward, root)
        digest_classes = [
            BlockClass(
                c.name,
                [r.path for r in c.regions],
                c.representative.digest,
                len(c.representative.nodes),
            )
            for c in self.classes.values()
        ]
        return Generated(source, dict(self.big_constants), digest_classes, list(self.fallbacks))

    # ------------------------------------------------------------------ module tree

    def signature(self, path: str) -> tuple:
        """Structure of the module subtree at ``path``: equal signatures, one class."""
        if path in self._signatures:
            return self._signatures[path]
        module = self.modules[path]
        own: list[Any] = []
        for name, tensor in module._parameters.items():
            if tensor is None:
                own.append((name, None))
                continue
            own.append(("p", name, tuple(tensor.shape), str(tensor.dtype), tensor.requires_grad))
        for name, buffer in module._buffers.items():
            tensor = buffer
            if tensor is None:
                own.append((name, None))
                continue
            full = _join(path, name)
            persistent = full in self.state_keys
            value = None if persistent else _digest(tensor)
            own.append(("b", name, tuple(tensor.shape), str(tensor.dtype), persistent, value))
        kind = "container" if type(module) is nn.Module else self.constructor(path)[0]
        children = tuple(
            (name, self.signature(_join(path, name))) for name, _ in module.named_children()
        )
        result = (kind, tuple(own), children)
        self._signatures[path] = result
        return result

    def constructor(self, path: str) -> tuple[str, nn.Module]:
        """(``nn.Linear(32, 37)``, a module built from it on the meta device)."""
        if path in self._ctor_cache:
            return self._ctor_cache[path]
        module = self.modules[path]
        cls = type(module)
        if cls in _COPYABLE_MODULES:
            prefix = cls.__name__
            self.copied_sources[cls.__name__] = _copyable_source(cls)
            namespace: dict[str, Any] = {cls.__name__: cls}
        elif cls.__module__.startswith("torch.nn.") and getattr(nn, cls.__name__, None) is cls:
            prefix = f"nn.{cls.__name__}"
            namespace = {"nn": nn}
        else:
            raise CodegenError(
                f"module {path or '(root)'} is a {cls.__module__}.{cls.__qualname__}, which "
                "model.py cannot build without importing its package"
                + (
                    " (an onnx2torch module that optimize left unconverted)"
                    if cls.__module__.startswith("onnx2torch")
                    else ""
                )
            )
        signature = inspect.signature(cls.__init__)
        args, kwargs = [], []
        is_conv = isinstance(module, nn.modules.conv._ConvNd)
        for name, parameter in list(signature.parameters.items())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if name in ("device", "dtype") or name.startswith("_"):
                continue
            if not hasattr(module, name):
                if parameter.default is parameter.empty:
                    raise CodegenError(
                        f"module {path}: cannot tell the {cls.__name__} argument {name!r} "
                        "from its attributes"
                    )
                continue
            value = getattr(module, name)
            if isinstance(parameter.default, bool) and (
                value is None or isinstance(value, torch.Tensor)
            ):
                value = value is not None  # bias=True/False from the bias tensor
            elif isinstance(value, torch.Tensor):
                continue
            if (
                is_conv
                and isinstance(value, tuple)
                and value
                and all(isinstance(v, int) and v == value[0] for v in value)
            ):
                value = value[0]  # kernel_size=3 for (3, 3)
            if parameter.default is parameter.empty:
                args.append(_literal(value))
            elif not _same(value, parameter.default):
                kwargs.append(f"{name}={_literal(value)}")
        floats = {t.dtype for t in module.parameters(recurse=False) if t.is_floating_point()}
        floats |= {t.dtype for t in module.buffers(recurse=False) if t.is_floating_point()}
        if "dtype" in signature.parameters and floats and floats != {torch.get_default_dtype()}:
            if len(floats) > 1:
                raise CodegenError(f"module {path} mixes float dtypes {sorted(map(str, floats))}")
            kwargs.append(f"dtype={_literal(floats.pop())}")
            namespace["torch"] = torch
        text = f"{prefix}({', '.join(args + kwargs)})"
        namespace["torch"] = torch
        namespace["math"] = math
        try:
            with torch.device("meta"):
                built = eval(text, namespace)  # noqa: S307 - text written above from literals
        except Exception as exc:  # noqa: BLE001
            raise CodegenError(f"module {path}: {text} fails: {exc}") from exc
        if type(built) is not cls or built.extra_repr() != module.extra_repr():
            raise CodegenError(
                f"module {path}: {text} does not rebuild it ({built.extra_repr()!r} != "
                f"{module.extra_repr()!r})"
            )
        self._ctor_cache[path] = (text, built)
        return text, built

    def _init_lines(
        self,
        module: nn.Module,
        path: str,
        constants: list[_Constant],
        owner_class: str,
        root_level: bool = False,
        instances: dict[str, str] | None = None,
    ) -> list[str]:
        """``__init__`` body lines rebuilding the subtree at ``path`` as ``self``."""
        lines = ["super().__init__()"]
        instances = instances or {}
        lines += self._tree_lines(module, path, "self", instances)
        for constant in constants:
            lines += self._constant_lines(constant, owner_class)
        if root_level:
            lines += self._tie_lines()
            if self.big_constants:
                lines.append("self.register_load_state_dict_pre_hook(_load_constants)")
        return lines

    def _tree_lines(
        self, module: nn.Module, path: str, expr: str, instances: dict[str, str]
    ) -> list[str]:
        lines: list[str] = []
        built = None
        if type(module) is not nn.Module and module is not self.gm:
            built = self.constructor(path)[1]
        built_params = set(built._parameters) if built is not None else set()
        built_buffers = set(built._buffers) if built is not None else set()
        built_children = set(built._modules) if built is not None else set()
        for name, tensor in module._parameters.items():
            if name in built_params:
                continue
            if tensor is None:
                lines.append(f"{expr}.register_parameter({_string_text(name)}, None)")
                continue
            grad = "" if tensor.requires_grad else ", requires_grad=False"
            lines.append(f"{_attr_chain(expr, name)} = nn.Parameter({_zeros(tensor)}{grad})")
        for name, buffer in module._buffers.items():
            full = _join(path, name)
            if name in built_buffers and full in self.state_keys:
                continue
            if buffer is None or full not in self.state_keys:
                continue  # constants are written by the class that reads them
            lines.append(f"{expr}.register_buffer({_string_text(name)}, {_zeros(buffer)})")
        if built is not None and set(built._buffers) - set(module._buffers):
            raise CodegenError(
                f"module {path}: has no buffer {set(built._buffers) - set(module._buffers)}"
            )
        for name, child in module.named_children():
            child_path = _join(path, name)
            child_expr = _attr_chain(expr, name)
            if name in built_children:
                continue
            if not self._worth_writing(child_path):
                continue
            if child_path in instances:
                lines.append(f"{child_expr} = {instances[child_path]}()")
                continue
            if type(child) is nn.Module:
                lines.append(f"{child_expr} = nn.Module()")
            else:
                lines.append(f"{child_expr} = {self.constructor(child_path)[0]}")
            lines += self._tree_lines(child, child_path, child_expr, instances)
        return lines

    def _worth_writing(self, path: str) -> bool:
        """A subtree with state, a call, or a leaf module (not only constants)."""
        module = self.modules[path]
        if type(module) is not nn.Module:
            return True
        if any(True for _ in module.parameters()):
            return True
        if any(_join(path, n) in self.state_keys for n, _ in module.named_buffers()):
            return True
        return any(type(m) is not nn.Module for m in module.modules())

    def _constant_lines(self, constant: _Constant, owner_class: str) -> list[str]:
        tensor = constant.tensor.detach().cpu()
        if tensor.numel() <= INLINE_LIMIT:
            value = _tensor_literal(tensor)
        else:
            value = _zeros(tensor)
            self.big_constants[f"{CONSTANTS_PREFIX}{owner_class}.{constant.attr}"] = tensor
        return _wrap_call(
            "self.register_buffer", [_string_text(constant.attr), value, "persistent=False"]
        )

    def _tie_lines(self) -> list[str]:
        """Modules and parameters registered under several names stay one object."""
        lines = []
        first_module: dict[int, str] = {}
        tied: list[str] = []
        for name, module in self.gm.named_modules(remove_duplicate=False):
            if name and id(module) in first_module:
                source = first_module[id(module)]
                lines.append(f"{_attr_chain('self', name)} = {_attr_chain('self', source)}")
                tied.append(name)
            first_module.setdefault(id(module), name)
        first_param: dict[int, str] = {}
        for name, param in self.gm.named_parameters(remove_duplicate=False):
            if id(param) in first_param and not any(_within(name, t) for t in tied):
                source = first_param[id(param)]
                lines.append(f"{_attr_chain('self', name)} = {_attr_chain('self', source)}")
            first_param.setdefault(id(param), name)
        return lines

    # ------------------------------------------------------------------ regions

    def find_regions(self, nodes: list[fx.Node], owner: str) -> list[tuple[_Class, _Region]]:
        """Repeated blocks strictly inside ``owner`` whose regions lie in ``nodes``."""
        if not self.reuse_blocks:
            return []
        body = set(nodes)
        claimed: set[fx.Node] = set()
        found: list[tuple[_Class, _Region]] = []
        queue = [owner]
        while queue:
            path = queue.pop(0)
            module = self.modules[path]
            containers = [
                name for name, child in module.named_children() if type(child) is nn.Module
            ]
            by_signature: dict[tuple, list[str]] = defaultdict(list)
            for name in containers:
                by_signature[self.signature(_join(path, name))].append(name)
            grouped: set[str] = set()
            for members in by_signature.values():
                if len(members) < 2:
                    continue
                paths = [_join(path, m) for m in members]
                regions = self._group_regions(paths, body, claimed)
                by_encoding: dict[tuple, list[_Region]] = defaultdict(list)
                for region in regions:
                    by_encoding[region.encoding].append(region)
                for encoding, same in by_encoding.items():
                    if len(same) < 2:
                        continue
                    cls = self._class_for(encoding, same)
                    for region in same:
                        found.append((cls, region))
                        claimed.update(region.nodes)
                        grouped.add(region.path.rpartition(".")[2])
                left = [p for p in paths if p.rpartition(".")[2] not in grouped]
                if len(left) < len(paths) and left:
                    self.fallbacks.append(
                        f"{', '.join(left)}: structure like its siblings but a different "
                        "forward; written inline"
                    )
                elif left and regions:
                    self.fallbacks.append(
                        f"{', '.join(left)}: same structure, no two provably identical "
                        "forwards; written inline"
                    )
            for name, _ in module.named_children():
                if name not in grouped and type(module.get_submodule(name)) is nn.Module:
                    queue.append(_join(path, name))
        return found

    def _class_for(self, encoding: tuple, regions: list[_Region]) -> _Class:
        if encoding in self.classes:
            cls = self.classes[encoding]
            for region in regions:
                region.inputs = [region.inputs[i] for i in cls.input_order]
            cls.regions += regions
            return cls
        order = _main_input_first(regions[0])
        for region in regions:
            region.inputs = [region.inputs[i] for i in order]
        paths = [r.path for r in regions]
        parts = paths[0].split(".")
        leaves = [p.rpartition(".")[2] for p in paths]
        stem = re.sub(r"[_\d]+$", "", _common_prefix(leaves))
        parent = parts[-2] if len(parts) > 1 else ""
        if not stem:  # layer._0, layer._1: the block is named by its parent
            stem, parent = parent or "block", parts[-3] if len(parts) > 2 else ""
        base = _camel(f"{parent}_{stem}" if parent and parent != stem else stem)
        name, k = base, 2
        while name in self.class_names:
            name, k = f"{base}{k}", k + 1
        self.class_names.add(name)
        cls = _Class(name, regions[0], list(regions), input_order=order)
        self.classes[encoding] = cls
        return cls

    def _touches(self, node: fx.Node, path: str) -> bool:
        if node.op == "call_module":
            return _within(str(node.target), path)
        return any(
            a.op == "get_attr" and _within(str(a.target), path) and self.is_state(str(a.target))
            for a in _inputs(node)
        )

    def _group_regions(
        self, paths: list[str], body: set[fx.Node], claimed: set[fx.Node]
    ) -> list[_Region]:
        calls = [n for n in self.graph.nodes if n in body and n.op.startswith("call_")]
        seeds = {p: [n for n in calls if self._touches(n, p) and n not in claimed] for p in paths}
        if any(not s for s in seeds.values()):
            return []
        scopes = {p: _common_scope(seeds[p]) for p in paths}
        values = [v or "" for v in scopes.values()]
        distinct = all(values) and len(set(values)) == len(values)
        distinct = distinct and not any(
            a != b and a.startswith(b + "/") for a in values for b in values
        )
        if not distinct:
            scopes = dict.fromkeys(paths)
        best: list[_Region] = []
        best_score = -1
        for extend in ("all", "residual", "none"):  # most inclusive first; ties keep it
            regions = self._instance_regions(paths, seeds, scopes, calls, body, claimed, extend)
            counts: dict[tuple, int] = defaultdict(int)
            for region in regions:
                counts[region.encoding] += 1
            score = sum(c for c in counts.values() if c > 1)
            if score > best_score:
                best, best_score = regions, score
        return best

    def _instance_regions(
        self,
        paths: list[str],
        seeds: dict[str, list[fx.Node]],
        scopes: dict[str, str | None],
        calls: list[fx.Node],
        body: set[fx.Node],
        claimed: set[fx.Node],
        extend: str,
    ) -> list[_Region]:
        """One region per instance, in order; an instance never takes an earlier one's nodes."""
        all_seeds = {n for s in seeds.values() for n in s}
        taken: set[fx.Node] = set()
        regions = []
        for path in paths:
            scope = scopes[path]
            seed = set(seeds[path])
            if scope:
                for n in calls:
                    if n in claimed or n in taken or (n in all_seeds and n not in seed):
                        continue
                    if _scope_of(n, scope) is not None and (
                        n.op != "call_module" or _within(str(n.target), path)
                    ):
                        seed.add(n)
            forbidden = claimed | taken | (all_seeds - set(seeds[path]))
            region = self._region(path, seed, body, forbidden, scope, extend)
            if region is not None:
                regions.append(region)
                taken.update(region.nodes)
        return regions

    def _region(
        self,
        path: str,
        seed: set[fx.Node],
        body: set[fx.Node],
        forbidden: set[fx.Node],
        scope: str | None,
        extend: str,
    ) -> _Region | None:
        """Seeds, everything between them, and the pure nodes around them that belong.

        ``extend``: which results of the region computed after it are taken in
        too: "all" (any pure node of the region's values and inputs), "residual"
        (only those that also read an input of the region, ``x + block(x)``), "none".
        """

        def own_scope(node: fx.Node) -> bool:
            return _scope(node) is None or bool(scope and _scope_of(node, scope) is not None)

        region = seed | (self._descendants(seed) & self._ancestors(seed))
        changed = True
        while changed:  # helpers only the region uses (size and device reads, a mask)
            changed = False
            for node in sorted(
                {i for n in region for i in _inputs(n)} - region, key=self.order.__getitem__
            ):
                if (
                    node in body
                    and node not in forbidden
                    and node.op in ("call_function", "call_method")
                    and node.users
                    and all(u in region for u in node.users)
                    and own_scope(node)
                    and (_is_metadata(node) or not any(i in forbidden for i in _inputs(node)))
                ):
                    region.add(node)
                    changed = True
        changed = extend != "none"
        while changed:  # results computed from the region (and its inputs) alone
            changed = False
            incoming = {i for n in region for i in _inputs(n)} - region
            for node in sorted(
                {u for n in region for u in n.users} - region, key=self.order.__getitem__
            ):
                args = set(_inputs(node))
                if (
                    node in body
                    and node not in forbidden
                    and node.op in ("call_function", "call_method")
                    and own_scope(node)
                    and all(a in region or a in incoming for a in args)
                    and (extend == "all" or any(a in incoming and a.op != "get_attr" for a in args))
                ):
                    region.add(node)
                    changed = True
        if region & forbidden or not region <= body:
            return None
        for node in region:
            if node.op not in ("call_function", "call_method", "call_module"):
                return None
            if node.op == "call_module" and not _within(str(node.target), path):
                return None
        if not self._convex(region):
            return None
        if sum(1 for _ in region) < MIN_REGION_NODES:
            return None
        return self._canonical(path, region, scope)

    def _descendants(self, nodes: set[fx.Node]) -> set[fx.Node]:
        limit = max(self.order[n] for n in nodes)
        out: set[fx.Node] = set()
        stack = list(nodes)
        while stack:
            for user in stack.pop().users:
                if user not in out and self.order[user] <= limit:
                    out.add(user)
                    stack.append(user)
        return out

    def _ancestors(self, nodes: set[fx.Node]) -> set[fx.Node]:
        limit = min(self.order[n] for n in nodes)
        out: set[fx.Node] = set()
        stack = list(nodes)
        while stack:
            for arg in _inputs(stack.pop()):
                if arg not in out and self.order[arg] >= limit:
                    out.add(arg)
                    stack.append(arg)
        return out

    def _convex(self, region: set[fx.Node]) -> bool:
        """No path leaves the region and comes back into it."""
        outside = {u for n in region for u in n.users if u not in region}
        if not outside:
            return True
        limit = max(self.order[n] for n in region)
        seen: set[fx.Node] = set()
        stack = list(outside)
        while stack:
            node = stack.pop()
            if node in seen or self.order[node] > limit:
                continue
            seen.add(node)
            for user in node.users:
                if user in region:
                    return False
                stack.append(user)
        return True

    def _canonical(self, path: str, members: set[fx.Node], scope: str | None) -> _Region:
        """The region's nodes in an instance-independent order, and its encoding."""
        structural: dict[fx.Node, str] = {}
        for node in sorted(members, key=self.order.__getitem__):
            parts = [node.op, repr(self._target_key(node, path))]
            parts.append(
                repr(self._encode_arg((node.args, node.kwargs), path, members, structural, None))
            )
            structural[node] = hashlib.sha256("\0".join(parts).encode()).hexdigest()

        def key(n: fx.Node) -> tuple:
            relative = _scope_of(n, scope) if scope else None
            return (relative or "", structural[n], self.order[n])

        pending = {n: sum(1 for i in set(_inputs(n)) if i in members) for n in members}
        ready = [(key(n), n) for n, count in pending.items() if count == 0]
        heapq.heapify(ready)
        ordered: list[fx.Node] = []
        while ready:
            _, node = heapq.heappop(ready)
            ordered.append(node)
            for user in node.users:
                if user in pending and user in members:
                    pending[user] -= 1
                    if pending[user] == 0:
                        heapq.heappush(ready, (key(user), user))
        index = {n: i for i, n in enumerate(ordered)}
        inputs: list[fx.Node] = []
        encoded: list[Any] = []
        for node in ordered:
            encoded.append(
                (
                    node.op,
                    self._target_key(node, path),
                    self._encode_arg((node.args, node.kwargs), path, members, index, inputs),
                )
            )
        outputs = [n for n in ordered if any(u not in members for u in n.users)]
        encoded.append(("outputs", tuple(index[n] for n in outputs)))
        encoded.append(("inputs", len(inputs)))
        encoding = tuple(encoded)
        digest = hashlib.sha256(repr(encoding).encode()).hexdigest()[:16]
        return _Region(path, ordered, inputs, outputs, encoding, digest, scope)

    def _target_key(self, node: fx.Node, path: str) -> Any:
        if node.op == "call_module":
            return ("module", _relative(str(node.target), path), self.signature(str(node.target)))
        if node.op == "call_function":
            try:
                return ("function", _function_text(node.target))
            except CodegenError:
                return ("function?", repr(node.target))
        return ("method", str(node.target))

    def _encode_arg(
        self,
        arg: Any,
        path: str,
        members: set[fx.Node],
        index: dict[fx.Node, Any],
        inputs: list[fx.Node] | None,
    ) -> Any:
        if isinstance(arg, fx.Node):
            if arg in members:
                return ("node", index[arg])
            if arg.op == "get_attr":
                target = str(arg.target)
                if self.is_state(target) and _within(target, path):
                    return ("self", _relative(target, path))
                if not self.is_state(target):
                    tensor = self._fetch(target)
                    return ("const", str(tensor.dtype), tuple(tensor.shape), _digest(tensor))
            if inputs is None:
                return ("input",)
            if arg not in inputs:
                inputs.append(arg)
            return ("input", inputs.index(arg))
        if isinstance(arg, (list, tuple)):
            return (
                type(arg).__name__,
                tuple(self._encode_arg(a, path, members, index, inputs) for a in arg),
            )
        if isinstance(arg, dict):
            return (
                "dict",
                tuple(
                    (k, self._encode_arg(v, path, members, index, inputs)) for k, v in arg.items()
                ),
            )
        if isinstance(arg, slice):
            return (
                "slice",
                self._encode_arg((arg.start, arg.stop, arg.step), path, members, index, inputs),
            )
        if isinstance(arg, float):
            return ("float", arg.hex() if math.isfinite(arg) else repr(arg))
        return (type(arg).__name__, repr(arg))

    # ------------------------------------------------------------------ classes

    def class_source(self, cls: _Class) -> list[str]:
        if cls.lines:
            return cls.lines
        rep = cls.representative
        body = _Body(
            self,
            owner=rep.path,
            owner_class=cls.name,
            nodes=rep.nodes,
            params=rep.inputs,
            param_names=None,
            returns=tuple(rep.outputs) if len(rep.outputs) != 1 else rep.outputs[0],
            output_names=None,
        )
        forward = body.emit()
        cls.param_names = body.param_names
        cls.return_names = body.return_names
        instances = {r2.path: c2.name for c2 in self.classes.values() for r2 in c2.regions}
        init = self._init_lines(
            self.modules[rep.path], rep.path, body.constants, cls.name, instances=instances
        )
        paths = ", ".join(r.path for r in cls.regions)
        doc = f'"""One of the {len(cls.regions)} blocks {paths}."""'
        if len(doc) > 96:
            first, last = cls.regions[0].path, cls.regions[-1].path
            doc = f'"""One of the {len(cls.regions)} repeated blocks {first} .. {last}."""'
        cls.lines = [f"class {cls.name}(nn.Module):", f"    {doc}", ""]
        cls.lines += _method("__init__", ["self"], init)
        cls.lines.append("")
        cls.lines += _method("forward", ["self", *body.param_names], forward)
        return cls.lines

    # ------------------------------------------------------------------ the file

    def _module_source(self, init: list[str], forward: list[str], root: _Body) -> str:
        # Blocks nested in other blocks first, then in the order they were found.
        classes = sorted(self.classes.values(), key=lambda c: -c.representative.path.count("."))
        class_blocks = ["\n".join(self.class_source(c)) for c in classes]
        root_lines = [f"class {self.class_name}(nn.Module):"]
        root_lines += _docstring(self.docstring or "The model, as plain PyTorch.", "    ")
        root_lines.append("")
        root_lines += _method("__init__", ["self"], init)
        root_lines.append("")
        root_lines += _method("forward", ["self", *root.param_names], forward)
        parts = [*self.copied_sources.values(), *class_blocks, "\n".join(root_lines)]
        if self.big_constants:
            parts.append(_LOAD_CONSTANTS)
        parts.append(_LOAD_FUNCTION.format(cls=self.class_name))
        code = "\n\n\n".join(p.rstrip() for p in parts)
        imports = []
        if re.search(r"\bmath\.", code):
            imports.append("import math")
        if re.search(r"\boperator\.", code):
            imports.append("import operator")
        if imports:
            imports.append("")
        if re.search(r"\btorch\.", code):
            imports.append("import torch")
        if re.search(r"\bF\.", code):
            imports.append("import torch.nn.functional as F")
        imports.append("from torch import nn")
        header = (
            '"""PyTorch model written by fxsurgeon; it needs torch (and safetensors for `load`)."""'
        )
        return header + "\n\n" + "\n".join(imports) + "\n\n\n" + code + "\n"


_LOAD_CONSTANTS = '''def _load_constants(module, state_dict, prefix, *args):
    """Fill the structural constants from the ``__constants__.<Class>.<name>`` entries."""
    marker = prefix + "__constants__."
    for key in [k for k in state_dict if k.startswith(marker)]:
        value = state_dict.pop(key)
        class_name, name = key[len(marker) :].split(".")
        for submodule in module.modules():
            if type(submodule).__name__ == class_name:
                submodule.get_buffer(name).copy_(value)'''

_LOAD_FUNCTION = '''def load(path=None, device="cpu"):
    """``{cls}()`` with the weights of ``path`` (default: model.safetensors beside this file).

    Returned in eval mode, as the model was exported.
    """
    import os

    from safetensors.torch import load_file

    if path is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.safetensors")
    model = {cls}()
    model.load_state_dict(load_file(os.fspath(path)))
    return model.to(device).eval()'''


def _copyable_source(cls: type) -> str:
    """The source of a module class to copy into model.py; it may use only torch, F, nn, math."""
    source = textwrap.dedent(inspect.getsource(cls))
    tree = ast.parse(source)
    defined = {cls.__name__}
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
    missing = used - defined - set(dir(builtins)) - {"torch", "F", "nn", "math", "operator"}
    if missing:
        raise CodegenError(
            f"cannot copy {cls.__name__} into model.py: it uses {sorted(missing)} from "
            f"{cls.__module__}"
        )
    return source


def _method(name: str, params: list[str], body: list[str]) -> list[str]:
    lines = [f"    def {name}({', '.join(params)}):"]
    lines += [f"        {line}" if line else "" for line in body]
    return lines


def _docstring(text: str, indent: str) -> list[str]:
    lines = text.strip().splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}".rstrip() for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def _main_input_first(region: _Region) -> list[int]:
    """Input positions with the residual stream first: a tensor shaped like the output."""
    indices = list(range(len(region.inputs)))
    tensors = [i for i in indices if _is_tensor_value(region.inputs[i])]
    tensors = [i for i in tensors if region.inputs[i].op != "get_attr"]
    if not tensors:
        return indices
    main = tensors[0]
    if len(region.outputs) == 1 and "fxs_shape" in region.outputs[0].meta:
        shape = region.outputs[0].meta["fxs_shape"]
        main = next((i for i in tensors if region.inputs[i].meta.get("fxs_shape") == shape), main)
    return [main] + [i for i in indices if i != main]


def _is_metadata(node: fx.Node) -> bool:
    """A read of a tensor's size, rank, device or dtype (no data)."""
    if node.op == "call_method":
        return node.target in ("size", "dim", "numel")
    return node.op == "call_function" and node.target is builtins.getattr


def _is_tensor_value(node: fx.Node) -> bool:
    """Whether a node computes a tensor (recorded shapes if any, else by what it calls)."""
    if "fxs_shape" in node.meta:
        return True
    if "fxs_multi" in node.meta or "fxs_dtype" in node.meta:
        return False
    if node.op == "call_method" and node.target in ("size", "dim", "numel", "tolist", "item"):
        return False
    return not (node.op == "call_function" and node.target in (builtins.getattr, len))


def _common_prefix(names: list[str]) -> str:
    first = names[0]
    end = len(first)
    for name in names[1:]:
        end = min(end, len(name))
        for i in range(end):
            if name[i] != first[i]:
                end = i
                break
    return first[:end]


def _scope(node: fx.Node) -> str | None:
    value = node.meta.get(_SCOPE_KEY)
    return value if isinstance(value, str) and value else None


def _scope_of(node: fx.Node, prefix: str) -> str | None:
    """The node's TF scope relative to ``prefix``, or None if it is not under it."""
    scope = _scope(node)
    if scope is None or not scope.startswith(prefix + "/"):
        return None
    return scope[len(prefix) + 1 :]


def _common_scope(nodes: list[fx.Node]) -> str | None:
    """The longest common TF scope (``a/b/c``) of the nodes, without their op names."""
    scopes = [_scope(n) for n in nodes]
    if not scopes or any(s is None for s in scopes):
        return None
    parts = [s.split("/")[:-1] for s in scopes if s]
    common = parts[0]
    for p in parts[1:]:
        k = 0
        while k < min(len(common), len(p)) and common[k] == p[k]:
            k += 1
        common = common[:k]
    return "/".join(common) or None


def _same(value: Any, default: Any) -> bool:
    if type(value) is not type(default) and not (
        isinstance(value, (int, float)) and isinstance(default, (int, float))
    ):
        return False
    try:
        return bool(value == default)
    except Exception:  # noqa: BLE001
        return False


def _literal(value: Any) -> str:
    """A Python literal for a constant argument (no graph nodes inside)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        return _string_text(value)
    if value is Ellipsis:
        return "..."
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, torch.device):
        return f"torch.device({_string_text(str(value))})"
    if isinstance(value, (torch.memory_format, torch.layout)):
        return str(value)
    if isinstance(value, torch.Size):
        return f"torch.Size([{', '.join(_literal(v) for v in value)}])"
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return f"[{', '.join(_literal(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, slice):
        return f"slice({_literal(value.start)}, {_literal(value.stop)}, {_literal(value.step)})"
    raise CodegenError(f"cannot write the constant {value!r} ({type(value).__name__}) as Python")


def _zeros(tensor: torch.Tensor) -> str:
    shape = ", ".join(str(d) for d in tensor.shape)
    dtype = "" if tensor.dtype == torch.get_default_dtype() else f", dtype={tensor.dtype}"
    return f"torch.zeros({shape}{dtype})" if shape else f"torch.zeros((){dtype})"


def _tensor_literal(tensor: torch.Tensor) -> str:
    """``torch.tensor([...], dtype=...)`` holding exactly the tensor's values.

    Floats are written with the fewest digits that give back the same value
    in their own precision (``1.0470023`` for a float32, not ``1.0470023155212402``).
    """
    data = tensor.detach().cpu()
    flat = data.reshape(-1)
    if data.dtype == torch.float64:
        values = [_float_text(v) for v in flat.tolist()]
    elif data.is_floating_point():
        numpy_type = np.float16 if data.dtype == torch.float16 else np.float32
        values = [_short_float(v, numpy_type) for v in flat.float().tolist()]
    else:
        values = [_literal(v) for v in flat.tolist()]
    text = f"torch.tensor([{', '.join(values)}], dtype={data.dtype})"
    if data.dim() == 0:
        text = f"torch.tensor({values[0]}, dtype={data.dtype})"
    elif data.dim() > 1:
        text += f".reshape({', '.join(str(d) for d in data.shape)})"
    return text


def _short_float(value: float, numpy_type: Any) -> str:
    if not math.isfinite(value):
        return _float_text(value)
    text = repr(float(str(numpy_type(value))))
    return text if numpy_type(float(text)) == numpy_type(value) else repr(value)


def _wrap_call(head: str, args: list[str], indent: str = "", width: int = 96) -> list[str]:
    """``head(arg, ...)`` on one line, or one argument per line (long lists wrapped)."""
    line = f"{indent}{head}({', '.join(args)})"
    if len(line) <= width:
        return [line]
    lines = [f"{indent}{head}("]
    for arg in args:
        for piece in _wrap_list(arg, indent + "    ", width):
            lines.append(piece)
        lines[-1] += ","
    lines.append(f"{indent})")
    return lines


def _wrap_list(text: str, indent: str, width: int) -> list[str]:
    """A long ``torch.tensor([a, b, ...], ...)`` broken inside its list."""
    if len(indent) + len(text) <= width or "([" not in text:
        return [indent + text]
    head, _, rest = text.partition("([")
    items, _, tail = rest.partition("]")
    lines = [f"{indent}{head}(["]
    current = indent + "    "
    for item in items.split(", "):
        piece = item + ","
        if len(current) + len(piece) + 1 > width and current.strip():
            lines.append(current.rstrip())
            current = indent + "    "
        current += piece + " "
    if current.strip():
        lines.append(current.rstrip())
    lines.append(f"{indent}]{tail}")
    return lines


# --------------------------------------------------------------------------- bodies


@dataclass
class _Call:
    """A repeated block called from a body."""

    cls: _Class
    region: _Region


class _Body:
    """One forward: statements for a list of nodes, some grouped into block calls."""

    def __init__(
        self,
        gen: _Generator,
        *,
        owner: str,
        owner_class: str,
        nodes: list[fx.Node],
        params: list[fx.Node],
        param_names: list[str] | None,
        returns: Any,
        output_names: list[str] | None,
    ):
        self.gen = gen
        self.owner = owner
        self.owner_class = owner_class
        self.nodes = nodes
        self.params = params
        self.returns = returns
        self.output_names = output_names
        self.members = set(nodes)
        self.namer = _Namer(gen.class_names)
        self.expr: dict[fx.Node, str] = {}
        self.constants: list[_Constant] = []
        self._constant_attrs: dict[str, str] = {}
        self.regions: list[_Region] = []
        self.return_names: list[str] = []
        self.strong: dict[fx.Node, str] = {}
        self.weak: dict[fx.Node, str] = {}
        self.param_names = self._name_params(param_names)

    # ------------------------------------------------------------------ names

    def _name_params(self, given: list[str] | None) -> list[str]:
        names = []
        for i, node in enumerate(self.params):
            if given is not None:
                base = given[i]
            elif i == 0 and node.op != "get_attr" and _is_tensor_value(node):
                base = "hidden_states"
            else:
                base = self._input_base(node)
            name = self.namer.fresh(base)
            self.expr[node] = name
            names.append(name)
        return names

    def _input_base(self, node: fx.Node) -> str:
        """A name for a value coming into a block: the keyword it ends up as, else its kind."""
        if node.op == "get_attr":
            return str(node.target).rpartition(".")[2]
        current = node
        for _ in range(4):
            users = [u for u in current.users if u in self.members]
            if not users:
                break
            user = users[0]
            for key, value in user.kwargs.items():
                if value is current:
                    return key
            if len(users) != 1:
                break
            current = user
        return _base_name(node) or "x"

    # ------------------------------------------------------------------ atoms

    def atom(self, node: fx.Node) -> str:
        if node in self.expr:
            return self.expr[node]
        if node.op == "get_attr":
            target = str(node.target)
            if self.gen.is_state(target):
                if not _within(target, self.owner):
                    raise CodegenError(f"{self.owner_class} reads {target} from outside its block")
                return _attr_chain("self", _relative(target, self.owner))
            if target not in self._constant_attrs:
                attr = f"const_{len(self.constants)}"
                self._constant_attrs[target] = attr
                self.constants.append(_Constant(attr, self.gen._fetch(target)))
            return f"self.{self._constant_attrs[target]}"
        raise CodegenError(f"node {node.format_node()} is used before it is computed")

    def render(self, arg: Any, *, index: bool = False) -> str:
        if isinstance(arg, fx.Node):
            return self.atom(arg)
        if isinstance(arg, tuple) and not isinstance(arg, torch.Size):
            if index and arg:
                return ", ".join(self.render(a, index=True) for a in arg) + (
                    "," if len(arg) == 1 else ""
                )
            inner = ", ".join(self.render(a) for a in arg)
            return f"({inner},)" if len(arg) == 1 else f"({inner})"
        if isinstance(arg, list):
            return f"[{', '.join(self.render(a) for a in arg)}]"
        if isinstance(arg, dict):
            return "{" + ", ".join(f"{_literal(k)}: {self.render(v)}" for k, v in arg.items()) + "}"
        if isinstance(arg, slice):
            if not index:
                return f"slice({self.render(arg.start)}, {self.render(arg.stop)}, {self.render(arg.step)})"
            return self._slice(arg)
        if arg is Ellipsis:
            return "..."
        text = _literal(arg)
        return text

    def _slice(self, s: slice) -> str:
        start, stop, step = s.start, s.stop, s.step
        if step in (None, 1) and isinstance(start, int) and start == 0:
            start = None
        if step in (None, 1) and isinstance(stop, int) and stop >= _INT32_MAX:
            stop = None  # INT_MAX means "to the end" (no tensor dim is that long)
        if step == 1:
            step = None
        text = f"{'' if start is None else self.render(start)}:{'' if stop is None else self.render(stop)}"
        if step is not None:
            text += f":{self.render(step)}"
        return text

    @staticmethod
    def _operand(text: str) -> str:
        return f"({text})" if text.startswith("-") else text

    # ------------------------------------------------------------------ expressions

    def expression(self, node: fx.Node) -> str:
        args, kwargs = node.args, node.kwargs
        if node.op == "call_module":
            rel = _relative(str(node.target), self.owner)
            return f"{_attr_chain('self', rel)}({self._call_args(args, kwargs)})"
        if node.op == "call_method":
            obj = self._operand(self.render(args[0]))
            return f"{obj}.{node.target}({self._call_args(args[1:], kwargs)})"
        target = node.target
        if target in _BINARY and len(args) == 2 and not kwargs:
            left, right = self.render(args[0]), self.render(args[1])
            if target is operator.pow or left.startswith("-"):
                left = self._operand(left)
            return f"{left} {_BINARY[target]} {right}"
        if target in _UNARY and len(args) == 1 and not kwargs:
            return f"{_UNARY[target]}{self._operand(self.render(args[0]))}"
        if target is operator.getitem and len(args) == 2 and not kwargs:
            obj = self._operand(self.render(args[0]))
            return f"{obj}[{self.render(args[1], index=True)}]"
        if (
            target is builtins.getattr
            and len(args) == 2
            and isinstance(args[1], str)
            and _is_identifier(args[1])
        ):
            return f"{self._operand(self.render(args[0]))}.{args[1]}"
        if target in _AS_METHOD and args and isinstance(args[0], fx.Node) and not kwargs:
            method, unpack = _AS_METHOD[target]
            rest = list(args[1:])
            if unpack and len(rest) == 1 and isinstance(rest[0], (tuple, list)) and rest[0]:
                rest = list(rest[0])
            if (
                target is torch.squeeze
                and len(rest) == 1
                and isinstance(rest[0], tuple)
                and len(rest[0]) == 1
            ):
                rest = [rest[0][0]]
            return f"{self.render(args[0])}.{method}({', '.join(self.render(a) for a in rest)})"
        try:
            function = _function_text(target)
        except CodegenError as exc:
            raise CodegenError(f"node {node.format_node()} {exc}") from None
        return f"{function}({self._call_args(args, kwargs)})"

    def _call_args(self, args: Any, kwargs: dict[str, Any]) -> str:
        parts = [self.render(a) for a in args]
        parts += [f"{k}={self.render(v)}" for k, v in kwargs.items()]
        return ", ".join(parts)

    # ------------------------------------------------------------------ statements

    def _units(self) -> list[fx.Node | _Call]:
        """Nodes and block calls in an order where every block is one call."""
        found = self.gen.find_regions(self.nodes, self.owner)
        self.regions = [r for _, r in found]
        unit_of: dict[fx.Node, Any] = {}
        units: list[Any] = []
        for cls, region in found:
            call = _Call(cls, region)
            units.append(call)
            for n in region.nodes:
                unit_of[n] = call
        for n in self.nodes:
            if n not in unit_of and n.op != "get_attr":
                unit_of[n] = n
                units.append(n)
        position = {
            id(u): (
                min(self.gen.order[n] for n in u.region.nodes)
                if isinstance(u, _Call)
                else self.gen.order[u]
            )
            for u in units
        }
        deps: dict[int, set[int]] = {id(u): set() for u in units}
        users: dict[int, list[Any]] = defaultdict(list)
        by_id = {id(u): u for u in units}
        for u in units:
            nodes = u.region.nodes if isinstance(u, _Call) else [u]
            for n in nodes:
                for i in _inputs(n):
                    producer = unit_of.get(i)
                    if (
                        producer is not None
                        and producer is not u
                        and id(producer) not in deps[id(u)]
                    ):
                        deps[id(u)].add(id(producer))
                        users[id(producer)].append(u)
        ready = [(position[k], k) for k, d in deps.items() if not d]
        heapq.heapify(ready)
        ordered = []
        while ready:
            _, k = heapq.heappop(ready)
            ordered.append(by_id[k])
            for user in users[k]:
                deps[id(user)].discard(k)
                if not deps[id(user)]:
                    heapq.heappush(ready, (position[id(user)], id(user)))
        if len(ordered) != len(units):
            raise CodegenError(f"{self.owner_class}: the blocks form a cycle (internal error)")
        return ordered

    def emit(self) -> list[str]:
        units = self._units()
        consumers: dict[fx.Node, list[int]] = defaultdict(list)
        for k, unit in enumerate(units):
            nodes = unit.region.inputs if isinstance(unit, _Call) else _inputs(unit)
            for n in nodes:
                consumers[n].append(k)
        return_nodes = list(_walk(self.returns))
        for n in return_nodes:
            consumers[n].append(len(units))
        last_use = {n: max(ks) for n, ks in consumers.items()}

        # Strong hints (the model's output names) beat reusing a dying operand's
        # name; weak ones (the parameter name of the block a value goes into) do not.
        strong: dict[fx.Node, str] = {}
        weak: dict[fx.Node, str] = {}
        if self.output_names:
            flat = self.returns if isinstance(self.returns, (list, tuple)) else [self.returns]
            for name, value in zip(self.output_names, flat, strict=False):
                if isinstance(value, fx.Node) and value.op != "placeholder":
                    strong.setdefault(value, name)
        for unit in units:
            if isinstance(unit, _Call):
                self.gen.class_source(unit.cls)
                for value, pname in zip(unit.region.inputs, unit.cls.param_names, strict=True):
                    if value.op in ("call_function", "call_method", "call_module"):
                        weak.setdefault(value, pname)
        self.strong, self.weak = strong, weak

        lines: list[str] = []
        for k, unit in enumerate(units):
            if isinstance(unit, _Call):
                lines.append(self._emit_call(unit, k, last_use))
            else:
                line = self._emit_node(unit, k, last_use)
                if line:
                    lines.append(line)
        lines.append(self._emit_return())
        return lines

    def _dies_here(self, value: Any, k: int, last_use: dict[fx.Node, int]) -> bool:
        return (
            isinstance(value, fx.Node)
            and value in self.expr
            and value.op != "get_attr"
            and last_use.get(value) == k
            and _is_identifier(self.expr[value])
        )

    def _name(self, node: fx.Node, inherit: fx.Node | None, default: str | None = None) -> str:
        if node in self.strong:
            return self.namer.fresh(self.strong[node])
        if inherit is not None:
            return self.expr[inherit]
        if node in self.weak:
            return self.namer.fresh(self.weak[node])
        return self.namer.fresh(default or self._base(node))

    def _base(self, node: fx.Node) -> str:
        if node.op == "call_function" and node.target is operator.getitem and node.args:
            indexed = node.args[0]
            if isinstance(indexed, fx.Node) and indexed.op != "get_attr":
                source = self.expr.get(indexed)
                if source and _is_identifier(source):
                    return source
        if node.op == "call_module":
            parts = _relative(str(node.target), self.owner).split(".")
            for depth in range(1, len(parts) + 1):
                candidate = _snake("_".join(parts[-depth:]))
                if candidate not in self.namer.taken:
                    return candidate
            return _snake(parts[-1])
        return _base_name(node) or "x"

    def _emit_node(self, node: fx.Node, k: int, last_use: dict[fx.Node, int]) -> str | None:
        if node.op == "placeholder" or node in self.expr:
            return None  # an input, or an element already unpacked from a tuple
        expr = self.expression(node)
        users = list(node.users)
        if not users:
            return expr
        unpack = self._unpack_targets(node)
        if unpack is not None:
            names = []
            for item in unpack:
                if item is None:
                    names.append("_")
                    continue
                name = self._name(item, None, _base_name(node) or "item")
                self.expr[item] = name
                names.append(name)
            self.expr[node] = "(" + ", ".join(names) + ")"
            return f"{', '.join(names)} = {expr}"
        inherit = None
        first: Any = node.args[0] if node.args else None
        same_value = (node.op == "call_function" and node.target in _SAME_VALUE_FUNCTIONS) or (
            node.op == "call_method" and node.target in _SAME_VALUE_METHODS
        )
        tensor_item = node.target is not operator.getitem or "fxs_shape" in getattr(
            first, "meta", {}
        )
        if same_value and tensor_item and self._dies_here(first, k, last_use):
            inherit = first
        name = self._name(node, inherit)
        self.expr[node] = name
        return f"{name} = {expr}"

    def _unpack_targets(self, node: fx.Node) -> list[fx.Node | None] | None:
        """The getitem users of a node returning a tuple, one per element (None: unused)."""
        users = list(node.users)
        if not users or not all(
            u.op == "call_function"
            and u.target is operator.getitem
            and len(u.args) == 2
            and u.args[0] is node
            and isinstance(u.args[1], int)
            and u in self.members
            for u in users
        ):
            return None
        length = _tuple_length(node)
        if length is None:
            return None
        slots: list[fx.Node | None] = [None] * length
        for u in users:
            index: Any = u.args[1]
            if not 0 <= index < length or slots[index] is not None:
                return None
            slots[index] = u
        return slots

    def _emit_call(self, call: _Call, k: int, last_use: dict[fx.Node, int]) -> str:
        cls, region = call.cls, call.region
        args = ", ".join(self.render(v) for v in region.inputs)
        target = _attr_chain("self", _relative(region.path, self.owner))
        names = []
        single = len(region.outputs) == 1
        for i, out in enumerate(region.outputs):
            inherit = None
            if single and region.inputs and self._dies_here(region.inputs[0], k, last_use):
                inherit = region.inputs[0]
            default = "hidden_states" if single else None
            if default is None:
                default = cls.return_names[i] if i < len(cls.return_names) else "out"
            name = self._name(out, inherit, default)
            self.expr[out] = name
            names.append(name)
        if not names:
            return f"{target}({args})"
        return f"{', '.join(names)} = {target}({args})"

    def _emit_return(self) -> str:
        value = self.returns
        if isinstance(value, (list, tuple)):
            self.return_names = [self.render(v) for v in value]
            if not value:
                return "return ()"
            return "return " + ", ".join(self.return_names) + ("," if len(value) == 1 else "")
        text = self.render(value)
        self.return_names = [text]
        return f"return {text}"


def _tuple_length(node: fx.Node) -> int | None:
    multi = node.meta.get("fxs_multi")
    if isinstance(multi, list):
        return len(multi)
    value = node.meta.get("val")
    if isinstance(value, (list, tuple)):
        return len(value)
    if node.op == "call_function" and node.target in (torch.split, torch.functional.split):
        sizes = node.args[1] if len(node.args) > 1 else node.kwargs.get("split_size_or_sections")
        if isinstance(sizes, (list, tuple)):
            return len(sizes)
    if node.op == "call_function" and node.target is torch.chunk and len(node.args) > 1:
        return node.args[1] if isinstance(node.args[1], int) else None
    return None


def _base_name(node: fx.Node) -> str | None:
    if node.op == "placeholder":
        return str(node.target)
    if node.op == "get_attr":
        return str(node.target).rpartition(".")[2]
    if node.op == "call_method":
        if node.target == "size" and len(node.args) == 2 and node.args[1] == 0:
            return "batch_size"
        return str(node.target)
    if node.op == "call_function":
        target = node.target
        if target is operator.getitem and node.args and isinstance(node.args[0], fx.Node):
            source = node.args[0]
            if source.op == "get_attr":  # weight[ids]: an embedding lookup
                owner = str(source.target).rpartition(".")[0]
                return owner.rpartition(".")[2] or "item"
            return _base_name(source)
        if target is builtins.getattr and len(node.args) == 2 and isinstance(node.args[1], str):
            return node.args[1]
        if target in _FUNCTION_BASES:
            return _FUNCTION_BASES[target]
        name = getattr(target, "__name__", None)
        return name.strip("_") if name else None
    return None
