"""Gradient Cosine Similarity (GCS; Du et al., 2018, "Adapting Auxiliary Losses
Using Gradient Similarity").

An auxiliary gradient is added to the main-task gradient only when it points the
same way, measured by the cosine over all shared parameters together:

    cos_k = ⟨g_0, g_k⟩ / (‖g_0‖ ‖g_k‖)                       k = 1..K
    combined = g_0 + Σ_{k≥1} 1[cos_k > 0] g_k

A zero gradient has cosine 0 (so it is never added; adding it would change
nothing anyway).
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
    cosines: f32[K]. cos(g_0, g_k) for the auxiliary tasks k = 1..K.
    mask: f32[K]. 1 where the auxiliary gradient was added, else 0.
  """

  cosines: jax.Array
  mask: jax.Array


def gcs(grads: PyTree) -> tuple[PyTree, GCSInfo]:
  """Combines per-task gradients by gradient cosine similarity.

  Args:
    grads: pytree of per-task gradients of the shared parameters, every leaf
      ``[T, ...]`` with task 0 the main task.

  Returns:
    ``(combined, info)``: ``combined`` is a pytree like one task's gradient,
    g_0 + Σ_{k≥1} 1[cos(g_0, g_k) > 0] g_k; ``info`` is a `GCSInfo`.
  """
  tree.num_tasks(grads)
  dots = tree.task_dots(grads, tree.task_slice(grads, 0))  # [T]; dots[0] = ‖g_0‖²
  norms = tree.task_norms(grads)
  denom = norms[0] * norms[1:]
  safe = denom > 0
  cosines = jnp.where(safe, dots[1:] / jnp.where(safe, denom, 1.0), 0.0)
  mask = (cosines > 0).astype(cosines.dtype)
  weights = jnp.concatenate([jnp.ones((1,), mask.dtype), mask])
  return tree.task_combine(grads, weights), GCSInfo(cosines=cosines, mask=mask)
