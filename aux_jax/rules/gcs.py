"""Gradient Cosine Similarity (GCS; Du et al., 2018, "Adapting Auxiliary Losses
Using Gradient Similarity").

An auxiliary gradient is added to the main-task gradient only when it points the
same way, measured by the cosine over all shared parameters together:

    cos_k = ⟨g_0, g_k⟩ / (‖g_0‖ ‖g_k‖)                       k = 1..K
    combined = g_0 + Σ_{k≥1} 1[cos_k > 0] g_k

A zero gradient has cosine 0 (so it is never added; adding it would change
nothing anyway).

``per_layer=True`` is the GCS baseline of SLGrad's code (vub-dl/SLGrad
``Dynamic Weighting Algorithms/Dynamic_weighting.py:527-561``): the cosine is taken per
parameter tensor (each leaf l: a kernel, a bias) and summed, and g_k is added when
that sum is ≥ 0:

    s_k = Σ_l ⟨g_0,l, g_k,l⟩ / (‖g_0,l‖ ‖g_k,l‖)    (a zero leaf contributes 0)
    combined = g_0 + Σ_{k≥1} 1[s_k ≥ 0] g_k

``unit_layers=True`` then scales each leaf of the combined gradient to unit norm, as
that code does before its optimizer step (``:588-591``; a zero leaf stays zero).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from aux_jax.rules import tree

PyTree = Any


class GCSInfo(NamedTuple):
  """Diagnostics of one GCS combination.

  Attributes:
    cosines: f32[K]. cos(g_0, g_k) for the auxiliary tasks k = 1..K (with
      ``per_layer``: the sum s_k of the per-leaf cosines).
    mask: f32[K]. 1 where the auxiliary gradient was added, else 0.
  """

  cosines: jax.Array
  mask: jax.Array


def _cosines(grads: PyTree) -> jax.Array:
  """f32[K]: cos(g_0, g_k) over every leaf together; 0 where a norm is 0."""
  dots = tree.task_dots(grads, tree.task_slice(grads, 0))  # [T]; dots[0] = ‖g_0‖²
  norms = tree.task_norms(grads)
  denom = norms[0] * norms[1:]
  safe = denom > 0
  return jnp.where(safe, dots[1:] / jnp.where(safe, denom, 1.0), 0.0)


def _unit(x: jax.Array) -> jax.Array:
  n = jnp.sqrt(jnp.sum(jnp.square(x)))
  return jnp.where(n > 0, x / jnp.where(n > 0, n, 1.0), 0.0)


def gcs(grads: PyTree, per_layer: bool = False,
        unit_layers: bool = False) -> tuple[PyTree, GCSInfo]:
  """Combines per-task gradients by gradient cosine similarity.

  Args:
    grads: pytree of per-task gradients of the shared parameters, every leaf
      ``[T, ...]`` with task 0 the main task.
    per_layer: SLGrad's rule, the sum of per-leaf cosines ≥ 0 (module docstring).
    unit_layers: scale each leaf of the result to unit norm (SLGrad's code).

  Returns:
    ``(combined, info)``: ``combined`` is a pytree like one task's gradient,
    g_0 + Σ_{k≥1} 1[cos(g_0, g_k) > 0] g_k (or SLGrad's rule); ``info`` is a
    `GCSInfo`.
  """
  tree.num_tasks(grads)
  if per_layer:
    cosines = sum(_cosines({"leaf": g}) for g in jax.tree.leaves(grads))
    mask = (cosines >= 0).astype(cosines.dtype)
  else:
    cosines = _cosines(grads)
    mask = (cosines > 0).astype(cosines.dtype)
  weights = jnp.concatenate([jnp.ones((1,), mask.dtype), mask])
  combined = tree.task_combine(grads, weights)
  if unit_layers:
    combined = jax.tree.map(_unit, combined)
  return combined, GCSInfo(cosines=cosines, mask=mask)
