"""SLGrad: sample-level weighting (Grégoire et al., 2023, "Sample-Level Weighting
for Multi-Task Learning with Auxiliary Tasks").

Each step, with shared parameters θ_s and the gradient g_val = ∇_{θ_s} of the
mean main-task loss on a validation batch, every (task t, sample i) pair is
scored by how well its gradient agrees with g_val,

    a[t, i] = ⟨∇_{θ_s} ℓ_t(x_i), g_val⟩ ,

and the model is updated with (1/B) Σ_{t,i} W[t, i] ℓ_t(x_i) (the original's scale;
see `aux_jax.methods.slgrad`), where

    W = max(a, 0) / Σ_{t,i} max(a, 0)         (W = 0 when the sum is 0).

a[t, i] is the directional derivative of ℓ_t(x_i) along g_val, so all T·B of them
come from one forward-mode Jacobian–vector product of the per-sample loss
function θ_s ↦ ℓ ∈ R^{T×B}, instead of T·B backward passes.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

PyTree = Any


def sample_alignments(per_sample_losses_fn: Callable[[PyTree], jax.Array],
                      shared_params: PyTree, g_val: PyTree) -> jax.Array:
  """a[t, i] = ⟨∇_{θ_s} ℓ_t(x_i), g_val⟩ by one `jax.jvp`.

  Args:
    per_sample_losses_fn: θ_s ↦ f[T, B], the per-task, per-sample losses as a
      function of the shared parameters only (close over the batch, the heads
      and any RNG).
    shared_params: θ_s, a pytree.
    g_val: the direction, a pytree like ``shared_params`` (same structure and
      dtypes).

  Returns:
    f[T, B], the alignments (the output of ``per_sample_losses_fn`` is only
    required to be an array; its shape is kept).

  Raises:
    ValueError: if ``g_val`` does not match ``shared_params`` in structure.
  """
  if jax.tree.structure(shared_params) != jax.tree.structure(g_val):
    raise ValueError("g_val must have the pytree structure of shared_params.")
  g_val = jax.tree.map(lambda p, g: jnp.asarray(g, jnp.result_type(p)), shared_params, g_val)
  _, a = jax.jvp(per_sample_losses_fn, (shared_params,), (g_val,))
  return a


def slgrad_weights(alignments: jax.Array) -> jax.Array:
  """W = max(a, 0) / Σ max(a, 0) over all tasks and samples (0 if the sum is 0).

  Args:
    alignments: f[T, B] (any shape), a from `sample_alignments`.

  Returns:
    Weights of the same shape, non-negative, summing to 1 (or all zero). Not
    differentiated through (the weights are constants of the model update).
  """
  pos = jnp.maximum(jax.lax.stop_gradient(alignments), 0.0)
  total = jnp.sum(pos)
  return jnp.where(total > 0, pos / jnp.where(total > 0, total, 1.0), 0.0)
