"""ATTITTUD: auxiliary-task update decomposition (Dery et al., ICLR 2021,
"Auxiliary Task Update Decomposition: The Good, The Bad and The Neutral").

A low-rank subspace S of parameter space is spanned by the per-example
primary-task gradients. An auxiliary update g is split, relative to S and to
the mean primary gradient g*, into the part in S that agrees with g* per
basis direction (g+), the part in S that conflicts (g−), and the part outside
S (g⊥); the parts are then recombined with chosen signs and scales.

**Basis** (randomized range finder, Halko et al. 2011). With J ∈ R^{n×D} the
matrix of per-example primary gradients (row i = ∇_θ ℓ(x_i)), draw a Gaussian
Ω ∈ R^{n×k} and form Y = JᵀΩ ∈ R^{D×k}: column j is ∇_θ Σ_i Ω[i, j] ℓ(x_i), one
vector–Jacobian product of the Ω-weighted summed losses, batched over the k
columns with `jax.vmap` of one VJP closure. V = the orthonormal Q of the
reduced QR of Y. Optional power (subspace) iterations, q of them (Halko,
Martinsson & Tropp 2011, Alg. 4.4), repeat V ← QR(Jᵀ(J V)) (J V by k batched
JVPs of a linearization, Jᵀ(·) by k batched VJPs), so that V spans
(JᵀJ)^q JᵀΩ: the singular values of J enter raised to the power 2q + 1, and V
moves toward the top-k right singular vectors of J, capturing more of the
per-example gradients' energy Σ_i ‖V ∇ℓ_i‖² when their spectrum decays.

**Representation of V**: a pytree like ``params`` whose leaves have a leading
axis k (slice j is the j-th basis vector); in raveled coordinates
(`jax.flatten_util.ravel_pytree` of each slice) the k rows are orthonormal.

**Decomposition** (every step), for an auxiliary gradient g and the mean primary
gradient g* (pytrees like ``params``):

    p = V g,   p* = V g*,   m = [p ⊙ p* > 0]
    g+ = Vᵀ(p ⊙ m),   g− = Vᵀ(p ⊙ (1 − m)),   g⊥ = g − g+ − g−
    ĝ  = λ⊥ g⊥ + λ+ g+ + λ− g−

with ``lambdas = (λ⊥, λ+, λ−)``; the paper's default is (1, 0, 0) (keep only the
out-of-span part), its CheXpert run (1, 1, −1).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from aux_jax.rules import tree

PyTree = Any


class Decomposition(NamedTuple):
  """The three parts of an auxiliary update; they sum to it.

  Attributes:
    plus: g+, in the span, agreeing with g* per basis direction.
    minus: g−, in the span, conflicting with g*.
    perp: g⊥, orthogonal to the span.
  """

  plus: PyTree
  minus: PyTree
  perp: PyTree


def orthonormalize(vectors: PyTree) -> PyTree:
  """Orthonormal basis of the span of k pytree vectors, by reduced QR.

  Args:
    vectors: pytree, leaves ``[k, ...]`` (k vectors of dimension D ≥ k).

  Returns:
    A pytree of the same shapes whose k slices are orthonormal (in raveled
    coordinates) and, when the inputs are linearly independent, span the
    same space (Gram–Schmidt order: slice j spans vectors 0..j).
  """
  matrix, unravel = tree.ravel_tasks(vectors)
  q, _ = jnp.linalg.qr(matrix.T, mode="reduced")
  return unravel(q.T)


def subspace_basis(per_example_losses_fn: Callable[[PyTree], jax.Array], params: PyTree,
                   key: jax.Array, k: int, power_iters: int = 0,
                   batched: str = "vmap") -> PyTree:
  """Orthonormal basis of (an approximation of) the span of per-example gradients.

  Args:
    per_example_losses_fn: θ ↦ f[n], the primary-task loss of each of n
      examples (close over the batch).
    params: θ, a pytree (the parameters the updates act on, e.g. the body).
    key: PRNG key for the Gaussian test matrix Ω.
    k: basis size (1 ≤ k ≤ D, D the number of parameters). With k ≥ n the
      basis contains the whole span of the n per-example gradients.
    power_iters: number of power iterations (static, ≥ 0).
    batched: how the k products run: ``"vmap"`` (batched; on convolutions XLA makes
      grouped convolutions) or ``"map"`` (one after another, `lax.map`). Same result.

  Returns:
    V, a pytree like ``params`` with a leading axis k on every leaf; its k
    slices are orthonormal.

  Raises:
    ValueError: if the losses are not a vector, k is out of range or
      power_iters is negative.
  """
  if power_iters < 0:
    raise ValueError(f"power_iters must be >= 0, got {power_iters}.")
  if batched not in ("vmap", "map"):
    raise ValueError(f"batched must be 'vmap' or 'map', got {batched!r}.")
  each = jax.vmap if batched == "vmap" else (lambda f: lambda xs: jax.lax.map(f, xs))
  dim = sum(jnp.size(x) for x in jax.tree.leaves(params))
  if not 1 <= k <= dim:
    raise ValueError(f"k must be in [1, {dim}] (the number of parameters), got {k}.")
  losses, vjp_fn = jax.vjp(per_example_losses_fn, params)
  if losses.ndim != 1:
    raise ValueError(
        f"per_example_losses_fn must return f[n], got shape {losses.shape}.")

  def jt(cotangents):  # Ωᵀ [k, n] -> Y = JᵀΩ as k rows: k VJPs batched by vmap
    return each(lambda c: vjp_fn(c)[0])(cotangents)

  omega = jax.random.normal(key, (k, losses.shape[0]), losses.dtype)  # Ωᵀ
  basis = orthonormalize(jt(omega))
  if power_iters == 0:
    return basis
  # J·v by the linearization (one forward pass, reused for all k columns and all
  # iterations); models with a custom_vjp but no JVP rule need power_iters = 0.
  _, jvp_fn = jax.linearize(per_example_losses_fn, params)

  def power_step(_, v):  # V ← orth(Jᵀ(J V)), k JVPs and k VJPs, each batched
    return orthonormalize(jt(each(jvp_fn)(v)))

  return jax.lax.fori_loop(0, power_iters, power_step, basis)


def decompose(g: PyTree, basis: PyTree, g_star: PyTree) -> Decomposition:
  """Splits g into (g+, g−, g⊥) relative to span(V) and g*.

  Args:
    g: the auxiliary update, a pytree like one slice of ``basis``.
    basis: V from `subspace_basis` (leaves ``[k, ...]``, orthonormal slices).
    g_star: the mean primary gradient g*, like ``g``.

  Returns:
    A `Decomposition` (plus, minus, perp), each like ``g``.
  """
  p = tree.task_dots(basis, g)
  p_star = tree.task_dots(basis, g_star)
  agree = (p * p_star > 0).astype(p.dtype)
  plus = tree.task_combine(basis, p * agree)
  minus = tree.task_combine(basis, p * (1.0 - agree))
  perp = jax.tree.map(lambda a, b, c: a - b - c, g, plus, minus)
  return Decomposition(plus=plus, minus=minus, perp=perp)


def combine(g: PyTree, basis: PyTree, g_star: PyTree,
            lambdas: Sequence[float] = (1.0, 0.0, 0.0)) -> PyTree:
  """ĝ = λ⊥ g⊥ + λ+ g+ + λ− g−.

  Args:
    g: the auxiliary update.
    basis: V from `subspace_basis`.
    g_star: the mean primary gradient g*.
    lambdas: (λ⊥, λ+, λ−) (floats or f[] arrays).

  Returns:
    ĝ, a pytree like ``g``.

  Raises:
    ValueError: if ``lambdas`` does not have 3 entries.
  """
  if len(lambdas) != 3:
    raise ValueError(f"lambdas must be (λ⊥, λ+, λ−), got {lambdas}.")
  l_perp, l_plus, l_minus = lambdas
  parts = decompose(g, basis, g_star)
  return jax.tree.map(lambda perp, plus, minus: (l_perp * perp + l_plus * plus
                                                  + l_minus * minus).astype(perp.dtype),
                      parts.perp, parts.plus, parts.minus)
