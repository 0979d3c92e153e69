"""Deterministic, jittable batch sampling: which rows each task's batch uses at a step.

Batches are a pure function of `(key, step)`, so a run resumed from a checkpoint at
step `s` sees exactly the batches the uninterrupted run would have seen; no iterator
state needs saving beyond the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _task_indices(key, step, task, count, batch_size: int, n_max: int):
  """Indices `i32[B]` of one task's batch at `step` (see `task_batch_indices`)."""
  steps_per_epoch = jnp.maximum(count // batch_size, 1)
  epoch = step // steps_per_epoch
  k = jax.random.fold_in(jax.random.fold_in(key, task), epoch)
  u = jax.random.uniform(k, (n_max,), jnp.float32)  # same order with x64 enabled
  # Padding rows get keys > 1, so they sort after every valid row.
  u = jnp.where(jnp.arange(n_max) < count, u, 2.0)
  perm = jnp.argsort(u).astype(jnp.int32)
  pos = (step % steps_per_epoch) * batch_size + jnp.arange(batch_size)
  # A no-op when count >= batch_size (pos < count); otherwise rows repeat.
  return perm[pos % jnp.maximum(count, 1)]


def task_batch_indices(key, step, counts, batch_size: int, n_max: int) -> jnp.ndarray:
  """Per-task batch indices: epochs of sampling without replacement, drop-last.

  Task `t` has `spe_t = counts[t] // B` steps per epoch. At step `s` it is in epoch
  `e_t = s // spe_t`, whose order is a permutation `π_{t, e_t}` of its first
  `counts[t]` rows, a pure function of `(key, t, e_t)`; the batch is
  `π_{t, e_t}[(s mod spe_t)·B : (s mod spe_t + 1)·B]`. The last `counts[t] mod B`
  rows of each permutation are dropped. If `counts[t] < B` (only then) a batch wraps
  around and repeats rows; `check_batch_size` rejects that on the host.

  Args:
    key: PRNG key of the data stream.
    step: int scalar (may be traced).
    counts: `i32[T]` valid rows per task (`MultiTaskData.train_counts`).
    batch_size: `B`, static.
    n_max: padded rows per task, static (`train_images.shape[1]`).

  Returns:
    `i32[T, B]`, each entry in `[0, counts[t])`.
  """
  counts = jnp.asarray(counts, jnp.int32)
  tasks = jnp.arange(counts.shape[0], dtype=jnp.int32)
  step = jnp.asarray(step, jnp.int32)
  return jax.vmap(_task_indices, in_axes=(None, None, 0, 0, None, None))(
      key, step, tasks, counts, batch_size, n_max
  )


def pool_batch_indices(key, step, count, batch_size: int, n_max: int | None = None):
  """Batch indices `i32[B]` from a single pool of `count` rows (e.g. the dev set).

  Same scheme as `task_batch_indices` with one task: epochs of `count // B` batches.

  Args:
    key: PRNG key.
    step: int scalar (may be traced).
    count: number of valid rows (int or i32 scalar).
    batch_size: `B`, static.
    n_max: rows of the pool, static; defaults to `count` (then `count` must be a
      Python int).

  Returns:
    `i32[B]`.
  """
  if n_max is None:
    n_max = int(count)
  counts = jnp.reshape(jnp.asarray(count, jnp.int32), (1,))
  return task_batch_indices(key, step, counts, batch_size, n_max)[0]


def check_batch_size(counts, batch_size: int, what: str = "task") -> None:
  """Host-side check that every pool holds at least one full batch.

  Raises:
    ValueError: naming the pools with fewer than `batch_size` rows.
  """
  counts = np.atleast_1d(np.asarray(counts))
  small = [(i, int(c)) for i, c in enumerate(counts) if c < batch_size]
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if small:
    raise ValueError(
        f"batch size {batch_size} is larger than {what}(s) "
        + ", ".join(f"{i} ({c} rows)" for i, c in small)
        + "; lower the batch size or use more data."
    )


def gather_task_batch(images, labels, indices):
  """Gathers per-task batches: `images[t, indices[t]]`.

  Args:
    images: `[T, N_max, ...]`.
    labels: `[T, N_max]`.
    indices: `i32[T, B]`.

  Returns:
    `(images [T, B, ...], labels [T, B])`.
  """
  take = jax.vmap(lambda a, i: jnp.take(a, i, axis=0))
  return take(images, indices), take(labels, indices)
