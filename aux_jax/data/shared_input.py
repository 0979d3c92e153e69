"""The container of multi-task problems whose tasks share their inputs.

In `MultiTaskData` every task has its own images (MAOAL's CIFAR-100/20). Here every
example has one input and a target for *every* task: toy regression (SLGrad),
CIFAR-10 one-vs-rest, Multi-MNIST (left and right digit), NYUv2 (segmentation,
depth, normals). Task 0 is the main task. A training batch is one set of examples,
and each task's per-sample loss is computed on it (`f32[T, B]`).

Task kinds (what a task's target is and how its loss and metrics are computed,
see `aux_jax.losses`):

=================  ==========================  =====================================
kind               target (per example)        loss / main metric
=================  ==========================  =====================================
"classification"   int[]  in [0, C)            cross-entropy / accuracy
"regression"       f32[D]                      squared error summed over D / MSE
"segmentation"     int[H, W], −1 = ignore      per-pixel CE / mIoU, pixel accuracy
"depth"            f32[H, W, 1], 0 = missing   L1 on valid pixels / abs., rel. error
"normal"           f32[H, W, 3], 0 = missing   1 − cos on valid pixels / angle error
"soft_classification" f32[C], a distribution   soft cross-entropy / agreement of modes
"multilabel"       f32[L] in {0, 1}            mean BCE over labels / mean ROC AUC
=================  ==========================  =====================================
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax.numpy as jnp
import numpy as np

from aux_jax.data.multitask import preprocess

TASK_KINDS = ("classification", "regression", "segmentation", "depth", "normal",
              "soft_classification", "multilabel")
DENSE_KINDS = ("segmentation", "depth", "normal")


def _target_shape(kind: str, num_outputs: int, spatial: tuple) -> tuple:
  if kind == "classification":
    return ()
  if kind in ("regression", "soft_classification", "multilabel"):
    return (num_outputs,)
  if kind == "segmentation":
    return spatial
  return spatial + (num_outputs,)


# eq=False: the fields are arrays, whose `==` is elementwise.
@dataclasses.dataclass(frozen=True, eq=False)
class SharedInputData:
  """All splits of a multi-task problem with one input per example, host arrays.

  Attributes:
    train_inputs: `u8[N, H, W, C]` images (normalised by `mean`/`std`) or
      `f32[N, ...]` features (used as they are when `mean` is None).
    train_targets: `T` arrays, task `t`'s targets `[N, ...]` (shapes in the module
      docstring).
    dev_inputs, dev_targets: the held-out set (disjoint from training): the
      upper-level objective of bi-level methods (task 0's loss) and the
      model-selection set.
    test_inputs, test_targets: the test set.
    task_names: `T` names, task 0 the main task.
    task_kinds: `T` kinds from `TASK_KINDS`.
    num_outputs: `T` output sizes: classes for classification/segmentation, target
      dimension for regression, 1 for depth, 3 for normals.
    mean, std: `f32[C]` per-channel normalisation of u8 images, pixel units; None
      for float inputs.
    train_info: optional per-training-example metadata, each `[N]` (e.g. "noisy":
      which main-task labels were corrupted; used by analyses, never by training).
    meta_inputs, meta_targets: optional separate held-out set for the upper-level
      objective only (AuxiLearn's "meta-validation" split, disjoint from train and
      dev); None: the dev set serves both.
  """

  train_inputs: np.ndarray
  train_targets: tuple
  dev_inputs: np.ndarray
  dev_targets: tuple
  test_inputs: np.ndarray
  test_targets: tuple
  task_names: tuple
  task_kinds: tuple
  num_outputs: tuple
  mean: Optional[np.ndarray] = None
  std: Optional[np.ndarray] = None
  train_info: dict = dataclasses.field(default_factory=dict)
  meta_inputs: Optional[np.ndarray] = None
  meta_targets: Optional[tuple] = None

  @property
  def num_tasks(self) -> int:
    return len(self.task_names)

  @property
  def input_shape(self) -> tuple:
    """One example's input shape (`(H, W, C)` for images)."""
    return tuple(self.train_inputs.shape[1:])

  @property
  def num_outputs_max(self) -> int:
    return int(max(self.num_outputs))

  def preprocess(self, inputs: jnp.ndarray, dtype=jnp.float32) -> jnp.ndarray:
    """Normalised u8 images (`mean`/`std`), or float inputs cast to ``dtype``."""
    if self.mean is None:
      return jnp.asarray(inputs, dtype)
    return preprocess(inputs, self.mean, self.std, dtype)

  def validate(self) -> "SharedInputData":
    """Checks shapes, kinds and label ranges; returns `self` or raises ValueError."""

    def fail(msg):
      raise ValueError(f"invalid SharedInputData: {msg}")

    t_ = len(self.task_names)
    for name in ("task_kinds", "num_outputs"):
      if len(getattr(self, name)) != t_:
        fail(f"{len(getattr(self, name))} {name} for {t_} tasks")
    bad = [k for k in self.task_kinds if k not in TASK_KINDS]
    if bad:
      fail(f"unknown task kinds {bad}; known: {', '.join(TASK_KINDS)}")
    if t_ < 1:
      fail("need at least one task")
    x = self.train_inputs
    if self.mean is None:
      if not np.issubdtype(x.dtype, np.floating):
        fail(f"float inputs are needed when mean is None, got {x.dtype}")
    else:
      if x.dtype != np.uint8 or x.ndim != 4:
        fail(f"images must be u8[N, H, W, C], got {x.dtype}{list(x.shape)}")
      for name in ("mean", "std"):
        if np.shape(getattr(self, name)) != (x.shape[-1],):
          fail(f"{name} must be f32[{x.shape[-1]}], got {np.shape(getattr(self, name))}")
      if np.any(np.asarray(self.std) <= 0):
        fail("std must be positive")
    spatial = tuple(x.shape[1:3]) if x.ndim == 4 else ()
    splits = ("train", "dev", "test") + (("meta",) if self.meta_inputs is not None else ())
    for split in splits:
      xs, ys = getattr(self, f"{split}_inputs"), getattr(self, f"{split}_targets")
      if xs.shape[1:] != x.shape[1:] or xs.dtype != x.dtype or len(xs) < 1:
        fail(f"{split}_inputs must be {x.dtype}[N, {', '.join(map(str, x.shape[1:]))}], "
             f"got {xs.dtype}{list(xs.shape)}")
      if len(ys) != t_:
        fail(f"{split}_targets has {len(ys)} arrays for {t_} tasks")
      for t, (kind, c, y) in enumerate(zip(self.task_kinds, self.num_outputs, ys)):
        want = (len(xs),) + _target_shape(kind, c, spatial)
        if kind in DENSE_KINDS and not spatial:
          fail(f"task {t} ({self.task_names[t]}) is {kind} but the inputs are not images")
        if np.shape(y) != want:
          fail(f"{split} targets of task {t} ({self.task_names[t]}, {kind}) must have "
               f"shape {list(want)}, got {list(np.shape(y))}")
        if kind in ("classification", "segmentation"):
          if not np.issubdtype(np.asarray(y).dtype, np.integer):
            fail(f"{split} targets of task {t} must be integers")
          low = -1 if kind == "segmentation" else 0
          if y.size and (y.min() < low or y.max() >= c):
            fail(f"{split} targets of task {t} ({self.task_names[t]}) outside "
                 f"[{low}, {c})")
          if c < 2:
            fail(f"task {t} ({self.task_names[t]}) needs >= 2 classes, got {c}")
        if kind == "multilabel" and not np.all((np.asarray(y) == 0) | (np.asarray(y) == 1)):
          fail(f"{split} targets of task {t} ({self.task_names[t]}) must be 0 or 1")
        if kind == "soft_classification" and len(y) and (
            np.min(y) < 0 or not np.allclose(np.sum(y, -1), 1.0, atol=1e-4)):
          fail(f"{split} targets of task {t} ({self.task_names[t]}) must be "
               "distributions (non-negative rows summing to 1)")
    for name, v in self.train_info.items():
      if len(v) != len(x):
        fail(f"train_info[{name!r}] has {len(v)} entries for {len(x)} examples")
    return self


def with_subclass_task(data, num_subclasses: int, name: str = "subclasses"
                       ) -> SharedInputData:
  """A single-task image dataset with AuxiLearn's generated auxiliary task added.

  Task 0 is the dataset's task (C classes); task 1 (``name``, kind
  "soft_classification", C·k outputs) predicts a distribution over the k sub-classes
  of each image's class (class-major: sub-class j of class c is output c·k + j). Its
  stored targets are uniform over the image's own k sub-classes (a labeler that knows
  nothing); `aux_jax.methods.taskgen` replaces them with a learned labeler's.

  Args:
    data: `MultiTaskData` with one task (e.g. ``cifar10``, ``oxford_pet``).
    num_subclasses: k >= 1.

  Raises:
    ValueError: more than one task, or k < 1.
  """
  if data.num_tasks != 1:
    raise ValueError(f"a generated sub-class task needs a single-task dataset; got "
                     f"{data.num_tasks} tasks ({', '.join(data.task_names)})")
  k = int(num_subclasses)
  if k < 1:
    raise ValueError(f"num_subclasses (k) must be >= 1, got {num_subclasses}")
  c = int(data.num_classes[0])

  def uniform(labels):
    q = np.zeros((len(labels), c, k), np.float32)
    q[np.arange(len(labels)), labels] = 1.0 / k
    return q.reshape(len(labels), c * k)

  n = int(data.train_counts[0])
  x, y = data.train_images[0, :n], data.train_labels[0, :n]
  meta = {} if data.meta_images is None else dict(
      meta_inputs=data.meta_images,
      meta_targets=(data.meta_labels, uniform(data.meta_labels)))
  return SharedInputData(
      train_inputs=x, train_targets=(y, uniform(y)),
      dev_inputs=data.dev_images, dev_targets=(data.dev_labels, uniform(data.dev_labels)),
      test_inputs=data.test_images,
      test_targets=(data.test_labels, uniform(data.test_labels)),
      task_names=(data.task_names[0], name), task_kinds=("classification",
                                                          "soft_classification"),
      num_outputs=(c, c * k), mean=data.mean, std=data.std, **meta).validate()
