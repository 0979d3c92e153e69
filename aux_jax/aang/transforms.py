"""The T axis of AANG: input corruptions, keyed by a PRNG key, branch-free.

Each transform first *selects* every regular token independently with probability
``rate`` (15%, as in BERT: Devlin et al., 2019) and then rewrites selected tokens:

=========  =====================  ======================  ==================
transform  P(MASK | selected)     P(random | selected)    P(kept | selected)
=========  =====================  ======================  ==================
none       0                      0                       1
replace    0                      1                       0
mask       1                      0                       0
bert       0.8                    0.1                     0.1
=========  =====================  ======================  ==================

A random token is uniform over the regular ids ``[first_regular_id, vocab_size)`` (it may
equal the original, as in BERT; the original AANG draws from the whole vocabulary,
special ids included, ``data_utils.py:66-70``: we keep specials out of the input).
Special tokens (``special_ids``: PAD, CLS/``<s>``, SEP/``</s>``, MASK, UNK, ...) are
never selected, so they are never corrupted and never become targets; padding is
thereby respected. Specials are a set of ids, not a range: RoBERTa's ``<mask>`` is its
last id. The transform is an integer code (index into
`space.TRANSFORMS`) and may be a traced value: every branch is a ``jnp.where``, so the
function vmaps over objectives.

``none`` still selects positions: they are the denoise targets of the identity objective
``(none, bidirectional, denoise)`` (see `space`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.aang.space import TRANSFORMS

# Rows follow space.TRANSFORMS: (P(mask | selected), P(random | selected)).
_REWRITE_PROBS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.8, 0.1]], np.float32)
assert TRANSFORMS == ("none", "replace", "mask", "bert")


def corrupt(
    key: jax.Array,
    tokens: jax.Array,
    transform: jax.Array | int,
    *,
    mask_id: int,
    first_regular_id: int,
    vocab_size: int,
    rate: float = 0.15,
    special_ids=None,
) -> tuple[jax.Array, jax.Array]:
  """Applies transform ``transform`` to ``tokens``.

  Args:
    key: PRNG key.
    tokens: i32[..., L] token ids.
    transform: i32[] code, an index into `space.TRANSFORMS` (may be traced).
    mask_id: id of the MASK token.
    first_regular_id: random tokens are drawn from ``[first_regular_id, vocab_size)``.
    vocab_size: end of the range of random tokens.
    rate: selection probability of each regular token.
    special_ids: ids never selected (a sequence of ints); None: every id below
      ``first_regular_id`` (a layout with every special below the regular ids).

  Returns:
    ``(corrupted, selected)``: i32[..., L] the new ids and bool[..., L] the selected
    positions (the denoise targets under a bidirectional mask).
  """
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f"rate must be in [0, 1], got {rate}.")
  if vocab_size <= first_regular_id:
    raise ValueError(
        f"vocab_size ({vocab_size}) must exceed first_regular_id ({first_regular_id}).")
  k_sel, k_how, k_tok = jax.random.split(key, 3)
  if special_ids is None:
    regular = tokens >= first_regular_id
  else:
    regular = ~jnp.isin(tokens, jnp.asarray(special_ids, tokens.dtype))
  selected = regular & (jax.random.uniform(k_sel, tokens.shape) < rate)
  probs = jnp.asarray(_REWRITE_PROBS)[transform]
  u = jax.random.uniform(k_how, tokens.shape)
  to_mask = selected & (u < probs[0])
  to_random = selected & (u >= probs[0]) & (u < probs[0] + probs[1])
  random_tokens = jax.random.randint(
      k_tok, tokens.shape, first_regular_id, vocab_size, dtype=tokens.dtype)
  out = jnp.where(to_mask, jnp.asarray(mask_id, tokens.dtype), tokens)
  out = jnp.where(to_random, random_tokens, out)
  return out, selected
