"""More Hugging Face TF models, tiny configs: encoders, T5, CLIP, DeiT (the same helpers).

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

from ..registry import CorpusModel, register
from .hf_text import TINY, _hf_model
from .hf_vision import _vision


@register("hf_distilbert", family="encoder")
def build_distilbert() -> CorpusModel:
    from transformers import DistilBertConfig, TFDistilBertModel

    config = DistilBertConfig(
        vocab_size=TINY["vocab_size"],
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=37,
        max_position_embeddings=64,
        activation="gelu",
    )
    # 2 x (q, k, v, out, lin1, lin2) = 12 linear; embeddings LN + 2 x 2 = 5; 2 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=12)
    return _hf_model(
        "hf_distilbert", "encoder", TFDistilBertModel, config, "DistilBertModel", nominal
    )


@register("hf_albert", family="encoder")
def build_albert() -> CorpusModel:
    from transformers import AlbertConfig, TFAlbertModel

    config = AlbertConfig(**TINY, embedding_size=16, hidden_act="gelu_new")
    # one shared layer run twice: each run is attention, so 2 sdpa, 2 gelu; linear per call:
    # embedding projection 1 + 2 x (q, k, v, dense, ffn, ffn_output) + pooler 1 = 14;
    # layer_norm: embeddings 1 + 2 x (attention, full_layer) = 5
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=14)
    return _hf_model(
        "hf_albert",
        "encoder",
        TFAlbertModel,
        config,
        "AlbertModel",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("last_hidden_state", "pooler_output"),
    )


@register("hf_roberta", family="encoder")
def build_roberta() -> CorpusModel:
    from transformers import RobertaConfig, TFRobertaModel

    config = RobertaConfig(**TINY, pad_token_id=1)
    # BERT's layout: 2 x 6 linear + pooler = 13; LN 1 + 2 x 2 = 5; 2 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_roberta",
        "encoder",
        TFRobertaModel,
        config,
        "RobertaModel",
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
    )


@register("hf_deberta", family="encoder")
def build_deberta() -> CorpusModel:
    from transformers import DebertaConfig, TFDebertaModel

    config = DebertaConfig(
        **TINY, relative_attention=True, pos_att_type=["c2p", "p2c"], type_vocab_size=0
    )
    # DeBERTa v1: in_proj (q, k, v together) per layer, pos_proj and pos_q_proj on the
    # relative table, the attention output, intermediate and output Dense: 2 x 6 = 12
    # linear; LN: embeddings 1 + 2 x 2 = 5; 2 gelu; XSoftmax attention with c2p/p2c
    # terms: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=12)
    return _hf_model(
        "hf_deberta",
        "encoder",
        TFDebertaModel,
        config,
        "DebertaModel",
        nominal,
    )


@register("hf_rembert", family="encoder")
def build_rembert() -> CorpusModel:
    from transformers import RemBertConfig, TFRemBertModel

    config = RemBertConfig(
        **TINY, input_embedding_size=16, output_embedding_size=16, hidden_act="gelu"
    )
    # embeddings projection 1 + 2 x 6 + pooler 1 = 14 linear; LN 1 + 2 x 2 = 5; 2 gelu
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=14)
    return _hf_model(
        "hf_rembert",
        "encoder",
        TFRemBertModel,
        config,
        "RemBertModel",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("last_hidden_state", "pooler_output"),
    )


@register("hf_clip_text", family="encoder")
def build_clip_text() -> CorpusModel:
    from transformers import CLIPTextConfig, TFCLIPTextModel

    config = CLIPTextConfig(
        vocab_size=TINY["vocab_size"],
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        hidden_act="quick_gelu",
    )
    # causal + padding mask; 2 x (q, k, v, out, fc1, fc2) = 12 linear; LN 2 x 2 + final = 5;
    # quick_gelu is not GELU: 0 gelu
    nominal = dict(sdpa=2, layer_norm=5, gelu=0, linear=12)
    return _hf_model(
        "hf_clip_text",
        "encoder",
        TFCLIPTextModel,
        config,
        "CLIPTextModel",
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
    )


@register("hf_clip_vision", family="vision")
def build_clip_vision() -> CorpusModel:
    from transformers import CLIPVisionConfig

    config = CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act="quick_gelu",
    )
    # class embedding, pre-LN; 2 x 6 linear = 12; LN: pre 1 + 2 x 2 + post 1 = 6
    nominal = dict(sdpa=2, layer_norm=6, gelu=0, linear=12)
    return _vision(
        "hf_clip_vision",
        "TFCLIPVisionModel",
        "CLIPVisionModel",
        config,
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


@register("hf_deit", family="vision")
def build_deit() -> CorpusModel:
    from transformers import DeiTConfig

    config = DeiTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
    )
    # class and distillation tokens; 2 x 6 linear + pooler 1 = 13; LN 2 x 2 + final 1 = 5
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _vision(
        "hf_deit",
        "TFDeiTModel",
        "DeiTModel",
        config,
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


#: the tiny T5 v1.1 of hf_t5, also MT5's (probe_dec_heads.hf_mt5_lm)
T5_TINY = {
    "vocab_size": TINY["vocab_size"],
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 37,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
    "feed_forward_proj": "gated-gelu",
    "decoder_start_token_id": 0,
    "pad_token_id": 0,
    "use_cache": False,
}


@register("hf_t5", family="seq2seq")
def build_t5() -> CorpusModel:
    """T5 v1.1: RMSNorm (T5LayerNorm), bucketed relative-position bias shared by every layer
    of a stack and unscaled scores, gated GELU (tanh) feed-forward, no biases."""
    from transformers import T5Config

    from .hf_seq2seq import _seq2seq

    config = T5Config(**T5_TINY)
    # sdpa: enc 2 + dec 2 x (self, cross) = 6; rms_norm: enc 2 x 2 + final, dec 2 x 3 + final
    # = 12; linear: enc 2 x (q, k, v, o, wi_0, wi_1, wo) + dec 2 x (8 + 3) = 14 + 22 = 36;
    # gelu: one per gated feed-forward = 4
    nominal = {"sdpa": 6, "linear": 36, "layer_norm": 0, "rms_norm": 12, "gelu": 4}
    return _seq2seq("hf_t5", "TFT5Model", "T5Model", config, nominal)
