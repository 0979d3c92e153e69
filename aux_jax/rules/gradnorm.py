"""GradNorm: gradient normalisation for adaptive loss balancing (Chen et al.,
ICML 2018).

Learnable task weights w ∈ R^T (initialised to 1) scale the task losses; the
model is trained on Σ_t w_t ℓ_t. With n_t = ‖∇_W ℓ_t‖ the gradient norm of the
unweighted task loss w.r.t. a chosen shared layer W (usually the last shared
layer), and ℓ_t(0) the task losses at the first step:

    G_t  = w_t n_t                                  (norm of ∇_W (w_t ℓ_t))
    Ḡ    = mean_t G_t
    L̃_t  = ℓ_t / ℓ_t(0),       r_t = L̃_t / mean_s L̃_s   (relative inverse training rate)
    L_grad(w) = Σ_t | G_t − sg[Ḡ · r_t^α] |

where sg[·] (stop-gradient: the target is a constant, as in the paper) makes

    ∂L_grad/∂w_t = sign(G_t − Ḡ r_t^α) · n_t .

Each step the weights take a gradient step on L_grad (plain SGD with ``lr``, or
any optax optimizer), are clipped to at least ``min_weight`` (> 0) and then
renormalised so Σ_t w_t = T. As in the paper's Algorithm 1, the model step of
step t uses w(t) (the weights before this update); `gradnorm_update` returns
them together with the new state holding w(t + 1).

A task whose initial loss is 0 gets L̃_t = 1 (no division by zero).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax


class GradNormState(NamedTuple):
  """State of the GradNorm weights.

  Attributes:
    weights: f32[T]. The task weights w(t), Σ_t w_t = T.
    initial_losses: f32[T]. ℓ_t(0) (zeros until the first update).
    initialized: bool[]. Whether ``initial_losses`` has been recorded.
    opt_state: the optax state of the weight optimizer (``optax.EmptyState()``
      for plain SGD).
  """

  weights: jax.Array
  initial_losses: jax.Array
  initialized: jax.Array
  opt_state: optax.OptState


def gradnorm_init(num_tasks: int,
                  optimizer: Optional[optax.GradientTransformation] = None,
                  dtype: jnp.dtype = jnp.float32) -> GradNormState:
  """Initial GradNorm state: all weights 1.

  Args:
    num_tasks: T (≥ 1).
    optimizer: the optax optimizer of the weights, or None for plain SGD with
      the ``lr`` of `gradnorm_update`. Pass the same one to `gradnorm_update`.
    dtype: dtype of the weights and the recorded losses.

  Returns:
    A `GradNormState`.
  """
  if num_tasks < 1:
    raise ValueError(f"num_tasks must be at least 1, got {num_tasks}.")
  weights = jnp.ones((num_tasks,), dtype)
  opt_state = optax.EmptyState() if optimizer is None else optimizer.init(weights)
  return GradNormState(weights=weights,
                       initial_losses=jnp.zeros((num_tasks,), dtype),
                       initialized=jnp.array(False),
                       opt_state=opt_state)


def gradnorm_loss_and_grad(weights: jax.Array, losses: jax.Array, initial_losses: jax.Array,
                           grad_norms: jax.Array, alpha: float) -> tuple[jax.Array, jax.Array]:
  """L_grad and its gradient w.r.t. the weights (targets held constant).

  Args:
    weights: f[T].
    losses: f[T], ℓ_t at this step.
    initial_losses: f[T], ℓ_t(0).
    grad_norms: f[T], n_t = ‖∇_W ℓ_t‖ (unweighted losses).
    alpha: the asymmetry α ≥ 0.

  Returns:
    ``(L_grad, ∂L_grad/∂w)``: f[] and f[T].
  """
  def loss_fn(w):
    g = w * grad_norms
    ok = initial_losses > 0
    inv_rate = jnp.where(ok, losses / jnp.where(ok, initial_losses, 1.0), 1.0)
    r = inv_rate / jnp.mean(inv_rate)
    target = jax.lax.stop_gradient(jnp.mean(g) * r**alpha)
    return jnp.sum(jnp.abs(g - target))

  return jax.value_and_grad(loss_fn)(weights)


def gradnorm_update(
    state: GradNormState,
    losses: jax.Array,
    grad_norms: jax.Array,
    alpha: float = 1.5,
    lr: Optional[float] = None,
    optimizer: Optional[optax.GradientTransformation] = None,
    min_weight: float = 1e-3,
) -> tuple[GradNormState, jax.Array]:
  """One GradNorm step of the task weights.

  Args:
    state: the current `GradNormState`.
    losses: f32[T], the (unweighted) task losses ℓ_t at this step. Gradients
      do not flow through them.
    grad_norms: f32[T], n_t = ‖∇_W ℓ_t‖ w.r.t. the chosen shared layer W
      (e.g. `aux_jax.rules.tree.task_norms` of that layer's per-task grads).
    alpha: α, the strength of the pull toward equal training rates (paper:
      0.12 to 3; 1.5 common).
    lr: learning rate of plain SGD on the weights; exactly one of ``lr`` and
      ``optimizer`` must be given.
    optimizer: optax optimizer of the weights (the one given to
      `gradnorm_init`).
    min_weight: lower clip of the weights before renormalising (keeps w > 0).

  Returns:
    ``(new_state, weights)``: ``weights`` f32[T] are w(t), the weights for this
    step's model update Σ_t w_t ℓ_t; ``new_state`` holds w(t + 1).

  Raises:
    ValueError: on shape mismatches, or unless exactly one of ``lr`` and
      ``optimizer`` is given.
  """
  t = state.weights.shape[0]
  if jnp.shape(losses) != (t,) or jnp.shape(grad_norms) != (t,):
    raise ValueError(
        f"losses and grad_norms must have shape ({t},), got {jnp.shape(losses)} "
        f"and {jnp.shape(grad_norms)}.")
  if (lr is None) == (optimizer is None):
    raise ValueError("Give exactly one of lr (plain SGD) and optimizer (optax).")
  if min_weight <= 0:
    raise ValueError(f"min_weight must be positive, got {min_weight}.")
  losses = jax.lax.stop_gradient(jnp.asarray(losses, state.weights.dtype))
  grad_norms = jax.lax.stop_gradient(jnp.asarray(grad_norms, state.weights.dtype))
  initial = jnp.where(state.initialized, state.initial_losses, losses)

  weights = state.weights
  _, grad = gradnorm_loss_and_grad(weights, losses, initial, grad_norms, alpha)
  if optimizer is None:
    new_weights, opt_state = weights - lr * grad, state.opt_state
  else:
    updates, opt_state = optimizer.update(grad, state.opt_state, weights)
    new_weights = optax.apply_updates(weights, updates)
  new_weights = jnp.maximum(new_weights, min_weight)
  new_weights = new_weights * (t / jnp.sum(new_weights))
  new_state = GradNormState(weights=new_weights, initial_losses=initial,
                            initialized=jnp.array(True), opt_state=opt_state)
  return new_state, weights
