"""Tests of CIFAR-10 one-vs-rest with main-task label noise, on tfds mock data."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aux_jax.data import get_dataset, tfds_source
from aux_jax.data.cifar10_ovr import CLASS_NAMES, flip_labels, load_cifar10_ovr

N = 200  # mock examples per split


def _labels_by_image(split):
  """Image bytes -> class, read straight from the (mocked) TFDS split."""
  images, labels = tfds_source.load_arrays("cifar10", split)
  out = {x.tobytes(): int(y) for x, y in zip(images, labels["label"])}
  assert len(out) == len(images), "mock images repeat"
  return out


@pytest.fixture(scope="module")
def loaded():
  with tfds.testing.mock_data(num_examples=N):
    truth = {s: _labels_by_image(s) for s in ("train", "test")}
    data = {
        kind: get_dataset("cifar10_ovr", main_class=3, noise=0.3, noise_kind=kind,
                          dev_fraction=0.25, seed=0)
        for kind in ("uniform", "background")
    }
    data["clean"] = load_cifar10_ovr(main_class=3, dev_fraction=0.25, seed=0)
    data["again"] = load_cifar10_ovr(main_class=3, noise=0.3, dev_fraction=0.25, seed=0)
    data["seed1"] = load_cifar10_ovr(main_class=3, noise=0.3, dev_fraction=0.25, seed=1)
    data["small"] = load_cifar10_ovr(dev_fraction=0.25, max_train=40)
  return truth, data


def _classes(main):
  return [main] + [c for c in range(10) if c != main]


def _check_targets(images, targets, truth, classes, skip_main_rows=None):
  """Task t's target == (true class == classes[t]); exactly one positive per row."""
  y = np.stack(targets)                                   # [T, N]
  true = np.array([truth[x.tobytes()] for x in images])
  want = np.stack([(true == c).astype(np.int32) for c in classes])
  if skip_main_rows is not None:
    keep = ~skip_main_rows
    np.testing.assert_array_equal(y[0, keep], want[0, keep])
    np.testing.assert_array_equal(y[1:], want[1:])
    np.testing.assert_array_equal(y[:, keep].sum(0), 1)
  else:
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(y.sum(0), 1)


def test_shapes_names_and_clean_semantics(loaded):
  truth, data = loaded
  d = data["clean"]
  assert d.task_names[0] == "cat" and d.task_names == tuple(CLASS_NAMES[c] for c in _classes(3))
  assert d.task_kinds == ("classification",) * 10 and d.num_outputs == (2,) * 10
  assert d.input_shape == (32, 32, 3) and d.train_inputs.dtype == np.uint8
  assert (len(d.train_inputs), len(d.dev_inputs), len(d.test_inputs)) == (150, 50, N)
  for split in ("train", "dev"):
    _check_targets(getattr(d, f"{split}_inputs"), getattr(d, f"{split}_targets"),
                   truth["train"], _classes(3))
  _check_targets(d.test_inputs, d.test_targets, truth["test"], _classes(3))
  # Train and dev are disjoint and together the whole train split.
  rows = {x.tobytes() for x in np.concatenate([d.train_inputs, d.dev_inputs])}
  assert rows == set(truth["train"])
  assert not d.train_info["noisy"].any()
  flat = d.train_inputs.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(d.mean, flat.mean(0), rtol=1e-5)
  np.testing.assert_allclose(d.std, flat.std(0), rtol=1e-4)


def test_uniform_noise_flips_main_training_labels_only(loaded):
  truth, data = loaded
  d, clean = data["uniform"], data["clean"]
  noisy = d.train_info["noisy"]
  assert noisy.sum() == round(0.3 * 150)
  np.testing.assert_array_equal(d.train_inputs, clean.train_inputs)
  np.testing.assert_array_equal(d.train_targets[0][noisy], 1 - clean.train_targets[0][noisy])
  _check_targets(d.train_inputs, d.train_targets, truth["train"], _classes(3), noisy)
  for split in ("dev", "test"):
    for a, b in zip(getattr(d, f"{split}_targets"), getattr(clean, f"{split}_targets")):
      np.testing.assert_array_equal(a, b)


def test_background_noise_turns_positives_to_zero(loaded):
  truth, data = loaded
  d, clean = data["background"], data["clean"]
  noisy = d.train_info["noisy"]
  positives = clean.train_targets[0] == 1
  assert noisy.sum() == round(0.3 * positives.sum()) > 0
  assert positives[noisy].all()
  np.testing.assert_array_equal(d.train_targets[0][noisy], 0)
  np.testing.assert_array_equal(d.train_targets[0][~noisy], clean.train_targets[0][~noisy])
  _check_targets(d.train_inputs, d.train_targets, truth["train"], _classes(3), noisy)


def test_deterministic_in_seed_and_max_train(loaded):
  _, data = loaded
  a, b, c = data["uniform"], data["again"], data["seed1"]
  np.testing.assert_array_equal(a.train_inputs, b.train_inputs)
  np.testing.assert_array_equal(a.train_info["noisy"], b.train_info["noisy"])
  assert not np.array_equal(a.dev_inputs, c.dev_inputs)
  s = data["small"]
  assert len(s.train_inputs) == 40 and len(s.dev_inputs) == 50
  assert s.task_names[0] == "airplane"


def test_flip_rates_on_large_label_sets():
  rng = np.random.default_rng(0)
  y = (rng.random(10_000) < 0.1).astype(np.int32)
  out, corrupted = flip_labels(y, 0.25, "uniform", np.random.default_rng(1))
  assert corrupted.mean() == 0.25 and np.all((out != y) == corrupted)
  out, corrupted = flip_labels(y, 0.25, "background", np.random.default_rng(1))
  assert corrupted.sum() == round(0.25 * y.sum()) and np.all(out[corrupted] == 0)
  assert np.all((out != y) == corrupted)


@pytest.mark.parametrize("kwargs, match", [
    (dict(main_class=10), "main_class"),
    (dict(noise=-0.1), "noise"),
    (dict(noise_kind="pairs"), "noise_kind"),
    (dict(dev_fraction=1.0), "dev_fraction"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    load_cifar10_ovr(**kwargs)
