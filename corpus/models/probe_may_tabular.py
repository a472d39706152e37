"""May tabular and recommender probes: keras.io's structured-data and recommendation models.

* ``keras_dcn_v2``: a Deep & Cross Network v2 (TFRS's ``Cross`` layer): float features
  and integer categorical columns through one Embedding each, a stack of cross layers
  ``x0 * Dense(x) + x`` (the last one low-rank: ``Dense(r, use_bias=False)`` then
  ``Dense(d)``), a deep relu tower on top, a sigmoid head;
* ``keras_grn_vsn``: keras.io/examples/structured_data/classification_with_grn_and_vsn: a
  gated linear unit (``Dense * Dense(sigmoid)``), gated residual networks (elu Dense,
  Dense, GLU, residual through a projection where widths differ, LayerNormalization),
  one GRN per feature, a softmax Dense over the features and their weighted sum by
  ``tf.matmul(v, x, transpose_a=True)``;
* ``keras_tab_transformer``: keras.io/examples/structured_data/tabtransformer: categorical
  columns through Embeddings plus a column embedding, two transformer blocks
  (MultiHeadAttention, LayerNormalization, a gelu feed-forward), the numeric features
  through LayerNormalization, concatenated to the flattened columns, a selu MLP head;
* ``keras_ncf``: keras.io/examples/structured_data/collaborative_filtering_movielens's
  RecommenderNet: user and movie Embeddings, ``ops.tensordot(user, movie, 2)`` (the
  example's own code: a sum over the batch too), per-user and per-movie bias Embeddings,
  sigmoid;
* ``keras_neumf``: neural matrix factorisation (He et al.'s NeuMF, the TF Model Garden's
  NCF): a GMF branch (user * item embeddings) and an MLP branch (concatenated embeddings
  through a relu tower), concatenated into a sigmoid Dense;
* ``keras_bst``: keras.io/examples/structured_data/movielens_recommendations_transformers,
  the Behaviour Sequence Transformer, on a dynamic number of watched movies: movie
  Embedding concatenated with a fixed (non-trainable) genre Embedding through a relu
  Dense, a position Embedding of ``tf.range`` of the length, scaled by the ratings, the
  target movie appended, one MultiHeadAttention block with a LeakyReLU Dense, a mean pool
  (the example's Flatten needs a fixed length), user features by Embedding, an MLP
  (Dense, BatchNormalization, LeakyReLU);
* ``keras_switch_transformer``: keras.io/examples/nlp/text_classification_with_switch_transformer
  on a dynamic length: token and position Embeddings, MultiHeadAttention, a Switch layer
  whose top-1 router (Dense, softmax, ``ops.top_k``, ``one_hot``, the position in each
  expert by ``cumsum`` over the tokens, a fixed expert capacity) builds the dispatch and
  combine tensors that two ``einsum`` apply around the expert FFNs.

``probe_may_tabular2`` holds the feature-column models (Wide & Deep, in-model preprocessing).

``nominal`` follows the examples' code, one comment per builder: ``linear`` counts Dense
layer calls and MultiHeadAttention projections; ``softmax`` counts the softmaxes that are
not attention.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import CorpusModel, register, tf_module
from .keras_layers import SEQ_LEN, SEQ_SIZES, _corpus_model, _float_spec, _keras


def _int_spec(name: str, shape: tuple[Any, ...] = ()) -> Any:
    tf = tf_module()
    return tf.TensorSpec((None, *shape), tf.int32, name=name)


def _tabular_inputs(
    floats: dict[str, tuple[int, ...]], ints: dict[str, tuple[int, tuple[int, ...]]]
) -> Any:
    """Float inputs (name -> shape) and integer ones (name -> (vocabulary, shape)), in order."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        out = {}
        for name, shape in floats.items():
            out[name] = rng.standard_normal((batch_size, *shape)).astype(np.float32)
        for name, (vocab, shape) in ints.items():
            out[name] = rng.integers(0, vocab, (batch_size, *shape)).astype(np.int32)
        return out

    return make_inputs


# --------------------------------------------------------------------------- DCN-v2


@register("keras_dcn_v2", family="keras")
def build_dcn_v2() -> CorpusModel:
    """DCN-v2 (stacked): 4 float features, 3 categorical columns (vocabularies 5, 7, 4)
    through Embedding(4) each: x0 of 16; three cross layers (the last low-rank, r=4); a
    deep tower of 16, 8; a sigmoid Dense(1)."""
    keras = _keras()
    layers = keras.layers
    vocabs = (5, 7, 4)

    class Cross(layers.Layer):
        """tfrs.layers.dcn.Cross: ``x0 * W(x) + x``; ``W = V U`` when projection_dim."""

        def __init__(self, projection_dim: int | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.projection_dim = projection_dim

        def build(self, input_shape: Any) -> None:
            dim = input_shape[-1]
            if self.projection_dim is None:
                self.dense = layers.Dense(dim, name="dense")
            else:
                self.dense_u = layers.Dense(self.projection_dim, use_bias=False, name="u")
                self.dense_v = layers.Dense(dim, name="v")

        def call(self, x0: Any, x: Any) -> Any:
            full = self.projection_dim is None
            prod = self.dense(x) if full else self.dense_v(self.dense_u(x))
            return x0 * prod + x

    numeric = keras.Input((4,), name="numeric")
    categorical = keras.Input((3,), dtype="int32", name="categorical")
    embedded = [
        layers.Embedding(vocab, 4, name=f"embed_{i}")(categorical[:, i])
        for i, vocab in enumerate(vocabs)
    ]
    x0 = layers.Concatenate()([numeric, *embedded])
    x = x0
    for i, rank in enumerate((None, None, 4)):
        x = Cross(rank, name=f"cross_{i}")(x0, x)
    for i, units in enumerate((16, 8)):
        x = layers.Dense(units, activation="relu", name=f"deep_{i}")(x)
    y = layers.Dense(1, activation="sigmoid", name="head")(x)
    model = keras.Model([numeric, categorical], y, name="dcn_v2")
    # 2 full-rank crosses (1 Dense each) + the low-rank one (2) + deep 2 + head 1 = 7 linear
    specs = [_float_spec("numeric", (4,)), _int_spec("categorical", (3,))]

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        ids = np.stack([rng.integers(0, v, batch_size) for v in vocabs], axis=1)
        return {
            "numeric": rng.standard_normal((batch_size, 4)).astype(np.float32),
            "categorical": ids.astype(np.int32),
        }

    return _corpus_model("keras_dcn_v2", "keras", model, specs, make_inputs, {"linear": 7})


# --------------------------------------------------------------------------- GRN + VSN


@register("keras_grn_vsn", family="keras")
def build_grn_vsn() -> CorpusModel:
    """keras.io's GRN/VSN classifier: 2 numeric features (one float each), 2 categorical
    ones (vocabularies 6 and 9) through Embedding(8); encoding size 8; a sigmoid head."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    units = 8

    class GatedLinearUnit(layers.Layer):
        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.linear = layers.Dense(units)
            self.sigmoid = layers.Dense(units, activation="sigmoid")

        def call(self, inputs: Any) -> Any:
            return self.linear(inputs) * self.sigmoid(inputs)

    class GatedResidualNetwork(layers.Layer):
        def __init__(self, units: int, dropout_rate: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.elu_dense = layers.Dense(units, activation="elu")
            self.linear_dense = layers.Dense(units)
            self.dropout = layers.Dropout(dropout_rate)
            self.gated_linear_unit = GatedLinearUnit(units)
            self.layer_norm = layers.LayerNormalization()
            self.project = layers.Dense(units)

        def call(self, inputs: Any) -> Any:
            x = self.elu_dense(inputs)
            x = self.linear_dense(x)
            x = self.dropout(x)
            if inputs.shape[-1] != self.units:
                inputs = self.project(inputs)
            x = inputs + self.gated_linear_unit(x)
            return self.layer_norm(x)

    class VariableSelection(layers.Layer):
        def __init__(self, num_features: int, units: int, dropout_rate: float, **kw: Any):
            super().__init__(**kw)
            self.grns = [GatedResidualNetwork(units, dropout_rate) for _ in range(num_features)]
            self.grn_concat = GatedResidualNetwork(num_features, dropout_rate)
            self.softmax = layers.Dense(units=num_features, activation="softmax")

        def call(self, inputs: Any) -> Any:
            v = layers.concatenate(inputs)
            v = self.grn_concat(v)
            v = tf.expand_dims(self.softmax(v), axis=-1)
            x = [grn(feature) for grn, feature in zip(self.grns, inputs, strict=True)]
            x = tf.stack(x, axis=1)
            return tf.squeeze(tf.matmul(v, x, transpose_a=True), axis=1)

    vocabs = {"workclass": 6, "education": 9}
    numeric = [keras.Input((1,), name=n) for n in ("age", "hours")]
    categorical = [keras.Input((), dtype="int32", name=n) for n in vocabs]
    encoded = list(numeric)
    for name, inp in zip(vocabs, categorical, strict=True):
        encoded.append(layers.Embedding(vocabs[name], units, name=f"embed_{name}")(inp))
    features = VariableSelection(len(encoded), units, 0.15, name="vsn")(encoded)
    y = layers.Dense(1, activation="sigmoid", name="head")(features)
    model = keras.Model([*numeric, *categorical], y, name="grn_vsn")
    # GRN: elu_dense, linear_dense, the GLU's 2 = 4 Dense, + project where the input is not 8
    # wide: the 2 numeric GRNs 5 each, the 2 categorical 4 each, grn_concat (32 -> 4) 5,
    # the softmax Dense 1, head 1: 25 linear; 5 GRNs: layer_norm 5; the softmax Dense: 1
    nominal = {"linear": 25, "layer_norm": 5, "softmax": 1}
    specs = [_float_spec("age", (1,)), _float_spec("hours", (1,))]
    specs += [_int_spec(n) for n in vocabs]
    make_inputs = _tabular_inputs(
        {"age": (1,), "hours": (1,)}, {n: (v, ()) for n, v in vocabs.items()}
    )
    return _corpus_model("keras_grn_vsn", "keras", model, specs, make_inputs, nominal)


# --------------------------------------------------------------------------- TabTransformer


@register("keras_tab_transformer", family="encoder")
def build_tab_transformer() -> CorpusModel:
    """keras.io's TabTransformer: 3 categorical columns (vocabularies 5, 8, 6), embedding
    dim 8, 2 blocks of 2 heads, mlp factor 2; 3 numeric features; MLP head of 12, 6."""
    keras = _keras()
    layers = keras.layers
    ops = keras.ops
    dim, vocabs = 8, (5, 8, 6)
    numeric = keras.Input((3,), name="numeric")
    categorical = [keras.Input((), dtype="int32", name=f"cat_{i}") for i in range(3)]
    encoded = [
        layers.Embedding(v, dim, name=f"embed_{i}")(c)
        for i, (v, c) in enumerate(zip(vocabs, categorical, strict=True))
    ]
    columns = ops.stack(encoded, axis=1)
    column_embedding = layers.Embedding(len(vocabs), dim, name="column_embedding")
    columns = columns + column_embedding(ops.arange(len(vocabs)))
    for block in range(2):
        attention = layers.MultiHeadAttention(
            num_heads=2, key_dim=dim, dropout=0.2, name=f"mha_{block}"
        )(columns, columns)
        x = layers.Add()([attention, columns])
        x = layers.LayerNormalization(epsilon=1e-6, name=f"ln1_{block}")(x)
        ffn = keras.Sequential(
            [
                layers.Dense(dim * 2, activation="gelu"),
                layers.Dropout(0.2),
                layers.Dense(dim),
            ],
            name=f"ffn_{block}",
        )(x)
        x = layers.Add()([ffn, x])
        columns = layers.LayerNormalization(epsilon=1e-6, name=f"ln2_{block}")(x)
    flat = layers.Flatten()(columns)
    numeric_features = layers.LayerNormalization(epsilon=1e-6, name="numeric_ln")(numeric)
    x = layers.concatenate([flat, numeric_features])
    for i, units in enumerate((12, 6)):
        x = layers.Dense(units, activation="selu", name=f"mlp_{i}")(x)
        x = layers.Dropout(0.2)(x)
    y = layers.Dense(1, activation="sigmoid", name="head")(x)
    model = keras.Model([numeric, *categorical], y, name="tab_transformer")
    # per block 4 MHA projections + 2 FFN Dense; 2 blocks: 12; MLP 2 + head 1: 15 linear;
    # layer_norm 2 x 2 + the numeric one: 5; sdpa 2; the gelu FFN: gelu 2 (exact)
    nominal = {"linear": 15, "layer_norm": 5, "sdpa": 2, "gelu": 2}
    specs = [_float_spec("numeric", (3,))] + [_int_spec(f"cat_{i}") for i in range(3)]
    make_inputs = _tabular_inputs(
        {"numeric": (3,)}, {f"cat_{i}": (v, ()) for i, v in enumerate(vocabs)}
    )
    return _corpus_model("keras_tab_transformer", "encoder", model, specs, make_inputs, nominal)


# --------------------------------------------------------------------------- recommenders


@register("keras_ncf", family="keras")
def build_ncf() -> CorpusModel:
    """keras.io's RecommenderNet: 12 users, 15 movies, embedding size 6; input (batch, 2)
    user and movie ids."""
    keras = _keras()
    layers = keras.layers
    ops = keras.ops
    users, movies, size = 12, 15, 6

    class RecommenderNet(layers.Layer):
        def __init__(self, num_users: int, num_movies: int, embedding_size: int, **kw: Any):
            super().__init__(**kw)
            self.user_embedding = layers.Embedding(
                num_users,
                embedding_size,
                embeddings_initializer="he_normal",
                embeddings_regularizer=keras.regularizers.l2(1e-6),
            )
            self.user_bias = layers.Embedding(num_users, 1)
            self.movie_embedding = layers.Embedding(
                num_movies,
                embedding_size,
                embeddings_initializer="he_normal",
                embeddings_regularizer=keras.regularizers.l2(1e-6),
            )
            self.movie_bias = layers.Embedding(num_movies, 1)

        def call(self, inputs: Any) -> Any:
            user_vector = self.user_embedding(inputs[:, 0])
            user_bias = self.user_bias(inputs[:, 0])
            movie_vector = self.movie_embedding(inputs[:, 1])
            movie_bias = self.movie_bias(inputs[:, 1])
            dot_user_movie = ops.tensordot(user_vector, movie_vector, 2)
            x = dot_user_movie + user_bias + movie_bias
            return ops.nn.sigmoid(x)

    pairs = keras.Input((2,), dtype="int32", name="user_movie")
    y = RecommenderNet(users, movies, size, name="recommender")(pairs)
    model = keras.Model(pairs, y, name="ncf")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        ids = np.stack(
            [rng.integers(0, users, batch_size), rng.integers(0, movies, batch_size)], axis=1
        )
        return {"user_movie": ids.astype(np.int32)}

    # no Dense: linear 0
    specs = [_int_spec("user_movie", (2,))]
    return _corpus_model("keras_ncf", "keras", model, specs, make_inputs, {"linear": 0})


@register("keras_neumf", family="keras")
def build_neumf() -> CorpusModel:
    """NeuMF: 10 users, 14 items; GMF embeddings of 4, MLP embeddings of 8 through a relu
    tower 16, 8, 4; the GMF and MLP outputs concatenated into a sigmoid Dense(1)."""
    keras = _keras()
    layers = keras.layers
    users, items = 10, 14
    user = keras.Input((), dtype="int32", name="user_id")
    item = keras.Input((), dtype="int32", name="item_id")
    gmf = layers.Multiply()(
        [
            layers.Embedding(users, 4, name="gmf_user")(user),
            layers.Embedding(items, 4, name="gmf_item")(item),
        ]
    )
    mlp = layers.Concatenate()(
        [
            layers.Embedding(users, 8, name="mlp_user")(user),
            layers.Embedding(items, 8, name="mlp_item")(item),
        ]
    )
    for i, units in enumerate((16, 8, 4)):
        mlp = layers.Dense(units, activation="relu", name=f"mlp_{i}")(mlp)
    y = layers.Dense(1, activation="sigmoid", name="prediction")(layers.Concatenate()([gmf, mlp]))
    model = keras.Model([user, item], y, name="neumf")
    # the MLP tower 3 + prediction 1 = 4 linear
    specs = [_int_spec("user_id"), _int_spec("item_id")]
    make_inputs = _tabular_inputs({}, {"user_id": (users, ()), "item_id": (items, ())})
    return _corpus_model("keras_neumf", "keras", model, specs, make_inputs, {"linear": 4})


@register("keras_bst", family="encoder")
def build_bst() -> CorpusModel:
    """keras.io's BST: 20 movies, 5 genres, embedding dim 8 (movie 8 + genres 5 -> 8), a
    dynamic number of watched movies with their ratings, a target movie, 2 user features
    (sex: 2, age group: 7) embedded in 3; one block of 2 heads; MLP 16, 8; Dense(1)."""
    keras = _keras()
    tf = tf_module()
    layers = keras.layers
    ops = keras.ops
    movies, genres, dim, max_len = 20, 5, 8, 16
    genre_table = np.random.default_rng(1).integers(0, 2, (movies, genres)).astype(np.float32)

    history = keras.Input((None,), dtype="int32", name="sequence_movie_ids")
    ratings = keras.Input((None,), name="sequence_ratings")
    target = keras.Input((), dtype="int32", name="target_movie_id")
    sex = keras.Input((), dtype="int32", name="sex")
    age = keras.Input((), dtype="int32", name="age_group")

    movie_embedding = layers.Embedding(movies, dim, name="movie_embedding")
    genre_vectors = layers.Embedding(
        movies, genres, trainable=False, name="genre_vector", weights=[genre_table]
    )
    movie_processor = layers.Dense(dim, activation="relu", name="process_movie_embedding")

    def encode_movie(ids: Any) -> Any:
        return movie_processor(layers.concatenate([movie_embedding(ids), genre_vectors(ids)]))

    position_embedding = layers.Embedding(max_len, dim, name="position_embedding")

    class Positions(layers.Layer):
        def call(self, sequence: Any) -> Any:
            return position_embedding(tf.range(tf.shape(sequence)[1]))[tf.newaxis]

    encoded_sequence = encode_movie(history) + Positions(name="positions")(history)
    encoded_sequence = layers.Multiply()([encoded_sequence, ops.expand_dims(ratings, -1)])
    encoded_target = ops.expand_dims(encode_movie(target), 1)
    features = layers.concatenate([encoded_sequence, encoded_target], axis=1)

    attention = layers.MultiHeadAttention(num_heads=2, key_dim=dim, dropout=0.1, name="mha")(
        features, features
    )
    attention = layers.Dropout(0.1)(attention)
    x1 = layers.LayerNormalization(name="ln_1")(layers.Add()([features, attention]))
    x2 = layers.LeakyReLU()(x1)
    x2 = layers.Dense(dim, name="ffn")(x2)
    x2 = layers.Dropout(0.1)(x2)
    features = layers.LayerNormalization(name="ln_2")(layers.Add()([x1, x2]))
    pooled = layers.GlobalAveragePooling1D()(features)
    user = layers.concatenate(
        [
            layers.Embedding(2, 3, name="sex_embedding")(sex),
            layers.Embedding(7, 3, name="age_group_embedding")(age),
        ]
    )
    x = layers.concatenate([pooled, user])
    for i, units in enumerate((16, 8)):
        x = layers.Dense(units, name=f"mlp_{i}")(x)
        x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.LeakyReLU()(x)
        x = layers.Dropout(0.1)(x)
    y = layers.Dense(1, name="rating")(x)
    model = keras.Model([history, ratings, target, sex, age], y, name="bst")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        length = size or SEQ_LEN
        return {
            "sequence_movie_ids": rng.integers(0, movies, (batch_size, length)).astype(np.int32),
            "sequence_ratings": rng.uniform(0, 1, (batch_size, length)).astype(np.float32),
            "target_movie_id": rng.integers(0, movies, batch_size).astype(np.int32),
            "sex": rng.integers(0, 2, batch_size).astype(np.int32),
            "age_group": rng.integers(0, 7, batch_size).astype(np.int32),
        }

    # the movie processor on the sequence and on the target: 2 calls; MHA 4; ffn 1; MLP 2;
    # rating 1: 10 linear; layer_norm 2; sdpa 1
    nominal = {"linear": 10, "layer_norm": 2, "sdpa": 1}
    specs = [
        _int_spec("sequence_movie_ids", (None,)),
        _float_spec("sequence_ratings", (None,)),
        _int_spec("target_movie_id"),
        _int_spec("sex"),
        _int_spec("age_group"),
    ]
    built = _corpus_model("keras_bst", "encoder", model, specs, make_inputs, nominal, SEQ_SIZES)
    built.dynamic_axes = {"sequence_movie_ids": [1], "sequence_ratings": [1]}
    return built


# --------------------------------------------------------------------------- Switch Transformer


@register("keras_switch_transformer", family="encoder")
def build_switch_transformer() -> CorpusModel:
    """keras.io's Switch Transformer classifier: vocabulary 30, embed dim 8, 2 heads, 2
    experts of ff dim 12, expert capacity 8 tokens (fixed: the example's tokens per batch
    over the experts, with a dynamic batch and length), a relu Dense(8), 2 classes."""
    keras = _keras()
    layers = keras.layers
    ops = keras.ops
    vocab, embed_dim, ff_dim, num_experts, capacity = 30, 8, 12, 2, 8

    def create_feedforward_network(name: str) -> Any:
        return keras.Sequential(
            [layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)], name=name
        )

    class Router(layers.Layer):
        def __init__(self, num_experts: int, expert_capacity: int, **kw: Any) -> None:
            super().__init__(**kw)
            self.num_experts = num_experts
            self.route = layers.Dense(units=num_experts, name="route")
            self.expert_capacity = expert_capacity

        def call(self, inputs: Any) -> Any:
            # inputs: (tokens, embed_dim)
            router_logits = self.route(inputs)
            router_probs = keras.activations.softmax(router_logits, axis=-1)
            expert_gate, expert_index = ops.top_k(router_probs, k=1)
            expert_mask = ops.one_hot(expert_index, self.num_experts)
            position_in_expert = ops.cast(ops.cumsum(expert_mask, axis=0) * expert_mask, "int32")
            expert_mask *= ops.cast(
                ops.less(ops.cast(position_in_expert, "int32"), self.expert_capacity), "float32"
            )
            expert_mask_flat = ops.sum(expert_mask, axis=-1)
            expert_gate *= expert_mask_flat
            combined_tensor = ops.expand_dims(
                expert_gate
                * expert_mask_flat
                * ops.squeeze(ops.one_hot(expert_index, self.num_experts), 1),
                -1,
            ) * ops.squeeze(ops.one_hot(position_in_expert, self.expert_capacity), 1)
            dispatch_tensor = ops.cast(combined_tensor, "float32")
            return dispatch_tensor, combined_tensor

    class Switch(layers.Layer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.experts = [create_feedforward_network(f"expert_{i}") for i in range(num_experts)]
            self.router = Router(num_experts, capacity, name="router")

        def call(self, inputs: Any) -> Any:
            batch_size = ops.shape(inputs)[0]
            num_tokens_per_example = ops.shape(inputs)[1]
            inputs = ops.reshape(inputs, [-1, embed_dim])
            dispatch_tensor, combine_tensor = self.router(inputs)
            expert_inputs = ops.einsum("ab,acd->cdb", inputs, dispatch_tensor)
            expert_inputs = ops.reshape(expert_inputs, [num_experts, capacity, embed_dim])
            expert_input_list = ops.unstack(expert_inputs, axis=0)
            expert_output_list = [
                expert(expert_input)
                for expert, expert_input in zip(self.experts, expert_input_list, strict=True)
            ]
            expert_outputs = ops.stack(expert_output_list, axis=1)
            combined = ops.einsum("abc,xba->xc", expert_outputs, combine_tensor)
            return ops.reshape(combined, [batch_size, num_tokens_per_example, embed_dim])

    class TokenAndPositionEmbedding(layers.Layer):
        def __init__(self, maxlen: int, **kw: Any) -> None:
            super().__init__(**kw)
            self.token_emb = layers.Embedding(input_dim=vocab, output_dim=embed_dim)
            self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x: Any) -> Any:
            positions = self.pos_emb(ops.arange(0, ops.shape(x)[-1], 1))
            return self.token_emb(x) + positions

    tokens = keras.Input((None,), dtype="int32", name="input_ids")
    x = TokenAndPositionEmbedding(16, name="embedding")(tokens)
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=embed_dim, name="mha")(x, x)
    x = layers.LayerNormalization(epsilon=1e-6, name="ln_1")(x + layers.Dropout(0.1)(attention))
    ffn = Switch(name="switch")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name="ln_2")(x + layers.Dropout(0.1)(ffn))
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(8, activation="relu", name="dense")(layers.Dropout(0.1)(x))
    y = layers.Dense(2, activation="softmax", name="classes")(layers.Dropout(0.1)(x))
    model = keras.Model(tokens, y, name="switch_transformer")

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict:
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, vocab, (batch_size, size or SEQ_LEN))
        return {"input_ids": ids.astype(np.int32)}

    # MHA 4, router 1, 2 experts x 2 Dense, dense + classes 2: 11 linear; layer_norm 2;
    # sdpa 1; the router's and the head's softmax: 2
    nominal = {"linear": 11, "layer_norm": 2, "sdpa": 1, "softmax": 2}
    specs = [_int_spec("input_ids", (None,))]
    return _corpus_model(
        "keras_switch_transformer", "encoder", model, specs, make_inputs, nominal, SEQ_SIZES
    )
