"""April probes: Hugging Face TF decoders exported as a user exports them for generation, the
key/value cache as inputs and outputs (decoder-only models and seq2seq decoder steps).

A cached step is a Keras wrapper that a user writes around the model: flat inputs
``input_ids``, the mask and ``past_<i>_key`` / ``past_<i>_value`` (batch, heads, past, head
dim; past dynamic), flat outputs ``logits`` and ``present_<i>_key`` / ``present_<i>_value``
(optimum's ``decoder_with_past`` layout). ``size`` is the past length; the step feeds
``STEP`` new tokens, so the causal mask is (STEP, past + STEP).

* ``hf_gpt2_kv``: TFGPT2LMHeadModel with ``past_key_values`` (per layer one stacked
  (2, batch, heads, past, head dim) tensor: the wrapper stacks and unstacks it), a padded
  (past + new) mask, positions from ``range(past, past + new)``;
* ``hf_opt_kv``: TFOPTForCausalLM with ``past_key_values``: positions from the mask's
  cumsum cut at the past length, a causal mask concatenated after ``past`` zeros under a
  data-dependent ``if past > 0`` (a tf.cond);
* ``hf_gptj_kv``: TFGPTJForCausalLM with ``past_key_values``: rotary positions from the
  past length, the causal mask sliced out of a constant triangle at ``Lk - Lq``;
* ``hf_mistral_kv``: TFMistralForCausalLM with ``past_key_values``: the TF attention reads
  the cache length as a static shape, so the export keeps it static (the signature's
  DEFAULT_PAST) and the scored sizes are the new tokens' count;
* ``hf_bart_kv``: TFBartForConditionalGeneration's decoder step: the encoder output is an
  input, the cache holds self- and cross-attention keys and values (the cross ones come back
  unchanged: outputs that are inputs);
* ``hf_t5_kv``: TFT5ForConditionalGeneration's decoder step: the relative position bias of
  the last ``new`` queries over ``past + new`` keys, cut with XLA's dynamic_slice after
  the last nonzero cache row (a data-dependent start: the first sequence's last cache row
  is left unfilled, zeros, so the window starts a row earlier than past);
* ``hf_whisper_kv``: TFWhisperForConditionalGeneration's decoder step (pre-LN, learned
  positions from the past length, no padding mask: the causal mask alone).

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import CorpusModel, hf_twin, randomize, register, tf_module, trainable_count
from .hf_text import VOCAB
from .probe_mar_text import GPT2_TINY

#: new tokens per cached step
STEP = 2
#: past lengths scored (the dynamic non-batch dim)
PAST_SIZES = (3, 7)
DEFAULT_PAST = 5
#: new-token counts scored where the past length is static (besides STEP)
STEP_SIZES = (1, 3)
HEADS, HEAD_DIM = 4, 8


def _past_names(layers: int, kinds: tuple[str, ...] = ("key", "value")) -> list[str]:
    return [f"past_{i}_{kind}" for i in range(layers) for kind in kinds]


def _present_names(layers: int, kinds: tuple[str, ...] = ("key", "value")) -> list[str]:
    return [f"present_{i}_{kind}" for i in range(layers) for kind in kinds]


def _step_inputs(
    layers: int,
    vocab: int,
    *,
    encoder: int = 0,
    kinds: tuple[str, ...] = ("key", "value"),
    unfilled: int = 0,
    static_past: bool = False,
) -> Callable[..., dict[str, np.ndarray]]:
    """``input_ids`` (STEP new tokens), a (past + STEP) mask with padding at the start of the
    last row (left-padded generation), the cache; with ``encoder`` a hidden width, an encoder
    output of ``past + 2`` positions and its mask (the cross cache is as long). ``unfilled``
    last rows of the first sequence's self-attention cache are zeros (a preallocated cache
    not filled yet, which T5 reads to place its position bias). ``size`` is the past length,
    or with ``static_past`` (a model whose Python reads the cache length as a static shape:
    the export keeps it static at DEFAULT_PAST) the number of new tokens."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        past = DEFAULT_PAST if static_past else size or DEFAULT_PAST
        step = (size or STEP) if static_past else STEP
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray] = {}
        if encoder:
            source = past + 2
            out["encoder_hidden_states"] = rng.standard_normal(
                (batch_size, source, encoder)
            ).astype(np.float32)
            mask = np.ones((batch_size, source), np.int32)
            mask[-1, source - 2 :] = 0
            out["attention_mask"] = mask
            out["decoder_input_ids"] = rng.integers(0, vocab, (batch_size, step)).astype(np.int32)
        else:
            out["input_ids"] = rng.integers(0, vocab, (batch_size, step)).astype(np.int32)
            mask = np.ones((batch_size, past + step), np.int32)
            mask[-1, :2] = 0
            out["attention_mask"] = mask
        for name in _past_names(layers, kinds):
            length = past + 2 if "cross" in name else past
            out[name] = rng.standard_normal((batch_size, HEADS, length, HEAD_DIM)).astype(
                np.float32
            )
            if unfilled and "cross" not in name:
                out[name][0, :, past - unfilled :] = 0.0
        return out

    return make_inputs


def _cache_step(
    name: str,
    family: str,
    inner: Any,
    pt_class: str,
    *,
    layers: int,
    inputs: tuple[str, ...],
    kinds: tuple[str, ...],
    call: Callable[[Any, dict[str, Any], list[Any]], Any],
    unpack: Callable[[Any], list[Any]],
    nominal: dict[str, int],
    encoder: int = 0,
    unfilled: int = 0,
    static_past: bool = False,
) -> CorpusModel:
    """Wrap ``inner`` as a cached step (module docstring); ``call(inner, inputs, past)`` runs
    it on the per-layer cache tuples, ``unpack`` turns one layer of its new cache into the
    ``kinds`` tensors. ``static_past``: the signature gives the cache length (DEFAULT_PAST),
    still asked dynamic (``dynamic_axes``), for a model whose Python reads it as a static
    shape (the export keeps static what it must); the scored sizes are new-token counts."""
    tf = tf_module()
    from transformers.modeling_tf_utils import keras

    unordered = _step_inputs(
        layers, VOCAB, encoder=encoder, kinds=kinds, unfilled=unfilled, static_past=static_past
    )
    past_names = _past_names(layers, kinds)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        values = unordered(batch_size, seed, size)
        return {n: values[n] for n in (*inputs, *past_names)}  # the signature's order

    class CachedStep(keras.Model):
        """One generation step on the cache, with flat named inputs and outputs."""

        def __init__(self, model: Any) -> None:
            super().__init__(name=f"{name}_step")
            self.inner = model

        def call(self, x: dict[str, Any], training: bool = False) -> dict[str, Any]:
            past = [[x[f"past_{i}_{kind}"] for kind in kinds] for i in range(layers)]
            out = call(self.inner, {k: x[k] for k in inputs}, past)
            result = {"logits": out.logits}
            for i, layer in enumerate(out.past_key_values):
                for kind, tensor in zip(kinds, unpack(layer), strict=True):
                    result[f"present_{i}_{kind}"] = tensor
            return result

    model = CachedStep(inner)
    model(make_inputs(1, 0))
    randomize(inner)
    outputs = ("logits", *_present_names(layers, kinds))
    specs: dict[str, Any] = {}
    for n in inputs:
        if n == "encoder_hidden_states":
            specs[n] = tf.TensorSpec((None, None, encoder), tf.float32, name=n)
        else:
            specs[n] = tf.TensorSpec((None, None), tf.int32, name=n)
    past_size = DEFAULT_PAST if static_past else None
    for n in past_names:
        specs[n] = tf.TensorSpec((None, HEADS, past_size, HEAD_DIM), tf.float32, name=n)
    dynamic = {n: [2] for n in past_names}
    if encoder:
        dynamic["encoder_hidden_states"] = [1]

    def tf_outputs(values: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = model({k: tf.constant(v) for k, v in values.items()}, training=False)
        return [np.asarray(out[k]) for k in outputs]

    return CorpusModel(
        name=name,
        family=family,
        model=model,
        input_signature=specs,
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=tf_outputs,
        trainable_params=trainable_count(model),
        sizes=STEP_SIZES if static_past else PAST_SIZES,
        nominal=nominal,
        dynamic_axes=dynamic,
        twin=hf_twin(inner, pt_class),
        twin_inputs=_twin_cache(inputs, layers, kinds),
    )


def _twin_cache(
    inputs: tuple[str, ...], layers: int, kinds: tuple[str, ...]
) -> Callable[[dict[str, np.ndarray]], dict[str, Any]]:
    """The PyTorch twin's inputs: int64 ids and masks, the cache as a legacy tuple per layer
    (self key, self value[, cross key, cross value])."""

    def twin_inputs(values: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        feed: dict[str, Any] = {}
        for n in inputs:
            v = torch.from_numpy(np.asarray(values[n]))
            feed[n] = v if v.is_floating_point() else v.long()
        if "encoder_hidden_states" in feed:
            feed["encoder_outputs"] = (feed.pop("encoder_hidden_states"),)
        feed["past_key_values"] = tuple(
            tuple(torch.from_numpy(values[f"past_{i}_{kind}"]) for kind in kinds)
            for i in range(layers)
        )
        return feed

    return twin_inputs


# --------------------------------------------------------------------------- decoder-only


@register("hf_gpt2_kv", family="decoder")
def build_gpt2_kv() -> CorpusModel:
    from transformers import GPT2Config, TFGPT2LMHeadModel

    config = GPT2Config(**GPT2_TINY, use_cache=True)

    def call(inner: Any, x: dict[str, Any], past: list[Any]) -> Any:
        tf = tf_module()
        stacked = [tf.stack(layer, axis=0) for layer in past]
        return inner(x, past_key_values=stacked, use_cache=True, training=False)

    def unpack(layer: Any) -> list[Any]:
        tf = tf_module()
        return tf.unstack(layer, num=2, axis=0)

    # modeling_tf_gpt2.py: 2 x (c_attn (q, k, v in one Conv1D), c_proj, c_fc, mlp c_proj) = 8
    # linear + the tied LM head (wte^T) = 9; 2 x (ln_1, ln_2) + ln_f = 5 layer_norm; gelu_new 2;
    # causal (STEP, past + STEP) mask and the padding mask: 2 attentions
    # (causal band and padding both fill -1e4: not SDPA, exact on left padding only unfused:
    # patterns/_attention_masks.py `_dominates`) so 0 sdpa, its 2 softmaxes kept
    nominal = dict(sdpa=0, softmax=2, layer_norm=5, rms_norm=0, gelu=2, linear=9)
    return _cache_step(
        "hf_gpt2_kv",
        "decoder",
        TFGPT2LMHeadModel(config),
        "GPT2LMHeadModel",
        layers=2,
        inputs=("input_ids", "attention_mask"),
        kinds=("key", "value"),
        call=call,
        unpack=unpack,
        nominal=nominal,
    )


def _pairs(inner: Any, x: dict[str, Any], past: list[Any]) -> Any:
    return inner(x, past_key_values=[tuple(layer) for layer in past], use_cache=True)


def _as_list(layer: Any) -> list[Any]:
    return list(layer)


@register("hf_opt_kv", family="decoder")
def build_opt_kv() -> CorpusModel:
    from transformers import OPTConfig, TFOPTForCausalLM

    config = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        ffn_dim=37,
        max_position_embeddings=64,
        word_embed_proj_dim=16,
        use_cache=True,
    )
    # modeling_tf_opt.py: hf_opt_lm's counts: 2 x (q,k,v,out,fc1,fc2) + project_in + project_out
    # + the tied LM head = 15 linear; 5 layer_norm; relu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=0, linear=15)
    return _cache_step(
        "hf_opt_kv",
        "decoder",
        TFOPTForCausalLM(config),
        "OPTForCausalLM",
        layers=2,
        inputs=("input_ids", "attention_mask"),
        kinds=("key", "value"),
        call=_pairs,
        unpack=_as_list,
        nominal=nominal,
    )


@register("hf_gptj_kv", family="decoder")
def build_gptj_kv() -> CorpusModel:
    from transformers import GPTJConfig, TFGPTJForCausalLM

    config = GPTJConfig(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=HEADS,
        n_inner=37,
        n_positions=64,
        rotary_dim=4,
        use_cache=True,
    )
    # modeling_tf_gptj.py: hf_gptj's 12 linear + lm_head (its own Dense, with a bias) = 13;
    # 3 layer_norm; 2 gelu_new; the causal mask is a slice of the constant [1, 1, 64, 64]
    # lower triangle, bias[:, :, Lk - Lq : Lk, :Lk]: over a cache, rows past + i: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=3, rms_norm=0, gelu=2, linear=13)
    return _cache_step(
        "hf_gptj_kv",
        "decoder",
        TFGPTJForCausalLM(config),
        "GPTJForCausalLM",
        layers=2,
        inputs=("input_ids", "attention_mask"),
        kinds=("key", "value"),
        call=_pairs,
        unpack=_as_list,
        nominal=nominal,
    )


@register("hf_mistral_kv", family="decoder")
def build_mistral_kv() -> CorpusModel:
    from transformers import MistralConfig, TFMistralForCausalLM

    config = MistralConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        intermediate_size=37,
        max_position_embeddings=64,
        use_cache=True,
    )
    # modeling_tf_mistral.py: hf_mistral's 14 linear + lm_head = 15; 5 rms_norm; silu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=0, rms_norm=5, gelu=0, linear=15)
    # transformers' TFMistralAttention adds the cache length as a static shape
    # (kv_seq_len += past_key_value[0].shape[-2]): the export keeps the keys' cache dim at
    # DEFAULT_PAST (fxsurgeon/frontdoor/static_dims.py), the rest dynamic
    return _cache_step(
        "hf_mistral_kv",
        "decoder",
        TFMistralForCausalLM(config),
        "MistralForCausalLM",
        layers=2,
        inputs=("input_ids", "attention_mask"),
        kinds=("key", "value"),
        call=_pairs,
        unpack=_as_list,
        nominal=nominal,
        static_past=True,
    )


# --------------------------------------------------------------------------- seq2seq decoder steps

_CROSS = ("key", "value", "cross_key", "cross_value")
_STEP_INPUTS = ("decoder_input_ids", "encoder_hidden_states", "attention_mask")


def _decoder_step(inner: Any, x: dict[str, Any], past: list[Any]) -> Any:
    return inner(
        None,  # no input_ids: the encoder does not run
        decoder_input_ids=x["decoder_input_ids"],
        encoder_outputs=(x["encoder_hidden_states"],),
        attention_mask=x["attention_mask"],
        past_key_values=[tuple(layer) for layer in past],
        use_cache=True,
        training=False,
    )


@register("hf_bart_kv", family="seq2seq")
def build_bart_kv() -> CorpusModel:
    from transformers import BartConfig, TFBartForConditionalGeneration

    from .hf_seq2seq import TINY as SEQ2SEQ_TINY

    config = BartConfig(**dict(SEQ2SEQ_TINY, use_cache=True), activation_function="gelu")
    # modeling_tf_bart.py, the decoder only (the encoder output is an input): 2 x (self q,k,v,o
    # + cross q,o + fc1, fc2) = 16 + the tied LM head = 17 linear (the cross k, v projections
    # are not run: the cache holds them); layernorm_embedding + 2 x 3 = 7 layer_norm; 2 gelu;
    # self (causal over past) and cross attention: 4 sdpa
    nominal = dict(sdpa=4, layer_norm=7, rms_norm=0, gelu=2, linear=17)
    return _cache_step(
        "hf_bart_kv",
        "seq2seq",
        TFBartForConditionalGeneration(config),
        "BartForConditionalGeneration",
        layers=2,
        inputs=_STEP_INPUTS,
        kinds=_CROSS,
        call=_decoder_step,
        unpack=_as_list,
        nominal=nominal,
        encoder=32,
    )


@register("hf_t5_kv", family="seq2seq")
def build_t5_kv() -> CorpusModel:
    from transformers import T5Config, TFT5ForConditionalGeneration

    config = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=HEAD_DIM,
        d_ff=37,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=HEADS,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        use_cache=True,
    )
    # modeling_tf_t5.py, the decoder only: 2 x (self q,k,v,o + cross q,o (k, v cached) +
    # wi_0, wi_1, wo) = 18 + the tied LM head = 19 linear; 2 x 3 + final_layer_norm = 7
    # rms_norm; gated-gelu (gelu_new): 2 gelu; self attention with the relative bias of the
    # last STEP queries, cross attention: 4 sdpa
    nominal = dict(sdpa=4, layer_norm=0, rms_norm=7, gelu=2, linear=19)
    return _cache_step(
        "hf_t5_kv",
        "seq2seq",
        TFT5ForConditionalGeneration(config),
        "T5ForConditionalGeneration",
        layers=2,
        inputs=_STEP_INPUTS,
        kinds=_CROSS,
        call=_decoder_step,
        unpack=_as_list,
        nominal=nominal,
        encoder=32,
        unfilled=1,
    )


def _whisper_step(inner: Any, x: dict[str, Any], past: list[Any]) -> Any:
    return inner(
        None,  # no input_features: the encoder does not run
        decoder_input_ids=x["decoder_input_ids"],
        encoder_outputs=(x["encoder_hidden_states"],),
        past_key_values=[tuple(layer) for layer in past],
        use_cache=True,
        training=False,
    )


@register("hf_whisper_kv", family="audio")
def build_whisper_kv() -> CorpusModel:
    from transformers import TFWhisperForConditionalGeneration, WhisperConfig

    config = WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=8,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_source_positions=16,
        max_target_positions=64,
        activation_function="gelu",
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=2,
        use_cache=True,
    )
    # modeling_tf_whisper.py, the decoder only: 2 x (self q,k,v,o + cross q,o (k, v cached) +
    # fc1, fc2) = 16 + proj_out (the token table^T) = 17 linear; 2 x 3 + layer_norm = 7
    # layer_norm; 2 gelu; causal self (over past + new) and cross attention: 4 sdpa
    nominal = dict(sdpa=4, layer_norm=7, rms_norm=0, gelu=2, linear=17)
    return _cache_step(
        "hf_whisper_kv",
        "audio",
        TFWhisperForConditionalGeneration(config),
        "WhisperForConditionalGeneration",
        layers=2,
        inputs=("decoder_input_ids", "encoder_hidden_states"),
        kinds=_CROSS,
        call=_whisper_step,
        unpack=_as_list,
        nominal=nominal,
        encoder=32,
    )
