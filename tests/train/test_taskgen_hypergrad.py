"""The task-generation hypergradient (labeler φ ← dev loss) on a linear model vs dense algebra.

The primary network is a shared linear layer with a main and an auxiliary linear head,
the labeler a linear map to C·k logits; everything is small enough to form the Hessian
∇²_θ L_T and the mixed derivative ∂²L_T/∂θ∂φ densely (float64) from an independent
re-implementation of the loss, and compare with `build_taskgen(...).hypergradient`.
What is new over tests/test_hypergrad.py is the wiring: the training batch of the last
step, the labeler's soft labels as the only path from φ, the dev batch and loss, the
optional weight-decay term, and the sign.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax import taskgen
from aux_jax.data.multitask import MultiTaskData, channel_stats
from aux_jax.train.taskgen import build_taskgen
from configs import auxilearn_taskgen_cifar10

C, KS, N, H, W, CH = 3, 2, 12, 2, 2, 2
FEATS = 3
AUX_WEIGHT, WD, ALPHA = 0.7, 1.0, 0.05


class Flatten(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return x.reshape((x.shape[0], -1)).astype(jnp.float32)


class LinearBackbone(nn.Module):
  """A shared linear layer: without shared parameters the labels could not matter."""

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(FEATS)(Flatten()(x))


def _linear_data():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (N + 6, H, W, CH), dtype=np.uint8)
  y = (np.arange(N + 6) % C).astype(np.int32)
  mean, std = channel_stats(x[:N])
  return MultiTaskData(
      train_images=x[None, :N], train_labels=y[None, :N],
      train_counts=np.array([N], np.int32), num_classes=np.array([C], np.int32),
      dev_images=x[N:], dev_labels=y[N:], test_images=x[N:], test_labels=y[N:],
      task_names=("main",), mean=mean, std=std)


def _reference_loss(x, y, dx, dy, include_wd):
  """L_T(θ, φ) and L_dev(θ) of the linear problem, written out in float64.

  θ = [W_s (D×F), b_s, W_main (F×C), b_main, W_aux (F×Ck), b_aux], φ = [W_lab (D×Ck),
  b_lab]: features h = x·W_s + b_s; main/aux logits h·W + b; labeler logits
  z = x·W_lab + b_lab; q = softmax of z over y's own k entries, 0 elsewhere.
  """
  d, f = x.shape[1], FEATS
  sizes_t = [d * f, f, f * C, C, f * C * KS, C * KS]

  def unpack(v, sizes):
    out, i = [], 0
    for n in sizes:
      out.append(v[i:i + n])
      i += n
    return out

  def train(t, p):
    ws, bs, wm, bm, wa, ba = unpack(t, sizes_t)
    wl, bl = unpack(p, [d * C * KS, C * KS])
    h = x @ ws.reshape(d, f) + bs
    main = h @ wm.reshape(f, C) + bm
    aux = h @ wa.reshape(f, C * KS) + ba
    z = x @ wl.reshape(d, C * KS) + bl
    idx = y[:, None] * KS + np.arange(KS)[None]
    own = jnp.take_along_axis(z, idx, axis=1)
    own = jnp.exp(own - own.max(1, keepdims=True))
    q = jnp.zeros_like(z).at[np.arange(len(y))[:, None], idx].set(
        own / own.sum(1, keepdims=True))
    log_main = main - jax.scipy.special.logsumexp(main, axis=1, keepdims=True)
    log_aux = aux - jax.scipy.special.logsumexp(aux, axis=1, keepdims=True)
    l_main = -jnp.mean(log_main[np.arange(len(y)), y])
    l_aux = -jnp.mean(jnp.sum(q * log_aux, axis=1))
    reg = 0.5 * WD * jnp.sum(t ** 2) if include_wd else 0.0
    return l_main + AUX_WEIGHT * l_aux + reg

  def dev(t):
    ws, bs, wm, bm, _, _ = unpack(t, sizes_t)
    main = (dx @ ws.reshape(d, f) + bs) @ wm.reshape(f, C) + bm
    log_main = main - jax.scipy.special.logsumexp(main, axis=1, keepdims=True)
    return -jnp.mean(log_main[np.arange(len(dy)), dy])

  return train, dev


@pytest.mark.parametrize("solver,include_wd", [("exact", True), ("neumann", False)])
def test_hypergradient_matches_dense_formula_on_linear_model(solver, include_wd):
  """dL_dev/dφ = −(∂²L_T/∂θ∂φ)ᵀ p with p = H⁻¹ v₀ (exact) or Σ_{j≤3} (I − αH)^j v₀
  (unscaled Neumann), H = ∇²_θ L_T (+ wd·I), v₀ = ∇_θ L_dev, from dense matrices."""
  c = auxilearn_taskgen_cifar10.get_config()
  c.data.augment = False
  c.data.batch_size, c.data.dev_batch_size = 8, 4
  c.taskgen.num_subclasses = KS
  c.taskgen.aux_weight = AUX_WEIGHT
  c.optim.weight_decay = WD
  c.hyper.solver = solver
  c.hyper.step = ALPHA
  c.hyper.include_weight_decay = include_wd
  data = _linear_data()
  tg = build_taskgen(c, data, backbone=LinearBackbone(),
                     labeler=taskgen.Labeler(C, KS, backbone=Flatten()))
  state = tg.init()._replace(step=jnp.asarray(3, jnp.int32))  # batches of step 2
  hg, info, dev_loss = tg.hypergradient(state)
  assert not bool(info.diverged)
  # Outside x64: the batch order depends on the dtype of jax.random.uniform.
  x, y = (np.asarray(a) for a in tg.batch_at(2))
  dx, dy = (np.asarray(a) for a in tg.dev_batch_at(2))

  with jax.enable_x64(True):
    x = x.reshape(len(y), -1).astype(np.float64)
    dx = dx.reshape(len(dy), -1).astype(np.float64)
    p64 = lambda a: np.asarray(a, np.float64).ravel()
    prm, phi = state.params, state.labeler
    bb = prm["backbone"]["Dense_0"]
    theta = np.concatenate([p64(bb["kernel"]), p64(bb["bias"]),
                            p64(prm["main"]["kernel"]), p64(prm["main"]["bias"]),
                            p64(prm["aux"]["kernel"]), p64(prm["aux"]["bias"])])
    lab = phi["Dense_0"]
    phi_flat = np.concatenate([p64(lab["kernel"]), p64(lab["bias"])])
    train, dev = _reference_loss(x, y, dx, dy, include_wd)
    hess = np.asarray(jax.jit(jax.hessian(train))(theta, phi_flat))
    cross = np.asarray(jax.jit(jax.jacfwd(jax.grad(train), argnums=1))(theta, phi_flat))
    v0 = np.asarray(jax.jit(jax.grad(dev))(theta))
    if solver == "exact":
      p = np.linalg.solve(hess, v0)
    else:
      m = np.eye(len(v0)) - ALPHA * hess
      p = sum(np.linalg.matrix_power(m, j) @ v0 for j in range(4))
    want = -cross.T @ p
  got = np.concatenate([p64(hg["Dense_0"]["kernel"]), p64(hg["Dense_0"]["bias"])])
  assert np.abs(want).max() > 1e-3  # the labels do steer the dev loss
  np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4 * np.abs(want).max())
  np.testing.assert_allclose(float(dev_loss), float(dev(theta)), rtol=1e-5)
