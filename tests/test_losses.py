"""aux_jax.losses: per-sample losses, loss maps and evaluation statistics of every task
kind against direct NumPy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax import losses as L
from aux_jax.metrics import dense

rng = np.random.default_rng(0)
B, H, W, CMAX = 3, 2, 4, 6


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_classification_and_regression_per_sample():
  z = rng.normal(size=(B, CMAX)).astype(np.float32)
  y = np.array([0, 3, 2])
  want = -_log_softmax(z[:, :4])[np.arange(B), y]
  np.testing.assert_allclose(L.per_sample_loss("classification", z, y, 4), want, rtol=1e-5)
  t = rng.normal(size=(B, 2)).astype(np.float32)
  np.testing.assert_allclose(L.per_sample_loss("regression", z, t, 2),
                             ((z[:, :2] - t) ** 2).sum(-1), rtol=1e-5)


def test_dense_loss_maps_and_their_per_sample_means():
  z = rng.normal(size=(B, H, W, CMAX)).astype(np.float32)
  seg = rng.integers(-1, 5, size=(B, H, W))
  seg[0] = -1  # a sample without any labelled pixel
  m, v = L.loss_map("segmentation", z, seg, 5)
  ce = -np.take_along_axis(_log_softmax(z[..., :5]), np.maximum(seg, 0)[..., None], -1)[..., 0]
  np.testing.assert_allclose(v, seg >= 0)
  np.testing.assert_allclose(m, np.where(seg >= 0, ce, 0), rtol=1e-5, atol=1e-6)
  per = L.per_sample_loss("segmentation", z, seg, 5)
  want = [ce[b][seg[b] >= 0].mean() if (seg[b] >= 0).any() else 0.0 for b in range(B)]
  np.testing.assert_allclose(per, want, rtol=1e-5)

  depth = rng.uniform(1, 2, size=(B, H, W, 1)).astype(np.float32)
  depth[1, 0, 0] = 0  # missing
  m, v = L.loss_map("depth", z, depth, 1)
  np.testing.assert_allclose(m, np.where(depth[..., 0] != 0, np.abs(z[..., 0] - depth[..., 0]), 0),
                             rtol=1e-6)
  assert v[1, 0, 0] == 0 and v.sum() == B * H * W - 1

  normal = rng.normal(size=(B, H, W, 3)).astype(np.float32)
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  normal[2, 1, 1] = 0
  m, v = L.loss_map("normal", z, normal, 3)
  unit = z[..., :3] / np.sqrt((z[..., :3] ** 2).sum(-1, keepdims=True) + 1e-6)
  want = np.where(np.any(normal != 0, -1), 1 - (unit * normal).sum(-1), 0)
  np.testing.assert_allclose(m, want, rtol=1e-5, atol=1e-6)
  assert v[2, 1, 1] == 0


def _sum_stats(kind, zs, ys, c, masks):
  total = None
  for z, y, m in zip(zs, ys, masks):
    s = L.eval_stats(kind, jnp.asarray(z), jnp.asarray(y), c, jnp.asarray(m))
    total = s if total is None else jax.tree.map(jnp.add, total, s)
  return L.finalize_stats(kind, total)


def test_eval_stats_add_up_over_batches_and_ignore_padding():
  z = rng.normal(size=(2, B, CMAX)).astype(np.float32)
  y = rng.integers(0, 4, size=(2, B))
  masks = np.array([[1, 1, 1], [1, 1, 0]], np.float32)  # the last row is padding
  got = _sum_stats("classification", z, y, 4, masks)
  keep = masks.reshape(-1) > 0
  zf, yf = z.reshape(-1, CMAX)[keep], y.reshape(-1)[keep]
  assert got["accuracy"] == pytest.approx(np.mean(zf[:, :4].argmax(-1) == yf))
  assert got["loss"] == pytest.approx(
      np.mean(-_log_softmax(zf[:, :4])[np.arange(len(yf)), yf]), rel=1e-5)

  t = rng.normal(size=(2, B, 2)).astype(np.float32)
  got = _sum_stats("regression", z, t, 2, masks)
  mse = np.mean(((z.reshape(-1, CMAX)[keep, :2] - t.reshape(-1, 2)[keep]) ** 2).mean(-1))
  assert got["mse"] == pytest.approx(mse, rel=1e-5) and got["neg_mse"] == -got["mse"]

  zs = rng.normal(size=(2, B, H, W, CMAX)).astype(np.float32)
  seg = rng.integers(-1, 5, size=(2, B, H, W))
  got = _sum_stats("segmentation", zs, seg, 5, masks)
  pred = zs[..., :5].argmax(-1).reshape(2 * B, H, W)[keep]
  lab = seg.reshape(2 * B, H, W)[keep]
  want = dense.segmentation_metrics(dense.confusion_matrix(pred, lab, 5))
  assert got["miou_dataset"] == pytest.approx(float(want["miou"]), rel=1e-6)
  per_image = dense.per_image_segmentation(
      pred, seg.reshape(2 * B, H, W)[keep], 5)
  assert got["miou_per_image"] == pytest.approx(float(np.mean(per_image["miou"])), rel=1e-6)


def test_default_selection_metrics_and_unknown_kind():
  assert L.default_select("segmentation") == "miou_dataset"
  assert L.default_select("regression") == "neg_mse"
  with pytest.raises(ValueError, match="unknown task kind"):
    L.per_sample_loss("ranking", jnp.zeros((2, 3)), jnp.zeros(2), 3)


def test_focal_losses_match_numpy():
  """AuxiLearn's focal loss (γ = 2): −(1 − p_y)² log(p_y + 1e-12), and its soft-target
  form −Σ_c q_c (1 − p_c)² log(p_c + 1e-12); z = (0, 0), y = 0 gives ¼ ln 2."""
  np.testing.assert_allclose(L.focal_loss(jnp.zeros((1, 2)), jnp.array([0]), 2.0),
                             [0.25 * np.log(2)], rtol=1e-6)
  rng = np.random.default_rng(3)
  z = rng.normal(size=(5, 4)) * 2
  y = rng.integers(0, 4, 5)
  q = rng.random((5, 4))
  q /= q.sum(1, keepdims=True)
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  want = -(1 - p[np.arange(5), y]) ** 2 * np.log(p[np.arange(5), y] + 1e-12)
  np.testing.assert_allclose(L.focal_loss(jnp.asarray(z, jnp.float32), jnp.asarray(y), 2.0),
                             want, rtol=1e-5)
  want_soft = -(q * (1 - p) ** 2 * np.log(p + 1e-12)).sum(1)
  np.testing.assert_allclose(
      L.soft_focal_loss(jnp.asarray(z, jnp.float32), jnp.asarray(q, jnp.float32), 2.0),
      want_soft, rtol=1e-5)
  # per_sample_loss routes both classification kinds to them when γ > 0; γ = 0 is CE.
  zz = jnp.asarray(np.concatenate([z, np.zeros((5, 2))], 1), jnp.float32)  # C_max = 6
  np.testing.assert_allclose(L.per_sample_loss("classification", zz, jnp.asarray(y), 4, 2.0),
                             want, rtol=1e-5)
  np.testing.assert_allclose(
      L.per_sample_loss("soft_classification", zz, jnp.asarray(q, jnp.float32), 4, 2.0),
      want_soft, rtol=1e-5)
  np.testing.assert_allclose(L.focal_loss(jnp.asarray(z, jnp.float32), jnp.asarray(y), 0.0),
                             -np.log(p[np.arange(5), y] + 1e-12), rtol=1e-5)
