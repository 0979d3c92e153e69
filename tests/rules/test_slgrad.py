"""SLGrad: jvp alignments against per-sample backward passes; weight normalisation."""

import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.rules import sample_alignments, slgrad_weights


def _mlp_problem(rng, t=3, b=5, d_in=4, hidden=6):
  """A 2-layer MLP: shared first layer, one linear head per task; squared losses."""
  shared = {"w": jnp.asarray(rng.normal(size=(d_in, hidden)) / 2),
            "b": jnp.asarray(rng.normal(size=(hidden,)) / 4)}
  heads = jnp.asarray(rng.normal(size=(t, hidden)))
  x = jnp.asarray(rng.normal(size=(b, d_in)))
  y = jnp.asarray(rng.normal(size=(t, b)))
  x_val = jnp.asarray(rng.normal(size=(7, d_in)))
  y_val = jnp.asarray(rng.normal(size=(7,)))

  def per_sample_losses(p, xs=x, ys=y):
    h = jnp.tanh(xs @ p["w"] + p["b"])  # [B, H]
    return (heads @ h.T - ys) ** 2  # [T, B]

  def val_main_loss(p):
    return jnp.mean(per_sample_losses(p, x_val, jnp.broadcast_to(y_val, (t, 7)))[0])

  return shared, per_sample_losses, val_main_loss


def test_jvp_alignments_equal_per_sample_backward_dots():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    shared, losses_fn, val_fn = _mlp_problem(rng)
    g_val = jax.jit(jax.grad(val_fn))(shared)
    a = jax.jit(sample_alignments, static_argnums=0)(losses_fn, shared, g_val)
    assert a.shape == (3, 5)
    # Reverse mode: one backward pass per (task, sample) output, leaves [T, B, ...].
    per_sample = jax.jit(jax.jacrev(losses_fn))(shared)
    want = sum(np.asarray(per_sample[name]).reshape(3, 5, -1) @ np.asarray(g_val[name]).ravel()
               for name in shared)
    np.testing.assert_allclose(a, want, rtol=1e-10, atol=1e-14)
    assert (np.asarray(a) > 0).any() and (np.asarray(a) < 0).any()


def test_weights_normalise_over_tasks_and_samples():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(3, 6))
  w = np.asarray(slgrad_weights(jnp.asarray(a)))
  pos = np.maximum(a, 0)
  np.testing.assert_allclose(w, pos / pos.sum(), rtol=1e-6)
  np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
  assert np.all(w[a <= 0] == 0)


def test_all_nonpositive_alignments_give_zero_weights():
  for a in (-np.abs(np.random.default_rng(2).normal(size=(2, 4))) - 0.1, np.zeros((2, 4))):
    w = jax.jit(slgrad_weights)(jnp.asarray(a, jnp.float32))
    assert np.all(np.asarray(w) == 0) and np.all(np.isfinite(w))
  # And no NaN in the gradient of a loss weighted by them either.
  g = jax.grad(lambda a: jnp.sum(slgrad_weights(a) * a))(jnp.zeros((2, 3)))
  assert np.all(np.isfinite(g))
