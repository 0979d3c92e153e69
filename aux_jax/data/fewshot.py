"""Few-shot CIFAR-10 as the main task, CIFAR-100 as auxiliary data (ATTITTUD's vision pair).

The substitute, readable from `tensorflow-datasets`, for the low-data setups of
Dery et al. ("Auxiliary Task Update Decomposition", ICLR 2021): a main
task with few labels and a large auxiliary dataset of other classes.

* task 0 ``cifar10``: ``per_class`` labelled CIFAR-10 training images per class
  (10 classes);
* dev ("monitor") set: ``monitor_per_class`` *other* CIFAR-10 training images per
  class, disjoint from task 0's training images (early stopping, model selection);
* test: the whole CIFAR-10 test split (10,000 images);
* task 1 ``cifar100``: CIFAR-100 training images with their 100 fine labels (all
  50,000, or ``aux_per_class`` per class); left out with ``primary_only=True``
  (``T = 1``: the fine-tuning phase, or the primary-only baseline).

Selection (`stratified_split`): for each CIFAR-10 class c in order, a permutation
π_c of its training rows drawn from ``default_rng(seed)``; task 0 takes π_c[:per_class],
the dev set the next ``monitor_per_class``. Task 0's images depend only on
(``seed``, ``per_class``): the same with or without the auxiliary task and for any
monitor size, so the two ATTITTUD phases see the same primary data.

Normalisation: the per-channel mean and std of the whole CIFAR-10 training split
(pixels only, no labels), the same for every setting of this loader, so a model
pretrained with the auxiliary task sees identically normalised inputs when it is
fine-tuned without it.

Data are read through `aux_jax.data.tfds_source` (no TensorFlow); prepare them once
with ``python -m aux_jax.data.prepare cifar10`` and ``... cifar100``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np

from aux_jax.data import tfds_source
from aux_jax.data.multitask import MultiTaskData, channel_stats, pad_tasks

PRIMARY = "cifar10"
PRIMARY_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
# aux name -> (TFDS name, label feature, number of classes).
AUX_SOURCES = {"cifar100": ("cifar100", "label", 100)}


def stratified_split(labels: np.ndarray, num_classes: int,
                     sizes: Sequence[Union[int, Sequence[int]]], seed: int
                     ) -> tuple[np.ndarray, ...]:
  """Seeded disjoint per-class subsets of the rows of ``labels``.

  For each class c = 0..C−1 in order, π_c = ``rng.permutation(rows of class c)``
  with one ``rng = default_rng(seed)``; part j takes the next ``sizes[j][c]`` rows
  of π_c after those of parts 0..j−1. Part j's rows therefore do not depend on the
  sizes of later parts.

  Args:
    labels: ``int[N]`` class of each row, in [0, C).
    num_classes: C.
    sizes: one entry per part: an int (rows per class) or ``int[C]``.
    seed: fixes the permutations.

  Returns:
    One sorted ``i64[·]`` row-index array per part; the parts are disjoint.

  Raises:
    ValueError: a negative size, or a class with fewer rows than its parts need.
  """
  labels = np.asarray(labels)
  table = np.stack([np.broadcast_to(np.asarray(s, np.int64), (num_classes,)) for s in sizes])
  if np.any(table < 0):
    raise ValueError(f"sizes must be >= 0, got {[np.asarray(s).tolist() for s in sizes]}")
  rng = np.random.default_rng(seed)
  parts = [[] for _ in sizes]
  for c in range(num_classes):
    perm = rng.permutation(np.flatnonzero(labels == c))
    need = int(table[:, c].sum())
    if len(perm) < need:
      raise ValueError(f"class {c} has {len(perm)} images, fewer than the {need} asked "
                       f"for ({' + '.join(str(int(n)) for n in table[:, c])})")
    ends = np.cumsum(table[:, c])
    for j, (lo, hi) in enumerate(zip(ends - table[:, c], ends)):
      parts[j].append(perm[lo:hi])
  return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)


def _check_args(per_class, monitor_per_class, aux, aux_per_class):
  if int(per_class) < 1:
    raise ValueError(f"per_class must be >= 1, got {per_class}")
  if int(monitor_per_class) < 1:
    raise ValueError(f"monitor_per_class must be >= 1, got {monitor_per_class}")
  if aux not in AUX_SOURCES:
    raise ValueError(f"unknown aux {aux!r}; known: {', '.join(AUX_SOURCES)}")
  if aux_per_class is not None and int(aux_per_class) < 1:
    raise ValueError(f"aux_per_class must be >= 1 or None, got {aux_per_class}")


def load_cifar10_fewshot(data_dir: Optional[str] = None, per_class: int = 15,
                         monitor_per_class: int = 100, aux: str = "cifar100",
                         primary_only: bool = False, seed: int = 0,
                         aux_per_class: Optional[int] = None) -> MultiTaskData:
  """Few-shot CIFAR-10 (task 0) with CIFAR-100 (task 1) as auxiliary data.

  See the module docstring for the splits.

  Args:
    data_dir: TFDS data directory (default: ``TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).
    per_class: labelled CIFAR-10 training images per class (task 0).
    monitor_per_class: CIFAR-10 training images per class in the dev set.
    aux: the auxiliary dataset: ``"cifar100"`` (100 fine labels).
    primary_only: leave the auxiliary task out (``T = 1``).
    seed: fixes the few-shot and dev subsets (and the auxiliary subset).
    aux_per_class: auxiliary images per class (None: all).

  Returns:
    A validated `MultiTaskData`, ``u8[·, 32, 32, 3]`` images, task names
    ``("cifar10", "cifar100")`` (or ``("cifar10",)``), ``num_classes`` (10, 100).

  Raises:
    DatasetNotPreparedError: a dataset is not prepared (the message says how).
    ValueError: bad arguments, or a class with too few images.
  """
  _check_args(per_class, monitor_per_class, aux, aux_per_class)
  images, labels = tfds_source.load_arrays(PRIMARY, "train", data_dir, ("label",),
                                           IMAGE_SHAPE)
  labels = labels["label"]
  train, dev = stratified_split(labels, PRIMARY_CLASSES,
                                (int(per_class), int(monitor_per_class)), seed)
  test_images, test_labels = tfds_source.load_arrays(PRIMARY, "test", data_dir,
                                                     ("label",), IMAGE_SHAPE)
  mean, std = channel_stats(images)

  task_images, task_labels = [images[train]], [labels[train]]
  names, num_classes = [PRIMARY], [PRIMARY_CLASSES]
  if not primary_only:
    tfds_name, key, aux_classes = AUX_SOURCES[aux]
    aux_images, aux_labels = tfds_source.load_arrays(tfds_name, "train", data_dir, (key,),
                                                     IMAGE_SHAPE)
    aux_labels = aux_labels[key]
    if aux_per_class is not None:
      (rows,) = stratified_split(aux_labels, aux_classes, (int(aux_per_class),),
                                 seed + 1)
      aux_images, aux_labels = aux_images[rows], aux_labels[rows]
    task_images.append(aux_images)
    task_labels.append(aux_labels)
    names.append(aux)
    num_classes.append(aux_classes)
  train_x, train_y, counts = pad_tasks(task_images, task_labels)
  return MultiTaskData(
      train_images=train_x, train_labels=train_y, train_counts=counts,
      num_classes=np.asarray(num_classes, np.int32),
      dev_images=images[dev], dev_labels=labels[dev],
      test_images=test_images, test_labels=test_labels["label"],
      task_names=tuple(names), mean=mean, std=std,
  ).validate()
