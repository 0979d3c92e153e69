"""A small Flax Transformer encoder with a language-model head and a classifier head.

Pre-LayerNorm blocks (Xiong et al., 2020) over learned token + position embeddings:

    x_0 = E[tokens] + P[0:L]
    x_{l+1} = x_l' + MLP(LN(x_l')),   x_l' = x_l + MHA(LN(x_l); mask)
    h = LN(x_depth)                                  f32[B, L, D]

The mask is given per example, bool[B, L, L] (query, key), so AANG's R axis (causal,
anti-causal, random-factorised) is just data. Trained from scratch.

Heads (separate modules so that the shared body is exactly the encoder's params):

* `LMHead`: ``logits = LN(gelu(W h_i + b)) E^T + c``, predicting the token at position
  i, with E the encoder's embedding (tied) or the head's own decoder.
* `ClassifierHead`: ``logits = W_2 act(W_1 h_CLS)``, on position 0.

`aux_jax.aang.model` wraps the encoder and these heads for the AANG step.
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
  """Token logits f32[B, L, V] from states f32[B, L, D] and a decoder matrix f32[V, D].

  ``logits = LN(gelu(W h + b)) E^T + c``, the shape of RoBERTa's MLM head. ``E`` is
  passed in: the encoder's embedding (tied) or the head's own decoder.
  """

  config: EncoderConfig

  @nn.compact
  def __call__(self, states, decoder):
    c = self.config
    x = nn.LayerNorm()(nn.gelu(nn.Dense(c.width)(states)))
    return x @ decoder.T + self.param("bias", nn.initializers.zeros, (c.vocab_size,))


class ClassifierHead(nn.Module):
  """Class logits f32[B, K] from the CLS state f32[B, D].

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
