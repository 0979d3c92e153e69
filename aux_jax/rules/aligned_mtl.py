"""Aligned-MTL: aligning the principal components of the gradient matrix (Senushkin et
al., CVPR 2023, "Independent Component Alignment for Multi-Task Learning").

With the gradient matrix G (rows g_t) and its Gram matrix M = G Gᵀ = V Λ Vᵀ
(eigendecomposition), Aligned-MTL replaces G by Ĝ = B G with

    B = σ V_r Λ_r^{-1/2} V_rᵀ,        σ = √λ_min (the smallest kept eigenvalue)

over the r eigenvalues above the tolerance λ_max·T·eps (the rank; the official
``ProcrustesSolver``, SamsungLabs/MTL, and LibMTL's ``Aligned_MTL``). Then ĜĜᵀ = σ² V_r V_rᵀ:
the aligned task gradients are orthogonal with equal norms σ on the kept
eigen-directions, and the update is their sum, Σ_t ĝ_t = Σ_s α_s g_s with α = Bᵀ1
(the official default ``scale_mode='min'``, equal task preferences).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from aux_jax.rules import tree

PyTree = Any


class AlignedMTLInfo(NamedTuple):
  """Diagnostics of one Aligned-MTL combination.

  Attributes:
    coefficients: f32[T]. α with combined = Σ_t α_t g_t.
    rank: i32[]. r, the kept eigen-directions.
    sigma: f32[]. σ = √λ_min of the kept ones.
  """

  coefficients: jax.Array
  rank: jax.Array
  sigma: jax.Array


def aligned_matrix(gram: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """B of the module docstring.

  Args:
    gram: f[T, T], M = G Gᵀ.

  Returns:
    (B f[T, T], rank i32[], σ f[]); B = 0 when every gradient is zero.
  """
  t = gram.shape[0]
  lam, v = jnp.linalg.eigh(gram)
  tol = jnp.max(lam) * t * jnp.finfo(gram.dtype).eps
  keep = lam > tol
  safe = jnp.where(keep, lam, 1.0)
  inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(safe), 0.0)
  sigma = jnp.sqrt(jnp.min(jnp.where(keep, lam, jnp.inf)))
  sigma = jnp.where(jnp.any(keep), sigma, 0.0)
  b = sigma * (v * inv_sqrt[None, :]) @ v.T
  return b, jnp.sum(keep).astype(jnp.int32), sigma


def aligned_mtl(grads: PyTree) -> tuple[PyTree, AlignedMTLInfo]:
  """Combines per-task gradients with Aligned-MTL.

  Args:
    grads: pytree of per-task gradients, every leaf ``[T, ...]``.

  Returns:
    ``(combined, info)``: Σ_t ĝ_t and an `AlignedMTLInfo`.
  """
  b, rank, sigma = aligned_matrix(tree.task_gram(grads))
  alpha = jnp.sum(b, axis=0)  # Σ_t ĝ_t = Σ_t Σ_s B[t, s] g_s
  return tree.task_combine(grads, alpha), AlignedMTLInfo(coefficients=alpha, rank=rank,
                                                         sigma=sigma)
