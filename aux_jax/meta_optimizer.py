"""The upper-level update: hypergradient → clip → optax transformation → new φ.

A functional counterpart of AuxiLearn's ``MetaOptimizer`` (Navon et al., ICLR 2021):

    g ← clip_by_global_norm(dL_val/dφ, max_norm)
    (u, s) ← optimizer.update(g, s, φ)
    φ ← project(φ + u)

A non-finite hypergradient is never applied: φ and the optimizer state are kept and
the step is counted in ``MetaState.num_skipped``. A finite one whose solver reports
divergence (`HypergradInfo.diverged`, e.g. a growing Neumann series) is counted in
``MetaState.num_diverged`` and then, by ``on_diverged``:

* ``"apply"``: clipped to ``max_norm`` and applied, as the originals do (MAOAL's and
  AuxiLearn's ``MetaOptimizer.step`` have no divergence test at all);
* ``"skip"``: not applied (a safeguard: a growing series estimates nothing).

The originals would also apply a non-finite step (writing NaN into φ); skipping it is
a deliberate difference. Everything is jittable; skipping uses ``jnp.where``.

Example (the original's conventions: 3 Neumann terms, no α prefactor, clip, Adam)::

    meta = meta_optimizer(optax.adam(1e-3), max_norm=10.0)
    meta_state = meta.init(phi)
    hg, info = implicit_hypergradient(G, val_loss, theta, phi, step=1e-4,
                                      scale_by_step=False)
    phi, meta_state, metrics = meta.update(hg, info, meta_state, phi)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from aux_jax.hypergrad import HypergradInfo, all_finite

PyTree = Any


class MetaState(NamedTuple):
  """State of the upper-level optimizer.

  Attributes:
    opt_state: the optax state of the base optimizer (clipping included).
    num_updates: i32[], hypergradients applied.
    num_skipped: i32[], hypergradients not applied (non-finite, or diverged under
      ``on_diverged="skip"``).
    num_diverged: i32[], hypergradients whose solver diverged, applied or not.
  """

  opt_state: optax.OptState
  num_updates: jax.Array
  num_skipped: jax.Array
  num_diverged: jax.Array


class MetaOptimizer(NamedTuple):
  """``init(aux_params) -> MetaState`` and
  ``update(hypergrad, info, state, aux_params) -> (aux_params, state, metrics)``;
  metrics: ``hypergrad_norm``, ``neumann_ratio`` (`HypergradInfo.ratio`),
  ``hypergrad_skipped``, ``hypergrad_diverged``, and ``spectral_radius`` when the
  solver reported one (Neumann's ``step="auto"``)."""

  init: Callable[[PyTree], MetaState]
  update: Callable[..., tuple[PyTree, MetaState, dict]]


def clamp_nonnegative(aux_params: PyTree) -> PyTree:
  """Projection for monotone auxiliary networks: every leaf clamped to ≥ 0."""
  return jax.tree.map(lambda x: jnp.maximum(x, 0), aux_params)


def meta_optimizer(
    optimizer: optax.GradientTransformation,
    *,
    max_norm: Optional[float] = 10.0,
    projection: Optional[Callable[[PyTree], PyTree]] = None,
    on_diverged: str = "skip",
) -> MetaOptimizer:
  """Builds the upper-level update.

  Args:
    optimizer: any optax transformation for φ (e.g. ``optax.adam(1e-2)`` or
      ``optax.chain(optax.add_decayed_weights(5e-4), optax.adam(1e-2))``, which is
      PyTorch's Adam with ``weight_decay``).
    max_norm: clip the hypergradient's global norm to this (None: no clipping).
    projection: applied to φ after each applied update (e.g. `clamp_nonnegative`).
    on_diverged: ``"skip"`` or ``"apply"`` a finite hypergradient whose solver
      diverged (see the module docstring); non-finite ones are always skipped.

  Returns:
    A `MetaOptimizer`.
  """
  if on_diverged not in ("skip", "apply"):
    raise ValueError(f"on_diverged must be 'skip' or 'apply', got {on_diverged!r}")
  tx = optimizer if max_norm is None else optax.chain(
      optax.clip_by_global_norm(max_norm), optimizer)

  def init(aux_params):
    zero = jnp.zeros((), jnp.int32)
    return MetaState(tx.init(aux_params), zero, zero, zero)

  def update(hypergrad, info: HypergradInfo, state: MetaState, aux_params):
    finite = all_finite(hypergrad)
    diverged = jnp.asarray(info.diverged)
    apply = finite if on_diverged == "apply" else finite & ~diverged
    safe_grad = optax.tree.where(apply, hypergrad, optax.tree.zeros_like(hypergrad))
    updates, opt_state = tx.update(safe_grad, state.opt_state, aux_params)
    new_params = optax.apply_updates(aux_params, updates)
    if projection is not None:
      new_params = projection(new_params)
    new_state = MetaState(
        opt_state=optax.tree.where(apply, opt_state, state.opt_state),
        num_updates=state.num_updates + apply.astype(jnp.int32),
        num_skipped=state.num_skipped + (~apply).astype(jnp.int32),
        num_diverged=state.num_diverged + diverged.astype(jnp.int32))
    metrics = {
        "hypergrad_norm": jnp.where(finite, optax.tree.norm(hypergrad), jnp.inf),
        "neumann_ratio": info.ratio,
        "hypergrad_skipped": (~apply).astype(jnp.int32),
        "hypergrad_diverged": diverged.astype(jnp.int32),
    }
    if info.spectral_radius is not None:  # Neumann's step="auto": its estimate of ρ(J)
      metrics["spectral_radius"] = info.spectral_radius
    return optax.tree.where(apply, new_params, aux_params), new_state, metrics

  return MetaOptimizer(init, update)
