"""The loss of one AANG objective ``(I, T, R, O)`` on its share of a batch, branch-free.

For clean input tokens ``x`` (i32[B, L], from the objective's input source) and the
rows of the batch that belong to the objective (``rows`` bool[B], see
`weights.batch_split`):

1. ``x~, sel = corrupt(x, T)``: 15 % of the regular tokens selected, BERT-style
   (`transforms`); ``sel`` marks them;
2. ``M = representation_mask(R, T)`` (`attention`);
3. ``h = encoder(x~, M)``;
4. output O:

   * ``denoise``: the objective's own LM head predicts the *original* token at every
     selected position, for every R: targets ``x_i``, weights ``sel_i · rows_b``
     (``data.py:429``, ``data_utils.py:28-89`` of the original, ldery/
     Automating-Auxiliary-Learning @ f876fe2). The loss is the mean token cross-entropy
     over the targets, ``sum w CE / max(sum w, 1)``;
   * ``supervised``: the objective's own classifier on the ``<s>`` state, mean CE over
     the objective's rows.

   ``n_active`` is the number of targets (denoise) or rows (supervised): the original
   weights each objective's clipped gradient by it in the balance cosine
   (``modelling.py:686-717``).

All codes may be traced (objectives are sampled inside jit): both outputs are computed
when the space has both, and one is selected with ``jnp.where``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from aux_jax.aang import attention
from aux_jax.aang.space import OUTPUTS
from aux_jax.aang.model import AUX_ACTIVATION
from aux_jax.aang.transforms import corrupt

DENOISE, SUPERVISED = OUTPUTS.index("denoise"), OUTPUTS.index("supervised")


class TokenSpec(NamedTuple):
  """Token-id conventions the objectives need.

  Attributes:
    pad_id, mask_id: ids of PAD and MASK.
    special_ids: tuple of every special id (never selected, never a target).
    random_low, random_high: random replacement tokens are uniform in
      ``[random_low, random_high)``.
    rate: selection probability (15 %).
  """

  pad_id: int
  mask_id: int
  special_ids: tuple
  random_low: int
  random_high: int
  rate: float = 0.15


def token_spec(tokenizer, rate: float = 0.15) -> TokenSpec:
  """The `TokenSpec` of an `aux_jax.models.hf_tokenizer.HFTokenizer`."""
  return TokenSpec(int(tokenizer.pad_id), int(tokenizer.mask_id),
                   tuple(int(i) for i in tokenizer.special_ids),
                   int(tokenizer.first_regular_id), int(tokenizer.end_regular_id), rate)


class ObjectiveBatch(NamedTuple):
  """The model-ready form of one objective on one batch.

  Attributes:
    tokens: i32[B, L], transformed input.
    mask: bool[B, L, L], attention mask.
    targets: i32[B, L], the clean tokens (denoise targets where ``weights`` is 1).
    weights: f32[B, L], 1 at the selected (transformed) positions.
  """

  tokens: jax.Array
  mask: jax.Array
  targets: jax.Array
  weights: jax.Array


def make_objective_batch(key: jax.Array, tokens: jax.Array, transform, representation,
                         spec: TokenSpec, *, rf_keep_prob: float = 0.6,
                         copy_fix: bool = True, output=DENOISE) -> ObjectiveBatch:
  """Transform, attention mask and denoise targets of one objective (steps 1-2).

  Args:
    key: PRNG key of the (I, T, R) group: objectives differing only in O get the same
      batch, as in the original (``data.py:417-438``).
    tokens: i32[B, L] clean input ids.
    transform, representation: i32[] codes (may be traced).
    spec: token conventions.
    rf_keep_prob, copy_fix: see `attention.representation_mask`.
    output: i32[] O code (the copy fix applies to denoise outputs).
  """
  k_t, k_r = jax.random.split(key)
  corrupted, selected = corrupt(
      k_t, tokens, transform, mask_id=spec.mask_id, first_regular_id=spec.random_low,
      vocab_size=spec.random_high, rate=spec.rate, special_ids=spec.special_ids)
  mask = attention.representation_mask(k_r, tokens != spec.pad_id, representation,
                                       transform, rf_keep_prob=rf_keep_prob,
                                       copy_fix=copy_fix, denoise=output == DENOISE)
  return ObjectiveBatch(corrupted, mask, tokens, selected.astype(jnp.float32))


def denoise_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """``sum w * CE(logits, targets) / max(sum w, 1)``; f32[B, L, V], i32[B, L], f32[B, L]."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(weights * ce) / jnp.maximum(jnp.sum(weights), 1.0)


def classification_loss(logits: jax.Array, labels: jax.Array,
                        weights: jax.Array | None = None) -> jax.Array:
  """Mean CE over the batch (or over the rows with ``weights``); f32[B, K], i32[B]."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return jnp.mean(ce)
  return jnp.sum(weights * ce) / jnp.maximum(jnp.sum(weights), 1.0)


def objective_loss(net, encoder, lm_head, cls_head, key, tokens, labels, rows,
                   transform, representation, output, spec: TokenSpec, *,
                   has_denoise: bool = True, has_supervised: bool = True,
                   rf_keep_prob: float = 0.6, copy_fix: bool = True,
                   dropout: bool = True) -> tuple[jax.Array, jax.Array]:
  """Loss of objective ``(·, T, R, O)`` on its rows of ``tokens`` (module docstring).

  Args:
    net: the `model.AangNet`.
    encoder: the body's params.
    lm_head: the objective's LM head ``{"head", "decoder"?}`` (ignored without
      ``has_denoise``); cls_head: its classifier (ignored without ``has_supervised``).
    key: the (I, T, R) group's PRNG key (corruption, RF mask, dropout).
    tokens: i32[B, L] clean input.  labels: i32[B] task labels (supervised only).
    rows: f32[B], 1 on the objective's rows.
    transform, representation, output: i32[] codes (may be traced).
    spec: token conventions.
    has_denoise, has_supervised: whether the space has objectives of each output
      (static; the missing branch is not computed).
    rf_keep_prob, copy_fix: see `attention.representation_mask`.
    dropout: whether to apply dropout.

  Returns:
    ``(loss, n_active)``, f32[] each.
  """
  k_b, k_enc, k_cls = jax.random.split(key, 3)
  ob = make_objective_batch(k_b, tokens, transform, representation, spec,
                            rf_keep_prob=rf_keep_prob, copy_fix=copy_fix, output=output)
  states = net.encode(encoder, ob.tokens, ob.mask, k_enc if dropout else None)
  out = []
  if has_denoise:
    w = ob.weights * rows[:, None]
    logits = net.lm_logits(lm_head, encoder, states)
    out.append((DENOISE, denoise_loss(logits, ob.targets, w), jnp.sum(w)))
  if has_supervised:
    # The auxiliary supervised heads are ReLU classifiers (modelling.py:295).
    cls_logits = net.classify(cls_head, states, k_cls if dropout else None,
                              activation=AUX_ACTIVATION)
    out.append((SUPERVISED, classification_loss(cls_logits, labels, rows), jnp.sum(rows)))
  if len(out) == 1:
    return out[0][1], out[0][2]
  (_, l_lm, n_lm), (_, l_sup, n_sup) = out
  sup = output == SUPERVISED
  return jnp.where(sup, l_sup, l_lm), jnp.where(sup, n_sup, n_lm)
