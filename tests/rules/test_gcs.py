"""GCS against a direct NumPy computation."""

import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.rules import gcs


def test_gcs_matches_numpy():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    t = 6
    a = rng.normal(size=(t, 5))
    b = rng.normal(size=(t, 2, 3))
    flat = np.concatenate([a, b.reshape(t, -1)], axis=1)
    combined, info = jax.jit(gcs)({"a": jnp.asarray(a), "b": jnp.asarray(b)})

    g0 = flat[0]
    cos = flat[1:] @ g0 / (np.linalg.norm(flat[1:], axis=1) * np.linalg.norm(g0))
    assert (cos > 0).any() and (cos < 0).any()  # the case is not trivial
    want = g0 + ((cos > 0)[:, None] * flat[1:]).sum(0)
    np.testing.assert_allclose(info.cosines, cos, rtol=1e-12)
    np.testing.assert_array_equal(info.mask, (cos > 0).astype(float))
    np.testing.assert_allclose(combined["a"], want[:5], rtol=1e-12)
    np.testing.assert_allclose(combined["b"].ravel(), want[5:], rtol=1e-12)


def test_gcs_zero_gradients_give_zero_cosine_and_no_nan():
  g = jnp.asarray([[1.0, 2.0], [0.0, 0.0], [-1.0, 1.0], [2.0, -1.5]])
  combined, info = gcs({"x": g})
  np.testing.assert_allclose(info.cosines[0], 0.0)
  np.testing.assert_array_equal(info.mask, [0.0, 1.0, 0.0])
  np.testing.assert_allclose(combined["x"], [0.0, 3.0])
  _, info = gcs({"x": jnp.zeros((3, 2))})
  assert np.all(np.isfinite(info.cosines)) and np.all(info.mask == 0)


def _slgrad_gcs_numpy(leaves):
  """SLGrad's Gcosim (Dynamic_weighting.py:527-591) in NumPy for fresh per-task
  gradients: per auxiliary task, the sum over parameter tensors of their cosines; ≥ 0
  adds the task's gradient; then each tensor scaled to unit norm."""
  t = leaves[0].shape[0]
  s = np.array([sum(np.vdot(g[0], g[k]) / (np.linalg.norm(g[0]) * np.linalg.norm(g[k]))
                    for g in leaves) for k in range(1, t)])
  total = [g[0] + sum(g[k] for k in range(1, t) if s[k - 1] >= 0) for g in leaves]
  return s, [x / np.linalg.norm(x) for x in total]


def test_gcs_per_layer_is_slgrads_rule():
  """per_layer: the sum of per-tensor cosines decides (not the global cosine); a case
  where the two rules disagree; unit_layers scales each tensor only."""
  with jax.enable_x64(True):
    # Task 1: small agreeing a, large opposing b (per-layer adds, global does not);
    # task 2 the reverse.
    a = np.array([[1.0, 0.0, 0.0], [0.1, 0.0, 0.0], [1.0, 1.0, 0.0]])    # [T=3, 3]
    b = np.array([[1.0, 0.0], [-0.5, 0.1], [-0.01, 0.0]])                # [T, 2]
    grads = {"a": jnp.asarray(a), "b": jnp.asarray(b)}
    s, want = _slgrad_gcs_numpy([a, b])
    flat = np.concatenate([a, b], 1)
    glob = flat[1:] @ flat[0] / (np.linalg.norm(flat[1:], axis=1) * np.linalg.norm(flat[0]))
    np.testing.assert_array_equal(s >= 0, [True, False])
    np.testing.assert_array_equal(glob > 0, [False, True])   # the rules differ here
    combined, info = gcs(grads, per_layer=True, unit_layers=True)
    np.testing.assert_allclose(info.cosines, s, rtol=1e-12)
    np.testing.assert_array_equal(info.mask, (s >= 0).astype(float))
    np.testing.assert_allclose(combined["a"], want[0], rtol=1e-12)
    np.testing.assert_allclose(combined["b"], want[1], rtol=1e-12)
    # Each option alone: per_layer changes the mask only; unit_layers the scale only.
    plain, pinfo = gcs(grads, per_layer=True)
    np.testing.assert_allclose(plain["a"], want[0] * np.linalg.norm(plain["a"]), rtol=1e-12)
    glob_only, ginfo = gcs(grads)
    unit, uinfo = gcs(grads, unit_layers=True)
    np.testing.assert_array_equal(uinfo.mask, ginfo.mask)
    for k in ("a", "b"):
      np.testing.assert_allclose(unit[k], glob_only[k] / np.linalg.norm(glob_only[k]),
                                 rtol=1e-12)
    assert not np.array_equal(pinfo.mask, ginfo.mask)
