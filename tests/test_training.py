"""Fine-tuning the optimized model matches fine-tuning the TensorFlow model.

Gradients against ``tf.GradientTape``, five Adam steps against Keras' Adam,
BatchNorm in training mode against Keras' moving statistics, and
DistributedDataParallel against one process. Parameters are paired with TF
variables by `fxsurgeon.parameter_origins` (name and layout), never by order.

Why most comparisons run in float64 (the optimized model ``.double()``, the
Keras model rebuilt with ``floatx="float64"`` holding the same float32
values): in float32 the two frameworks sum in different orders, and a
gradient entry that is small next to the largest entry of its tensor differs
by more than ``rtol=1e-4, atol=1e-6`` (measured: up to 4x that on
``gpt2_tiny``'s embeddings). Worse, some gradients are zero in exact
arithmetic but rounding noise in float32: the attention key bias (softmax
does not change when ``q . b_k`` is added to every score of a row) and a conv
bias in front of a BatchNorm in training mode (the batch mean removes it).
Adam divides by ``sqrt(v)``, so both frameworks move those entries by about
``lr`` in random directions. In float64 the noise is 1e-16, far below Adam's
epsilon, and every entry can be held to the tolerances. The float32 model is
held to the same tolerances in `test_adam_steps_match_keras` on every entry
whose gradient is not zero in exact arithmetic.

What is left in float64 is not rounding: Hugging Face's TF code turns Python
constants into tensors through float32 (``tf.cast(math.sqrt(d), dtype)``
makes a float32 tensor first; ``gelu_new`` does the same with pi), so the
float64 TF model is float64 arithmetic on float32 constants (relative 1e-8).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
import safetensors.torch
import torch
import zoo

import fxsurgeon
from fxsurgeon.source import SOURCE_META_KEY

#: vision transformer, encoder, decoder, MLP, CNN; seq2seq and RNN from the corpus (zoo.CORPUS).
#: BART, not Marian: TF Marian's ``embed_scale`` is a float32 tensor, so no float64 twin runs.
MODELS = ("vit_tiny", "bert_tiny", "gpt2_tiny", "keras_mlp", "keras_cnn", "hf_bart", "keras_gru")
RTOL, ATOL = 1e-4, 1e-6
#: A gradient below this fraction of the model's largest is zero in exact arithmetic.
NEGLIGIBLE = 1e-9
ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}


@functools.cache
def optimized(name: str) -> torch.fx.GraphModule:
    return fxsurgeon.optimize(zoo.convert(name))


def optimized_copy(name: str, dtype: torch.dtype) -> torch.fx.GraphModule:
    return copy.deepcopy(optimized(name)).to(dtype)


# --------------------------------------------------------------------------- the TF side


def _keras_modules():
    zoo.import_tensorflow()
    import keras
    import tf_keras

    return keras, tf_keras


@contextlib.contextmanager
def _keras_floatx(dtype: str) -> Iterator[None]:
    keras, tf_keras = _keras_modules()
    saved = (
        tf_keras.backend.floatx(),
        tf_keras.mixed_precision.global_policy(),
        keras.config.floatx(),
        keras.config.dtype_policy(),
    )
    # Once anything has set tf-keras' global policy (the benchmarks' bf16 protocol
    # does, then restores "float32"), that policy wins over floatx: set both.
    tf_keras.backend.set_floatx(dtype)
    tf_keras.mixed_precision.set_global_policy(dtype)
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        tf_keras.backend.set_floatx(saved[0])
        tf_keras.mixed_precision.set_global_policy(saved[1])
        keras.config.set_floatx(saved[2])
        keras.config.set_dtype_policy(saved[3])


@functools.cache
def float64_twin(name: str) -> zoo.ZooModel:
    """``name`` rebuilt in float64, holding the float32 zoo model's values exactly."""
    with _keras_floatx("float64"):
        twin = zoo.BUILDERS[name]()
    for source, target in zip(zoo.build(name).model.variables, twin.model.variables, strict=True):
        assert tuple(source.shape) == tuple(target.shape), (source.name, target.name)
        target.assign(np.asarray(source.numpy()).astype(np.float64))
    return twin


def twin_variables(name: str, model) -> dict[str, object]:
    """Variable name in the zoo model (what `parameter_origins` names) -> ``model``'s variable.

    A rebuilt Hugging Face model scopes its variables ``tf_bert_model_1/...``;
    the order of the variables is the same.
    """
    return {
        str(getattr(a, "path", None) or a.name): b
        for a, b in zip(zoo.build(name).model.variables, model.variables, strict=True)
    }


@contextlib.contextmanager
def restored(model) -> Iterator[None]:
    """Train ``model`` in the block; its variables get their values back after it."""
    saved = [np.array(v.numpy()) for v in model.variables]
    try:
        yield
    finally:
        for variable, value in zip(model.variables, saved, strict=True):
            variable.assign(value)


def call_tf(zoo_model: zoo.ZooModel, inputs: dict[str, np.ndarray], training: bool) -> list:
    model = zoo_model.model
    if hasattr(model, "config"):  # Hugging Face: dict in, ModelOutput out
        out = model(dict(inputs), training=training)
        return [out[key] for key in zoo_model.output_names]
    (x,) = inputs.values()
    out = model(x, training=training)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def is_keras3(model) -> bool:
    keras, _ = _keras_modules()
    return isinstance(model, keras.Model)


def keras_adam(model):
    """Keras' Adam with torch's epsilon convention (see `torch_adam`)."""
    keras, tf_keras = _keras_modules()
    lr, (beta_1, beta_2), eps = ADAM["lr"], ADAM["betas"], ADAM["eps"]
    if is_keras3(model):
        return keras.optimizers.Adam(lr, beta_1=beta_1, beta_2=beta_2, epsilon=eps)
    # adaptive_epsilon: eps * sqrt(1 - beta_2^t), which is torch's eps after bias correction
    return tf_keras.optimizers.Adam(
        lr, beta_1=beta_1, beta_2=beta_2, epsilon=eps, adaptive_epsilon=True
    )


def torch_adam(module: torch.nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), **ADAM)


def match_keras3_epsilon(optimizer: torch.optim.Adam, step: int) -> None:
    """Keras 3 adds eps to ``sqrt(v)`` before the bias correction, torch after it:
    torch's eps at step t is eps / sqrt(1 - beta_2^t)."""
    beta_2 = ADAM["betas"][1]
    optimizer.param_groups[0]["eps"] = ADAM["eps"] / (1.0 - beta_2**step) ** 0.5


# --------------------------------------------------------------------------- shared bits


def cast_inputs(inputs: dict[str, np.ndarray], dtype) -> dict[str, np.ndarray]:
    return {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in inputs.items()}


def torch_inputs(name: str, inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
    specs = zoo.convert(name).meta[SOURCE_META_KEY].input_specs
    return [torch.from_numpy(inputs[spec.name]) for spec in specs]


def run_torch(module, name: str, inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
    out = module(*torch_inputs(name, inputs))
    return list(out) if isinstance(out, (list, tuple)) else [out]


def loss_weights(name: str) -> list[np.ndarray]:
    """Fixed random weights, one per output (batch dim left out)."""
    rng = np.random.default_rng(1)
    outputs = zoo.build(name).tf_outputs(zoo.build(name).make_inputs(1, seed=0))
    return [rng.standard_normal(o.shape[1:]) for o in outputs]


def tf_loss(outputs, weights):
    """mean over the batch of sum(w * y^2): a mean, so that shards average to the whole."""
    tf = zoo.import_tensorflow()
    total = 0.0
    for y, w in zip(outputs, weights, strict=True):
        per_sample = tf.reduce_sum(
            w.astype(y.dtype.as_numpy_dtype) * y * y, axis=list(range(1, y.ndim))
        )
        total += tf.reduce_mean(per_sample)
    return total


def torch_loss(outputs, weights) -> torch.Tensor:
    total = torch.zeros((), dtype=outputs[0].dtype)
    for y, w in zip(outputs, weights, strict=True):
        total = total + (torch.from_numpy(w).to(y.dtype) * y * y).flatten(1).sum(1).mean()
    return total


def as_torch(value) -> torch.Tensor:
    tf = zoo.import_tensorflow()
    return torch.from_numpy(np.array(tf.convert_to_tensor(value)))  # IndexedSlices too


def in_torch_layout(origin, tf_tensor: torch.Tensor) -> torch.Tensor:
    return tf_tensor.permute(origin.perm)


# --------------------------------------------------------------------------- gradients


def gradients_both(name: str, twin: zoo.ZooModel, module, inputs):
    """(torch parameter name -> (torch grad, TF grad in torch layout)) for one loss."""
    tf = zoo.import_tensorflow()
    weights = loss_weights(name)
    variables = list(twin.model.trainable_variables)
    with tf.GradientTape() as tape:
        loss = tf_loss(call_tf(twin, inputs, training=False), weights)
    by_name = twin_variables(name, twin.model)
    grads = tape.gradient(loss, variables)
    tf_grads = {id(v): as_torch(g) for v, g in zip(variables, grads, strict=True)}

    module.zero_grad()
    torch_loss(run_torch(module, name, inputs), weights).backward()
    origins = fxsurgeon.parameter_origins(module)
    pairs = {}
    for pname, param in module.named_parameters():
        origin = origins[pname]
        expected = tf_grads[id(by_name[origin.tf_name])]
        pairs[pname] = (param.grad, in_torch_layout(origin, expected))
    return pairs


@pytest.mark.parametrize("name", MODELS)
def test_gradients_match_tensorflow_gradient_tape(name):
    module = optimized_copy(name, torch.float64).eval()
    inputs = cast_inputs(zoo.build(name).make_inputs(3, seed=7), np.float64)
    pairs = gradients_both(name, float64_twin(name), module, inputs)

    largest = max(float(tf_grad.abs().max()) for _, tf_grad in pairs.values())
    worst, negligible = 0.0, set()
    for pname, (grad, tf_grad) in pairs.items():
        assert grad is not None, f"{pname} gets no gradient"
        torch.testing.assert_close(
            grad, tf_grad, rtol=RTOL, atol=ATOL, msg=lambda m, p=pname: f"{p}: {m}"
        )
        worst = max(worst, float(((grad - tf_grad).abs() / (ATOL + RTOL * tf_grad.abs())).max()))
        if float(tf_grad.abs().max()) <= NEGLIGIBLE * largest:
            negligible.add(pname)
        else:
            assert float(grad.abs().max()) > 0, f"{pname}: zero gradient"
    # Zero in exact arithmetic: the key bias shifts every score of a softmax row alike.
    assert negligible == {p for p in pairs if p.endswith(("key.bias", "k_proj.bias"))}
    print(
        f"\n{name}: max |grad diff| / (atol + rtol |grad|) = {worst:.3g} over {len(pairs)} parameters"
    )


# --------------------------------------------------------------------------- Adam


def train_both(
    name: str, zoo_model: zoo.ZooModel, module, steps: int, *, batch: int, training: bool, seed: int
) -> dict[str, torch.Tensor]:
    """Train the Keras model and ``module`` side by side on the same batches.

    Returns, per torch parameter, the largest |TF gradient| each entry saw.
    """
    tf = zoo.import_tensorflow()
    keras_model = zoo_model.model
    weights = loss_weights(name)
    variables = list(keras_model.trainable_variables)
    keras_optimizer, optimizer = keras_adam(keras_model), torch_adam(module)
    by_name = twin_variables(name, keras_model)
    origins = fxsurgeon.parameter_origins(module)
    seen = {p: torch.zeros_like(t) for p, t in module.named_parameters()}
    dtype = np.float64 if next(module.parameters()).dtype == torch.float64 else np.float32
    for step in range(1, steps + 1):
        inputs = cast_inputs(zoo.build(name).make_inputs(batch, seed=seed + step), dtype)
        with tf.GradientTape() as tape:
            loss = tf_loss(call_tf(zoo_model, inputs, training=training), weights)
        grads = tape.gradient(loss, variables)
        keras_optimizer.apply_gradients(zip(grads, variables, strict=True))
        tf_grads = {id(v): as_torch(g) for v, g in zip(variables, grads, strict=True)}
        for pname in seen:
            origin = origins[pname]
            tf_grad = in_torch_layout(origin, tf_grads[id(by_name[origin.tf_name])])
            seen[pname] = torch.maximum(seen[pname], tf_grad.abs().to(seen[pname].dtype))

        optimizer.zero_grad()
        if is_keras3(keras_model):
            match_keras3_epsilon(optimizer, step)
        torch_loss(run_torch(module, name, inputs), weights).backward()
        optimizer.step()
    return seen


def tf_state(name: str, module, keras_model) -> dict[str, torch.Tensor]:
    """The Keras model's variables under the torch state_dict names, in torch layout."""
    by_name = twin_variables(name, keras_model)
    origins = fxsurgeon.parameter_origins(module)
    return {
        key: in_torch_layout(origin, torch.from_numpy(np.array(by_name[origin.tf_name].numpy())))
        for key, origin in origins.items()
    }


def assert_weights_agree(module, expected: dict[str, torch.Tensor], skip=None) -> float:
    """Every parameter/buffer within rtol/atol of TF's; returns the worst |diff| / tolerance."""
    worst = 0.0
    for key, value in module.state_dict().items():
        if key not in expected:
            continue
        got, want = value.detach(), expected[key].to(value.dtype)
        if skip is not None and key in skip:
            got, want = got[~skip[key]], want[~skip[key]]
        torch.testing.assert_close(
            got, want, rtol=RTOL, atol=ATOL, msg=lambda m, k=key: f"{k}: {m}"
        )
        if want.numel():
            worst = max(worst, float(((got - want).abs() / (ATOL + RTOL * want.abs())).max()))
    return worst


@pytest.mark.parametrize("name", MODELS)
def test_adam_steps_match_keras(name):
    """Five Adam steps (lr 1e-3, betas (0.9, 0.999), eps 1e-8 in both) end with equal weights."""
    steps = 5
    twin = float64_twin(name)
    module = optimized_copy(name, torch.float64).eval()
    start = {k: v.clone() for k, v in module.state_dict().items()}
    with restored(twin.model):
        seen = train_both(name, twin, module, steps, batch=4, training=False, seed=100)
        worst64 = assert_weights_agree(module, tf_state(name, module, twin.model))
    moved = max(float((module.state_dict()[k] - start[k]).abs().max()) for k in seen)
    assert moved > 100 * steps * ATOL  # the weights did move: a missed update would show

    # The float32 model itself, on every entry whose gradient is not zero in
    # exact arithmetic (those follow rounding noise; see the module docstring).
    largest = max(float(s.max()) for s in seen.values())
    noise = {p: s <= NEGLIGIBLE * largest for p, s in seen.items()}
    module32 = optimized_copy(name, torch.float32).eval()
    zoo_model = zoo.build(name)
    with restored(zoo_model.model):
        train_both(name, zoo_model, module32, steps, batch=4, training=False, seed=100)
        worst32 = assert_weights_agree(module32, tf_state(name, module32, zoo_model.model), noise)
    skipped = sum(int(m.sum()) for m in noise.values())
    print(
        f"\n{name}: after {steps} Adam steps max |weight diff| / (atol + rtol |w|) = "
        f"{worst64:.3g} (float64), {worst32:.3g} (float32, {skipped} zero-gradient entries skipped)"
    )


# --------------------------------------------------------------------------- BatchNorm


def test_batchnorm_in_training_mode_matches_keras_moving_statistics():
    """Three Adam steps with the tf-keras CNN in training mode (TF ``training=True``,
    torch ``.train()``): weights and moving mean/variance agree with Keras'."""
    name, steps = "keras_cnn", 3
    twin = float64_twin(name)
    module = optimized_copy(name, torch.float64).train()
    start = {k: v.clone() for k, v in module.state_dict().items()}
    with restored(twin.model):
        train_both(name, twin, module, steps, batch=8, training=True, seed=300)
        expected = tf_state(name, module, twin.model)
    worst = assert_weights_agree(module, expected)
    for layer in ("bn_1", "bn_2"):
        assert int(module.get_submodule(layer).num_batches_tracked) == steps
        for stat in ("running_mean", "running_var"):
            key = f"{layer}.{stat}"
            # the updates themselves agree: a wrong momentum, or torch's unbiased
            # variance (n/(n-1), n = 2048 and 512 here), would be 5x ATOL off or more
            torch.testing.assert_close(
                module.state_dict()[key] - start[key],
                expected[key] - start[key],
                rtol=RTOL,
                atol=ATOL,
            )
            assert float((expected[key] - start[key]).abs().max()) > 1e-3
    print(f"\n{name} training mode: max |diff| / (atol + rtol |w|) = {worst:.3g}")


# --------------------------------------------------------------------------- DDP

DDP_MODEL, DDP_STEPS, DDP_BATCH, DDP_LR = "keras_mlp", 3, 8, 0.1


def _ddp_batch(step: int) -> dict[str, np.ndarray]:
    return zoo.build(DDP_MODEL).make_inputs(DDP_BATCH, seed=500 + step)


def _sgd_steps(model, shard: slice) -> None:
    weights = loss_weights(DDP_MODEL)
    optimizer = torch.optim.SGD(model.parameters(), lr=DDP_LR)
    for step in range(DDP_STEPS):
        inputs = {k: v[shard] for k, v in _ddp_batch(step).items()}
        optimizer.zero_grad()
        out = model(*torch_inputs(DDP_MODEL, inputs))
        torch_loss([out], weights).backward()
        optimizer.step()


def _ddp_worker(rank: int, world: int, init: str, out: str) -> None:
    """One process of `test_distributed_data_parallel_matches_one_process`."""
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        module = fxsurgeon.optimize(zoo.convert(DDP_MODEL))
        module.load_state_dict(safetensors.torch.load_file(init), strict=True)
        ddp = torch.nn.parallel.DistributedDataParallel(module)
        per_rank = DDP_BATCH // world
        _sgd_steps(ddp, slice(rank * per_rank, (rank + 1) * per_rank))
        state = {k: v.contiguous() for k, v in module.state_dict().items()}
        safetensors.torch.save_file(state, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_data_parallel_matches_one_process(tmp_path):
    """Two gloo processes on half a batch each = one process on the whole batch."""
    start = time.perf_counter()
    module = optimized(DDP_MODEL)
    init = tmp_path / "init.safetensors"
    safetensors.torch.save_file(module.state_dict(), str(init))

    world = 2
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    outs = [tmp_path / f"rank{rank}.safetensors" for rank in range(world)]
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "ddp-worker", str(rank), str(world), str(init), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank, out in enumerate(outs)
    ]
    logs = []
    for worker in workers:
        try:
            logs.append(worker.communicate(timeout=150)[0])
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            raise
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]

    reference = copy.deepcopy(module)
    _sgd_steps(reference, slice(0, DDP_BATCH))
    expected = reference.state_dict()
    assert any(not torch.equal(expected[k], v) for k, v in module.state_dict().items())
    for out in outs:
        got = safetensors.torch.load_file(str(out))
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-7)
    print(f"\nDDP x{world} (gloo): {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------- ViT-Base


@pytest.mark.slow
def test_vit_base_gradients_match_tensorflow_on_a_few_parameters():
    name = "vit_base"
    module = optimized_copy(name, torch.float64).eval()
    inputs = cast_inputs(zoo.build(name).make_inputs(1, seed=7), np.float64)
    pairs = gradients_both(name, float64_twin(name), module, inputs)
    for pname in (
        "vit.embeddings.patch_embeddings.projection.weight",
        "vit.embeddings.cls_token",
        "vit.encoder.layer_0.attention.attention.query.weight",
        "vit.encoder.layer_5.intermediate.dense.bias",
        "vit.encoder.layer_11.output.dense.weight",
        "vit.layernorm.weight",
        "classifier.weight",
    ):
        grad, tf_grad = pairs[pname]
        torch.testing.assert_close(
            grad, tf_grad, rtol=RTOL, atol=ATOL, msg=lambda m, p=pname: f"{p}: {m}"
        )
        assert float(grad.abs().max()) > 0
        worst = float(((grad - tf_grad).abs() / (ATOL + RTOL * tf_grad.abs())).max())
        print(f"\nViT-Base {pname}: max |grad diff| / (atol + rtol |grad|) = {worst:.3g}")


if __name__ == "__main__" and sys.argv[1:2] == ["ddp-worker"]:
    _ddp_worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
