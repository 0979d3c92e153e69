"""GCS: add an auxiliary gradient only where it agrees with the main one (Du et al., 2018).

On the shared parameters, G = g₀ + Σ_k 1[cos(g₀, g_k) > 0] g_k (`aux_jax.rules.gcs`);
each head receives its own task's plain gradient. ``per_layer`` / ``unit_layers``: the
GCS of SLGrad's code (per-tensor cosines summed, ≥ 0; each shared tensor's update
scaled to unit norm), see `aux_jax.rules.gcs`.
"""

from __future__ import annotations

import jax.numpy as jnp

from aux_jax.methods.base import Method, MethodState, per_task_grads, task_metrics
from aux_jax.rules.gcs import gcs as gcs_rule
from aux_jax.rules.tree import task_combine


def gcs(num_tasks: int, per_layer: bool = False, unit_layers: bool = False) -> Method:
  def init(key):
    del key
    return MethodState(phi=(), state=())

  def direction(params, phi, state, losses, key):
    del phi, key
    grads, task_losses, model_state = per_task_grads(losses, params)
    backbone, info = gcs_rule(grads["backbone"], per_layer, unit_layers)
    heads = task_combine(grads["heads"], jnp.ones((num_tasks,)))
    metrics = {**task_metrics(task_losses), "weights": info.mask.astype(jnp.float32)}
    return {"backbone": backbone, "heads": heads}, state, model_state, metrics

  return Method(name="gcs", init=init, direction=direction)
