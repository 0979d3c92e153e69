"""AANG's network: a shared RoBERTa body and one output head per objective.

As in the original (``setup_heads``, ``modelling.py:262-298``, ldery/
Automating-Auxiliary-Learning @ f876fe2), every objective has its own head and none is
shared with the primary task:

* the primary classifier (tanh hidden layer) on the ``<s>`` state;
* one LM head per *denoise* objective of the space (16 in ``citation.supervised``):
  `aux_jax.models.roberta.RobertaLMHead`, ``LN(gelu(W h + b)) E^T + c``. For a
  pretrained body each starts as a copy of the checkpoint's MLM head, decoder included
  (the original copies it, so the decoders are not tied); from scratch each is freshly
  initialised. ``tie_lm_decoders=True`` decodes every LM head with the body's word
  embedding instead (16 RoBERTa-base decoders are 16 × 38.6 M parameters plus their
  AdamW moments);
* one classifier (ReLU hidden layer) per *supervised* auxiliary objective (8).

The body is always `aux_jax.models.roberta.RobertaEncoder`: a checkpoint's
(`aux_jax.models.roberta.load_pretrained`, `AangNet` with ``pretrained``) or a small
freshly initialised one (the CPU default, `AangNet` without). AANG's attention masks
(`aux_jax.aang.attention`) are data to it.

Parameters of the AANG state::

    {"encoder": body,
     "primary_head": classifier,
     "lm_heads": {"head": [C_denoise, ...] stacked, "decoder": f32[C_denoise, V, D]
                  (absent if tied)},       (absent if the space has no denoise objective)
     "aux_heads": [C_supervised, ...] stacked classifiers}      (absent if none)
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.models.roberta import Roberta, RobertaConfig

# Hidden activations of the classifier heads (``modelling.py:295, 333``): the primary
# (and dev) heads tanh, the auxiliary supervised heads ReLU.
PRIMARY_ACTIVATION = "tanh"
AUX_ACTIVATION = "relu"
# Path of the word embedding f32[V, D] in RobertaEncoder's params.
EMBEDDING_PATH = ("embeddings", "word_embeddings", "embedding")


class ClassifierHead(nn.Module):
  """Class logits f32[B, K] from the ``<s>`` state f32[B, D].

  ``dropout → Dense(hidden) → activation → dropout → Dense(K)``: the original's
  classifier (allennlp's one-layer feed-forward; tanh for the primary and dev heads,
  ReLU for the auxiliary supervised heads, ``modelling.py:291-295, 333-344``).
  """

  num_classes: int
  hidden: int
  dropout: float = 0.1
  activation: str = "tanh"

  @nn.compact
  def __call__(self, cls_state, deterministic: bool = True):
    act = {"tanh": jnp.tanh, "relu": nn.relu}[self.activation]
    x = nn.Dropout(self.dropout)(cls_state, deterministic=deterministic)
    x = act(nn.Dense(self.hidden)(x))
    x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    return nn.Dense(self.num_classes)(x).astype(jnp.float32)


class AangNet:
  """A RoBERTa body with AANG's heads, as pure functions over params trees.

  Attributes:
    model: the `Roberta` model object (its config, dtype).
    encoder: ``model.encoder``, ``(tokens i32[B, L], mask bool[B, L, L],
      deterministic) -> states [B, L, D]``.
    lm_module: ``model.lm_head``, ``(states, decoder f32[V, D]) -> f32[B, L, V]``.
    width, max_len, vocab_size: D, the longest sequence, V.
    num_classes: classes of the primary task (and of its supervised objectives).
    classifier_dropout: dropout of every classifier head.
    tie_lm_decoders: decode with the body's embedding (module docstring).
    pretrained: ``{"encoder", "lm_head"}`` arrays of a checkpoint, or None (fresh).
  """

  def __init__(self, model: Roberta, max_len: int, num_classes: int,
               classifier_dropout: float = 0.1, tie_lm_decoders: bool = False,
               pretrained: Optional[dict] = None):
    if not 2 <= max_len <= model.max_len:
      raise ValueError(f"max_len={max_len} must be in [2, {model.max_len}] for this "
                       "encoder.")
    self.model = model
    self.encoder, self.lm_module = model.encoder, model.lm_head
    self.width, self.max_len = model.width, max_len
    self.vocab_size = model.config.vocab_size
    self.num_classes = num_classes
    self.classifier_dropout = classifier_dropout
    self.tie_lm_decoders = tie_lm_decoders
    self.pretrained = pretrained

  # Body. -------------------------------------------------------------------------

  def init_encoder(self, key: jax.Array) -> Any:
    if self.pretrained is not None:
      return jax.tree.map(jnp.asarray, self.pretrained["encoder"])
    length = min(8, self.max_len)
    return self.encoder.init(key, jnp.zeros((1, length), jnp.int32),
                             jnp.ones((1, length, length), bool))["params"]

  def encode(self, encoder, tokens, mask, key=None) -> jax.Array:
    """States [B, L, D] under mask bool[B, L, L]; dropout iff ``key`` is given."""
    rngs = None if key is None else {"dropout": key}
    return self.encoder.apply({"params": encoder}, tokens, mask,
                              deterministic=key is None, rngs=rngs)

  def embedding(self, encoder) -> jax.Array:
    node = encoder
    for p in EMBEDDING_PATH:
      node = node[p]
    return node

  # Heads. ------------------------------------------------------------------------

  def classifier(self, activation: str = "tanh") -> ClassifierHead:
    return ClassifierHead(self.num_classes, self.width, self.classifier_dropout,
                          activation)

  def init_classifier(self, key, activation: str = "tanh"):
    return self.classifier(activation).init(key, jnp.zeros((1, self.width)))["params"]

  def classify(self, head, states, key=None, activation: str = "tanh") -> jax.Array:
    """Class logits f32[B, K] from the ``<s>`` (position 0) state."""
    rngs = None if key is None else {"dropout": key}
    return self.classifier(activation).apply(
        {"params": head}, states[:, 0].astype(jnp.float32), deterministic=key is None,
        rngs=rngs)

  def init_lm_head(self, key, encoder) -> dict:
    """One LM head ``{"head", "decoder"?}`` (a copy of the checkpoint's, if any)."""
    emb = self.embedding(encoder)
    if self.pretrained is not None:
      head = jax.tree.map(jnp.asarray, self.pretrained["lm_head"])
      decoder = jnp.array(emb)
    else:
      k_h, k_d = jax.random.split(key)
      head = self.lm_module.init(k_h, jnp.zeros((1, 1, self.width)), emb)["params"]
      decoder = 0.02 * jax.random.normal(k_d, emb.shape, jnp.float32)
    return {"head": head} if self.tie_lm_decoders else {"head": head, "decoder": decoder}

  def lm_logits(self, lm_head, encoder, states) -> jax.Array:
    """Token logits f32[B, L, V] of one LM head."""
    decoder = lm_head["decoder"] if "decoder" in lm_head else self.embedding(encoder)
    return self.lm_module.apply({"params": lm_head["head"]}, states,
                                decoder).astype(jnp.float32)

  def init(self, key: jax.Array, num_denoise: int, num_supervised: int) -> dict:
    """The params tree of the module docstring."""
    k_e, k_p, k_l, k_s = jax.random.split(key, 4)
    enc = self.init_encoder(k_e)
    params = {"encoder": enc, "primary_head": self.init_classifier(k_p, PRIMARY_ACTIVATION)}
    # vmap over the heads' keys: one trace for all of them.
    if num_denoise:
      params["lm_heads"] = jax.vmap(lambda k: self.init_lm_head(k, enc))(
          jax.random.split(k_l, num_denoise))
    if num_supervised:
      params["aux_heads"] = jax.vmap(
          lambda k: self.init_classifier(k, AUX_ACTIVATION))(
          jax.random.split(k_s, num_supervised))
    return params


def fresh_net(tokenizer, max_len: int, num_classes: int, *, width: int, depth: int,
              num_heads: int, mlp_dim: int, dropout: float, dtype="float32",
              classifier_dropout: float = 0.1, tie_lm_decoders: bool = False,
              kernel_init: str = "normal") -> AangNet:
  """A small RoBERTa initialised from scratch over ``tokenizer``'s ids (`HFTokenizer`).

  The position table has ``max_len`` rows after RoBERTa's ``pad_id + 1`` offset.
  ``kernel_init`` is `RobertaConfig`'s (RoBERTa's N(0, 0.02) by default; the
  from-scratch AANG config sets ``"lecun_normal"``).
  """
  config = RobertaConfig(
      vocab_size=tokenizer.vocab_size, hidden_size=width, num_hidden_layers=depth,
      num_attention_heads=num_heads, intermediate_size=mlp_dim,
      max_position_embeddings=max_len + tokenizer.pad_id + 1,
      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
      pad_token_id=tokenizer.pad_id, kernel_init=kernel_init)
  return AangNet(Roberta(config, num_classes, jnp.dtype(dtype)), max_len, num_classes,
                 classifier_dropout, tie_lm_decoders)


def pretrained_net(pretrained, num_classes: int, classifier_dropout: float = 0.1,
                   tie_lm_decoders: bool = False) -> AangNet:
  """The RoBERTa of `aux_jax.models.roberta.load_pretrained`'s result, its weights loaded."""
  host = lambda t: jax.tree.map(np.asarray, t)
  return AangNet(pretrained.model, pretrained.max_len, num_classes, classifier_dropout,
                 tie_lm_decoders,
                 pretrained={"encoder": host(pretrained.params["encoder"]),
                             "lm_head": host(pretrained.params["lm_head"])})
