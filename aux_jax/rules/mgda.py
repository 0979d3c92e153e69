"""MGDA: the multiple-gradient descent algorithm as multi-task learning (Sener &
Koltun, NeurIPS 2018, "Multi-Task Learning as Multi-Objective Optimization"; the
algorithm is Désidéri, 2012).

The common descent direction is the minimum-norm point of the convex hull of the
(optionally normalised) task gradients ĝ_t = g_t / n_t:

    w* = argmin_{w ∈ Δ_T} ‖Σ_t w_t ĝ_t‖² = argmin_{w ∈ Δ_T} wᵀ Ĝ w,   Ĝ[s, t] = ⟨ĝ_s, ĝ_t⟩

and the update is Σ_t w*_t g_t, the task losses weighted by w* (the paper's Algorithm 2
and its official code, isl-org/MultiObjectiveOptimization ``multi_task/train_multi_task.py``:
``scale[t] = sol[i]``, then Σ_t scale[t]·ℓ_t backward). The optimality (KKT)
conditions: (Ĝw*)_t ≥ w*ᵀĜw* for every t, with equality where w*_t > 0; when the
hull contains 0 the direction is 0 (a Pareto-stationary point).

Normalisations n_t (``normalization``; the official ``normalization_type``): ``none``
(n_t = 1, LibMTL's default ``mgda_gn``), ``l2`` (‖g_t‖), ``loss`` (ℓ_t), ``loss+``
(ℓ_t ‖g_t‖, the official MultiMNIST/CelebA setting). LibMTL combines the *normalised*
gradients, Σ w*_t ĝ_t; we follow the paper and the official code (Σ w*_t g_t); the two
agree for ``none``.

The solver: the official code runs Frank–Wolfe (at most 250 iterations); here the
simplex problem is solved by the accelerated projected-gradient solver that CAGrad uses
(`aux_jax.rules.cagrad.minimize_on_simplex`) on Ĝ divided by its mean diagonal (w* is
scale-free), for ``num_iterations`` iterations, then polished by one exact solve of the
KKT system on the support it found (float32 rounding stops a first-order solver early on
this smooth but ill-conditioned problem). MGDA-UB (the paper's upper bound) is
this rule applied to the gradients of the shared representation instead of the shared
parameters: pass those per-task gradients as ``grads``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from aux_jax.rules import tree
from aux_jax.rules.cagrad import minimize_on_simplex

PyTree = Any

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


class MGDAInfo(NamedTuple):
  """Diagnostics of one MGDA combination.

  Attributes:
    weights: f32[T]. w* on the simplex (of the normalised gradients).
    coefficients: f32[T]. c with combined = Σ_t c_t g_t (c = w*).
    min_norm: f32[]. ‖Σ_t w*_t ĝ_t‖, the minimum norm of the hull.
  """

  weights: jax.Array
  coefficients: jax.Array
  min_norm: jax.Array


def min_norm_weights(gram: jax.Array, num_iterations: int = 250) -> jax.Array:
  """w* = argmin_{w ∈ Δ_T} wᵀ G w.

  Args:
    gram: f[T, T], symmetric positive semi-definite.
    num_iterations: solver iterations (static).

  Returns:
    f[T] on the simplex (uniform when every gradient is zero).
  """
  t = gram.shape[0]
  scale = jnp.mean(jnp.diagonal(gram))
  a = gram / jnp.where(scale > 0, scale, 1.0)
  f = lambda w: w @ a @ w
  w = minimize_on_simplex(f, lambda w: 2.0 * (a @ w), t, a.dtype, num_iterations)
  return _polish(a, w, f)


def _polish(a: jax.Array, w: jax.Array, f) -> jax.Array:
  """One exact solve on the support S of the iterate w: A_SS w_S = ν1, 1ᵀw_S = 1 (the
  KKT system of min wᵀAw on the face S). The first-order solver ends wherever its
  float rounding stops it; the solve lands on the optimum to the linear system's
  accuracy (so that runs whose Gram matrices differ by rounding, e.g. on different
  device counts, agree). Kept only if finite, non-negative and not worse than w."""
  t = a.shape[0]
  support = w > 1e-6 * jnp.max(w)
  both = support[:, None] & support[None, :]
  kkt = jnp.zeros((t + 1, t + 1), a.dtype)
  kkt = kkt.at[:t, :t].set(jnp.where(both, a, 0.0) + jnp.diag(jnp.where(support, 0.0, 1.0)))
  s = support.astype(a.dtype)
  kkt = kkt.at[:t, t].set(s).at[t, :t].set(s)
  rhs = jnp.zeros((t + 1,), a.dtype).at[t].set(1.0)
  exact = jnp.linalg.solve(kkt, rhs)[:t]
  ok = (jnp.all(jnp.isfinite(exact)) & jnp.all(exact >= 0)
        & (f(exact) <= f(w) + 4 * jnp.finfo(a.dtype).eps * jnp.max(jnp.abs(a))))
  return jnp.where(ok, exact, w)


def normalizers(gram: jax.Array, losses: Optional[jax.Array],
                normalization: str) -> jax.Array:
  """n_t of the module docstring (1 where the gradient or the loss is 0).

  Raises:
    ValueError: an unknown normalization, or a loss normalization without losses.
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"unknown MGDA normalization {normalization!r}; expected one of "
                     f"{NORMALIZATIONS}")
  if normalization in ("loss", "loss+") and losses is None:
    raise ValueError(f"MGDA normalization {normalization!r} needs the task losses")
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
  n = {"none": jnp.ones_like(norms), "l2": norms,
       "loss": None if losses is None else jnp.asarray(losses, norms.dtype),
       "loss+": None if losses is None else jnp.asarray(losses, norms.dtype) * norms
       }[normalization]
  return jnp.where(n > 0, n, 1.0)


def mgda(grads: PyTree, losses: Optional[jax.Array] = None, normalization: str = "none",
         num_iterations: int = 250) -> tuple[PyTree, MGDAInfo]:
  """Combines per-task gradients with MGDA.

  Args:
    grads: pytree of per-task gradients (of the shared parameters, or of the shared
      representation for MGDA-UB), every leaf ``[T, ...]``.
    losses: f[T], the task losses (needed by the ``loss`` normalizations).
    normalization: one of `NORMALIZATIONS`.
    num_iterations: solver iterations (static).

  Returns:
    ``(combined, info)``: Σ_t w*_t g_t (a pytree like one task's gradient) and an
    `MGDAInfo`.
  """
  gram = tree.task_gram(grads)
  n = normalizers(gram, losses, normalization)
  normalized = gram / (n[:, None] * n[None, :])
  w = min_norm_weights(normalized, num_iterations)
  min_norm = jnp.sqrt(jnp.maximum(w @ normalized @ w, 0.0))
  return tree.task_combine(grads, w), MGDAInfo(weights=w, coefficients=w, min_norm=min_norm)
