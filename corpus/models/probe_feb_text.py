"""Hugging Face models from outside the corpus, probed as a new user would (December's third probe).

* ``hf_clip``: the whole TFCLIPModel, text and vision towers, projections, and the
  learned ``logit_scale`` (a scalar variable: ``exp(logit_scale)`` scales the
  similarity logits);
* ``hf_bert_pretraining``: TFBertForPreTraining: the MLM head (transform Dense + GELU
  + LayerNorm, then a decoder tied to the word embeddings, with its own bias) and the
  next-sentence head on the pooler.

Tiny configs, every variable random; the ``nominal`` counts follow the TF modelling
source, one comment per builder.
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
from .hf_text import SIZES, TINY, _hf_model

IMAGE = (3, 32, 32)


@register("hf_clip", family="vision")
def build_clip() -> CorpusModel:
    """TFCLIPModel: both towers (quick_gelu), text_projection and visual_projection (no
    bias), L2-normalised embeddings, logits = exp(logit_scale) * text @ image^T."""
    from transformers import CLIPConfig, TFCLIPModel

    tf = tf_module()
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=99, max_position_embeddings=32),
        vision_config=dict(tower, image_size=32, patch_size=8),
        projection_dim=16,
    )
    tokens = text_inputs(("input_ids", "attention_mask"), 99)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, Any]:
        inputs = tokens(batch_size, seed, size)
        rng = np.random.default_rng(seed + 1)
        pixels = rng.standard_normal((batch_size, *IMAGE)).astype(np.float32)
        return {
            "input_ids": inputs["input_ids"],
            "pixel_values": pixels,
            "attention_mask": inputs["attention_mask"],
        }

    model = TFCLIPModel(config)
    model(make_inputs(1, 0))
    randomize(model)
    # modeling_tf_clip.py: per tower 2 x (q, k, v, out_proj, fc1, fc2) = 12, + text_projection
    # + visual_projection = 26 linear; layer_norm: text 2 x 2 + final 1, vision pre 1 + 2 x 2
    # + post 1 = 11; sdpa: 2 per tower = 4 (text causal + padding); quick_gelu is no gelu.
    nominal = dict(sdpa=4, layer_norm=11, gelu=0, linear=26)
    outputs = ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds")

    return CorpusModel(
        name="hf_clip",
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
        nominal=nominal,
        twin=hf_twin(model, "CLIPModel"),
        twin_inputs=mixed_torch_inputs,
    )


@register("hf_bert_pretraining", family="encoder")
def build_bert_pretraining() -> CorpusModel:
    """TFBertForPreTraining: MLM logits over the vocabulary by the word embeddings
    (tied) plus a bias, and next-sentence logits on the pooler."""
    from transformers import BertConfig, TFBertForPreTraining

    config = BertConfig(**TINY)
    # modeling_tf_bert.py: 2 x (q, k, v, o, intermediate, output) + pooler + MLM transform
    # dense + the tied decoder + seq_relationship = 16 linear; layer_norm: embeddings 1 +
    # 2 x 2 + transform 1 = 6; gelu: 2 intermediate + transform 1 = 3; sdpa 2.
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, linear=16)
    return _hf_model(
        "hf_bert_pretraining",
        "encoder",
        TFBertForPreTraining,
        config,
        "BertForPreTraining",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("prediction_logits", "seq_relationship_logits"),
    )
