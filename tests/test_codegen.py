"""model.py: readable standalone source, one class per kind of repeated block, exact outputs."""

from __future__ import annotations

import ast
import functools
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import zoo
from safetensors.torch import load_file
from torch import fx, nn

import fxsurgeon
from fxsurgeon.codegen import CONSTANTS_PREFIX, INLINE_LIMIT, CodegenError, generate
from fxsurgeon.errors import InputError
from fxsurgeon.nn import KerasBatchNorm

RUFF = Path(sys.executable).with_name("ruff")


# --------------------------------------------------------------------------- helpers


class Block(nn.Module):
    def __init__(self, width: int = 8, act: str = "gelu"):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attention = nn.Module()
        self.attention.query = nn.Linear(width, width)
        self.attention.value = nn.Linear(width, width)
        self.output = nn.Module()
        self.output.dense = nn.Linear(width, width)
        self.act = act

    def forward(self, x, mask):
        h = self.norm(x)
        q = self.attention.query(h).reshape(x.size(0), -1, 2, 4).permute(0, 2, 1, 3)
        v = self.attention.value(h).reshape(x.size(0), -1, 2, 4).permute(0, 2, 1, 3)
        a = F.scaled_dot_product_attention(q, q, v, attn_mask=mask + 0.0)
        a = a.permute(0, 2, 1, 3).reshape(x.size(0), -1, 8)
        a = F.gelu(a) if self.act == "gelu" else torch.relu(a)
        return x + self.output.dense(a)


class Net(nn.Module):
    def __init__(self, acts=("gelu", "gelu", "gelu")):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.encoder = nn.Module()
        for i, act in enumerate(acts):
            setattr(self.encoder, f"layer_{i}", Block(act=act))
        self.head = nn.Linear(8, 3)
        self.n = len(acts)

    def forward(self, x, mask):
        h = self.embed(x)
        for i in range(self.n):
            h = getattr(self.encoder, f"layer_{i}")(h, mask)
        return self.head(h[:, 0])


def traced(module: nn.Module) -> fx.GraphModule:
    """A GraphModule like optimize's: Block calls inlined, leaves called as modules."""

    class Tracer(fx.Tracer):
        proxy_buffer_attributes = True

        def is_leaf_module(self, m: nn.Module, name: str) -> bool:
            return type(m) in (nn.Linear, nn.LayerNorm, nn.Conv2d, nn.Embedding, KerasBatchNorm)

    torch.manual_seed(0)
    module.eval()
    graph = Tracer().trace(module)
    return fx.GraphModule(module, graph)


def run_source(source: str, name: str = "Model") -> type:
    namespace: dict = {"__name__": "generated"}
    exec(compile(source, "<model.py>", "exec"), namespace)
    return namespace[name]


def net_inputs(batch: int = 2):
    torch.manual_seed(1)
    return torch.randn(batch, 5, 4), torch.zeros(batch, 1, 1, 5)


def class_uses(source: str) -> tuple[list[str], dict[str, int]]:
    """(classes defined, how often each defined class is instantiated)."""
    tree = ast.parse(source)
    defined = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    calls = {name: 0 for name in defined}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in calls:
            calls[node.func.id] += 1
    return defined, calls


def assert_same_outputs(gm: nn.Module, model: nn.Module, inputs) -> None:
    with torch.no_grad():
        expected, got = gm(*inputs), model(*inputs)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    got = got if isinstance(got, (list, tuple)) else [got]
    assert len(expected) == len(got)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, atol=0, rtol=0)


def ruff_check(path: Path) -> None:
    result = subprocess.run(
        [str(RUFF), "check", "--no-cache", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- blocks


def test_repeated_blocks_become_one_class_instantiated_per_block():
    gm = traced(Net())
    generated = generate(gm)
    defined, uses = class_uses(generated.source)
    assert defined == ["EncoderLayer", "Model"]
    assert uses["EncoderLayer"] == 3
    (block,) = generated.classes
    assert block.instances == ["encoder.layer_0", "encoder.layer_1", "encoder.layer_2"]
    assert len(block.digest) == 16

    model = run_source(generated.source)().eval()
    model.load_state_dict(gm.state_dict())
    assert list(model.state_dict()) == list(gm.state_dict())
    assert_same_outputs(gm, model, net_inputs())
    assert_same_outputs(gm, model, net_inputs(batch=3))


def test_the_block_forward_reads_only_its_own_parameters():
    source = generate(traced(Net())).source
    tree = ast.parse(source)
    block = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "EncoderLayer")
    forward = next(n for n in block.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    assert [a.arg for a in forward.args.args] == ["self", "hidden_states", "attn_mask"]
    text = ast.unparse(forward)
    assert "self.attention.query(" in text and "self.output.dense(" in text
    assert "encoder" not in text and "layer_" not in text


def test_a_block_with_another_forward_stays_inline():
    gm = traced(Net(acts=("gelu", "relu", "gelu")))
    generated = generate(gm)
    (block,) = generated.classes
    assert block.instances == ["encoder.layer_0", "encoder.layer_2"]
    assert any("encoder.layer_1" in reason for reason in generated.fallbacks)
    model = run_source(generated.source)().eval()
    model.load_state_dict(gm.state_dict())
    assert_same_outputs(gm, model, net_inputs())


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)

    def forward(self, x):
        return x + torch.relu(self.norm(self.fc(x)))


class Stage(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Linear(6, 6)
        self.blocks = nn.Module()
        for i in range(3):
            setattr(self.blocks, f"block_{i}", Inner())

    def forward(self, x):
        x = self.down(x) * 0.5
        for i in range(3):
            x = getattr(self.blocks, f"block_{i}")(x)
        return x


class Stages(nn.Module):
    def __init__(self):
        super().__init__()
        self.stages = nn.Module()
        self.stages.stage_0 = Stage()
        self.stages.stage_1 = Stage()
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.stages.stage_1(self.stages.stage_0(x)))


def test_blocks_inside_repeated_blocks_get_their_own_class():
    gm = traced(Stages())
    source = generate(gm).source
    defined, uses = class_uses(source)
    assert defined == ["BlocksBlock", "StagesStage", "Model"]
    assert uses == {"BlocksBlock": 3, "StagesStage": 2, "Model": 1}  # Model(): in load()
    assert "x = self.stages.stage_0(x)" in source
    model = run_source(source)().eval()
    model.load_state_dict(gm.state_dict())
    assert list(model.state_dict()) == list(gm.state_dict())
    assert_same_outputs(gm, model, (torch.randn(3, 6),))


def test_inline_code_when_blocks_are_not_wanted():
    gm = traced(Net())
    generated = generate(gm, reuse_blocks=False)
    assert generated.classes == []
    assert class_uses(generated.source)[0] == ["Model"]
    model = run_source(generated.source)().eval()
    model.load_state_dict(gm.state_dict())
    assert_same_outputs(gm, model, net_inputs())


# --------------------------------------------------------------------------- readability


def test_forward_reads_like_handwritten_code(tmp_path):
    gm = traced(Net())
    source = generate(gm, input_names=["features", "mask"], output_names=["logits"]).source
    assert "= None" not in source and "_tensor_constant" not in source
    assert "torch._C" not in source and "getattr(" not in source
    assert "def forward(self, features, mask):" in source
    assert "logits = self.head(" in source and "return logits" in source
    assert "query = query.reshape(batch_size, -1, 2, 4)" in source
    assert "F.scaled_dot_product_attention(" in source
    path = tmp_path / "model.py"
    path.write_text(source)
    ruff_check(path)


def test_model_py_imports_only_torch_math_operator():
    source = generate(traced(Net())).source
    tree = ast.parse(source)
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top_level.add(node.module.split(".")[0])
    assert top_level <= {"torch", "math", "operator"}


class Literals(nn.Module):
    def forward(self, x):
        y = x[:, 1:, None] * -2.0
        z = torch.full_like(x, -math.inf).clamp(min=0.0)
        w = (-2.0) ** torch.round(x[..., :1])
        a, b = torch.split(x, [2, 3], 1)
        return y.sum() + z.sum() + w.sum() + a.mean() - b.mean() + x.size(1) // 2


def test_literals_slices_and_tuple_results_are_written_exactly(tmp_path):
    gm = fx.symbolic_trace(Literals())
    source = generate(gm).source
    assert "x[:, 1:, None]" in source
    assert "-math.inf" in source and "import math" in source
    assert "(-2.0) ** " in source
    assert "split, split_1 = torch.split(x, [2, 3], dim=1)" in source
    model = run_source(source)()
    # against eager Literals(): fx's own code for this graph reads "-2.0 ** round_1"
    assert_same_outputs(Literals(), model, (torch.randn(3, 5),))
    (tmp_path / "model.py").write_text(source)
    ruff_check(tmp_path / "model.py")


# --------------------------------------------------------------------------- constants


class WithConstants(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.constants = nn.Module()
        self.constants.register_buffer("c0", torch.linspace(-1, 1, 4), persistent=False)
        big = torch.arange(INLINE_LIMIT + 36, dtype=torch.float32).reshape(-1, 4) / 7
        self.constants.register_buffer("c1", big, persistent=False)

    def forward(self, x):
        return self.proj(x) * self.constants.c0 + self.constants.c1[:2].sum(0)


def test_small_constants_are_literals_big_ones_travel_in_safetensors(tmp_path):
    gm = traced(WithConstants())
    for name, value in list(gm.constants.named_buffers()):  # fx copies them as persistent
        gm.constants.register_buffer(name, value, persistent=False)
    saved = fxsurgeon.save(gm, tmp_path, example_inputs=(torch.randn(2, 4),))
    assert saved.check_max_abs == 0.0
    source = saved.model_py.read_text()
    assert "torch.tensor([-1.0, -0.3333333, 0.3333333, 1.0], dtype=torch.float32)" in source
    weights = load_file(saved.weights)
    big_key = f"{CONSTANTS_PREFIX}Model.const_1"
    assert set(weights) == {"proj.weight", "proj.bias", big_key}
    assert torch.equal(weights[big_key], gm.constants.c1)

    # plain torch: Model() + load_state_dict of the file (strict) fills the constants
    model = run_source(source)().eval()
    model.load_state_dict(load_file(saved.weights))
    assert list(model.state_dict()) == list(gm.state_dict())
    assert_same_outputs(gm, model, (torch.randn(3, 4),))


class WithBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = KerasBatchNorm(4, eps=1e-3, momentum=0.01)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def test_keras_batch_norm_is_copied_into_model_py_and_trains_alike():
    gm = traced(WithBatchNorm())
    source = generate(gm).source
    assert "class KerasBatchNorm(nn.modules.batchnorm._BatchNorm):" in source
    assert "self.bn = KerasBatchNorm(4, eps=0.001, momentum=0.01)" in source
    model = run_source(source)()
    assert type(model.bn).__module__ == "generated"  # the copy, not fxsurgeon's
    model.load_state_dict(gm.state_dict())
    x = torch.randn(5, 3, 6, 6)
    gm.train()
    model.train()
    assert_same_outputs(gm, model, (x,))  # the training branch of the copy runs
    torch.testing.assert_close(model.bn.running_var, gm.bn.running_var, atol=0, rtol=0)
    gm.eval()
    model.eval()
    assert_same_outputs(gm, model, (x,))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(4, 4, bias=False)
        self.decode = nn.Linear(4, 4, bias=False)
        self.decode.weight = self.encode.weight

    def forward(self, x):
        return self.decode(torch.relu(self.encode(x)))


def test_tied_parameters_stay_one_parameter():
    gm = traced(Tied())
    model = run_source(generate(gm).source)()
    assert model.decode.weight is model.encode.weight
    model.load_state_dict(gm.state_dict())
    assert_same_outputs(gm, model, (torch.randn(2, 4),))


# --------------------------------------------------------------------------- refusals


def _helper(x):
    return x * 2


class CallsAHelper(nn.Module):
    def forward(self, x):
        return _helper(torch.relu(x))


fx.wrap("_helper")


def test_a_function_model_py_cannot_import_is_refused_naming_the_node():
    gm = fx.symbolic_trace(CallsAHelper())
    with pytest.raises(CodegenError, match=r"node %_helper .*test_codegen._helper"):
        generate(gm)


class Custom(nn.Module):
    def forward(self, x):
        return x + 1


class UsesCustom(nn.Module):
    def __init__(self):
        super().__init__()
        self.custom = Custom()

    def forward(self, x):
        return self.custom(x)


def test_a_module_of_an_unknown_class_is_refused_naming_it():
    # a call_module on a class model.py cannot build, like an onnx2torch leftover
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_module("custom", (x,)))
    gm = fx.GraphModule(UsesCustom(), graph)
    with pytest.raises(CodegenError, match=r"module custom is a .*Custom"):
        generate(gm)


def test_save_refuses_what_is_not_a_graph_module(tmp_path):
    with pytest.raises(InputError, match="GraphModule"):
        fxsurgeon.save(nn.Linear(2, 2), tmp_path)


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(InputError, match="no model.py"):
        fxsurgeon.load(tmp_path)


# --------------------------------------------------------------------------- real models


@functools.cache
def optimized(name: str) -> fx.GraphModule:
    return fxsurgeon.optimize(zoo.convert(name))


def test_tiny_vit_layers_are_one_class_used_twice(tmp_path):
    model = optimized("vit_tiny")
    saved = fxsurgeon.save(model, tmp_path)
    source = saved.model_py.read_text()
    defined, uses = class_uses(source)
    assert defined == ["EncoderLayer", "Model"]
    assert uses["EncoderLayer"] == 2
    assert [c.instances for c in saved.classes] == [["vit.encoder.layer_0", "vit.encoder.layer_1"]]
    assert saved.check_max_abs == 0.0
    loaded = fxsurgeon.load(tmp_path)
    assert list(loaded.state_dict()) == list(model.state_dict())
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.json").is_file()
    ruff_check(saved.model_py)


@pytest.mark.slow
def test_vit_base_has_one_layer_class_reused_12_times(tmp_path):
    model = optimized("vit_base")
    saved = fxsurgeon.save(model, tmp_path)
    defined, uses = class_uses(saved.model_py.read_text())
    assert defined == ["EncoderLayer", "Model"]
    assert uses["EncoderLayer"] == 12
    assert [len(c.instances) for c in saved.classes] == [12]
    loaded = fxsurgeon.load(tmp_path)
    assert list(loaded.state_dict()) == list(model.state_dict())
    ruff_check(saved.model_py)
