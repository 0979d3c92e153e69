"""Single-task image classification from TFDS (CIFAR-10, Oxford-IIIT Pet) as MultiTaskData.

Auxiliary-task *generation* (AuxiLearn, Navon et al., ICLR 2021; `aux_jax.models.labeler`)
needs only the main task: the auxiliary labels are invented by a labeler network.
These loaders therefore return a `MultiTaskData` with `T = 1` (task 0 = the main
classification task):

* train: the training split minus the dev rows, optionally cut to ``max_train``
  images (low-data regimes);
* dev: a seeded random ``dev_fraction`` of the training split (≥ 1 image), disjoint
  from train: the upper-level objective and the model-selection set;
* test: the dataset's test split;
* mean/std: per-channel statistics of the (kept) training images, or ImageNet's
  (``normalization="imagenet"``, for ImageNet-pretrained models; AuxiLearn's Pet).

With ``perm = default_rng(seed).permutation(N)`` and ``n_dev = max(1,
round(dev_fraction·N))``: dev = ``perm[:n_dev]``, train = ``sort(perm[n_dev:][:max_train])``.

Data are read through `aux_jax.data.tfds_source` (``tfds.data_source``, no TensorFlow);
prepare them once with ``python -m aux_jax.data.prepare cifar10`` (or
``oxford_iiit_pet``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from aux_jax.data import tfds_source
from aux_jax.data.multitask import IMAGENET_MEAN, IMAGENET_STD, MultiTaskData, channel_stats

CIFAR10_NAME = "cifar10"
CIFAR10_CLASSES = 10
CIFAR10_SHAPE = (32, 32, 3)
PET_NAME = "oxford_iiit_pet"
PET_CLASSES = 37


def split_dev(num_train: int, dev_fraction: float, seed: int,
              max_train: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
  """Seeded disjoint (train, dev) row indices of a training split of ``num_train`` rows.

  Args:
    num_train: N, rows of the training split.
    dev_fraction: share of the N rows held out as dev, in (0, 1).
    seed: fixes the permutation.
    max_train: keep at most this many training rows (None: all the rest).

  Returns:
    ``(train i64[N_train], dev i64[N_dev])``, both sorted, disjoint.

  Raises:
    ValueError: a fraction outside (0, 1), a bad ``max_train``, or no rows left.
  """
  if not 0.0 < dev_fraction < 1.0:
    raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
  if max_train is not None and int(max_train) < 1:
    raise ValueError(f"max_train must be a positive int or None, got {max_train}")
  n_dev = max(1, int(round(dev_fraction * num_train)))
  if n_dev >= num_train:
    raise ValueError(
        f"dev_fraction={dev_fraction} of {num_train} training images leaves none "
        "for training")
  perm = np.random.default_rng(seed).permutation(num_train)
  train = perm[n_dev:]
  if max_train is not None:
    train = train[:int(max_train)]
  return np.sort(train), np.sort(perm[:n_dev])


def per_class_subset(labels: np.ndarray, rows: np.ndarray, per_class: int, seed: int
                     ) -> np.ndarray:
  """At most ``per_class`` of ``rows`` per class of ``labels[rows]``, drawn with ``seed``
  (AuxiLearn's Pet protocol: 30 training images per breed). Returns sorted rows."""
  rng = np.random.default_rng(seed + 1)
  keep = [rng.permutation(rows[labels[rows] == c])[:int(per_class)]
          for c in np.unique(labels[rows])]
  return np.sort(np.concatenate(keep))


def _single_task(name: str, num_classes: int, shape: Optional[tuple[int, int, int]],
                 data_dir, dev_fraction, seed, max_train,
                 per_class: Optional[int] = None, meta_size: int = 0,
                 normalization: str = "data") -> MultiTaskData:
  # Validate before the (slow) read.
  if not 0.0 < dev_fraction < 1.0:
    raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
  if normalization not in ("data", "imagenet"):
    raise ValueError(f"normalization must be 'data' or 'imagenet', got {normalization!r}")
  images, labels = tfds_source.load_arrays(name, "train", data_dir, ("label",), shape)
  test_images, test_labels = tfds_source.load_arrays(name, "test", data_dir, ("label",),
                                                     shape)
  labels, test_labels = labels["label"], test_labels["label"]
  train, dev = split_dev(len(labels), dev_fraction, seed, max_train)
  if per_class is not None:
    train = per_class_subset(labels, train, per_class, seed)
  meta = {}
  if meta_size:
    if not 0 < int(meta_size) < len(train):
      raise ValueError(f"meta_size must lie in [0, {len(train)}), got {meta_size}")
    m = np.random.default_rng(seed + 2).permutation(train)[:int(meta_size)]
    train = np.setdiff1d(train, m)
    m = np.sort(m)
    meta = dict(meta_images=images[m], meta_labels=labels[m].astype(np.int32))
  train_images = images[train]
  mean, std = (channel_stats(train_images) if normalization == "data"
               else (IMAGENET_MEAN, IMAGENET_STD))
  return MultiTaskData(
      train_images=train_images[None],
      train_labels=labels[train][None].astype(np.int32),
      train_counts=np.array([len(train)], np.int32),
      num_classes=np.array([num_classes], np.int32),
      dev_images=images[dev],
      dev_labels=labels[dev].astype(np.int32),
      test_images=test_images,
      test_labels=test_labels.astype(np.int32),
      task_names=(name,),
      mean=mean,
      std=std,
      **meta,
  ).validate()


def load_cifar10(data_dir: Optional[str] = None, dev_fraction: float = 0.1,
                 seed: int = 0, max_train: Optional[int] = None) -> MultiTaskData:
  """CIFAR-10 (TFDS 'cifar10') as one 10-way task on `u8[·, 32, 32, 3]` images.

  Args:
    data_dir: TFDS data directory (default: `TFDS_DATA_DIR` or `~/tensorflow_datasets`).
    dev_fraction: share of the 50,000 training images held out as dev.
    seed: fixes the dev split (and the ``max_train`` subset).
    max_train: keep at most this many training images (None: all 45,000 left).

  Returns:
    A validated single-task `MultiTaskData` (see the module docstring).

  Raises:
    DatasetNotPreparedError: the dataset is not prepared (the message says how).
    ValueError: bad arguments.
  """
  return _single_task(CIFAR10_NAME, CIFAR10_CLASSES, CIFAR10_SHAPE, data_dir,
                      dev_fraction, seed, max_train)


def load_oxford_pet(data_dir: Optional[str] = None, image_size: int = 64,
                    dev_fraction: float = 0.1, seed: int = 0,
                    max_train: Optional[int] = None,
                    per_class: Optional[int] = None, meta_size: int = 0,
                    normalization: str = "data") -> MultiTaskData:
  """Oxford-IIIT Pet (TFDS 'oxford_iiit_pet') as one 37-way breed task.

  The 'label' feature (37 breeds) is the main task; images of varying size are
  resized (bilinear, antialiased, aspect ratio not kept) to
  ``image_size × image_size``. TFDS's 'train' split (3,680 images) gives train and
  dev, its 'test' split (3,669) the test set.

  Args:
    data_dir: TFDS data directory.
    image_size: side of the square `u8[·, S, S, 3]` images.
    dev_fraction: share of the training split held out as dev.
    seed: fixes the dev split (and the ``max_train`` subset).
    max_train: keep at most this many training images.
    per_class: then keep at most this many training images per breed (AuxiLearn's
      protocol: 30; None: all).
    meta_size: then move this many training images to a meta-validation set, the
      hypergradient's objective only (AuxiLearn's protocol: 9; 0: the dev set).
    normalization: "data" (the training images' mean/std) or "imagenet" (ImageNet's
      mean/std, AuxiLearn's Pet transform).

  Returns:
    A validated single-task `MultiTaskData`.

  Raises:
    DatasetNotPreparedError: the dataset is not prepared (the message says how).
    ValueError: bad arguments.
  """
  if int(image_size) < 1:
    raise ValueError(f"image_size must be a positive int, got {image_size}")
  shape = (int(image_size), int(image_size), 3)
  return _single_task(PET_NAME, PET_CLASSES, shape, data_dir, dev_fraction, seed,
                      max_train, per_class, meta_size, normalization)
