"""March task-head probes: Hugging Face TF heads and full models outside the corpus, built as a
new user would (tiny configs, every variable randomised, the helpers of `hf_text` et al.).

* ``hf_whisper_lm``: TFWhisperForConditionalGeneration: hf_whisper plus ``proj_out``, the
  logits by the decoder's token table (tied, no bias);
* ``hf_albert_pretraining``: TFAlbertForPreTraining: the MLM head (Dense, gelu_new,
  LayerNorm, the tied embedding-size decoder plus a bias) and the sentence-order head;
* ``hf_mobilebert_pretraining``: TFMobileBertForPreTraining: the MLM decoder is one matmul
  by ``concat([transpose(word_embeddings), dense], 0)`` (embedding_size < hidden_size);
* ``hf_xlnet_lm``: TFXLNetLMHeadModel: hf_xlnet plus the tied ``lm_loss`` (word_embedding^T
  and a bias);
* ``hf_blip_itm``: TFBlipForImageTextRetrieval (ITM head): the BLIP ViT, the BLIP text
  encoder cross-attending to every image token, a 2-unit Dense on the [CLS] state;
* ``hf_groupvit``: TFGroupViTModel: hf_groupvit_vision's tower, a CLIP-like causal text
  tower pooled at the argmax id, projection MLPs with a BatchNormalization (Dense, BN, ReLU,
  Dense), L2 normalisation and ``exp(logit_scale)`` similarity logits;
* ``hf_efficientformer_teacher``: TFEfficientFormerForImageClassificationWithTeacher: the
  mean over tokens into a classifier and a distillation classifier, and their average;
* ``hf_marian_mt``: TFMarianMTModel: logits by the shared table (tied) plus
  ``final_logits_bias``, a non-trainable TF variable;
* ``hf_opt_lm``: TFOPTForCausalLM: project_out to word_embed_proj_dim, then the tied table;
* ``hf_roformer_mlm``: TFRoFormerForMaskedLM: the MLM transform to embedding_size and the
  tied word-embedding decoder plus a bias;
* ``hf_layoutlmv3_qa``: TFLayoutLMv3ForQuestionAnswering: hf_layoutlmv3 with the
  classification head (Dense + tanh, out_proj) on every token, split into start and end;
* ``hf_cvt_cls``: TFCvtForImageClassification: the last stage's CLS token through a
  LayerNorm into the classifier;
* ``hf_layoutlmv3_visual_tokcls``: TFLayoutLMv3ForTokenClassification with
  ``visual_embed=True``: the page image as patches (Conv2D, a CLS token, learned positions,
  a LayerNorm) appended to the text tokens, a fixed visual bbox grid, the relative 1-D and
  2-D biases over both, logits on the text tokens;
* ``hf_blip_cosine``: TFBlipForImageTextRetrieval with ``use_itm_head=False`` (a Keras
  wrapper passes it): the image and text [CLS] states projected, each
  ``tf.linalg.normalize``-d, and the image x text cosine-similarity matrix.

The ``nominal`` counts follow the TF modelling source, one comment per builder.
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
    text_inputs,
    tf_module,
    trainable_count,
)
from .hf_audio import torch_inputs as mixed_torch_inputs
from .hf_seq2seq import NAMES as SEQ2SEQ_NAMES
from .hf_seq2seq import TINY as SEQ2SEQ_TINY
from .hf_seq2seq import seq2seq_inputs
from .hf_text import MOBILEBERT_TINY, SIZES, TINY, VOCAB, _hf_model
from .hf_vision import _vision
from .probe_dec import _LAYOUT_INPUTS, _layoutlmv3_inputs
from .probe_mar_text import _seq2seq_head
from .probe_more import whisper

IMAGE = (3, 32, 32)


@register("hf_whisper_lm", family="audio")
def build_whisper_lm() -> CorpusModel:
    """TFWhisperForConditionalGeneration: logits = decoder output @ embed_tokens^T."""
    # modeling_tf_whisper.py: hf_whisper's 32 linear + proj_out (TFWhisperForConditionalGeneration
    # .call: tf.matmul(decoder_last_hidden_state, embed_tokens.weights, transpose_b=True)) = 33;
    # sdpa 6, layer_norm 12, gelu 6 as hf_whisper
    nominal = {"sdpa": 6, "linear": 33, "layer_norm": 12, "rms_norm": 0, "gelu": 6}
    return whisper(
        "hf_whisper_lm",
        "TFWhisperForConditionalGeneration",
        "WhisperForConditionalGeneration",
        ("logits", "encoder_last_hidden_state"),
        nominal,
    )


@register("hf_albert_pretraining", family="encoder")
def build_albert_pretraining() -> CorpusModel:
    from transformers import AlbertConfig, TFAlbertForPreTraining

    config = AlbertConfig(**TINY, embedding_size=16, hidden_act="gelu_new")
    # modeling_tf_albert.py: hf_albert's 14 linear (the shared layer called twice) + MLM dense
    # + the tied decoder (word_embeddings^T + bias) + sop_classifier = 17; layer_norm: 5 + the
    # MLM head's LayerNorm = 6; gelu_new: 2 + the MLM head's activation = 3; sdpa 2
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, linear=17)
    return _hf_model(
        "hf_albert_pretraining",
        "encoder",
        TFAlbertForPreTraining,
        config,
        "AlbertForPreTraining",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("prediction_logits", "sop_logits"),
    )


@register("hf_mobilebert_pretraining", family="encoder")
def build_mobilebert_pretraining() -> CorpusModel:
    from transformers import MobileBertConfig, TFMobileBertForPreTraining

    config = MobileBertConfig(**MOBILEBERT_TINY)
    # modeling_tf_mobilebert.py: hf_mobilebert's 24 linear + the MLM transform Dense + the
    # decoder (one matmul by concat([decoder^T, dense], 0), + bias) + seq_relationship = 27;
    # the transform's LayerNorm is NORM2FN["layer_norm"] (a real one): 1 layer_norm; relu
    nominal = dict(sdpa=2, layer_norm=1, gelu=0, linear=27)
    return _hf_model(
        "hf_mobilebert_pretraining",
        "encoder",
        TFMobileBertForPreTraining,
        config,
        "MobileBertForPreTraining",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("prediction_logits", "seq_relationship_logits"),
    )


@register("hf_xlnet_lm", family="encoder")
def build_xlnet_lm() -> CorpusModel:
    from transformers import TFXLNetLMHeadModel, XLNetConfig

    config = XLNetConfig(
        vocab_size=TINY["vocab_size"],
        d_model=32,
        n_layer=2,
        n_head=4,
        d_inner=37,
        ff_activation="gelu",
        mem_len=None,
        use_mems_eval=False,
        use_mems_train=False,
    )
    # modeling_tf_xlnet.py: hf_xlnet's 14 linear + lm_loss (TFXLNetLMHead: tied word_embedding
    # ^T + bias) = 15; layer_norm 4; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=4, gelu=2, linear=15)
    return _hf_model(
        "hf_xlnet_lm",
        "encoder",
        TFXLNetLMHeadModel,
        config,
        "XLNetLMHeadModel",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("logits",),
    )


def _text_and_pixels(vocab_size: int) -> Any:
    tokens = text_inputs(("input_ids", "attention_mask"), vocab_size)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, Any]:
        inputs = tokens(batch_size, seed, size)
        rng = np.random.default_rng(seed + 1)
        pixels = rng.standard_normal((batch_size, *IMAGE)).astype(np.float32)
        return {
            "input_ids": inputs["input_ids"],
            "pixel_values": pixels,
            "attention_mask": inputs["attention_mask"],
        }

    return make_inputs


def _text_vision(
    name: str, model: Any, pt_class: str, outputs: tuple[str, ...], nominal: dict[str, int]
) -> CorpusModel:
    tf = tf_module()
    make_inputs = _text_and_pixels(model.config.text_config.vocab_size)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    return CorpusModel(
        name=name,
        family="vision",
        model=model,
        input_signature=[
            tf.TensorSpec((None, None), tf.int32, name="input_ids"),
            tf.TensorSpec((None, *IMAGE), tf.float32, name="pixel_values"),
            tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal={"rms_norm": 0, **nominal},
        twin=hf_twin(model, pt_class),
        twin_inputs=mixed_torch_inputs,
    )


@register("hf_blip_itm", family="vision")
def build_blip_itm() -> CorpusModel:
    from transformers import BlipConfig, TFBlipForImageTextRetrieval

    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = BlipConfig(
        text_config=dict(tower, vocab_size=99, max_position_embeddings=32),
        vision_config=dict(tower, image_size=32, patch_size=8, hidden_act="gelu", num_channels=3),
        projection_dim=16,
    )
    # modeling_tf_blip.py / modeling_tf_blip_text.py, use_itm_head=True (the no-ITM branch,
    # vision_proj/text_proj and the text encoder without image, is computed but unused: pruned).
    # Vision: hf_blip_vision's 8 linear, 2 gelu, 2 sdpa, layer_norm 2 x 2 + post_layernorm on
    # the sequence = 5 (the pooled class token's second post_layernorm is unused: pruned).
    # Text encoder (add_pooling_layer=False) with cross-attention: 2 x (self q,k,v,o + cross
    # q,k,v,o + intermediate + output) = 20 linear, embeddings LN + 2 x 3 = 7 layer_norm, 2
    # gelu, 2 x 2 sdpa; itm_head 1 linear. linear 29, layer_norm 12, gelu 4, sdpa 6
    nominal = dict(sdpa=6, layer_norm=12, gelu=4, linear=29)
    return _text_vision(
        "hf_blip_itm",
        TFBlipForImageTextRetrieval(config),
        "BlipForImageTextRetrieval",
        # the call returns (itm_score, the vision last_hidden_state, question_embeds)
        ("itm_score", "last_hidden_state", "question_embeds"),
        nominal,
    )


@register("hf_groupvit", family="vision")
def build_groupvit() -> CorpusModel:
    from transformers import GroupViTConfig, TFGroupViTModel

    config = GroupViTConfig(
        text_config=dict(
            vocab_size=99,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=32,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=4,
            hidden_size=32,
            intermediate_size=37,
            depths=[1, 1, 1],
            num_hidden_layers=3,
            num_group_tokens=[8, 4, 0],
            num_output_groups=[8, 4, 4],
            num_attention_heads=4,
            hidden_act="gelu",
        ),
        projection_dim=16,
        projection_intermediate_dim=24,
    )
    # modeling_tf_groupvit.py. Vision tower: hf_groupvit_vision's sdpa 5, layer_norm 21, gelu
    # 10, linear 48, softmax 2. Text tower (CLIP-like, quick_gelu): 2 x (q, k, v, out, fc1, fc2)
    # = 12 linear, 2 x 2 + final = 5 layer_norm, 2 sdpa (causal + padding). Projections: each
    # Dense, BatchNormalization, ReLU, Dense = 2 x 2 = 4 linear. sdpa 7, layer_norm 26, gelu 10,
    # linear 64, softmax 2
    nominal = dict(sdpa=7, layer_norm=26, gelu=10, linear=64, softmax=2)
    return _text_vision(
        "hf_groupvit",
        TFGroupViTModel(config),
        "GroupViTModel",
        ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"),
        nominal,
    )


@register("hf_efficientformer_teacher", family="vision")
def build_efficientformer_teacher() -> CorpusModel:
    from transformers import EfficientFormerConfig

    config = EfficientFormerConfig(
        image_size=32,
        depths=[1, 2],
        hidden_sizes=[16, 32],
        downsamples=[True, True],
        dim=32,
        key_dim=8,
        attention_ratio=2,
        resolution=4,
        num_attention_heads=4,
        mlp_expansion_ratio=2,
        num_meta3d_blocks=1,
        hidden_act="gelu",
        num_labels=5,
    )
    # the PyTorch twin's heads read config.hidden_size, which EfficientFormerConfig lacks (TF's
    # read hidden_sizes[-1]): the same width, so the twin builds (TF does not read it)
    config.hidden_size = config.hidden_sizes[-1]
    # deprecated/efficientformer/modeling_tf_efficientformer.py: hf_efficientformer's sdpa 1,
    # linear 4, layer_norm 3, gelu 3 + classifier and distillation_classifier = 6 linear
    nominal = {"sdpa": 1, "linear": 6, "layer_norm": 3, "gelu": 3}
    return _vision(
        "hf_efficientformer_teacher",
        "TFEfficientFormerForImageClassificationWithTeacher",
        "EfficientFormerForImageClassificationWithTeacher",
        config,
        ("logits", "cls_logits", "distillation_logits"),
        nominal,
    )


@register("hf_marian_mt", family="seq2seq")
def build_marian_mt() -> CorpusModel:
    from transformers import MarianConfig, TFMarianMTModel

    config = MarianConfig(**SEQ2SEQ_TINY, activation_function="swish", scale_embedding=True)
    # modeling_tf_marian.py: hf_marian's 32 linear + the LM head (tf.matmul(decoder output,
    # shared.weights, transpose_b=True) + final_logits_bias, a BiasLayer with trainable=False)
    # = 33; layer_norm 10; SiLU: 0 gelu; sdpa 6
    nominal = {"sdpa": 6, "linear": 33, "layer_norm": 10, "rms_norm": 0, "gelu": 0}
    return _seq2seq_head(
        "hf_marian_mt",
        TFMarianMTModel,
        "MarianMTModel",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(config.vocab_size),
    )


@register("hf_opt_lm", family="decoder")
def build_opt_lm() -> CorpusModel:
    from transformers import OPTConfig, TFOPTForCausalLM

    config = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=37,
        max_position_embeddings=64,
        word_embed_proj_dim=16,
        use_cache=False,
    )
    # modeling_tf_opt.py: hf_opt's 14 linear + the tied LM head (embed_tokens^T, no bias) = 15;
    # layer_norm 5; relu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=0, linear=15)
    return _hf_model(
        "hf_opt_lm",
        "decoder",
        TFOPTForCausalLM,
        config,
        "OPTForCausalLM",
        nominal,
        outputs=("logits",),
    )


@register("hf_roformer_mlm", family="encoder")
def build_roformer_mlm() -> CorpusModel:
    from transformers import RoFormerConfig, TFRoFormerForMaskedLM

    config = RoFormerConfig(**TINY, embedding_size=16)
    # modeling_tf_roformer.py: hf_roformer's 13 linear + the MLM transform Dense (to
    # embedding_size) + the tied decoder (word_embeddings^T + bias) = 15; layer_norm 5 + the
    # transform's LayerNorm = 6; gelu 2 + the transform's = 3; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, linear=15)
    return _hf_model(
        "hf_roformer_mlm",
        "encoder",
        TFRoFormerForMaskedLM,
        config,
        "RoFormerForMaskedLM",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("logits",),
    )


@register("hf_layoutlmv3_qa", family="encoder")
def build_layoutlmv3_qa() -> CorpusModel:
    from transformers import LayoutLMv3Config, TFLayoutLMv3ForQuestionAnswering

    config = LayoutLMv3Config(
        **TINY,
        max_2d_position_embeddings=64,
        coordinate_size=6,
        shape_size=4,
        visual_embed=False,
        has_relative_attention_bias=True,
        has_spatial_attention_bias=True,
    )
    # modeling_tf_layoutlmv3.py: hf_layoutlmv3's 15 linear + qa_outputs, a
    # TFLayoutLMv3ClassificationHead (dense with tanh, out_proj) = 17; layer_norm 5; gelu 2;
    # sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=17)
    return _hf_model(
        "hf_layoutlmv3_qa",
        "encoder",
        TFLayoutLMv3ForQuestionAnswering,
        config,
        "LayoutLMv3ForQuestionAnswering",
        nominal,
        inputs=_LAYOUT_INPUTS,
        outputs=("start_logits", "end_logits"),
        make_inputs=_layoutlmv3_inputs(config.vocab_size, config.max_2d_position_embeddings),
        extra_specs={"bbox": (None, None, 4)},
    )


@register("hf_cvt_cls", family="vision")
def build_cvt_cls() -> CorpusModel:
    from transformers import CvtConfig

    config = CvtConfig(
        image_size=32,  # not a CvtConfig field: the builder reads it
        patch_sizes=[7, 3],
        patch_stride=[4, 2],
        patch_padding=[2, 1],
        embed_dim=[16, 32],
        num_heads=[2, 4],
        depth=[1, 2],
        mlp_ratio=[2.0, 2.0],
        attention_drop_rate=[0.0, 0.0],
        drop_rate=[0.0, 0.0],
        drop_path_rate=[0.0, 0.0],
        qkv_bias=[True, True],
        cls_token=[False, True],
        qkv_projection_method=["dw_bn", "dw_bn"],
        kernel_qkv=[3, 3],
        padding_kv=[1, 1],
        stride_kv=[2, 2],
        padding_q=[1, 1],
        stride_q=[1, 1],
        num_labels=5,
    )
    # modeling_tf_cvt.py: hf_cvt's sdpa 3, gelu 3, linear 18, layer_norm 8 + the head's
    # layernorm on the CLS token (cls_token[-1]) and classifier: layer_norm 9, linear 19
    nominal = {"sdpa": 3, "linear": 19, "layer_norm": 9, "gelu": 3}
    return _vision(
        "hf_cvt_cls",
        "TFCvtForImageClassification",
        "CvtForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_layoutlmv3_visual_tokcls", family="encoder")
def build_layoutlmv3_visual_tokcls() -> CorpusModel:
    from transformers import LayoutLMv3Config, TFLayoutLMv3ForTokenClassification

    tf = tf_module()
    config = LayoutLMv3Config(
        **TINY,
        max_2d_position_embeddings=64,
        coordinate_size=6,
        shape_size=4,
        visual_embed=True,
        input_size=32,
        patch_size=8,
        num_channels=3,
        has_relative_attention_bias=True,
        has_spatial_attention_bias=True,
        num_labels=5,
    )
    layout = _layoutlmv3_inputs(config.vocab_size, config.max_2d_position_embeddings)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, Any]:
        arrays = layout(batch_size, seed, size)
        rng = np.random.default_rng(seed + 2)
        pixels = rng.standard_normal((batch_size, *IMAGE)).astype(np.float32)
        return {**arrays, "pixel_values": pixels}

    model = TFLayoutLMv3ForTokenClassification(config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    # modeling_tf_layoutlmv3.py: hf_layoutlmv3's 15 linear + the classifier (num_labels < 10:
    # one Dense) = 16 (patch_embed is a Conv2D); layer_norm: text embeddings 1 + embed_image's
    # norm 1 + the LayerNorm of the joined text + visual tokens 1 + 2 x 2 = 7; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=7, gelu=2, linear=16, rms_norm=0)
    return CorpusModel(
        name="hf_layoutlmv3_visual_tokcls",
        family="encoder",
        model=model,
        input_signature=[
            tf.TensorSpec((None, None), tf.int32, name="input_ids"),
            tf.TensorSpec((None, None, 4), tf.int32, name="bbox"),
            tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
            tf.TensorSpec((None, *IMAGE), tf.float32, name="pixel_values"),
        ],
        output_names=("logits",),
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, ("logits",)),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        dynamic_axes={"bbox": [1]},
        twin=hf_twin(model, "LayoutLMv3ForTokenClassification"),
        twin_inputs=mixed_torch_inputs,
    )


@register("hf_blip_cosine", family="vision")
def build_blip_cosine() -> CorpusModel:
    from transformers import BlipConfig, TFBlipForImageTextRetrieval
    from transformers.modeling_tf_utils import keras

    tf = tf_module()
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = BlipConfig(
        text_config=dict(tower, vocab_size=99, max_position_embeddings=32),
        vision_config=dict(tower, image_size=32, patch_size=8, hidden_act="gelu", num_channels=3),
        projection_dim=16,
    )
    blip = TFBlipForImageTextRetrieval(config)
    make_inputs = _text_and_pixels(99)
    blip(make_inputs(1, 0), training=False)
    randomize(blip)

    class Cosine(keras.Model):
        """The retrieval model's similarity path, as a user calls it for ranking."""

        def __init__(self, inner: Any) -> None:
            super().__init__(name="blip_cosine")
            self.inner = inner

        def call(self, inputs: Any, training: bool = False) -> dict[str, Any]:
            out = self.inner(inputs, use_itm_head=False, training=training)
            return {"itm_score": out["itm_score"]}

    model = Cosine(blip)
    # modeling_tf_blip.py, use_itm_head=False: the vision tower (8 linear, 2 gelu, 2 sdpa,
    # layer_norm 2 x 2 + post_layernorm = 5), the text encoder without image (2 x (q, k, v,
    # o, intermediate, output) = 12 linear, embeddings LN + 2 x 2 = 5 layer_norm, 2 gelu, 2
    # sdpa), vision_proj + text_proj 2 linear: linear 22, layer_norm 10, gelu 4, sdpa 4. The
    # ITM branch (cross-attention, itm_head) is computed but unused: pruned.
    nominal = dict(sdpa=4, layer_norm=10, gelu=4, linear=22, rms_norm=0)
    return CorpusModel(
        name="hf_blip_cosine",
        family="vision",
        model=model,
        input_signature={
            "input_ids": tf.TensorSpec((None, None), tf.int32, name="input_ids"),
            "pixel_values": tf.TensorSpec((None, *IMAGE), tf.float32, name="pixel_values"),
            "attention_mask": tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
        },
        output_names=("itm_score",),
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, ("itm_score",)),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        twin=hf_twin(blip, "BlipForImageTextRetrieval"),
        twin_inputs=mixed_torch_inputs,
    )
