"""The R axis of AANG: the attention mask of a representation.

AANG (Dery et al., ICLR 2023) varies *which positions a token may attend to*; the
original builds these masks in ``AutoSearchSpace/representation_mask.py:9-30``
(ldery/Automating-Auxiliary-Learning @ f876fe2). For a batch of L-token sequences,
``mask[b, i, j]`` = query i of example b may read key j:

* ``bidirectional``: every key;
* ``left_to_right``: ``j <= i`` (lower triangle, diagonal included);
* ``right_to_left``: ``j >= i`` (upper triangle, diagonal included);
* ``random_factorized``: one L×L matrix of i.i.d. Bernoulli(``rf_keep_prob`` = 0.6)
  entries with a zero diagonal, *shared by every example of the batch* (the original's
  ``uniform > 1 - sparsity``), not a permutation order.

Keys at PAD positions are hidden for every representation. (The original hides them
only in the primary/evaluation batches; its R = None and random-factorised auxiliary
batches attend to padding: a defect we do not reproduce.)

Copy cases. The denoising target is the original token at each selected position
(`objectives`). With T = none the input is unchanged, so under ``bidirectional``,
``left_to_right`` and ``right_to_left`` the target is visible at its own position (the
diagonal): the objective is to copy the input. With ``copy_fix=True`` (default) the
diagonal is hidden in exactly these cases (denoise output only), which makes them real denoising objectives;
``copy_fix=False`` reproduces the original. Random-factorised already has no diagonal.
A fully hidden row (e.g. the first token under L2R without the diagonal) attends
uniformly (the additive ``min`` bias makes the softmax flat), as in PyTorch/HF.

Codes index `space.REPRESENTATIONS` / `space.TRANSFORMS` and may be traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aux_jax.aang.space import REPRESENTATIONS, TRANSFORMS

BIDIRECTIONAL, LEFT_TO_RIGHT, RIGHT_TO_LEFT, RANDOM_FACTORIZED = range(4)
assert REPRESENTATIONS == ("bidirectional", "left_to_right", "right_to_left",
                           "random_factorized")
NO_TRANSFORM = TRANSFORMS.index("none")


def representation_mask(key: jax.Array, valid: jax.Array, representation, transform,
                        *, rf_keep_prob: float = 0.6, copy_fix: bool = True,
                        denoise=True) -> jax.Array:
  """The attention mask of one auxiliary batch (module docstring).

  Args:
    key: PRNG key (the random-factorised matrix; one per batch).
    valid: bool[B, L], True at real tokens.
    representation: i32[] R code (may be traced).
    transform: i32[] T code (the copy cases need T = none).
    rf_keep_prob: probability that a random-factorised entry is kept.
    copy_fix: hide the diagonal in the copy cases.
    denoise: bool[] whether the output is denoise (a supervised output reads ``<s>``
      only, so it is never a copy case).

  Returns:
    bool[B, L, L] (query, key).
  """
  length = valid.shape[-1]
  i = jnp.arange(length)[:, None]
  j = jnp.arange(length)[None, :]
  random = (jax.random.uniform(key, (length, length)) < rf_keep_prob) & (i != j)
  base = jnp.select(
      [representation == LEFT_TO_RIGHT, representation == RIGHT_TO_LEFT,
       representation == RANDOM_FACTORIZED],
      [j <= i, j >= i, random], jnp.ones((length, length), bool))
  if copy_fix:
    copy = ((transform == NO_TRANSFORM) & (representation != RANDOM_FACTORIZED)
            & denoise)
    base = base & ~(copy & (i == j))
  return base[None] & valid[:, None, :]


def padding_mask(valid: jax.Array) -> jax.Array:
  """bool[..., L, L] bidirectional mask that hides PAD keys (evaluation, primary task)."""
  return jnp.broadcast_to(valid[..., None, :], valid.shape + valid.shape[-1:])
