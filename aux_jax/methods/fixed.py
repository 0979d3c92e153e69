"""Fixed task weightings: the main loss alone, or a constant weight per task.

    stl:    G = ∇_θ ℓ₀                         (single-task learning: the main loss alone)
    equal:  G = ∇_θ (ℓ₀ + Σ_{k=1..K} ℓ_k)      (every auxiliary loss with weight 1)
    unif:   G = ∇_θ (1/T) Σ_{t=0..K} ℓ_t       (uniform weights, the SLGrad papers' "Unif")
    fixed:  G = ∇_θ (ℓ₀ + Σ_k w_k ℓ_k)          (given weights w, e.g. an oracle's)

One backward pass of the weighted sum of the batch-mean task losses.
"""

from __future__ import annotations

import jax.numpy as jnp

from aux_jax.methods.base import Method, MethodState, task_metrics, weighted_loss_grad


def fixed_weights(name: str, task_weights) -> Method:
  """A `Method` that minimises Σ_t w_t mean_b ℓ_t with constant ``task_weights`` f32[T]."""
  w = jnp.asarray(task_weights, jnp.float32)

  def init(key):
    del key
    return MethodState(phi=(), state=())

  def direction(params, phi, state, losses, key):
    del phi, key
    grads, task_losses, model_state = weighted_loss_grad(losses, params, w)
    return grads, state, model_state, {**task_metrics(task_losses), "weights": w[1:]}

  return Method(name=name, init=init, direction=direction)


def stl(num_tasks: int) -> Method:
  return fixed_weights("stl", jnp.zeros(num_tasks).at[0].set(1.0))


def equal(num_tasks: int) -> Method:
  return fixed_weights("equal", jnp.ones(num_tasks))


def unif(num_tasks: int) -> Method:
  return fixed_weights("unif", jnp.full(num_tasks, 1.0 / num_tasks))


def fixed(num_tasks: int, weights=None) -> Method:
  """Given auxiliary weights ``weights`` f32[K] (K = T − 1; the main task's is 1).

  Raises:
    ValueError: ``weights`` missing, of the wrong length, or negative.
  """
  if weights is None:
    raise ValueError("method fixed needs method.kwargs.weights (one per auxiliary task)")
  w = [float(x) for x in weights]
  if len(w) != num_tasks - 1 or min(w, default=0.0) < 0:
    raise ValueError(f"method fixed: weights must be {num_tasks - 1} non-negative "
                     f"numbers (one per auxiliary task), got {tuple(weights)}")
  return fixed_weights("fixed", [1.0, *w])
