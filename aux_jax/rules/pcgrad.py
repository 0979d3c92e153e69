"""PCGrad: projecting conflicting gradients (Yu et al., NeurIPS 2020, "Gradient
Surgery for Multi-Task Learning").

For every task i, starting from g_i' = g_i, and for every other task j in a
random order (a fresh permutation per i):

    if ⟨g_i', g_j⟩ < 0:   g_i' ← g_i' − ⟨g_i', g_j⟩ / ‖g_j‖² · g_j

(always against the *original* g_j, with the running g_i'), and the update is
Σ_i g_i'. A zero g_j is never projected against.

Every g_i' stays in the span of the original gradients, g_i' = Σ_j C[i, j] g_j,
so the whole procedure runs on the T×T Gram matrix GG[s, t] = ⟨g_s, g_t⟩:
⟨g_i', g_j⟩ = (C GG)[i, j], and a projection only changes C[i, j]. The result
is Σ_t c_t g_t with c = 1ᵀC: one pass over the parameters for GG and one for
the combination, whatever T.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from aux_jax.rules import tree

PyTree = Any


class PCGradInfo(NamedTuple):
  """Diagnostics of one PCGrad combination.

  Attributes:
    coefficients: f32[T]. c with combined = Σ_t c_t g_t (all 1 when nothing
      conflicts).
    num_projections: i32[]. How many projections were made (0..T(T−1)).
  """

  coefficients: jax.Array
  num_projections: jax.Array


def random_orders(key: jax.Array, num_tasks: int) -> jax.Array:
  """For each task i, a random order of the other tasks.

  Args:
    key: a JAX PRNG key.
    num_tasks: T.

  Returns:
    i32[T, T−1]: row i is a uniformly random permutation of {0..T−1} \\ {i},
    each row drawn with its own key.
  """
  if num_tasks < 1:
    raise ValueError(f"num_tasks must be at least 1, got {num_tasks}.")
  keys = jax.random.split(key, num_tasks)

  def row(k, i):
    p = jax.random.permutation(k, num_tasks - 1)
    return p + (p >= i)  # skip i itself

  return jax.vmap(row)(keys, jnp.arange(num_tasks)).astype(jnp.int32)


def pcgrad_coefficients(gram: jax.Array, orders: jax.Array) -> tuple[jax.Array, jax.Array]:
  """PCGrad in coefficient space.

  Args:
    gram: f[T, T], GG[s, t] = ⟨g_s, g_t⟩.
    orders: i32[T, T−1], row i the order in which task i is projected against
      the other tasks.

  Returns:
    ``(C, num_projections)``: C is f[T, T] with g_i' = Σ_j C[i, j] g_j;
    num_projections is i32[].
  """
  t = gram.shape[0]
  sq_norms = jnp.diagonal(gram)

  def one_task(i, order):
    def step(carry, j):
      c, n = carry
      dot = c @ gram[:, j]
      project = (dot < 0) & (sq_norms[j] > 0)
      scale = jnp.where(project, dot / jnp.where(project, sq_norms[j], 1.0), 0.0)
      c = c.at[j].add(-scale)
      return (c, n + project.astype(jnp.int32)), None

    c0 = jax.nn.one_hot(i, t, dtype=gram.dtype)
    (c, n), _ = jax.lax.scan(step, (c0, jnp.zeros((), jnp.int32)), order)
    return c, n

  coeffs, counts = jax.vmap(one_task)(jnp.arange(t), orders)
  return coeffs, jnp.sum(counts)


def pcgrad_with_order(grads: PyTree, orders: jax.Array) -> tuple[PyTree, PCGradInfo]:
  """PCGrad with explicit projection orders.

  Args:
    grads: pytree of per-task gradients, every leaf ``[T, ...]``.
    orders: int[T, T−1]; row i lists the tasks other than i in the order g_i is
      projected against them (e.g. from `random_orders`).

  Returns:
    ``(combined, info)``: ``combined`` = Σ_i g_i' (a pytree like one task's
    gradient); ``info`` is a `PCGradInfo`.

  Raises:
    ValueError: if ``orders`` is not of shape ``[T, T−1]``.
  """
  t = tree.num_tasks(grads)
  if jnp.shape(orders) != (t, t - 1):
    raise ValueError(
        f"orders must have shape ({t}, {t - 1}) for {t} tasks, got {jnp.shape(orders)}.")
  coeffs, count = pcgrad_coefficients(tree.task_gram(grads), jnp.asarray(orders))
  c = jnp.sum(coeffs, axis=0)
  return tree.task_combine(grads, c), PCGradInfo(coefficients=c, num_projections=count)


def pcgrad(grads: PyTree, key: jax.Array) -> tuple[PyTree, PCGradInfo]:
  """PCGrad with random projection orders drawn from ``key``.

  Args:
    grads: pytree of per-task gradients, every leaf ``[T, ...]``.
    key: a JAX PRNG key; each task gets its own random order of the others.

  Returns:
    ``(combined, info)`` as in `pcgrad_with_order`.
  """
  return pcgrad_with_order(grads, random_orders(key, tree.num_tasks(grads)))
