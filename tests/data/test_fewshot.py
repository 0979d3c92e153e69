"""Few-shot CIFAR-10 + CIFAR-100 loader on `tfds.testing.mock_data`, and the stratified
split it uses, checked against the raw arrays read directly."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aux_jax.data import get_dataset, tfds_source
from aux_jax.data.fewshot import load_cifar10_fewshot, stratified_split
from aux_jax.data.multitask import channel_stats

N = 300  # mock examples per split (random labels: ~30 per CIFAR-10 class)


@pytest.fixture(scope="module")
def loaded():
  """(data, data again, other seed, primary only, the raw mock arrays)."""
  with tfds.testing.mock_data(num_examples=N):
    kw = dict(data_dir="/unused", per_class=3, monitor_per_class=4)
    data = get_dataset("cifar10_fewshot", **kw, seed=0)
    again = load_cifar10_fewshot(**kw, seed=0)
    other = load_cifar10_fewshot(**kw, seed=1)
    primary = load_cifar10_fewshot(**kw, seed=0, primary_only=True)
    raw = {(name, split): tfds_source.load_arrays(name, split)
           for name, split in [("cifar10", "train"), ("cifar10", "test"),
                               ("cifar100", "train")]}
  return data, again, other, primary, raw


def _rows(images, pool):
  """Row of each image in ``pool`` (images are unique random arrays in the mock)."""
  index = {x.tobytes(): i for i, x in enumerate(pool)}
  assert len(index) == len(pool)
  return np.array([index[x.tobytes()] for x in images])


def test_splits_shapes_and_disjointness(loaded):
  data, _, _, _, raw = loaded
  x10, y10 = raw["cifar10", "train"][0], raw["cifar10", "train"][1]["label"]
  x100, y100 = raw["cifar100", "train"][0], raw["cifar100", "train"][1]["label"]
  assert data.task_names == ("cifar10", "cifar100")
  np.testing.assert_array_equal(data.num_classes, [10, 100])
  np.testing.assert_array_equal(data.train_counts, [30, N])
  assert data.train_images.shape == (2, N, 32, 32, 3)

  train = _rows(data.train_images[0, :30], x10)
  dev = _rows(data.dev_images, x10)
  np.testing.assert_array_equal(data.train_labels[0, :30], y10[train])
  np.testing.assert_array_equal(data.dev_labels, y10[dev])
  np.testing.assert_array_equal(np.bincount(y10[train], minlength=10), [3] * 10)
  np.testing.assert_array_equal(np.bincount(y10[dev], minlength=10), [4] * 10)
  assert not set(train) & set(dev), "the monitor set overlaps the primary training set"

  np.testing.assert_array_equal(data.train_images[1], x100)   # every auxiliary image
  np.testing.assert_array_equal(data.train_labels[1], y100)   # with its fine label
  np.testing.assert_array_equal(data.test_images, raw["cifar10", "test"][0])
  np.testing.assert_array_equal(data.test_labels, raw["cifar10", "test"][1]["label"])
  mean, std = channel_stats(x10)  # the whole CIFAR-10 training split
  np.testing.assert_allclose(data.mean, mean)
  np.testing.assert_allclose(data.std, std)


def test_determinism_and_primary_only(loaded):
  data, again, other, primary, _ = loaded
  for field in ("train_images", "train_labels", "dev_images", "dev_labels"):
    np.testing.assert_array_equal(getattr(again, field), getattr(data, field))
  assert not np.array_equal(other.train_images[0, :30], data.train_images[0, :30])
  # Without the auxiliary task: T = 1 and the same primary data and normalisation.
  assert primary.task_names == ("cifar10",) and primary.num_tasks == 1
  np.testing.assert_array_equal(primary.train_images[0, :30], data.train_images[0, :30])
  np.testing.assert_array_equal(primary.dev_images, data.dev_images)
  np.testing.assert_array_equal(primary.mean, data.mean)
  np.testing.assert_array_equal(primary.std, data.std)


def test_stratified_split_against_direct_counts():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 60)
  a, b = stratified_split(labels, 4, (2, np.array([1, 0, 3, 2])), seed=5)
  assert not set(a) & set(b)
  np.testing.assert_array_equal(np.bincount(labels[a], minlength=4), [2, 2, 2, 2])
  np.testing.assert_array_equal(np.bincount(labels[b], minlength=4), [1, 0, 3, 2])
  # Part 0 does not depend on the later parts' sizes.
  (a2,) = stratified_split(labels, 4, (2,), seed=5)
  np.testing.assert_array_equal(a2, a)
  with pytest.raises(ValueError, match="class 1 has"):
    stratified_split(labels, 4, (int(np.bincount(labels)[1]) + 1,), seed=0)


def test_bad_arguments():
  with pytest.raises(ValueError, match="per_class"):
    load_cifar10_fewshot(per_class=0)
  with pytest.raises(ValueError, match="unknown aux"):
    load_cifar10_fewshot(aux="imagenet")
  with tfds.testing.mock_data(num_examples=40):
    with pytest.raises(ValueError, match="fewer than"):
      load_cifar10_fewshot(per_class=15)
