"""CIFAR-100 as 20 five-way tasks, one per coarse class (the MAOAL setup).

CIFAR-100's 100 fine classes fall into 20 coarse classes of 5. Task `c` classifies the
images of coarse class `c` into its 5 fine classes, remapped to `0..4` in increasing
fine-id order. The main task is coarse class 14 ("people") by default, the auxiliary
tasks coarse classes 0..9, each with its own 2,500 training images. The main task's
dev set is a seeded random `dev_fraction` of its training images (125 of 2,500),
removed from its training set; its test set is its 500 test images. (Chen et al.,
"Module-Aware Optimization for Auxiliary Learning", NeurIPS 2022.)

Data come from `tensorflow-datasets` ('cifar100', features `image`, `label`,
`coarse_label`) through `tfds.data_source`, which reads the `array_record` format
without TensorFlow. Preparing the dataset (download + conversion) needs TensorFlow,
once: `python -m aux_jax.data.prepare cifar100` (see `aux_jax.data.prepare`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from aux_jax.data import tfds_source
from aux_jax.data.multitask import MultiTaskData, channel_stats, pad_tasks
from aux_jax.data.tfds_source import DatasetNotPreparedError  # noqa: F401 (re-export)

NAME = "cifar100"
NUM_COARSE = 20
FINE_PER_COARSE = 5
IMAGE_SHAPE = (32, 32, 3)


def open_sources(data_dir: str | None = None, decode_images: bool = True):
  """CIFAR-100's `(train_source, test_source, features)` (see `tfds_source.open_sources`).

  Raises:
    DatasetNotPreparedError: with the commands that prepare it.
  """
  (train, test), features = tfds_source.open_sources(NAME, ("train", "test"), data_dir,
                                                     decode_images)
  return train, test, features


def _read_split(source, image_feature):
  """Reads labels of every example and keeps the (maybe encoded) images."""
  ex = tfds_source.read_examples(source, ("image", "label", "coarse_label"))
  fine = np.array([int(v) for v in ex["label"]], np.int32)
  coarse = np.array([int(v) for v in ex["coarse_label"]], np.int32)

  def decode(rows):
    return tfds_source.decode_images_at(ex["image"], rows, image_feature, IMAGE_SHAPE)

  return fine, coarse, decode


def _fine_ids(fine, coarse, c):
  ids = np.unique(fine[coarse == c])
  if len(ids) != FINE_PER_COARSE:
    raise ValueError(
        f"coarse class {c} has fine labels {ids.tolist()} in the training split; "
        f"CIFAR-100 has exactly {FINE_PER_COARSE} per coarse class. The data are "
        "corrupt or a mock without the class hierarchy (in tests, use "
        "aux_jax.data.cifar100_20.mock_cifar100)."
    )
  return ids


def _check_args(main_coarse, aux_coarse, dev_fraction):
  tasks = (main_coarse,) + tuple(aux_coarse)
  bad = [c for c in tasks if not 0 <= int(c) < NUM_COARSE]
  if bad:
    raise ValueError(f"coarse classes must lie in [0, {NUM_COARSE}), got {bad}")
  if len(set(tasks)) != len(tasks):
    raise ValueError(
        f"main_coarse={main_coarse} and aux_coarse={tuple(aux_coarse)} must be "
        "distinct classes"
    )
  if not 0.0 < dev_fraction < 1.0:
    raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")


# torchvision-style CIFAR-100 constants in [0, 1] units (MAOAL's train.py:465-475).
CIFAR100_MEAN = np.array([0.5071, 0.4867, 0.4408], np.float32)
CIFAR100_STD = np.array([0.2675, 0.2565, 0.2761], np.float32)


def load_cifar100_20(
    data_dir: str | None = None,
    main_coarse: int = 14,
    aux_coarse: Sequence[int] = tuple(range(10)),
    dev_fraction: float = 0.05,
    seed: int = 0,
    normalization: str = "data",
) -> MultiTaskData:
  """Loads CIFAR-100/20: task 0 = `main_coarse`, tasks 1.. = `aux_coarse` in order.

  Reading and decoding the whole dataset (60,000 PNG records) takes some seconds,
  once per run. Normalisation constants (``normalization``): ``"data"``, the
  per-channel mean and std of all tasks' training images, or ``"cifar100"``, the fixed
  CIFAR-100 constants the MAOAL code uses (`CIFAR100_MEAN`, `CIFAR100_STD`).

  Args:
    data_dir: TFDS data directory (default: `TFDS_DATA_DIR` or
      `~/tensorflow_datasets`).
    main_coarse: coarse class of the main task.
    aux_coarse: coarse classes of the auxiliary tasks.
    dev_fraction: fraction of the main task's training images held out as the dev
      set (at least 1 image).
    seed: fixes the dev split.
    normalization: "data" or "cifar100".

  Returns:
    A validated `MultiTaskData` with `u8[·, 32, 32, 3]` images, 5 classes per task,
    task names `coarse{c}` (with the class name when the dataset has one).

  Raises:
    DatasetNotPreparedError: the dataset is not prepared (the message says how).
    ValueError: bad arguments or data without the CIFAR-100 class hierarchy.
  """
  _check_args(main_coarse, aux_coarse, dev_fraction)
  if normalization not in ("data", "cifar100"):
    raise ValueError(f"normalization must be 'data' or 'cifar100', got {normalization!r}")
  train_src, test_src, features = open_sources(data_dir)
  fine_tr, coarse_tr, decode_tr = _read_split(train_src, features["image"])
  fine_te, coarse_te, decode_te = _read_split(test_src, features["image"])

  tasks = (int(main_coarse),) + tuple(int(c) for c in aux_coarse)
  task_images, task_labels, names = [], [], []
  for c in tasks:
    ids = _fine_ids(fine_tr, coarse_tr, c)
    rows = np.flatnonzero(coarse_tr == c)
    task_images.append(decode_tr(rows))
    task_labels.append(np.searchsorted(ids, fine_tr[rows]).astype(np.int32))
    label_name = features["coarse_label"].int2str(c)
    names.append(f"coarse{c}" if label_name == str(c) else f"coarse{c}_{label_name}")

  main_ids = _fine_ids(fine_tr, coarse_tr, tasks[0])
  test_rows = np.flatnonzero(coarse_te == tasks[0])
  if len(test_rows) == 0 or not np.isin(fine_te[test_rows], main_ids).all():
    raise ValueError(
        f"the test split has no images of coarse class {tasks[0]} or fine labels "
        f"outside its training classes {main_ids.tolist()}"
    )
  test_images = decode_te(test_rows)
  test_labels = np.searchsorted(main_ids, fine_te[test_rows]).astype(np.int32)

  n_main = len(task_images[0])
  n_dev = max(1, int(round(dev_fraction * n_main)))
  if n_dev >= n_main:
    raise ValueError(f"dev_fraction={dev_fraction} leaves no main-task training images")
  perm = np.random.default_rng(seed).permutation(n_main)
  dev, keep = perm[:n_dev], np.sort(perm[n_dev:])
  dev_images, dev_labels = task_images[0][dev], task_labels[0][dev]
  task_images[0], task_labels[0] = task_images[0][keep], task_labels[0][keep]

  train_x, train_y, counts = pad_tasks(task_images, task_labels)
  if normalization == "cifar100":
    mean, std = CIFAR100_MEAN * 255.0, CIFAR100_STD * 255.0
  else:
    mean, std = channel_stats(np.concatenate(task_images))
  return MultiTaskData(
      train_images=train_x,
      train_labels=train_y,
      train_counts=counts,
      num_classes=np.full((len(tasks),), FINE_PER_COARSE, np.int32),
      dev_images=dev_images,
      dev_labels=dev_labels,
      test_images=test_images,
      test_labels=test_labels,
      task_names=tuple(names),
      mean=mean,
      std=std,
  ).validate()


def fake_cifar100_split(
    split: str, per_fine: int, seed: int = 0
) -> tuple[list[dict], np.ndarray]:
  """Random CIFAR-100-like examples that keep the coarse/fine class hierarchy.

  Fine ids are assigned to coarse classes by a seeded permutation (5 per coarse
  class), so fine ids within a coarse class are not contiguous, as in CIFAR-100.

  Args:
    split: 'train' or 'test' (they differ in their random images).
    per_fine: examples per fine class.
    seed: fixes the hierarchy and the images.

  Returns:
    `(examples, coarse_of_fine i32[100])`, examples as dicts with `id`, `image`
    (`u8[32, 32, 3]`), `label` and `coarse_label`, in shuffled order.
  """
  rng = np.random.default_rng(seed)
  coarse_of_fine = (rng.permutation(100) // FINE_PER_COARSE).astype(np.int32)
  rng = np.random.default_rng([seed, 0 if split == "train" else 1])
  fine = rng.permutation(np.repeat(np.arange(100), per_fine))
  images = rng.integers(0, 256, (len(fine),) + IMAGE_SHAPE, dtype=np.uint8)
  examples = [
      {"id": f"{split}_{i}", "image": images[i], "label": np.int64(f),
       "coarse_label": np.int64(coarse_of_fine[f])}
      for i, f in enumerate(fine)
  ]
  return examples, coarse_of_fine


@contextlib.contextmanager
def mock_cifar100(per_fine_train: int = 4, per_fine_test: int = 2, seed: int = 0):
  """Mocks CIFAR-100 with `tfds.testing.mock_data`, keeping the class hierarchy.

  Inside the context `load_cifar100_20` (any `tfds.data_source('cifar100')`) reads
  `fake_cifar100_split` examples; no files, no TensorFlow. TFDS's default mock
  draws fine and coarse labels independently, which breaks the hierarchy the loader
  relies on, hence this data-source override.

  Yields:
    `coarse_of_fine`, `i32[100]`: the fake hierarchy.
  """
  import tensorflow_datasets as tfds

  splits = {
      "train": fake_cifar100_split("train", per_fine_train, seed),
      "test": fake_cifar100_split("test", per_fine_test, seed),
  }

  def as_data_source(self, split=None, decoders=None, **kwargs):
    del self, decoders, kwargs
    if split is None:
      return {s: splits[s][0] for s in splits}
    if isinstance(split, str):
      return splits[split][0]
    return [splits[s][0] for s in split]

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    yield splits["train"][1]
