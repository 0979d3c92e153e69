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
