"""CIFAR-10 as 10 one-vs-rest binary tasks, with label noise on the main task (SLGrad).

The CIFAR-10 setup of Grégoire et al., "Sample-Level Weighting for Multi-Task Learning
with Auxiliary Tasks" (2023): every image has one binary target per class, task `t`
asking "is this image of class `c_t`?" (1 = yes, 0 = the rest, the "background").
The main task is `main_class` (airplane = 0 by default), the auxiliary tasks the
other nine classes in increasing order. Each is a 2-class classification task, so
every clean example has exactly one positive task.

Splits (as every TFDS loader, `aux_jax.data.tfds_images.split_dev`): a seeded random
`dev_fraction` of the TFDS train split is the dev set, the rest (cut to `max_train`
images when given) the training set; the test set is the whole test split (10,000).
The original used 800 training and 200 dev images (`max_train=800,
dev_fraction=0.004`).

Noise flips the main task's *training* labels (dev and test stay clean); exactly
`k` rows, chosen uniformly without replacement, are corrupted:

* ``"uniform"``: `k = round(noise · N_train)` rows among all training rows; their
  main label is flipped, `y ← 1 − y` (positives become background and background
  becomes positive). `noise` is the per-example flip rate.
* ``"background"``: `k = round(noise · P)` rows among the `P` training rows whose main
  label is 1; they become 0 (background). Negatives are untouched, so `noise` is the
  fraction of main-task positives lost (class-conditional noise).

`train_info["noisy"]` (`bool[N_train]`) marks the corrupted rows.

Randomness: the split from `split_dev(N, dev_fraction, seed, max_train)`; the `k`
noisy rows `rng.choice(len(candidates), k, replace=False)` with
`rng = np.random.default_rng((seed, 1))`, candidates in increasing row order.

Data come from `tensorflow-datasets` ('cifar10') through `aux_jax.data.tfds_source`
(read without TensorFlow; prepare once with `python -m aux_jax.data.prepare cifar10`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from aux_jax.data import tfds_source
from aux_jax.data.multitask import channel_stats
from aux_jax.data.shared_input import SharedInputData
from aux_jax.data.tfds_images import split_dev

NAME = "cifar10"
IMAGE_SHAPE = (32, 32, 3)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck")
NUM_CLASSES = len(CLASS_NAMES)
NOISE_KINDS = ("uniform", "background")
NOISE_STREAM = 1  # the noise rng is default_rng((seed, NOISE_STREAM))


def task_classes(main_class: int) -> tuple[int, ...]:
  """The class of each task: `main_class`, then the other classes in increasing order."""
  return (main_class,) + tuple(c for c in range(NUM_CLASSES) if c != main_class)


def one_vs_rest(labels: np.ndarray, classes) -> tuple[np.ndarray, ...]:
  """`i32[N]` class labels -> one `i32[N]` target per task, `(labels == c_t)`."""
  return tuple((labels == c).astype(np.int32) for c in classes)


def flip_labels(y: np.ndarray, noise: float, noise_kind: str,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Corrupts binary labels (see the module docstring for the two kinds).

  Args:
    y: `i32[N]` clean 0/1 labels (not modified).
    noise: the rate in [0, 1].
    noise_kind: "uniform" or "background".
    rng: draws the corrupted rows.

  Returns:
    `(noisy labels i32[N], corrupted bool[N])`.
  """
  candidates = np.arange(len(y)) if noise_kind == "uniform" else np.flatnonzero(y == 1)
  k = int(round(noise * len(candidates)))
  rows = candidates[rng.choice(len(candidates), k, replace=False)]
  out = np.array(y, np.int32)
  out[rows] = 1 - out[rows] if noise_kind == "uniform" else 0
  corrupted = np.zeros(len(y), bool)
  corrupted[rows] = True
  return out, corrupted


def _check_args(main_class, noise, noise_kind, dev_fraction, max_train):
  if not 0 <= main_class < NUM_CLASSES:
    raise ValueError(f"main_class must lie in [0, {NUM_CLASSES}), got {main_class}")
  if not 0.0 <= noise <= 1.0:
    raise ValueError(f"noise must be a rate in [0, 1], got {noise}")
  if noise_kind not in NOISE_KINDS:
    raise ValueError(f"unknown noise_kind {noise_kind!r}; expected one of {NOISE_KINDS}")
  if not 0.0 < dev_fraction < 1.0:
    raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
  if max_train is not None and max_train < 1:
    raise ValueError(f"max_train must be a positive int or None, got {max_train}")


def load_cifar10_ovr(
    data_dir: Optional[str] = None,
    main_class: int = 0,
    noise: float = 0.0,
    noise_kind: str = "uniform",
    dev_fraction: float = 0.1,
    seed: int = 0,
    max_train: Optional[int] = None,
) -> SharedInputData:
  """Loads CIFAR-10 as 10 one-vs-rest tasks (see the module docstring).

  Args:
    data_dir: TFDS data directory (default: `TFDS_DATA_DIR` or
      `~/tensorflow_datasets`).
    main_class: the main task's class (0 = airplane).
    noise: label-noise rate on the main task's training labels.
    noise_kind: "uniform" or "background".
    dev_fraction: fraction of the TFDS train split held out as the dev set.
    seed: fixes the dev split, the training subset and the noise.
    max_train: keep at most this many training images (after the dev split);
      None: all.

  Returns:
    A validated `SharedInputData` with `u8[·, 32, 32, 3]` images, 10 tasks of kind
    "classification" with 2 classes and `i32[N]` 0/1 targets, task names the class
    names (main first), per-channel mean/std of the training images, and
    `train_info["noisy"]`.

  Raises:
    DatasetNotPreparedError: the dataset is not prepared (the message says how).
    ValueError: bad arguments, or labels outside 0..9.
  """
  _check_args(main_class, noise, noise_kind, dev_fraction, max_train)
  train_x, train_y = tfds_source.load_arrays(NAME, "train", data_dir, shape=IMAGE_SHAPE)
  test_x, test_y = tfds_source.load_arrays(NAME, "test", data_dir, shape=IMAGE_SHAPE)
  train_y, test_y = train_y["label"], test_y["label"]
  for y in (train_y, test_y):
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
      raise ValueError(f"CIFAR-10 labels must lie in [0, {NUM_CLASSES}), got "
                       f"[{y.min()}, {y.max()}]")

  train, dev = split_dev(len(train_x), dev_fraction, seed, max_train)
  classes = task_classes(int(main_class))
  train_targets = list(one_vs_rest(train_y[train], classes))
  train_targets[0], noisy = flip_labels(train_targets[0], noise, noise_kind,
                                        np.random.default_rng((seed, NOISE_STREAM)))

  images = train_x[train]
  mean, std = channel_stats(images)
  return SharedInputData(
      train_inputs=images, train_targets=tuple(train_targets),
      dev_inputs=train_x[dev], dev_targets=one_vs_rest(train_y[dev], classes),
      test_inputs=test_x, test_targets=one_vs_rest(test_y, classes),
      task_names=tuple(CLASS_NAMES[c] for c in classes),
      task_kinds=("classification",) * NUM_CLASSES,
      num_outputs=(2,) * NUM_CLASSES,
      mean=mean, std=std,
      train_info={"noisy": noisy},
  ).validate()
