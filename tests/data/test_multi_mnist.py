"""Tests of Multi-MNIST built from tfds mock MNIST."""

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aux_jax.data import get_dataset, tfds_source
from aux_jax.data.multi_mnist import load_multi_mnist

N = 60  # mock examples per split
S, SHIFT = 32, 1


@pytest.fixture(scope="module")
def loaded():
  with tfds.testing.mock_data(num_examples=N):
    mnist = {s: tfds_source.load_arrays("mnist", s) for s in ("train", "test")}
    data = get_dataset("multi_mnist", image_size=S, max_shift=SHIFT, dev_fraction=0.25,
                       seed=0)
    again = load_multi_mnist(image_size=S, max_shift=SHIFT, dev_fraction=0.25, seed=0)
    other = load_multi_mnist(image_size=S, max_shift=SHIFT, dev_fraction=0.25, seed=1,
                             max_train=20)
    default = load_multi_mnist(dev_fraction=0.25)
  return mnist, data, again, other, default


def _placements(digit, size, corners):
  """The digit pasted on an empty canvas at each corner."""
  out = []
  for r, c in corners:
    canvas = np.zeros((size, size, 1), np.uint8)
    canvas[r:r + 28, c:c + 28] = digit
    out.append(canvas)
  return out


def _corners(right, size=S, shift=SHIFT):
  """Allowed top-left corners of the left (up-left) or right (down-right) digit."""
  r = range(size - 28 - shift, size - 28 + 1) if right else range(shift + 1)
  return list(itertools.product(r, r))


def _is_overlay(image, left, right, size, shift):
  """Brute force: image == max(left at an up-left corner, right at a down-right one)."""
  lefts = _placements(left, size, _corners(False, size, shift))
  rights = _placements(right, size, _corners(True, size, shift))
  return any(np.array_equal(image, np.maximum(a, b)) for a in lefts for b in rights)


def _contained(image, digits, corners):
  """Rows j of `digits` that, placed at one of `corners`, lie pixelwise below `image`
  (a source digit of a max-overlay always does; a random mock digit never does)."""
  return [j for j, d in enumerate(digits)
          if any(np.all(image >= p) for p in _placements(d, len(image), corners))]


def test_overlay_is_max_of_shifted_digits(loaded):
  digits, labels = loaded[0]["train"]
  data = loaded[1]
  left, right = data.train_info["left_source"], data.train_info["right_source"]
  assert data.input_shape == (S, S, 1) and data.train_inputs.dtype == np.uint8
  assert np.all(left != right)
  for i in range(len(data.train_inputs)):
    assert _is_overlay(data.train_inputs[i], digits[left[i]], digits[right[i]], S, SHIFT), i
  np.testing.assert_array_equal(data.train_targets[0], labels["label"][left])
  np.testing.assert_array_equal(data.train_targets[1], labels["label"][right])


def test_pairing_and_splits(loaded):
  mnist, data, _, _, _ = loaded
  assert data.task_names == ("left", "right") and data.num_outputs == (10, 10)
  assert data.task_kinds == ("classification",) * 2
  assert (len(data.train_inputs), len(data.dev_inputs), len(data.test_inputs)) == (45, 15, N)
  # Each MNIST train image is the left digit of exactly one train/dev example, so the
  # dev examples' left digits are the 15 sources missing from train.
  left = data.train_info["left_source"]
  assert len(set(left)) == 45
  digits, labels = mnist["train"]
  dev_sources = np.setdiff1d(np.arange(N), left)
  found = []
  for x, y_left, y_right in zip(data.dev_inputs, *data.dev_targets):
    (j,) = _contained(x, digits, _corners(False))
    (k,) = _contained(x, digits, _corners(True))
    assert _is_overlay(x, digits[j], digits[k], S, SHIFT)
    assert (labels["label"][j], labels["label"][k]) == (y_left, y_right)
    found.append(j)
  np.testing.assert_array_equal(sorted(found), dev_sources)
  # Test composites: one per test image, in order, that image being the left digit.
  test_digits, test_labels = mnist["test"]
  np.testing.assert_array_equal(data.test_targets[0], test_labels["label"])
  assert sorted(data.test_targets[1]) == sorted(test_labels["label"])
  for i in range(0, N, 7):
    x = data.test_inputs[i]
    assert _contained(x, test_digits, _corners(False)) == [i]
    (k,) = _contained(x, test_digits, _corners(True))
    assert k != i and _is_overlay(x, test_digits[i], test_digits[k], S, SHIFT)
    assert test_labels["label"][k] == data.test_targets[1][i]
  flat = data.train_inputs.reshape(-1).astype(np.float64)
  np.testing.assert_allclose(data.mean, [flat.mean()], rtol=1e-5)
  np.testing.assert_allclose(data.std, [flat.std()], rtol=1e-4)


def test_deterministic_composites_and_seeded_split(loaded):
  _, data, again, other, default = loaded
  np.testing.assert_array_equal(data.train_inputs, again.train_inputs)
  np.testing.assert_array_equal(data.test_inputs, other.test_inputs)  # seed-free test set
  assert len(other.train_inputs) == 20
  # Same composite for the same left source, whatever the seed.
  pos = {s: i for i, s in enumerate(data.train_info["left_source"])}
  for i, s in enumerate(other.train_info["left_source"]):
    if s in pos:
      np.testing.assert_array_equal(other.train_inputs[i], data.train_inputs[pos[s]])
  assert default.input_shape == (36, 36, 1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=32, max_shift=2), "image_size"),
    (dict(max_shift=-1), "max_shift"),
    (dict(dev_fraction=0.0), "dev_fraction"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    load_multi_mnist(**kwargs)
