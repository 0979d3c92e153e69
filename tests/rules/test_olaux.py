"""OL-AUX accumulation and every-N updates against a NumPy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.rules import olaux_init, olaux_update, tree


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_matches_numpy_loop_under_scan(momentum):
  t, n, steps, beta, eta = 4, 3, 11, 0.05, 0.1
  rng = np.random.default_rng(0)
  grads = rng.normal(size=(steps, t, 5))
  dots = np.einsum("sd,skd->sk", grads[:, 0], grads[:, 1:])

  # NumPy reference: every N steps one PyTorch-SGD step (buf ← μ·buf + grad,
  # p ← p − lr·buf; the first buf = grad) on w[1:] with grad = −η Σ_{last N} <g_0, g_k>.
  w = np.array([1.0, 0.5, 0.5, 0.5])
  acc, buf = np.zeros(t - 1), None
  used_ref, weights_ref = [], []
  for s in range(steps):
    used_ref.append(w.copy())
    acc += dots[s]
    if (s + 1) % n == 0:
      grad = -eta * acc
      buf = grad.copy() if buf is None else momentum * buf + grad
      w[1:] = w[1:] - beta * buf
      acc[:] = 0
    weights_ref.append(w.copy())

  def body(state, g):
    al = tree.task_dots({"g": g}, {"g": g[0]})[1:]
    state, used = olaux_update(state, al, every_n=n, beta=beta, model_lr=eta,
                               momentum=momentum)
    return state, (used, state.weights)

  with jax.enable_x64(True):
    final, (used, weights) = jax.jit(lambda s, g: jax.lax.scan(body, s, g))(
        olaux_init(t, initial_aux_weight=0.5, dtype=jnp.float64), jnp.asarray(grads))
    np.testing.assert_allclose(used, used_ref, rtol=1e-12)
    np.testing.assert_allclose(weights, weights_ref, rtol=1e-12)
    np.testing.assert_allclose(final.acc, acc, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(final.velocity, buf, rtol=1e-12)
    assert int(final.count) == steps % n
    assert np.all(np.asarray(weights)[:, 0] == 1.0)
    # Weights change only on every N-th step.
    changed = np.any(np.diff(np.concatenate([[used[0]], weights]), axis=0) != 0, axis=1)
    np.testing.assert_array_equal(changed, [(s + 1) % n == 0 for s in range(steps)])
  assert not np.allclose(weights_ref[-1], used_ref[0])


def test_every_step_and_bad_inputs():
  state = olaux_init(3)
  state, used = olaux_update(state, jnp.array([2.0, -1.0]), every_n=1, beta=0.5)
  np.testing.assert_allclose(used, [1.0, 1.0, 1.0])
  np.testing.assert_allclose(state.weights, [1.0, 2.0, 0.5])
  np.testing.assert_allclose(state.acc, [0.0, 0.0])
  with pytest.raises(ValueError, match="shape"):
    olaux_update(state, jnp.ones(3), every_n=1, beta=0.5)
  with pytest.raises(ValueError, match="every_n"):
    olaux_update(state, jnp.ones(2), every_n=0, beta=0.5)
