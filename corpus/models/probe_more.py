"""More probes: keras.applications MobileNetV3Small, DenseNet121, EfficientNetB0, a frozen
MobileNetV2 base under a new head (transfer learning); Hugging
Face Whisper, OpenAI GPT, BlenderbotSmall, XLM-RoBERTa, mT5 (tiny configs, the same helpers).

The CNNs follow `keras_apps` (``weights=None``, 10 classes, 32x32, random weights,
``linear`` counts the Dense layers only). The transformers models follow
`hf_text` / `hf_seq2seq`; the ``nominal`` counts follow the TF modelling source,
one comment per builder.
"""

from __future__ import annotations

import importlib
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
from .hf_audio import torch_inputs as _audio_torch_inputs
from .hf_seq2seq import TINY as SEQ2SEQ_TINY
from .hf_seq2seq import _seq2seq
from .hf_text import TINY, _hf_model
from .keras_apps import CLASSES, _application, image_model

# --------------------------------------------------------------------------- keras.applications


@register("keras_mobilenet_v3_small", family="cnn")
def build_mobilenet_v3_small() -> CorpusModel:
    """MobileNetV3Small: hard-swish, squeeze-excite with hard-sigmoid (ReLU6(x + 3) / 6),
    Rescaling(1/127.5, -1) preprocessing kept (include_preprocessing=True, the default)."""
    # linear=0 (keras/src/applications/mobilenet_v3.py): the head is GlobalAveragePooling2D
    # (keepdims) -> Conv2D "conv_2" 1x1 -> hard_swish -> Conv2D "logits" 1x1 -> Flatten, and
    # _se_block's squeeze/excite are 1x1 Conv2D: no Dense anywhere. 32x32 is its minimum side.
    return _application("keras_mobilenet_v3_small", "MobileNetV3Small", 32, {"linear": 0})


@register("keras_densenet121", family="cnn")
def build_densenet121() -> CorpusModel:
    # linear=1: the "predictions" Dense head (keras/src/applications/densenet.py); dense blocks
    # (6, 12, 24, 16) are BN -> ReLU -> 1x1 Conv -> BN -> ReLU -> 3x3 Conv, concatenated.
    return _application("keras_densenet121", "DenseNet121", 32, {"linear": 1})


@register("keras_efficientnet_b0", family="cnn")
def build_efficientnet_b0() -> CorpusModel:
    """EfficientNetB0 (v1) with its preprocessing: Rescaling(1/255), Normalization (ImageNet
    mean/variance, eager constants), Rescaling(1/sqrt(std)); swish, squeeze-excite."""
    # linear=1: the "predictions" Dense head (keras/src/applications/efficientnet.py); the
    # squeeze-excite "se_reduce"/"se_expand" are 1x1 Conv2D, not Dense.
    corpus_model = _application("keras_efficientnet_b0", "EfficientNetB0", 32, {"linear": 1})
    # Keras 3 Normalization reads eager constants ``mean``/``variance`` computed from its
    # non-trainable adapt_mean/adapt_variance (zeros/ones; plus an int64 scalar ``count``) at
    # build time: `randomize` changes those variables (variance negative) but not what the
    # layer reads. ImageNet's statistics instead, as weights="imagenet" has them, made the
    # layer's constants by finalize_state()
    norm = next(
        layer for layer in corpus_model.model.layers if type(layer).__name__ == "Normalization"
    )
    norm.adapt_mean.assign(
        np.array([0.485, 0.456, 0.406], np.float32).reshape(norm.adapt_mean.shape)
    )
    norm.adapt_variance.assign(
        np.array([0.229, 0.224, 0.225], np.float32).reshape(norm.adapt_variance.shape) ** 2
    )
    norm.finalize_state()
    return corpus_model


# --------------------------------------------------------------------------- transformers

WHISPER_NAMES = ("input_features", "decoder_input_ids")
WHISPER_MELS = 8
WHISPER_FRAMES = 32  # = 2 x max_source_positions: conv2 has stride 2
WHISPER_SIZES = (5, 9)
WHISPER_DEFAULT = 7


def _whisper_inputs(vocab_size: int) -> Any:
    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {
            "input_features": rng.standard_normal(
                (batch_size, WHISPER_MELS, WHISPER_FRAMES)
            ).astype(np.float32),
            "decoder_input_ids": rng.integers(
                0, vocab_size, (batch_size, size or WHISPER_DEFAULT)
            ).astype(np.int32),
        }

    return make_inputs


@register("hf_whisper", family="audio")
def build_whisper() -> CorpusModel:
    """Whisper: 2 Conv1D (+ exact GELU) on log-mel frames, pre-LN encoder-decoder, learned
    decoder positions, encoder positions a fixed-length table (non-trainable in TF)."""
    # modeling_tf_whisper.py:
    # sdpa: enc 2x self + dec 2x(self, cross) = 6 (decoder causal, no decoder mask input)
    # linear: enc 2x(q,k,v,o,fc1,fc2) + dec 2x(self qkvo, cross qkvo, fc1, fc2) = 12 + 20 = 32
    #   (k_proj has no bias)
    # layer_norm: enc 2x(self_attn, final) + layer_norm + dec 2x(self, cross, final) + layer_norm
    #   = 5 + 7 = 12 (pre-LN)
    # gelu: TFWhisperEncoder's keras.activations.gelu after conv1 and conv2 (exact) 2 +
    #   activation_function="gelu" in 2 enc + 2 dec feed-forwards = 6
    nominal = {"sdpa": 6, "linear": 32, "layer_norm": 12, "rms_norm": 0, "gelu": 6}
    outputs = ("last_hidden_state", "encoder_last_hidden_state")
    note = (
        "encoder embed_positions (16 x 32) is frozen by its layer (trainable=False): "
        "not in model.trainable_variables, though its tf.Variable.trainable stays True"
    )
    return whisper("hf_whisper", "TFWhisperModel", "WhisperModel", outputs, nominal, note)


def whisper(
    name: str,
    tf_class: str,
    pt_class: str,
    outputs: tuple[str, ...],
    nominal: dict[str, int],
    note: str = "",
) -> CorpusModel:
    """A tiny Whisper model of transformers class `tf_class` (log-mel frames, decoder ids)."""
    tf = tf_module()
    import transformers
    from transformers import WhisperConfig

    config = WhisperConfig(
        vocab_size=99,
        num_mel_bins=WHISPER_MELS,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_source_positions=WHISPER_FRAMES // 2,
        max_target_positions=64,
        activation_function="gelu",
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=2,
        use_cache=False,
    )
    make_inputs = _whisper_inputs(config.vocab_size)
    model = getattr(transformers, tf_class)(config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    return CorpusModel(
        name=name,
        family="audio",
        model=model,
        input_signature=[
            tf.TensorSpec((None, WHISPER_MELS, WHISPER_FRAMES), tf.float32, name="input_features"),
            tf.TensorSpec((None, None), tf.int32, name="decoder_input_ids"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=WHISPER_SIZES,
        nominal=nominal,
        twin=hf_twin(model, pt_class),
        twin_inputs=_audio_torch_inputs,
        note=note,
    )


@register("hf_openai_gpt", family="decoder")
def build_openai_gpt() -> CorpusModel:
    from transformers import OpenAIGPTConfig, TFOpenAIGPTModel

    config = OpenAIGPTConfig(
        vocab_size=TINY["vocab_size"], n_positions=64, n_embd=32, n_layer=2, n_head=4
    )
    # modeling_tf_openai.py: TFConv1D (x @ W + b) c_attn (q, k, v in one), c_proj, mlp c_fc,
    # c_proj: 2 x 4 = 8 linear; post-LN ln_1, ln_2: 2 x 2 = 4 layer_norm; TFMLP's
    # get_tf_activation("gelu") (exact): 2 gelu; causal + padding mask: 2 attentions
    # (causal band and padding both fill -1e4: not SDPA, exact on left padding only unfused:
    # patterns/_attention_masks.py `_dominates`) so 0 sdpa, its 2 softmaxes kept
    nominal = dict(sdpa=0, softmax=2, layer_norm=4, gelu=2, linear=8)
    return _hf_model(
        "hf_openai_gpt", "decoder", TFOpenAIGPTModel, config, "OpenAIGPTModel", nominal
    )


@register("hf_blenderbot_small", family="seq2seq")
def build_blenderbot_small() -> CorpusModel:
    """BlenderbotSmall: post-LN, learned positions, layernorm_embedding on both stacks (the
    decoder's on the token embeddings before the positions are added), exact GELU."""
    from transformers import BlenderbotSmallConfig

    config = BlenderbotSmallConfig(**SEQ2SEQ_TINY, activation_function="gelu")
    # modeling_tf_blenderbot_small.py:
    # sdpa: enc 2x self + dec 2x(self, cross) = 6
    # linear: enc 2x(q,k,v,o,fc1,fc2) + dec 2x(self qkvo, cross qkvo, fc1, fc2) = 12 + 20 = 32
    # layer_norm: enc (layernorm_embedding + 2x(self_attn, final)) + dec (layernorm_embedding
    #   + 2x(self, encoder_attn, final)) = 5 + 7 = 12
    # gelu: one per fc1 = 2 enc + 2 dec = 4
    nominal = {"sdpa": 6, "linear": 32, "layer_norm": 12, "rms_norm": 0, "gelu": 4}
    return _seq2seq(
        "hf_blenderbot_small", "TFBlenderbotSmallModel", "BlenderbotSmallModel", config, nominal
    )


@register("hf_xlm_roberta", family="encoder")
def build_xlm_roberta() -> CorpusModel:
    from transformers import TFXLMRobertaModel, XLMRobertaConfig

    config = XLMRobertaConfig(**TINY, pad_token_id=1)
    # modeling_tf_xlm_roberta.py (RoBERTa's layout): 2 x (q,k,v,o,intermediate,output) +
    # pooler = 13 linear; embeddings LN + 2 x 2 = 5 layer_norm; 2 exact gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_xlm_roberta",
        "encoder",
        TFXLMRobertaModel,
        config,
        "XLMRobertaModel",
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
    )


@register("hf_mt5", family="seq2seq")
def build_mt5() -> CorpusModel:
    """mT5: T5 v1.1's layout (RMSNorm, shared bucketed relative-position bias per stack,
    gated-GELU feed-forward, no biases) in its own classes (TFMT5Model)."""
    from transformers import MT5Config

    config = MT5Config(
        vocab_size=TINY["vocab_size"],
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
        decoder_start_token_id=0,
        pad_token_id=0,
        use_cache=False,
    )
    # modeling_tf_mt5.py subclasses modeling_tf_t5.py: as hf_t5, sdpa enc 2 + dec 2 x 2 = 6;
    # rms_norm enc 2 x 2 + final, dec 2 x 3 + final = 12; linear enc 2 x 7 + dec 2 x 11 = 36;
    # gelu: one per gated feed-forward (gelu_new) = 4
    nominal = {"sdpa": 6, "linear": 36, "layer_norm": 0, "rms_norm": 12, "gelu": 4}
    return _seq2seq("hf_mt5", "TFMT5Model", "MT5Model", config, nominal)


@register("keras_transfer_frozen", family="cnn")
def build_transfer_frozen() -> CorpusModel:
    """Transfer learning as the Keras guide writes it: a MobileNetV2 base with
    ``base.trainable = False`` (every Conv and BatchNorm frozen), then a new head."""
    # linear=1: the new Dense head; the frozen base's convolutions are not counted.
    tf_module()  # first: the safe import order
    keras = importlib.import_module("keras")
    shape = (32, 32, 3)
    base = keras.applications.MobileNetV2(weights=None, input_shape=shape, include_top=False)
    base.trainable = False
    image = keras.Input(shape, name="image")
    features = keras.layers.GlobalAveragePooling2D(name="pool")(base(image, training=False))
    logits = keras.layers.Dense(CLASSES, name="head")(features)
    model = keras.Model(image, logits, name="transfer_frozen")
    return image_model("keras_transfer_frozen", model, shape, {"linear": 1})
