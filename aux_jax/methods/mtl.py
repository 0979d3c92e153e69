"""Multi-task gradient rules as methods: MGDA, IMTL-G, Aligned-MTL, Nash-MTL, GradVac.

Each combines the T per-task gradients g_t = ∇_{θ_s} mean_b ℓ_t of the shared
parameters θ_s (task 0 main, 1..K auxiliary; one backward pass per task without
grouped convolutions, `aux_jax.methods.base.per_task_grads`) with a rule of
`aux_jax.rules` (math and papers there). The heads are not shared: each receives its
own task's gradient, unweighted (as LibMTL's gradient weightings, whose task-specific
parameters keep their plain loss gradients), except for Nash-MTL, whose official code
(and LibMTL's) backpropagates Σ_t α_t ℓ_t, so head t gets α_t ∇ℓ_t there.

* ``mgda`` (Sener & Koltun, NeurIPS 2018): the min-norm point of the convex hull,
  `aux_jax.rules.mgda`; option ``normalization`` (none | l2 | loss | loss+).
* ``imtl`` (Liu et al., ICLR 2021): IMTL-G's closed form, `aux_jax.rules.imtl`.
* ``aligned_mtl`` (Senushkin et al., CVPR 2023): `aux_jax.rules.aligned_mtl`.
* ``nash_mtl`` (Navon et al., ICML 2022): G α = 1/α by Newton's method,
  `aux_jax.rules.nash_mtl`; the shared update clipped to norm ``max_norm`` (1.0, the
  official default; 0: none).
* ``gradvac`` (Wang et al., ICLR 2021): EMA cosine targets (state),
  `aux_jax.rules.gradvac_update`; option ``beta``.

``direction``'s metrics hold ``weights`` f32[K] = the auxiliary tasks' coefficients
c[1:] of the shared update Σ_t c_t g_t and ``main_weight`` = c_0.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from aux_jax.methods.base import Method, MethodState, per_task_grads, task_metrics
from aux_jax.rules.aligned_mtl import aligned_mtl as aligned_mtl_rule
from aux_jax.rules.gradvac import gradvac_init, gradvac_update
from aux_jax.rules.imtl import imtl as imtl_rule
from aux_jax.rules.mgda import NORMALIZATIONS, mgda as mgda_rule
from aux_jax.rules.nash_mtl import nash_mtl as nash_mtl_rule
from aux_jax.rules.tree import task_combine
# The gradient-surgery methods' shared helpers (one definition).
from aux_jax.methods.surgery import _check_tasks, _stateless_init


def _rule_method(name: str, num_tasks: int, rule, extra=lambda info: {},
                 weighted_heads: bool = False, max_norm: float = 0.0) -> Method:
  """A stateless `Method` from ``rule(backbone_grads, task_losses) -> (combined, info)``
  whose ``info.coefficients`` are the shared update's task coefficients."""
  _check_tasks(name, num_tasks)

  def direction(params, phi, state, losses, key):
    del phi, key
    grads, task_losses, model_state = per_task_grads(losses, params)
    backbone, info = rule(grads["backbone"], task_losses)
    c = info.coefficients
    if max_norm > 0:
      backbone = optax.clip_by_global_norm(max_norm).update(backbone, optax.EmptyState())[0]
    heads = task_combine(grads["heads"], c if weighted_heads
                         else jnp.ones((num_tasks,), task_losses.dtype))
    metrics = {**task_metrics(task_losses), "weights": c[1:], "main_weight": c[0],
               **extra(info)}
    return {"backbone": backbone, "heads": heads}, state, model_state, metrics

  return Method(name=name, init=_stateless_init, direction=direction)


def mgda(num_tasks: int, normalization: str = "none", num_iterations: int = 250) -> Method:
  """The MGDA `Method` (``normalization``: `aux_jax.rules.mgda.NORMALIZATIONS`;
  ``num_iterations`` of the simplex solver, 250 as the official Frank–Wolfe's cap).
  Metrics add ``min_norm``.

  Raises:
    ValueError: fewer than 2 tasks, an unknown normalization, num_iterations < 1.
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"mgda: unknown normalization {normalization!r}; expected one of "
                     f"{NORMALIZATIONS}")
  if num_iterations < 1:
    raise ValueError(f"mgda needs num_iterations >= 1, got {num_iterations}")
  rule = lambda g, l: mgda_rule(g, l, normalization, num_iterations)
  return _rule_method("mgda", num_tasks, rule, lambda i: {"min_norm": i.min_norm})


def imtl(num_tasks: int) -> Method:
  """The IMTL-G `Method`. Metrics add ``projection`` (the common ⟨d, u_t⟩)."""
  return _rule_method("imtl", num_tasks, lambda g, l: imtl_rule(g),
                      lambda i: {"projection": i.projection})


def aligned_mtl(num_tasks: int) -> Method:
  """The Aligned-MTL `Method`. Metrics add ``rank`` and ``sigma``."""
  return _rule_method("aligned_mtl", num_tasks, lambda g, l: aligned_mtl_rule(g),
                      lambda i: {"rank": i.rank, "sigma": i.sigma})


def nash_mtl(num_tasks: int, max_norm: float = 1.0, tol: float = 1e-6,
             max_iterations: int = 100) -> Method:
  """The Nash-MTL `Method`.

  Args:
    num_tasks: T (≥ 2).
    max_norm: clip the shared update to this norm (the official ``max_norm`` = 1.0;
      0: no clipping).
    tol, max_iterations: the Newton solver's (`aux_jax.rules.nash_mtl.nash_weights`).

  Metrics add ``nash_iterations`` and ``nash_residual``. The official option
  ``update_weights_every`` (α recomputed every N steps) is not offered: α is solved
  every step.

  Raises:
    ValueError: fewer than 2 tasks, max_norm < 0 or max_iterations < 1.
  """
  if max_norm < 0 or max_iterations < 1:
    raise ValueError(f"nash_mtl needs max_norm >= 0 and max_iterations >= 1, got "
                     f"{max_norm}, {max_iterations}")
  return _rule_method("nash_mtl", num_tasks,
                      lambda g, l: nash_mtl_rule(g, tol, max_iterations),
                      lambda i: {"nash_iterations": i.iterations,
                                 "nash_residual": i.residual},
                      weighted_heads=True, max_norm=max_norm)


def gradvac(num_tasks: int, beta: float = 0.5) -> Method:
  """The GradVac `Method` (``beta``: the EMA rate of the cosine targets; orders from
  the step's key). State: a `aux_jax.rules.gradvac.GradVacState`. Metrics add
  ``num_adjusted``.

  Raises:
    ValueError: fewer than 2 tasks or beta outside [0, 1].
  """
  _check_tasks("gradvac", num_tasks)
  if not 0.0 <= beta <= 1.0:
    raise ValueError(f"gradvac needs 0 <= beta <= 1, got {beta}")

  def init(key):
    del key
    return MethodState(phi=(), state=gradvac_init(num_tasks))

  def direction(params, phi, state, losses, key):
    del phi
    grads, task_losses, model_state = per_task_grads(losses, params)
    new_state, backbone, info = gradvac_update(state, grads["backbone"], key, beta)
    heads = task_combine(grads["heads"], jnp.ones((num_tasks,), task_losses.dtype))
    c = info.coefficients
    metrics = {**task_metrics(task_losses), "weights": c[1:], "main_weight": c[0],
               "num_adjusted": info.num_adjusted}
    return {"backbone": backbone, "heads": heads}, new_state, model_state, metrics

  return Method(name="gradvac", init=init, direction=direction)
