"""The loss of one AANG objective ``(I, T, R, O)`` on a batch, branch-free.

For input tokens ``x`` (i32[B, L], from the input source I), with a PRNG key:

1. ``x~, sel = corrupt(x, T)``                          (`transforms`)
2. per sequence, an order and mask from R: ``M, nxt, has_next``  (`attention`)
3. ``h = encoder(x~, M)``
4. output O:

   * ``supervised``:  CE(classifier(h[:, 0]), y), mean over the batch.
   * ``denoise``, R = bidirectional: predict the original token at the selected
     positions: targets ``x_i``, weights ``sel_i``.
   * ``denoise``, R ordered (L2R, R2L, random-factorised): predict the token that comes
     *next in the order*, ``x_{nxt(i)}`` (next token for L2R, previous token for R2L),
     at every position that has a next regular token. This is the fix of the original's
     copy task (predicting ``x_i`` while attending to position ``i``).

   The denoise loss is the weighted mean of token cross-entropies,
   ``sum_i w_i CE_i / max(sum_i w_i, 1)``; the LM head also receives the target position
   (``i`` or ``nxt(i)``) as a query.

All codes may be traced (objectives are sampled inside jit): both outputs are computed and
one is selected with ``jnp.where``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from aux_jax.aang import attention
from aux_jax.aang.space import OUTPUTS
from aux_jax.aang.transforms import corrupt
from aux_jax.aang.transformer import AangModel

DENOISE, SUPERVISED = OUTPUTS.index("denoise"), OUTPUTS.index("supervised")


class TokenSpec(NamedTuple):
  """Token-id conventions the objectives need (see `tokenizer.ByteTokenizer`)."""

  pad_id: int
  mask_id: int
  first_regular_id: int
  vocab_size: int
  rate: float = 0.15


class ObjectiveBatch(NamedTuple):
  """The model-ready form of one objective on one batch.

  Attributes:
    tokens: i32[B, L], transformed input.
    mask: bool[B, L, L], attention mask.
    targets: i32[B, L], denoise target ids.
    query_pos: i32[B, L], position whose token each position predicts.
    weights: f32[B, L], denoise target weights (0/1).
  """

  tokens: jax.Array
  mask: jax.Array
  targets: jax.Array
  query_pos: jax.Array
  weights: jax.Array


def make_objective_batch(
    key: jax.Array,
    tokens: jax.Array,
    transform: jax.Array | int,
    representation: jax.Array | int,
    spec: TokenSpec,
) -> ObjectiveBatch:
  """Transform, mask and denoise targets of one objective (module docstring, 1-2).

  Args:
    key: PRNG key.
    tokens: i32[B, L] clean input ids.
    transform: i32[] code (index into `space.TRANSFORMS`).
    representation: i32[] code (index into `space.REPRESENTATIONS`).
    spec: token conventions.

  Returns:
    An `ObjectiveBatch`.
  """
  k_t, k_r = jax.random.split(key)
  corrupted, selected = corrupt(
      k_t, tokens, transform, mask_id=spec.mask_id,
      first_regular_id=spec.first_regular_id, vocab_size=spec.vocab_size,
      rate=spec.rate)
  valid = tokens != spec.pad_id
  keys = jax.random.split(k_r, tokens.shape[0])
  mask, nxt, has_next = jax.vmap(attention.representation_mask, (0, 0, None))(
      keys, valid, representation)
  next_tokens = jnp.take_along_axis(tokens, nxt, axis=-1)
  ordered_w = has_next & valid & (next_tokens >= spec.first_regular_id)
  bidir = representation == attention.BIDIRECTIONAL
  positions = jnp.broadcast_to(jnp.arange(tokens.shape[-1]), tokens.shape)
  return ObjectiveBatch(
      tokens=corrupted,
      mask=mask,
      targets=jnp.where(bidir, tokens, next_tokens),
      query_pos=jnp.where(bidir, positions, nxt).astype(jnp.int32),
      weights=jnp.where(bidir, selected, ordered_w).astype(jnp.float32),
  )


def denoise_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """``sum w * CE(logits, targets) / max(sum w, 1)``; f32[B, L, V], i32[B, L], f32[B, L]."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(weights * ce) / jnp.maximum(jnp.sum(weights), 1.0)


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean CE over the batch; f32[B, K], i32[B]."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def objective_loss(
    model: AangModel,
    params: dict,
    key: jax.Array,
    tokens: jax.Array,
    labels: jax.Array,
    transform: jax.Array | int,
    representation: jax.Array | int,
    output: jax.Array | int,
    spec: TokenSpec,
    dropout: bool = True,
) -> jax.Array:
  """Scalar loss of objective ``(·, T, R, O)`` on ``tokens`` (module docstring).

  Args:
    model: the `AangModel`.
    params: ``{"encoder", "lm_head", "cls_head"}``.
    key: PRNG key (corruption, random order, dropout).
    tokens: i32[B, L] clean input of the objective's input source.
    labels: i32[B] task labels (used by the supervised output only).
    transform, representation, output: i32[] codes (may be traced).
    spec: token conventions.
    dropout: whether to apply dropout.

  Returns:
    f32[] loss.
  """
  k_b, k_d = jax.random.split(key)
  ob = make_objective_batch(k_b, tokens, transform, representation, spec)
  k_enc, k_cls = jax.random.split(k_d)
  states = model.encode(params, ob.tokens, ob.mask, k_enc if dropout else None)
  lm = denoise_loss(model.lm_logits(params, states, ob.query_pos), ob.targets, ob.weights)
  cls_logits = model.classify(params["cls_head"], states, k_cls if dropout else None)
  sup = classification_loss(cls_logits, labels)
  return jnp.where(output == SUPERVISED, sup, lm)
