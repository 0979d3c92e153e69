"""The method abstraction: how auxiliary signals are combined into one update direction.

A `Method` is a small object of pure functions, in the style of optax:

* ``init(key) -> MethodState``: the learnable auxiliary
  parameters φ (an empty tuple for methods without any) and a non-learnable state.
* ``direction(params, phi, state, losses, key) -> (grads, state, model_state, metrics)``:
  the lower-level update direction G(θ, φ), a pytree like ``params``.

Methods with learnable φ (``Method.learnable``) are trained by the implicit
hypergradient of `aux_jax.hypergrad` applied to ``direction``; which estimator is used
is a config choice, independent of the method.

Conventions shared by all methods:
* ``params = {"backbone": shared θ_s, "heads": per-task heads}``; the module
  `aux_jax.partition.Partition` covers ``params["backbone"]`` only.
* Task 0 is the main task, tasks 1..K auxiliary (T = K + 1).
* `LossFns.per_sample(params) -> (f32[T, B], model_state)`: every task's per-sample
  losses on its own batch, plus the model state (BatchNorm statistics) of that
  forward pass. `LossFns.dev(params) -> f32[]`: the main-task loss on a dev batch.
* A method that makes its own labels (AuxiLearn's task generation) reads the batch in
  `LossFns.inputs` / `LossFns.targets` and passes replacement targets to
  ``per_sample(params, targets)``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

PyTree = Any


class LossFns(NamedTuple):
  """The losses one training step sees (closures over this step's batches).

  ``per_sample(params, targets=None)``: ``targets`` replaces the batch's targets (the
  structure of `targets`); None uses the batch's own.

  ``inputs`` and ``targets`` are the batch: for tasks with their own images (separate
  tasks), ``f32[T, B, ...]`` preprocessed images and ``i32[T, B]`` labels; for tasks
  that share their inputs, ``f32[B, ...]`` and a tuple of T target arrays.

  ``per_task`` is optional: ``per_task(stacked_params)`` is ``per_sample`` with task t
  computed from its own copy ``stacked_params[t]`` (every leaf with a leading T axis).
  When given, `per_task_grads` gets all T gradients from one backward pass.

  ``one_task`` is optional: ``one_task(params, t) -> (f32[B] losses, model_state)``
  is task t's row of ``per_sample`` computed from task t's own batch alone (t may be
  traced); the ``"map"`` way of `per_task_grads`.

  ``scaled`` is optional: ``scaled(params, layer_scales) -> (f32[T, B], model_state)``
  is ``per_sample`` whose backward pass multiplies task t's output cotangent of the
  backbone layer at path p by ``layer_scales[p][t]`` (and divides its input cotangent
  by it; `aux_jax.models.backward_scale`). Given only where tasks have their own rows
  (MAOAL's one-pass lower step).

  ``per_task_grads``: how `per_task_grads` gets per-task gradients (``"auto"``,
  ``"vmap"``, ``"map"``, ``"vjp"``; config ``method.per_task_grads``).

  ``main_fresh`` is optional: ``main_fresh(params, n) -> (f32[n] losses, model_state)``
  is the main task's per-sample losses on ``n`` (static) training examples drawn
  independently of the step's batch (their own sampler stream; train mode), for a
  gradient that must not reuse the batch's examples (ATTITTUD's g*).

  ``per_sample_no_dropout`` is optional: ``per_sample`` with the backbone's dropout off
  (training-mode BatchNorm kept), e.g. ATTITTUD's basis (the original sets dropout to 0
  while building it); None: ``per_sample`` has no dropout.

  ``per_pixel`` is given for dense tasks only: ``per_pixel(params) -> (f32[T, B, H, W]
  losses, f32[T, B, H, W] valid mask, model_state)``, the loss maps a convolutional
  auxiliary network combines (`per_sample` is their mean over valid pixels).

  ``dev_stats`` is given when ``dev`` runs BatchNorm in train mode (the upper step with
  ``hyper.dev_bn="train"``): ``dev_stats(params)`` is the model state (running
  statistics) that forward leaves, r ← m r + (1 − m) μ_dev; ``dev`` itself discards it.
  """

  per_sample: Callable[..., tuple[jax.Array, PyTree]]
  dev: Callable[[PyTree], jax.Array]
  per_task: Optional[Callable[[PyTree], tuple[jax.Array, PyTree]]] = None
  per_pixel: Optional[Callable[[PyTree], tuple[jax.Array, jax.Array, PyTree]]] = None
  inputs: Any = None
  targets: Any = None
  one_task: Optional[Callable[[PyTree, Any], tuple[jax.Array, PyTree]]] = None
  scaled: Optional[Callable[[PyTree, dict], tuple[jax.Array, PyTree]]] = None
  per_task_grads: str = "auto"
  per_sample_no_dropout: Optional[Callable[[PyTree], tuple[jax.Array, PyTree]]] = None
  dev_stats: Optional[Callable[[PyTree], PyTree]] = None
  main_fresh: Optional[Callable[[PyTree, int], tuple[jax.Array, PyTree]]] = None


class TaskSpec(NamedTuple):
  """What a method may need to know of the tasks (most need only their number).

  Attributes:
    names: T names, task 0 the main task.
    kinds: T task kinds (`aux_jax.losses`; "classification" for separate tasks).
    num_outputs: T output sizes (classes, target dimensions).
    input_shape: one example's input shape, e.g. ``(H, W, C)``.
    heads: T head indices, the head each task is trained through (None: its own).
  """

  names: tuple
  kinds: tuple
  num_outputs: tuple
  input_shape: tuple
  heads: Optional[tuple] = None


class MethodState(NamedTuple):
  """phi: learnable auxiliary parameters (pytree; () if none). state: other state."""

  phi: PyTree
  state: PyTree


class Method(NamedTuple):
  """A weighting of auxiliary losses. See the module docstring.

  Attributes:
    name: the config name.
    init: ``key -> MethodState``.
    direction: ``(params, phi, state, losses, key) -> (grads, state, model_state, metrics)``.
    learnable: φ is trained by the upper level.
    symmetric: ∂direction/∂θ is symmetric (direction is the gradient of one scalar).
    projection: applied to φ after each upper step (e.g. clamping), or None.
    hyper_wrt: ``"shared"`` (the IFT over the backbone θ_s, heads held fixed, as MAOAL),
      ``"all"`` (over every parameter, as AuxiLearn) or ``"main_head"`` (the backbone
      and the main task's head, the auxiliary heads held fixed, as AuxiLearn's Pet
      task generation).
    updates_per_batch: optimizer updates the trainer makes on each batch (each with
      its own ``direction`` call at the updated parameters; 1 for every method but
      SLGrad's ``look_ahead`` option).

  ``direction``'s metrics hold ``"weights"``: the current auxiliary weights to log and
  plot (f32[K] per task, or f32[K, M] task × module).
  """

  name: str
  init: Callable[..., MethodState]
  direction: Callable[..., tuple[PyTree, PyTree, PyTree, dict]]
  learnable: bool = False
  symmetric: bool = False
  projection: Optional[Callable[[PyTree], PyTree]] = None
  hyper_wrt: str = "shared"
  updates_per_batch: int = 1


def mean_task_losses(losses: LossFns):
  """``params -> (f32[T], model_state)``: each task's batch-mean loss."""

  def fn(params):
    per_sample, model_state = losses.per_sample(params)
    return jnp.mean(per_sample, axis=1), model_state

  return fn


def weighted_loss_grad(losses: LossFns, params, task_weights):
  """∇_θ Σ_t w_t mean_b ℓ_t, one forward and one backward pass.

  Args:
    losses: the step's losses.
    params: θ.
    task_weights: f32[T], or a function ``f32[T] task losses -> f32[T] weights`` of
      this step's (constant: no gradient flows through them) task losses, for weights
      that depend on the current losses (e.g. FAMO's 1/ℓ_t).

  Returns:
    (grads like params, f32[T] task losses, model_state).
  """
  task_losses, vjp_fn, model_state = jax.vjp(mean_task_losses(losses), params,
                                             has_aux=True)
  w = task_weights(jax.lax.stop_gradient(task_losses)) if callable(task_weights) \
      else task_weights
  (grads,) = vjp_fn(jnp.asarray(w, task_losses.dtype))
  return grads, task_losses, model_state


# `per_task_grads` ways. "vmap": T stacked parameter copies, one backward pass (XLA
# turns the copies into grouped convolutions); "map": `lax.map` over tasks, each its
# own forward and backward pass on its own batch; "vjp": one forward pass, then T
# backward passes (`lax.map`) with one-hot task cotangents.
PER_TASK_GRADS = ("auto", "vmap", "map", "vjp")

# What "auto" means per backend. cpu: measured (benchmarks/steps.py on a 2-core CPU,
# benchmarks/results/steps_cpu.json: per-task gradients at the CIFAR-100/20 shapes,
# map 0.35 s, vjp 3.0 s, vmap 14.9 s). gpu and tpu: NOT measured yet; "map" has the
# FLOPs of one pass and no grouped convolutions (slow kernels in cuDNN), "vjp" T times
# the backward FLOPs; benchmarks/gpu_table.sh measures all three.
AUTO_PER_TASK_GRADS = {"cpu": "map", "gpu": "map", "tpu": "map"}


# Unroll the loops over tasks of "map" and "vjp" in the compiled program (the same
# arithmetic). benchmarks/steps.py sets it: XLA's cost analysis counts a loop's body
# once, an unrolled loop in full.
UNROLL_TASK_LOOPS = False


def _task_map(fn, xs):
  """``lax.map(fn, xs)``, unrolled when `UNROLL_TASK_LOOPS`."""
  n = jax.tree.leaves(xs)[0].shape[0]
  _, ys = jax.lax.scan(lambda c, x: (c, fn(x)), None, xs,
                       unroll=n if UNROLL_TASK_LOOPS else 1)
  return ys


def resolve_per_task_grads(mode: str, losses: Optional[LossFns] = None) -> str:
  """The way `per_task_grads` takes for ``mode`` on this backend and these losses:
  "auto" per `AUTO_PER_TASK_GRADS`; "vmap" needs ``losses.per_task`` and "map"
  ``losses.one_task`` (else "vjp").

  Raises:
    ValueError: an unknown mode.
  """
  if mode not in PER_TASK_GRADS:
    raise ValueError(f"unknown per_task_grads {mode!r}; expected one of {PER_TASK_GRADS}")
  if mode == "auto":
    mode = AUTO_PER_TASK_GRADS.get(jax.default_backend(), "map")
  if losses is not None:
    if mode == "vmap" and losses.per_task is None:
      mode = "vjp"
    if mode == "map" and losses.one_task is None:
      mode = "vjp"
  return mode


def per_task_grads(losses: LossFns, params, mode: Optional[str] = None):
  """Per-task gradients of the batch-mean losses ∇_θ mean_b ℓ_t, t = 0..T−1.

  Args:
    losses: the step's losses.
    params: θ.
    mode: one of `PER_TASK_GRADS` (None: ``losses.per_task_grads``), resolved by
      `resolve_per_task_grads`. All ways give the same gradients (up to rounding).

  Returns:
    (grads: pytree like params with a leading T axis on every leaf, f32[T] losses,
     model_state).
  """
  mode = resolve_per_task_grads(losses.per_task_grads if mode is None else mode, losses)
  if mode == "vmap":
    return _per_task_grads_stacked(losses, params)
  if mode == "map":
    return _per_task_grads_map(losses, params)
  return _per_task_grads_vjp(losses, params)


def _per_task_grads_stacked(losses: LossFns, params):
  """Σ_t ℓ_t(θ_t) differentiated w.r.t. T copies θ_t = θ: one forward, one backward."""
  num_tasks = jax.eval_shape(losses.per_sample, params)[0].shape[0]
  stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_tasks,) + x.shape), params)

  def total(ps):
    per_sample, model_state = losses.per_task(ps)
    task_losses = jnp.mean(per_sample, axis=1)
    return jnp.sum(task_losses), (task_losses, model_state)

  grads, (task_losses, model_state) = jax.grad(total, has_aux=True)(stacked)
  return grads, task_losses, model_state


def _per_task_grads_map(losses: LossFns, params):
  """One forward and backward pass per task on its own batch, in a `lax.map`."""
  num_tasks = jax.eval_shape(losses.per_sample, params)[0].shape[0]

  def one(t):
    def loss(p):
      per_sample, model_state = losses.one_task(p, t)
      return jnp.mean(per_sample), model_state

    (value, model_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return grads, value, model_state

  grads, task_losses, model_state = _task_map(one, jnp.arange(num_tasks))
  # The model state (BatchNorm statistics) of the main task's batch, as per_sample's.
  return grads, task_losses, jax.tree.map(lambda s: s[0], model_state)


def _per_task_grads_vjp(losses: LossFns, params):
  """One forward pass, then T backward passes with one-hot cotangents (`lax.map`)."""
  task_losses, vjp_fn, model_state = jax.vjp(
      mean_task_losses(losses), params, has_aux=True)
  eye = jnp.eye(task_losses.shape[0], dtype=task_losses.dtype)
  grads = _task_map(lambda e: vjp_fn(e)[0], eye)
  return grads, task_losses, model_state


def per_task_grads_reference(losses: LossFns, params):
  """Per-task gradients by one forward and T backward passes (vmap over one-hot
  cotangents): simple, and the reference the other ways are tested against."""
  task_losses, vjp_fn, model_state = jax.vjp(
      mean_task_losses(losses), params, has_aux=True)
  num_tasks = task_losses.shape[0]
  eye = jnp.eye(num_tasks, dtype=task_losses.dtype)
  (grads,) = jax.vmap(vjp_fn)(eye)
  return grads, task_losses, model_state


def task_metrics(task_losses: jax.Array) -> dict:
  """Scalar metrics of the per-task losses (main loss and mean auxiliary loss; no
  auxiliary mean without auxiliary tasks, where it would be the NaN of an empty mean)."""
  if task_losses.shape[0] == 1:
    return {"loss_main": task_losses[0]}
  return {"loss_main": task_losses[0], "loss_aux_mean": jnp.mean(task_losses[1:])}
