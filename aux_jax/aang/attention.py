"""The R axis of AANG: attention masks from a factorisation order.

Every representation is a *factorisation order* over the real (non-PAD) positions of a
sequence, given as a rank ``rank[i]`` (0 = first):

* ``left_to_right``: rank = position;  ``right_to_left``: rank = L-1 - position (among
  real tokens);  ``random_factorized``: a uniformly random permutation (XLNet: Yang et
  al., 2019);  ``bidirectional``: no order.

The attention mask lets query ``i`` read key ``j`` iff ``j`` is a real token and

    bidirectional:  always;        otherwise:  rank[j] <= rank[i],

i.e. a position sees itself and everything before it in the order, never the future.
PAD positions are ranked after every real token, so they are nobody's predecessor.

The denoise target under an order is the token at ``next_position``: the position ranked
right after ``i`` (the next token for L2R, the previous one for R2L). Predicting the token
*at* ``i`` with the diagonal visible is a copy task (a defect of the original AANG code);
predicting the next one in the order is not. Codes index `space.REPRESENTATIONS` and may
be traced. Functions work on one sequence; ``jax.vmap`` them over a batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aux_jax.aang.space import REPRESENTATIONS

BIDIRECTIONAL, LEFT_TO_RIGHT, RIGHT_TO_LEFT, RANDOM_FACTORIZED = range(4)
assert REPRESENTATIONS == ("bidirectional", "left_to_right", "right_to_left",
                           "random_factorized")


def factorization_rank(
    key: jax.Array, valid: jax.Array, representation: jax.Array | int) -> jax.Array:
  """Rank of each position in the representation's order.

  Args:
    key: PRNG key (used by ``random_factorized`` only).
    valid: bool[L], True at real tokens, False at PAD.
    representation: i32[] code (index into `space.REPRESENTATIONS`).

  Returns:
    i32[L], a permutation of ``0..L-1``; real tokens take ranks ``0..n-1``.
  """
  length = valid.shape[-1]
  pos = jnp.arange(length, dtype=jnp.float32)
  base = jnp.select(
      [representation == RIGHT_TO_LEFT, representation == RANDOM_FACTORIZED],
      [-pos, jax.random.uniform(key, (length,), minval=-1.0, maxval=0.0) * length],
      pos)
  # PAD after every real token, in position order; real keys are all < length.
  sort_key = jnp.where(valid, base, 2.0 * length + pos)
  order = jnp.argsort(sort_key)
  return jnp.argsort(order).astype(jnp.int32)


def attention_mask(
    rank: jax.Array, valid: jax.Array, representation: jax.Array | int) -> jax.Array:
  """bool[L, L] mask, ``mask[i, j]`` = query i may attend to key j (module docstring)."""
  ordered = rank[None, :] <= rank[:, None]
  allowed = jnp.where(representation == BIDIRECTIONAL, True, ordered)
  return allowed & valid[None, :]


def next_position(rank: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The position ranked right after each position.

  Args:
    rank: i32[L] from `factorization_rank`.

  Returns:
    ``(next_pos, has_next)``: i32[L] the next position (clamped to a valid index) and
    bool[L] whether one exists (False for the last rank).
  """
  length = rank.shape[-1]
  order = jnp.argsort(rank)
  nxt = jnp.minimum(rank + 1, length - 1)
  return order[nxt].astype(jnp.int32), rank + 1 < length


def representation_mask(
    key: jax.Array, valid: jax.Array, representation: jax.Array | int
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mask and denoise target positions for one sequence.

  Args:
    key: PRNG key.
    valid: bool[L], real (non-PAD) tokens.
    representation: i32[] code.

  Returns:
    ``(mask, next_pos, has_next)``: bool[L, L], i32[L], bool[L] (see `attention_mask`,
    `next_position`).
  """
  rank = factorization_rank(key, valid, representation)
  nxt, has_next = next_position(rank)
  return attention_mask(rank, valid, representation), nxt, has_next


def padding_mask(valid: jax.Array) -> jax.Array:
  """bool[..., L, L] bidirectional mask that hides PAD keys (evaluation, primary task)."""
  return jnp.broadcast_to(valid[..., None, :], valid.shape + valid.shape[-1:])
