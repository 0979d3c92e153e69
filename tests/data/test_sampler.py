"""Tests of the deterministic epoch sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.data import sampler

COUNTS = np.array([10, 23, 7], np.int32)
B, N_MAX = 3, 25

# One compilation per static (batch size, pool size); eager vmap dispatch is slow.
_jitted = jax.jit(sampler.task_batch_indices, static_argnums=(3, 4))


def _indices(key, step, counts=COUNTS, b=B, n_max=N_MAX):
  return np.asarray(_jitted(key, step, counts, b, n_max))


def test_epochs_sample_without_replacement_and_stay_in_range():
  key = jax.random.key(0)
  for t, count in enumerate(COUNTS):
    spe = count // B
    for epoch in range(3):
      rows = np.concatenate([_indices(key, epoch * spe + j)[t] for j in range(spe)])
      assert len(rows) == spe * B
      assert len(np.unique(rows)) == len(rows), "an index repeats within an epoch"
      assert rows.min() >= 0 and rows.max() < count


def test_deterministic_given_key_and_step():
  key = jax.random.key(1)
  a = _indices(key, 17)
  np.testing.assert_array_equal(a, _indices(key, jnp.int32(17)))
  assert not np.array_equal(a, _indices(jax.random.key(2), 17))


def test_different_epochs_use_different_permutations():
  key = jax.random.key(0)
  counts = np.array([24], np.int32)  # 8 steps per epoch, no dropped rows
  def epoch_order(e):
    return np.concatenate([_indices(key, 8 * e + j, counts, 3, 24)[0] for j in range(8)])
  orders = [epoch_order(e) for e in range(3)]
  for o in orders:
    np.testing.assert_array_equal(np.sort(o), np.arange(24))
  assert not np.array_equal(orders[0], orders[1])
  assert not np.array_equal(orders[1], orders[2])


def test_tasks_differ_and_padding_never_sampled():
  key = jax.random.key(3)
  counts = np.array([12, 12], np.int32)
  a = np.stack([_indices(key, s, counts, 4, 30) for s in range(3)], axis=1)  # [T, 3, B]
  assert a.max() < 12
  assert not np.array_equal(a[0], a[1]), "tasks must not share a permutation"


def test_batch_larger_than_pool_wraps_within_count():
  idx = _indices(jax.random.key(0), 5, np.array([3], np.int32), 8, 10)
  assert idx.shape == (1, 8) and idx.max() < 3 and idx.min() >= 0


def test_pool_batch_indices_matches_single_task():
  key = jax.random.key(4)
  for step in (0, 1, 5):
    p = np.asarray(jax.jit(sampler.pool_batch_indices, static_argnums=(2, 3))(
        key, step, 125, 100))
    t = _indices(key, step, np.array([125], np.int32), 100, 125)[0]
    np.testing.assert_array_equal(p, t)
    assert len(np.unique(p)) == 100 and p.max() < 125


def test_check_batch_size_names_small_pools():
  sampler.check_batch_size(COUNTS, 7)
  with pytest.raises(ValueError, match=r"2 \(7 rows\)"):
    sampler.check_batch_size(COUNTS, 8)


def test_gather_task_batch_matches_numpy():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (3, 25, 2, 2, 1), dtype=np.uint8)
  labels = rng.integers(0, 5, (3, 25)).astype(np.int32)
  idx = _indices(jax.random.key(0), 4)
  x, y = sampler.gather_task_batch(images, labels, idx)
  for t in range(3):
    np.testing.assert_array_equal(np.asarray(x)[t], images[t, idx[t]])
    np.testing.assert_array_equal(np.asarray(y)[t], labels[t, idx[t]])
