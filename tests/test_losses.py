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


def _auxilearn_numpy(seg_logits, seg, depth_pred, depth, normal_pred, normal):
  """AuxiLearn's NYUv2 losses in NumPy (trainer.py:66-80 per sample; trainer_cnn.py:
  60-76 per pixel), NHWC: returns (per-sample f64[3, B], per-pixel f64[3, B, H, W])."""
  m = (depth.sum(-1) != 0).astype(np.float64)                     # binary_mask
  n_nz = m.sum((1, 2))
  logp = seg_logits - np.log(np.exp(seg_logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, np.maximum(seg, 0)[..., None], -1)[..., 0]
  nll = np.where(seg == -1, 0.0, nll)                              # ignore_index=-1
  d_map = np.abs(depth_pred - depth).sum(-1) * m
  n_hat = normal_pred / np.linalg.norm(normal_pred, axis=-1, keepdims=True)
  n_map = 1 - (n_hat * normal).sum(-1) * m
  per_sample = np.stack([nll.mean((1, 2)), d_map.sum((1, 2)) / n_nz,
                         1 - ((n_hat * normal).sum(-1) * m).sum((1, 2)) / n_nz])
  return per_sample, np.stack([nll, d_map, n_map])


def test_original_loss_convention_is_auxilearns_arithmetic():
  """data.loss_convention="original": AuxiLearn's NYUv2 per-sample and per-pixel
  losses (NumPy above); "ours" differs only where it says: the segmentation mean over
  labelled pixels, normals masked by their own target, normal map 0 where invalid."""
  rng = np.random.default_rng(0)
  b, h, w, c = 2, 3, 4, 5
  seg_logits = rng.normal(size=(b, h, w, c))
  seg = rng.integers(-1, c, size=(b, h, w))
  depth = rng.uniform(0.5, 2.0, size=(b, h, w, 1))
  depth[0, 0, :2] = 0.0                                 # invalid depth pixels
  depth_pred = rng.normal(size=(b, h, w, 1))
  normal = rng.normal(size=(b, h, w, 3))
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  normal[1, 2, 3] = 0.0                                  # a pixel without a normal
  normal_pred = rng.normal(size=(b, h, w, 3))
  want, want_maps = _auxilearn_numpy(seg_logits, seg, depth_pred, depth, normal_pred,
                                     normal)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  m = L.depth_mask(f32(depth))
  args = [("segmentation", f32(seg_logits), jnp.asarray(seg, jnp.int32), c),
          ("depth", f32(depth_pred), f32(depth), 1),
          ("normal", f32(normal_pred), f32(normal), 3)]
  for t, (kind, z, y, k) in enumerate(args):
    got = L.per_sample_loss(kind, z, y, k, convention="original", mask=m)
    np.testing.assert_allclose(got, want[t], rtol=1e-5, atol=1e-6)
    got_map, _ = L.loss_map(kind, z, y, k, convention="original", mask=m)
    np.testing.assert_allclose(got_map, want_maps[t], rtol=1e-5, atol=1e-6)
  assert np.all(want_maps[2][depth[..., 0] == 0] == 1.0)    # 1 outside the depth mask

  # "ours": seg over labelled pixels only; depth identical; normals where the normal
  # target is nonzero (not the depth mask); maps equal on the pixels valid in both.
  labelled = (seg >= 0).sum((1, 2))
  ours = [L.per_sample_loss(kind, z, y, k) for kind, z, y, k in args]
  np.testing.assert_allclose(ours[0], want[0] * h * w / labelled, rtol=1e-5)
  np.testing.assert_allclose(ours[1], want[1], rtol=1e-5)
  nvalid = (np.abs(normal).sum(-1) != 0)
  n_hat = normal_pred / np.linalg.norm(normal_pred, axis=-1, keepdims=True)
  cos = (n_hat * normal).sum(-1)
  np.testing.assert_allclose(ours[2], ((1 - cos) * nvalid).sum((1, 2)) / nvalid.sum((1, 2)),
                             rtol=1e-5)
  assert not np.allclose(ours[2], want[2])    # the pixel with depth but no normal
  both = nvalid & (depth[..., 0] != 0)
  for t, (kind, z, y, k) in enumerate(args):
    got_map, _ = L.loss_map(kind, z, y, k)
    np.testing.assert_allclose(np.asarray(got_map)[both], want_maps[t][both], rtol=1e-5,
                               atol=1e-6)
  with pytest.raises(ValueError, match="depth mask"):
    L.loss_map("normal", *args[2][1:], convention="original")
  with pytest.raises(ValueError, match="convention"):
    L.loss_map("depth", *args[1][1:], convention="paper")
