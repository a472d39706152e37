"""June probes: transformers TF models in config and call variants the corpus lacked (tiny
configs, every variable randomised, nothing downloaded).

* ``hf_bert_attn_probs``: TFBertModel called with ``output_attentions=True``: each layer's
  attention probabilities (the softmax after the padding mask) are model outputs, so no
  attention may become one SDPA call (SDPA does not return its probabilities): both
  softmaxes stay, the rest of the model fuses as usual;
* ``hf_vit_hidden_states``: TFViTModel called with ``output_hidden_states=True``: the
  embeddings and every layer's output (before the final LayerNorm) are outputs too;
* ``hf_esm_relative_key``: TFEsmModel with ``position_embedding_type="relative_key"``: each
  attention adds ``einsum("bhld,lrd->bhlr", q, distance_embedding[i - j + max - 1])`` (the
  query term only; ``hf_esm_relative`` has both);
* ``hf_bert_gelu_fast``: TFBertModel with ``hidden_act="gelu_fast"``: the tanh GELU written
  ``0.5 x (1 + tanh(x * 0.7978845608 * (1 + 0.044715 x x)))``;
* ``hf_roberta_gelu10``: TFRobertaModel with ``hidden_act="gelu_10"``: the exact GELU
  clipped to [-10, 10];
* ``hf_electra_mish``: TFElectraModel with ``hidden_act="mish"``: ``x tanh(softplus(x))``;
* ``hf_mistral_mqa_leftpad``: TFMistralModel with one key/value head for four query heads
  (multi-query) on left-padded batches: a padded row's first queries see no key at all
  (causal mask and padding), TF's additive dtype-min mask makes their softmax finite;
* ``hf_gpt2_prefill``: TFGPT2LMHeadModel called with ``use_cache=True`` and no past (the
  prefill of generation) on left-padded batches: the logits and every layer's present key
  and value (optimum's ``present_<i>_key`` layout) as outputs.

Call variants are Keras wrappers a user writes around the model (flat named outputs: a
tuple field ``f`` becomes ``f_0``, ``f_1``, ...). The ``nominal`` counts follow the TF
modelling source, one comment per builder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import (
    CorpusModel,
    hf_twin,
    randomize,
    register,
    text_inputs,
    tf_module,
    trainable_count,
)
from .hf_text import _BERT_INPUTS, SIZES, TINY, VOCAB, _hf_model, _torch_inputs
from .hf_vision import torch_inputs as pixel_torch_inputs
from .probe_mar_text import GPT2_TINY


def _left_padded(names: tuple[str, ...], vocab: int) -> Callable[..., dict[str, np.ndarray]]:
    """Token ids and a mask padded at the start: the last row's first two positions, the
    first row's first position when there are 3 rows or more."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        length = size or 8
        rng = np.random.default_rng(seed)
        mask = np.ones((batch_size, length), np.int32)
        mask[-1, :2] = 0
        if batch_size >= 3:
            mask[0, :1] = 0
        arrays = {
            "input_ids": rng.integers(0, vocab, (batch_size, length)).astype(np.int32),
            "attention_mask": mask,
        }
        return {n: arrays[n] for n in names}

    return make_inputs


def _flat(
    name: str,
    family: str,
    inner: Any,
    specs: dict[str, Any],
    make_inputs: Callable[..., dict[str, np.ndarray]],
    fields: tuple[str, ...],
    nominal: dict[str, int],
    *,
    call_kwargs: dict[str, Any],
    twin: tuple[str, Callable[[dict[str, np.ndarray]], dict[str, Any]]] | None,
    sizes: tuple[int, ...] = SIZES,
    split: Callable[[str, Any], list[tuple[str, Any]]] | None = None,
    rename: dict[str, str] | None = None,
    note: str = "",
) -> CorpusModel:
    """Wrap ``inner`` (a transformers TF model) as a Keras model called with ``call_kwargs``
    whose outputs are the tensors of ``fields``, a tuple field flattened to ``f_0``, ``f_1``,
    ... (``split(field, item)`` names the parts of one tuple item instead; ``rename`` gives a
    tuple field's parts another prefix)."""
    tf = tf_module()
    from transformers.modeling_tf_utils import keras

    def flatten(out: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for field_name in fields:
            value = out[field_name]
            if tf.is_tensor(value):
                result[field_name] = value
                continue
            for i, item in enumerate(value):
                parts = split(field_name, item) if split else [("", item)]
                for suffix, tensor in parts:
                    prefix = (rename or {}).get(field_name, field_name)
                    result[f"{prefix}_{i}{suffix}"] = tensor
        return result

    class Flat(keras.Model):
        """The model with flat named outputs."""

        def __init__(self, model: Any) -> None:
            super().__init__(name=f"{name}_flat")
            self.inner = model

        def call(self, x: dict[str, Any], training: bool = False) -> dict[str, Any]:
            return flatten(self.inner(dict(x), training=False, **call_kwargs))

    model = Flat(inner)
    first = model(make_inputs(1, 0))
    randomize(inner)
    outputs = tuple(first)

    def tf_outputs(values: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = model({k: tf.constant(v) for k, v in values.items()}, training=False)
        return [np.asarray(out[k]) for k in outputs]

    dynamic = {n: [1] for n, s in specs.items() if len(s.shape) == 2}
    return CorpusModel(
        name=name,
        family=family,
        model=model,
        input_signature=specs,
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=tf_outputs,
        trainable_params=trainable_count(model),
        sizes=sizes,
        nominal=nominal,
        dynamic_axes=dynamic or None,
        twin=hf_twin(inner, twin[0]) if twin else None,
        twin_inputs=twin[1] if twin else None,
        note=note,
    )


def _token_specs(names: tuple[str, ...]) -> dict[str, Any]:
    tf = tf_module()
    return {n: tf.TensorSpec((None, None), tf.int32, name=n) for n in names}


# --------------------------------------------------------------------------- call variants


@register("hf_bert_attn_probs", family="encoder")
def build_bert_attn_probs() -> CorpusModel:
    from transformers import BertConfig, TFBertModel

    config = BertConfig(**TINY)
    # modeling_tf_bert.py: 2 x (q,k,v,o,intermediate,output) + pooler = 13 linear; embeddings
    # LN + 2 x 2 = 5 layer_norm; 2 exact gelu. output_attentions: each layer's softmax is an
    # output, so neither attention is an SDPA (0 sdpa) and both softmaxes stay (softmax 2)
    nominal = dict(sdpa=0, layer_norm=5, rms_norm=0, gelu=2, linear=13, softmax=2)
    return _flat(
        "hf_bert_attn_probs",
        "encoder",
        TFBertModel(config),
        _token_specs(_BERT_INPUTS),
        text_inputs(_BERT_INPUTS, VOCAB),
        ("last_hidden_state", "pooler_output", "attentions"),
        nominal,
        call_kwargs=dict(output_attentions=True),
        twin=("BertModel", _torch_inputs),
    )


@register("hf_vit_hidden_states", family="vision")
def build_vit_hidden_states() -> CorpusModel:
    from transformers import TFViTModel, ViTConfig

    tf = tf_module()
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
    )
    shape = (3, 32, 32)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"pixel_values": rng.standard_normal((batch_size, *shape)).astype(np.float32)}

    # modeling_tf_vit.py: 2 x (q,k,v,o,intermediate,output) + pooler dense = 13 linear (the
    # patch embedding is a Conv2D); 2 x (before, after) + final layernorm = 5 layer_norm;
    # 2 exact gelu; 2 sdpa. output_hidden_states adds the embeddings and each layer's output
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=2, linear=13)
    return _flat(
        "hf_vit_hidden_states",
        "vision",
        TFViTModel(config),
        {"pixel_values": tf.TensorSpec((None, *shape), tf.float32, name="pixel_values")},
        make_inputs,
        ("last_hidden_state", "pooler_output", "hidden_states"),
        nominal,
        call_kwargs=dict(output_hidden_states=True),
        twin=("ViTModel", pixel_torch_inputs),
        sizes=(),
    )


@register("hf_gpt2_prefill", family="decoder")
def build_gpt2_prefill() -> CorpusModel:
    from transformers import GPT2Config, TFGPT2LMHeadModel

    config = GPT2Config(**GPT2_TINY, use_cache=True)
    names = ("input_ids", "attention_mask")

    def split(field_name: str, layer: Any) -> list[tuple[str, Any]]:
        key, value = tf_module().unstack(layer, num=2, axis=0)  # (2, batch, heads, len, dim)
        return [("_key", key), ("_value", value)]

    # modeling_tf_gpt2.py: 2 x (c_attn, c_proj, c_fc, mlp c_proj) = 8 linear + the tied LM
    # head (wte^T) = 9; 2 x (ln_1, ln_2) + ln_f = 5 layer_norm; gelu_new 2; causal and
    # padding masks: 2 attentions, not SDPA: TF writes the causal mask as w * b - 1e4 * (1 - b)
    # and adds (1 - m) * -1e4, so a left-padded row's first queries (padded keys only, at
    # w - 1e4) weigh the hidden keys too, which is_causal would drop; the rule refuses
    # (patterns/_attention_masks.py `_dominates`) and the 2 softmaxes stay
    nominal = dict(sdpa=0, softmax=2, layer_norm=5, rms_norm=0, gelu=2, linear=9)
    return _flat(
        "hf_gpt2_prefill",
        "decoder",
        TFGPT2LMHeadModel(config),
        _token_specs(names),
        _left_padded(names, VOCAB),
        ("logits", "past_key_values"),
        nominal,
        call_kwargs=dict(use_cache=True),
        twin=("GPT2LMHeadModel", _torch_inputs),
        split=split,
        rename={"past_key_values": "present"},  # optimum's present_<i>_key
    )


# --------------------------------------------------------------------------- config variants


@register("hf_esm_relative_key", family="encoder")
def build_esm_relative_key() -> CorpusModel:
    from transformers import EsmConfig, TFEsmModel

    config = EsmConfig(
        **TINY,
        position_embedding_type="relative_key",
        token_dropout=False,
        emb_layer_norm_before=False,
        pad_token_id=1,
        mask_token_id=2,
    )
    # modeling_tf_esm.py: 2 x (q,k,v,o,ffn1,ffn2) + pooler = 13 linear; 2 x (attention pre-LN,
    # FFN pre-LN) + emb_layer_norm_after = 5 layer_norm; 2 gelu (tf.nn.gelu, exact); 2 sdpa
    # (the relative scores, computed from Q and positions, are added to QK^T before the mask)
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=2, linear=13)
    return _hf_model(
        "hf_esm_relative_key",
        "encoder",
        TFEsmModel,
        config,
        None,  # PyTorch EsmModel differs from TF on padded inputs (hf_esm's note)
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
        note="read by no output: the contact-prediction head and the absolute position table "
        "(built even with relative positions): door A brings them back as parameters no output "
        "depends on, door B cannot",
    )


@register("hf_bert_gelu_fast", family="encoder")
def build_bert_gelu_fast() -> CorpusModel:
    from transformers import BertConfig, TFBertModel

    config = BertConfig(**TINY, hidden_act="gelu_fast")
    # modeling_tf_bert.py: 13 linear (with the pooler); 5 layer_norm; gelu_fast is the tanh
    # GELU (x * 0.7978845608 * (1 + 0.044715 x^2) == sqrt(2/pi) (x + 0.044715 x^3)): 2 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=2, linear=13)
    return _hf_model(
        "hf_bert_gelu_fast",
        "encoder",
        TFBertModel,
        config,
        "BertModel",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("last_hidden_state", "pooler_output"),
    )


@register("hf_roberta_gelu10", family="encoder")
def build_roberta_gelu10() -> CorpusModel:
    from transformers import RobertaConfig, TFRobertaModel

    config = RobertaConfig(**TINY, pad_token_id=1, hidden_act="gelu_10")
    # modeling_tf_roberta.py (BERT's layout): 13 linear; 5 layer_norm; gelu_10 is
    # clip(exact gelu(x), -10, 10): 2 gelu, each followed by its clip; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=2, linear=13)
    return _hf_model(
        "hf_roberta_gelu10",
        "encoder",
        TFRobertaModel,
        config,
        "RobertaModel",
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
        note="PyTorch's ACT2FN has gelu_10 too (ClippedGELUActivation): the twin is the same",
    )


@register("hf_electra_mish", family="encoder")
def build_electra_mish() -> CorpusModel:
    from transformers import ElectraConfig, TFElectraModel

    config = ElectraConfig(**TINY, embedding_size=16, hidden_act="mish")
    # modeling_tf_electra.py: 2 x 6 + embeddings_project = 13 linear; 5 layer_norm;
    # mish (x tanh(softplus x)) is no GELU: 0 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=0, linear=13)
    return _hf_model(
        "hf_electra_mish",
        "encoder",
        TFElectraModel,
        config,
        "ElectraModel",
        nominal,
        inputs=_BERT_INPUTS,
    )


@register("hf_mistral_mqa_leftpad", family="decoder")
def build_mistral_mqa_leftpad() -> CorpusModel:
    from transformers import MistralConfig, TFMistralModel

    names = ("input_ids", "attention_mask")
    config = MistralConfig(**TINY, num_key_value_heads=1, use_cache=False)
    # modeling_tf_mistral.py: 2 x (q,k,v,o,gate,up,down) = 14 linear; 2 x 2 + final norm = 5
    # rms_norm; silu: 0 gelu; rotary, 4 query heads over 1 KV head (repeat_kv), causal and
    # padding: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=0, rms_norm=5, gelu=0, linear=14)
    return _hf_model(
        "hf_mistral_mqa_leftpad",
        "decoder",
        TFMistralModel,
        config,
        "MistralModel",
        nominal,
        inputs=names,
        make_inputs=_left_padded(names, VOCAB),
    )
