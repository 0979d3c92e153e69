"""The multi-task weighting methods (docs/weightings.md): each direction against per-task
`jax.grad` on a tiny model, and each loss weighting's weights on a fixed loss sequence
against a NumPy statement of its paper's update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aux_jax.methods import get_method
from aux_jax.methods import loss_weighting as lw
from aux_jax.rules.tree import task_norms
from tests.methods.test_gradient_methods import (T, _close, _flat, _partition, _stack,
                                                 _task_grads, _tiny, _wsum)

GRADIENT_RULES = ["mgda", "imtl", "aligned_mtl", "nash_mtl", "gradvac"]


def _direction(name, key=jax.random.key(3), steps=1, **kwargs):
  params, losses, task_loss = _tiny()
  method = get_method(name, T, _partition(params), **kwargs)
  state = method.init(key).state
  fn = jax.jit(lambda s, k: method.direction(params, (), s, losses, k))
  for i in range(steps):
    grads, state, _, metrics = fn(state, jax.random.fold_in(key, i))
  return params, task_loss, grads, state, metrics


@pytest.mark.parametrize("name", GRADIENT_RULES)
def test_gradient_rule_methods_combine_the_per_task_gradients(name):
  kwargs = {"max_norm": 0.0} if name == "nash_mtl" else {}
  params, task_loss, grads, _, metrics = _direction(name, **kwargs)
  gs = _task_grads(params, task_loss)
  c = np.concatenate([[float(metrics["main_weight"])], np.asarray(metrics["weights"])])
  _close(grads["backbone"], _wsum([x["backbone"] for x in gs], c), rtol=1e-4)
  heads = c if name == "nash_mtl" else np.ones(T)   # Nash-MTL weights the heads too
  _close(grads["heads"], _wsum([x["heads"] for x in gs], heads), rtol=1e-4)
  g = np.stack([_flat(x["backbone"]) for x in gs])
  d = _flat(grads["backbone"])
  if name == "imtl":   # equal projections on the unit task gradients
    proj = g @ d / np.linalg.norm(g, axis=1)
    np.testing.assert_allclose(proj, proj[0], rtol=1e-3)
  if name == "mgda":   # KKT of the min-norm point
    assert np.all(g @ d >= d @ d - 5e-5 * np.abs(g @ g.T).max())  # float32
  if name == "nash_mtl":
    np.testing.assert_allclose(c * (g @ g.T @ c), 1.0, rtol=1e-3)
    assert int(metrics["nash_iterations"]) > 0


def test_nash_mtl_clips_the_shared_update():
  _, _, grads, _, _ = _direction("nash_mtl", max_norm=1e-3)
  np.testing.assert_allclose(np.linalg.norm(_flat(grads["backbone"])), 1e-3, rtol=1e-4)


def test_gradvac_targets_move_over_steps():
  _, _, _, state, metrics = _direction("gradvac", steps=3, beta=0.5)
  targets = np.asarray(state.targets)
  assert np.abs(targets - np.diag(np.diag(targets))).max() > 0


def test_uw_log_variances_descend_their_loss_and_rest_at_log_loss():
  """s ← s − lr ∂/∂s [ℓ/(2e^s) + s/2] on a fixed loss sequence (plain SGD)."""
  tx = lw._optimizer("sgd", 0.5, momentum=0.0)
  s = np.full(3, -0.5)
  state = lw.UWState(jnp.asarray(s, jnp.float32), tx.init(jnp.zeros(3)))
  seq = np.abs(np.random.default_rng(0).normal(size=(30, 3))) + 0.2
  seq[:, 2] = 4.0  # a constant loss: s₂ → log 4
  for losses in seq:
    np.testing.assert_allclose(lw.uw_weights(state.log_vars), 0.5 * np.exp(-s), rtol=1e-5)
    state = lw.uw_update(state, jnp.asarray(losses, jnp.float32), tx)
    s = s - 0.5 * (0.5 - losses * 0.5 * np.exp(-s))
    np.testing.assert_allclose(state.log_vars, s, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(s[2], np.log(4.0), atol=1e-3)


def test_dwa_weights_are_the_softmax_of_window_loss_ratios():
  rng = np.random.default_rng(1)
  window, tau = 3, 2.0
  seq = np.abs(rng.normal(size=(13, 3))) + 0.1
  state = lw.dwa_init(3)
  for n, losses in enumerate(seq):
    w = np.asarray(lw.dwa_weights(state, tau))
    done = n // window                        # complete windows before step n
    if done < 2:
      np.testing.assert_allclose(w, 1.0)
    else:
      mean = lambda k: seq[k * window:(k + 1) * window].mean(0)
      r = mean(done - 1) / mean(done - 2)
      want = 3 * np.exp(r / tau) / np.exp(r / tau).sum()
      np.testing.assert_allclose(w, want, rtol=1e-5)
    state = lw.dwa_update(state, jnp.asarray(losses, jnp.float32), window)
  # A task whose loss stopped falling (ratio up) gets more weight.
  assert int(state.windows) == 4


def test_rlw_weights_are_a_softmax_of_normal_draws():
  keys = jax.random.split(jax.random.key(0), 2000)
  w = np.asarray(jax.vmap(lambda k: lw.rlw_weights(k, 3))(keys))
  z = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys))
  np.testing.assert_allclose(w, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-5)
  np.testing.assert_allclose(w.mean(0), 1 / 3, atol=0.02)   # exchangeable tasks
  assert w.std(0).min() > 0.1                                 # fresh weights every step


def test_famo_logits_follow_adam_on_the_log_loss_improvements():
  """Official FAMO's update on a fixed loss sequence: task 0's loss falls, task 1's is
  stuck, so FAMO moves weight to task 1; weights w = z/(c(ℓ+ε))."""
  lr, gamma = 0.025, 1e-3
  tx = lw._optimizer("adam", lr, weight_decay=gamma)
  xi = jnp.zeros(2)
  state = lw.FAMOState(xi, tx.init(xi), jnp.zeros(2), jnp.array(False))
  seq = np.stack([0.9 ** np.arange(40), np.ones(40)], axis=1) + 0.05
  xi_np, m, v, prev = np.zeros(2), np.zeros(2), np.zeros(2), None
  for k, losses in enumerate(seq):
    state = lw.famo_update(state, jnp.asarray(losses, jnp.float32), tx)
    if prev is not None:   # NumPy: torch Adam with L2 weight decay on ξ
      z = np.exp(xi_np) / np.exp(xi_np).sum()
      delta = np.log(prev + 1e-8) - np.log(losses + 1e-8)
      grad = z * (delta - z @ delta) + gamma * xi_np       # J_softmaxᵀ δ + γ ξ
      m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
      n = k  # Adam's step count
      xi_np = xi_np - lr * (m / (1 - 0.9**n)) / (np.sqrt(v / (1 - 0.999**n)) + 1e-8)
    prev = losses
    np.testing.assert_allclose(state.logits, xi_np, rtol=1e-4, atol=1e-6)
    w = np.asarray(lw.famo_loss_weights(state.logits, jnp.asarray(losses, jnp.float32)))
    z = np.exp(xi_np) / np.exp(xi_np).sum()
    np.testing.assert_allclose(w, z / (losses + 1e-8) / (z / (losses + 1e-8)).sum(), rtol=1e-4)
  z = jax.nn.softmax(state.logits)
  assert z[1] > 0.6   # the stuck task gained weight


def test_dbmtl_buffer_is_an_ema_and_balances_magnitudes():
  rng = np.random.default_rng(2)
  beta = 0.9
  buf_np = np.zeros((3, 5))
  buf = {"w": jnp.zeros((3, 5))}
  for _ in range(4):
    g = rng.normal(size=(3, 5)) * np.array([[0.1], [1.0], [10.0]])
    buf_np = g + beta * (buf_np - g)
    buf, combined, alpha = lw.dbmtl_update(buf, {"w": jnp.asarray(g, jnp.float32)}, beta)
    np.testing.assert_allclose(buf["w"], buf_np, rtol=1e-5, atol=1e-7)
    n = np.linalg.norm(buf_np, axis=1)
    np.testing.assert_allclose(alpha, n.max() / (n + 1e-8), rtol=1e-5)
    # Every task's scaled gradient has the largest norm.
    np.testing.assert_allclose(task_norms({"w": alpha[:, None] * buf["w"]}), n.max(), rtol=1e-5)
    np.testing.assert_allclose(combined["w"], (alpha[:, None] * buf_np).sum(0), rtol=1e-4,
                               atol=1e-6)


@pytest.mark.parametrize("name", ["uw", "dwa", "rlw", "famo"])
def test_loss_weighting_methods_step_on_the_weighted_loss(name):
  params, task_loss, grads, _, metrics = _direction(name)
  gs = _task_grads(params, task_loss)
  w = np.concatenate([[float(metrics["main_weight"])], np.asarray(metrics["weights"])])
  _close(grads, _wsum(gs, w), rtol=1e-4)
  if name == "famo":   # ∇ Σ_t (z_t/c) log ℓ_t: w ∝ z/ℓ, Σ w = 1 (z uniform at the start)
    losses = np.array([float(jnp.mean(task_loss(params, t))) for t in range(T)])
    np.testing.assert_allclose(w, (1 / losses) / (1 / losses).sum(), rtol=1e-4)


def test_dbmtl_method_balances_log_loss_gradients():
  params, task_loss, grads, state, metrics = _direction("dbmtl", beta=0.5)
  gs = _task_grads(params, task_loss)
  losses = np.array([float(jnp.mean(task_loss(params, t))) for t in range(T)])
  logs = [jax.tree.map(lambda x, l=l: x / (l + 1e-8), g) for g, l in zip(gs, losses)]
  buf = [jax.tree.map(lambda x: 0.5 * x, g["backbone"]) for g in logs]   # (1 − β) g
  n = np.array([np.linalg.norm(_flat(b)) for b in buf])
  _close(grads["backbone"], _wsum(buf, n.max() / (n + 1e-8)), rtol=1e-4)
  _close(grads["heads"], _wsum([g["heads"] for g in logs], np.ones(T)), rtol=1e-4)
  _close(state.buffer, _stack(buf), rtol=1e-4)


def test_options_are_checked():
  with pytest.raises(ValueError, match="normalization"):
    get_method("mgda", T, normalization="bogus")
  with pytest.raises(ValueError, match="temperature"):
    get_method("dwa", T, temperature=0.0)
  with pytest.raises(ValueError, match="beta"):
    get_method("gradvac", T, beta=2.0)
  for name in GRADIENT_RULES + ["uw", "dwa", "rlw", "famo"]:
    with pytest.raises(ValueError, match="auxiliary task"):
      get_method(name, 1)
