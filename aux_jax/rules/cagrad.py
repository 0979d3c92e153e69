"""CAGrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021,
"Conflict-Averse Gradient Descent for Multi-task Learning").

With ḡ = (1/T) Σ_t g_t, CAGrad looks for the update d in the ball
‖d − ḡ‖ ≤ c ‖ḡ‖ that maximises the worst task improvement min_t ⟨g_t, d⟩. Its
dual is a small problem over the simplex Δ_T:

    w* = argmin_{w ∈ Δ_T}  F(w) = ⟨g_w, ḡ⟩ + c ‖ḡ‖ ‖g_w‖,      g_w = Σ_t w_t g_t
    d  = ḡ + (c ‖ḡ‖ / ‖g_w*‖) g_w*                                          (1)

and at the solution min_t ⟨g_t, d⟩ = F(w*) (strong duality). With the Gram matrix
GG[s, t] = ⟨g_s, g_t⟩ everything is T×T: ⟨g_w, ḡ⟩ = wᵀGG1/T,
‖g_w‖² = wᵀGGw, ‖ḡ‖² = 1ᵀGG1/T², and d = Σ_t (1/T + λ w*_t) g_t with
λ = c ‖ḡ‖ / ‖g_w*‖ (λ = 0 when g_w* = 0).

F is convex; we minimise it with accelerated projected gradient descent on the
simplex (Euclidean projection by sorting, Duchi et al. 2008) for a fixed number
of iterations, inside jit (see `cagrad_weights`). F is not smooth where
g_w = 0, so the step size adapts by backtracking. GG is first divided by its
mean diagonal (F is homogeneous, so w* does not change) to make the steps
scale-free. On random float32 problems with strong conflicts, 200 iterations
(the default) came within ~1e-6 (relative) of a 5000-iteration solve for
T = 10; T = 30 needed ~400, so raise ``num_iterations`` for many tasks.

c is the paper's c and the official code's ``alpha`` (Cranial-XIX/CAGrad
``nyuv2/utils.py`` lines 377-401: radius alpha·‖ḡ‖); its ``rescale=1`` (used at
line 525) divides d by 1 + alpha² = 1 + c² (``rescale=True`` here, the default);
``rescale=False`` returns d of (1) unscaled. Default c = 0.5, the official
default (``nyuv2/model_segnet_mt.py`` line 18, ``cityscapes/model_segnet_mt.py``
line 15; the paper's image runs pass 0.4, ``nyuv2/run.sh`` line 9).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from aux_jax.rules import tree

PyTree = Any

# Step growth after an accepted step, and a cap on the step of the normalised
# problem (its gradients are O(1)): beyond it a step only adds rounding error.
_GROWTH = 1.25
_MAX_STEP = 1e4


class CAGradInfo(NamedTuple):
  """Diagnostics of one CAGrad combination.

  Attributes:
    weights: f32[T]. The simplex weights w*.
    objective: f32[]. F(w*) (in the scale of the gradients, before rescaling).
    coefficients: f32[T]. c with combined = Σ_t c_t g_t (rescaling included).
  """

  weights: jax.Array
  objective: jax.Array
  coefficients: jax.Array


def project_to_simplex(v: jax.Array) -> jax.Array:
  """Euclidean projection of v ∈ R^T onto {w : w ≥ 0, Σ w = 1} (Duchi et al. 2008).

  Args:
    v: f[T].

  Returns:
    f[T] on the simplex.
  """
  t = v.shape[-1]
  u = jnp.sort(v)[::-1]
  css = jnp.cumsum(u) - 1.0
  ind = jnp.arange(1, t + 1, dtype=v.dtype)
  rho = jnp.sum(u - css / ind > 0)  # ≥ 1 always
  theta = css[rho - 1] / rho.astype(v.dtype)
  return jnp.maximum(v - theta, 0.0)


def cagrad_objective(w: jax.Array, gram: jax.Array, c: float) -> jax.Array:
  """F(w) = ⟨g_w, ḡ⟩ + c ‖ḡ‖ ‖g_w‖ from the Gram matrix.

  Args:
    w: f[T].
    gram: f[T, T].
    c: the CAGrad constant (≥ 0).

  Returns:
    f[].
  """
  t = gram.shape[0]
  b = jnp.sum(gram, axis=1) / t
  g0_norm = jnp.sqrt(jnp.maximum(jnp.sum(gram) / t**2, 0.0))
  gw_norm = jnp.sqrt(jnp.maximum(w @ gram @ w, 0.0))
  return w @ b + c * g0_norm * gw_norm


def minimize_on_simplex(f, grad_f, num_tasks: int, dtype, num_iterations: int) -> jax.Array:
  """Minimises a convex f over the simplex Δ_T by accelerated projected gradient descent.

  FISTA (Beck & Teboulle, 2009) with backtracking and a function-value restart,
  for a fixed number of iterations, from the uniform point. Each iteration takes a
  projected gradient step η from the extrapolated point y; the step is accepted if
  it passes the descent-lemma test F(w⁺) ≤ F(y) + ∇F(y)·(w⁺ − y) + ‖w⁺ − y‖²/(2η)
  (then η grows ×1.25), else rejected (η halves). An accepted step that does not
  decrease F restarts the momentum from the best point. The iterate returned is the
  best one found, so F never increases over the iterations. Scale f to O(1)
  gradients (the step starts at 1 and is capped at 1e4).

  Args:
    f: ``f[T] -> f[]``, convex.
    grad_f: ``f[T] -> f[T]``, its (sub)gradient.
    num_tasks: T.
    dtype: the iterates' dtype.
    num_iterations: number of iterations (static).

  Returns:
    f[T], the approximate minimiser.
  """

  def body(_, carry):
    w, fw, y, momentum, step = carry
    g = grad_f(y)
    cand = project_to_simplex(y - step * g)
    fc = f(cand)
    d = cand - y
    accept = fc <= f(y) + g @ d + (d @ d) / (2.0 * step)
    better = accept & (fc <= fw)
    next_momentum = (1.0 + jnp.sqrt(1.0 + 4.0 * momentum**2)) / 2.0
    extrapolated = cand + ((momentum - 1.0) / next_momentum) * (cand - w)
    new_y = jnp.where(better, extrapolated, jnp.where(accept, w, y))
    new_momentum = jnp.where(better, next_momentum, jnp.where(accept, 1.0, momentum))
    new_step = jnp.where(accept, jnp.minimum(_GROWTH * step, _MAX_STEP), 0.5 * step)
    return (jnp.where(better, cand, w), jnp.where(better, fc, fw), new_y,
            new_momentum, new_step)

  w0 = jnp.full((num_tasks,), 1.0 / num_tasks, dtype)
  one = jnp.asarray(1.0, dtype)
  w, *_ = jax.lax.fori_loop(0, num_iterations, body, (w0, f(w0), w0, one, one))
  return w


def cagrad_weights(gram: jax.Array, c: float = 0.5, num_iterations: int = 200) -> jax.Array:
  """Minimises F(w) over the simplex (`minimize_on_simplex`).

  Args:
    gram: f[T, T], GG[s, t] = ⟨g_s, g_t⟩.
    c: the CAGrad constant (≥ 0).
    num_iterations: number of iterations (static).

  Returns:
    f[T], the approximate minimiser w* (uniform when all gradients are zero).
  """
  t = gram.shape[0]
  scale = jnp.mean(jnp.diagonal(gram))
  a = gram / jnp.where(scale > 0, scale, 1.0)
  tiny = jnp.finfo(a.dtype).tiny
  b = jnp.sum(a, axis=1) / t
  r = c * jnp.sqrt(jnp.maximum(jnp.sum(a) / t**2, 0.0))

  def f(w):
    return w @ b + r * jnp.sqrt(jnp.maximum(w @ a @ w, 0.0))

  def grad_f(w):
    aw = a @ w
    return b + r * aw / jnp.sqrt(jnp.maximum(w @ aw, tiny))

  return minimize_on_simplex(f, grad_f, t, a.dtype, num_iterations)


def cagrad(grads: PyTree, c: float = 0.5, rescale: bool = True,
           num_iterations: int = 200) -> tuple[PyTree, CAGradInfo]:
  """Combines per-task gradients with CAGrad.

  Args:
    grads: pytree of per-task gradients of the shared parameters, every leaf
      ``[T, ...]``.
    c: the CAGrad constant, the radius of the ball is c ‖ḡ‖ (0 ≤ c; the paper
      uses c < 1). Default 0.5 (the official default). A Python float or a traced
      f[] (e.g. an argument of a jitted function).
    rescale: divide d by 1 + c² (the official code's ``rescale=1``).
    num_iterations: iterations of the simplex solver (static).

  Returns:
    ``(combined, info)``: ``combined`` is d of (1) (divided by 1 + c² when
    ``rescale``), a pytree like one task's gradient; ``info`` a `CAGradInfo`.

  Raises:
    ValueError: if ``c`` is negative or ``num_iterations`` is not positive.
  """
  if isinstance(c, (int, float)) and c < 0:  # c may also be traced
    raise ValueError(f"CAGrad needs c >= 0, got {c}.")
  if num_iterations < 1:
    raise ValueError(f"num_iterations must be positive, got {num_iterations}.")
  t = tree.num_tasks(grads)
  gram = tree.task_gram(grads)
  w = cagrad_weights(gram, c, num_iterations)
  g0_norm = jnp.sqrt(jnp.maximum(jnp.sum(gram) / t**2, 0.0))
  gw_norm = jnp.sqrt(jnp.maximum(w @ gram @ w, 0.0))
  lam = jnp.where(gw_norm > 0, c * g0_norm / jnp.where(gw_norm > 0, gw_norm, 1.0), 0.0)
  coeffs = 1.0 / t + lam * w
  if rescale:
    coeffs = coeffs / (1.0 + c * c)
  info = CAGradInfo(weights=w, objective=cagrad_objective(w, gram, c), coefficients=coeffs)
  return tree.task_combine(grads, coeffs), info
