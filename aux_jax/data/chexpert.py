"""CheXpert (5 findings, multi-label) with TinyImageNet as auxiliary data: ATTITTUD's pair.

Dery et al., ICLR 2021 (ldery/ATTITTUD @ 1083ea7, ``data/datasets.py`` lines 300-426,
``main.py`` lines 192-202, its CheXpert command ``README.md`` line 52). Neither
dataset can be downloaded here: request CheXpert-v1.0-small at
stanfordmlgroup.github.io/competitions/chexpert/ and get TinyImageNet from
cs231n.stanford.edu/tiny-imagenet-200.zip, then give their directories:

    <chexpert_dir>/train.csv, <chexpert_dir>/valid.csv, <chexpert_dir>/train/..., valid/...
    <aux_dir>/train/<wnid>/images/*.JPEG        (tiny-imagenet-200 as unzipped)

The main task (kind "multilabel", `aux_jax.losses`) predicts the original's 5 findings
`LABELS` (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion). As the
original:

* which images: for each finding in that order, up to ⌊⌊n/5⌋/2⌋ rows whose value is
  exactly 1.0 and as many exactly 0.0, drawn at random among the rows not drawn yet
  (`balanced_rows`); n = ``5·train_per_class`` from ``train.csv`` for training
  (5,000), n = ``monitor`` (100) from ``train.csv`` for the monitor (dev) set, and
  n = the number of rows of ``valid.csv`` for the test set (the original's
  ``n_examples=-1``: a class-balanced subset of ``valid.csv``, not all of it);
* targets after the draw: blank → 0, uncertain (−1.0) → 1 ("U-Ones"), 0.0 and 1.0
  as they are;
* the image path: the CSV's ``Path`` without its first component
  (``CheXpert-v1.0-small/``), under ``chexpert_dir``; frontal and lateral views alike;
* images decoded as RGB (grayscale repeated), resized to ``image_size`` (224) square
  (bilinear; the original: ``tf.image.resize``, not antialiased; Pillow's bilinear
  filter antialiases when shrinking), normalised with ImageNet's mean and std
  (`IMAGENET_MEAN`, `IMAGENET_STD`); no augmentation;
* auxiliary task: ``aux_classes`` (200) TinyImageNet classes, ``aux_per_class`` (500)
  random images each, 200-way classification, the same resize and normalisation.

Deliberate difference: the monitor set is drawn from the rows *not* in the training
draw (the original draws it independently, so it may overlap the training set).
Images are kept as u8 (the original: float32 after resizing).

Memory: tasks are padded to the largest (`aux_jax.data.multitask.pad_tasks`): at 224
px the original's 200 × 500 auxiliary images and the padded main task take
2 × 100,000 × 150 KB ≈ 30 GB (host, and the device: batches are gathered there);
``aux_per_class`` scales it.
"""

from __future__ import annotations

import csv
import os
from typing import Optional

import numpy as np

from aux_jax.data.fewshot import stratified_split
from aux_jax.data.image_folders import list_split, load_images
from aux_jax.data.multitask import (IMAGENET_MEAN, IMAGENET_STD, MultiTaskData,
                                    encode_multilabel, pad_tasks)

# The original's CHEXPERT_CLASSES (data/datasets.py line 326), in its order.
LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def read_csv(path: str) -> tuple[list[str], np.ndarray]:
  """``(paths, values)`` of a CheXpert CSV: the ``Path`` column and the `LABELS`
  columns as the file's strings ``str[N, 5]`` ("1.0", "0.0", "-1.0" or "")."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no CheXpert CSV {path!r}: chexpert_dir must be the "
                            "CheXpert-v1.0-small folder (train.csv, valid.csv, train/, valid/)")
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f"{path!r} has no rows")
  missing = [c for c in ("Path",) + LABELS if c not in rows[0]]
  if missing:
    raise ValueError(f"{path!r} has no column(s) {missing}")
  return ([r["Path"] for r in rows],
          np.array([[r[c].strip() for c in LABELS] for r in rows], dtype=object))


def balanced_rows(values: np.ndarray, n: int, rng: np.random.Generator,
                  exclude: np.ndarray = np.zeros(0, np.int64)) -> np.ndarray:
  """The original's draw (``get_chexpert_imgs``): for each label column in order, up
  to ⌊⌊n/L⌋/2⌋ rows with value "1.0" and as many with "0.0", uniformly among the rows
  not drawn yet (nor in ``exclude``).

  Args:
    values: ``str[N, L]`` CSV values.
    n: the number of rows asked for (fewer come back where a label lacks rows).
    rng: the random generator.
    exclude: rows never drawn.

  Returns:
    ``i64[≤ n]`` sorted distinct rows.
  """
  half = (n // values.shape[1]) // 2
  taken = np.zeros(len(values), bool)
  taken[np.asarray(exclude, np.int64)] = True
  chosen = []
  for col in range(values.shape[1]):
    for value in ("1.0", "0.0"):
      pool = np.flatnonzero((values[:, col] == value) & ~taken)
      pick = rng.choice(pool, size=min(half, len(pool)), replace=False)
      taken[pick] = True
      chosen.append(pick)
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def targets(values: np.ndarray) -> np.ndarray:
  """``f32[N, L]`` targets of CSV values: "" → 0, "-1.0" → 1 (U-Ones), else the value."""
  out = np.where(values == "", "0.0", values)
  out = np.where(out == "-1.0", "1.0", out)
  return out.astype(np.float32)


def image_path(chexpert_dir: str, csv_path: str) -> str:
  """``<chexpert_dir>/<Path without its first component>``."""
  parts = csv_path.replace("\\", "/").split("/")
  return os.path.join(chexpert_dir, *parts[1:])


def load_chexpert(chexpert_dir: str, aux_dir: Optional[str] = None,
                  image_size: int = 224, train_per_class: int = 1000, monitor: int = 100,
                  aux_classes: int = 200, aux_per_class: Optional[int] = 500,
                  seed: int = 0, primary_only: bool = False, workers: int = 8
                  ) -> MultiTaskData:
  """CheXpert's 5 findings (task 0, multilabel) and TinyImageNet (task 1).

  See the module docstring for the protocol.

  Args:
    chexpert_dir: the CheXpert-v1.0-small folder.
    aux_dir: the tiny-imagenet-200 folder (``train/<wnid>/...``); None or
      ``primary_only``: no auxiliary task.
    image_size: side of the square images (the original: 224).
    train_per_class: training images per finding (×5 asked in all; the original's
      ``-train-perclass``).
    monitor: monitor (dev) images asked for (the original's ``-num-monitor``).
    aux_classes: TinyImageNet classes (the first, in sorted folder order).
    aux_per_class: TinyImageNet images per class (None: all 500).
    seed: fixes every draw.
    primary_only: leave the auxiliary task out (``T = 1``).
    workers: decoding threads.

  Raises:
    FileNotFoundError: a missing CSV, image or directory.
    ValueError: bad arguments or CSVs.
  """
  if not chexpert_dir:
    raise ValueError("chexpert_dir is not set: give the CheXpert-v1.0-small folder")
  use_aux = aux_dir is not None and not primary_only
  if use_aux and not aux_dir:
    raise ValueError("aux_dir is not set: give the tiny-imagenet-200 folder, or "
                     "primary_only=True for no auxiliary task")
  for name, v in (("image_size", image_size), ("train_per_class", train_per_class),
                  ("monitor", monitor), ("aux_classes", aux_classes)):
    if int(v) < 1:
      raise ValueError(f"{name} must be >= 1, got {v}")
  rng = np.random.default_rng(seed)
  paths, values = read_csv(os.path.join(chexpert_dir, "train.csv"))
  train = balanced_rows(values, len(LABELS) * int(train_per_class), rng)
  dev = balanced_rows(values, int(monitor), rng, exclude=train)
  test_paths, test_values = read_csv(os.path.join(chexpert_dir, "valid.csv"))
  test = balanced_rows(test_values, len(test_values), rng)
  for split, rows in (("training", train), ("monitor", dev), ("test", test)):
    if len(rows) == 0:
      raise ValueError(f"the CheXpert {split} draw is empty: no rows with a 1.0 or 0.0 "
                       f"value for {LABELS}")

  def images(csv_paths, rows):
    files = [image_path(chexpert_dir, csv_paths[i]) for i in rows]
    for f in files:
      if not os.path.isfile(f):
        raise FileNotFoundError(f"no image {f!r} (the CSV's Path under chexpert_dir)")
    return load_images(files, int(image_size), workers)

  def labels(vals, rows):
    return encode_multilabel(targets(vals[rows]))

  task_images, task_labels = [images(paths, train)], [labels(values, train)]
  names, num_classes, kinds = ["chexpert"], [len(LABELS)], ["multilabel"]
  if use_aux:
    aux_paths, aux_labels, aux_names = list_split(aux_dir, "train")
    c = min(int(aux_classes), len(aux_names))
    keep = aux_labels < c
    aux_paths = [p for p, k in zip(aux_paths, keep) if k]
    aux_labels = aux_labels[keep]
    sizes = np.bincount(aux_labels, minlength=c)
    if aux_per_class is not None:
      sizes = np.minimum(sizes, int(aux_per_class))
    (rows,) = stratified_split(aux_labels, c, (sizes,), seed + 1)
    task_images.append(load_images([aux_paths[i] for i in rows], int(image_size), workers))
    task_labels.append(aux_labels[rows])
    names.append("tiny_imagenet")
    num_classes.append(c)
    kinds.append("classification")
  x, y, counts = pad_tasks(task_images, task_labels)
  return MultiTaskData(
      train_images=x, train_labels=y, train_counts=counts,
      num_classes=np.asarray(num_classes, np.int32),
      dev_images=images(paths, dev), dev_labels=labels(values, dev),
      test_images=images(test_paths, test), test_labels=labels(test_values, test),
      task_names=tuple(names), mean=IMAGENET_MEAN, std=IMAGENET_STD,
      task_kinds=tuple(kinds)).validate()
