"""Transformers TF encoder-decoder models: the whole model, self- and cross-attention.

Each model takes ``input_ids``, ``attention_mask``, ``decoder_input_ids`` and
``decoder_attention_mask``; the export makes dim 1 of all four dynamic (they
are `fxsurgeon.tensorflow.TOKEN_INPUTS`). The decoder sequence is shorter than
the encoder's (``size // 2 + 1``) so that cross-attention scores are not
square and a swapped axis cannot pass unnoticed. ``use_cache`` is off in the
config (the export calls the model without keyword arguments), so the outputs
are the decoder's ``last_hidden_state`` and the ``encoder_last_hidden_state``.

Nominal counts come from the layer structure in
``transformers/models/<m>/modeling_tf_<m>.py``: every attention block is four
Dense (q, k, v, out_proj) and one softmax attention, every feed-forward block
two Dense (fc1, fc2) with the config's activation in between.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import (
    CorpusModel,
    hf_outputs,
    hf_twin,
    randomize,
    register,
    tf_module,
    trainable_count,
)

NAMES = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
OUTPUTS = ("last_hidden_state", "encoder_last_hidden_state")
SIZES = (6, 11)
DEFAULT_LEN = 8

#: the tiny shape every seq2seq config shares: 2 encoder + 2 decoder layers, d_model 32, 4 heads
TINY = dict(
    vocab_size=99,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=37,
    decoder_ffn_dim=37,
    max_position_embeddings=64,
    pad_token_id=1,
    decoder_start_token_id=2,
    use_cache=False,
)


def seq2seq_inputs(vocab_size: int) -> Any:
    """Encoder and decoder ids with padding masks (padding in the last row of each)."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        enc_len = size or DEFAULT_LEN
        dec_len = enc_len // 2 + 1
        rng = np.random.default_rng(seed)
        out = {}
        for prefix, length in (("", enc_len), ("decoder_", dec_len)):
            lengths = rng.integers(max(1, length // 2), length + 1, batch_size)
            lengths[-1] = max(1, length - 2)
            out[f"{prefix}input_ids"] = rng.integers(0, vocab_size, (batch_size, length))
            out[f"{prefix}attention_mask"] = np.arange(length)[None, :] < lengths[:, None]
        return {n: out[n].astype(np.int32) for n in NAMES}

    return make_inputs


def torch_inputs(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The PyTorch twin takes int64 ids and masks under the same names."""
    import torch

    return {k: torch.from_numpy(np.asarray(v, np.int64)) for k, v in inputs.items()}


def _seq2seq(
    name: str, tf_class: str, pt_class: str, config: Any, nominal: dict[str, int]
) -> CorpusModel:
    tf = tf_module()
    import transformers

    model = getattr(transformers, tf_class)(config)
    make_inputs = seq2seq_inputs(config.vocab_size)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    return CorpusModel(
        name=name,
        family="seq2seq",
        model=model,
        input_signature=[tf.TensorSpec((None, None), tf.int32, name=n) for n in NAMES],
        output_names=OUTPUTS,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, OUTPUTS),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        twin=hf_twin(model, pt_class),
        twin_inputs=torch_inputs,
    )


@register("hf_bart", family="seq2seq")
def build_bart() -> CorpusModel:
    """BART: post-LN, learned positions, a LayerNorm on the embeddings of both stacks, exact GELU."""
    from transformers import BartConfig

    config = BartConfig(**TINY, activation_function="gelu")
    # sdpa: enc 2x self + dec 2x(self, cross) = 6
    # linear: enc 2x(q,k,v,o,fc1,fc2) + dec 2x(self qkvo, cross qkvo, fc1, fc2) = 12 + 20 = 32
    # layer_norm: enc (embedding + 2x(self_attn, final)) + dec (embedding + 2x(self, cross, final)) = 5 + 7 = 12
    # gelu: one per fc1 (activation_function="gelu", exact) = 2 enc + 2 dec = 4
    nominal = {"sdpa": 6, "linear": 32, "layer_norm": 12, "rms_norm": 0, "gelu": 4}
    return _seq2seq("hf_bart", "TFBartModel", "BartModel", config, nominal)


@register("hf_marian", family="seq2seq")
def build_marian() -> CorpusModel:
    """Marian (opus-mt settings): post-LN, sinusoidal positions, scaled embeddings, SiLU."""
    from transformers import MarianConfig

    config = MarianConfig(**TINY, activation_function="swish", scale_embedding=True)
    # sdpa: enc 2x self + dec 2x(self, cross) = 6
    # linear: enc 2x(q,k,v,o,fc1,fc2) + dec 2x(self qkvo, cross qkvo, fc1, fc2) = 12 + 20 = 32
    # layer_norm: no embedding LayerNorm; enc 2x(self_attn, final) + dec 2x(self, cross, final) = 4 + 6 = 10
    # gelu: activation_function="swish" (SiLU) = 0
    nominal = {"sdpa": 6, "linear": 32, "layer_norm": 10, "rms_norm": 0, "gelu": 0}
    return _seq2seq("hf_marian", "TFMarianModel", "MarianModel", config, nominal)


@register("hf_pegasus", family="seq2seq")
def build_pegasus() -> CorpusModel:
    """Pegasus: pre-LN with a final LayerNorm per stack, sinusoidal positions, ReLU."""
    from transformers import PegasusConfig

    config = PegasusConfig(**TINY, activation_function="relu", scale_embedding=True)
    # sdpa: enc 2x self + dec 2x(self, cross) = 6
    # linear: enc 2x(q,k,v,o,fc1,fc2) + dec 2x(self qkvo, cross qkvo, fc1, fc2) = 12 + 20 = 32
    # layer_norm: enc (2x(self_attn, final) + layer_norm) + dec (2x(self, cross, final) + layer_norm) = 5 + 7 = 12
    # gelu: activation_function="relu" = 0
    nominal = {"sdpa": 6, "linear": 32, "layer_norm": 12, "rms_norm": 0, "gelu": 0}
    return _seq2seq("hf_pegasus", "TFPegasusModel", "PegasusModel", config, nominal)
