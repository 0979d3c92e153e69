"""ATTITTUD: auxiliary-update decomposition (Dery et al., ICLR 2021, "Auxiliary Task
Update Decomposition: The Good, The Bad and The Neutral").

The shared parameters θ_s (the backbone) get a filtered auxiliary gradient; the
heads get their own tasks' gradients:

    V         orthonormal basis (k × D) of the span of per-example main-task
              gradients, rebuilt every ``pca_every`` steps (steps 0, N, 2N, ...)
              by a randomized range finder on the step's batch
              (`aux_jax.rules.subspace_basis`), kept in the state otherwise
    g*        = ∇_{θ_s} mean ℓ_0 over ``main_samples`` main examples drawn
              independently of the batch (``main_draw="independent"``, the
              original's fresh subsample; `LossFns.main_fresh`), or the last
              ``main_samples`` of the batch (``"batch"``); all B when None
                                                        (main-task gradient)
    g         = Σ_{k≥1} ∇_{θ_s} mean_b ℓ_k              (summed auxiliary gradient)
    p = V g,  p* = V g*,  m = [p ⊙ p* > 0]
    g+ = Vᵀ(p ⊙ m),  g− = Vᵀ(p ⊙ (1 − m)),  g⊥ = g − g+ − g−
    ĝ         = λ⊥ g⊥ + λ+ g+ + λ− g−                   (`aux_jax.rules.attittud_combine`)

with ``lambdas = (λ⊥, λ+, λ−)``, default (1, 0, 0): keep only the part of the
auxiliary gradient outside the main task's gradient subspace. What the backbone
and heads receive depends on ``body``:

    "aux_only"   (default; the original's ATTITTUD run, ldery/ATTITTUD
                 ``algorithms/algos.py`` lines 270-288 with val_weight = 0)
                 backbone ĝ; main head g*_head; auxiliary heads λ⊥ g_k,head
                 (the original's head block of ĝ: V is zero on the heads)
    "multitask"  (``-do-multitask``, algos.py lines 326-337; w = ``primary_weight``,
                 the ratio of primary to auxiliary batch sizes there)
                 backbone ĝ/(1+w) + g*·w/(1+w); main head g*_head·w/(1+w);
                 auxiliary heads λ⊥ g_k,head/(1+w)
    "sum"        backbone g* + ĝ; every head its own plain gradient (aux_jax's
                 earlier convention; not in the original)

The basis is built from the main task's per-sample losses of the first
n = min(``nsamples``, B) samples of the batch (all B by default), as a function of
θ_s with the heads fixed: it spans body coordinates only (the original's spans all
parameters, body and primary head; see docs/fidelity.md). The n per-example
gradients span at most n dimensions, so the range finder uses
k = min(``num_basis``, n) columns (more would add arbitrary directions); the stored
basis always has ``num_basis`` slices, the unused ones zero (they contribute nothing
to p, p*, g+ or g−). Before the first rebuild (never visible: step 0 rebuilds) the
basis is all zero.

Deliberate difference from the original: head gradients are fresh every step (the
original's primary-head gradient accumulates over steps, never zeroed, a defect).

The logged ``weights`` f32[K] are each auxiliary task's effective scale on the
backbone: given the mask m (from the summed g), ĝ = A g with
A = λ⊥(I − VᵀV) + Vᵀ diag(λ+ m + λ−(1−m)) V, and weights[k] = c⟨g_k, A g_k⟩ / ‖g_k‖²
(c = 1/(1+w) for "multitask", else 1; for λ = (1, 1, 1) and c = 1 it is 1; for
λ = (1, 0, 0) the fraction of g_k outside the span; 0 for a zero gradient).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from aux_jax.methods.base import (Method, MethodState, per_task_grads,
                                  resolve_per_task_grads, task_metrics)
from aux_jax.partition import Partition
from aux_jax.rules.attittud import combine as attittud_combine
from aux_jax.rules.attittud import subspace_basis
from aux_jax.rules.tree import task_combine, task_dots, task_norms, task_slice

PyTree = Any


class AttittudState(NamedTuple):
  """State of the ATTITTUD method.

  Attributes:
    basis: V, a pytree like the backbone with a leading axis ``num_basis`` on every
      leaf (orthonormal or zero slices), float32.
    count: i32[]. Steps since the last rebuild, modulo ``pca_every``; the basis is
      rebuilt on a step that starts with ``count == 0``.
  """

  basis: PyTree
  count: jax.Array


BODIES = ("aux_only", "multitask", "sum")
MAIN_DRAWS = ("independent", "batch")


def attittud(num_tasks: int, partition: Partition, num_basis: int = 10,
             nsamples: Optional[int] = None, pca_every: int = 10,
             lambdas: Sequence[float] = (1.0, 0.0, 0.0), power_iters: int = 0,
             body: str = "aux_only", primary_weight: float = 1.0,
             main_samples: Optional[int] = None,
             main_draw: str = "independent") -> Method:
  """The ATTITTUD `Method`.

  Args:
    num_tasks: T (≥ 2).
    partition: the partition of the backbone, built by
      `aux_jax.partition.make_partition` (its tree structure and ``leaf_shapes``
      give the basis's shapes).
    num_basis: k, the basis size (1 ≤ k ≤ number of backbone parameters); the
      original's ``num_pca_basis``.
    nsamples: main-task samples used for the basis (None: the whole batch); the
      original's ``pca_nsamples``.
    pca_every: steps between basis rebuilds (≥ 1).
    lambdas: (λ⊥, λ+, λ−); the original's ``proj_lambda``.
    power_iters: power (subspace) iterations of the range finder (≥ 0; the
      original: 0); each costs k batched JVPs and k batched VJPs on a rebuild step.
    body: "aux_only" | "multitask" | "sum" (see the module docstring); default the
      original's ATTITTUD run.
    primary_weight: w of "multitask" (> 0): the original's primary/auxiliary batch
      ratio ``val_taskweight``, which has no usable default there (0 disables its
      primary batch); 1 = equal batches.
    main_samples: main examples of g* (None: the whole batch); the original's
      ``lowrank_nsamples`` (32 in its CheXpert command). Costs one more
      forward/backward pass (of ``main_samples`` examples when independent).
    main_draw: where the ``main_samples`` examples come from: "independent" (the
      original, ``algorithms/algos.py:137-147, 220-222``: a fresh subsample of the
      primary set, independent of the basis examples; needs `LossFns.main_fresh`)
      or "batch" (the last ``main_samples`` of the step's batch, which overlap the
      basis examples on a rebuild step; aux_jax's earlier rule).

  Returns:
    A `Method` whose state is an `AttittudState`. Metrics: ``weights`` f32[K]
    (see the module docstring), ``basis_refreshed`` f32[] (1 on rebuild steps),
    ``aux_in_span_fraction`` f32[] = ‖VᵀVg‖²/‖g‖².

  Raises:
    ValueError: on out-of-range options or a partition without leaf shapes.
  """
  if num_tasks < 2:
    raise ValueError(f"attittud needs at least one auxiliary task, got num_tasks={num_tasks}")
  lambdas = tuple(float(l) for l in lambdas)
  if len(lambdas) != 3:
    raise ValueError(f"attittud lambdas must be (λ⊥, λ+, λ−), got {lambdas}")
  if pca_every < 1:
    raise ValueError(f"attittud needs pca_every >= 1, got {pca_every}")
  if nsamples is not None and nsamples < 1:
    raise ValueError(f"attittud needs nsamples >= 1 or None, got {nsamples}")
  if power_iters < 0:
    raise ValueError(f"attittud needs power_iters >= 0, got {power_iters}")
  if body not in BODIES:
    raise ValueError(f"attittud body must be one of {BODIES}, got {body!r}")
  if not primary_weight > 0:
    raise ValueError(f"attittud needs primary_weight > 0, got {primary_weight}")
  if main_samples is not None and main_samples < 1:
    raise ValueError(f"attittud needs main_samples >= 1 or None, got {main_samples}")
  if main_draw not in MAIN_DRAWS:
    raise ValueError(f"attittud main_draw must be one of {MAIN_DRAWS}, got {main_draw!r}")
  treedef = jax.tree.structure(partition.assignment)
  shapes = partition.shapes_for("attittud")
  dim = sum(math.prod(s) for s in shapes)
  if not 1 <= num_basis <= dim:
    raise ValueError(f"attittud needs 1 <= num_basis <= {dim} (the number of backbone "
                     f"parameters), got {num_basis}")
  l_perp, l_plus, l_minus = lambdas
  aux_sum = jnp.concatenate([jnp.zeros((1,)), jnp.ones((num_tasks - 1,))])

  def init(key):
    del key
    basis = jax.tree.unflatten(
        treedef, [jnp.zeros((num_basis,) + tuple(s), jnp.float32) for s in shapes])
    return MethodState(phi=(), state=AttittudState(basis, jnp.zeros((), jnp.int32)))

  def direction(params, phi, state, losses, key):
    del phi
    heads, backbone = params["heads"], params["backbone"]
    batch = jax.eval_shape(losses.per_sample, params)[0].shape[1]
    n = batch if nsamples is None else min(nsamples, batch)
    k = min(num_basis, n)

    # The basis without dropout, as the original (its dropout set to 0 while building it).
    basis_losses = losses.per_sample_no_dropout or losses.per_sample

    def main_losses(bb):  # f32[n]
      return basis_losses({"backbone": bb, "heads": heads})[0][0, :n]

    def rebuild(old):
      # The k products batched as the per-task gradients are (config
      # method.per_task_grads): vmap only where grouped convolutions are fine.
      way = resolve_per_task_grads(losses.per_task_grads, losses)
      new = subspace_basis(main_losses, backbone, key, k, power_iters,
                           batched="vmap" if way == "vmap" else "map")
      return jax.tree.map(
          lambda v, o: jnp.concatenate(
              [v.astype(o.dtype), jnp.zeros((num_basis - k,) + v.shape[1:], o.dtype)]),
          new, old)

    refresh = state.count == 0
    basis = jax.lax.cond(refresh, rebuild, lambda old: old, state.basis)

    grads, task_losses, model_state = per_task_grads(losses, params)
    if main_samples is not None and main_draw == "independent":
      # g* of a fresh subsample (the original's lowrank_nsamples), not the basis's rows.
      if losses.main_fresh is None:
        raise ValueError("attittud main_draw='independent' needs LossFns.main_fresh "
                         "(separate-task data); use main_draw='batch' or "
                         "main_samples=None")
      g_main = jax.grad(lambda p: jnp.mean(losses.main_fresh(p, main_samples)[0]))(params)
    elif main_samples is not None and main_samples < batch:
      g_main = jax.grad(
          lambda p: jnp.mean(losses.per_sample(p)[0][0, batch - main_samples:]))(params)
    else:
      g_main = task_slice(grads, 0)
    shared = grads["backbone"]
    g_star = g_main["backbone"]
    g_aux = task_combine(shared, aux_sum)
    g_hat = attittud_combine(g_aux, basis, g_star, lambdas)
    aux_heads = task_combine(grads["heads"], aux_sum)
    # Scales (static): of g* and ĝ on the backbone, of the main and auxiliary heads.
    if body == "aux_only":    # the original's val_weight = 0, tr_weight = 1
      body_main, aux_scale, main_head, aux_head = 0.0, 1.0, 1.0, l_perp
    elif body == "multitask":  # tr_weight = 1/(1+w), val_weight = w/(1+w)
      tr = 1.0 / (1.0 + primary_weight)
      body_main, aux_scale, main_head, aux_head = 1.0 - tr, tr, 1.0 - tr, l_perp * tr
    else:                      # "sum"
      body_main, aux_scale, main_head, aux_head = 1.0, 1.0, 1.0, 1.0
    out = {"backbone": jax.tree.map(lambda a, b: body_main * a + aux_scale * b.astype(a.dtype),
                                    g_star, g_hat),
           "heads": jax.tree.map(lambda a, b: main_head * a + aux_head * b,
                                 g_main["heads"], aux_heads)}

    # Effective per-task scales (see the module docstring).
    aux = jax.tree.map(lambda x: x[1:], shared)
    q = jax.vmap(lambda g: task_dots(basis, g))(aux)                 # [K, k]
    p, p_star = jnp.sum(q, axis=0), task_dots(basis, g_star)
    agree = (p * p_star > 0).astype(q.dtype)
    d = l_plus * agree + l_minus * (1.0 - agree)
    sq = task_norms(aux) ** 2
    quad = l_perp * (sq - jnp.sum(q * q, axis=1)) + jnp.sum(d * q * q, axis=1)
    weights = aux_scale * jnp.where(sq > 0, quad / jnp.where(sq > 0, sq, 1.0), 0.0)
    g_sq = optax.tree.norm(g_aux, squared=True)
    in_span = jnp.where(g_sq > 0, jnp.sum(p * p) / jnp.where(g_sq > 0, g_sq, 1.0), 0.0)
    metrics = {**task_metrics(task_losses), "weights": weights,
               "basis_refreshed": refresh.astype(jnp.float32),
               "aux_in_span_fraction": in_span}
    new_state = AttittudState(basis, (state.count + 1) % pca_every)
    return out, new_state, model_state, metrics

  return Method(name="attittud", init=init, direction=direction)
