"""Loss-level multi-task weightings: UW, DWA, RLW, FAMO and DB-MTL.

Each trains the model on a weighted sum of the batch-mean task losses ℓ_t (task 0
main, 1..K auxiliary) whose weights w_t it moves itself (method *state*, not φ: no
hypergradient). Heads and shared parameters alike get ∇ Σ_t w_t ℓ_t (one backward
pass), except DB-MTL, which balances per-task gradients of the shared parameters.
The pure update of each is a function here, tested on fixed loss sequences.

* ``uw`` (Kendall, Gal & Cipolla, CVPR 2018, "Multi-Task Learning Using Uncertainty
  to Weigh Losses for Scene Geometry and Semantics"): learned log-variances s_t,
  L = Σ_t ℓ_t / (2 e^{s_t}) + s_t / 2, so w_t = 1/(2e^{s_t}) and
  ∂L/∂s_t = ½ − ℓ_t/(2e^{s_t}) (at rest s_t = log ℓ_t). The paper's form for
  regression; it writes 1/σ² (no ½) for classification, LibMTL's ``UW`` uses the
  regression form for every task and starts at s = −0.5: we follow LibMTL. s is
  trained jointly with the model, by its own optimizer here (``optimizer``, ``lr``,
  ``momentum``; the configs pass the model's, as LibMTL puts s in the model's).
* ``dwa`` (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task Learning with
  Attention"): w_t = T · softmax_t(r_t / τ), r_t = L̄_t(n−1) / L̄_t(n−2), the ratio of
  task t's mean training loss over the last two windows (the paper's epochs; ``window``
  steps each), w = 1 until two windows are complete; τ = ``temperature`` (2, the paper's).
* ``rlw`` (Lin et al., TMLR 2022, "Reasonable Effectiveness of Random Weighting: A
  Litmus Test for Multi-Task Learning"): w = softmax(z), z ~ N(0, I_T) drawn every
  step (the paper's normal variant; LibMTL's ``RLW``). The weights sum to 1.
* ``famo`` (Liu et al., NeurIPS 2023, "FAMO: Fast Adaptive Multitask Optimization"):
  logits ξ, z = softmax(ξ); the model descends Σ_t (z_t / c) log(ℓ_t + ε) with
  c = Σ_t z_t/(ℓ_t + ε), i.e. w_t = z_t / (c (ℓ_t + ε)); then ξ takes an Adam step
  (lr 0.025, weight decay γ = 1e-3 added to the gradient, as torch's Adam) along
  J_softmax(ξ)ᵀ δ with δ_t = log(ℓ_t^{prev} + ε) − log(ℓ_t + ε) (Cranial-XIX/FAMO
  ``famo.py``; LibMTL's ``FAMO``). The originals compare the losses of one batch
  before and after the model's update (one more forward pass); here ℓ^{prev} is the
  previous step's loss (its own batch), so each step's update of ξ uses the losses
  of two consecutive batches: no extra forward pass (docs/fidelity.md).
* ``dbmtl`` (Lin et al., 2023, "Dual-Balancing Multi-Task Learning"): loss-scale
  balancing, each task on log(ℓ_t + ε); gradient-magnitude balancing of the shared
  parameters: ĝ_t ← ĝ_t^{n} + β(ĝ_t − ĝ_t^{n}) (EMA of the log-loss gradients
  ĝ_t^{n} = ∇ log(ℓ_t + ε), β = 0.9, from ĝ = 0), update Σ_t (max_s ‖ĝ_s‖ / ‖ĝ_t‖) ĝ_t.
  As LibMTL's ``DB_MTL`` (its β/step^σ with σ = 0 default); heads get ∇ log(ℓ_t + ε).

``direction``'s metrics hold ``weights`` f32[K] = w[1:] (DB-MTL: the magnitude
scales α[1:]) and ``main_weight`` = w_0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from aux_jax.methods.base import (Method, MethodState, per_task_grads, task_metrics,
                                  weighted_loss_grad)
from aux_jax.partition import Partition
from aux_jax.rules.tree import task_combine, task_norms

PyTree = Any

EPS = 1e-8  # the originals' ε in log(ℓ + ε) (FAMO, DB-MTL)


def _check_tasks(name: str, num_tasks: int) -> None:
  if num_tasks < 2:
    raise ValueError(f"{name} needs a main task and at least one auxiliary task, "
                     f"got num_tasks={num_tasks}")


def _optimizer(name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
               ) -> optax.GradientTransformation:
  """sgd (with momentum, PyTorch's) or adam; weight decay added to the gradient
  (torch's ``weight_decay``)."""
  if name == "sgd":
    core = optax.sgd(lr, momentum=momentum or None)
  elif name == "adam":
    core = optax.adam(lr)
  else:
    raise ValueError(f"unknown optimizer {name!r}; expected sgd or adam")
  return optax.chain(optax.add_decayed_weights(weight_decay), core) if weight_decay else core


# ---------------------------------------------------------------------------- UW


class UWState(NamedTuple):
  """log_vars: f32[T], s_t = log σ_t². opt_state: their optimizer's state."""

  log_vars: jax.Array
  opt_state: optax.OptState


def uw_weights(log_vars: jax.Array) -> jax.Array:
  """w_t = 1 / (2 e^{s_t})."""
  return 0.5 * jnp.exp(-log_vars)


def uw_update(state: UWState, task_losses: jax.Array, tx: optax.GradientTransformation
              ) -> UWState:
  """One optimizer step of s on L = Σ_t ℓ_t/(2e^{s_t}) + s_t/2 (ℓ held constant)."""
  grad = 0.5 - jax.lax.stop_gradient(task_losses) * uw_weights(state.log_vars)
  updates, opt_state = tx.update(grad, state.opt_state, state.log_vars)
  return UWState(optax.apply_updates(state.log_vars, updates), opt_state)


def uw(num_tasks: int, optimizer: str = "sgd", lr: float = 1e-2, momentum: float = 0.9,
       init: float = -0.5) -> Method:
  """The uncertainty-weighting `Method` (see the module docstring).

  Args:
    num_tasks: T (≥ 2).
    optimizer: ``sgd`` | ``adam``, of the log-variances.
    lr, momentum: its learning rate and (sgd) momentum.
    init: s_t at the start (−0.5, LibMTL's).

  State: a `UWState`. Metrics add ``log_vars`` f32[T].
  """
  _check_tasks("uw", num_tasks)
  tx = _optimizer(optimizer, lr, momentum)

  def init_fn(key):
    del key
    s = jnp.full((num_tasks,), init, jnp.float32)
    return MethodState(phi=(), state=UWState(s, tx.init(s)))

  def direction(params, phi, state, losses, key):
    del phi, key
    w = uw_weights(state.log_vars)
    grads, task_losses, model_state = weighted_loss_grad(losses, params, w)
    metrics = {**task_metrics(task_losses), "weights": w[1:], "main_weight": w[0],
               "log_vars": state.log_vars}
    return grads, uw_update(state, task_losses, tx), model_state, metrics

  return Method(name="uw", init=init_fn, direction=direction)


# --------------------------------------------------------------------------- DWA


class DWAState(NamedTuple):
  """acc: f32[T] loss sum of the current window; count: i32[] its steps; last,
  before: f32[T] the mean losses of the last two complete windows; windows: i32[]
  complete windows so far."""

  acc: jax.Array
  count: jax.Array
  last: jax.Array
  before: jax.Array
  windows: jax.Array


def dwa_init(num_tasks: int) -> DWAState:
  z = jnp.zeros((num_tasks,), jnp.float32)
  return DWAState(z, jnp.zeros((), jnp.int32), z, z, jnp.zeros((), jnp.int32))


def dwa_weights(state: DWAState, temperature: float) -> jax.Array:
  """T · softmax(r/τ) with r = last/before, or 1 before two complete windows."""
  t = state.acc.shape[0]
  ratio = state.last / jnp.where(state.before > 0, state.before, 1.0)
  w = t * jax.nn.softmax(ratio / temperature)
  return jnp.where(state.windows >= 2, w, jnp.ones_like(w))


def dwa_update(state: DWAState, task_losses: jax.Array, window: int) -> DWAState:
  """Adds this step's losses; closes the window after ``window`` steps."""
  acc = state.acc + jax.lax.stop_gradient(task_losses)
  count = state.count + 1
  close = count >= window
  mean = acc / window
  return DWAState(acc=jnp.where(close, 0.0, acc), count=jnp.where(close, 0, count),
                  last=jnp.where(close, mean, state.last),
                  before=jnp.where(close, state.last, state.before),
                  windows=state.windows + close.astype(jnp.int32))


def dwa(num_tasks: int, temperature: float = 2.0, window: int = 1) -> Method:
  """The DWA `Method`: ``temperature`` τ (2.0, the paper's); ``window`` steps per loss
  average (the paper's epoch; 1: the ratio of consecutive steps' losses, noisier; the
  configs pass their epoch's steps). State: a `DWAState`.

  Raises:
    ValueError: fewer than 2 tasks, temperature <= 0 or window < 1.
  """
  _check_tasks("dwa", num_tasks)
  if temperature <= 0 or window < 1:
    raise ValueError(f"dwa needs temperature > 0 and window >= 1, got {temperature}, "
                     f"{window}")

  def init(key):
    del key
    return MethodState(phi=(), state=dwa_init(num_tasks))

  def direction(params, phi, state, losses, key):
    del phi, key
    w = dwa_weights(state, temperature)
    grads, task_losses, model_state = weighted_loss_grad(losses, params, w)
    metrics = {**task_metrics(task_losses), "weights": w[1:], "main_weight": w[0]}
    return grads, dwa_update(state, task_losses, window), model_state, metrics

  return Method(name="dwa", init=init, direction=direction)


# --------------------------------------------------------------------------- RLW


def rlw_weights(key: jax.Array, num_tasks: int) -> jax.Array:
  """softmax(z), z ~ N(0, I_T)."""
  return jax.nn.softmax(jax.random.normal(key, (num_tasks,)))


def rlw(num_tasks: int) -> Method:
  """The RLW `Method` (weights from the step's key; no state)."""
  _check_tasks("rlw", num_tasks)

  def init(key):
    del key
    return MethodState(phi=(), state=())

  def direction(params, phi, state, losses, key):
    del phi
    w = rlw_weights(key, num_tasks)
    grads, task_losses, model_state = weighted_loss_grad(losses, params, w)
    metrics = {**task_metrics(task_losses), "weights": w[1:], "main_weight": w[0]}
    return grads, state, model_state, metrics

  return Method(name="rlw", init=init, direction=direction)


# -------------------------------------------------------------------------- FAMO


class FAMOState(NamedTuple):
  """logits: f32[T] ξ; opt_state: their Adam's; prev_losses: f32[T] the previous
  step's task losses; started: bool[] whether there is a previous step."""

  logits: jax.Array
  opt_state: optax.OptState
  prev_losses: jax.Array
  started: jax.Array


def famo_loss_weights(logits: jax.Array, task_losses: jax.Array) -> jax.Array:
  """w_t = z_t / (c (ℓ_t + ε)), c = Σ_t z_t/(ℓ_t + ε): ∇ Σ w_t ℓ_t = ∇ Σ (z_t/c) log(ℓ_t + ε)."""
  z = jax.nn.softmax(logits)
  inv = z / (task_losses + EPS)
  return inv / jnp.sum(inv)


def famo_update(state: FAMOState, task_losses: jax.Array,
                tx: optax.GradientTransformation) -> FAMOState:
  """ξ's step from δ = log(ℓ^{prev} + ε) − log(ℓ + ε) (none on the first step), then
  ℓ^{prev} ← ℓ."""
  task_losses = jax.lax.stop_gradient(task_losses)
  delta = jnp.log(state.prev_losses + EPS) - jnp.log(task_losses + EPS)
  _, vjp = jax.vjp(jax.nn.softmax, state.logits)
  (grad,) = vjp(delta)
  updates, opt_state = tx.update(grad, state.opt_state, state.logits)
  logits = optax.apply_updates(state.logits, updates)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(state.started, a, b), new, old)
  return FAMOState(logits=keep(logits, state.logits),
                   opt_state=keep(opt_state, state.opt_state),
                   prev_losses=task_losses, started=jnp.array(True))


def famo(num_tasks: int, lr: float = 0.025, gamma: float = 1e-3) -> Method:
  """The FAMO `Method`: Adam on the logits with learning rate ``lr`` (0.025) and
  weight decay ``gamma`` (1e-3), the official defaults. State: a `FAMOState`. Metrics
  add ``famo_z`` f32[T] = softmax(ξ)."""
  _check_tasks("famo", num_tasks)
  tx = _optimizer("adam", lr, weight_decay=gamma)

  def init(key):
    del key
    xi = jnp.zeros((num_tasks,), jnp.float32)
    return MethodState(phi=(), state=FAMOState(xi, tx.init(xi), jnp.zeros_like(xi),
                                               jnp.array(False)))

  def direction(params, phi, state, losses, key):
    del phi, key
    # The ξ update of the previous step's model update comes first (the originals
    # update ξ right after the model's step), then this step's weights.
    new = []

    def weights(task_losses):  # one forward pass: the weights depend on its losses
      new.append(famo_update(state, task_losses, tx))
      return famo_loss_weights(new[0].logits, task_losses)

    grads, task_losses, model_state = weighted_loss_grad(losses, params, weights)
    state = new[0]
    w = famo_loss_weights(state.logits, task_losses)
    metrics = {**task_metrics(task_losses), "weights": w[1:], "main_weight": w[0],
               "famo_z": jax.nn.softmax(state.logits)}
    return grads, state, model_state, metrics

  return Method(name="famo", init=init, direction=direction)


# ------------------------------------------------------------------------ DB-MTL


class DBMTLState(NamedTuple):
  """buffer: the EMA ĝ of the log-loss gradients of the shared parameters (the
  backbone's tree, every leaf with a leading T axis)."""

  buffer: PyTree


def dbmtl_update(buffer: PyTree, log_grads: PyTree, beta: float
                 ) -> tuple[PyTree, PyTree, jax.Array]:
  """ĝ ← g + β(ĝ − g); returns (ĝ, Σ_t α_t ĝ_t, α) with α_t = max_s‖ĝ_s‖/(‖ĝ_t‖ + ε)."""
  new = jax.tree.map(lambda b, g: g + beta * (b - g), buffer, log_grads)
  norms = task_norms(new)
  alpha = jnp.max(norms) / (norms + EPS)
  return new, task_combine(new, alpha), alpha


def dbmtl(num_tasks: int, partition: Partition, beta: float = 0.9) -> Method:
  """The DB-MTL `Method` (``partition``: the backbone's, for its leaf shapes;
  ``beta``: the EMA rate, 0.9 as LibMTL's ``DB_beta``). State:
  a `DBMTLState` (T copies of the shared gradient). Metrics: ``weights`` = α[1:],
  ``main_weight`` = α_0.

  Raises:
    ValueError: fewer than 2 tasks or beta outside [0, 1).
  """
  _check_tasks("dbmtl", num_tasks)
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"dbmtl needs 0 <= beta < 1, got {beta}")
  treedef = jax.tree.structure(partition.assignment)
  shapes = partition.shapes_for("dbmtl")

  def init(key):
    del key
    buffer = jax.tree.unflatten(
        treedef, [jnp.zeros((num_tasks,) + tuple(s), jnp.float32) for s in shapes])
    return MethodState(phi=(), state=DBMTLState(buffer))

  def direction(params, phi, state, losses, key):
    del phi, key
    grads, task_losses, model_state = per_task_grads(losses, params)
    # ∇ log(ℓ_t + ε) = ∇ℓ_t / (ℓ_t + ε)
    scale = 1.0 / (jax.lax.stop_gradient(task_losses) + EPS)
    log_grads = jax.tree.map(
        lambda g: g * scale.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype), grads)
    buffer, backbone, alpha = dbmtl_update(state.buffer, log_grads["backbone"], beta)
    heads = task_combine(log_grads["heads"], jnp.ones((num_tasks,), task_losses.dtype))
    metrics = {**task_metrics(task_losses), "weights": alpha[1:], "main_weight": alpha[0]}
    return ({"backbone": backbone, "heads": heads}, DBMTLState(buffer), model_state,
            metrics)

  return Method(name="dbmtl", init=init, direction=direction)
