"""One experiment's pure, jitted functions: init, lower step, upper step, evaluation.

Data flow of one training iteration (all on device, no host round-trip):

    step s ──► task_batch_indices(data_key, s) ──► u8[T, B, H, W, C] ──► preprocess,
    augment ──► LossFns (per-task per-sample losses, per-task-chunk BatchNorm; dev loss)
    ──► method.direction ──► grads ──► optax (SGD) ──► new params       (lower step)
    every `hyper.interval` steps, for learnable methods:
    implicit_hypergradient(method.direction, dev loss) ──► meta optimizer ──► new φ
                                                                          (upper step)

Randomness: the batch order is a pure function of (seed, step) and every other key
is ``fold_in(step_key, step)``, so a run resumed from a checkpoint reproduces the
uninterrupted run exactly.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aux_jax import hypergrad
from aux_jax.data import augment, sampler
from aux_jax.data.multitask import MultiTaskData
from aux_jax.meta_optimizer import MetaState, meta_optimizer
from aux_jax.methods import LossFns, Method, MethodState, get_method
from aux_jax.models import get_backbone
from aux_jax.models.heads import apply_head, apply_heads, init_heads
from aux_jax.models.multitask import masked_cross_entropy, multitask_features
from aux_jax.partition import Partition, make_partition, partition_rules

PyTree = Any


class TrainState(NamedTuple):
  """Everything a checkpoint holds. The data-iterator position is ``step``."""

  step: jax.Array                 # i32[]
  params: PyTree                  # {"backbone": θ_s, "heads": per-task heads}
  batch_stats: PyTree             # BatchNorm running statistics (main-task batches)
  opt_state: optax.OptState
  method: MethodState             # φ and the method's own state
  meta_state: MetaState           # upper-level optimizer
  best_dev: jax.Array             # f32[]: best dev accuracy so far (model selection)


class Experiment(NamedTuple):
  """Functions of one configured experiment (see the module docstring)."""

  config: ml_collections.ConfigDict
  data: MultiTaskData
  method: Method
  partition: Partition
  init: Callable[[], TrainState]
  losses_at: Callable[[TrainState, jax.Array], LossFns]
  lower_step: Callable[[TrainState], tuple[TrainState, dict]]
  upper_step: Callable[[TrainState], tuple[TrainState, dict]]
  evaluate: Callable[[TrainState, str], dict]


def _compute_dtype(name: str):
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"model.dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def _lower_optimizer(cfg) -> optax.GradientTransformation:
  if cfg.schedule == "cosine":
    lr = optax.cosine_decay_schedule(cfg.lr, cfg.num_steps)
  elif cfg.schedule == "constant":
    lr = cfg.lr
  else:
    raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")
  if cfg.name == "sgd":
    base = optax.sgd(lr, momentum=cfg.momentum or None)
  elif cfg.name == "adam":
    base = optax.adam(lr)
  else:
    raise ValueError(f"optim.name must be 'sgd' or 'adam', got {cfg.name!r}")
  # PyTorch-style weight decay: added to the gradient before the optimizer.
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay), base)


def _upper_optimizer(cfg) -> optax.GradientTransformation:
  if cfg.optimizer == "adam":
    base = optax.adam(cfg.lr)
  elif cfg.optimizer == "sgd":
    base = optax.sgd(cfg.lr, momentum=cfg.momentum or None)
  else:
    raise ValueError(f"hyper.optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay), base)


def build_experiment(config: ml_collections.ConfigDict, data: MultiTaskData) -> Experiment:
  """Builds the jitted functions of an experiment from its config and data."""
  data.validate()
  cfg = config
  num_tasks = data.num_tasks
  dtype = _compute_dtype(cfg.model.dtype)
  backbone = get_backbone(cfg.model.name, dtype=dtype, **dict(cfg.model.get("kwargs", {})))
  batch, dev_batch = cfg.data.batch_size, cfg.data.dev_batch_size
  sampler.check_batch_size(data.train_counts, batch)
  sampler.check_batch_size([len(data.dev_labels)], dev_batch, "the dev set")
  n_max = data.train_images.shape[1]
  n_dev = len(data.dev_labels)

  # Device-resident data: batches are gathered inside the jitted steps.
  train_x = jnp.asarray(data.train_images)
  train_y = jnp.asarray(data.train_labels)
  counts = jnp.asarray(data.train_counts)
  num_classes = jnp.asarray(data.num_classes)
  dev_x, dev_y = jnp.asarray(data.dev_images), jnp.asarray(data.dev_labels)

  seed_key = jax.random.key(cfg.seed)
  init_key, data_key, dev_key, step_key = jax.random.split(seed_key, 4)

  # Parameters (and the partition, which needs their paths).
  h, w, c = data.image_shape
  variables = backbone.init(init_key, jnp.zeros((2, h, w, c), dtype), train=False)
  feat_dim = jax.eval_shape(
      lambda v: backbone.apply(v, jnp.zeros((2, h, w, c), dtype), train=False),
      variables).shape[-1]
  partition = make_partition(variables["params"], cfg.method.partition,
                             partition_rules(cfg.model.name)
                             if cfg.method.partition == "module_wise" else ())
  method = get_method(cfg.method.name, num_tasks, partition,
                      **dict(cfg.method.get("kwargs", {})))
  tx = _lower_optimizer(cfg.optim)
  meta = meta_optimizer(_upper_optimizer(cfg.hyper), max_norm=cfg.hyper.max_norm,
                        projection=method.projection)

  def init() -> TrainState:
    k_heads, k_method = jax.random.split(jax.random.fold_in(init_key, 1))
    params = {"backbone": variables["params"],
              "heads": init_heads(k_heads, num_tasks, feat_dim, data.num_classes_max)}
    mstate = method.init(k_method)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
        method=mstate, meta_state=meta.init(mstate.phi),
        best_dev=jnp.array(-1.0, jnp.float32))

  def variables_of(params, batch_stats):
    v = {"params": params["backbone"]}
    if batch_stats:
      v["batch_stats"] = batch_stats
    return v

  def losses_at(state: TrainState, step) -> LossFns:
    """The training and dev losses of the batches of `step`."""
    idx = sampler.task_batch_indices(data_key, step, counts, batch, n_max)
    images, labels = sampler.gather_task_batch(train_x, train_y, idx)
    images = data.preprocess(images, dtype)
    if cfg.data.augment:
      images = augment.random_crop_flip(
          jax.random.fold_in(step_key, step), images, pad=cfg.data.crop_pad)
    didx = sampler.pool_batch_indices(dev_key, step, n_dev, dev_batch)
    dimages = data.preprocess(dev_x[didx], dtype)
    dlabels = dev_y[didx]

    def per_sample(params):
      feats, new_stats = multitask_features(
          backbone, variables_of(params, state.batch_stats), images, train=True)
      logits = apply_heads(params["heads"], feats.astype(jnp.float32))
      return masked_cross_entropy(logits, labels, num_classes[:, None]), new_stats

    def per_task(stacked):  # every leaf [T, ...]: task t uses its own copy
      feats, new_stats = multitask_features(
          backbone, variables_of(stacked, state.batch_stats), images, train=True,
          stacked=True)
      heads = jax.tree.map(lambda h: jax.vmap(lambda x, t: x[t])(h, jnp.arange(num_tasks)),
                           stacked["heads"])
      logits = apply_heads(heads, feats.astype(jnp.float32))
      return masked_cross_entropy(logits, labels, num_classes[:, None]), new_stats

    def dev(params):
      feats = backbone.apply(variables_of(params, state.batch_stats), dimages,
                             train=False)
      logits = apply_head(params["heads"], 0, feats.astype(jnp.float32))
      return jnp.mean(masked_cross_entropy(logits, dlabels, num_classes[0]))

    return LossFns(per_sample=per_sample, dev=dev, per_task=per_task)

  # Donating the state halves peak memory on accelerators (CPU cannot use it).
  donate = () if jax.default_backend() == "cpu" else (0,)

  @functools.partial(jax.jit, donate_argnums=donate)
  def lower_step(state: TrainState):
    losses = losses_at(state, state.step)
    key = jax.random.fold_in(jax.random.fold_in(step_key, state.step), 1)
    grads, mstate, new_stats, metrics = method.direction(
        state.params, state.method.phi, state.method.state, losses, key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    new_state = state._replace(
        step=state.step + 1, params=params, opt_state=opt_state,
        batch_stats=state.batch_stats if new_stats is None else new_stats,
        method=MethodState(state.method.phi, mstate))
    return new_state, metrics

  @functools.partial(jax.jit, donate_argnums=donate)
  def upper_step(state: TrainState):
    """One hypergradient step on φ, on the batch of the lower step just taken."""
    last = state.step - 1
    losses = losses_at(state, last)
    key = jax.random.fold_in(jax.random.fold_in(step_key, last), 1)
    mstate = state.method.state
    if method.hyper_wrt == "shared":
      heads = state.params["heads"]
      theta = state.params["backbone"]
      merge = lambda t: {"backbone": t, "heads": heads}
      g = lambda t, phi: method.direction(merge(t), phi, mstate, losses, key)[0]["backbone"]
      val = lambda t: losses.dev(merge(t))
    else:
      theta = state.params
      g = lambda t, phi: method.direction(t, phi, mstate, losses, key)[0]
      val = losses.dev
    hg, info = hypergrad.implicit_hypergradient(
        g, val, theta, state.method.phi, solver=cfg.hyper.solver,
        neumann_steps=cfg.hyper.neumann_steps, step=cfg.hyper.step,
        scale_by_step=cfg.hyper.scale_by_step, symmetric=method.symmetric,
        maxiter=cfg.hyper.maxiter, tol=cfg.hyper.tol)
    phi, meta_state, metrics = meta.update(hg, info, state.meta_state, state.method.phi)
    metrics["dev_loss"] = val(theta)
    return state._replace(method=MethodState(phi, mstate), meta_state=meta_state), metrics

  eval_batch = cfg.data.get("eval_batch_size", 500)

  @jax.jit
  def _eval_batch(params, batch_stats, images, labels, mask):
    feats = backbone.apply(variables_of(params, batch_stats),
                           data.preprocess(images, dtype), train=False)
    logits = apply_head(params["heads"], 0, feats.astype(jnp.float32))
    loss = masked_cross_entropy(logits, labels, num_classes[0])
    correct = jnp.argmax(logits[:, :data.num_classes[0]], -1) == labels
    return jnp.sum(mask * loss), jnp.sum(mask * correct)

  def evaluate(state: TrainState, split: str) -> dict:
    """Main-task loss and accuracy on ``split`` ('dev' or 'test')."""
    if split not in ("dev", "test"):
      raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    x = getattr(data, f"{split}_images")
    y = getattr(data, f"{split}_labels")
    n = len(y)
    pad = (-n) % eval_batch
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    y = np.concatenate([y, np.zeros((pad,), y.dtype)])
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    loss = correct = 0.0
    for i in range(0, n + pad, eval_batch):
      sl = slice(i, i + eval_batch)
      l, c = _eval_batch(state.params, state.batch_stats, x[sl], y[sl], mask[sl])
      loss, correct = loss + l, correct + c
    return {f"{split}_loss": float(loss) / n, f"{split}_accuracy": float(correct) / n}

  return Experiment(config=cfg, data=data, method=method, partition=partition,
                    init=init, losses_at=losses_at, lower_step=lower_step, upper_step=upper_step,
                    evaluate=evaluate)
