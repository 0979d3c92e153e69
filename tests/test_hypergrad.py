"""aux_jax.hypergrad against dense linear algebra on problems small enough to invert J."""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import pytest

from aux_jax import hypergrad
from aux_jax.hypergrad import implicit_hypergradient


def _data(dtype=np.float64):
  rng = np.random.default_rng(0)
  params = {"a": rng.normal(size=(3,)), "b": rng.normal(size=(2, 2))}
  params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
  phi = jnp.asarray([0.3, -0.2], dtype)
  x = jnp.asarray(rng.normal(size=(9, 7)), dtype)
  y = jnp.asarray(rng.normal(size=(9,)), dtype)
  xv = jnp.asarray(rng.normal(size=(5, 7)), dtype)
  yv = jnp.asarray(rng.normal(size=(5,)), dtype)
  return params, phi, x, y, xv, yv


def _flat(params):
  return jnp.concatenate([params["a"], params["b"].ravel()])


def _problem(kind, dtype=np.float64):
  """Returns (G, L_val, params, phi). kind: 'symmetric' or 'nonsymmetric'."""
  params, phi, x, y, xv, yv = _data(dtype)

  def train_loss(p, f):
    t = _flat(p)
    # Strongly convex, not quadratic; φ sets per-leaf regularisation.
    reg = jnp.exp(f[0]) * jnp.sum(p["a"] ** 2) + jnp.exp(f[1]) * jnp.sum(p["b"] ** 2)
    return jnp.sum(jax.nn.softplus(x @ t - y)) + 0.5 * reg + 0.05 * jnp.sum(t ** 4)

  def val_loss(p):
    return jnp.sum(jnp.tanh(xv @ _flat(p) - yv) ** 2)

  if kind == "symmetric":
    g = jax.grad(train_loss)
  else:
    # MAOAL-like: a main and an auxiliary loss, the auxiliary gradient scaled per
    # leaf ("module") by a function of φ. J = ∂G/∂θ is not symmetric.
    def aux_loss(p):
      t = _flat(p)
      return jnp.sum(jax.nn.softplus(x[:, ::-1] @ t + 1.0)) + 0.5 * jnp.sum(t ** 2)

    def g(p, f):
      g0 = jax.grad(lambda q: train_loss(q, jnp.zeros_like(f)))(p)
      g1 = jax.grad(aux_loss)(p)
      w = {"a": jax.nn.softplus(f[0]), "b": jax.nn.softplus(f[1])}
      return jax.tree.map(lambda a, b, s: a + s * b, g0, g1, w)
  return g, val_loss, params, phi


def _dense(g, val_loss, params, phi):
  """Dense J (θ×θ), ∂G/∂φ (θ×φ) and v0, in flattened coordinates."""
  flat, unravel = ravel_pytree(params)
  gflat = lambda t, f: ravel_pytree(g(unravel(t), f))[0]
  jac = np.asarray(jax.jacfwd(gflat, argnums=0)(flat, phi))
  dg_dphi = np.asarray(jax.jacfwd(gflat, argnums=1)(flat, phi))
  v0 = np.asarray(jax.grad(lambda t: val_loss(unravel(t)))(flat))
  return jac, dg_dphi, v0


def _ift(jac, dg_dphi, v0):
  return -dg_dphi.T @ np.linalg.solve(jac.T, v0)


@pytest.mark.parametrize("kind", ["symmetric", "nonsymmetric"])
def test_exact_and_cg_match_ift_formula(kind):
  with jax.enable_x64(True):
    g, val_loss, params, phi = _problem(kind)
    jac, dg_dphi, v0 = _dense(g, val_loss, params, phi)
    if kind == "symmetric":
      np.testing.assert_allclose(jac, jac.T, atol=1e-10)
    else:
      assert np.abs(jac - jac.T).max() > 1e-2
    want = _ift(jac, dg_dphi, v0)
    sym = kind == "symmetric"
    for solver in ("exact", "cg"):
      hg, info = jax.jit(lambda p, f: implicit_hypergradient(
          g, val_loss, p, f, solver=solver, symmetric=sym, tol=1e-12,
          maxiter=200))(params, phi)
      np.testing.assert_allclose(np.asarray(hg), want, rtol=1e-6, atol=1e-9,
                                 err_msg=solver)
      assert not bool(info.diverged)
      assert float(info.residual_norm) < 1e-6


# Symmetric (forward-over-reverse) products are only valid for a symmetric J.
@pytest.mark.parametrize("kind,symmetric_flag", [
    ("symmetric", False), ("symmetric", True), ("nonsymmetric", False)])
def test_neumann_unscaled_matches_dense_series(kind, symmetric_flag):
  with jax.enable_x64(True):
    g, val_loss, params, phi = _problem(kind)
    jac, dg_dphi, v0 = _dense(g, val_loss, params, phi)
    alpha, steps = 0.05, 4
    m = np.eye(len(v0)) - alpha * jac.T
    p = sum(np.linalg.matrix_power(m, j) @ v0 for j in range(steps + 1))
    hg, info = implicit_hypergradient(g, val_loss, params, phi, neumann_steps=steps,
                                      step=alpha, scale_by_step=False,
                                      symmetric=symmetric_flag)
    np.testing.assert_allclose(np.asarray(hg), -dg_dphi.T @ p, rtol=1e-9)
    last = np.linalg.matrix_power(m, steps) @ v0
    np.testing.assert_allclose(float(info.residual_norm), np.linalg.norm(last),
                               rtol=1e-9)


@pytest.mark.parametrize("kind", ["symmetric", "nonsymmetric"])
def test_neumann_scaled_converges_to_exact(kind):
  with jax.enable_x64(True):
    g, val_loss, params, phi = _problem(kind)
    jac, dg_dphi, v0 = _dense(g, val_loss, params, phi)
    want = _ift(jac, dg_dphi, v0)
    eig = np.linalg.eigvals(jac)
    assert eig.real.min() > 0
    alpha = (eig.real / np.abs(eig) ** 2).min()  # half the bound for |1 − αλ| < 1
    few, _ = implicit_hypergradient(g, val_loss, params, phi, neumann_steps=3,
                                    step=alpha)
    many, info = implicit_hypergradient(g, val_loss, params, phi,
                                        neumann_steps=5000, step=alpha)
    err_few = np.linalg.norm(np.asarray(few) - want)
    err_many = np.linalg.norm(np.asarray(many) - want)
    assert err_many < 1e-6 * np.linalg.norm(want)
    assert err_many < err_few
    assert not bool(info.diverged)


def test_divergence_is_reported():
  with jax.enable_x64(True):
    g, val_loss, params, phi = _problem("nonsymmetric")
    jac, _, _ = _dense(g, val_loss, params, phi)
    big = 10.0 / np.abs(np.linalg.eigvals(jac)).max()  # spectral radius of I − αJᵀ > 1
    _, info = implicit_hypergradient(g, val_loss, params, phi, step=big,
                                     neumann_steps=5)
    assert bool(info.diverged)
    assert float(info.ratio) > 1.0
    _, info = implicit_hypergradient(g, val_loss, params, phi, step=1e-3)
    assert not bool(info.diverged)


def test_jit_vmap_and_float32():
  g, val_loss, params, phi = _problem("nonsymmetric", np.float32)
  run = lambda f: implicit_hypergradient(g, val_loss, params, f, step=0.05)[0]
  eager = run(phi)
  jitted = jax.jit(run)
  assert jitted(phi).dtype == jnp.float32
  np.testing.assert_allclose(jitted(phi), eager, rtol=1e-5)
  phis = jnp.stack([phi, phi + 0.5, phi - 0.5])
  batched = jax.jit(jax.vmap(run))(phis)
  for i in range(3):
    np.testing.assert_allclose(batched[i], jitted(phis[i]), rtol=1e-5, atol=1e-6)
  with jax.enable_x64(True):
    g64, val64, params64, phi64 = _problem("nonsymmetric", np.float64)
    ref = implicit_hypergradient(g64, val64, params64, phi64, step=0.05)[0]
    assert ref.dtype == jnp.float64
  np.testing.assert_allclose(eager, np.asarray(ref), rtol=1e-4, atol=1e-5)
  # The iterative solver under vmap too.
  cg = jax.jit(jax.vmap(lambda f: implicit_hypergradient(g, val_loss, params, f,
                                                         solver="cg")[0]))(phis)
  assert cg.shape == (3, 2) and np.all(np.isfinite(cg))


def test_ridge_bilevel_moves_toward_closed_form_optimum():
  """Learn log λ of ridge regression on a validation set: the optimum is known."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    d, n, nv = 8, 20, 40
    w_true = rng.normal(size=d)
    x = rng.normal(size=(n, d)); y = x @ w_true + 2.0 * rng.normal(size=n)
    xv = rng.normal(size=(nv, d)); yv = xv @ w_true + 2.0 * rng.normal(size=nv)
    x, y, xv, yv = map(jnp.asarray, (x, y, xv, yv))

    def theta_star(log_lam):
      a = x.T @ x / n + jnp.exp(log_lam) * jnp.eye(d)
      return jnp.linalg.solve(a, x.T @ y / n)

    val_loss = lambda t: jnp.mean((xv @ t - yv) ** 2)
    train_loss = lambda t, f: jnp.mean((x @ t - y) ** 2) / 2 + jnp.exp(f) * t @ t / 2
    grid = np.linspace(-6, 4, 2001)
    outer = jax.vmap(lambda f: val_loss(theta_star(f)))(jnp.asarray(grid))
    phi_opt = grid[int(np.argmin(outer))]
    assert -5.5 < phi_opt < 3.5  # an interior optimum

    # At θ*(φ) the implicit hypergradient is the total derivative of the outer loss.
    g = jax.grad(train_loss)
    for f in (-2.0, 0.0):
      hg, _ = implicit_hypergradient(g, val_loss, theta_star(f), jnp.asarray(f),
                                     solver="cg", symmetric=True, tol=1e-12)
      total = jax.grad(lambda f: val_loss(theta_star(f)))(jnp.asarray(f))
      np.testing.assert_allclose(float(hg), float(total), rtol=1e-6)

    # Alternating lower (gradient descent) and upper steps.
    lmax = float(np.linalg.eigvalsh(np.asarray(x.T @ x / n)).max())

    @jax.jit
    def round_(theta, f):
      lr = 1.0 / (lmax + jnp.exp(f))
      theta = jax.lax.fori_loop(0, 50, lambda _, t: t - lr * g(t, f), theta)
      hg, info = implicit_hypergradient(g, val_loss, theta, f, solver="cg",
                                        symmetric=True)
      return theta, f - 2.0 * hg, info

    phi0 = phi_opt + 3.0
    theta, f = jnp.zeros(d), jnp.asarray(phi0)
    for _ in range(40):
      theta, f, info = round_(theta, f)
      assert not bool(info.diverged)
    assert abs(float(f) - phi_opt) < 0.1 * abs(phi0 - phi_opt)


def test_clear_errors():
  g, val_loss, params, phi = _problem("nonsymmetric", np.float32)
  with pytest.raises(ValueError, match="unknown solver"):
    implicit_hypergradient(g, val_loss, params, phi, solver="lbfgs")
  with pytest.raises(ValueError, match="structure"):
    implicit_hypergradient(lambda p, f: p["a"], val_loss, params, phi)
  with pytest.raises(ValueError, match="shape"):
    implicit_hypergradient(lambda p, f: {"a": p["a"][:2], "b": p["b"]}, val_loss,
                           params, phi)
  with pytest.raises(ValueError, match="scalar"):
    implicit_hypergradient(g, lambda p: p["a"], params, phi)
  with pytest.raises(ValueError, match="steps"):
    hypergrad.neumann(lambda v: v, jnp.ones(2), steps=-1)
