"""Learning rate halved on a plateau of a monitored metric (PyTorch's ReduceLROnPlateau).

ATTITTUD (Dery et al., ICLR 2021; ldery/ATTITTUD ``algorithms/algos.py`` lines
113-115, 498-499) steps ``ReduceLROnPlateau(factor=0.5, patience=4, min_lr=1e-5)``
with the monitor loss once per epoch. Its rule, with value v at each evaluation
(mode "min", relative threshold ε = 1e-4, no cooldown):

    improved = v < best · (1 − ε)        (best starts at +∞)
    if improved:  best ← v,  bad ← 0     else:  bad ← bad + 1
    if bad > patience:  lr ← max(lr · factor, min_lr),  bad ← 0

so the learning rate drops on the (patience + 1)-th evaluation in a row without
improvement. Here the rule is an optax transformation `scale_by_plateau`, placed
after the optimizer (the update is multiplied by ``scale`` = current lr / initial lr),
whose state (`PlateauState`) lives in the optimizer state and so in the checkpoint;
`step_plateau` applies the rule to that state after an evaluation, outside the
training step (`aux_jax.train.experiment` calls it with the dev metric
``optim.plateau.metric``). The state machine is optax's
`optax.contrib.reduce_on_plateau` (its ``patience`` counts evaluations up to and
including the reduction, so PyTorch's ``patience`` + 1 is passed), stepped only at
evaluations.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import reduce_on_plateau

PyTree = Any


class PlateauState(NamedTuple):
  """The plateau rule's state inside the optimizer state.

  Attributes:
    rule: optax's `ReduceLROnPlateauState` (``scale`` f32[] = lr / initial lr,
      ``best_value``, ``plateau_count``, ...).
  """

  rule: Any


def _rule(factor: float, patience: int, rtol: float, min_scale: float):
  # optax reduces when its count *reaches* patience; PyTorch when it *exceeds* it.
  return reduce_on_plateau(factor=factor, patience=patience + 1, rtol=rtol, atol=0.0,
                           cooldown=0, accumulation_size=1, min_scale=min_scale)


@functools.lru_cache(maxsize=None)
def _jitted_update(factor: float, patience: int, rtol: float, min_scale: float):
  rule = _rule(factor, patience, rtol, min_scale)
  return jax.jit(lambda state, value: rule.update((), state, value=value)[1])


def scale_by_plateau() -> optax.GradientTransformation:
  """Multiplies the updates by the plateau scale (1 until `step_plateau` lowers it)."""

  def init(params):
    del params
    return PlateauState(_rule(0.5, 0, 1e-4, 0.0).init(jnp.zeros((), jnp.float32)))

  def update(updates, state, params=None):
    del params
    scale = state.rule.scale
    return jax.tree.map(lambda u: (scale * u).astype(u.dtype), updates), state

  return optax.GradientTransformation(init, update)


def step_plateau(opt_state: PyTree, value, *, factor: float = 0.5, patience: int = 4,
                 rtol: float = 1e-4, min_scale: float = 0.0) -> PyTree:
  """``opt_state`` with every `PlateauState` in it stepped with the monitored ``value``.

  Args:
    opt_state: an optimizer state holding a `scale_by_plateau` state.
    value: the monitored metric (lower is better), a float or f32[].
    factor: multiplies the scale on a plateau (0 < factor < 1).
    patience: evaluations without improvement tolerated (PyTorch's meaning: the
      scale drops on the (patience + 1)-th).
    rtol: relative improvement threshold.
    min_scale: floor of the scale (min lr / initial lr).

  Returns:
    The optimizer state with the stepped plateau state(s); unchanged otherwise.
  """
  update = _jitted_update(float(factor), int(patience), float(rtol), float(min_scale))

  def step(x):
    if not isinstance(x, PlateauState):
      return x
    return PlateauState(update(x.rule, jnp.asarray(value, jnp.float32)))

  return jax.tree.map(step, opt_state, is_leaf=lambda x: isinstance(x, PlateauState))


def plateau_scale(opt_state: PyTree) -> float | None:
  """The current scale of the first `PlateauState` in ``opt_state`` (None: none)."""
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PlateauState))
           if isinstance(x, PlateauState)]
  return float(found[0].rule.scale) if found else None
