"""The module tree of the generated file: one class per distinct subtree, its constructor and
state.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import fx, nn

from .helpers import _digest, _join, _same, _within
from .literals import (
    _assignment,
    _attr_chain,
    _literal,
    _string_text,
    _tensor_literal,
    _wrap_call,
    _zeros,
)
from .output import _COPYABLE_MODULES, CONSTANTS_PREFIX, INLINE_LIMIT, CodegenError
from .records import _Constant
from .writer import _copyable_source


class _ModuleTree:
    """The module tree of the generated file: one class per distinct subtree, its constructor and state."""

    # ------------------------------------------------------------------ module tree

    def signature(self: Any, path: str) -> tuple:
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
        if isinstance(module, fx.GraphModule):  # a subgraph: equal only to itself
            self._signatures[path] = ("subgraph", path)
            return self._signatures[path]
        kind = "container" if type(module) is nn.Module else self.constructor(path)[0]
        children = tuple(
            (name, self.signature(_join(path, name))) for name, _ in module.named_children()
        )
        result = (kind, tuple(own), children)
        self._signatures[path] = result
        return result

    def constructor(self: Any, path: str) -> tuple[str, nn.Module]:
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
        self: Any,
        module: nn.Module,
        path: str,
        constants: list[_Constant],
        owner_class: str,
        root_level: bool = False,
        instances: dict[str, str] | None = None,
        hook: bool = True,
    ) -> list[str]:
        """``__init__`` body lines rebuilding the subtree at ``path`` as ``self``.

        ``root_level``: the class of a whole graph (ties of shared members written);
        ``hook``: it is the model's class, which loads the big constants of every class.
        """
        lines = ["super().__init__()"]
        instances = instances or {}
        lines += self._tree_lines(module, path, "self", instances)
        for constant in constants:
            lines += self._constant_lines(constant, owner_class)
        if root_level:
            lines += self._tie_lines()
            if hook and self.big_constants:
                lines.append("self.register_load_state_dict_pre_hook(_load_constants)")
        return lines

    def _tree_lines(
        self: Any, module: nn.Module, path: str, expr: str, instances: dict[str, str]
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
            lines.append(_assignment(expr, name, f"nn.Parameter({_zeros(tensor)}{grad})"))
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
                lines.append(_assignment(expr, name, f"{instances[child_path]}()"))
                continue
            if type(child) is nn.Module:
                lines.append(_assignment(expr, name, "nn.Module()"))
            else:
                lines.append(_assignment(expr, name, self.constructor(child_path)[0]))
            lines += self._tree_lines(child, child_path, child_expr, instances)
        return lines

    def _worth_writing(self: Any, path: str) -> bool:
        """A subtree with state, a call, or a leaf module (not only constants)."""
        module = self.modules[path]
        if type(module) is not nn.Module:
            return True
        if any(True for _ in module.parameters()):
            return True
        if any(_join(path, n) in self.state_keys for n, _ in module.named_buffers()):
            return True
        return any(type(m) is not nn.Module for m in module.modules())

    def _constant_lines(self: Any, constant: _Constant, owner_class: str) -> list[str]:
        tensor = constant.tensor.detach().cpu()
        if tensor.numel() <= INLINE_LIMIT:
            value = _tensor_literal(tensor)
        else:
            value = _zeros(tensor)
            self.big_constants[f"{CONSTANTS_PREFIX}{owner_class}.{constant.attr}"] = tensor
        return _wrap_call(
            "self.register_buffer", [_string_text(constant.attr), value, "persistent=False"]
        )

    def _tie_lines(self: Any) -> list[str]:
        """Modules and parameters registered under several names stay one object."""
        lines = []
        first_module: dict[int, str] = {}
        tied: list[str] = []
        for name, module in self.gm.named_modules(remove_duplicate=False):
            if name and id(module) in first_module:
                source = first_module[id(module)]
                lines.append(_assignment("self", name, _attr_chain("self", source)))
                tied.append(name)
            first_module.setdefault(id(module), name)
        first_param: dict[int, str] = {}
        for name, param in self.gm.named_parameters(remove_duplicate=False):
            if id(param) in first_param and not any(_within(name, t) for t in tied):
                source = first_param[id(param)]
                lines.append(_assignment("self", name, _attr_chain("self", source)))
            first_param.setdefault(id(param), name)
        return lines
