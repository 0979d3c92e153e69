"""PCGrad against a direct NumPy loop of vector projections."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.rules import pcgrad, pcgrad_with_order, random_orders


def _numpy_pcgrad(flat, orders):
  out = np.zeros(flat.shape[1])
  for i in range(flat.shape[0]):
    gi = flat[i].copy()
    for j in orders[i]:
      dot = gi @ flat[j]
      if dot < 0:
        gi = gi - dot / (flat[j] @ flat[j]) * flat[j]
    out += gi
  return out


def _conflicting(rng, t, d):
  flat = rng.normal(size=(t, d))
  flat[2] = -0.8 * flat[0] + 0.3 * rng.normal(size=d)  # make sure some pairs conflict
  return flat


def test_matches_numpy_for_several_orders():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    t = 5
    flat = _conflicting(rng, t, 7)
    grads = {"a": jnp.asarray(flat[:, :3]), "b": jnp.asarray(flat[:, 3:].reshape(t, 2, 2))}
    f = jax.jit(pcgrad_with_order)
    results = []
    for seed in range(4):
      orders = np.stack([rng.permutation([j for j in range(t) if j != i]) for i in range(t)])
      combined, info = f(grads, jnp.asarray(orders, jnp.int32))
      got = np.concatenate([combined["a"], combined["b"].ravel()])
      want = _numpy_pcgrad(flat, orders)
      np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
      np.testing.assert_allclose(info.coefficients @ flat, want, rtol=1e-10, atol=1e-12)
      assert int(info.num_projections) > 0
      results.append(want)
    # The order matters on this problem (so the test above would catch a wrong order).
    assert max(np.abs(r - results[0]).max() for r in results) > 1e-3


def test_two_tasks_closed_form():
  g1 = np.array([1.0, 0.0])
  g2 = np.array([-1.0, 1.0])
  combined, info = pcgrad_with_order({"x": jnp.asarray(np.stack([g1, g2]))},
                                     jnp.asarray([[1], [0]]))
  # g1' = g1 - (g1·g2)/|g2|² g2 = [0.5, 0.5];  g2' = g2 - (g2·g1)/|g1|² g1 = [0, 1].
  np.testing.assert_allclose(combined["x"], [0.5, 1.5], rtol=1e-6)
  assert int(info.num_projections) == 2


def test_no_conflict_is_plain_sum_and_zero_gradient_is_safe():
  flat = np.array([[1.0, 2.0], [0.5, 0.1], [0.0, 0.0]], np.float32)
  combined, info = pcgrad({"x": jnp.asarray(flat)}, jax.random.key(0))
  np.testing.assert_allclose(combined["x"], flat.sum(0), rtol=1e-6)
  assert int(info.num_projections) == 0 and np.all(np.isfinite(info.coefficients))


def test_random_orders_and_keyed_pcgrad():
  t = 6
  orders_fn = jax.jit(random_orders, static_argnums=1)
  orders = np.asarray(orders_fn(jax.random.key(3), t))
  assert orders.shape == (t, t - 1)
  for i in range(t):
    assert sorted(orders[i]) == [j for j in range(t) if j != i]
  other = np.asarray(orders_fn(jax.random.key(4), t))
  assert not np.array_equal(orders, other)
  # Each row has its own permutation: relabelled to 0..T-2, not all rows equal.
  relabelled = [tuple(o - (o > i)) for i, o in enumerate(orders)]
  assert len(set(relabelled)) > 1

  rng = np.random.default_rng(1)
  grads = {"x": jnp.asarray(_conflicting(rng, t, 4), jnp.float32)}
  key = jax.random.key(5)
  a, _ = jax.jit(pcgrad)(grads, key)
  b, _ = jax.jit(pcgrad_with_order)(grads, orders_fn(key, t))
  np.testing.assert_allclose(a["x"], b["x"], rtol=1e-5, atol=1e-6)


def test_bad_order_shape_raises():
  with pytest.raises(ValueError, match="orders"):
    pcgrad_with_order({"x": jnp.ones((3, 2))}, jnp.zeros((3, 3), jnp.int32))
