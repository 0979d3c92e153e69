"""Tests of SLGrad's toy regression generator, recomputed directly in NumPy."""

import numpy as np
import pytest

from aux_jax.data import get_dataset
from aux_jax.data.toy_regression import load_toy_regression

SPLITS = ("train", "dev", "test")


def _reference(seed, t, n, d, sigmas):
  """The documented draw order and formula, written out independently."""
  rng = np.random.default_rng(seed)
  b = rng.normal(0.0, 1.0, d)
  eps = rng.normal(0.0, np.sqrt(3.5), (t, d))
  x = rng.normal(0.0, 1.0, (n, d))
  y = np.stack([np.abs(sigmas[k] * np.tanh(x @ (b + eps[k]))) for k in range(t)])
  perm = rng.permutation(n)
  return rng, x, y, perm


def _split(data, name):
  return getattr(data, f"{name}_inputs"), getattr(data, f"{name}_targets")


@pytest.mark.parametrize("kind", ["replace", "constant", "gaussian"])
def test_matches_formula_splits_and_noise(kind):
  t, n, d, sig = 3, 50, 7, np.array([1.0, 2.0, 0.5])
  data = load_toy_regression(num_tasks=t, num_samples=n, input_dim=d, noise=0.2,
                             noise_kind=kind, sigmas=sig, seed=3, noise_tasks="main")
  rng, x, y, perm = _reference(3, t, n, d, sig)
  assert data.task_names == ("main", "aux1", "aux2")
  assert data.task_kinds == ("regression",) * 3 and data.num_outputs == (1, 1, 1)
  assert data.mean is None and data.std is None
  bounds = {"train": (0, 30), "dev": (30, 40), "test": (40, 50)}
  for split, (lo, hi) in bounds.items():
    xs, ys = _split(data, split)
    assert xs.shape == (hi - lo, d) and xs.dtype == np.float32
    rows = perm[lo:hi]
    np.testing.assert_allclose(xs, x[rows], rtol=1e-6)
    for k in range(t):
      assert ys[k].shape == (hi - lo, 1) and ys[k].dtype == np.float32
      if split == "train" and k == 0:
        continue
      np.testing.assert_allclose(ys[k][:, 0], y[k, rows], rtol=1e-6, atol=1e-7)

  # Main training targets: exactly round(0.2 * 30) = 6 replaced, the rest clean.
  noisy = data.train_info["noisy"]
  assert noisy.dtype == bool and noisy.sum() == 6
  clean_main = y[0, perm[:30]]
  got = data.train_targets[0][:, 0]
  np.testing.assert_allclose(got[~noisy], clean_main[~noisy], rtol=1e-6, atol=1e-7)
  noise_rows = rng.choice(30, 6, replace=False)
  assert set(noise_rows) == set(np.flatnonzero(noisy))
  if kind == "replace":
    want = rng.normal(0.0, clean_main.std(), 6)
  elif kind == "gaussian":
    want = rng.normal(0.0, 0.2, 6)
  else:
    want = np.full(6, -0.5)
  np.testing.assert_allclose(got[noise_rows], want, rtol=1e-6, atol=1e-7)


def test_original_noise_constant_on_every_task_by_default():
  """The default (the original's add_noise: type "Random" = −0.5, onlymain=False):
  every task gets round(noise · N_train) of its own rows replaced by −0.5; the
  inputs, splits and other targets are those of the main-only option."""
  t, n, d = 3, 50, 7
  data = load_toy_regression(num_tasks=t, num_samples=n, input_dim=d, noise=0.2, seed=3)
  main = load_toy_regression(num_tasks=t, num_samples=n, input_dim=d, noise=0.2, seed=3,
                             noise_tasks="main", noise_kind="replace")
  rng, x, y, perm = _reference(3, t, n, d, np.ones(t))
  noisy = data.train_info["noisy_tasks"]
  assert noisy.shape == (30, t) and list(noisy.sum(0)) == [6] * t
  np.testing.assert_array_equal(data.train_info["noisy"], noisy[:, 0])
  for k in range(t):   # the NumPy statement: each task its own draw, then −0.5
    rows = rng.choice(30, 6, replace=False)
    assert set(rows) == set(np.flatnonzero(noisy[:, k]))
    got = data.train_targets[k][:, 0]
    np.testing.assert_array_equal(got[rows], np.float32(-0.5))
    np.testing.assert_allclose(got[~noisy[:, k]], y[k, perm[:30]][~noisy[:, k]], rtol=1e-6,
                               atol=1e-7)
  # The option changes the noise only.
  np.testing.assert_array_equal(data.train_inputs, main.train_inputs)
  for s in ("dev", "test"):
    for a, b in zip(_split(data, s)[1], _split(main, s)[1]):
      np.testing.assert_array_equal(a, b)
  assert not main.train_info["noisy_tasks"][:, 1:].any()


def test_default_sizes_and_noise_fraction():
  data = get_dataset("toy_regression", noise=0.3, seed=1)
  assert data.num_tasks == 2 and data.input_shape == (250,)
  assert [len(_split(data, s)[0]) for s in SPLITS] == [600, 200, 200]
  assert data.train_info["noisy"].sum() == 180
  # Clean targets are |σ tanh(·)| in [0, 1]; dev and test stay clean.
  for split in ("dev", "test"):
    for y in _split(data, split)[1]:
      assert y.min() >= 0 and y.max() <= 1
  # The splits are disjoint draws of x.
  rows = {r.tobytes() for s in SPLITS for r in _split(data, s)[0]}
  assert len(rows) == 1000


def test_deterministic_in_seed():
  a = load_toy_regression(num_samples=40, input_dim=5, noise=0.5, seed=0)
  b = load_toy_regression(num_samples=40, input_dim=5, noise=0.5, seed=0)
  c = load_toy_regression(num_samples=40, input_dim=5, noise=0.5, seed=1)
  for s in SPLITS:
    np.testing.assert_array_equal(_split(a, s)[0], _split(b, s)[0])
    for ya, yb in zip(_split(a, s)[1], _split(b, s)[1]):
      np.testing.assert_array_equal(ya, yb)
  np.testing.assert_array_equal(a.train_info["noisy"], b.train_info["noisy"])
  assert not np.array_equal(a.train_inputs, c.train_inputs)


def test_zero_noise_marks_nothing():
  data = load_toy_regression(num_samples=20, input_dim=3)
  assert not data.train_info["noisy"].any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(noise=1.5), "noise"),
    (dict(noise_kind="flip"), "noise_kind"),
    (dict(noise_tasks="aux"), "noise_tasks"),
    (dict(num_tasks=3, sigmas=(1.0, 1.0)), "sigmas"),
    (dict(num_samples=3), "num_samples"),
    (dict(num_tasks=0), "num_tasks"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    load_toy_regression(**kwargs)
