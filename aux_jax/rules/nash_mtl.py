"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022,
"Multi-Task Learning as a Bargaining Game").

The update d = Σ_t α_t g_t is the Nash bargaining solution of the tasks: α > 0 with

    G α = 1/α      (elementwise; G[s, t] = ⟨g_s, g_t⟩),                 (paper eq. 4)

i.e. every task's share ⟨g_t, d⟩ = 1/α_t. That equation is the stationarity condition
of the strictly convex f(α) = ½ αᵀGα − Σ_t log α_t (∇f = Gα − 1/α, ∇²f = G +
diag(1/α²) ≻ 0), so the solution is unique when it exists (G positive definite
suffices). The paper and its code (AvivNavon/nash-mtl ``methods/weight_methods.py``,
LibMTL's ``Nash_MTL``) approximate it by a sequence of convex programs solved with
cvxpy/ECOS (at most 20); here it is Newton's method on f in pure JAX: a damped Newton
step (kept inside α > 0 by a fraction-to-boundary rule, then halved until Armijo's
condition holds), until max_t |α_t (Gα)_t − 1| ≤ ``tol``, ``max_iterations``, or a step
too small to change α in its precision (float32 reaches ~1e-5 on conditioned problems).

As the official code, G is first divided by its Frobenius norm s and α rescaled by
1/√s (the equation is then scale-free). When no positive solution exists (e.g. two
opposite gradients) f is unbounded below and the iterations stop at
``max_iterations`` with a large α and residual; the official method then relies on
its gradient clipping (``max_norm``, `aux_jax.methods.mtl.nash_mtl`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from aux_jax.rules import tree

PyTree = Any

_FRACTION_TO_BOUNDARY = 0.99
_ARMIJO = 1e-4
_HALVINGS = 30


class NashMTLInfo(NamedTuple):
  """Diagnostics of one Nash-MTL combination.

  Attributes:
    coefficients: f32[T]. α (combined = Σ_t α_t g_t).
    iterations: i32[]. Newton iterations taken.
    residual: f32[]. max_t |α_t (Gα)_t − 1|.
  """

  coefficients: jax.Array
  iterations: jax.Array
  residual: jax.Array


def nash_weights(gram: jax.Array, tol: float = 1e-6, max_iterations: int = 100
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Solves G α = 1/α, α > 0.

  Args:
    gram: f[T, T], symmetric positive semi-definite.
    tol: stop when max_t |α_t (Gα)_t − 1| ≤ tol.
    max_iterations: at most this many Newton iterations.

  Returns:
    (α f[T], iterations i32[], residual f[]); α = 1 when every gradient is zero.
  """
  t = gram.shape[0]
  scale = jnp.sqrt(jnp.sum(gram * gram))
  ok = scale > 0
  a = gram / jnp.where(ok, scale, 1.0)
  diag = jnp.diagonal(a)
  alpha0 = 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0))   # exact for orthogonal g_t

  def f(x):
    return 0.5 * x @ a @ x - jnp.sum(jnp.log(x))

  def residual(x):
    return jnp.max(jnp.abs(x * (a @ x) - 1.0))

  eps = jnp.finfo(a.dtype).eps

  def cond(carry):
    x, k, moved = carry
    return (k < max_iterations) & (residual(x) > tol) & moved

  def body(carry):
    x, k, _ = carry
    g = a @ x - 1.0 / x
    h = a + jnp.diag(1.0 / (x * x))
    step = -jnp.linalg.solve(h, g)
    # The largest step ≤ 1 keeping α > 0 (with a margin), then Armijo halvings.
    ratio = jnp.where(step < 0, -x / jnp.where(step < 0, step, -1.0), jnp.inf)
    s0 = jnp.minimum(1.0, _FRACTION_TO_BOUNDARY * jnp.min(ratio))
    sizes = s0 * 0.5 ** jnp.arange(_HALVINGS, dtype=x.dtype)
    values = jax.vmap(lambda s: f(x + s * step))(sizes)
    good = values <= f(x) + _ARMIJO * sizes * (g @ step)
    s = jnp.where(jnp.any(good), sizes[jnp.argmax(good)], sizes[-1])
    # Stop once rounding dominates (a step below a few ulps of α changes nothing).
    moved = jnp.max(jnp.abs(s * step)) > 8 * eps * jnp.max(x)
    return x + s * step, k + 1, moved

  alpha, iterations, _ = jax.lax.while_loop(
      cond, body, (alpha0, jnp.zeros((), jnp.int32), jnp.array(True)))
  res = residual(alpha)
  alpha = jnp.where(ok, alpha / jnp.sqrt(jnp.where(ok, scale, 1.0)), jnp.ones((t,), a.dtype))
  return alpha, iterations, jnp.where(ok, res, 0.0)


def nash_mtl(grads: PyTree, tol: float = 1e-6, max_iterations: int = 100
             ) -> tuple[PyTree, NashMTLInfo]:
  """Combines per-task gradients with Nash-MTL.

  Args:
    grads: pytree of per-task gradients, every leaf ``[T, ...]``.
    tol: see `nash_weights`.
    max_iterations: see `nash_weights` (static).

  Returns:
    ``(combined, info)``: Σ_t α_t g_t and a `NashMTLInfo`.
  """
  alpha, iterations, res = nash_weights(tree.task_gram(grads), tol, max_iterations)
  return tree.task_combine(grads, alpha), NashMTLInfo(coefficients=alpha,
                                                      iterations=iterations, residual=res)
