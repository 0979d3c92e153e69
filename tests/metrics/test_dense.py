"""Tests for aux_jax.metrics.dense against direct NumPy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.metrics import dense

C = 5


def _seg_data(seed, shape=(2, 6, 7)):
  rng = np.random.default_rng(seed)
  label = rng.integers(-1, C, size=shape)
  pred = np.where(rng.random(shape) < 0.5, label, rng.integers(0, C, size=shape))
  pred = np.where(pred < 0, 0, pred)
  return pred, label


def test_confusion_matrix_and_segmentation_metrics():
  pred, label = _seg_data(0)
  conf = np.asarray(jax.jit(dense.confusion_matrix, static_argnums=2)(
      jnp.asarray(pred), jnp.asarray(label), C))
  expected = np.zeros((C, C), int)
  for p, l in zip(pred.ravel(), label.ravel()):
    if l >= 0:
      expected[l, p] += 1
  np.testing.assert_array_equal(conf, expected)
  assert conf.dtype == np.int32

  m = dense.segmentation_metrics(jnp.asarray(conf))
  valid = label >= 0
  np.testing.assert_allclose(m["pixel_acc"], (pred == label)[valid].mean(), rtol=1e-6)
  ious = []
  for c in range(C):
    inter = np.sum((pred == c) & (label == c) & valid)
    union = np.sum(((pred == c) | (label == c)) & valid)
    if union:
      ious.append(inter / union)
  np.testing.assert_allclose(m["miou"], np.mean(ious), rtol=1e-6)


def test_confusion_matrix_accumulates_and_absent_classes_are_skipped():
  p1, l1 = _seg_data(1)
  p2, l2 = _seg_data(2)
  total = dense.confusion_matrix(jnp.asarray(p1), jnp.asarray(l1), C) + \
      dense.confusion_matrix(jnp.asarray(p2), jnp.asarray(l2), C)
  both = dense.confusion_matrix(
      jnp.asarray(np.stack([p1, p2])), jnp.asarray(np.stack([l1, l2])), C)
  np.testing.assert_array_equal(total, both)
  # Class 2 never appears: the mean runs over the 2 present classes only.
  m = dense.segmentation_metrics(jnp.asarray(
      dense.confusion_matrix(jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 1, -1]), 3)))
  np.testing.assert_allclose(m["miou"], (1 / 2 + 1 / 2) / 2, rtol=1e-6)
  np.testing.assert_allclose(m["pixel_acc"], 2 / 3, rtol=1e-6)
  empty = dense.segmentation_metrics(jnp.zeros((3, 3), jnp.int32))
  assert np.isnan(empty["miou"]) and np.isnan(empty["pixel_acc"])


def test_depth_errors():
  rng = np.random.default_rng(3)
  target = rng.uniform(0.5, 5.0, size=(2, 6, 7, 1)).astype(np.float32)
  target[rng.random(target.shape) < 0.3] = 0.0
  pred = (target + rng.normal(size=target.shape)).astype(np.float32)
  valid = target != 0
  sums = dense.depth_error_sums(jnp.asarray(pred), jnp.asarray(target))
  m = dense.depth_metrics(sums)
  diff = np.abs(pred - target)[valid]
  np.testing.assert_allclose(m["abs_err"], diff.mean(), rtol=1e-5)
  np.testing.assert_allclose(m["rel_err"], (diff / target[valid]).mean(), rtol=1e-5)
  # Sums over halves add up to the whole.
  halves = dense.depth_error_sums(pred[:1], target[:1]) + \
      dense.depth_error_sums(pred[1:], target[1:])
  np.testing.assert_allclose(halves, sums, rtol=1e-5)
  assert np.isnan(dense.depth_metrics(
      dense.depth_error_sums(pred, np.zeros_like(target)))["abs_err"])


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _normal_data(seed, shape=(2, 8, 9)):
  rng = np.random.default_rng(seed)
  target = _unit(rng.normal(size=shape + (3,)))
  pred = _unit(target + 0.6 * rng.normal(size=target.shape))
  target[rng.random(shape) < 0.25] = 0.0
  return pred.astype(np.float32), target.astype(np.float32)


def _numpy_normal_metrics(pred, target):
  valid = np.any(target != 0, axis=-1)
  cos = np.clip((pred.astype(np.float64) * target).sum(-1), -1, 1)
  err = np.degrees(np.arccos(cos))[valid]
  out = {"mean": err.mean(), "median": np.median(err)}
  out.update({f"within_{k}": np.mean(err < t) for k, t in
              [("11_25", 11.25), ("22_5", 22.5), ("30", 30.0)]})
  return out


@pytest.mark.parametrize("shape", [(2, 8, 9), (1, 3, 5)])  # even and odd counts
def test_normal_metrics_exact(shape):
  pred, target = _normal_data(4, shape)
  got = jax.jit(dense.normal_metrics)(pred, target)
  want = _numpy_normal_metrics(pred, target)
  assert set(got) == set(want)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4, err_msg=k)


def test_normal_stats_accumulate():
  p1, t1 = _normal_data(5)
  p2, t2 = _normal_data(6)
  stats = jax.tree.map(jnp.add, dense.normal_stats(p1, t1), dense.normal_stats(p2, t2))
  got = dense.normal_metrics_from_stats(stats)
  want = _numpy_normal_metrics(np.concatenate([p1, p2]), np.concatenate([t1, t2]))
  for k in want:
    tol = 180.0 / 3600 if k == "median" else 1e-4
    np.testing.assert_allclose(got[k], want[k], atol=tol, err_msg=k)
  assert int(stats.count) == np.sum(np.any(np.concatenate([t1, t2]) != 0, -1))
  empty = dense.normal_metrics_from_stats(dense.normal_stats(p1, np.zeros_like(t1)))
  assert all(np.isnan(v) for v in empty.values())


def test_shape_errors():
  with pytest.raises(ValueError):
    dense.confusion_matrix(jnp.zeros((2, 3), jnp.int32), jnp.zeros((3, 2), jnp.int32), 3)
  with pytest.raises(ValueError):
    dense.depth_error_sums(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
  with pytest.raises(ValueError):
    dense.normal_angle_errors(jnp.zeros((2, 2)), jnp.zeros((2, 2)))


def test_per_image_miou_as_auxilearn_on_hand_made_masks():
  """Image 1: label [[0, 0], [1, −1]], pred [[0, 1], [1, 2]]: class 0 IoU 1/2, class 1
  1/2, class 2 0/1 (the ignored pixel predicted 2 counts in its union) → 1/3, while
  the confusion matrix drops that pixel → 1/2. Image 2 perfect → 1. Mean over images."""
  label = np.array([[[0, 0], [1, -1]], [[2, 2], [0, 1]]])
  pred = np.array([[[0, 1], [1, 2]], [[2, 2], [0, 1]]])
  got = dense.per_image_segmentation(jnp.asarray(pred), jnp.asarray(label), 3)
  np.testing.assert_allclose(got["miou"], [1 / 3, 1.0], rtol=1e-6)
  np.testing.assert_allclose(got["pixel_acc"], [2 / 3, 1.0], rtol=1e-6)
  one = dense.segmentation_metrics(dense.confusion_matrix(
      jnp.asarray(pred[:1]), jnp.asarray(label[:1]), 3))
  np.testing.assert_allclose(one["miou"], 1 / 2, rtol=1e-6)
