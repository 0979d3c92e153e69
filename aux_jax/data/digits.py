"""The embedded default problem: handwritten digits from scikit-learn as multi-task data.

The 1,797 UCI handwritten digits (8×8 grey, values 0..16) ship inside scikit-learn, so
this problem needs no download. Values are rescaled to `uint8` 0..255 (`round(v·255/16)`).

Tasks (task 0 is the main task; every task has its own images, all disjoint, and the
main task's dev and test images are never used by any other task):

| index | name           | classes | labels                         | head | role                  |
|-------|----------------|---------|--------------------------------|------|-----------------------|
| 0     | `main_digit`   | 10      | the digit                      | 0    | main, few labels      |
| 1     | `aux_digit`    | 10      | the digit (other images)       | 0    | helpful: more labels  |
| 2     | `aux_parity`   | 2       | digit mod 2                    | 2    | helpful: coarse digit |
| 3     | `aux_ge5`      | 2       | 1 if digit >= 5 else 0         | 3    | helpful: coarse digit |
| 4     | `aux_random`   | 10      | uniform random, fixed by seed  | 0    | harmful: noise        |

The two tasks labelled with digits are more labels for the main task from other
sources — a careful annotator (`aux_digit`) and one who guessed (`aux_random`) — so
they are trained through the main task's classifier (`MultiTaskData.task_heads`;
``share_main_head=False``: every task its own head). Under equal weights the guessed
labels pull the main classifier towards uniform predictions, so `aux_random` hurts the
main task, while the other three help; learned weights should find which is which.

The main task's train and dev sets are class-balanced (round-robin over the digits);
its test set and the auxiliary tasks' images are random draws from what is left.
"""

from __future__ import annotations

import numpy as np

from aux_jax.data.multitask import MultiTaskData, channel_stats, pad_tasks

TASK_NAMES = ("main_digit", "aux_digit", "aux_parity", "aux_ge5", "aux_random")
_NUM_CLASSES = (10, 10, 2, 2, 10)


def _balanced_take(rng, pool: np.ndarray, digits: np.ndarray, n: int):
  """Takes `n` rows of `pool`, round-robin over the classes; returns (taken, rest)."""
  per_class = [rng.permutation(pool[digits[pool] == d]) for d in range(10)]
  taken = []
  pos = 0
  while len(taken) < n:
    for cls in per_class:
      if pos < len(cls) and len(taken) < n:
        taken.append(cls[pos])
    pos += 1
    if pos > max(len(c) for c in per_class):
      break
  taken = np.array(taken, np.int64)
  return taken, np.setdiff1d(pool, taken)


def load_digits_multitask(
    seed: int = 0,
    n_train: int = 100,
    n_dev: int = 100,
    n_test: int = 450,
    n_aux_digit: int = 350,
    n_aux_parity: int = 250,
    n_aux_ge5: int = 250,
    n_aux_random: int = 250,
    primary_only: bool = False,
    tasks: tuple[str, ...] | None = None,
    share_main_head: bool = True,
) -> MultiTaskData:
  """Loads the digits multi-task problem (see the module docstring for the tasks).

  Args:
    seed: fixes the split and the random labels.
    n_train: main-task training images (few labels).
    n_dev: main-task dev images.
    n_test: main-task test images.
    n_aux_digit: images of `aux_digit`.
    n_aux_parity: images of `aux_parity`.
    n_aux_ge5: images of `aux_ge5`.
    n_aux_random: images of `aux_random`.
    primary_only: keep the main task only (T = 1; e.g. a fine-tuning phase, or a
      generated auxiliary task). The split, the labels and the normalisation are the
      same as with every task.
    tasks: the auxiliary tasks to keep, by name (None: all four). The split, the
      labels and the normalisation do not depend on it, so e.g. ``("aux_digit",
      "aux_parity", "aux_ge5")`` is the same problem without the harmful task (the
      oracle that knows which task hurts).
    share_main_head: the tasks labelled with digits (``aux_digit``, ``aux_random``)
      are trained through the main task's classifier, as more labels of the main
      task; False: every task through its own head.

  Returns:
    A validated `MultiTaskData` with 5 tasks of `u8[·, 8, 8, 1]` images.

  Raises:
    ValueError: if the sizes are not positive or exceed the 1,797 images, or `tasks`
      names an unknown task.
  """
  from sklearn import datasets  # Imported here: only this loader needs it.

  raw = datasets.load_digits()
  images = np.round(raw.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  digits = raw.target.astype(np.int32)
  sizes = dict(n_train=n_train, n_dev=n_dev, n_test=n_test, n_aux_digit=n_aux_digit,
               n_aux_parity=n_aux_parity, n_aux_ge5=n_aux_ge5, n_aux_random=n_aux_random)
  bad = [k for k, v in sizes.items() if int(v) < 1]
  if bad:
    raise ValueError(f"sizes must be >= 1: {bad}")
  if sum(sizes.values()) > len(images):
    raise ValueError(
        f"the sizes {sizes} sum to {sum(sizes.values())}, more than the "
        f"{len(images)} digits available"
    )

  rng = np.random.default_rng(seed)
  pool = np.arange(len(images))
  train, pool = _balanced_take(rng, pool, digits, n_train)
  dev, pool = _balanced_take(rng, pool, digits, n_dev)
  pool = rng.permutation(pool)
  cuts = np.cumsum([n_test, n_aux_digit, n_aux_parity, n_aux_ge5, n_aux_random])
  test, aux_digit, aux_parity, aux_ge5, aux_random = np.split(pool, cuts)[:5]

  random_labels = rng.integers(0, 10, size=len(aux_random)).astype(np.int32)
  task_rows = [train, aux_digit, aux_parity, aux_ge5, aux_random]
  task_labels = [
      digits[train],
      digits[aux_digit],
      digits[aux_parity] % 2,
      (digits[aux_ge5] >= 5).astype(np.int32),
      random_labels,
  ]
  mean, std = channel_stats(np.concatenate([images[r] for r in task_rows]))
  num_classes = np.array(_NUM_CLASSES, np.int32)
  keep = list(range(len(TASK_NAMES)))
  if tasks is not None:
    unknown = sorted(set(tasks) - set(TASK_NAMES[1:]))
    if unknown:
      raise ValueError(f"unknown auxiliary tasks {unknown}; known: {TASK_NAMES[1:]}")
    keep = [0] + [t for t in keep[1:] if TASK_NAMES[t] in tasks]
  if primary_only:
    keep = [0]
  task_rows = [task_rows[t] for t in keep]
  task_labels = [task_labels[t] for t in keep]
  names = tuple(TASK_NAMES[t] for t in keep)
  heads = tuple(0 if share_main_head and _NUM_CLASSES[TASK_NAMES.index(n)] == 10 else i
                for i, n in enumerate(names))
  num_classes = num_classes[keep]
  train_x, train_y, counts = pad_tasks([images[r] for r in task_rows], task_labels)
  return MultiTaskData(
      train_images=train_x,
      train_labels=train_y,
      train_counts=counts,
      num_classes=num_classes,
      dev_images=images[dev],
      dev_labels=digits[dev],
      test_images=images[test],
      test_labels=digits[test],
      task_names=names,
      mean=mean,
      std=std,
      task_heads=heads,
  ).validate()
