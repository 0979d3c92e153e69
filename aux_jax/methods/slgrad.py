"""SLGrad: sample-level task weights from gradient alignment with a dev batch
(Grégoire et al., 2023, "Sample-Level Weighting for Multi-Task Learning with
Auxiliary Tasks").

Every step, with shared parameters θ_s (the backbone, heads held fixed) and the
step's dev batch of the main task:

    g_val   = ∇_{θ_s} L_dev                           (mean main-task dev loss)
    a[t, i] = ⟨∇_{θ_s} ℓ_t(x_i), g_val⟩                (every task t, sample i)
    W       = max(a, 0) / Σ_{t,i} max(a, 0)             (all 0 if the sum is 0)
    G       = ∇_θ (1/B) Σ_{t,i} W[t, i] ℓ_t(x_i)        (all parameters, heads too)

The 1/B is the original's (vub-dl/SLGrad, ``Multi-Task Model/MTL_MODEL_OPT.py``
lines 253-273: each task's loss is ⟨W[t, :], ℓ_t⟩ / B). Since Σ W = 1 the update is
B times smaller than a plain mean-loss step; ``scale="sum"`` drops the 1/B
(G = ∇ Σ W ℓ, the scale of a mean-loss step, aux_jax's earlier convention).

a comes from one forward-mode product of θ_s ↦ ℓ ∈ R^{T×B} along g_val
(`aux_jax.rules.sample_alignments`), G from one backward pass of the weighted
per-sample loss. One update per batch, weights from the current batch. W is a
constant of the update (no gradient through it).

``look_ahead=True`` restores the original's two updates per batch
(``Dynamic Weighting Algorithms/Dynamic_weighting.py:421-500``): first a step on the
batch with the previous batch's W (1/(T·B) everywhere before the first batch,
``MTL_MODEL_OPT.py:60-63``), then W computed at the updated parameters and a second
step with it. The original meant the first as a look-ahead to be undone (its restore
of the model and optimizer state, lines 423-427 and 495-497, is commented out), so
both steps are taken: a defect, reproduced only by this option.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from aux_jax.methods.base import Method, MethodState, task_metrics
from aux_jax.rules.slgrad import sample_alignments, slgrad_weights


SCALES = ("batch", "sum")


class LookAheadState(NamedTuple):
  """SLGrad's state with ``look_ahead``: ``weights`` f32[T, B], the last W; ``phase``
  i32[], 0 before the look-ahead update of a batch, 1 before its final update."""

  weights: jax.Array
  phase: jax.Array


def slgrad(num_tasks: int, scale: str = "batch", look_ahead: bool = False,
           batch_size: int | None = None) -> Method:
  """The SLGrad `Method` over T = ``num_tasks`` tasks.

  ``scale``: "batch" (default, the original's): the update is ∇ (1/B) Σ W ℓ; "sum":
  ∇ Σ W ℓ (B times larger). ``look_ahead``: the original's two updates per batch
  (module docstring; `Method.updates_per_batch` = 2), which needs ``batch_size`` B
  for its stored W.

  ``direction``'s metrics: ``weights`` f32[K] = Σ_i W[k, i] (each auxiliary task's
  total weight), ``main_weight`` f32[] = Σ_i W[0, i], ``main_sample_weights``
  f32[B] = W[0, :], and ``positive_fraction`` f32[] = the fraction of (t, i) with
  a[t, i] > 0.

  Raises:
    ValueError: fewer than 2 tasks or an unknown ``scale``.
  """
  if num_tasks < 2:
    raise ValueError(f"slgrad needs at least one auxiliary task, got num_tasks={num_tasks}")
  if scale not in SCALES:
    raise ValueError(f"slgrad scale must be one of {SCALES}, got {scale!r}")
  if look_ahead and not (batch_size and batch_size >= 1):
    raise ValueError("slgrad look_ahead needs batch_size (the batch size B)")

  def init(key):
    del key
    if not look_ahead:
      return MethodState(phi=(), state=())
    w0 = jnp.full((num_tasks, batch_size), 1.0 / (num_tasks * batch_size), jnp.float32)
    return MethodState(phi=(), state=LookAheadState(w0, jnp.zeros((), jnp.int32)))

  def direction(params, phi, state, losses, key):
    del phi, key
    heads = params["heads"]
    merge = lambda bb: {"backbone": bb, "heads": heads}
    backbone = params["backbone"]

    def alignments():
      g_val = jax.grad(lambda bb: losses.dev(merge(bb)))(backbone)
      return sample_alignments(lambda bb: losses.per_sample(merge(bb))[0], backbone,
                               g_val)

    if look_ahead:  # phase 0: the previous W (no scores); phase 1: fresh W
      align = jax.lax.cond(state.phase == 0,
                           lambda: jnp.ones_like(state.weights), alignments)
      w = jnp.where(state.phase == 0, state.weights, slgrad_weights(align))
      state = LookAheadState(w, 1 - state.phase)
    else:
      align = alignments()
      w = slgrad_weights(align)                                   # [T, B]
    if scale == "batch":  # the original divides each task's weighted sum by B
      w_loss = w / w.shape[1]
    else:
      w_loss = w

    def total(p):
      per_sample, model_state = losses.per_sample(p)
      return jnp.sum(w_loss.astype(per_sample.dtype) * per_sample), (per_sample, model_state)

    grads, (per_sample, model_state) = jax.grad(total, has_aux=True)(params)
    task_w = jnp.sum(w, axis=1)
    metrics = {**task_metrics(jnp.mean(per_sample, axis=1)), "weights": task_w[1:],
               "main_weight": task_w[0], "main_sample_weights": w[0],
               "positive_fraction": jnp.mean((align > 0).astype(jnp.float32))}
    return grads, state, model_state, metrics

  return Method(name="slgrad", init=init, direction=direction,
                updates_per_batch=2 if look_ahead else 1)
