"""A small Flax Transformer encoder with a language-model head and a classifier head.

Pre-LayerNorm blocks (Xiong et al., 2020) over learned token + position embeddings:

    x_0 = E[tokens] + P[0:L]
    x_{l+1} = x_l' + MLP(LN(x_l')),   x_l' = x_l + MHA(LN(x_l); mask)
    h = LN(x_depth)                                  f32[B, L, D]

The mask is given per example, bool[B, L, L] (query, key), so AANG's R axis (causal,
anti-causal, random-factorised) is just data. Trained from scratch.

Heads (separate modules so that the shared body is exactly ``params["encoder"]``):

* `LMHead`: ``logits = (LN(gelu(W (h_i + Q[t_i])))) E^T + b`` with E the encoder's
  embedding (tied) or its own matrix. ``Q[t_i]`` is a learned *query-position*
  embedding of the position whose token is predicted (``t_i = i`` for bidirectional
  denoising, the next position in the order otherwise): a light form of XLNet's query
  stream that tells a random-factorised objective which token to predict.
* `ClassifierHead`: ``logits = W_2 tanh(W_1 h_CLS)`` (the RoBERTa head), on position 0.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Encoder sizes.

  Attributes:
    vocab_size: number of token ids.
    max_len: longest sequence (size of the position table).
    width: model width D.
    depth: number of blocks.
    num_heads: attention heads (must divide width).
    mlp_dim: hidden size of each block's MLP.
    dropout: dropout rate on attention weights and residual branches.
  """

  vocab_size: int = 260
  max_len: int = 128
  width: int = 64
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  dropout: float = 0.1

  def __post_init__(self):
    if self.width % self.num_heads:
      raise ValueError(
          f"width ({self.width}) must be divisible by num_heads ({self.num_heads}).")
    for f in ("vocab_size", "max_len", "width", "depth", "num_heads", "mlp_dim"):
      if getattr(self, f) < 1:
        raise ValueError(f"EncoderConfig.{f} must be >= 1, got {getattr(self, f)}.")


class Block(nn.Module):
  """One pre-LN Transformer block."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool):
    c = self.config
    y = nn.LayerNorm()(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=c.num_heads, dropout_rate=c.dropout, name="attention")(
            y, y, mask=mask[:, None], deterministic=deterministic)
    x = x + nn.Dropout(c.dropout)(y, deterministic=deterministic)
    y = nn.LayerNorm()(x)
    y = nn.Dense(c.mlp_dim)(y)
    y = nn.gelu(y)
    y = nn.Dense(c.width)(y)
    return x + nn.Dropout(c.dropout)(y, deterministic=deterministic)


class Encoder(nn.Module):
  """Token states of a sequence under a given attention mask.

  Call: ``(tokens i32[B, L], mask bool[B, L, L], deterministic) -> f32[B, L, D]``.
  The token embedding lives at ``params["embed"]["embedding"]`` (f32[V, D]).
  """

  config: EncoderConfig

  @nn.compact
  def __call__(self, tokens, mask, deterministic: bool = True):
    c = self.config
    if tokens.shape[-1] > c.max_len:
      raise ValueError(
          f"Sequence length {tokens.shape[-1]} exceeds EncoderConfig.max_len={c.max_len}.")
    init = nn.initializers.normal(0.02)
    x = nn.Embed(c.vocab_size, c.width, embedding_init=init, name="embed")(tokens)
    pos = self.param("position", init, (c.max_len, c.width))
    x = x + pos[: tokens.shape[-1]]
    x = nn.Dropout(c.dropout)(x, deterministic=deterministic)
    for i in range(c.depth):
      x = Block(c, name=f"block_{i}")(x, mask, deterministic)
    return nn.LayerNorm(name="final_ln")(x)


class LMHead(nn.Module):
  """Token logits f32[B, L, V] from states f32[B, L, D] and query positions i32[B, L].

  Attributes:
    config: the encoder's config.
    tied: decode with the encoder's embedding matrix (passed as ``embedding``).
  """

  config: EncoderConfig
  tied: bool = True

  @nn.compact
  def __call__(self, states, query_pos, embedding=None):
    c = self.config
    q = self.param("query_position", nn.initializers.normal(0.02), (c.max_len, c.width))
    x = states + q[query_pos]
    x = nn.LayerNorm()(nn.gelu(nn.Dense(c.width)(x)))
    if self.tied:
      if embedding is None:
        raise ValueError("A tied LMHead needs the encoder embedding f32[V, D].")
      logits = x @ embedding.T
    else:
      logits = nn.Dense(c.vocab_size, use_bias=False, name="decoder")(x)
    return logits + self.param("bias", nn.initializers.zeros, (c.vocab_size,))


class ClassifierHead(nn.Module):
  """Class logits f32[B, K] from the CLS state f32[B, D]."""

  num_classes: int
  hidden: int
  dropout: float = 0.1

  @nn.compact
  def __call__(self, cls_state, deterministic: bool = True):
    x = nn.Dropout(self.dropout)(cls_state, deterministic=deterministic)
    x = jnp.tanh(nn.Dense(self.hidden)(x))
    x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    return nn.Dense(self.num_classes)(x)


@dataclasses.dataclass(frozen=True)
class AangModel:
  """The encoder and its heads as pure functions over one params dict.

  ``params = {"encoder", "lm_head", "cls_head"}``; ``params["encoder"]`` is the shared
  body whose gradients AANG compares.
  """

  config: EncoderConfig
  num_classes: int
  tied: bool = True

  @property
  def encoder(self) -> Encoder:
    return Encoder(self.config)

  @property
  def lm_head(self) -> LMHead:
    return LMHead(self.config, tied=self.tied)

  @property
  def cls_head(self) -> ClassifierHead:
    return ClassifierHead(self.num_classes, self.config.width, self.config.dropout)

  def init(self, key: jax.Array) -> dict:
    """Initial params for sequences of ``config.max_len``."""
    k_e, k_l, k_c = jax.random.split(key, 3)
    c = self.config
    tokens = jnp.zeros((1, c.max_len), jnp.int32)
    mask = jnp.ones((1, c.max_len, c.max_len), bool)
    enc = self.encoder.init(k_e, tokens, mask)["params"]
    states = jnp.zeros((1, c.max_len, c.width))
    emb = enc["embed"]["embedding"]
    lm = self.lm_head.init(k_l, states, jnp.zeros((1, c.max_len), jnp.int32), emb)
    cls = self.cls_head.init(k_c, states[:, 0])
    return {"encoder": enc, "lm_head": lm["params"], "cls_head": cls["params"]}

  def encode(self, params, tokens, mask, key=None):
    """States f32[B, L, D]; dropout is on iff ``key`` is given."""
    rngs = None if key is None else {"dropout": key}
    return self.encoder.apply({"params": params["encoder"]}, tokens, mask,
                              deterministic=key is None, rngs=rngs)

  def lm_logits(self, params, states, query_pos):
    """Token logits f32[B, L, V]."""
    emb = params["encoder"]["embed"]["embedding"] if self.tied else None
    return self.lm_head.apply({"params": params["lm_head"]}, states, query_pos, emb)

  def classify(self, head_params, states, key=None):
    """Class logits f32[B, K] from the CLS (position 0) state with a classifier head."""
    rngs = None if key is None else {"dropout": key}
    return self.cls_head.apply({"params": head_params}, states[:, 0],
                               deterministic=key is None, rngs=rngs)
