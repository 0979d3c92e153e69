"""GradNorm weight updates against a NumPy computation of the paper's rule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aux_jax.rules import gradnorm_init, gradnorm_update
from aux_jax.rules.gradnorm import gradnorm_loss_and_grad


def _numpy_step(w, losses, l0, norms, alpha, lr, min_weight=1e-3):
  """One GradNorm step: returns (new weights, L_grad, dL_grad/dw)."""
  g = w * norms
  rate = losses / l0
  r = rate / rate.mean()
  target = g.mean() * r**alpha
  l_grad = np.abs(g - target).sum()
  grad = np.sign(g - target) * norms  # target is a constant
  new = np.maximum(w - lr * grad, min_weight)
  return new * len(w) / new.sum(), l_grad, grad


def test_gradient_and_loss_match_numpy():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 1.5, size=4)
    losses, l0, norms = rng.uniform(0.5, 2, size=(3, 4))
    l_grad, grad = gradnorm_loss_and_grad(*map(jnp.asarray, (w, losses, l0, norms)), alpha=1.5)
    _, want_l, want_g = _numpy_step(w, losses, l0, norms, 1.5, 0.0)
    np.testing.assert_allclose(l_grad, want_l, rtol=1e-12)
    np.testing.assert_allclose(grad, want_g, rtol=1e-12)
    # And the sign rule is the autodiff of the formula with the target held fixed
    # (central differences; no kink of |.| within eps here).
    eps = 1e-6
    fd = [(_numpy_step(w + eps * e, losses, l0, norms, 1.5, 0)[1]
           - _numpy_step(w - eps * e, losses, l0, norms, 1.5, 0)[1]) / (2 * eps)
          for e in np.eye(4)]
    target = (w * norms).mean() * ((losses / l0) / (losses / l0).mean())**1.5
    fd_fixed_target = np.sign(w * norms - target) * norms
    np.testing.assert_allclose(grad, fd_fixed_target, rtol=1e-12)
    assert not np.allclose(fd, fd_fixed_target)  # differentiating the target would differ


def test_sequence_of_updates_matches_numpy_loop():
  rng = np.random.default_rng(1)
  t, steps, alpha, lr = 3, 5, 1.2, 0.3
  all_losses = rng.uniform(0.2, 3.0, size=(steps, t))
  all_norms = rng.uniform(0.1, 2.0, size=(steps, t))
  with jax.enable_x64(True):
    state = gradnorm_init(t, dtype=jnp.float64)
    update = jax.jit(gradnorm_update, static_argnames=("alpha", "lr"))
    w = np.ones(t)
    for s in range(steps):
      state, used = update(state, jnp.asarray(all_losses[s]), jnp.asarray(all_norms[s]),
                           alpha=alpha, lr=lr)
      np.testing.assert_allclose(used, w, rtol=1e-12)  # the model step uses w(t)
      w, _, _ = _numpy_step(w, all_losses[s], all_losses[0], all_norms[s], alpha, lr)
      np.testing.assert_allclose(state.weights, w, rtol=1e-12)
      np.testing.assert_allclose(state.initial_losses, all_losses[0], rtol=1e-12)
      np.testing.assert_allclose(np.sum(state.weights), t, rtol=1e-12)
      assert bool(state.initialized)
    assert not np.allclose(w, 1.0)


def test_weights_stay_positive():
  state = gradnorm_init(2)
  # alpha = 0: targets are mean(G) = 5.05, gradient sign(G - 5.05) * n = [-0.1, 10];
  # the step gives [11, -999]: task 1 is clipped to 1e-3, then both renormalised.
  state, _ = gradnorm_update(state, jnp.array([1.0, 1.0]), jnp.array([0.1, 10.0]),
                             alpha=0.0, lr=100.0, min_weight=1e-3)
  w = np.asarray(state.weights)
  assert w.min() > 0
  np.testing.assert_allclose(w, np.array([11.0, 1e-3]) * 2 / (11.0 + 1e-3), rtol=1e-5)


def test_optax_optimizer_path():
  rng = np.random.default_rng(2)
  losses, norms = jnp.asarray(rng.uniform(0.5, 2, size=(2, 4)), jnp.float32)
  opt = optax.sgd(0.05)
  s_opt, _ = gradnorm_update(gradnorm_init(4, opt), losses, norms, alpha=1.0, optimizer=opt)
  s_lr, _ = gradnorm_update(gradnorm_init(4), losses, norms, alpha=1.0, lr=0.05)
  np.testing.assert_allclose(s_opt.weights, s_lr.weights, rtol=1e-6)
  adam = optax.adam(0.1)
  s_adam, _ = gradnorm_update(gradnorm_init(4, adam), losses * 1.5, norms, alpha=1.0,
                              optimizer=adam)
  s_adam, _ = gradnorm_update(s_adam, losses, norms, alpha=1.0, optimizer=adam)
  assert int(s_adam.opt_state[0].count) == 2
  np.testing.assert_allclose(np.sum(s_adam.weights), 4, rtol=1e-6)


def test_bad_inputs_raise():
  state = gradnorm_init(3)
  with pytest.raises(ValueError, match="exactly one"):
    gradnorm_update(state, jnp.ones(3), jnp.ones(3), alpha=1.0)
  with pytest.raises(ValueError, match="shape"):
    gradnorm_update(state, jnp.ones(2), jnp.ones(3), alpha=1.0, lr=0.1)
