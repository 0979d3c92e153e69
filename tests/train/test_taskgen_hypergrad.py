"""The task-generation hypergradient (labeler φ ← dev loss) on a tiny model vs dense algebra,
through the method API (`aux_jax.methods.taskgen` in `aux_jax.train.experiment`).

The primary network is a one-hidden-layer MLP with a main and an auxiliary linear head,
the labeler a linear map of the channel means to C·k logits (``labeler_features=()``);
everything is small enough to form the Hessian ∇²_θ L_T and the mixed derivative
∂²L_T/∂θ∂φ densely (float64) from an independent re-implementation of the loss, and to
compare with the φ update of one upper step (meta SGD, lr 1, no clipping: φ − hg).
What is new over tests/test_hypergrad.py is the wiring: the training batch of the last
step, the labeler's soft labels as the only path from φ, the dev batch and loss, the
optional weight-decay term, the combiner, and the sign.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from aux_jax.data.multitask import MultiTaskData, channel_stats
from aux_jax.data.shared_input import with_subclass_task
from aux_jax.train.experiment import build_experiment
from configs import auxilearn_taskgen_cifar10

C, KS, N, NDEV, H, W, CH, HID = 3, 2, 12, 6, 2, 2, 2, 3
AUX_WEIGHT, WD, ALPHA, SCALE, GAMMA = 0.7, 1.0, 0.05, 0.25, 2.0


def _data():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (N + NDEV, H, W, CH), dtype=np.uint8)
  y = (np.arange(N + NDEV) % C).astype(np.int32)
  mean, std = channel_stats(x[:N])
  return with_subclass_task(MultiTaskData(
      train_images=x[None, :N], train_labels=y[None, :N],
      train_counts=np.array([N], np.int32), num_classes=np.array([C], np.int32),
      dev_images=x[N:], dev_labels=y[N:], test_images=x[N:], test_labels=y[N:],
      task_names=("main",), mean=mean, std=std), KS)


def _focal(logp, onehot_or_q, gamma):
  p = jnp.exp(logp)
  return -jnp.sum(onehot_or_q * (1 - p) ** gamma * jnp.log(p + 1e-12), axis=1)


def _reference(x, y, dx, dy, unravel_t, unravel_p, include_wd, combiner, gamma):
  """L_T(θ, φ) and L_dev(θ) written out in float64 (θ, φ flat)."""

  def heads_and_feats(t, xx):
    prm = unravel_t(t)
    l0 = prm["backbone"]["layer0"]
    h = jnp.maximum(xx.reshape(len(xx), -1) @ l0["kernel"] + l0["bias"], 0.0)
    k, b = prm["heads"]["kernel"], prm["heads"]["bias"]
    return h @ k[0][:, :C] + b[0][:C], h @ k[1] + b[1]

  def log_softmax(z):
    return z - jax.scipy.special.logsumexp(z, axis=1, keepdims=True)

  def ce(z, target):
    if gamma:
      return _focal(log_softmax(z), target, gamma)
    return -jnp.sum(target * log_softmax(z), axis=1)

  def train(t, p):
    phi = unravel_p(p)
    main, aux = heads_and_feats(t, x)
    lab = phi["labeler"]["Dense_0"]
    z = x.mean(axis=(1, 2)) @ lab["kernel"] + lab["bias"]
    idx = y[:, None] * KS + np.arange(KS)[None]
    own = jnp.take_along_axis(z, idx, axis=1)
    own = jnp.exp(own - own.max(1, keepdims=True))
    q = jnp.zeros_like(z).at[np.arange(len(y))[:, None], idx].set(
        own / own.sum(1, keepdims=True))
    l_main = ce(main, jax.nn.one_hot(y, C))
    l_aux = AUX_WEIGHT * SCALE * ce(aux, q)
    if combiner == "fixed":
      total = jnp.mean(l_main) + jnp.mean(l_aux)
    else:
      w = phi["combiner"]["weights"]
      total = jnp.mean(w[0] * l_main + w[1] * l_aux) + jnp.mean(l_main)
    reg = 0.5 * WD * jnp.sum(t ** 2) if include_wd else 0.0
    return total + reg

  def dev(t):
    main, _ = heads_and_feats(t, dx)
    return jnp.mean(ce(main, jax.nn.one_hot(dy, C)))

  return train, dev


@pytest.mark.parametrize("solver,include_wd,combiner,hyper_wrt", [
    ("exact", True, "fixed", "all"), ("neumann", False, "linear_skip", "main_head")])
def test_hypergradient_matches_dense_formula(solver, include_wd, combiner, hyper_wrt):
  """dL_dev/dφ = −(∂²L_T/∂θ∂φ)ᵀ p with p = H⁻¹ v₀ (exact) or Σ_{j≤3} (I − αH)^j v₀
  (unscaled Neumann), H = ∇²_θ L_T (+ wd·I), v₀ = ∇_θ L_dev, from dense matrices; the
  second case with the original's objective (focal γ = 2, learnable linear combiner
  with skip, φ = labeler + combiner, θ without the auxiliary head: the blocks of H,
  ∂²L_T/∂θ∂φ and v₀ restricted to the backbone and the main head)."""
  c = auxilearn_taskgen_cifar10.get_config()
  c.model = c.model.__class__({"name": "mlp", "dtype": "float32", "bn_stats": "main",
                               "kwargs": {"hidden": (HID,)}})
  c.data.augment = False
  c.data.subclass_task = KS
  c.data.batch_size, c.data.dev_batch_size = 8, NDEV  # dev batch = the whole dev set
  gamma = GAMMA if combiner == "linear_skip" else 0.0
  c.data.focal_gamma = gamma
  c.method.kwargs.update(dict(aux_weight=AUX_WEIGHT, labeler_features=(), combiner=combiner,
                              aux_scale=SCALE, hyper_wrt=hyper_wrt))
  c.optim.weight_decay = WD
  c.hyper.solver = solver
  c.hyper.solver_kwargs.neumann.step = ALPHA
  c.hyper.include_weight_decay = include_wd
  c.hyper.update(dict(optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.0,
                      max_norm=1e9, on_diverged="apply"))
  exp = build_experiment(c, _data())
  state = exp.init()
  state, _ = exp.lower_step(state)
  state, _ = exp.lower_step(state)
  if combiner == "linear_skip":  # off the all-ones init, so w matters
    state = state._replace(method=state.method._replace(phi={
        **state.method.phi, "combiner": {"weights": jnp.array([0.6, 1.3])}}))
  losses = exp.losses_at(state, state.step - 1)   # the batch of the last lower step
  new, up = exp.upper_step(state)
  phi0, phi1 = state.method.phi, new.method.phi
  got = np.asarray(ravel_pytree(phi0)[0] - ravel_pytree(phi1)[0], np.float64)

  x = np.asarray(losses.inputs, np.float64)
  y = np.asarray(losses.targets[0])
  dx = np.asarray(exp.data.preprocess(exp.data.dev_inputs), np.float64)
  dy = np.asarray(exp.data.dev_targets[0])
  with jax.enable_x64(True):
    to64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
    theta, unravel_t = ravel_pytree(to64(state.params))
    phi_flat, unravel_p = ravel_pytree(to64(phi0))
    train, dev = _reference(x, y, dx, dy, unravel_t, unravel_p, include_wd, combiner,
                            gamma)
    hess = np.asarray(jax.jit(jax.hessian(train))(theta, phi_flat))
    cross = np.asarray(jax.jit(jax.jacfwd(jax.grad(train), argnums=1))(theta, phi_flat))
    v0 = np.asarray(jax.jit(jax.grad(dev))(theta))
    keep = jax.tree.map(lambda a: np.ones(a.shape, bool), state.params)
    if hyper_wrt == "main_head":
      keep["heads"] = jax.tree.map(lambda a: np.arange(a.shape[0]).reshape(
          (-1,) + (1,) * (a.ndim - 1)) == 0 * np.ones(a.shape, bool), state.params["heads"])
    idx = np.flatnonzero(np.concatenate([np.ravel(a) for a in jax.tree.leaves(keep)]))
    assert len(idx) < len(theta) if hyper_wrt == "main_head" else len(idx) == len(theta)
    hess, cross, v0 = hess[np.ix_(idx, idx)], cross[idx], v0[idx]
    if solver == "exact":
      p = np.linalg.solve(hess, v0)
    else:
      m = np.eye(len(v0)) - ALPHA * hess
      p = sum(np.linalg.matrix_power(m, j) @ v0 for j in range(4))
    want = -cross.T @ p
    dev_want = float(dev(theta))
  assert np.abs(want).max() > 1e-4  # the labels do steer the dev loss
  np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
  np.testing.assert_allclose(float(up["dev_loss"]), dev_want, rtol=1e-5)
