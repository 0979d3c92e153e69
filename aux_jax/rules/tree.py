"""Pytree helpers for per-task gradients with a leading task axis.

The gradient rules in `aux_jax.rules` take the per-task gradients of the shared
parameters as one pytree ``grads`` whose every leaf has a leading task axis T
(task 0 is the main task, tasks 1..K = T−1 are auxiliary). Everything the rules
need from it reduces to a few inner products over all leaves together:

    task_dots(grads, v)[t]     = ⟨g_t, v⟩
    task_gram(grads)[s, t]     = ⟨g_s, g_t⟩        (the T×T Gram matrix)
    task_norms(grads)[t]       = ‖g_t‖
    task_combine(grads, w)     = Σ_t w_t g_t       (a pytree without the T axis)

Inner products of single pytrees (no task axis) are `optax.tree.vdot` and
`optax.tree.norm`. Inner products are accumulated in at least float32 and with
``Precision.HIGHEST`` (TPU matmuls default to bfloat16 passes otherwise).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp

PyTree = Any

_HIGHEST = jax.lax.Precision.HIGHEST


def _acc_dtype(x: jax.Array) -> jnp.dtype:
  """At least float32 (float64 stays float64 under x64)."""
  return jnp.promote_types(x.dtype, jnp.float32)


def num_tasks(grads: PyTree) -> int:
  """The size T of the shared leading (task) axis of every leaf.

  Args:
    grads: pytree whose leaves all have shape ``[T, ...]``.

  Returns:
    T, a Python int (static).

  Raises:
    ValueError: if the tree has no leaves, a leaf is a scalar, or the leaves
      disagree on T.
  """
  leaves = jax.tree.leaves(grads)
  if not leaves:
    raise ValueError("Per-task gradients have no leaves.")
  sizes = set()
  for leaf in leaves:
    if jnp.ndim(leaf) == 0:
      raise ValueError(
          "Every leaf of per-task gradients needs a leading task axis; got a "
          "scalar leaf.")
    sizes.add(jnp.shape(leaf)[0])
  if len(sizes) != 1:
    raise ValueError(
        f"Leaves of per-task gradients disagree on the task axis size: {sorted(sizes)}.")
  return sizes.pop()


def task_slice(grads: PyTree, t: int | jax.Array) -> PyTree:
  """The gradient of task ``t``: every leaf indexed ``[t]`` (no task axis)."""
  return jax.tree.map(lambda x: x[t], grads)


def task_dots(grads: PyTree, v: PyTree) -> jax.Array:
  """⟨g_t, v⟩ for every task, summed over all leaves.

  Args:
    grads: pytree, leaves ``[T, ...]``.
    v: pytree with the structure of ``grads`` and leaves ``[...]`` (no T axis).

  Returns:
    f[T] (at least float32).
  """
  t = num_tasks(grads)

  def leaf_dot(g, x):
    dt = jnp.promote_types(_acc_dtype(g), _acc_dtype(x))
    return jnp.dot(g.reshape(t, -1).astype(dt), x.reshape(-1).astype(dt),
                   precision=_HIGHEST)

  return sum(jax.tree.leaves(jax.tree.map(leaf_dot, grads, v)))


def task_gram(grads: PyTree) -> jax.Array:
  """The Gram matrix GG[s, t] = ⟨g_s, g_t⟩ over all leaves together.

  Args:
    grads: pytree, leaves ``[T, ...]``.

  Returns:
    f[T, T], symmetric positive semi-definite (at least float32).
  """
  t = num_tasks(grads)

  def leaf_gram(g):
    g = g.reshape(t, -1).astype(_acc_dtype(g))
    return jnp.dot(g, g.T, precision=_HIGHEST)

  return sum(jax.tree.leaves(jax.tree.map(leaf_gram, grads)))


def task_norms(grads: PyTree) -> jax.Array:
  """‖g_t‖ (Euclidean norm over all leaves) for every task.

  Args:
    grads: pytree, leaves ``[T, ...]``.

  Returns:
    f[T] (at least float32).
  """
  t = num_tasks(grads)

  def leaf_sq(g):
    g = g.reshape(t, -1).astype(_acc_dtype(g))
    return jnp.sum(g * g, axis=1)

  return jnp.sqrt(sum(jax.tree.leaves(jax.tree.map(leaf_sq, grads))))


def task_combine(grads: PyTree, weights: jax.Array) -> PyTree:
  """Σ_t w_t g_t: the weighted sum over the task axis.

  Args:
    grads: pytree, leaves ``[T, ...]``.
    weights: f[T].

  Returns:
    A pytree like one task's gradient (leaves ``[...]``, the leaves' dtypes).

  Raises:
    ValueError: if ``weights`` is not of shape ``[T]``.
  """
  t = num_tasks(grads)
  if jnp.shape(weights) != (t,):
    raise ValueError(f"weights must have shape ({t},), got {jnp.shape(weights)}.")

  def leaf_combine(g):
    return jnp.tensordot(weights.astype(g.dtype), g, axes=1,
                         precision=_HIGHEST)

  return jax.tree.map(leaf_combine, grads)


def ravel_tasks(grads: PyTree) -> tuple[jax.Array, Callable[[jax.Array], PyTree]]:
  """Flattens a pytree with a leading axis into a matrix, row per slice.

  Args:
    grads: pytree, leaves ``[T, ...]``.

  Returns:
    ``(matrix, unravel)``: ``matrix`` is ``[T, D]`` with row t the
    `jax.flatten_util.ravel_pytree` of slice t, and ``unravel`` maps any
    ``[T', D]`` matrix back to a pytree with leaves ``[T', ...]``.
  """
  num_tasks(grads)
  _, unravel_one = ravel_pytree(task_slice(grads, 0))
  matrix = jax.vmap(lambda g: ravel_pytree(g)[0])(grads)
  return matrix, jax.vmap(unravel_one)
