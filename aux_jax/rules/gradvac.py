"""GradVac: gradient vaccine (Wang et al., ICLR 2021, "Gradient Vaccine: Investigating
and Improving Multi-task Optimization in Massively Multilingual Models").

Where PCGrad only acts on negative cosines, GradVac pulls every pair's cosine up to an
adaptive target: the exponential moving average φ̂_ij of the cosines seen so far. For
every task i, starting from g_i' = g_i, and for every other task j in a random order:

    φ_ij = ⟨g_i', g_j⟩ / (‖g_i'‖ ‖g_j‖)
    if φ_ij < φ̂_ij:
        g_i' ← g_i' + ‖g_i'‖ (φ̂_ij √(1 − φ_ij²) − φ_ij √(1 − φ̂_ij²)) / (‖g_j‖ √(1 − φ̂_ij²)) · g_j
    φ̂_ij ← (1 − β) φ̂_ij + β φ_ij                                  (paper Algorithm 1)

(against the original g_j, with the running g_i'); the update is Σ_i g_i', and φ̂
starts at 0. The added multiple of g_j makes the new cosine equal φ̂_ij (paper eq. 3).
As in PCGrad every g_i' stays in the span of the gradients, so all of it runs on the
T×T Gram matrix (coefficients C with g_i' = Σ_j C[i, j] g_j). One target per pair over
the whole shared gradient (LibMTL's ``GradVac_group_type=0``; the paper also uses
per-layer targets); β default 0.5, LibMTL's ``GradVac_beta``. The 1e-8 guards of
LibMTL's implementation are kept (a zero gradient is never used).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from aux_jax.rules import tree
from aux_jax.rules.pcgrad import random_orders

PyTree = Any

_EPS = 1e-8


class GradVacState(NamedTuple):
  """State of GradVac.

  Attributes:
    targets: f32[T, T]. φ̂_ij, the EMA of the cosines (diagonal unused).
  """

  targets: jax.Array


class GradVacInfo(NamedTuple):
  """Diagnostics of one GradVac combination.

  Attributes:
    coefficients: f32[T]. c with combined = Σ_t c_t g_t.
    cosines: f32[T, T]. φ_ij as seen by the procedure (diagonal 1).
    num_adjusted: i32[]. How many pairs were adjusted.
  """

  coefficients: jax.Array
  cosines: jax.Array
  num_adjusted: jax.Array


def gradvac_init(num_tasks: int, dtype: jnp.dtype = jnp.float32) -> GradVacState:
  """Targets φ̂ = 0."""
  if num_tasks < 1:
    raise ValueError(f"num_tasks must be at least 1, got {num_tasks}.")
  return GradVacState(targets=jnp.zeros((num_tasks, num_tasks), dtype))


def gradvac_coefficients(gram: jax.Array, targets: jax.Array, orders: jax.Array,
                         beta: float):
  """GradVac in coefficient space.

  Args:
    gram: f[T, T].
    targets: f[T, T], φ̂ before this step.
    orders: i32[T, T−1], row i the order of the other tasks for task i.
    beta: the EMA rate β.

  Returns:
    (C f[T, T] with g_i' = Σ_j C[i, j] g_j, new targets f[T, T], cosines f[T, T],
     num_adjusted i32[]).
  """
  t = gram.shape[0]
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))

  def one_task(i, order, target_row):
    def step(carry, j):
      c, row, cos_row, n = carry
      cur = jnp.sqrt(jnp.maximum(c @ gram @ c, 0.0))
      phi = (c @ gram[:, j]) / (cur * norms[j] + _EPS)
      goal = row[j]
      adjust = phi < goal
      w = cur * (goal * jnp.sqrt(jnp.maximum(1.0 - phi**2, 0.0))
                 - phi * jnp.sqrt(jnp.maximum(1.0 - goal**2, 0.0))) / (
                     norms[j] * jnp.sqrt(jnp.maximum(1.0 - goal**2, 0.0)) + _EPS)
      c = c.at[j].add(jnp.where(adjust, w, 0.0))
      row = row.at[j].set((1.0 - beta) * goal + beta * phi)
      return (c, row, cos_row.at[j].set(phi), n + adjust.astype(jnp.int32)), None

    c0 = jax.nn.one_hot(i, t, dtype=gram.dtype)
    init = (c0, target_row, jnp.ones((t,), gram.dtype), jnp.zeros((), jnp.int32))
    (c, row, cos_row, n), _ = jax.lax.scan(step, init, order)
    return c, row, cos_row, n

  coeffs, new_targets, cosines, counts = jax.vmap(one_task)(jnp.arange(t), orders, targets)
  return coeffs, new_targets, cosines, jnp.sum(counts)


def gradvac_update(state: GradVacState, grads: PyTree, key: jax.Array, beta: float = 0.5
                   ) -> tuple[GradVacState, PyTree, GradVacInfo]:
  """One GradVac combination, random orders from ``key``.

  Args:
    state: the `GradVacState`.
    grads: pytree of per-task gradients, every leaf ``[T, ...]``.
    key: a PRNG key (each task its own random order of the others).
    beta: the EMA rate β ∈ [0, 1].

  Returns:
    ``(new_state, combined, info)``: the new targets, Σ_i g_i' and a `GradVacInfo`.
  """
  t = tree.num_tasks(grads)
  gram = tree.task_gram(grads)
  targets = state.targets.astype(gram.dtype)
  coeffs, new_targets, cosines, count = gradvac_coefficients(
      gram, targets, random_orders(key, t), beta)
  c = jnp.sum(coeffs, axis=0)
  info = GradVacInfo(coefficients=c, cosines=cosines, num_adjusted=count)
  return (GradVacState(targets=new_targets.astype(state.targets.dtype)),
          tree.task_combine(grads, c), info)
