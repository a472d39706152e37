"""Codegen is total: every dtype, 0-d and empty tensors, any names, any torch.nn leaf.

Each model here is written with `fxsurgeon.save`, checked with ruff, imported
back (in this process and in one where fxsurgeon, tensorflow and onnx2torch
cannot be imported) and compared bitwise with the GraphModule.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import load_file
from torch import fx, nn

import fxsurgeon
from fxsurgeon.codegen import with_identifier_names

RUFF = Path(sys.executable).with_name("ruff")
DTYPES = [
    torch.bool,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
]
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
BLOCKED = ("tensorflow", "onnx2torch", "fxsurgeon", "tf_keras", "keras", "onnx")


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _value(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=generator) > 0.5
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=generator) * 3).to(dtype)
    return torch.randint(-100 if dtype != torch.uint8 else 0, 100, shape, generator=generator).to(
        dtype
    )


class EveryDtype(nn.Module):
    """0-d and empty constants, buffers and parameters of every dtype."""

    def __init__(self):
        super().__init__()
        self.constants = nn.Module()
        self.state = nn.Module()
        for i, dtype in enumerate(DTYPES):
            name = _name(dtype)
            const = self.constants
            const.register_buffer(f"scalar_{name}", _value(dtype, (), i), persistent=False)
            const.register_buffer(f"empty_{name}", _value(dtype, (0, 3), i), persistent=False)
            const.register_buffer(f"big_{name}", _value(dtype, (9, 9), i), persistent=False)
            self.state.register_buffer(f"scalar_{name}", _value(dtype, (), 100 + i))
            self.state.register_buffer(f"empty_{name}", _value(dtype, (3, 0), 100 + i))
        for i, dtype in enumerate(FLOATS):
            param = nn.Parameter(_value(dtype, (), 200 + i))
            self.state.register_parameter(f"param_{_name(dtype)}", param)
            self.state.register_parameter(
                f"void_{_name(dtype)}", nn.Parameter(_value(dtype, (0,), 0))
            )

    def forward(self, x):
        outs = []
        for dtype in DTYPES:
            name = _name(dtype)
            for holder in (self.constants, self.state):
                scalar = getattr(holder, f"scalar_{name}")
                outs.append(x.to(dtype) + scalar if dtype != torch.bool else x.bool() | scalar)
                outs.append(getattr(holder, f"empty_{name}") + scalar)
            outs.append(getattr(self.constants, f"big_{name}")[:2])
        for dtype in FLOATS:
            outs.append(x.to(dtype) * getattr(self.state, f"param_{_name(dtype)}"))
            outs.append(getattr(self.state, f"void_{_name(dtype)}") * 2)
        return tuple(outs)


class Repeated(nn.Module):
    """Blocks that are the same but for 0-d constants of their own: the block digest sees them."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.scale = nn.Linear(3, 3)
        self.constants = nn.Module()
        self.constants.register_buffer("step", _value(dtype, (), 1), persistent=False)
        self.constants.register_buffer("none", _value(dtype, (0,), 1), persistent=False)

    def forward(self, x):
        return self.scale(x) + self.constants.step.float() + self.constants.none.float().sum()


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Module()
        for i, dtype in enumerate((torch.int32, torch.int32, torch.int64, torch.bfloat16)):
            setattr(self.blocks, f"block_{i}", Repeated(dtype))

    def forward(self, x):
        for i in range(4):
            x = getattr(self.blocks, f"block_{i}")(x)
        return x


def traced(module: nn.Module) -> fx.GraphModule:
    class Tracer(fx.Tracer):
        proxy_buffer_attributes = True

        def is_leaf_module(self, m: nn.Module, name: str) -> bool:
            return type(m).__module__.startswith("torch.nn.") and type(m) is not nn.Module

    module.eval()
    gm = fx.GraphModule(module, Tracer().trace(module))
    # fx copies buffers as persistent; keep the module's own persistence
    for name, owner in module.named_modules():
        for buffer in owner._non_persistent_buffers_set:
            gm.get_submodule(name)._non_persistent_buffers_set.add(buffer)
    return gm


def assert_bitwise(expected, got) -> None:
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    got = got if isinstance(got, (list, tuple)) else [got]
    assert len(expected) == len(got)
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, g.shape, e.dtype, e.shape)
        assert torch.equal(g, e) or (e.is_floating_point() and torch.equal(g.isnan(), e.isnan()))


def round_trip(gm: fx.GraphModule, inputs: tuple, directory: Path) -> nn.Module:
    """Save, ruff, load in this process, and bitwise-compare; returns the loaded model."""
    saved = fxsurgeon.save(gm, directory, example_inputs=inputs)
    assert saved.check_max_abs == 0.0
    ruff = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--line-length", "100", str(saved.model_py)],
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    loaded = fxsurgeon.load(directory)
    with torch.no_grad():
        assert_bitwise(gm(*inputs), loaded(*inputs))
    return loaded


def load_in_clean_process(directory: Path, inputs: tuple) -> list[torch.Tensor]:
    """``import model`` beside the folder where fxsurgeon/tensorflow/onnx2torch cannot load."""
    torch.save(inputs, directory / "inputs.pt")
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(directory)!r})
import torch
import model
m = model.load()
inputs = torch.load({str(directory / "inputs.pt")!r})
with torch.no_grad():
    out = m(*inputs)
out = list(out) if isinstance(out, (list, tuple)) else [out]
torch.save(out, {str(directory / "outputs.pt")!r})
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd="/", timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(directory / "outputs.pt")


# --------------------------------------------------------------------------- dtypes and shapes


def test_every_dtype_zero_d_and_empty_round_trip_bitwise(tmp_path):
    gm = traced(EveryDtype())
    inputs = (torch.randn(2, 3) * 5,)
    round_trip(gm, inputs, tmp_path)
    with torch.no_grad():
        assert_bitwise(gm(*inputs), load_in_clean_process(tmp_path, inputs))
    weights = load_file(tmp_path / "model.safetensors")
    for dtype in DTYPES:
        assert weights[f"state.scalar_{_name(dtype)}"].dtype == dtype
        assert weights[f"state.scalar_{_name(dtype)}"].dim() == 0


def test_repeated_blocks_with_zero_d_constants_of_their_own(tmp_path):
    """Sibling blocks are compared by their constants' digests (0-d and empty ones included)."""
    gm = traced(Stack())
    round_trip(gm, (torch.randn(2, 3),), tmp_path)
    source = (tmp_path / "model.py").read_text()
    assert "torch.tensor(-55, dtype=torch.int64)" in source
    assert "torch.tensor([], dtype=torch.bfloat16)" in source


class Biased(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(width))

    def forward(self, x, weight):
        return torch.relu(nn.functional.linear(x, weight, self.bias) * 2.0)


class SameForwardOtherShapes(nn.Module):
    """Blocks with one forward but parameters of two shapes (fuzz seeds 527, 640, 675, 887)."""

    def __init__(self):
        super().__init__()
        self.weights = nn.Module()
        self.weights.wide = nn.Parameter(torch.randn(8, 3))
        self.weights.narrow = nn.Parameter(torch.randn(4, 8))
        self.add_0, self.add_1 = Biased(8), Biased(8)
        self.add_2, self.add_3 = Biased(4), Biased(4)

    def forward(self, x):
        a = self.add_0(x, self.weights.wide) + self.add_1(x, self.weights.wide)
        return self.add_2(a, self.weights.narrow) + self.add_3(a, self.weights.narrow)


def test_equal_forwards_over_other_parameter_shapes_are_two_classes(tmp_path):
    gm = traced(SameForwardOtherShapes())
    saved = fxsurgeon.save(gm, tmp_path, example_inputs=(torch.randn(2, 3),))
    assert not saved.inline
    assert sorted(c.instances for c in saved.classes) == [["add_0", "add_1"], ["add_2", "add_3"]]
    round_trip(gm, (torch.randn(2, 3),), tmp_path)


# --------------------------------------------------------------------------- names


class OddNames(nn.Module):
    """Module and tensor names an ONNX graph gives: slashes, digits, keywords, clashes."""

    def __init__(self):
        super().__init__()
        self.add_module("model_1/conv1_relu/Relu6", nn.ReLU6())
        self.add_module("model_1/conv1-relu/Relu6", nn.Hardtanh(-1.0, 1.0))  # same sanitised name
        self.layer = nn.Module()
        self.layer.add_module("0", nn.Linear(3, 3))
        self.layer.add_module("1", nn.Linear(3, 3))
        self.add_module("cls-token", nn.Module())
        self.get_submodule("cls-token").register_parameter("token", nn.Parameter(torch.randn(3)))
        self.register_parameter("kernel:0", nn.Parameter(torch.randn(3)))

    def forward(self, x):
        x = getattr(self, "model_1/conv1_relu/Relu6")(x * 4)
        x = getattr(self, "model_1/conv1-relu/Relu6")(x)
        x = getattr(self.layer, "0")(x) + getattr(self, "cls-token").token
        return getattr(self.layer, "1")(x) * getattr(self, "kernel:0")


def test_names_that_are_no_identifiers_are_sanitised_deterministically(tmp_path):
    gm = traced(OddNames())
    renamed = with_identifier_names(gm)
    again = with_identifier_names(gm)
    names = list(renamed.state_dict())
    assert names == list(again.state_dict())
    assert all(p.isidentifier() or p.isdigit() for n in names for p in n.split("."))
    modules = [n for n, _ in renamed.named_modules() if n]
    assert "model_1_conv1_relu_relu6" in modules
    assert "model_1_conv1_relu_relu6_1" in modules  # the clash gets a suffix, not a collision
    assert "layer.0" in modules  # digits stay (HF's encoder.layer.0): a valid state_dict key
    assert list(gm.state_dict()) != names  # the user's module is not renamed
    assert getattr(gm, "model_1/conv1_relu/Relu6") is not None
    loaded = round_trip(gm, (torch.randn(2, 3),), tmp_path)
    source = (tmp_path / "model.py").read_text()
    assert "self.model_1_conv1_relu_relu6 = nn.ReLU6()" in source
    assert "self.layer[0]" in source or 'getattr(self.layer, "0")' in source
    assert isinstance(loaded.model_1_conv1_relu_relu6, nn.ReLU6)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["codegen"]["renamed"]["model_1/conv1_relu/Relu6"] == "model_1_conv1_relu_relu6"


def test_an_identity_gm_is_not_copied():
    gm = traced(Stack())
    assert with_identifier_names(gm) is gm


# --------------------------------------------------------------------------- from ONNX


def _vi(name: str, elem: int, shape: list) -> object:
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.mark.parametrize(
    "dtype", [np.int32, np.int64, np.float32, np.float16, np.float64, np.uint8]
)
def test_a_scalar_initializer_through_optimize_and_model_py(tmp_path, dtype):
    """A 0-d initializer used in Where/Add survives optimize and round-trips bitwise."""
    import onnx_cases as cases

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    value = np.array(3, dtype=dtype)
    other = np.array(7 if dtype is np.uint8 else -7, dtype=dtype)
    nodes = [
        helper.make_node("Greater", ["x", "zero"], ["positive"]),
        helper.make_node("Where", ["positive", "s", "t"], ["y"]),
        helper.make_node("Shape", ["y"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["z"], to=elem) if dtype is not np.bool_ else None,
    ]
    nodes = [n for n in nodes if n is not None]
    outputs = [_vi("y", elem, ["N", 4])]
    if dtype is not np.bool_:
        outputs.append(_vi("z", elem, [2]))
    model = cases.make_model(
        nodes,
        [_vi("x", TensorProto.FLOAT, ["N", 4])],
        outputs,
        [
            cases.init("zero", np.array(0.0, np.float32)),
            cases.init("s", value),
            cases.init("t", other),
        ],
    )
    gm = cases.optimize_onnx(model)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    expected = cases.run_ort(model, [x])
    loaded = round_trip(gm, (torch.from_numpy(x),), tmp_path)
    with torch.no_grad():
        got = loaded(torch.from_numpy(x))
    got = got if isinstance(got, (list, tuple)) else [got]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g.numpy(), e)
