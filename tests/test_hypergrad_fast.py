"""`implicit_hypergradient`'s single linearization of G over (θ, φ) against the implicit
function theorem written out densely with NumPy, for a symmetric J (G a gradient,
forward-over-reverse and a transposed φ part) and a non-symmetric one (one VJP)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.hypergrad import implicit_hypergradient

N, P = 5, 3  # |θ| (split over two leaves), |φ|


def _problem(symmetric: bool):
  rng = np.random.default_rng(0)
  a = rng.normal(size=(N, N))
  m = a @ a.T + N * np.eye(N) if symmetric else a + 2 * N * np.eye(N)
  b = rng.normal(size=(N, P))
  theta = {"u": jnp.asarray(rng.normal(size=2)), "w": jnp.asarray(rng.normal(size=N - 2))}
  phi = jnp.asarray(rng.normal(size=P))
  target = rng.normal(size=N)
  flat = lambda t: jnp.concatenate([t["u"], t["w"]])
  unflat = lambda x: {"u": x[:2], "w": x[2:]}

  def train_loss(x, f):  # symmetric case: G = ∇_θ of this
    return 0.5 * x @ (m @ x) + jnp.sum(jnp.cos(x) * (b @ f)) + jnp.sum(f ** 2 * x[:P])

  def g_flat(x, f):
    if symmetric:
      return jax.grad(train_loss)(x, f)
    return m @ x + jnp.tanh(b @ f) * jnp.sin(x) + f[0] * x ** 2

  g = lambda t, f: unflat(g_flat(flat(t), f))
  val_flat = lambda x: jnp.sum((x - target) ** 2) + jnp.sum(jnp.sin(x))
  val = lambda t: val_flat(flat(t))
  return g, val, theta, phi, g_flat, val_flat, flat


@pytest.mark.parametrize("symmetric", [True, False])
def test_hypergradient_is_the_dense_ift_formula(symmetric):
  with jax.enable_x64(True):
    g, val, theta, phi, g_flat, val_flat, flat = _problem(symmetric)
    x = flat(theta)
    jac = np.asarray(jax.jacobian(g_flat, 0)(x, phi))                  # ∂G/∂θ [N, N]
    dphi = np.asarray(jax.jacobian(g_flat, 1)(x, phi))                 # ∂G/∂φ [N, P]
    assert symmetric == np.allclose(jac, jac.T)
    v0 = np.asarray(jax.grad(val_flat)(x))
    want = -dphi.T @ np.linalg.solve(jac.T, v0)
    hg, info = jax.jit(lambda t, f: implicit_hypergradient(
        g, val, t, f, solver="exact", symmetric=symmetric))(theta, phi)
    np.testing.assert_allclose(np.asarray(hg), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(info.val_loss), float(val_flat(x)), rtol=1e-12)
    assert not bool(info.diverged)
    # Neumann (scaled, many terms) converges to the same vector through the same
    # operator.
    step = 0.5 / np.abs(np.linalg.eigvals(jac)).max()
    hg_n, _ = jax.jit(lambda t, f: implicit_hypergradient(
        g, val, t, f, symmetric=symmetric,
        solver_kwargs={"steps": 2000, "step": step, "scale_by_step": True}))(theta, phi)
    np.testing.assert_allclose(np.asarray(hg_n), want, rtol=1e-6, atol=1e-9)


def test_solver_sees_one_linearization_of_g():
  """G's forward pass is traced once per hypergradient (not once per derivative)."""
  g0, val, theta, phi, *_ = _problem(False)
  calls = []

  def g(t, f):
    calls.append(1)
    return g0(t, f)

  implicit_hypergradient(g, val, theta, phi, solver_kwargs={"steps": 3})
  # One call checks the output's shape (eval_shape), one is the linearization.
  assert len(calls) == 2
