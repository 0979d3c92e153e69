"""MAOAL: module-wise auxiliary task weights (Chen et al., NeurIPS 2022).

Weights W ∈ R^{K×M} (auxiliary task × module of the shared network), initialised to 1,
effective ω = ReLU(W). With s = 1/K the lower-level direction on module m of the shared
parameters is

    G_m(θ, W) = ∇_{θ_m} ℓ₀ + s Σ_k ω_{k,m} ∇_{θ_m} ℓ_k ,

and each head receives the plain gradient of ℓ₀ + s Σ_k ℓ_k. W is trained by the
implicit hypergradient of the dev loss through G (`aux_jax.hypergrad`); J = ∂G/∂θ_s is
not symmetric, so the estimator uses vector–Jacobian products, and

    dL/dW_{k,m} = −s · 1[W_{k,m} > 0] · ⟨∇_{θ_m} ℓ_k, p_m⟩,   Jᵀp = ∇_{θ_s} L_dev.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aux_jax.methods.base import (Method, MethodState, mean_task_losses, per_task_grads,
                                  task_metrics)
from aux_jax.partition import Partition, module_broadcast
from aux_jax.rules.tree import task_combine


def task_module_coefficients(omega: jax.Array) -> jax.Array:
  """c[t, m]: 1 for the main task, ω_{k,m}/K for auxiliary task k. f32[K, M] -> f32[T, M]."""
  num_aux, num_modules = omega.shape
  return jnp.concatenate([jnp.ones((1, num_modules), omega.dtype), omega / num_aux])


def maoal(num_tasks: int, partition: Partition) -> Method:
  """The MAOAL `Method` for T = ``num_tasks`` tasks over ``partition``'s M modules."""
  if num_tasks < 2:
    raise ValueError("maoal needs at least one auxiliary task")
  num_aux = num_tasks - 1

  def init(key):
    del key
    return MethodState(phi=jnp.ones((num_aux, partition.num_modules), jnp.float32),
                       state=())

  head_w = jnp.concatenate([jnp.ones((1,)), jnp.full((num_aux,), 1.0 / num_aux)])

  def direction(params, w, state, losses, key):
    del key
    omega = jax.nn.relu(w)
    coeff = task_module_coefficients(omega)                      # [T, M]
    if partition.num_modules < num_tasks:
      # G_m = ∇_{θ_m} Σ_t c[t, m] ℓ_t: one forward, M plain backward passes.
      task_losses, vjp_fn, model_state = jax.vjp(
          mean_task_losses(losses), params, has_aux=True)
      per_module = [vjp_fn(coeff[:, m])[0]["backbone"]
                    for m in range(partition.num_modules)]
      backbone = jax.tree.map(lambda m, *gs: gs[m], partition.assignment, *per_module)
      heads = vjp_fn(head_w.astype(task_losses.dtype))[0]["heads"]
    else:
      # Many modules (e.g. param_wise): scale the T per-task gradients per module.
      grads, task_losses, model_state = per_task_grads(losses, params)
      scale = module_broadcast(partition, coeff)                 # leaves [T, 1, ...]
      backbone = jax.tree.map(lambda g, c: jnp.sum(c * g, axis=0),
                              grads["backbone"], scale)
      heads = task_combine(grads["heads"], head_w)
    out = {"backbone": backbone, "heads": heads}
    return out, state, model_state, {**task_metrics(task_losses), "weights": omega}

  return Method(name="maoal", init=init, direction=direction, learnable=True,
                symmetric=False, hyper_wrt="shared")
