"""Tests of the embedded digits multi-task problem."""

import collections

import numpy as np
import pytest
from sklearn import datasets

from aux_jax.data.digits import TASK_NAMES, load_digits_multitask

RAW = datasets.load_digits()
RAW_X = np.round(RAW.images * (255 / 16)).astype(np.uint8)[..., None]
# Image bytes -> digits of the raw rows with that image (the set has duplicates).
LABELS_OF = collections.defaultdict(list)
for _x, _y in zip(RAW_X, RAW.target):
  LABELS_OF[_x.tobytes()].append(int(_y))


def _splits(d):
  """(name, images, labels) of every split; task splits cut to their counts."""
  out = [(d.task_names[t], d.train_images[t, :n], d.train_labels[t, :n])
         for t, n in enumerate(d.train_counts)]
  return out + [("dev", d.dev_images, d.dev_labels), ("test", d.test_images, d.test_labels)]


@pytest.fixture(scope="module")
def data():
  return load_digits_multitask(seed=0)


def test_shapes_names_and_sizes(data):
  assert data.task_names == TASK_NAMES
  np.testing.assert_array_equal(data.train_counts, [100, 350, 250, 250, 250])
  np.testing.assert_array_equal(data.num_classes, [10, 10, 2, 2, 10])
  assert data.train_images.shape == (5, 350, 8, 8, 1) and data.train_images.dtype == np.uint8
  assert data.dev_images.shape == (100, 8, 8, 1) and data.test_images.shape == (450, 8, 8, 1)
  all_x = np.concatenate([x for _, x, _ in _splits(data)])
  assert all_x.max() == 255 and all_x.min() == 0


def test_every_image_used_once(data):
  used = collections.Counter(x.tobytes() for _, xs, _ in _splits(data) for x in xs)
  for key, n in used.items():
    assert key in LABELS_OF, "an image is not a rescaled sklearn digit"
    assert n <= len(LABELS_OF[key]), "an image is used by two splits or twice"


def test_labels_follow_each_task_definition(data):
  rule = {"main_digit": lambda d: d, "aux_digit": lambda d: d, "dev": lambda d: d,
          "test": lambda d: d, "aux_parity": lambda d: d % 2, "aux_ge5": lambda d: int(d >= 5)}
  for name, xs, ys in _splits(data):
    if name == "aux_random":
      continue
    for x, y in zip(xs, ys):
      assert y in {rule[name](d) for d in LABELS_OF[x.tobytes()]}, name


def test_main_train_and_dev_are_balanced(data):
  np.testing.assert_array_equal(np.bincount(data.train_labels[0, :100], minlength=10), [10] * 10)
  np.testing.assert_array_equal(np.bincount(data.dev_labels, minlength=10), [10] * 10)


def test_random_task_is_noise_fixed_by_seed(data):
  n = data.train_counts[4]
  x, y = data.train_images[4, :n], data.train_labels[4, :n]
  true = np.array([LABELS_OF[im.tobytes()][0] for im in x])
  assert np.mean(true == y) < 0.25  # chance is 0.1; a real label would give ~1
  assert len(np.unique(y)) == 10
  again = load_digits_multitask(seed=0)
  np.testing.assert_array_equal(again.train_labels, data.train_labels)
  np.testing.assert_array_equal(again.test_images, data.test_images)
  other = load_digits_multitask(seed=1)
  assert not np.array_equal(other.train_labels[4], data.train_labels[4])


def test_sizes_are_checked():
  with pytest.raises(ValueError, match="more than the 1797"):
    load_digits_multitask(n_test=1500)
  with pytest.raises(ValueError, match="n_dev"):
    load_digits_multitask(n_dev=0)
  small = load_digits_multitask(n_train=20, n_aux_random=30)
  np.testing.assert_array_equal(small.train_counts, [20, 350, 250, 250, 30])


def test_tasks_option_drops_tasks_and_keeps_the_rest_identical(data):
  helpful = load_digits_multitask(seed=0, tasks=("aux_digit", "aux_parity", "aux_ge5"))
  assert helpful.task_names == TASK_NAMES[:4]
  keep = [0, 1, 2, 3]
  np.testing.assert_array_equal(helpful.train_counts, data.train_counts[keep])
  np.testing.assert_array_equal(helpful.num_classes, data.num_classes[keep])
  for t in keep:
    n = data.train_counts[t]
    np.testing.assert_array_equal(helpful.train_images[t, :n], data.train_images[t, :n])
    np.testing.assert_array_equal(helpful.train_labels[t, :n], data.train_labels[t, :n])
  np.testing.assert_array_equal(helpful.test_images, data.test_images)
  np.testing.assert_array_equal(helpful.mean, data.mean)  # normalisation unchanged
  only_random = load_digits_multitask(seed=0, tasks=("aux_random",))
  assert only_random.task_names == ("main_digit", "aux_random")
  with pytest.raises(ValueError, match="unknown auxiliary tasks"):
    load_digits_multitask(tasks=("aux_colour",))


def test_tasks_labelled_with_digits_share_the_main_head(data):
  # aux_digit and aux_random label digits: more labels of the main task (head 0).
  assert data.heads == (0, 0, 2, 3, 0)
  assert load_digits_multitask(seed=0, tasks=("aux_parity", "aux_random")).heads == (0, 1, 0)
  own = load_digits_multitask(seed=0, share_main_head=False)
  assert own.heads == (0, 1, 2, 3, 4)
  np.testing.assert_array_equal(own.train_labels, data.train_labels)  # same problem
