"""AuxiLearn auxiliary-task generation: train a primary network with labeler-made labels.

Navon et al., "Auxiliary Learning by Implicit Differentiation", ICLR 2021 (§ "learning
a novel auxiliary task"). No auxiliary task is given; a labeler network g_φ
(`aux_jax.taskgen.Labeler`) assigns every training image x of main class y a
distribution q_φ(x, y) over the k *sub-classes of y* (a masked softmax over C·k
auxiliary classes, `aux_jax.taskgen.masked_softmax`). The primary network θ = (backbone,
main head with C outputs, auxiliary head with C·k outputs) learns both:

    L_T(θ, φ) = mean_b CE(main(x_b), y_b) + λ · mean_b [−Σ_i q_φ(x_b, y_b)_i log softmax(aux(x_b))_i]

(λ = ``taskgen.aux_weight``). The labels q depend on φ only (never on θ), so the lower
step θ ← opt(∇_θ L_T) treats them as constants, while the upper step differentiates
through them: with G(θ, φ) = ∇_θ L_T(θ, φ) over *all* primary parameters and
L_dev(θ) the main-task cross-entropy on a dev batch, every ``hyper.interval`` steps

    dL_dev/dφ = −(∂G/∂φ)ᵀ p,   p ≈ Σ_{j=0..J} (I − α ∇²_θ L_T)^j ∇_θ L_dev

(`aux_jax.hypergrad.implicit_hypergradient`; the original's conventions are J = 3,
no α prefactor, clip the global norm, then SGD/Adam on φ via
`aux_jax.meta_optimizer`). ``hyper.include_weight_decay=True`` adds the lower
optimizer's decay wd·θ to G (Jacobian H + wd·I, the true fixed point of weight-decayed
training); the original omits it (default False).

No entropy regulariser on q is used: DESIGN.md §3.1 and the AuxiLearn README document
none (see `aux_jax.taskgen`).

Ablations from the config: ``taskgen.learn_labeler=False`` keeps the randomly
initialised labeler fixed (a random-sub-class baseline, no upper steps);
``taskgen.aux_weight=0`` is single-task learning (STL).

Randomness is a pure function of (seed, step): parameters from splits of
``key(seed)``, batch order from `aux_jax.data.sampler`, augmentation from
``fold_in(step_key, step)``, so a run is reproducible from its config.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aux_jax import hypergrad, taskgen
from aux_jax.data import augment, sampler
from aux_jax.data.multitask import MultiTaskData
from aux_jax.meta_optimizer import MetaState, meta_optimizer
from aux_jax.models import get_backbone
from aux_jax.models.multitask import single_features
from aux_jax.train.optimizers import lower_optimizer, upper_optimizer

PyTree = Any


class TaskgenState(NamedTuple):
  """Everything that changes during training.

  Attributes:
    step: i32[], lower steps taken (the data position).
    params: θ, ``{"backbone": ..., "main": Dense(C), "aux": Dense(C·k)}``.
    batch_stats: BatchNorm running statistics of the backbone (``{}`` if none).
    opt_state: lower optimizer state.
    labeler: φ, the labeler's parameters.
    meta_state: upper optimizer state (`aux_jax.meta_optimizer.MetaState`).
  """

  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState
  labeler: PyTree
  meta_state: MetaState


class Taskgen(NamedTuple):
  """The jitted functions of one configured task-generation run.

  Attributes:
    config: the config.
    data: the (single-task) data; only the main task (task 0) is used.
    learnable: upper steps are taken (``learn_labeler`` and ``aux_weight > 0``).
    init: ``() -> TaskgenState``.
    batch_at: ``step -> (f32[B, H, W, C] images, i32[B] labels)``: the preprocessed,
      augmented training batch of ``step``.
    dev_batch_at: ``step -> (f32[B_dev, H, W, C], i32[B_dev])``: the dev batch.
    lower_loss: ``(params, labeler, batch_stats, images, labels) -> (f32[], (stats,
      metrics))``: L_T and the BatchNorm update of its forward pass.
    lower_step: ``state -> (state, metrics)``.
    hypergradient: ``state -> (dL_dev/dφ, HypergradInfo, f32[] dev loss)`` on the
      batches of the last lower step (``state.step - 1``).
    upper_step: ``state -> (state, metrics)``.
    soft_labels: ``(labeler, u8[N, H, W, C], i32[N]) -> f32[N, C·k]``: generated labels
      of un-augmented images.
    evaluate: ``(state, split) -> {split_loss, split_accuracy}``, split 'dev'/'test'.
  """

  config: ml_collections.ConfigDict
  data: MultiTaskData
  learnable: bool
  init: Callable[[], TaskgenState]
  batch_at: Callable
  dev_batch_at: Callable
  lower_loss: Callable
  lower_step: Callable
  hypergradient: Callable
  upper_step: Callable
  soft_labels: Callable
  evaluate: Callable[[TaskgenState, str], dict]


def _compute_dtype(name: str):
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"model.dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def _check_config(cfg, data: MultiTaskData):
  tg = cfg.taskgen
  if int(tg.num_subclasses) < 1:
    raise ValueError(f"taskgen.num_subclasses must be >= 1, got {tg.num_subclasses}")
  if float(tg.aux_weight) < 0:
    raise ValueError(f"taskgen.aux_weight must be >= 0, got {tg.aux_weight}")
  if cfg.hyper.solver not in hypergrad.SOLVERS:
    raise ValueError(
        f"hyper.solver must be one of {hypergrad.SOLVERS}, got {cfg.hyper.solver!r}")
  if int(cfg.hyper.interval) < 1:
    raise ValueError(f"hyper.interval must be >= 1, got {cfg.hyper.interval}")
  if data.num_tasks != 1:
    raise ValueError(
        f"task generation trains the main task only; got {data.num_tasks} tasks "
        f"({data.task_names}). Use a single-task dataset (e.g. 'cifar10', 'oxford_pet').")


def build_taskgen(config: ml_collections.ConfigDict, data: MultiTaskData,
                  backbone: Optional[nn.Module] = None,
                  labeler: Optional[nn.Module] = None) -> Taskgen:
  """Builds the jitted functions of a task-generation run (see the module docstring).

  Args:
    config: a task-generation config (``configs/auxilearn_taskgen_*.py``).
    data: single-task `MultiTaskData`.
    backbone: overrides ``get_backbone(config.model.name, ...)`` (any linen module
      ``(x, train) -> f32[B, F]``; tests use tiny ones).
    labeler: overrides ``taskgen.Labeler(C, k, config.taskgen.labeler_features)``
      (``(x, labels) -> f32[B, C·k]`` soft labels).

  Returns:
    A `Taskgen`.
  """
  data.validate()
  cfg = config
  _check_config(cfg, data)
  dtype = _compute_dtype(cfg.model.dtype)
  num_classes = int(data.num_classes[0])
  k = int(cfg.taskgen.num_subclasses)
  aux_weight = float(cfg.taskgen.aux_weight)
  learnable = bool(cfg.taskgen.learn_labeler) and aux_weight > 0
  if backbone is None:
    backbone = get_backbone(cfg.model.name, dtype=dtype,
                            **dict(cfg.model.get("kwargs", {})))
  if labeler is None:
    labeler = taskgen.Labeler(num_classes, k,
                              features=tuple(cfg.taskgen.labeler_features), dtype=dtype)
  main_head, aux_head = nn.Dense(num_classes), nn.Dense(num_classes * k)

  batch, dev_batch = cfg.data.batch_size, cfg.data.dev_batch_size
  sampler.check_batch_size(data.train_counts, batch)
  sampler.check_batch_size([len(data.dev_labels)], dev_batch, "the dev set")
  n_train, n_dev = int(data.train_counts[0]), len(data.dev_labels)
  # Device-resident data: batches are gathered inside the jitted steps.
  train_x = jnp.asarray(data.train_images[0, :n_train])
  train_y = jnp.asarray(data.train_labels[0, :n_train])
  dev_x, dev_y = jnp.asarray(data.dev_images), jnp.asarray(data.dev_labels)

  init_key, labeler_key, data_key, dev_key, step_key = jax.random.split(
      jax.random.key(cfg.seed), 5)
  h, w, c = data.image_shape
  dummy_x = jnp.zeros((2, h, w, c), dtype)
  dummy_y = jnp.zeros((2,), jnp.int32)
  variables = backbone.init(init_key, dummy_x, train=False)
  feat_dim = jax.eval_shape(lambda v: backbone.apply(v, dummy_x, train=False),
                            variables).shape[-1]

  tx = lower_optimizer(cfg.optim)
  meta = meta_optimizer(upper_optimizer(cfg.hyper), max_norm=cfg.hyper.max_norm)
  weight_decay = float(cfg.optim.weight_decay)
  include_wd = bool(cfg.hyper.get("include_weight_decay", False))

  def init() -> TaskgenState:
    k_main, k_aux = jax.random.split(jax.random.fold_in(init_key, 1))
    feats = jnp.zeros((1, feat_dim), jnp.float32)
    params = {"backbone": variables.get("params", {}),
              "main": main_head.init(k_main, feats)["params"],
              "aux": aux_head.init(k_aux, feats)["params"]}
    phi = labeler.init(labeler_key, dummy_x, dummy_y)["params"]
    return TaskgenState(
        step=jnp.zeros((), jnp.int32), params=params,
        batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
        labeler=phi, meta_state=meta.init(phi))

  def variables_of(params, batch_stats):
    v = {"params": params["backbone"]}
    if batch_stats:
      v["batch_stats"] = batch_stats
    return v

  def heads(params, feats):
    feats = feats.astype(jnp.float32)
    return (main_head.apply({"params": params["main"]}, feats),
            aux_head.apply({"params": params["aux"]}, feats))

  def batch_at(step):
    idx = sampler.pool_batch_indices(data_key, step, n_train, batch)
    images = data.preprocess(train_x[idx], dtype)
    if cfg.data.augment:
      images = augment.random_crop_flip(jax.random.fold_in(step_key, step), images,
                                        pad=cfg.data.crop_pad)
    return images, train_y[idx]

  def dev_batch_at(step):
    idx = sampler.pool_batch_indices(dev_key, step, n_dev, dev_batch)
    return data.preprocess(dev_x[idx], dtype), dev_y[idx]

  def lower_loss(params, phi, batch_stats, images, labels):
    """L_T(θ, φ) on one batch; the labels q are a function of φ only."""
    feats, new_stats = single_features(backbone, variables_of(params, batch_stats),
                                       images, train=True)
    main_logits, aux_logits = heads(params, feats)
    q = labeler.apply({"params": phi}, images, labels)
    loss_main = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        main_logits, labels))
    loss_aux = jnp.mean(taskgen.generated_label_loss(aux_logits, q))
    entropy = -jnp.sum(jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q, 1.0)), 0.0), -1)
    metrics = {
        "loss_main": loss_main, "loss_aux": loss_aux,
        "train_accuracy": jnp.mean(jnp.argmax(main_logits, -1) == labels),
        "label_entropy": jnp.mean(entropy),  # nats; log k = uniform over sub-classes
    }
    return loss_main + aux_weight * loss_aux, (new_stats, metrics)

  def dev_loss(params, batch_stats, images, labels):
    feats = backbone.apply(variables_of(params, batch_stats), images, train=False)
    main_logits, _ = heads(params, feats)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(main_logits, labels))

  # Donating the state halves peak memory on accelerators (CPU cannot use it).
  donate = () if jax.default_backend() == "cpu" else (0,)

  @functools.partial(jax.jit, donate_argnums=donate)
  def lower_step(state: TaskgenState):
    images, labels = batch_at(state.step)
    grads, (new_stats, metrics) = jax.grad(lower_loss, has_aux=True)(
        state.params, state.labeler, state.batch_stats, images, labels)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["loss"] = metrics["loss_main"] + aux_weight * metrics["loss_aux"]
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state._replace(
        step=state.step + 1, params=params, opt_state=opt_state,
        batch_stats=state.batch_stats if new_stats is None else new_stats), metrics

  def _hypergradient(state: TaskgenState):
    last = state.step - 1
    images, labels = batch_at(last)
    dimages, dlabels = dev_batch_at(last)

    def g(theta, phi):  # G(θ, φ) = ∇_θ L_T (+ wd·θ)
      grads = jax.grad(lambda t: lower_loss(t, phi, state.batch_stats, images,
                                            labels)[0])(theta)
      if include_wd:
        grads = optax.tree.add_scale(grads, weight_decay, theta)
      return grads

    val = lambda theta: dev_loss(theta, state.batch_stats, dimages, dlabels)
    hg, info = hypergrad.implicit_hypergradient(
        g, val, state.params, state.labeler, solver=cfg.hyper.solver,
        neumann_steps=cfg.hyper.neumann_steps, step=cfg.hyper.step,
        scale_by_step=cfg.hyper.scale_by_step, symmetric=True,
        maxiter=cfg.hyper.maxiter, tol=cfg.hyper.tol)
    return hg, info, val(state.params)

  @functools.partial(jax.jit, donate_argnums=donate)
  def upper_step(state: TaskgenState):
    """One hypergradient step on φ, on the batch of the lower step just taken."""
    hg, info, dloss = _hypergradient(state)
    phi, meta_state, metrics = meta.update(hg, info, state.meta_state, state.labeler)
    metrics["dev_loss"] = dloss
    return state._replace(labeler=phi, meta_state=meta_state), metrics

  @jax.jit
  def soft_labels(phi, images, labels):
    return labeler.apply({"params": phi}, data.preprocess(images, dtype), labels)

  eval_batch = cfg.data.get("eval_batch_size", 500)

  @jax.jit
  def _eval_batch(params, batch_stats, images, labels, mask):
    feats = backbone.apply(variables_of(params, batch_stats),
                           data.preprocess(images, dtype), train=False)
    logits, _ = heads(params, feats)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = jnp.argmax(logits, -1) == labels
    return jnp.sum(mask * loss), jnp.sum(mask * correct)

  def evaluate(state: TaskgenState, split: str) -> dict:
    """Main-task loss and accuracy on ``split`` ('dev' or 'test')."""
    if split not in ("dev", "test"):
      raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    x, y = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    n = len(y)
    pad = (-n) % eval_batch
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    y = np.concatenate([y, np.zeros((pad,), y.dtype)])
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    loss = correct = 0.0
    for i in range(0, n + pad, eval_batch):
      sl = slice(i, i + eval_batch)
      l, c_ = _eval_batch(state.params, state.batch_stats, x[sl], y[sl], mask[sl])
      loss, correct = loss + l, correct + c_
    return {f"{split}_loss": float(loss) / n, f"{split}_accuracy": float(correct) / n}

  return Taskgen(config=cfg, data=data, learnable=learnable, init=init,
                 batch_at=jax.jit(batch_at), dev_batch_at=jax.jit(dev_batch_at),
                 lower_loss=lower_loss, lower_step=lower_step,
                 hypergradient=jax.jit(_hypergradient), upper_step=upper_step,
                 soft_labels=soft_labels, evaluate=evaluate)


def subclass_usage(soft: np.ndarray, labels: np.ndarray, num_classes: int,
                   num_subclasses: int) -> np.ndarray:
  """How often each sub-class is the labeler's arg-max, per main class.

  Args:
    soft: f32[N, C·k] generated labels.
    labels: int[N] main labels.
    num_classes: C.
    num_subclasses: k.

  Returns:
    f32[C, k]: row c is the distribution of arg-max sub-classes over the images of
    class c (zeros for a class without images). A collapsed labeler has one-hot rows.
  """
  sub = np.argmax(np.asarray(soft).reshape(len(labels), num_classes, num_subclasses)
                  [np.arange(len(labels)), labels], -1)
  counts = np.zeros((num_classes, num_subclasses))
  np.add.at(counts, (labels, sub), 1.0)
  return counts / np.maximum(counts.sum(1, keepdims=True), 1.0)


def _to_host(tree) -> dict:
  return {k: np.asarray(v).tolist() for k, v in jax.device_get(tree).items()}


def run_taskgen(config: ml_collections.ConfigDict, workdir: str,
                tg: Optional[Taskgen] = None,
                progress: Callable[[str], None] = print) -> dict:
  """Trains with generated auxiliary labels; selects on dev; tests the best.

  Writes to ``workdir``: ``config.json`` (the resolved config), ``metrics.jsonl`` (one
  JSON object per logged step: lower-step metrics, upper-step metrics when one was
  taken at that step, dev metrics at evaluations) and ``test_metrics.json`` (the
  returned summary). The best-on-dev state is kept in memory (no checkpoints: a
  killed run starts again).

  Args:
    config: a task-generation config (``configs/auxilearn_taskgen_*.py``).
    workdir: output directory (created; files overwritten).
    tg: a prebuilt `Taskgen` (tests); built from ``config`` if None.
    progress: receives one line per evaluation.

  Returns:
    Summary: test metrics of the best-on-dev state, best dev accuracy and step,
    final test accuracy, hypergradients applied/skipped, the arg-max sub-class usage
    of the best labeler on the dev set (f32[C][k]), wall time.
  """
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  if tg is None:
    from aux_jax.data import get_dataset  # Lazy: loaders import TFDS.

    data = get_dataset(config.data.name, **dict(config.data.get("kwargs", {})))
    tg = build_taskgen(config, data)
  num_steps, interval = int(config.optim.num_steps), int(config.hyper.interval)
  log_every, eval_every = int(config.train.log_every), int(config.train.eval_every)
  name = ("stl" if float(config.taskgen.aux_weight) == 0 else
          "taskgen" if tg.learnable else "taskgen_fixed")

  state = tg.init()
  copy = lambda s: jax.tree.map(jnp.copy, s)  # survives donation of `state`
  best_state, best_dev, best_step = copy(state), -1.0, 0
  t0 = time.time()
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as mfile:
    for step in range(num_steps):
      state, metrics = tg.lower_step(state)
      if tg.learnable and (step + 1) % interval == 0:
        state, upper = tg.upper_step(state)
        metrics = {**metrics, **upper}
      done = step + 1
      is_eval = done % eval_every == 0 or done == num_steps
      if not (is_eval or done % log_every == 0):
        continue
      record = {"step": done, **_to_host(metrics)}
      if is_eval:
        record.update(tg.evaluate(state, "dev"))
        record["hypergrad_skipped_total"] = int(state.meta_state.num_skipped)
        if record["dev_accuracy"] > best_dev:
          best_state, best_dev, best_step = copy(state), record["dev_accuracy"], done
        rate = done / max(time.time() - t0, 1e-9)
        progress(f"[{name}] step {done}/{num_steps}  loss_main {record['loss_main']:.4f}  "
                 f"loss_aux {record['loss_aux']:.4f}  dev_acc {record['dev_accuracy']:.4f}  "
                 f"best {best_dev:.4f}  {rate:.1f} steps/s")
      mfile.write(json.dumps(record) + "\n")
      mfile.flush()

  data = tg.data
  k = int(config.taskgen.num_subclasses)
  chunk = int(config.data.get("eval_batch_size", 500))
  soft = np.concatenate([
      np.asarray(tg.soft_labels(best_state.labeler, data.dev_images[i:i + chunk],
                                data.dev_labels[i:i + chunk]))
      for i in range(0, len(data.dev_labels), chunk)])
  usage = subclass_usage(soft, data.dev_labels, int(data.num_classes[0]), k)
  summary = {
      "method": name,
      "best_step": best_step,
      "best_dev_accuracy": best_dev,
      **tg.evaluate(best_state, "test"),
      "final_test_accuracy": tg.evaluate(state, "test")["test_accuracy"],
      "hypergrad_applied": int(state.meta_state.num_updates),
      "hypergrad_skipped": int(state.meta_state.num_skipped),
      "dev_subclass_usage": usage.round(4).tolist(),
      "train_seconds": time.time() - t0,
      "steps": num_steps,
  }
  with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary
