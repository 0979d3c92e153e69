"""Tests of MultiTaskData helpers: preprocess, padding, channel statistics, validate."""

import dataclasses

import numpy as np
import pytest

from aux_jax.data import multitask


def _data(**overrides):
  rng = np.random.default_rng(0)
  x, y, n = multitask.pad_tasks(
      [rng.integers(0, 256, (5, 4, 4, 2), dtype=np.uint8),
       rng.integers(0, 256, (3, 4, 4, 2), dtype=np.uint8)],
      [np.array([0, 1, 2, 0, 1]), np.array([1, 0, 1])],
  )
  fields = dict(
      train_images=x, train_labels=y, train_counts=n, num_classes=np.array([3, 2], np.int32),
      dev_images=np.zeros((2, 4, 4, 2), np.uint8), dev_labels=np.array([0, 2], np.int32),
      test_images=np.zeros((3, 4, 4, 2), np.uint8), test_labels=np.array([1, 1, 0], np.int32),
      task_names=("main", "aux"), mean=np.array([1.0, 2.0], np.float32),
      std=np.array([3.0, 4.0], np.float32))
  fields.update(overrides)
  return multitask.MultiTaskData(**fields)


def test_pad_tasks_layout():
  d = _data()
  assert d.train_images.shape == (2, 5, 4, 4, 2)
  np.testing.assert_array_equal(d.train_counts, [5, 3])
  assert not d.train_images[1, 3:].any() and not d.train_labels[1, 3:].any()
  np.testing.assert_array_equal(d.train_labels[1, :3], [1, 0, 1])
  assert d.num_tasks == 2 and d.image_shape == (4, 4, 2) and d.num_classes_max == 3
  assert d.validate() is d


def test_preprocess_matches_numpy():
  d = _data()
  x = d.train_images[0]
  expected = (x.astype(np.float64) - [1.0, 2.0]) / [3.0, 4.0]
  out = np.asarray(d.preprocess(x))
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_channel_stats_matches_numpy():
  rng = np.random.default_rng(1)
  x = rng.integers(0, 256, (37, 3, 3, 3), dtype=np.uint8)
  mean, std = multitask.channel_stats(x, chunk=5)
  flat = x.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-6)
  np.testing.assert_allclose(std, flat.std(0), rtol=1e-5)
  _, std_const = multitask.channel_stats(np.full((2, 2, 2, 1), 9, np.uint8))
  np.testing.assert_array_equal(std_const, [1.0])


@pytest.mark.parametrize("change, match", [
    (dict(num_classes=np.array([3, 1], np.int32)), "num_classes"),
    (dict(dev_labels=np.array([0, 3], np.int32)), "dev labels"),
    (dict(task_names=("main",)), "task_names"),
    (dict(train_counts=np.array([5, 6], np.int32)), "train_counts"),
    (dict(test_images=np.zeros((3, 4, 5, 2), np.uint8)), "test_images"),
    (dict(std=np.array([1.0, 0.0], np.float32)), "std"),
    (dict(mean=np.zeros(3, np.float32)), "mean"),
    (dict(task_heads=(0,)), "task_heads"),
    (dict(task_heads=(1, 1)), "task_heads"),
    (dict(task_heads=(0, 0)), "shares head 0 but not its classes"),  # 3 vs 2 classes
])
def test_validate_rejects(change, match):
  with pytest.raises(ValueError, match=match):
    _data(**change).validate()


def test_task_heads_default_to_own_and_may_share_an_earlier_tasks_head():
  assert _data().heads == (0, 1)
  same = _data(num_classes=np.array([3, 3], np.int32), task_heads=(0, 0))
  assert same.validate().heads == (0, 0)
  with pytest.raises(ValueError, match="own head of an earlier task"):
    _data(num_classes=np.array([3, 3], np.int32), task_heads=(0, 2)).validate()


def test_validate_rejects_out_of_range_train_labels():
  d = _data()
  y = d.train_labels.copy()
  y[1, 2] = 2  # task 1 has 2 classes
  with pytest.raises(ValueError, match=r"task 1 \(aux\) labels"):
    dataclasses.replace(d, train_labels=y).validate()
