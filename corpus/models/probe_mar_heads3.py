"""March task-head probes, third file: masked-LM heads of relative/rotary encoders and the
DPR reader.

* ``hf_deberta_v2_mlm``: TFDebertaV2ForMaskedLM: hf_deberta_v2 plus the MLM transform
  (Dense, gelu, LayerNorm) and the tied word-embedding decoder with a bias;
* ``hf_esm_mlm``: TFEsmForMaskedLM: hf_esm (no pooler) plus its LM head (Dense, gelu,
  LayerNorm, the tied decoder, a bias);
* ``hf_dpr_reader``: TFDPRReader: a pooler-less BERT over passages, a 2-unit span Dense
  split into start/end and a 1-unit relevance Dense on each passage's [CLS].

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

from ..registry import CorpusModel, register
from .hf_text import TINY, _hf_model


@register("hf_deberta_v2_mlm", family="encoder")
def build_deberta_v2_mlm() -> CorpusModel:
    from transformers import DebertaV2Config, TFDebertaV2ForMaskedLM

    config = DebertaV2Config(
        **TINY,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=8,
        max_relative_positions=64,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
    )
    # modeling_tf_deberta_v2.py: hf_deberta_v2's 16 linear, 6 layer_norm, 2 gelu, 2 sdpa +
    # the MLM transform dense, its LayerNorm and gelu + the tied decoder (word_embeddings^T +
    # bias): linear 18, layer_norm 7, gelu 3
    nominal = dict(sdpa=2, layer_norm=7, gelu=3, linear=18)
    return _hf_model(
        "hf_deberta_v2_mlm",
        "encoder",
        TFDebertaV2ForMaskedLM,
        config,
        None,  # as hf_deberta_v2: the twin differs at padded query rows, which TF zeroes
        nominal,
        outputs=("logits",),
    )


@register("hf_esm_mlm", family="encoder")
def build_esm_mlm() -> CorpusModel:
    from transformers import EsmConfig, TFEsmForMaskedLM

    config = EsmConfig(
        **TINY,
        position_embedding_type="rotary",
        token_dropout=False,
        emb_layer_norm_before=False,
        pad_token_id=1,
        mask_token_id=2,
    )
    # modeling_tf_esm.py: hf_esm's 12 linear without the pooler, 5 layer_norm, 2 gelu, 2 sdpa
    # + lm_head dense, gelu, layer_norm and the decoder (tied to word_embeddings) + bias:
    # linear 14, layer_norm 6, gelu 3
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, linear=14)
    return _hf_model(
        "hf_esm_mlm",
        "encoder",
        TFEsmForMaskedLM,
        config,
        None,  # as hf_esm: PyTorch differs from TF on padded inputs
        nominal,
        outputs=("logits",),
    )


@register("hf_dpr_reader", family="encoder")
def build_dpr_reader() -> CorpusModel:
    from transformers import DPRConfig, TFDPRReader

    config = DPRConfig(**TINY, projection_dim=0)
    # modeling_tf_dpr.py: BERT without pooler 12 linear + qa_outputs + qa_classifier = 14;
    # layer_norm 5; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=14)
    return _hf_model(
        "hf_dpr_reader",
        "encoder",
        TFDPRReader,
        config,
        "DPRReader",
        nominal,
        outputs=("start_logits", "end_logits", "relevance_logits"),
    )
