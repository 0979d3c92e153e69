"""Gradient-surgery methods: PCGrad and CAGrad on the shared parameters.

Both combine the T per-task gradients g_t = ∇_{θ_s} mean_b ℓ_t of the shared
parameters θ_s (task 0 main, 1..K auxiliary; one backward pass by
`aux_jax.methods.base.per_task_grads`) with a rule of `aux_jax.rules`; each head
receives its own task's plain gradient (heads are not shared, so there is no
conflict to resolve there).

* ``pcgrad`` (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning"):
  for every task i and every other task j in a random order, if ⟨g_i', g_j⟩ < 0
  then g_i' ← g_i' − ⟨g_i', g_j⟩/‖g_j‖² g_j; G_s = Σ_i g_i' = Σ_t c_t g_t
  (`aux_jax.rules.pcgrad`, orders drawn from the step's key).
* ``cagrad`` (Liu et al., NeurIPS 2021, "Conflict-Averse Gradient Descent for
  Multi-task Learning"): with ḡ = mean_t g_t and w* on the simplex minimising
  ⟨g_w, ḡ⟩ + c‖ḡ‖‖g_w‖, G_s = ḡ + (c‖ḡ‖/‖g_w*‖) g_w* (divided by 1 + c² when
  ``rescale``) (`aux_jax.rules.cagrad`). c is the paper's (the official code's
  ``alpha``); default 0.5 as the official code (Cranial-XIX/CAGrad
  ``nyuv2/model_segnet_mt.py`` line 18).
"""

from __future__ import annotations

import jax.numpy as jnp

from aux_jax.methods.base import Method, MethodState, per_task_grads, task_metrics
from aux_jax.rules.cagrad import cagrad as cagrad_rule
from aux_jax.rules.pcgrad import pcgrad as pcgrad_rule
from aux_jax.rules.tree import task_combine


def _check_tasks(name: str, num_tasks: int) -> None:
  if num_tasks < 2:
    raise ValueError(f"{name} needs a main task and at least one auxiliary task, "
                     f"got num_tasks={num_tasks}")


def _stateless_init(key):
  del key
  return MethodState(phi=(), state=())


def pcgrad(num_tasks: int) -> Method:
  """The PCGrad `Method` over T = ``num_tasks`` tasks.

  ``direction`` returns ``{"backbone": Σ_t c_t g_t, "heads": Σ_t ∇_heads ℓ_t}`` and
  metrics ``weights`` f32[K] = c[1:], the PCGrad coefficients of the auxiliary
  gradients (all 1 when nothing conflicts), ``main_coefficient`` f32[] = c_0 and
  ``num_projections`` i32[]. The projection orders come from the step's ``key``.
  """
  _check_tasks("pcgrad", num_tasks)

  def direction(params, phi, state, losses, key):
    del phi
    grads, task_losses, model_state = per_task_grads(losses, params)
    backbone, info = pcgrad_rule(grads["backbone"], key)
    heads = task_combine(grads["heads"], jnp.ones((num_tasks,), task_losses.dtype))
    metrics = {**task_metrics(task_losses), "weights": info.coefficients[1:],
               "main_coefficient": info.coefficients[0],
               "num_projections": info.num_projections}
    return {"backbone": backbone, "heads": heads}, state, model_state, metrics

  return Method(name="pcgrad", init=_stateless_init, direction=direction)


def cagrad(num_tasks: int, c: float = 0.5, num_iterations: int = 200,
           rescale: bool = True) -> Method:
  """The CAGrad `Method` over T = ``num_tasks`` tasks.

  Args:
    num_tasks: T (≥ 2).
    c: the paper's CAGrad constant (ball radius c‖ḡ‖), ≥ 0. Default 0.5, the
      official code's default (Cranial-XIX/CAGrad ``nyuv2/model_segnet_mt.py``
      line 18); SLGrad's experiments use 1 (vub-dl/SLGrad
      ``Examples/run_experiments_toy.py`` lines 108-109).
    num_iterations: iterations of the simplex solver (static).
    rescale: divide the update by 1 + c² (the official ``rescale=1``, ``nyuv2/utils.py``
      lines 396-399 and 525; SLGrad's runners too).

  ``direction``'s metrics: ``weights`` f32[K] = w*[1:], the simplex weights of the
  auxiliary tasks; ``main_weight`` f32[] = w*_0; ``cagrad_objective`` f32[] = F(w*).

  Raises:
    ValueError: fewer than 2 tasks, c < 0 or num_iterations < 1.
  """
  _check_tasks("cagrad", num_tasks)
  if c < 0:
    raise ValueError(f"cagrad needs c >= 0, got {c}")
  if num_iterations < 1:
    raise ValueError(f"cagrad needs num_iterations >= 1, got {num_iterations}")

  def direction(params, phi, state, losses, key):
    del phi, key
    grads, task_losses, model_state = per_task_grads(losses, params)
    backbone, info = cagrad_rule(grads["backbone"], c=c, rescale=rescale,
                                 num_iterations=num_iterations)
    heads = task_combine(grads["heads"], jnp.ones((num_tasks,), task_losses.dtype))
    metrics = {**task_metrics(task_losses), "weights": info.weights[1:],
               "main_weight": info.weights[0], "cagrad_objective": info.objective}
    return {"backbone": backbone, "heads": heads}, state, model_state, metrics

  return Method(name="cagrad", init=_stateless_init, direction=direction)
