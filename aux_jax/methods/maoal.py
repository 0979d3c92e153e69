"""MAOAL: module-wise auxiliary task weights (Chen et al., NeurIPS 2022).

Weights W ∈ R^{K×M} (auxiliary task × module of the shared network), initialised to 1,
effective ω = ReLU(W). With s = 1/K the lower-level direction on module m of the shared
parameters is

    G_m(θ, W) = ∇_{θ_m} ℓ₀ + s Σ_k ω_{k,m} ∇_{θ_m} ℓ_k ,

and each head receives the plain gradient of ℓ₀ + s Σ_k ℓ_k. An auxiliary task that
is trained through the main task's head (more labels of the main task, from another
source; `MultiTaskData.task_heads`) shares that head as it shares the backbone, so the
head is one more module: W gets a column ``main_head`` and the main head receives
∇ℓ₀ + s Σ_k ω_{k,head} ∇ℓ_k over the tasks sharing it (the others' entries are unused,
logged as 1), and the hypergradient's θ_s includes the main head. W is trained by the
implicit hypergradient of the dev loss through G (`aux_jax.hypergrad`); J = ∂G/∂θ_s is
not symmetric, so the estimator uses vector–Jacobian products, and

    dL/dW_{k,m} = −s · 1[W_{k,m} > 0] · ⟨∇_{θ_m} ℓ_k, p_m⟩,   Jᵀp = ∇_{θ_s} L_dev.

How G is computed (``lower``; all give the same G and the same derivatives of G):

* ``"one_pass"`` (default where the losses allow it, `LossFns.scaled`): one forward
  and one backward pass of Σ_t h_t ℓ_t (h = (1, 1/K, …), the heads' weights) in which
  every backbone layer of module m scales task t's output cotangent by
  r[t, m] = c[t, m]/h_t (1 for the main task, ω_{k,m} for auxiliary task k) and
  divides its input cotangent by it (`aux_jax.models.backward_scale`). Tasks have
  their own rows and per-chunk BatchNorm statistics, so task t's cotangent never
  mixes with another's and each layer's weight gradient is Σ_t c[t, m] ∇ℓ_t. A zero
  ω_{k,m} cannot be divided by: r is floored at ``floor`` × max_m r[t, m] (a zeroed
  module then receives floor·ω_max·∇ℓ_k/K, below float32 rounding for the default
  1e-6; the derivative w.r.t. ω is taken as if unfloored), and a task whose ω are
  all zero is dropped from the backbone exactly.
* ``"per_module"`` (the original's way, the reference): one forward and M backward
  passes, G_m from the m-th (many modules, M ≥ T: the T per-task gradients scaled
  per module).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.methods.base import (Method, MethodState, mean_task_losses, per_task_grads,
                                  task_metrics)
from aux_jax.partition import Partition, leaf_paths, module_broadcast
from aux_jax.rules.tree import task_combine


def task_module_coefficients(omega: jax.Array) -> jax.Array:
  """c[t, m]: 1 for the main task, ω_{k,m}/K for auxiliary task k. f32[K, M] -> f32[T, M]."""
  num_aux, num_modules = omega.shape
  return jnp.concatenate([jnp.ones((1, num_modules), omega.dtype), omega / num_aux])


LOWER = ("one_pass", "per_module")


def layer_modules(partition: Partition) -> Optional[dict[str, int]]:
  """``{layer path: module}`` for the layers owning backbone parameters (a leaf path
  without its last key), or None when a layer's parameters lie in several modules
  (e.g. ``param_wise``), or a layer contains another: then no one-pass lower step."""
  out: dict[str, int] = {}
  for path, m in zip(leaf_paths(partition.assignment), partition.leaf_modules):
    layer = path.rpartition("/")[0]
    if out.setdefault(layer, m) != m:
      return None
  if any(b.startswith(a + "/") or a == "" for a in out for b in out if a != b):
    return None
  return out


def shares_main_head(num_tasks: int, heads=None) -> tuple[bool, ...]:
  """Whether each auxiliary task k = 1..K is trained through the main task's head
  (``heads``: the T head indices, `TaskSpec.heads`; None: every task its own)."""
  return tuple(bool(heads is not None and int(heads[k]) == 0) for k in range(1, num_tasks))


def module_names(partition: Partition, num_tasks: int, heads=None) -> tuple[str, ...]:
  """The names of W's columns: the partition's modules, then ``main_head`` when an
  auxiliary task shares the main head."""
  extra = ("main_head",) if any(shares_main_head(num_tasks, heads)) else ()
  return tuple(partition.module_names) + extra


def weights_used(partition: Partition, num_tasks: int, heads=None) -> np.ndarray:
  """bool[K, M (+1)]: which entries of W act (all, but the main-head column only for
  the tasks trained through the main head)."""
  share = np.array(shares_main_head(num_tasks, heads), bool)
  used = np.ones((num_tasks - 1, partition.num_modules), bool)
  return np.concatenate([used, share[:, None]], 1) if share.any() else used


def maoal(num_tasks: int, partition: Partition, lower: str = "one_pass",
          floor: float = 1e-6, heads=None) -> Method:
  """The MAOAL `Method` for T = ``num_tasks`` tasks over ``partition``'s M modules.

  Args:
    num_tasks: T (≥ 2).
    partition: the module partition of the backbone.
    lower: how G is computed, ``"one_pass"`` or ``"per_module"`` (see the module
      docstring); ``"one_pass"`` falls back to ``"per_module"`` where the losses or the
      partition do not allow it.
    floor: the one-pass path's relative floor on the cotangent scales (0 < floor < 1).
    heads: the T head indices (`TaskSpec.heads`; None: every task its own head);
      auxiliary tasks trained through head 0 get a ``main_head`` weight (see the
      module docstring; G then comes from the per-module path).

  Raises:
    ValueError: fewer than 2 tasks, an unknown ``lower`` or a floor outside (0, 1).
  """
  if num_tasks < 2:
    raise ValueError("maoal needs at least one auxiliary task")
  if lower not in LOWER:
    raise ValueError(f"maoal lower must be one of {LOWER}, got {lower!r}")
  if not 0.0 < floor < 1.0:
    raise ValueError(f"maoal floor must be in (0, 1), got {floor}")
  num_aux = num_tasks - 1
  shares = jnp.asarray(shares_main_head(num_tasks, heads))
  head_module = bool(shares.any())
  num_modules = partition.num_modules
  # One pass scales cotangents by ω_{k,m}/ω_{k,head} when the head is weighted, which
  # a zero head weight cannot divide: the per-module path then.
  layers = layer_modules(partition) if lower == "one_pass" and not head_module else None

  def init(key):
    del key
    return MethodState(phi=jnp.ones((num_aux, num_modules + head_module), jnp.float32),
                       state=())

  fixed_head_w = jnp.concatenate([jnp.ones((1,)), jnp.full((num_aux,), 1.0 / num_aux)])

  def direction(params, w, state, losses, key):
    del key
    omega = jax.nn.relu(w)
    head_w = fixed_head_w
    if head_module:  # the main head's column; 1 for tasks with their own head
      omega = omega.at[:, -1].set(jnp.where(shares, omega[:, -1], 1.0))
      head_w = jnp.concatenate([jnp.ones((1,)), omega[:, -1] / num_aux])
    coeff = task_module_coefficients(omega[:, :num_modules])     # [T, M]
    if layers is not None and losses.scaled is not None:
      # G from one backward pass with per-layer, per-task cotangent scales r[t, m].
      ratio = jnp.concatenate([jnp.ones((1, num_modules), omega.dtype), omega])
      floored = jnp.maximum(ratio, floor * jnp.max(ratio, axis=1, keepdims=True))
      ratio = ratio + jax.lax.stop_gradient(floored - ratio)     # d/dω as unfloored
      scales = {layer: ratio[:, m] for layer, m in layers.items()}

      def total(p):
        per_sample, model_state = losses.scaled(p, scales)
        task_losses = jnp.mean(per_sample, axis=1)
        return jnp.dot(head_w.astype(task_losses.dtype), task_losses), (
            task_losses, model_state)

      out, (task_losses, model_state) = jax.grad(total, has_aux=True)(params)
    elif num_modules < num_tasks:
      # G_m = ∇_{θ_m} Σ_t c[t, m] ℓ_t: one forward, M plain backward passes.
      task_losses, vjp_fn, model_state = jax.vjp(
          mean_task_losses(losses), params, has_aux=True)
      per_module = [vjp_fn(coeff[:, m])[0]["backbone"]
                    for m in range(num_modules)]
      backbone = jax.tree.map(lambda m, *gs: gs[m], partition.assignment, *per_module)
      heads = vjp_fn(head_w.astype(task_losses.dtype))[0]["heads"]
      out = {"backbone": backbone, "heads": heads}
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
                symmetric=False, hyper_wrt="main_head" if head_module else "shared")
