"""The multi-task dataset container shared by every data loader.

A multi-task problem is `T` classification tasks, task 0 the *main* task and tasks
`1..T-1` auxiliary, each with its own training images. A task may instead be
multi-label (kind "multilabel", `aux_jax.losses`: L binary labels, e.g. CheXpert's
findings); its label stays one int per image, the bit mask of its positive labels
(bit l ↔ label l, `encode_multilabel` / `decode_multilabel`), so all tasks' labels
keep one padded int array. All splits are host NumPy
arrays, small enough to live on the device whole (batches are gathered there by
index, see `aux_jax.data.sampler`), so a training step never waits on the host.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax.numpy as jnp
import numpy as np


def preprocess(images: jnp.ndarray, mean, std, dtype=jnp.float32) -> jnp.ndarray:
  """Normalises pixels per channel: `x = (images - mean) / std`.

  Args:
    images: `u8[..., H, W, C]` (or any real dtype) pixel values in `[0, 255]`.
    mean: `f32[C]` per-channel mean, in pixel units.
    std: `f32[C]` per-channel standard deviation, in pixel units.
    dtype: output dtype.

  Returns:
    `f32[..., H, W, C]` normalised images.
  """
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return ((jnp.asarray(images, jnp.float32) - mean) / std).astype(dtype)


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of `u8[N, H, W, C]` images (pixel units).

  Accumulates float64 sums over chunks of images, so no float copy of the whole set
  is made.

  Returns:
    `(mean f32[C], std f32[C])`; a zero std (a constant channel) is replaced by 1.
  """
  c = images.shape[-1]
  total = np.zeros(c)
  total_sq = np.zeros(c)
  for i in range(0, len(images), chunk):
    x = np.asarray(images[i : i + chunk], np.float64).reshape(-1, c)
    total += x.sum(axis=0)
    total_sq += np.square(x).sum(axis=0)
  n = images.size // c
  mean = total / n
  std = np.sqrt(np.maximum(total_sq / n - np.square(mean), 0.0))
  std = np.where(std > 0, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


# ImageNet's per-channel mean and std in pixel units (torchvision's Normalize
# constants × 255), for ImageNet-pretrained models.
IMAGENET_MEAN = (255.0 * np.array([0.485, 0.456, 0.406])).astype(np.float32)
IMAGENET_STD = (255.0 * np.array([0.229, 0.224, 0.225])).astype(np.float32)

KINDS = ("classification", "multilabel")
MAX_LABELS = 30  # bits of a multilabel task's int label (int32, sign bit unused)


def encode_multilabel(targets: np.ndarray) -> np.ndarray:
  """``{0,1}[N, L]`` binary targets -> ``i32[N]`` bit masks (bit l = label l)."""
  targets = np.asarray(targets)
  if targets.ndim != 2 or targets.shape[1] > MAX_LABELS:
    raise ValueError(f"multilabel targets must be [N, L] with L <= {MAX_LABELS}, got "
                     f"shape {targets.shape}")
  if not np.all((targets == 0) | (targets == 1)):
    raise ValueError("multilabel targets must be 0 or 1")
  return (targets.astype(np.int64) << np.arange(targets.shape[1])).sum(1).astype(np.int32)


def decode_multilabel(labels, num_labels: int):
  """``int[...]`` bit masks -> ``f32[..., num_labels]`` binary targets (NumPy or JAX)."""
  xp = jnp if isinstance(labels, jnp.ndarray) else np
  bits = xp.minimum(xp.arange(num_labels), MAX_LABELS)  # labels past L are masked anyway
  return ((labels[..., None] >> bits) & 1).astype(xp.float32)


def pad_tasks(
    images: list[np.ndarray], labels: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Stacks per-task arrays of different lengths, zero-padding to the longest.

  Args:
    images: `T` arrays `u8[N_t, H, W, C]`.
    labels: `T` arrays `int[N_t]`.

  Returns:
    `(images u8[T, N_max, H, W, C], labels i32[T, N_max], counts i32[T])`.
  """
  if len(images) != len(labels) or not images:
    raise ValueError(f"need one label array per task, got {len(images)} and {len(labels)}")
  counts = np.array([len(x) for x in images], np.int32)
  n_max = int(counts.max())
  shape = images[0].shape[1:]
  out_x = np.zeros((len(images), n_max) + shape, np.uint8)
  out_y = np.zeros((len(images), n_max), np.int32)
  for t, (x, y) in enumerate(zip(images, labels)):
    if len(x) != len(y):
      raise ValueError(f"task {t}: {len(x)} images but {len(y)} labels")
    out_x[t, : len(x)] = x
    out_y[t, : len(y)] = y
  return out_x, out_y, counts


# eq=False: the fields are arrays, whose `==` is elementwise.
@dataclasses.dataclass(frozen=True, eq=False)
class MultiTaskData:
  """All splits of a multi-task classification problem, as host NumPy arrays.

  Task 0 is the main task. Training images are per task, zero-padded to the largest
  task (`N_max`); only the first `train_counts[t]` rows of task `t` are real. Every
  task's head has `max(num_classes)` outputs; logits at indices `>= num_classes[t]`
  are masked by the loss (`aux_jax.losses.masked_cross_entropy`).

  Attributes:
    train_images: `u8[T, N_max, H, W, C]`.
    train_labels: `i32[T, N_max]` (0 in padding rows).
    train_counts: `i32[T]` valid rows per task.
    num_classes: `i32[T]` classes per task.
    dev_images: `u8[N_dev, H, W, C]` main-task held-out set (disjoint from training),
      the upper-level objective of bi-level methods and the model-selection set.
    dev_labels: `i32[N_dev]`.
    test_images: `u8[N_test, H, W, C]` main-task test set.
    test_labels: `i32[N_test]`.
    task_names: `T` names, task 0 the main task.
    mean: `f32[C]` per-channel normalisation mean, in pixel (0..255) units.
    std: `f32[C]` per-channel normalisation std, in pixel units.
    meta_images, meta_labels: optional main-task set for the upper-level objective
      only (AuxiLearn's meta-validation split; carried into `SharedInputData` by
      `aux_jax.data.shared_input.with_subclass_task`); None: dev serves both.
    task_kinds: `T` kinds from `KINDS` (None: all "classification"); a "multilabel"
      task's `num_classes` is its number of labels L and its labels (train, and dev
      and test for the main task) are bit masks in [0, 2^L).
    task_heads: `T` head indices, the classifier each task is trained through (None:
      task t through head t). A task may share the head of an earlier task that has
      the same classes and kind, e.g. more labels for the main task from another
      source (`task_heads[t] = 0`); ``task_heads[0]`` is 0.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  train_counts: np.ndarray
  num_classes: np.ndarray
  dev_images: np.ndarray
  dev_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  task_names: tuple[str, ...]
  mean: np.ndarray
  std: np.ndarray
  meta_images: Optional[np.ndarray] = None
  meta_labels: Optional[np.ndarray] = None
  task_kinds: Optional[tuple] = None
  task_heads: Optional[tuple] = None

  @property
  def heads(self) -> tuple[int, ...]:
    """The `T` head indices (`task_heads`, or task t through head t)."""
    return tuple(int(h) for h in (self.task_heads or range(self.num_tasks)))

  @property
  def kinds(self) -> tuple[str, ...]:
    """The `T` task kinds ("classification" unless `task_kinds` says otherwise)."""
    return tuple(self.task_kinds or ("classification",) * self.num_tasks)

  @property
  def num_tasks(self) -> int:
    return int(self.train_images.shape[0])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """`(H, W, C)`."""
    return tuple(self.train_images.shape[2:])

  @property
  def num_classes_max(self) -> int:
    return int(np.max(self.num_classes))

  def preprocess(self, images: jnp.ndarray, dtype=jnp.float32) -> jnp.ndarray:
    """`preprocess(images, self.mean, self.std)`: `u8[..., H, W, C] -> f32[..., H, W, C]`."""
    return preprocess(images, self.mean, self.std, dtype)

  def validate(self) -> "MultiTaskData":
    """Checks shapes, dtypes and label ranges; returns `self` or raises ValueError."""

    def fail(msg):
      raise ValueError(f"invalid MultiTaskData: {msg}")

    x, y, n = self.train_images, self.train_labels, self.train_counts
    if x.ndim != 5 or x.dtype != np.uint8:
      fail(f"train_images must be u8[T, N_max, H, W, C], got {x.dtype}{list(x.shape)}")
    t_, n_max = x.shape[:2]
    hwc = x.shape[2:]
    if y.shape != (t_, n_max) or not np.issubdtype(y.dtype, np.integer):
      fail(f"train_labels must be int[{t_}, {n_max}], got {y.dtype}{list(y.shape)}")
    for name, arr in (("train_counts", n), ("num_classes", self.num_classes)):
      if arr.shape != (t_,) or not np.issubdtype(arr.dtype, np.integer):
        fail(f"{name} must be int[{t_}], got {arr.dtype}{list(arr.shape)}")
    if len(self.task_names) != t_:
      fail(f"{len(self.task_names)} task_names for {t_} tasks")
    if np.any(n < 1) or np.any(n > n_max):
      fail(f"train_counts {n.tolist()} must lie in [1, {n_max}]")
    if np.any(self.num_classes < 2):
      fail(f"num_classes {self.num_classes.tolist()} must be >= 2")
    kinds = self.kinds
    if len(kinds) != t_ or any(k not in KINDS for k in kinds):
      fail(f"task_kinds {kinds} must be {t_} of {KINDS}")
    if any(k == "multilabel" and c > MAX_LABELS for k, c in zip(kinds, self.num_classes)):
      fail(f"a multilabel task has at most {MAX_LABELS} labels")
    heads = self.heads
    if len(heads) != t_ or heads[0] != 0:
      fail(f"task_heads {heads} must be {t_} head indices with task_heads[0] = 0")
    for t, h in enumerate(heads):
      if not 0 <= h <= t or (h != t and heads[h] != h):
        fail(f"task {t} ({self.task_names[t]}) must use its own head or the own head "
             f"of an earlier task, got head {h}")
      if (kinds[t], self.num_classes[t]) != (kinds[h], self.num_classes[h]):
        fail(f"task {t} ({self.task_names[t]}) shares head {h} but not its classes "
             f"and kind")
    # Labels lie in [0, high[t]): C classes, or 2^L bit masks of a multilabel task.
    high = [2 ** int(c) if k == "multilabel" else int(c)
            for k, c in zip(kinds, self.num_classes)]
    for t in range(t_):
      yt = y[t, : n[t]]
      if yt.size and (yt.min() < 0 or yt.max() >= high[t]):
        fail(f"task {t} ({self.task_names[t]}) labels outside [0, {high[t]})")
    for split in ("dev", "test"):
      xs, ys = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
      if xs.dtype != np.uint8 or xs.shape[1:] != hwc or xs.shape[0] < 1:
        fail(f"{split}_images must be u8[N, {', '.join(map(str, hwc))}], got "
             f"{xs.dtype}{list(xs.shape)}")
      if ys.shape != xs.shape[:1] or not np.issubdtype(ys.dtype, np.integer):
        fail(f"{split}_labels must be int[{xs.shape[0]}], got {ys.dtype}{list(ys.shape)}")
      if ys.min() < 0 or ys.max() >= high[0]:
        fail(f"{split} labels outside [0, {high[0]}) of the main task")
    for name in ("mean", "std"):
      v = getattr(self, name)
      if np.shape(v) != (hwc[-1],):
        fail(f"{name} must be f32[{hwc[-1]}], got shape {np.shape(v)}")
    if np.any(np.asarray(self.std) <= 0):
      fail("std must be positive")
    return self
