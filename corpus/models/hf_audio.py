"""Transformers TF speech models: Wav2Vec2 and HuBERT encoders, Speech2Text encoder-decoder.

Wav2Vec2/HuBERT take raw audio ``input_values`` (batch, samples); the samples
dim is dynamic (``dynamic_axes``) and scored at two lengths. Speech2Text takes
filter-bank ``input_features`` (batch, frames, features) with a frame mask
and decoder ids; the frames dim is dynamic, the decoder length follows it.

Nominal counts come from ``transformers/models/<m>/modeling_tf_<m>.py``;
convolutions are not counted, nor the feature encoder's GroupNorm (one, on the
first conv layer, ``feat_extract_norm="group"``). ``gelu`` counts every exact
GELU: the feature encoder's conv activations, the positional conv embedding's
and the feed-forward's.
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

AUDIO_SIZES = (1600, 2400)
AUDIO_DEFAULT = 2000


def torch_inputs(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Float arrays as they are; ids and masks as int64."""
    import torch

    return {
        k: torch.from_numpy(
            np.asarray(v, np.int64) if v.dtype.kind in "iub" else np.ascontiguousarray(v)
        )
        for k, v in inputs.items()
    }


def _wave_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input_values": rng.standard_normal((batch_size, size or AUDIO_DEFAULT)).astype(np.float32)
    }


def _wave_config(config_class: Any) -> Any:
    # 3 conv layers, strides 5*2*2 = 20: 1600 samples -> 79 frames; 2 layers, hidden 32, 4 heads
    return config_class(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 2, 2),
        conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="group",
        feat_extract_activation="gelu",
        hidden_act="gelu",
        do_stable_layer_norm=False,
        vocab_size=32,
    )


def _wave(
    name: str, tf_class: str, pt_class: str, config: Any, outputs: tuple[str, ...]
) -> CorpusModel:
    tf = tf_module()
    import transformers

    model = getattr(transformers, tf_class)(config)
    model(_wave_inputs(1, 0), training=False)
    randomize(model)
    # sdpa: 2 layers x 1 = 2
    # linear: feature projection 1 + 2 x (q, k, v, out_proj, intermediate_dense, output_dense) = 13
    # layer_norm: feature projection 1 + encoder 1 + 2 x (layer_norm, final_layer_norm) = 6 (post-LN layout)
    # gelu: 3 feature-encoder convs + positional conv 1 + 2 feed-forwards = 6
    nominal = {"sdpa": 2, "linear": 13, "layer_norm": 6, "rms_norm": 0, "gelu": 6}
    return CorpusModel(
        name=name,
        family="audio",
        model=model,
        input_signature=[tf.TensorSpec((None, AUDIO_DEFAULT), tf.float32, name="input_values")],
        output_names=outputs,
        make_inputs=_wave_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=AUDIO_SIZES,
        nominal=nominal,
        dynamic_axes={"input_values": [1]},
        twin=hf_twin(model, pt_class),
        twin_inputs=torch_inputs,
        note="GroupNorm (feature encoder conv 0) and a weight-normed grouped positional conv are not counted",
    )


@register("hf_wav2vec2", family="audio")
def build_wav2vec2() -> CorpusModel:
    from transformers import Wav2Vec2Config

    return _wave(
        "hf_wav2vec2",
        "TFWav2Vec2Model",
        "Wav2Vec2Model",
        _wave_config(Wav2Vec2Config),
        ("last_hidden_state", "extract_features"),
    )


@register("hf_hubert", family="audio")
def build_hubert() -> CorpusModel:
    from transformers import HubertConfig

    return _wave(
        "hf_hubert",
        "TFHubertModel",
        "HubertModel",
        _wave_config(HubertConfig),
        ("last_hidden_state",),
    )


S2T_NAMES = ("input_features", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
S2T_SIZES = (24, 40)
S2T_DEFAULT = 32


def _s2t_inputs(vocab_size: int, features: int) -> Any:
    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        frames = size or S2T_DEFAULT
        dec_len = frames // 4 + 1
        rng = np.random.default_rng(seed)
        out = {
            "input_features": rng.standard_normal((batch_size, frames, features)).astype(np.float32)
        }
        for key, length in (("attention_mask", frames), ("decoder_attention_mask", dec_len)):
            lengths = rng.integers(max(1, length // 2), length + 1, batch_size)
            lengths[-1] = max(1, length - 2)
            out[key] = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
        out["decoder_input_ids"] = rng.integers(0, vocab_size, (batch_size, dec_len)).astype(
            np.int32
        )
        return {n: out[n] for n in S2T_NAMES}

    return make_inputs


@register("hf_speech2text", family="audio")
def build_speech2text() -> CorpusModel:
    """Speech2Text: conv subsampler (2 strided Conv1D + GLU), pre-LN encoder-decoder, ReLU."""
    # sdpa: enc 2x self + dec 2x(self, cross) = 6
    # linear: enc 2x(q,k,v,o,fc1,fc2) + dec 2x(self qkvo, cross qkvo, fc1, fc2) = 12 + 20 = 32
    # layer_norm: enc (2x(self_attn, final) + layer_norm) + dec (2x(self, cross, final) + layer_norm) = 5 + 7 = 12
    # gelu: activation_function="relu" (the subsampler's GLU is not a GELU) = 0
    nominal = {"sdpa": 6, "linear": 32, "layer_norm": 12, "rms_norm": 0, "gelu": 0}
    outputs = ("last_hidden_state", "encoder_last_hidden_state")
    return speech2text("hf_speech2text", "TFSpeech2TextModel", "Speech2TextModel", outputs, nominal)


def speech2text(
    name: str, tf_class: str, pt_class: str, outputs: tuple[str, ...], nominal: dict[str, int]
) -> CorpusModel:
    """A tiny Speech2Text model of transformers class `tf_class` (features, masks, decoder ids)."""
    tf = tf_module()
    import transformers
    from transformers import Speech2TextConfig

    config = Speech2TextConfig(
        vocab_size=99,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        conv_channels=16,
        input_feat_per_channel=16,
        max_source_positions=64,
        max_target_positions=64,
        activation_function="relu",
        scale_embedding=True,
        use_cache=False,
    )
    make_inputs = _s2t_inputs(config.vocab_size, config.input_feat_per_channel)
    model = getattr(transformers, tf_class)(config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    return CorpusModel(
        name=name,
        family="audio",
        model=model,
        input_signature=[
            tf.TensorSpec(
                (None, S2T_DEFAULT, config.input_feat_per_channel),
                tf.float32,
                name="input_features",
            ),
            tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
            tf.TensorSpec((None, None), tf.int32, name="decoder_input_ids"),
            tf.TensorSpec((None, None), tf.int32, name="decoder_attention_mask"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=S2T_SIZES,
        nominal=nominal,
        dynamic_axes={"input_features": [1]},
        twin=hf_twin(model, pt_class),
        twin_inputs=torch_inputs,
    )
