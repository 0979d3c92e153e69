"""A shared backbone applied to every task's own batch, and the masked task loss.

Each task's loss uses its own images, as if each task had its own forward pass (the
original MAOAL code runs one pass per task). So in training BatchNorm normalises each
task's chunk by that chunk's own statistics. `multitask_features` does this with one
`jax.vmap` over the task axis, parameters broadcast: XLA folds the task axis into
the batch axis of every convolution, so it costs one pass over `T·B` images, and only
the reductions (BatchNorm statistics) stay per task.

Running statistics (``bn_stats``):

* ``"main"``: the update from the main task's chunk alone (task 0): evaluation is on
  the main task, and statistics dominated by auxiliary images would not match its
  inputs (a defect of the original code);
* ``"all"``: every chunk's update folded in task order 0..T−1, as the original's T
  successive forward passes do: with momentum m (Flax's; PyTorch's is 1 − m) and chunk
  statistics μ_t, r ← m r + (1 − m) μ_t for t = 0, …, T−1, i.e.
  r_T = m^T r + (1 − m) Σ_t m^{T−1−t} μ_t.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from aux_jax.models.backward_scale import scaled_layers
from aux_jax.models.small_cnn import BN_MOMENTUM


def multitask_features(backbone: nn.Module, variables: dict, images: jnp.ndarray,
                       train: bool, stacked: bool = False,
                       layer_scales: Optional[dict] = None, bn_stats: str = "main",
                       bn_momentum: float = BN_MOMENTUM,
                       dropout_key: Optional[jax.Array] = None) -> tuple[jnp.ndarray, Any]:
  """Backbone features of every task's batch.

  Args:
    backbone: a linen module with `__call__(x, train)` mapping `f32[B, H, W, C]` to
      `f32[B, F]`.
    variables: its variables, `{'params': ..., 'batch_stats': ...}` (`batch_stats`
      only if it has BatchNorm).
    images: `f32[T, B, H, W, C]`, task `t`'s batch in row `t`.
    train: training mode: per-task-chunk batch statistics, and the main task's
      running-statistics update is returned. Otherwise running averages are used.
    stacked: ``variables["params"]`` has a leading task axis T, and task t's chunk
      is computed with its own copy. With copies of the same θ this gives the same
      features, but the gradient w.r.t. the copies holds every task's gradient,
      all from one backward pass (`aux_jax.methods.base.per_task_grads`).
    layer_scales: ``{layer path: f32[T]}``: in the backward pass, task t's output
      cotangent of that layer is multiplied by ``[t]`` and its input cotangent
      divided by it (`aux_jax.models.backward_scale`; MAOAL's one-pass lower step).
      The forward pass is unchanged. Training only.
    bn_stats: ``"main"`` or ``"all"``: which chunks update the running statistics
      (module docstring).
    bn_momentum: the backbone's BatchNorm momentum m (every aux_jax backbone's:
      `BN_MOMENTUM` = 0.9, PyTorch's 0.1), used by ``"all"``.
    dropout_key: the ``"dropout"`` PRNG of a backbone with dropout (training only;
      task t's chunk uses ``split(dropout_key, T)[t]``); None: no dropout.

  Returns:
    `(features f32[T, B, F], new_batch_stats)`. `new_batch_stats` is the
    `batch_stats` collection after the update (``bn_stats``) when `train` and
    the backbone has BatchNorm, otherwise None.
  """
  if bn_stats not in ("main", "all"):
    raise ValueError(f"bn_stats must be 'main' or 'all', got {bn_stats!r}")
  if images.ndim < 3:
    raise ValueError(f"images must be [T, B, ...], got shape {images.shape}")
  has_bn = "batch_stats" in variables
  if not train:
    if stacked:
      raise ValueError("stacked parameters are for training (per-task gradients) only")
    t, b = images.shape[:2]
    feats = backbone.apply(variables, images.reshape((t * b,) + images.shape[2:]),
                           train=False)
    return feats.reshape((t, b) + feats.shape[1:]), None
  params_axis = 0 if stacked else None
  scales = dict(layer_scales or {})

  def one_task(p, x, s, k):
    rngs = None if k is None else {"dropout": k}
    with scaled_layers(s):
      if not has_bn:
        return backbone.apply({"params": p}, x, train=True, rngs=rngs), None
      feats, updates = backbone.apply({**variables, "params": p}, x, train=True,
                                      mutable=["batch_stats"], rngs=rngs)
    return feats, updates["batch_stats"]

  task_keys = (None if dropout_key is None
               else jax.random.split(dropout_key, images.shape[0]))
  feats, stats = jax.vmap(one_task, in_axes=(params_axis, 0, 0, 0))(
      variables["params"], images, scales, task_keys)
  if stats is None:
    return feats, None
  if bn_stats == "main":
    return feats, jax.tree.map(lambda s: s[0], stats)

  def fold(r, s):
    # s[t] = m r + (1 − m) μ_t, so the sequential update is r_{t+1} = s[t] + m (r_t − r).
    r_t = s[0]
    for t in range(1, s.shape[0]):
      r_t = s[t] + bn_momentum * (r_t - r)
    return r_t

  return feats, jax.tree.map(fold, variables["batch_stats"], stats)


def single_features(backbone: nn.Module, variables: dict, images: jnp.ndarray,
                    train: bool, dropout_key: Optional[jax.Array] = None
                    ) -> tuple[jnp.ndarray, Any]:
  """Backbone features of one batch `f32[B, H, W, C] -> f32[B, F]` (e.g. the dev batch).

  ``dropout_key``: the ``"dropout"`` PRNG of a backbone with dropout (training only).

  Returns:
    `(features, new_batch_stats)`, `new_batch_stats` None unless `train` and the
    backbone has BatchNorm. Discard it to leave running statistics untouched.
  """
  rngs = {"dropout": dropout_key} if train and dropout_key is not None else None
  if train and "batch_stats" in variables:
    feats, updates = backbone.apply(variables, images, train=True, mutable=["batch_stats"],
                                    rngs=rngs)
    return feats, updates["batch_stats"]
  return backbone.apply(variables, images, train=train, rngs=rngs), None
