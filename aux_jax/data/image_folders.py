"""A main task and an auxiliary task from class-per-folder image directories.

For ATTITTUD's original pair (Dery et al., ICLR 2021): CheXpert as the
main task and TinyImageNet as auxiliary data, which cannot be downloaded here; the
user points this loader at local copies.

Directory layout (each of ``primary_dir`` and ``aux_dir``)::

    <dir>/train/<class_name>/**/<image>.png|.jpg|.jpeg     (any depth, any case)
    <dir>/test/<class_name>/**/<image>.png|.jpg|.jpeg      (primary_dir only)

* classes are the sub-folders of ``train/`` (names starting with '.' are ignored),
  labelled 0..C−1 in sorted name order (C ≥ 2); ``test/`` may hold a subset of
  them, and no other;
* images are found recursively under each class folder, so TinyImageNet's own
  ``train/<wnid>/images/*.JPEG`` layout works as it is (its ``val/`` is not
  class-per-folder and is not used: the auxiliary task needs training images only);
* CheXpert is distributed as a CSV of (possibly uncertain) multi-label findings,
  not in this layout: convert it first, e.g. by writing (or linking) each image
  into ``train/<label>/`` and ``test/<label>/`` for the single-label task you
  study (ATTITTUD's used CheXpert-small, v1.0);
* images are decoded with Pillow, converted to RGB (grayscale is repeated over the
  3 channels; 16-bit images are scaled to 8 bits) and resized, without cropping,
  to ``image_size × image_size`` (bilinear).

Splits: task 0 trains on the primary ``train/`` images minus the dev set, which is
a seeded ``dev_fraction`` of each class (at least 1 image per class; stratified,
see `aux_jax.data.fewshot.stratified_split`) — disjoint from training, used for
early stopping and model selection (the original's "monitor" set); optionally at
most ``per_class`` training images per class. The test set is the primary
``test/``. Task 1 (absent with ``aux_dir=None`` or ``primary_only=True``) is every
auxiliary ``train/`` image (or ``aux_per_class`` per class). Normalisation: the
per-channel mean and std of the primary task's kept training and dev images
(identical with or without the auxiliary task).
"""

from __future__ import annotations

from concurrent import futures
import os
from typing import Optional

import numpy as np

from aux_jax.data.fewshot import stratified_split
from aux_jax.data.multitask import MultiTaskData, channel_stats, pad_tasks

EXTENSIONS = (".png", ".jpg", ".jpeg")
LAYOUT = "<dir>/{split}/<class_name>/**/*.png|jpg|jpeg"


def list_split(root: str, split: str, classes: Optional[list[str]] = None
               ) -> tuple[list[str], np.ndarray, list[str]]:
  """The image files of ``<root>/<split>/<class>/**`` and their labels.

  Args:
    root: the dataset directory.
    split: 'train' or 'test'.
    classes: the class names, labelled by position; None: the sorted sub-folders of
      ``<root>/<split>``.

  Returns:
    ``(paths, labels i32[N], classes)``, paths sorted within each class.

  Raises:
    FileNotFoundError: no ``<root>/<split>`` folder.
    ValueError: fewer than 2 classes, a class folder without images, or (with
      ``classes`` given) a folder of an unknown class.
  """
  base = os.path.join(root, split)
  if not os.path.isdir(base):
    raise FileNotFoundError(f"no folder {base!r}: expected the layout "
                            f"{LAYOUT.format(split=split)} (see aux_jax.data.image_folders)")
  found = sorted(d for d in os.listdir(base)
                 if not d.startswith(".") and os.path.isdir(os.path.join(base, d)))
  if classes is None:
    classes = found
    if len(classes) < 2:
      raise ValueError(f"{base!r} has {len(classes)} class folder(s) {classes}; a "
                       "classification task needs at least 2")
  else:
    unknown = sorted(set(found) - set(classes))
    if unknown:
      raise ValueError(f"{base!r} has class folders {unknown} that are not among the "
                       f"training classes {classes}")
  paths, labels = [], []
  for label, name in enumerate(classes):
    folder = os.path.join(base, name)
    if not os.path.isdir(folder):
      continue  # a test split may lack some classes
    files = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs
        if f.lower().endswith(EXTENSIONS) and not f.startswith("."))
    if not files:
      raise ValueError(f"class folder {folder!r} has no .png/.jpg/.jpeg images")
    paths += files
    labels += [label] * len(files)
  return paths, np.asarray(labels, np.int32), list(classes)


def load_image(path: str, image_size: int) -> np.ndarray:
  """One image as ``u8[image_size, image_size, 3]`` (RGB, resized; see the module)."""
  from PIL import Image  # Pillow (installed with matplotlib).

  with Image.open(path) as img:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
      arr = np.asarray(img, np.float64)
      scale = 255.0 / 65535.0 if arr.max(initial=0) > 255 else 1.0
      img = Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8))
    img = img.convert("RGB")
    if img.size != (image_size, image_size):
      img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(img, np.uint8)


def load_images(paths: list[str], image_size: int, workers: int = 8) -> np.ndarray:
  """``u8[len(paths), image_size, image_size, 3]``, decoded by a thread pool."""
  out = np.zeros((len(paths), image_size, image_size, 3), np.uint8)
  with futures.ThreadPoolExecutor(max(1, workers)) as pool:
    for i, img in enumerate(pool.map(lambda p: load_image(p, image_size), paths)):
      out[i] = img
  return out


def _task_name(path: str, taken: tuple[str, ...] = ()) -> str:
  name = os.path.basename(os.path.normpath(path)) or "images"
  return name + "_aux" if name in taken else name


def load_image_folders(primary_dir: str, aux_dir: Optional[str] = None,
                       image_size: int = 64, dev_fraction: float = 0.1, seed: int = 0,
                       primary_only: bool = False, per_class: Optional[int] = None,
                       aux_per_class: Optional[int] = None, workers: int = 8
                       ) -> MultiTaskData:
  """The main task from ``primary_dir`` and the auxiliary task from ``aux_dir``.

  See the module docstring for the directory layout and the splits.

  Args:
    primary_dir: the main task's directory (``train/`` and ``test/``).
    aux_dir: the auxiliary task's directory (``train/``); None: no auxiliary task.
    image_size: side of the square images every image is resized to.
    dev_fraction: share of each primary class's training images held out as the
      dev set, in (0, 1).
    seed: fixes the dev split and the per-class subsets.
    primary_only: leave the auxiliary task out (``T = 1``).
    per_class: at most this many primary training images per class (None: all).
    aux_per_class: at most this many auxiliary images per class (None: all).
    workers: decoding threads.

  Returns:
    A validated `MultiTaskData`, ``u8[·, image_size, image_size, 3]`` images, task
    names the directories' base names.

  Raises:
    FileNotFoundError: a missing directory.
    ValueError: bad arguments, a class with no images (or too few for the split).
  """
  if not primary_dir:
    raise ValueError("primary_dir is not set: give the main task's image directory "
                     f"(layout {LAYOUT.format(split='train|test')})")
  if aux_dir == "" and not primary_only:
    raise ValueError("aux_dir is not set: give the auxiliary task's image directory "
                     "(layout <dir>/train/<class_name>/...), or None for no auxiliary task")
  if not 0.0 < dev_fraction < 1.0:
    raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
  if int(image_size) < 1:
    raise ValueError(f"image_size must be >= 1, got {image_size}")
  for name, value in (("per_class", per_class), ("aux_per_class", aux_per_class)):
    if value is not None and int(value) < 1:
      raise ValueError(f"{name} must be >= 1 or None, got {value}")
  use_aux = aux_dir is not None and not primary_only
  for d in (primary_dir,) + ((aux_dir,) if use_aux else ()):
    if not os.path.isdir(d):
      raise FileNotFoundError(f"no directory {d!r}")

  paths, labels, classes = list_split(primary_dir, "train")
  test_paths, test_labels, _ = list_split(primary_dir, "test", classes)
  if not test_paths:
    raise ValueError(f"{os.path.join(primary_dir, 'test')!r} has no class folders with "
                     f"images (layout {LAYOUT.format(split='test')})")
  num_classes = len(classes)
  per_class_count = np.bincount(labels, minlength=num_classes)
  n_dev = np.maximum(1, np.rint(dev_fraction * per_class_count)).astype(np.int64)
  n_train = per_class_count - n_dev
  if np.any(n_train < 1):
    c = int(np.argmin(n_train))
    raise ValueError(f"primary class {classes[c]!r} has {per_class_count[c]} training "
                     f"image(s): too few to hold out a dev set (dev_fraction="
                     f"{dev_fraction}) and keep one for training")
  if per_class is not None:
    n_train = np.minimum(n_train, int(per_class))
  dev, train = stratified_split(labels, num_classes, (n_dev, n_train), seed)
  keep = np.sort(np.concatenate([train, dev]))
  decoded = dict(zip(keep.tolist(), load_images([paths[i] for i in keep], image_size,
                                                workers)))
  train_x = np.stack([decoded[i] for i in train.tolist()])
  dev_x = np.stack([decoded[i] for i in dev.tolist()])
  mean, std = channel_stats(np.concatenate([train_x, dev_x]))

  task_images, task_labels = [train_x], [labels[train]]
  names, counts_classes = [_task_name(primary_dir)], [num_classes]
  if use_aux:
    aux_paths, aux_labels, aux_classes = list_split(aux_dir, "train")
    if aux_per_class is not None:
      sizes = np.minimum(np.bincount(aux_labels, minlength=len(aux_classes)),
                         int(aux_per_class))
      (rows,) = stratified_split(aux_labels, len(aux_classes), (sizes,), seed + 1)
      aux_paths = [aux_paths[i] for i in rows]
      aux_labels = aux_labels[rows]
    task_images.append(load_images(aux_paths, image_size, workers))
    task_labels.append(aux_labels)
    names.append(_task_name(aux_dir, tuple(names)))
    counts_classes.append(len(aux_classes))
  x, y, counts = pad_tasks(task_images, task_labels)
  return MultiTaskData(
      train_images=x, train_labels=y, train_counts=counts,
      num_classes=np.asarray(counts_classes, np.int32),
      dev_images=dev_x, dev_labels=labels[dev],
      test_images=load_images(test_paths, image_size, workers), test_labels=test_labels,
      task_names=tuple(names), mean=mean, std=std,
  ).validate()
