"""Multi-MNIST: two overlaid MNIST digits, tasks "left" (main) and "right".

The two-digit benchmark of Sabour et al. (2017) as used for multi-task learning by
Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS 2018),
and by SLGrad (Grégoire et al., 2023). Each example of a split overlays two `h×w`
MNIST digits of that split on an `S×S` black canvas (`S = image_size`), by pixel max:

    left digit  at top-left corner  (a_r, a_c),                 a ∈ {0..max_shift}²
    right digit at top-left corner  (S − h − b_r, S − w − b_c),  b ∈ {0..max_shift}²
    image = max(canvas_left, canvas_right)

so the right digit always lies `S − h − a_r − b_r ≥ 1` rows below and likewise right
of the left one (for `S = 36`, `max_shift = 2`: 4 to 8 pixels, 6 on average, the
original's fixed offset). Targets: the left digit's class (task 0, the main task) and
the right digit's (task 1), 10-way classification each.

Pairing: every MNIST image of a split is the left digit of exactly one example; its
partner is the next image along a random cycle (`partner[p[k]] = p[(k+1) mod n]`
for a random permutation `p`), so no image is paired with itself. The pairing and the
shifts of a split are fixed (`np.random.default_rng(COMPOSE_SEEDS[split])`: `p`, then
`a` as `integers(0, max_shift + 1, (n, 2))`, then `b` likewise), independent of
`seed`: every seed sees the same composite images. `seed` chooses the dev split
(`aux_jax.data.tfds_images.split_dev` on the composite train split) and the
`max_train` subset. The right digit of a dev example is the left digit of another
example, so dev and train share digit images (never whole composites).

`train_info` holds `left_source`, `right_source` (`i32[N_train]`: rows of the TFDS
train split the two digits came from), for analyses.

Data come from `tensorflow-datasets` ('mnist') through `aux_jax.data.tfds_source`
(read without TensorFlow; prepare once with `python -m aux_jax.data.prepare mnist`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from aux_jax.data import tfds_source
from aux_jax.data.multitask import channel_stats
from aux_jax.data.shared_input import SharedInputData
from aux_jax.data.tfds_images import split_dev

NAME = "mnist"
NUM_CLASSES = 10
TASK_NAMES = ("left", "right")
COMPOSE_SEEDS = {"train": 0, "test": 1}


def overlay(digits: np.ndarray, left: np.ndarray, right: np.ndarray,
            left_pos: np.ndarray, right_pos: np.ndarray, image_size: int) -> np.ndarray:
  """Pixel-max overlays of pairs of digits on an `image_size²` black canvas.

  Args:
    digits: `u8[M, h, w, 1]` source digits.
    left, right: `int[N]` rows of ``digits`` of each example's two digits.
    left_pos, right_pos: `int[N, 2]` (row, column) of each digit's top-left corner.
    image_size: S.

  Returns:
    `u8[N, S, S, 1]`.
  """
  n, (h, w) = len(left), digits.shape[1:3]
  out = np.zeros((n, image_size, image_size, digits.shape[-1]), np.uint8)
  for rows, pos in ((left, left_pos), (right, right_pos)):
    # One slice assignment per distinct corner: at most (max_shift + 1)² of them.
    corners, group = np.unique(pos, axis=0, return_inverse=True)
    for g, (r, c) in enumerate(corners):
      sel = np.flatnonzero(group.reshape(-1) == g)
      patch = out[sel, r:r + h, c:c + w]
      out[sel, r:r + h, c:c + w] = np.maximum(patch, digits[rows[sel]])
  return out


def compose(digits: np.ndarray, labels: np.ndarray, image_size: int, max_shift: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                               np.ndarray, np.ndarray]:
  """One two-digit example per digit (pairing and shifts in the module docstring).

  Args:
    digits: `u8[n, h, w, 1]`, n ≥ 2.
    labels: `int[n]` their classes.
    image_size: S.
    max_shift: the largest shift of each digit from its corner.
    rng: draws the pairing and the shifts.

  Returns:
    `(images u8[n, S, S, 1], left_label i32[n], right_label i32[n],
    left_source i32[n], right_source i32[n])`.
  """
  n, (h, w) = len(digits), digits.shape[1:3]
  if n < 2:
    raise ValueError(f"need at least 2 digits to pair, got {n}")
  cycle = rng.permutation(n)
  partner = np.empty(n, np.int64)
  partner[cycle] = np.roll(cycle, -1)
  a = rng.integers(0, max_shift + 1, (n, 2))
  b = rng.integers(0, max_shift + 1, (n, 2))
  left = np.arange(n)
  images = overlay(digits, left, partner, a, np.array([image_size - h, image_size - w]) - b,
                   image_size)
  labels = np.asarray(labels, np.int32)
  return (images, labels, labels[partner], left.astype(np.int32),
          partner.astype(np.int32))


def _check_args(image_size, max_shift, digit_shape):
  h, w = digit_shape
  if max_shift < 0:
    raise ValueError(f"max_shift must be >= 0, got {max_shift}")
  need = max(h, w) + 1 + 2 * max_shift
  if image_size < need:
    raise ValueError(
        f"image_size={image_size} is too small for {h}x{w} digits with max_shift="
        f"{max_shift}: the right digit must lie at least 1 pixel down-right of the "
        f"left one, so image_size >= {need} (or a smaller max_shift)")


def load_multi_mnist(
    data_dir: Optional[str] = None,
    image_size: int = 36,
    max_shift: int = 2,
    dev_fraction: float = 0.1,
    seed: int = 0,
    max_train: Optional[int] = None,
) -> SharedInputData:
  """Builds Multi-MNIST from TFDS MNIST (see the module docstring).

  Args:
    data_dir: TFDS data directory (default: `TFDS_DATA_DIR` or
      `~/tensorflow_datasets`).
    image_size: S, side of the square canvas.
    max_shift: each digit is shifted by 0..max_shift pixels (rows and columns
      independently) away from its corner, towards the centre.
    dev_fraction: fraction of the composite train split held out as the dev set.
    seed: fixes the dev split and the training subset (not the composites).
    max_train: keep at most this many training examples (after the dev split);
      None: all.

  Returns:
    A validated `SharedInputData` with `u8[·, S, S, 1]` images, tasks "left" (main)
    and "right" (classification, 10 classes, `i32[N]` targets), per-channel
    mean/std of the training images, and `train_info` with `left_source` and
    `right_source`.

  Raises:
    DatasetNotPreparedError: MNIST is not prepared (the message says how).
    ValueError: bad arguments.
  """
  if not 0.0 < dev_fraction < 1.0:
    raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
  if max_train is not None and max_train < 1:
    raise ValueError(f"max_train must be a positive int or None, got {max_train}")
  _check_args(image_size, max_shift, (28, 28))
  splits = {}
  for split in ("train", "test"):
    digits, labels = tfds_source.load_arrays(NAME, split, data_dir)
    _check_args(image_size, max_shift, digits.shape[1:3])
    rng = np.random.default_rng(COMPOSE_SEEDS[split])
    splits[split] = compose(digits, labels["label"], image_size, max_shift, rng)
  x, y_left, y_right, src_left, src_right = splits["train"]
  train, dev = split_dev(len(x), dev_fraction, seed, max_train)
  images = x[train]
  mean, std = channel_stats(images)
  test_x, test_left, test_right = splits["test"][:3]
  return SharedInputData(
      train_inputs=images, train_targets=(y_left[train], y_right[train]),
      dev_inputs=x[dev], dev_targets=(y_left[dev], y_right[dev]),
      test_inputs=test_x, test_targets=(test_left, test_right),
      task_names=TASK_NAMES,
      task_kinds=("classification",) * 2,
      num_outputs=(NUM_CLASSES,) * 2,
      mean=mean, std=std,
      train_info={"left_source": src_left[train], "right_source": src_right[train]},
  ).validate()
