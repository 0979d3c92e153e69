"""NYUv2 (13-class segmentation, depth, surface normals) from the MTAN preprocessing.

The widely used preprocessed NYUv2 of MTAN (Liu et al., CVPR 2019; 795 train / 654
test images at 288×384), also used by AuxiLearn (Navon et al., ICLR 2021), is a
directory of NumPy files. This module reads it; it never downloads anything.

Expected layout (``root`` is given by the user)::

    root/
      train/                  also the split "val"/"test": a folder named val/ or test/
        image/0.npy           f32 [H, W, 3] or [3, H, W], RGB in [0, 1]
        label/0.npy           [H, W] (or [1, H, W], [H, W, 1]; any numeric dtype),
                              classes 0..12, −1 = ignore
        depth/0.npy           f32 [H, W], [H, W, 1] or [1, H, W]; 0 = missing
        normal/0.npy          f32 [H, W, 3] or [3, H, W], unit normals; 0 = missing
        image/1.npy  ...      files are named {i}.npy, i = 0, 1, 2, ...
      val/ (or test/)
        image/ label/ depth/ normal/

Split names: "train", and "val" or "test" for the held-out split; asking for one of
the latter two falls back to the other folder when only one exists. Every file is
loaded into memory (the full 795-image train split needs ≈ 2.4 GB as float32).

AuxiLearn's fixed split. AuxiLearn ships its train/validation split of the 795
training images, ``experiments/nyuv2/hpo_validation_indices.json`` of
AvivNavon/AuxiLearn (``{"validation_indices": 79 ids, "train_indices": 716 ids}``,
ids = the ``{i}.npy`` file numbers of ``train/``). Copy that file into ``root`` (it is
never downloaded): `load_nyuv2_multitask` then uses it as the original does
(``experiments/nyuv2/data.py:56-69``, ``trainer.py:45, 53-58``): the 79 validation
images are the dev set (model selection), and a random ⌊0.025 · 716⌋ = 17 of the
716 training images the meta-validation set (the hypergradient's objective),
leaving 699 for training. Without the file the dev set is a seeded random draw.
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional

import numpy as np

NUM_CLASSES = 13
TASKS = ("seg", "depth", "normal")
_FOLDERS = ("image", "label", "depth", "normal")
_LAYOUT = ("<root>/{train,val|test}/{image,label,depth,normal}/{i}.npy "
           "(see aux_jax.data.nyuv2)")


def _split_dir(root: str, split: str) -> str:
  if split not in ("train", "val", "test"):
    raise ValueError(f"unknown NYUv2 split {split!r}; expected 'train', 'val' or 'test'")
  if not os.path.isdir(root):
    raise FileNotFoundError(f"NYUv2 directory {root!r} does not exist; expected {_LAYOUT}")
  candidates = {"train": ["train"], "val": ["val", "test"], "test": ["test", "val"]}
  for name in candidates[split]:
    path = os.path.join(root, name)
    if os.path.isdir(path):
      return path
  raise FileNotFoundError(
      f"NYUv2 directory {root!r} has no {' or '.join(candidates[split])!s} folder; "
      f"expected {_LAYOUT}")


def _indices(folder: str) -> list[int]:
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"missing NYUv2 folder {folder!r}; expected {_LAYOUT}")
  found = []
  for name in os.listdir(folder):
    match = re.fullmatch(r"(\d+)\.npy", name)
    if match:
      found.append(int(match.group(1)))
  return sorted(found)


def _to_hwc(x: np.ndarray, channels: int, what: str, path: str) -> np.ndarray:
  """[H, W, c] / [c, H, W] (and [H, W] when c = 1) → [H, W, c]."""
  if x.ndim == 2 and channels == 1:
    return x[:, :, None]
  if x.ndim == 3 and x.shape[-1] == channels:
    return x
  if x.ndim == 3 and x.shape[0] == channels:
    return np.moveaxis(x, 0, -1)
  raise ValueError(
      f"{path}: {what} must have shape [H, W, {channels}] or [{channels}, H, W]"
      f"{' or [H, W]' if channels == 1 else ''}; got {x.shape}")


def load_nyuv2(root: str, split: str = "train", *,
               max_examples: Optional[int] = None) -> dict[str, np.ndarray]:
  """Loads one split of the preprocessed NYUv2 into memory.

  Args:
    root: the dataset directory (layout in the module docstring).
    split: "train", "val" or "test".
    max_examples: load only the first this many examples (by index).

  Returns:
    A dict of NumPy arrays, N examples, NHWC:
      "image": f32[N, H, W, 3], "seg": i32[N, H, W] (−1 = ignore),
      "depth": f32[N, H, W, 1] (0 = missing), "normal": f32[N, H, W, 3].

  Raises:
    FileNotFoundError: the directory, split or a task folder is missing.
    ValueError: folders disagree on the file indices, a file has the wrong shape, or
      a label lies outside {−1, 0, ..., 12}.
  """
  split_dir = _split_dir(root, split)
  folders = {f: os.path.join(split_dir, f) for f in _FOLDERS}
  indices = {f: _indices(path) for f, path in folders.items()}
  ids = indices["image"]
  if not ids:
    raise FileNotFoundError(
        f"no {{i}}.npy files in {folders['image']!r}; expected {_LAYOUT}")
  for f in _FOLDERS[1:]:
    if indices[f] != ids:
      raise ValueError(
          f"{folders[f]!r} and {folders['image']!r} hold different file indices "
          f"({len(indices[f])} vs {len(ids)} files); every example needs image, label, "
          "depth and normal")
  if max_examples is not None:
    ids = ids[:max_examples]

  out = {"image": [], "seg": [], "depth": [], "normal": []}
  for i in ids:
    load = lambda f: (np.load(os.path.join(folders[f], f"{i}.npy")),
                      os.path.join(folders[f], f"{i}.npy"))
    image, path = load("image")
    out["image"].append(_to_hwc(image, 3, "image", path).astype(np.float32))
    label, path = load("label")
    label = np.rint(_to_hwc(label, 1, "label", path)[..., 0]).astype(np.int32)
    if label.min() < -1 or label.max() >= NUM_CLASSES:
      raise ValueError(
          f"{path}: labels must lie in {{-1, 0, ..., {NUM_CLASSES - 1}}}; got range "
          f"[{label.min()}, {label.max()}]")
    out["seg"].append(label)
    depth, path = load("depth")
    out["depth"].append(_to_hwc(depth, 1, "depth", path).astype(np.float32))
    normal, path = load("normal")
    out["normal"].append(_to_hwc(normal, 3, "normal", path).astype(np.float32))
    shapes = {out["image"][-1].shape[:2], label.shape, out["depth"][-1].shape[:2],
              out["normal"][-1].shape[:2]}
    if len(shapes) != 1:
      raise ValueError(f"example {i} of {split_dir!r}: image, label, depth and normal "
                       f"have different spatial sizes {sorted(shapes)}")
  try:
    return {k: np.stack(v) for k, v in out.items()}
  except ValueError as e:
    raise ValueError(f"examples in {split_dir!r} have different sizes: {e}") from e


SPLIT_FILE = "hpo_validation_indices.json"


def read_split_file(path: str) -> tuple[np.ndarray, np.ndarray]:
  """AuxiLearn's split file → (validation ids i64[V], train ids i64[N]), file order.

  Raises:
    ValueError: keys missing, or the two lists overlap or repeat an id.
  """
  with open(path) as f:
    d = json.load(f)
  if not {"validation_indices", "train_indices"} <= set(d):
    raise ValueError(f"{path}: expected the keys 'validation_indices' and "
                     f"'train_indices' (AuxiLearn's hpo_validation_indices.json)")
  val = np.asarray(d["validation_indices"], np.int64)
  train = np.asarray(d["train_indices"], np.int64)
  both = np.concatenate([val, train])
  if len(np.unique(both)) != len(both):
    raise ValueError(f"{path}: the validation and train ids repeat or overlap")
  return val, train


def load_nyuv2_multitask(root: str, *, dev_fraction: float = 0.1, seed: int = 0,
                         downsample: int = 1, max_examples: Optional[int] = None,
                         meta_fraction: float = 0.0, normalize: bool = True,
                         split_file: str = SPLIT_FILE):
  """NYUv2 as a `SharedInputData`: segmentation (main), depth and normals (auxiliary).

  The training split minus its dev set (validation mIoU for model selection, and the
  upper-level objective unless a meta-validation set is split off) is the training
  set; the held-out folder ('val' or 'test') is the test set. The dev set is the
  validation ids of ``root/<split_file>`` when that file exists (AuxiLearn's split,
  module docstring), else a seeded `dev_fraction` of the training split. Images are stored as u8 (the
  files' [0, 1] RGB × 255, rounded) and normalised per channel.

  Args:
    root: the dataset directory (layout in the module docstring).
    dev_fraction: fraction of the training split held out as the dev set.
    seed: fixes the dev split.
    downsample: keep every `downsample`-th pixel in each direction (2 → 144×192),
      for quick runs; the labels are subsampled the same way (no interpolation).
    max_examples: load only the first this many examples of each split.
    normalize: standardise each channel by the training images' statistics; False:
      feed the images in [0, 1] as the original does (x / 255 of the u8 copy).
    meta_fraction: if > 0, a further ⌊meta_fraction · (rest)⌋ (at least 1) of the
      training images after the dev split, drawn with ``seed``, form a separate
      meta-validation set, the upper-level objective only, as AuxiLearn's NYUv2 code
      (with its split file: 795 → 79 / 17 / 699; without: 80 / 17 / 698).
    split_file: name of the split file in ``root`` ("" never reads one); used when
      present, ignoring ``dev_fraction``. Ids beyond ``max_examples`` are dropped.

  Returns:
    A validated `SharedInputData` with tasks ("seg", "depth", "normal").
  """
  from aux_jax.data.multitask import channel_stats
  from aux_jax.data.shared_input import SharedInputData

  if not 0.0 < dev_fraction < 1.0:
    raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
  if downsample < 1:
    raise ValueError(f"downsample must be >= 1, got {downsample}")

  def arrays(split):
    d = load_nyuv2(root, split, max_examples=max_examples)
    s = slice(None, None, downsample)
    image = np.clip(np.rint(d["image"][:, s, s] * 255.0), 0, 255).astype(np.uint8)
    return image, (d["seg"][:, s, s], d["depth"][:, s, s], d["normal"][:, s, s])

  train_x, train_y = arrays("train")
  test_x, test_y = arrays("test")
  n = len(train_x)
  rng = np.random.default_rng(seed)
  path = os.path.join(root, split_file) if split_file else ""
  if path and os.path.isfile(path):
    # Positions of the file's ids among the loaded train/{i}.npy (ids = file numbers).
    ids = _indices(os.path.join(_split_dir(root, "train"), "image"))[:n]
    pos = {i: p for p, i in enumerate(ids)}
    val_ids, train_ids = read_split_file(path)
    dev = np.sort([pos[i] for i in val_ids if i in pos]).astype(np.int64)
    rest = np.asarray([pos[i] for i in train_ids if i in pos], np.int64)
    if max_examples is None and len(dev) + len(rest) != n:
      raise ValueError(f"{path} names {len(val_ids) + len(train_ids)} ids, of which "
                       f"{len(dev) + len(rest)} are among the {n} training files")
    if not len(dev) or not len(rest):
      raise ValueError(f"{path} leaves no dev or no training images among the loaded "
                       f"{n}")
    rest = rng.permutation(rest)   # the meta-validation draw (a random split there)
  else:
    n_dev = max(1, int(round(dev_fraction * n)))
    if n_dev >= n:
      raise ValueError(f"dev_fraction={dev_fraction} leaves no NYUv2 training images")
    perm = rng.permutation(n)
    dev, rest = np.sort(perm[:n_dev]), perm[n_dev:]
  meta = {}
  if meta_fraction:
    if not 0.0 < meta_fraction < 1.0:
      raise ValueError(f"meta_fraction must lie in [0, 1), got {meta_fraction}")
    n_meta = max(1, int(meta_fraction * len(rest)))  # the original truncates
    if n_meta >= len(rest):
      raise ValueError(f"meta_fraction={meta_fraction} leaves no NYUv2 training images")
    m = np.sort(rest[:n_meta])
    rest = rest[n_meta:]
    meta = dict(meta_inputs=train_x[m], meta_targets=tuple(y[m] for y in train_y))
  keep = np.sort(rest)
  if normalize:
    mean, std = channel_stats(train_x[keep])
  else:  # preprocess: (x − 0) / 255
    mean, std = np.zeros(3, np.float32), np.full(3, 255.0, np.float32)
  return SharedInputData(
      train_inputs=train_x[keep], train_targets=tuple(y[keep] for y in train_y),
      dev_inputs=train_x[dev], dev_targets=tuple(y[dev] for y in train_y),
      test_inputs=test_x, test_targets=test_y,
      task_names=TASKS, task_kinds=("segmentation", "depth", "normal"),
      num_outputs=(NUM_CLASSES, 1, 3), mean=mean, std=std, **meta).validate()
