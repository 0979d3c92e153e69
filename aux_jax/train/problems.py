"""Problems: how a dataset and a backbone turn a step into losses, and into metrics.

`build_experiment` is the same for every dataset; what differs is in a `Problem`:

* `separate_tasks` (`MultiTaskData`, MAOAL's setting): every task has its own images
  and its own batch; BatchNorm statistics per task chunk; classification or
  multi-label tasks (ATTITTUD's CheXpert).
* `shared_input` (`SharedInputData`): one batch of examples, every task's loss on it
  (toy regression, one-vs-rest CIFAR-10, Multi-MNIST, NYUv2), any task kind of
  `aux_jax.losses`.

Both build the batches of step `s` inside the jitted step from device-resident data,
as pure functions of `(seed, s)`. Given a mesh (`aux_jax.sharding`), the data
is replicated on every device and the gathered batches are split over the ``"data"``
axis on their batch axis (the dev batch too when it divides over the devices;
otherwise every device computes it whole).

The upper step's batches (``losses_at(..., upper=True)``) follow three options, all
pure functions of the step (`upper_options`): ``hyper.dev_bn`` (the dev loss with
BatchNorm in eval mode, or in train mode with batch statistics; then
`LossFns.dev_stats` gives the running statistics that forward leaves),
``data.augment_dev`` (the dev batch augmented like a training batch) and
``hyper.train_term`` (G on the last lower step's batch, or on a fresh training batch).
The lower step's `LossFns` (``upper=False``; its dev loss is read by e.g. SLGrad)
never follow them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from aux_jax import losses as task_losses
from aux_jax import sharding
from aux_jax.data import augment, sampler
from aux_jax.data.multitask import MultiTaskData, decode_multilabel
from aux_jax.data.shared_input import SharedInputData
from aux_jax.methods import LossFns, TaskSpec
from aux_jax.models.heads import apply_head, apply_heads, apply_heads_shared, init_heads
from aux_jax.models.multitask import multitask_features, single_features

PyTree = Any


# Tag of the main task's independent sampler stream (`fresh_main_indices`): folded into
# the data key, where the step's batches fold task ids 0..T-1.
_FRESH = 0x6D61696E
# fold_in(fold_in(step_key, step), ·) constants of a step's keys: 1 the method's
# (aux_jax.train.experiment), 2 the upper step's (`upper_keys`), 3 dropout's.
_DROPOUT = 3


def fresh_main_indices(keys, step, count, n: int, n_max: int) -> jax.Array:
  """Rows i32[n] of the main task drawn independently of the step's batch: epochs of
  permutations (`sampler.pool_batch_indices`) on a stream of their own."""
  return sampler.pool_batch_indices(jax.random.fold_in(keys.data, _FRESH), step, count,
                                    n, n_max)


class Keys(NamedTuple):
  """The experiment's PRNG keys, all split from the config's seed."""

  init: jax.Array
  data: jax.Array
  dev: jax.Array
  step: jax.Array


class Problem(NamedTuple):
  """What the trainer needs from a (dataset, backbone) pair.

  Attributes:
    num_tasks: T.
    task_names: T names, task 0 the main task.
    spec: the tasks' names, kinds, output sizes and input shape (for methods).
    variables: the backbone's initial variables ({"params", "batch_stats"?}).
    init_heads: ``key -> heads`` (stacked per-task heads, `aux_jax.models.heads`).
    losses_at: ``(batch_stats, step, upper=False) -> LossFns`` of the batches of
      ``step``; ``upper=True``: the upper step's (`UpperOptions`).
    evaluate: ``(params, batch_stats, split) -> {f"{split}_{metric}": float}``;
      main-task metrics unprefixed, auxiliary ones as f"{split}_{task}_{metric}".
    select: the default dev metric for model selection (higher is better).
  """

  num_tasks: int
  task_names: tuple
  spec: TaskSpec
  variables: dict
  init_heads: Callable[[jax.Array], dict]
  losses_at: Callable[..., LossFns]
  evaluate: Callable[[PyTree, PyTree, str], dict]
  select: str


def _variables(params, batch_stats) -> dict:
  v = {"params": params["backbone"]}
  if batch_stats:
    v["batch_stats"] = batch_stats
  return v


def _padded_batches(arrays: list[np.ndarray], batch: int):
  """Yields `(slices of arrays, f32[batch] mask)`, zero-padding the last batch."""
  n = len(arrays[0])
  for i in range(0, n, batch):
    chunk = [a[i:i + batch] for a in arrays]
    pad = batch - len(chunk[0])
    mask = np.concatenate([np.ones(len(chunk[0]), np.float32), np.zeros(pad, np.float32)])
    if pad:
      chunk = [np.concatenate([c, np.zeros((pad,) + c.shape[1:], c.dtype)]) for c in chunk]
    yield chunk, mask


def _eval_batch(cfg, mesh) -> int:
  """``data.eval_batch_size`` rounded up to split over the mesh (padding is masked)."""
  b = cfg.data.get("eval_batch_size", 500)
  n = 1 if mesh is None else mesh.shape[sharding.DATA_AXIS]
  return -(-b // n) * n


def _feature_dim(backbone, variables, x) -> int:
  return jax.eval_shape(lambda v: backbone.apply(v, x, train=False), variables).shape[-1]


def _dev_batch(cfg, n_dev: int) -> int:
  """``data.dev_batch_size``, where 0 means the whole dev split every step (SLGrad's toy)."""
  size = int(cfg.data.dev_batch_size)
  return n_dev if size == 0 else size


DEV_BN = ("eval", "train")
AUX_HEADS = ("own", "shifted")
TRAIN_TERMS = ("lower", "fresh")


class UpperOptions(NamedTuple):
  """How the upper step's batches are made (config ``hyper.dev_bn``,
  ``hyper.train_term``, ``data.augment_dev``; library defaults eval, lower, False)."""

  dev_bn: str = "eval"
  train_term: str = "lower"
  augment_dev: bool = False


def upper_options(cfg) -> UpperOptions:
  """The `UpperOptions` of a config (missing fields: the library defaults).

  Raises:
    ValueError: an unknown ``hyper.dev_bn`` or ``hyper.train_term``.
  """
  o = UpperOptions(dev_bn=cfg.hyper.get("dev_bn", "eval"),
                   train_term=cfg.hyper.get("train_term", "lower"),
                   augment_dev=bool(cfg.data.get("augment_dev", False)))
  if o.dev_bn not in DEV_BN:
    raise ValueError(f"hyper.dev_bn must be one of {DEV_BN}, got {o.dev_bn!r}")
  if o.train_term not in TRAIN_TERMS:
    raise ValueError(f"hyper.train_term must be one of {TRAIN_TERMS}, got {o.train_term!r}")
  return o


def upper_keys(step_key, step):
  """The upper step's own keys at ``step``: ``(fresh batch order, fresh batch
  augmentation, dev augmentation)``, split from ``fold_in(fold_in(step_key, step), 2)``
  (the lower step uses ``fold_in(step_key, step)`` for its augmentation and
  ``fold_in(…, 1)`` for its method), so they are functions of the step."""
  return tuple(jax.random.split(jax.random.fold_in(jax.random.fold_in(step_key, step), 2), 3))


def augment_then_preprocess(data, images, key, augment_on: bool, pad: int, dtype,
                            crop: int = 0):
  """Training images ``[..., H, W, C]`` (raw pixels) → random crop/flip (if
  ``augment_on``) → ``data.preprocess`` (normalise). The crop pads the raw pixels with
  0, i.e. black, as torchvision's ``RandomCrop(padding=4)`` on the uint8 image in the
  originals; padding after normalisation would pad with the mean colour.

  ``crop`` = S > 0 (config ``data.crop_size``): the window is S × S (AuxiLearn's Pet:
  images stored at 256, ``RandomCrop(224)``), and without ``augment_on`` the centre
  S × S (`eval_view`)."""
  if augment_on:  # every image its own offsets and flip (leading axes flattened)
    images = augment.random_crop_flip(key, images, pad=pad, size=crop or None)
  elif crop:
    images = augment.center_crop(images, crop)
  return data.preprocess(images, dtype)


def _crop(cfg) -> int:
  """``data.crop_size`` (0: images used at their stored size)."""
  return int(cfg.data.get("crop_size", 0) or 0)


def eval_view(images, crop: int):
  """Images the model sees outside training: the centre ``crop`` × ``crop`` window
  (torchvision's ``CenterCrop``), or the images as stored when ``crop`` = 0."""
  return augment.center_crop(images, crop) if crop else images


def separate_tasks(cfg, data: MultiTaskData, backbone, dtype, keys: Keys,
                   mesh=None) -> Problem:
  """The problem of `MultiTaskData`: T tasks (classification or multi-label), each with
  its own images."""
  data.validate()
  num_tasks = data.num_tasks
  kinds = data.kinds
  main_kind = kinds[0]
  multilabel = np.array([k == "multilabel" for k in kinds])
  c_max = data.num_classes_max

  def class_losses(logits, labels, ncls, ml):
    """Per-sample losses of ``labels`` int[...] (bit masks where ``ml``), logits
    f32[..., C_max]; ``ncls`` and ``ml`` broadcast against ``labels``."""
    if not multilabel.any():
      return task_losses.masked_cross_entropy(logits, labels, ncls)
    ce = task_losses.masked_cross_entropy(logits, jnp.where(ml, 0, labels), ncls)
    bce = task_losses.multilabel_bce(logits, decode_multilabel(labels, c_max), ncls)
    return jnp.where(ml, bce, ce)

  batch = cfg.data.batch_size
  dev_batch = _dev_batch(cfg, len(data.dev_labels))
  sampler.check_batch_size(data.train_counts, batch)
  sampler.check_batch_size([len(data.dev_labels)], dev_batch, "the dev set")
  n_max, n_dev = data.train_images.shape[1], len(data.dev_labels)
  # Device-resident data: batches are gathered inside the jitted steps.
  train_x, train_y, counts, num_classes, dev_x, dev_y = sharding.put_replicated(
      (data.train_images, data.train_labels, data.train_counts, data.num_classes,
       data.dev_images, data.dev_labels), mesh)
  shard_dev = sharding.divides(mesh, dev_batch)
  bn_stats = cfg.model.get("bn_stats", "main")  # chunks updating running statistics
  ml = jnp.asarray(multilabel)
  opts = upper_options(cfg)
  # The head each task is trained through: its data's (`MultiTaskData.task_heads`:
  # its own, or the main task's for more labels of the main task), or the original
  # MAOAL's indexing ("shifted": auxiliary task k = 1..K through head k − 1, so the
  # first auxiliary task shares the main head and head K is never used;
  # M:train.py:227, 284).
  aux_heads = cfg.model.get("aux_heads", "own")
  if aux_heads not in AUX_HEADS:
    raise ValueError(f"model.aux_heads must be one of {AUX_HEADS}, got {aux_heads!r}")
  heads_of = (data.heads if aux_heads == "own"
              else (0,) + tuple(t - 1 for t in range(1, num_tasks)))
  head_of = jnp.asarray(heads_of, jnp.int32)
  own_heads = heads_of == tuple(range(num_tasks))
  used_heads = (lambda heads: heads) if own_heads else (
      lambda heads: jax.tree.map(lambda h: h[head_of], heads))

  crop = _crop(cfg)
  x0 = eval_view(jnp.zeros((2,) + data.image_shape, dtype), crop)
  variables = backbone.init(keys.init, x0, train=False)
  per_task_mode = cfg.method.get("per_task_grads", "auto")
  feat_dim = _feature_dim(backbone, variables, x0)

  def losses_at(batch_stats, step, upper: bool = False) -> LossFns:
    k_fresh, k_fresh_aug, k_dev_aug = upper_keys(keys.step, step)
    if upper and opts.train_term == "fresh":
      # The first batch of a fresh per-task order (the original draws one from a new
      # iterator of its shuffled loader), augmented with its own key.
      idx = sampler.task_batch_indices(k_fresh, 0, counts, batch, n_max)
      aug_key = k_fresh_aug
    else:
      idx = sampler.task_batch_indices(keys.data, step, counts, batch, n_max)
      aug_key = jax.random.fold_in(keys.step, step)
    images, labels = sampler.gather_task_batch(train_x, train_y, idx)
    images, labels = sharding.shard_batch((images, labels), mesh, axis=1)  # [T, B, ...]
    images = augment_then_preprocess(data, images, aug_key,
                                     cfg.data.augment, cfg.data.crop_pad, dtype, crop)
    didx = sampler.pool_batch_indices(keys.dev, step, n_dev, dev_batch)
    dimages, dlabels = dev_x[didx], dev_y[didx]
    if shard_dev:
      dimages, dlabels = sharding.shard_batch((dimages, dlabels), mesh)
    dimages = augment_then_preprocess(data, dimages, k_dev_aug, upper and opts.augment_dev,
                                      cfg.data.crop_pad, dtype, crop)
    dev_train = upper and opts.dev_bn == "train"

    # Dropout (a backbone with dropout > 0): one key per step, task t's chunk split(·)[t].
    dkey = jax.random.fold_in(jax.random.fold_in(keys.step, step), _DROPOUT)

    def per_sample(params, targets=None, layer_scales=None, dropout=True):
      feats, new_stats = multitask_features(
          backbone, _variables(params, batch_stats), images, train=True,
          layer_scales=layer_scales, bn_stats=bn_stats,
          dropout_key=dkey if dropout else None)
      logits = apply_heads(used_heads(params["heads"]), feats.astype(jnp.float32))
      y = labels if targets is None else targets
      return class_losses(logits, y, num_classes[:, None], ml[:, None]), new_stats

    def one_task(params, t):  # task t's chunk alone: as row t of per_sample
      feats, new_stats = single_features(
          backbone, _variables(params, batch_stats), images[t], train=True,
          dropout_key=jax.random.split(dkey, num_tasks)[t])
      logits = apply_head(params["heads"], head_of[t], feats.astype(jnp.float32))
      return class_losses(logits, labels[t], num_classes[t], ml[t]), new_stats

    def per_task(stacked):  # every leaf [T, ...]: task t uses its own copy
      feats, new_stats = multitask_features(
          backbone, _variables(stacked, batch_stats), images, train=True, stacked=True,
          bn_stats=bn_stats, dropout_key=dkey)
      heads = jax.tree.map(lambda h: jax.vmap(lambda x, i: x[i])(h, head_of),
                           stacked["heads"])
      logits = apply_heads(heads, feats.astype(jnp.float32))
      return class_losses(logits, labels, num_classes[:, None], ml[:, None]), new_stats

    def dev_forward(params):
      feats, new_stats = single_features(backbone, _variables(params, batch_stats),
                                         dimages, train=dev_train)
      logits = apply_head(params["heads"], 0, feats.astype(jnp.float32))
      loss = jnp.mean(class_losses(logits, dlabels, num_classes[0], multilabel[0]))
      return loss, new_stats

    def main_fresh(params, n: int):  # n main examples of their own stream
      fidx = fresh_main_indices(keys, step, counts[0], n, n_max)
      fx, fy = train_x[0][fidx], train_y[0][fidx]
      if sharding.divides(mesh, n):
        fx, fy = sharding.shard_batch((fx, fy), mesh)
      fx = augment_then_preprocess(
          data, fx, jax.random.fold_in(jax.random.fold_in(keys.step, step), _FRESH),
          cfg.data.augment, cfg.data.crop_pad, dtype, crop)
      feats, new_stats = single_features(
          backbone, _variables(params, batch_stats), fx, train=True,
          dropout_key=jax.random.fold_in(dkey, _FRESH))
      logits = apply_head(params["heads"], 0, feats.astype(jnp.float32))
      return class_losses(logits, fy, num_classes[0], ml[0]), new_stats

    return LossFns(per_sample=per_sample, dev=lambda params: dev_forward(params)[0],
                   per_task=per_task, one_task=one_task,
                   scaled=lambda params, scales: per_sample(params, layer_scales=scales),
                   per_task_grads=per_task_mode, inputs=images,
                   targets=labels,
                   per_sample_no_dropout=lambda params: per_sample(params, dropout=False),
                   dev_stats=(lambda params: dev_forward(params)[1]) if dev_train else None,
                   main_fresh=main_fresh)

  eval_batch = _eval_batch(cfg, mesh)

  @jax.jit
  def _stats(params, batch_stats, images, labels, mask):
    images, labels, mask = sharding.shard_batch((images, labels, mask), mesh)
    feats = backbone.apply(_variables(params, batch_stats),
                           data.preprocess(eval_view(images, crop), dtype), train=False)
    logits = apply_head(params["heads"], 0, feats.astype(jnp.float32))
    target = (decode_multilabel(labels, int(data.num_classes[0]))
              if main_kind == "multilabel" else labels)
    return task_losses.eval_stats(main_kind, logits, target, int(data.num_classes[0]), mask)

  def evaluate(params, batch_stats, split: str) -> dict:
    if split not in ("dev", "test"):
      raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    sharding.wait_on_cpu((params, batch_stats), mesh)
    arrays = [getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")]
    total = None
    for (x, y), mask in _padded_batches(arrays, eval_batch):
      s = sharding.wait_on_cpu(_stats(params, batch_stats, x, y, mask), mesh)
      total = task_losses.accumulate(total, s)
    metrics = task_losses.finalize_stats(main_kind, total)
    return {f"{split}_{k}": v for k, v in metrics.items()}

  spec = TaskSpec(tuple(data.task_names), kinds,
                  tuple(int(c) for c in data.num_classes), tuple(data.image_shape),
                  # "shifted" reproduces an indexing defect whose heads the original
                  # trains at fixed weights: methods see task-specific heads.
                  heads=heads_of if aux_heads == "own" else None)
  return Problem(
      num_tasks=num_tasks, task_names=tuple(data.task_names), spec=spec,
      variables=variables,
      init_heads=lambda key: init_heads(key, num_tasks, feat_dim, data.num_classes_max,
                                        hidden=cfg.model.get("head_hidden", 0)),
      losses_at=losses_at, evaluate=evaluate, select=task_losses.default_select(main_kind))


def shared_input(cfg, data: SharedInputData, backbone, dtype, keys: Keys,
                 mesh=None) -> Problem:
  """The problem of `SharedInputData`: one batch, every task's loss on it."""
  data.validate()
  num_tasks = data.num_tasks
  kinds, outs = tuple(data.task_kinds), tuple(int(c) for c in data.num_outputs)
  batch = cfg.data.batch_size
  # The upper-level objective's set: a separate meta-validation set if the data have
  # one (AuxiLearn's NYUv2), else dev (also the selection set).
  meta = data.meta_inputs is not None
  obj_x, obj_y = ((data.meta_inputs, data.meta_targets) if meta
                  else (data.dev_inputs, data.dev_targets))
  n_train, n_dev = len(data.train_inputs), len(obj_x)
  dev_batch = _dev_batch(cfg, n_dev)
  sampler.check_batch_size([n_train], batch, "the training set")
  sampler.check_batch_size([n_dev], dev_batch,
                           "the meta-validation set" if meta else "the dev set")
  dense = all(k in task_losses.DENSE_KINDS for k in kinds)
  # Focal training and dev losses for classification kinds (AuxiLearn's task
  # generation: γ = 2); evaluation reports the plain cross-entropy.
  gamma = float(cfg.data.get("focal_gamma", 0.0))
  # Dense losses: "ours" or AuxiLearn's "original" arithmetic (aux_jax.losses), whose
  # depth and normal losses are masked by the depth target.
  convention = cfg.data.get("loss_convention", "ours")
  if convention not in task_losses.LOSS_CONVENTIONS:
    raise ValueError(f"data.loss_convention must be one of "
                     f"{task_losses.LOSS_CONVENTIONS}, got {convention!r}")
  depth_task = kinds.index("depth") if "depth" in kinds else None
  if convention == "original" and (depth_task is None or kinds[0] == "normal"):
    raise ValueError("data.loss_convention='original' needs a depth task (its mask) "
                     "and a main task other than normals")
  if cfg.data.augment and (data.mean is None or any(k in task_losses.DENSE_KINDS
                                                    for k in kinds)):
    raise ValueError("data.augment (random crop and flip) is for image inputs with "
                     "per-image targets; set data.augment=False")
  opts = upper_options(cfg)
  if opts.augment_dev and (data.mean is None or any(k in task_losses.DENSE_KINDS
                                                    for k in kinds)):
    raise ValueError("data.augment_dev (random crop and flip) is for image inputs with "
                     "per-image targets; set data.augment_dev=False")
  if cfg.model.get("aux_heads", "own") != "own":
    raise ValueError("model.aux_heads='shifted' (the original MAOAL's head indexing) is "
                     "for data whose tasks have their own images (MultiTaskData)")
  train_x, train_y, dev_x, dev_y0 = sharding.put_replicated(
      (data.train_inputs, tuple(data.train_targets), obj_x, obj_y[0]), mesh)
  shard_dev = sharding.divides(mesh, dev_batch)

  crop = _crop(cfg)
  x0 = data.preprocess(eval_view(jnp.zeros((2,) + data.input_shape, data.train_inputs.dtype),
                                 crop), dtype)
  variables = backbone.init(keys.init, x0, train=False)
  per_task_mode = cfg.method.get("per_task_grads", "auto")
  feat_dim = _feature_dim(backbone, variables, x0)

  def outputs(params, batch_stats, x, train, dropout_key=None):
    feats, new_stats = single_features(backbone, _variables(params, batch_stats), x, train,
                                       dropout_key)
    return apply_heads_shared(params["heads"], feats.astype(jnp.float32)), new_stats

  def losses_at(batch_stats, step, upper: bool = False) -> LossFns:
    k_fresh, k_fresh_aug, k_dev_aug = upper_keys(keys.step, step)
    if upper and opts.train_term == "fresh":
      # The first batch of a fresh order (the originals draw one from a new iterator
      # of their shuffled loader), augmented with its own key.
      idx = sampler.pool_batch_indices(k_fresh, 0, n_train, batch)
      aug_key = k_fresh_aug
    else:
      idx = sampler.pool_batch_indices(keys.data, step, n_train, batch)
      aug_key = jax.random.fold_in(keys.step, step)
    x = sharding.shard_batch(train_x[idx], mesh)
    x = augment_then_preprocess(data, x, aug_key, cfg.data.augment, cfg.data.crop_pad, dtype,
                                crop)
    ys = sharding.shard_batch(tuple(y[idx] for y in train_y), mesh)
    didx = sampler.pool_batch_indices(keys.dev, step, n_dev, dev_batch)
    dx, dy = dev_x[didx], dev_y0[didx]
    if shard_dev:
      dx, dy = sharding.shard_batch((dx, dy), mesh)
    dx = augment_then_preprocess(data, dx, k_dev_aug, upper and opts.augment_dev,
                                 cfg.data.crop_pad, dtype, crop)
    dev_train = upper and opts.dev_bn == "train"

    def mask_of(y):  # the depth mask of the "original" convention
      if convention != "original":
        return None
      return task_losses.depth_mask(y[depth_task])

    dkey = jax.random.fold_in(jax.random.fold_in(keys.step, step), _DROPOUT)

    def per_sample(params, targets=None, dropout=True):
      z, new_stats = outputs(params, batch_stats, x, train=True,
                             dropout_key=dkey if dropout else None)
      y = ys if targets is None else targets
      m = mask_of(y)
      return jnp.stack([task_losses.per_sample_loss(kinds[t], z[t], y[t], outs[t], gamma,
                                                    convention, m)
                        for t in range(num_tasks)]), new_stats

    def per_pixel(params):
      z, new_stats = outputs(params, batch_stats, x, train=True, dropout_key=dkey)
      m = mask_of(ys)
      maps = [task_losses.loss_map(kinds[t], z[t], ys[t], outs[t], convention, m)
              for t in range(num_tasks)]
      return (jnp.stack([m for m, _ in maps]), jnp.stack([v for _, v in maps]),
              new_stats)

    def dev_forward(params):
      z, new_stats = outputs(params, batch_stats, dx, train=dev_train)
      # The main task's convention (segmentation needs no depth mask).
      return (jnp.mean(task_losses.per_sample_loss(
          kinds[0], z[0], dy, outs[0], gamma,
          convention if kinds[0] == "segmentation" else "ours")), new_stats)

    return LossFns(per_sample=per_sample, dev=lambda params: dev_forward(params)[0],
                   per_pixel=per_pixel if dense else None,
                   per_task_grads=per_task_mode, inputs=x, targets=tuple(ys),
                   per_sample_no_dropout=lambda params: per_sample(params, dropout=False),
                   dev_stats=(lambda params: dev_forward(params)[1]) if dev_train else None)

  eval_batch = _eval_batch(cfg, mesh)

  @jax.jit
  def _stats(params, batch_stats, x, ys, mask):
    x, ys, mask = sharding.shard_batch((x, ys, mask), mesh)
    z, _ = outputs(params, batch_stats, data.preprocess(eval_view(x, crop), dtype),
                   train=False)
    return [task_losses.eval_stats(kinds[t], z[t], ys[t], outs[t], mask)
            for t in range(num_tasks)]

  def evaluate(params, batch_stats, split: str) -> dict:
    if split not in ("dev", "test"):
      raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    sharding.wait_on_cpu((params, batch_stats), mesh)
    arrays = [getattr(data, f"{split}_inputs"), *getattr(data, f"{split}_targets")]
    total = None
    for (x, *ys), mask in _padded_batches(arrays, eval_batch):
      s = sharding.wait_on_cpu(_stats(params, batch_stats, x, ys, mask), mesh)
      total = task_losses.accumulate(total, s)
    out = {}
    for t in range(num_tasks):
      prefix = f"{split}_" if t == 0 else f"{split}_{data.task_names[t]}_"
      out.update({prefix + k: v
                  for k, v in task_losses.finalize_stats(kinds[t], total[t]).items()})
    return out

  return Problem(
      num_tasks=num_tasks, task_names=tuple(data.task_names),
      spec=TaskSpec(tuple(data.task_names), kinds, outs, tuple(data.input_shape)),
      variables=variables,
      init_heads=lambda key: init_heads(
          key, num_tasks, feat_dim, max(outs),
          conv3x3=dense and cfg.model.get("dense_head", "1x1") == "3x3_1x1",
          hidden=cfg.model.get("head_hidden", 0)),
      losses_at=losses_at, evaluate=evaluate,
      select=task_losses.default_select(kinds[0]))


def build_problem(cfg, data, backbone, dtype, keys: Keys, mesh=None) -> Problem:
  """`separate_tasks` for `MultiTaskData`, `shared_input` for `SharedInputData`.

  ``mesh``: the data-parallel mesh (`aux_jax.sharding`), or None for the
  default device.
  """
  if isinstance(data, MultiTaskData):
    return separate_tasks(cfg, data, backbone, dtype, keys, mesh)
  if isinstance(data, SharedInputData):
    return shared_input(cfg, data, backbone, dtype, keys, mesh)
  raise TypeError(f"expected MultiTaskData or SharedInputData, got {type(data).__name__}")
