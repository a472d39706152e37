"""The test zoo (``tests/zoo.py``) as corpus models.

The builders are the zoo's own (imported by path, not copied), so the
scoreboard and the test suite judge the same models. This module adds what
the scoreboard needs: the family, sizes of the dynamic sequence dim (text
models; the image exports have static H/W), the nominal fusion counts that
follow from each config, the BatchNorm the Keras 3 export folds away, and the
transformers PyTorch twin. ``vit_base`` (ViT-Base, slow) is not registered.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import CorpusModel, hf_twin, register

ZOO_PATH = Path(__file__).resolve().parents[2] / "tests" / "zoo.py"
TEXT_SIZES = (5, 12)


def _zoo() -> Any:
    """tests/zoo.py as a module (``corpus_tests_zoo``), loaded once."""
    name = "corpus_tests_zoo"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ZOO_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _torch_inputs(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The inputs as torch tensors by name, integer ones as int64 (what embeddings index with)."""
    import torch

    return {
        name: torch.from_numpy(a.astype(np.int64) if a.dtype.kind in "iub" else a)
        for name, a in inputs.items()
    }


def _corpus_model(name: str, family: str, **extra: Any) -> CorpusModel:
    zoo_model = _zoo().build(name)
    make_inputs = zoo_model.make_inputs

    def inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        return make_inputs(batch_size, seed, size)

    return CorpusModel(
        name=name,
        family=family,
        model=zoo_model.model,
        input_signature=zoo_model.input_signature,
        output_names=zoo_model.output_names,
        make_inputs=inputs,
        tf_outputs=zoo_model.tf_outputs,
        trainable_params=zoo_model.trainable_params,
        **extra,
    )


def _transformer(layers: int, linear_per_layer: int, extra_linear: int) -> dict[str, int]:
    """Per block: one attention, two LayerNorms, one GELU, its projections; plus a final norm."""
    return {
        "sdpa": layers,
        "layer_norm": 2 * layers + 1,
        "gelu": layers,
        "linear": linear_per_layer * layers + extra_linear,
    }


def _zoo_builder(name: str, family: str, **extra: Any) -> Callable[[], CorpusModel]:
    def builder() -> CorpusModel:
        return _corpus_model(name, family, **extra)

    builder.__name__ = f"build_{name}"
    builder.cache_sources = (ZOO_PATH,)  # the export cache key covers tests/zoo.py too
    return register(name, family=family)(builder)


def _hf(name: str, family: str, pt_class: str, **extra: Any) -> Callable[[], CorpusModel]:
    def builder() -> CorpusModel:
        model = _corpus_model(name, family, **extra)
        model.twin = hf_twin(model.model, pt_class)
        model.twin_inputs = _torch_inputs
        return model

    builder.__name__ = f"build_{name}"
    builder.cache_sources = (ZOO_PATH,)
    return register(name, family=family)(builder)


# ViT-tiny: 2 blocks (q, k, v, out, fc1, fc2), final LayerNorm, classifier; patch embedding is a conv.
_hf("vit_tiny", "vision", "ViTForImageClassification", nominal=_transformer(2, 6, 1))
# BERT-tiny: embedding LayerNorm + 2 per block (post-norm), pooler Linear.
_hf(
    "bert_tiny",
    "encoder",
    "BertModel",
    sizes=TEXT_SIZES,
    nominal=_transformer(2, 6, 1),
    note="gelu_new (tanh GELU)",
)
_hf(
    "bert_tiny_exact_gelu",
    "encoder",
    "BertModel",
    sizes=TEXT_SIZES,
    nominal=_transformer(2, 6, 1),
    note="exact GELU (tf2onnx Erfc)",
)
# GPT-2-tiny: Conv1D c_attn (fused q/k/v), c_proj, c_fc, mlp c_proj per block; final ln_f.
# Its causal band and padding mask both fill -1e4: on a left-padded row's first queries TF
# weighs the hidden keys too, so no SDPA is exact (patterns/_attention_masks.py `_dominates`)
# and the 2 attention softmaxes stay.
_hf(
    "gpt2_tiny",
    "decoder",
    "GPT2Model",
    sizes=TEXT_SIZES,
    nominal={**_transformer(2, 4, 0), "sdpa": 0, "softmax": 2},
)
_zoo_builder("resnet50", "cnn", nominal={"linear": 1}, note="tf-keras ResNet50 on 64x64")
_zoo_builder("keras_mlp", "keras", nominal={"linear": 3})
_zoo_builder("keras_cnn", "keras", nominal={"linear": 1}, note="tf-keras BatchNormalization")
_zoo_builder(
    "keras3_cnn",
    "keras",
    nominal={"linear": 1},
    bn_folded=2 * (8 + 12),
    bn_folded_reason="Keras 3 BatchNormalization exports as a folded Mul/Add (gamma, beta gone)",
)
