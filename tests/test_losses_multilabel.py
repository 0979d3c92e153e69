"""The multilabel task kind: BCE per sample, ROC AUC per label (vs scikit-learn)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aux_jax import losses
from aux_jax.data.multitask import decode_multilabel, encode_multilabel


def test_multilabel_bce_matches_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(0, 3, (6, 7)).astype(np.float32)      # C_max = 7 outputs, L = 5
  y = rng.integers(0, 2, (6, 5)).astype(np.float32)
  got = losses.per_sample_loss("multilabel", jnp.asarray(z), jnp.asarray(y), 5)
  p = 1 / (1 + np.exp(-z[:, :5].astype(np.float64)))
  want = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), axis=1)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Per-task label counts (stacked tasks): each row averages over its own L.
  got2 = losses.multilabel_bce(jnp.asarray(z[:2]), jnp.zeros((2, 7)), jnp.asarray([3, 7]))
  p_all = 1 / (1 + np.exp(-z[:2].astype(np.float64)))
  np.testing.assert_allclose(got2, [np.mean(-np.log(1 - p_all[0, :3])),
                                    np.mean(-np.log(1 - p_all[1]))], rtol=1e-5)


def test_roc_auc_matches_sklearn_with_ties():
  rng = np.random.default_rng(1)
  for _ in range(5):
    y = rng.integers(0, 2, 40)
    s = np.round(rng.normal(size=40), 1)  # rounded: many ties
    assert losses.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
  assert np.isnan(losses.roc_auc(np.arange(3.0), np.ones(3)))


def test_multilabel_eval_over_batches_matches_sklearn():
  """Statistics of padded batches, accumulated, give the AUCs of the whole split."""
  rng = np.random.default_rng(2)
  n, num_labels, batch = 23, 5, 8
  z = rng.normal(size=(n, num_labels)).astype(np.float32)
  y = (rng.random((n, num_labels)) < 0.4).astype(np.float32)
  total = None
  for i in range(0, n, batch):
    zb, yb = z[i:i + batch], y[i:i + batch]
    pad = batch - len(zb)
    mask = np.r_[np.ones(len(zb)), np.zeros(pad)].astype(np.float32)
    zb = np.pad(zb, ((0, pad), (0, 2)), constant_values=9.0)  # padding rows, 2 spare outputs
    yb = np.pad(yb, ((0, pad), (0, 0)), constant_values=1.0)
    total = losses.accumulate(total, losses.eval_stats(
        "multilabel", jnp.asarray(zb), jnp.asarray(yb), num_labels, jnp.asarray(mask)))
  m = losses.finalize_stats("multilabel", total)
  per_label = roc_auc_score(y, z, average=None)
  for l in range(num_labels):
    assert m[f"auc_label{l}"] == pytest.approx(per_label[l], abs=1e-6)
  assert m["auc"] == pytest.approx(roc_auc_score(y, z), abs=1e-6)  # macro mean
  p = 1 / (1 + np.exp(-z.astype(np.float64)))
  bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  assert m["loss"] == pytest.approx(bce.mean(), rel=1e-5)
  assert m["neg_loss"] == -m["loss"]
  assert m["label_accuracy"] == pytest.approx(np.mean((z > 0) == (y > 0.5)), abs=1e-6)
  assert losses.default_select("multilabel") == "auc"


def test_bitmask_labels_roundtrip():
  y = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
  codes = encode_multilabel(y)
  np.testing.assert_array_equal(codes, [1 + 4 + 8, 0, 31])
  np.testing.assert_array_equal(decode_multilabel(codes, 5), y)
  np.testing.assert_array_equal(jax.jit(lambda c: decode_multilabel(c, 5))(codes), y)
  with pytest.raises(ValueError, match="0 or 1"):
    encode_multilabel(np.array([[2, 0]]))
