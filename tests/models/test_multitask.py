"""Tests of the multi-task forward pass (per-task BatchNorm) and the masked loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.losses import masked_cross_entropy
from aux_jax.models import SmallCNN, multitask_features, single_features

T, B = 3, 4
MODEL = SmallCNN(width=3, features=5)


@pytest.fixture(scope="module")
def setup():
  scale = jnp.arange(1, T + 1, dtype=jnp.float32).reshape(T, 1, 1, 1, 1)
  x = jax.random.normal(jax.random.key(0), (T, B, 8, 8, 1)) * scale
  variables = jax.jit(lambda k: MODEL.init(k, x[0], train=False))(jax.random.key(1))
  # Non-trivial running statistics, so eval mode differs from train mode.
  variables = dict(variables, batch_stats=jax.tree.map(lambda s: s + 0.3, variables["batch_stats"]))
  return x, variables


def test_train_mode_equals_separate_per_task_passes(setup):
  x, variables = setup
  feats, stats = jax.jit(lambda v, x: multitask_features(MODEL, v, x, True))(variables, x)
  assert feats.shape == (T, B, 5)
  for t in range(T):
    ref, upd = MODEL.apply(variables, x[t], train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(feats[t], ref, rtol=1e-5, atol=1e-6)
    if t == 0:  # running statistics: the main task's update only
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                   stats, upd["batch_stats"])
  # A joint pass over all T*B images normalises differently (the test can fail).
  joint, joint_upd = MODEL.apply(variables, x.reshape((T * B, 8, 8, 1)), train=True,
                                 mutable=["batch_stats"])
  assert not np.allclose(feats.reshape(T * B, 5), joint, atol=1e-3)
  assert not np.allclose(stats["block1"]["bn"]["mean"],
                         joint_upd["batch_stats"]["block1"]["bn"]["mean"])


def test_gradients_equal_separate_passes(setup):
  x, variables = setup
  w = jax.random.normal(jax.random.key(2), (T, B, 5))

  def loss(params):
    feats, _ = multitask_features(MODEL, dict(variables, params=params), x, True)
    return jnp.sum(feats * w)

  def loss_ref(params):
    v = dict(variables, params=params)
    return sum(jnp.sum(MODEL.apply(v, x[t], train=True, mutable=["batch_stats"])[0] * w[t])
               for t in range(T))

  g = jax.jit(jax.grad(loss))(variables["params"])
  g_ref = jax.jit(jax.grad(loss_ref))(variables["params"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g, g_ref)


def test_eval_mode_uses_running_averages(setup):
  x, variables = setup
  feats, stats = multitask_features(MODEL, variables, x, False)
  assert stats is None
  for t in range(T):
    np.testing.assert_allclose(feats[t], MODEL.apply(variables, x[t], train=False),
                               rtol=1e-5, atol=1e-6)
  one, one_stats = single_features(MODEL, variables, x[1], True)
  ref, upd = MODEL.apply(variables, x[1], train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(one, ref, rtol=1e-6)
  np.testing.assert_allclose(one_stats["block2"]["bn"]["var"],
                             upd["batch_stats"]["block2"]["bn"]["var"])


def _ce_numpy(logits, label, c):
  z = logits[:c].astype(np.float64)
  return np.log(np.sum(np.exp(z - z.max()))) + z.max() - z[label]


def test_masked_cross_entropy_matches_numpy():
  logits = jax.random.normal(jax.random.key(0), (2, 3, 6)) * 3
  labels = jnp.array([[0, 4, 2], [1, 0, 1]])
  num_classes = jnp.array([5, 2])
  out = masked_cross_entropy(logits, labels, num_classes[:, None])
  assert out.shape == (2, 3)
  for t in range(2):
    for b in range(3):
      ref = _ce_numpy(np.asarray(logits[t, b]), int(labels[t, b]), int(num_classes[t]))
      np.testing.assert_allclose(out[t, b], ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(masked_cross_entropy(logits[0], labels[0], 5), out[0], rtol=1e-6)


def test_masked_cross_entropy_derivatives_are_finite_and_ignore_masked_logits():
  logits = jax.random.normal(jax.random.key(0), (4, 6))
  labels = jnp.array([0, 1, 1, 0])
  f = lambda z: jnp.sum(masked_cross_entropy(z, labels, 2))
  g = jax.jit(jax.grad(f))(logits)
  assert np.all(np.isfinite(g)) and not np.any(g[:, 2:])
  # Forward-over-reverse (Hessian-vector products, as the hypergradients use).
  hvp = jax.jit(lambda z: jax.jvp(jax.grad(f), (z,), (jnp.ones_like(z),))[1])(logits)
  assert np.all(np.isfinite(hvp)) and not np.any(hvp[:, 2:])
  # Masked logits do not change the loss.
  f = jax.jit(f)
  np.testing.assert_allclose(f(logits.at[:, 2:].set(100.0)), f(logits), rtol=1e-6)


def test_bn_stats_all_folds_every_chunk_in_task_order(setup):
  """"all" equals T sequential train-mode passes (the original's per-task forwards);
  the first block's mean also against NumPy: r ← 0.9 r + 0.1 μ_t, t = 0..T−1."""
  x, variables = setup
  _, stats = multitask_features(MODEL, variables, x, True, bn_stats="all")
  v = variables
  for t in range(T):
    _, upd = MODEL.apply(v, x[t], train=True, mutable=["batch_stats"])
    v = dict(v, batch_stats=upd["batch_stats"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               stats, v["batch_stats"])
  # NumPy: the first conv's per-chunk channel means (conv has no bias: linear in x).
  kernel = np.asarray(variables["params"]["block1"]["conv"]["kernel"])  # [3,3,1,C]
  xp = np.pad(np.asarray(x), ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
  conv = sum(xp[:, :, i:i + 8, j:j + 8, :1] * kernel[i, j, 0] for i in range(3)
             for j in range(3))                                       # [T, B, 8, 8, C]
  r = np.asarray(variables["batch_stats"]["block1"]["bn"]["mean"])
  for t in range(T):
    r = 0.9 * r + 0.1 * conv[t].mean(axis=(0, 1, 2))
  np.testing.assert_allclose(stats["block1"]["bn"]["mean"], r, rtol=1e-4, atol=1e-5)
  main, _ = multitask_features(MODEL, variables, x, True, bn_stats="main"), None
  assert not np.allclose(main[1]["block1"]["bn"]["mean"], r)
