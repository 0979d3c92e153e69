"""Single-task CIFAR-10 and Oxford-IIIT Pet loaders on tfds.testing.mock_data."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from aux_jax.data import get_dataset, tfds_images, tfds_source

N_TRAIN = 50


def _raw(name, split):
  """Every example's image (as stored) and label, read straight from the data source."""
  (source,), _ = tfds_source.open_sources(name, [split])
  return ([np.asarray(source[i]["image"]) for i in range(len(source))],
          np.array([int(source[i]["label"]) for i in range(len(source))]))


def _by_bytes(images, labels):
  out = {x.tobytes(): int(y) for x, y in zip(images, labels)}
  assert len(out) == len(images), "an image appears twice"
  return out


def test_cifar10_split_shapes_stats_and_disjointness():
  with tfds.testing.mock_data(num_examples=N_TRAIN):
    data = get_dataset("cifar10", dev_fraction=0.2, seed=3)
    raw_x, raw_y = _raw("cifar10", "train")
    test_x, test_y = _raw("cifar10", "test")
  assert data.num_tasks == 1 and data.image_shape == (32, 32, 3)
  np.testing.assert_array_equal(data.num_classes, [10])
  assert data.train_images.shape == (1, 40, 32, 32, 3) and data.dev_images.shape[0] == 10
  np.testing.assert_array_equal(data.train_counts, [40])
  assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int32

  # dev = the documented seeded permutation's first 20%, train the rest, in row order.
  perm = np.random.default_rng(3).permutation(N_TRAIN)
  dev_rows, train_rows = np.sort(perm[:10]), np.sort(perm[10:])
  np.testing.assert_array_equal(data.dev_images, np.stack([raw_x[i] for i in dev_rows]))
  np.testing.assert_array_equal(data.dev_labels, raw_y[dev_rows])
  np.testing.assert_array_equal(data.train_labels[0], raw_y[train_rows])
  train = _by_bytes(data.train_images[0], data.train_labels[0])
  dev = _by_bytes(data.dev_images, data.dev_labels)
  assert not set(train) & set(dev)
  assert {**train, **dev} == _by_bytes(raw_x, raw_y)
  assert _by_bytes(data.test_images, data.test_labels) == _by_bytes(test_x, test_y)

  flat = data.train_images[0].reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(data.mean, flat.mean(0), rtol=1e-5)
  np.testing.assert_allclose(data.std, flat.std(0), rtol=1e-4)


def test_cifar10_is_deterministic_and_seeded():
  with tfds.testing.mock_data(num_examples=N_TRAIN):
    a = tfds_images.load_cifar10(dev_fraction=0.2, seed=0)
    b = tfds_images.load_cifar10(dev_fraction=0.2, seed=0)
    c = tfds_images.load_cifar10(dev_fraction=0.2, seed=1)
  for field in ("train_images", "train_labels", "dev_images", "dev_labels", "mean"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
  assert set(_by_bytes(a.dev_images, a.dev_labels)) != set(
      _by_bytes(c.dev_images, c.dev_labels))


def test_max_train_keeps_a_seeded_subset_of_the_non_dev_rows():
  with tfds.testing.mock_data(num_examples=N_TRAIN):
    full = tfds_images.load_cifar10(dev_fraction=0.1, seed=2)
    small = tfds_images.load_cifar10(dev_fraction=0.1, seed=2, max_train=7)
  np.testing.assert_array_equal(small.train_counts, [7])
  np.testing.assert_array_equal(small.dev_images, full.dev_images)  # same dev set
  assert set(_by_bytes(small.train_images[0], small.train_labels[0])) <= set(
      _by_bytes(full.train_images[0], full.train_labels[0]))
  flat = small.train_images[0].reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(small.mean, flat.mean(0), rtol=1e-5)  # stats of kept rows


def test_oxford_pet_resizes_and_uses_breed_labels():
  size = 12
  with tfds.testing.mock_data(num_examples=20):
    data = get_dataset("oxford_pet", image_size=size, dev_fraction=0.25, seed=0)
    raw_x, raw_y = _raw("oxford_iiit_pet", "train")
    _, test_y = _raw("oxford_iiit_pet", "test")
  assert {x.shape for x in raw_x} != {(size, size, 3)}  # the mock's sizes vary
  assert data.num_tasks == 1 and data.image_shape == (size, size, 3)
  np.testing.assert_array_equal(data.num_classes, [37])
  assert data.dev_images.shape == (5, size, size, 3)
  assert data.test_images.shape == (20, size, size, 3)
  np.testing.assert_array_equal(data.test_labels, test_y)
  perm = np.random.default_rng(0).permutation(20)
  dev_rows, train_rows = np.sort(perm[:5]), np.sort(perm[5:])
  np.testing.assert_array_equal(data.dev_labels, raw_y[dev_rows])
  np.testing.assert_array_equal(data.train_labels[0], raw_y[train_rows])
  # Each image is its raw image resized bilinearly (antialiased) to size × size.
  for got, r in ((data.dev_images[0], dev_rows[0]), (data.train_images[0, -1], train_rows[-1])):
    want = jax.image.resize(raw_x[r].astype(np.float32), (size, size, 3), "bilinear",
                            antialias=True)
    # Pillow's bilinear filter and jax.image's agree to one grey level.
    np.testing.assert_allclose(got, np.clip(np.rint(np.asarray(want)), 0, 255), atol=1)
  # AuxiLearn's protocol: at most k per breed, then a meta-validation set moved out.
  with tfds.testing.mock_data(num_examples=20):
    pet = get_dataset("oxford_pet", image_size=size, dev_fraction=0.25, seed=0,
                      per_class=1, meta_size=2)
  n = int(pet.train_counts[0])
  assert len(pet.meta_labels) == 2 and n == len(np.unique(raw_y[train_rows])) - 2
  both = np.concatenate([pet.train_labels[0, :n], pet.meta_labels])
  assert len(np.unique(both)) == len(both)  # one image per breed, disjoint sets


def test_bad_arguments():
  with pytest.raises(ValueError, match="dev_fraction"):
    tfds_images.load_cifar10(dev_fraction=1.0)
  with pytest.raises(ValueError, match="image_size"):
    tfds_images.load_oxford_pet(image_size=0)
  with pytest.raises(ValueError, match="max_train"):
    tfds_images.split_dev(10, 0.1, 0, max_train=0)
  with pytest.raises(ValueError, match="leaves none"):
    tfds_images.split_dev(1, 0.5, 0)
  train, dev = tfds_images.split_dev(10, 0.3, 0)
  assert len(dev) == 3 and len(train) == 7 and not set(train) & set(dev)
  np.testing.assert_array_equal(np.sort(np.concatenate([train, dev])), np.arange(10))


def test_per_class_subset_keeps_at_most_k_rows_per_class():
  from aux_jax.data.tfds_images import per_class_subset
  labels = np.array([0, 1, 0, 2, 0, 1, 0, 2, 2, 2])
  rows = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8])  # row 9 held out
  kept = per_class_subset(labels, rows, 2, seed=0)
  assert np.all(np.diff(kept) > 0) and set(kept) <= set(rows)
  counts = np.bincount(labels[kept], minlength=3)
  np.testing.assert_array_equal(counts, [2, 2, 2])


def test_subclass_task_carries_a_meta_validation_set():
  from aux_jax.data.multitask import MultiTaskData
  from aux_jax.data.shared_input import with_subclass_task
  x = np.zeros((1, 6, 2, 2, 3), np.uint8)
  data = MultiTaskData(
      train_images=x, train_labels=np.array([[0, 1, 2, 0, 1, 2]], np.int32),
      train_counts=np.array([6], np.int32), num_classes=np.array([3], np.int32),
      dev_images=x[0, :2], dev_labels=np.array([0, 1], np.int32), test_images=x[0, :2],
      test_labels=np.array([0, 1], np.int32), task_names=("main",),
      mean=np.zeros(3, np.float32), std=np.ones(3, np.float32),
      meta_images=x[0, :3], meta_labels=np.array([2, 1, 0], np.int32))
  shared = with_subclass_task(data, 2)
  assert shared.meta_inputs.shape == (3, 2, 2, 3)
  np.testing.assert_array_equal(shared.meta_targets[0], [2, 1, 0])
  np.testing.assert_allclose(shared.meta_targets[1][0], [0, 0, 0, 0, 0.5, 0.5])


def test_imagenet_normalization_changes_only_mean_and_std():
  with tfds.testing.mock_data(num_examples=12):
    a = get_dataset("oxford_pet", image_size=8, dev_fraction=0.25, seed=0)
    b = get_dataset("oxford_pet", image_size=8, dev_fraction=0.25, seed=0,
                    normalization="imagenet")
  np.testing.assert_allclose(b.mean, 255 * np.array([0.485, 0.456, 0.406]), rtol=1e-6)
  np.testing.assert_allclose(b.std, 255 * np.array([0.229, 0.224, 0.225]), rtol=1e-6)
  assert not np.allclose(a.mean, b.mean)
  for f in ("train_images", "train_labels", "dev_images", "dev_labels", "test_images",
            "test_labels"):
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
  with pytest.raises(ValueError, match="normalization"):
    tfds_images.load_oxford_pet(normalization="nope")
