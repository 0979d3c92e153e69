"""OL-AUX: online auxiliary-task weighting (Lin et al., NeurIPS 2019, "Adaptive
Auxiliary Task Weighting for Reinforcement Learning").

The model is trained with SGD (learning rate η) on ℓ_0 + Σ_{k≥1} w_k ℓ_k (the
main weight w_0 is fixed at 1). OL-AUX moves w to make the main loss fall
fastest over the next N steps: to first order in η,

    ℓ_0(θ_{t+N}) ≈ ℓ_0(θ_t) − η Σ_{j=t}^{t+N−1} ⟨∇ℓ_0(θ_j), ∇ℓ_0(θ_j) + Σ_k w_k ∇ℓ_k(θ_j)⟩

so  ∂ℓ_0(θ_{t+N}) / ∂w_k ≈ −η Σ_{j=t}^{t+N−1} ⟨∇ℓ_0(θ_j), ∇ℓ_k(θ_j)⟩ = −η a_k.

Every step `olaux_update` adds this step's alignments ⟨∇ℓ_0, ∇ℓ_k⟩ (over the
shared parameters; e.g. ``tree.task_dots(grads, tree.task_slice(grads, 0))[1:]``)
to a_k; on every N-th step it takes one step of SGD with momentum μ and learning
rate β on the weights with that gradient, then resets a to 0:

    v_k ← μ v_k − η a_k,      w_k ← w_k − β v_k                      (PyTorch SGD)

(v starts at 0, so the first update is w_k ← w_k + β η a_k). SLGrad's
implementation (vub-dl/SLGrad, ``Multi-Task Model/MTL_MODEL_OPT.py`` lines 65-75,
``Dynamic Weighting Algorithms/Dynamic_weighting.py`` lines 360-378) uses N = 2,
μ = 0.9 (its model's momentum), β = η·N and η = the model's learning rate; with
μ = 0 this is the plain additive rule w_k ← w_k + β η a_k of the paper. The
weights are not clipped (neither does SLGrad's copy; the official RL code clips
them at 0).

The weights returned for a step are those in force before that step's update.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class OLAuxState(NamedTuple):
  """State of the OL-AUX weights.

  Attributes:
    weights: f32[T]. Task weights; weights[0] (the main task) stays 1.
    acc: f32[K]. a_k, the alignments accumulated since the last weight update
      (K = T − 1).
    count: i32[]. Steps accumulated in ``acc`` (0..N−1 between updates).
    velocity: f32[K]. v, the momentum buffer of the weights' SGD.
  """

  weights: jax.Array
  acc: jax.Array
  count: jax.Array
  velocity: jax.Array


def olaux_init(num_tasks: int, initial_aux_weight: float = 1.0,
               dtype: jnp.dtype = jnp.float32) -> OLAuxState:
  """Initial OL-AUX state: main weight 1, auxiliary weights ``initial_aux_weight``.

  Args:
    num_tasks: T (≥ 1; task 0 is the main task).
    initial_aux_weight: initial w_k for k ≥ 1.
    dtype: dtype of the weights and the accumulator.

  Returns:
    An `OLAuxState`.
  """
  if num_tasks < 1:
    raise ValueError(f"num_tasks must be at least 1, got {num_tasks}.")
  weights = jnp.full((num_tasks,), initial_aux_weight, dtype).at[0].set(1.0)
  return OLAuxState(weights=weights,
                    acc=jnp.zeros((num_tasks - 1,), dtype),
                    count=jnp.zeros((), jnp.int32),
                    velocity=jnp.zeros((num_tasks - 1,), dtype))


def olaux_update(state: OLAuxState, alignments: jax.Array, every_n: int, beta: float,
                 model_lr: float = 1.0, momentum: float = 0.0
                 ) -> tuple[OLAuxState, jax.Array]:
  """One OL-AUX step: accumulate alignments; every N steps update the weights.

  Args:
    state: the current `OLAuxState`.
    alignments: f32[K], ⟨∇ℓ_0, ∇ℓ_k⟩ for the auxiliary tasks at this step.
    every_n: N ≥ 1, the horizon (steps between weight updates).
    beta: β, the learning rate of the weights' SGD.
    model_lr: η, the model's learning rate (the gradient is −η a; 1: β absorbs it).
    momentum: μ of the weights' SGD (0: the plain additive rule).

  Returns:
    ``(new_state, weights)``: ``weights`` f32[T] are the weights for this
    step's model update (before any update of this step); ``new_state`` has the
    updated accumulator and, on every N-th step, the new weights.

  Raises:
    ValueError: if ``alignments`` is not f[K] or ``every_n`` < 1.
  """
  k = state.acc.shape[0]
  if jnp.shape(alignments) != (k,):
    raise ValueError(f"alignments must have shape ({k},), got {jnp.shape(alignments)}.")
  if every_n < 1:
    raise ValueError(f"every_n must be at least 1, got {every_n}.")
  acc = state.acc + jax.lax.stop_gradient(jnp.asarray(alignments, state.acc.dtype))
  count = state.count + 1
  apply = count >= every_n
  velocity = momentum * state.velocity - model_lr * acc  # PyTorch SGD: v ← μv + grad
  step = jnp.concatenate([jnp.zeros((1,), acc.dtype), -beta * velocity])
  new_weights = jnp.where(apply, state.weights + step, state.weights)
  new_state = OLAuxState(weights=new_weights,
                         acc=jnp.where(apply, jnp.zeros_like(acc), acc),
                         count=jnp.where(apply, 0, count),
                         velocity=jnp.where(apply, velocity, state.velocity))
  return new_state, state.weights
