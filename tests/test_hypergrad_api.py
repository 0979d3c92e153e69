"""The user-facing hypergradient API of `aux_jax.hypergrad` against closed forms and
dense NumPy: `custom_root` (an inner solver JAX cannot differentiate), the direct
∂L/∂φ term and ``has_aux``, ``ridge``, ``solve(matvec, b)`` callables, Neumann's
``step="auto"``; jaxopt's ``custom_root`` as an oracle where it is installed."""

import functools
import warnings

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import pytest

from aux_jax import hypergrad
from aux_jax.hypergrad import custom_root, implicit_hypergradient

D, N, NV, REG = 6, 30, 20, 0.05  # features, train / validation examples, weight of ‖φ‖²


def _ridge_data():
  rng = np.random.default_rng(0)
  w = rng.normal(size=D)
  x = rng.normal(size=(N, D))
  xv = rng.normal(size=(NV, D))
  return (x, x @ w + rng.normal(size=N), xv, xv @ w + 0.5 * rng.normal(size=NV),
          rng.normal(size=D) * 0.5)


def _inner_objective(theta, phi, x, y):
  """Ridge regression with a penalty exp(φ_i) per feature."""
  return 0.5 * jnp.mean((x @ theta - y) ** 2) + 0.5 * jnp.sum(jnp.exp(phi) * theta ** 2)


def _numpy_solution(phi, x, y):
  """θ*(φ) = (XᵀX/n + diag(e^φ))⁻¹ Xᵀy/n, in NumPy: JAX cannot differentiate it."""
  phi, x, y = (np.asarray(a, np.float64) for a in (phi, x, y))
  a = x.T @ x / len(y) + np.diag(np.exp(phi))
  return np.linalg.solve(a, x.T @ y / len(y))


def _outer(theta, phi, xv, yv):
  """The validation loss with a direct term on φ (a regulariser on hyperparameters)."""
  return jnp.mean((xv @ theta - yv) ** 2) + REG * jnp.sum(phi ** 2)


def _closed_form_hypergradient(phi, x, y, xv, yv):
  """dL/dφ_i = 2·REG·φ_i − e^{φ_i} θ*_i u_i with A u = ∇_θ L, A = XᵀX/n + diag(e^φ)."""
  phi, x, y, xv, yv = (np.asarray(a, np.float64) for a in (phi, x, y, xv, yv))
  theta = _numpy_solution(phi, x, y)
  a = x.T @ x / len(y) + np.diag(np.exp(phi))
  u = np.linalg.solve(a, 2 * xv.T @ (xv @ theta - yv) / len(yv))
  return 2 * REG * phi - np.exp(phi) * theta * u


def _callback_solver(init_theta, phi, x, y):
  """The inner solver: NumPy behind `jax.pure_callback` (no JVP or VJP rule)."""
  del init_theta
  shape = jax.ShapeDtypeStruct((x.shape[1],), x.dtype)
  return jax.pure_callback(lambda *a: _numpy_solution(*a).astype(x.dtype), shape,
                           phi, x, y, vmap_method="sequential")


def test_callback_solver_is_not_differentiable():
  with jax.enable_x64(True):
    x, y, _, _, phi = map(jnp.asarray, _ridge_data())
    with pytest.raises(Exception):
      jax.grad(lambda f: jnp.sum(_callback_solver(jnp.zeros(D), f, x, y)))(phi)


@pytest.mark.parametrize("solver,symmetric", [("cg", True), ("cg", False), ("exact", False)])
def test_custom_root_matches_closed_form_under_jit_and_vmap(solver, symmetric):
  with jax.enable_x64(True):
    x, y, xv, yv, phi = map(jnp.asarray, _ridge_data())
    inner = custom_root(jax.grad(_inner_objective), solver=solver, symmetric=symmetric,
                        solver_kwargs={"tol": 1e-12} if solver == "cg" else None
                        )(_callback_solver)
    outer = lambda f: _outer(inner(jnp.zeros(D), f, x, y), f, xv, yv)
    want = _closed_form_hypergradient(phi, x, y, xv, yv)
    np.testing.assert_allclose(jax.grad(outer)(phi), want, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(jax.jit(jax.grad(outer))(phi), want, rtol=1e-8,
                               atol=1e-10)
    phis = jnp.stack([phi, phi + 0.7, phi - 1.0])
    batched = jax.jit(jax.vmap(jax.grad(outer)))(phis)
    for i in range(3):
      np.testing.assert_allclose(
          batched[i], _closed_form_hypergradient(phis[i], x, y, xv, yv), rtol=1e-8,
          atol=1e-10)


def test_custom_root_pytrees_aux_keywords_and_no_gradient_for_init():
  """θ a dict, φ a dict passed by keyword, an aux output; init_theta gets zero."""
  with jax.enable_x64(True):
    x, y, xv, yv, phi = map(jnp.asarray, _ridge_data())
    split = lambda t: {"head": t[:2], "rest": t[2:]}
    join = lambda t: jnp.concatenate([t["head"], t["rest"]])

    def optimality(theta, x, y, *, penalties):
      f = jnp.concatenate([penalties["head"], penalties["rest"]])
      return split(jax.grad(_inner_objective)(join(theta), f, x, y))

    @custom_root(optimality, symmetric=True, has_aux=True, solver_kwargs={"tol": 1e-12})
    def inner(init_theta, x, y, *, penalties):
      f = jnp.concatenate([penalties["head"], penalties["rest"]])
      theta = _callback_solver(join(init_theta), f, x, y)
      return split(theta), {"iterations": jnp.asarray(1)}

    def outer(init, pen):
      theta, aux = inner(init, x, y, penalties=pen)
      assert int(aux["iterations"]) == 1
      f = jnp.concatenate([pen["head"], pen["rest"]])
      return _outer(join(theta), f, xv, yv)

    init = split(jnp.ones(D))
    d_init, d_pen = jax.grad(outer, argnums=(0, 1))(init, split(phi))
    np.testing.assert_allclose(join(d_pen), _closed_form_hypergradient(phi, x, y, xv, yv),
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(join(d_init), np.zeros(D))


def test_custom_root_data_gradient_matches_closed_form():
  """Every positional argument is differentiated: here the training targets y."""
  with jax.enable_x64(True):
    x, y, xv, yv, phi = map(jnp.asarray, _ridge_data())
    inner = custom_root(jax.grad(_inner_objective), solver="exact")(_callback_solver)
    got = jax.grad(lambda t: _outer(inner(jnp.zeros(D), phi, x, t), phi, xv, yv))(y)
    # θ* = A⁻¹Xᵀy/n, so dL/dy = X A⁻¹ ∇_θL / n.
    theta = _numpy_solution(phi, x, y)
    a = np.asarray(x.T @ x / N) + np.diag(np.exp(np.asarray(phi)))
    want = np.asarray(x) @ np.linalg.solve(a, 2 * np.asarray(xv).T @ (
        np.asarray(xv) @ theta - np.asarray(yv)) / NV) / N
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("symmetric", [True, False])
def test_custom_root_integer_arguments_and_closures_under_jit(symmetric):
  """An integer argument (the iteration count) gets a float0 cotangent; data closed
  over under jit (not differentiated) is fine."""
  with jax.enable_x64(True):
    x, y, xv, yv, phi = map(jnp.asarray, _ridge_data())

    @jax.jit
    def hypergradient(f, x, y):
      opt = lambda t, f, n: jax.grad(_inner_objective)(t, f, x, y)
      lr = 1.0 / (jnp.linalg.eigvalsh(x.T @ x / N).max() + jnp.exp(f).max())

      @custom_root(opt, symmetric=symmetric, solver_kwargs={"tol": 1e-12})
      def descend(t, f, n):  # plain gradient descent, n steps
        return jax.lax.fori_loop(0, n, lambda _, t: t - lr * opt(t, f, n), t)

      return jax.grad(lambda f: _outer(descend(jnp.zeros(D), f, 3000), f, xv, yv))(f)

    np.testing.assert_allclose(hypergradient(phi, x, y),
                               _closed_form_hypergradient(phi, x, y, xv, yv),
                               rtol=1e-6, atol=1e-9)


def _jaxopt():
  """jaxopt (the test extra's oracle), or a skip: it is unmaintained, so a later JAX
  may break its import with any error, not only ImportError."""
  try:
    with warnings.catch_warnings():  # "JAXopt is no longer maintained"
      warnings.simplefilter("ignore", DeprecationWarning)
      from jaxopt import implicit_diff, linear_solve
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f"jaxopt does not import: {type(e).__name__}: {e}")
  return implicit_diff, linear_solve


def test_custom_root_equals_jaxopt():
  implicit_diff, linear_solve = _jaxopt()
  with jax.enable_x64(True):
    x, y, xv, yv, phi = map(jnp.asarray, _ridge_data())
    ours = custom_root(jax.grad(_inner_objective), symmetric=True,
                       solver_kwargs={"tol": 1e-12})(_callback_solver)
    theirs = implicit_diff.custom_root(
        jax.grad(_inner_objective),
        solve=functools.partial(linear_solve.solve_cg, tol=1e-12))(_callback_solver)
    grad = lambda inner: jax.grad(lambda f: _outer(inner(jnp.zeros(D), f, x, y), f, xv,
                                                   yv))(phi)
    np.testing.assert_allclose(grad(ours), grad(theirs), rtol=1e-9, atol=1e-12)
    # jaxopt's solve functions are accepted as they are (the solve(matvec, b) shape).
    passed = custom_root(jax.grad(_inner_objective),
                         solver=linear_solve.solve_gmres,
                         solver_kwargs={"tol": 1e-12})(_callback_solver)
    np.testing.assert_allclose(grad(passed), grad(theirs), rtol=1e-8, atol=1e-12)


def test_direct_term_and_has_aux_in_implicit_hypergradient():
  with jax.enable_x64(True):
    x, y, xv, yv, phi = map(jnp.asarray, _ridge_data())
    theta = jnp.asarray(_numpy_solution(phi, x, y))
    g = lambda t, f: jax.grad(_inner_objective)(t, f, x, y)

    def val(t, f):
      loss = _outer(t, f, xv, yv)
      return loss, {"twice": 2 * loss}

    hg, info, aux = implicit_hypergradient(g, val, theta, phi, solver="exact",
                                           val_loss_takes_phi=True, has_aux=True)
    np.testing.assert_allclose(hg, _closed_form_hypergradient(phi, x, y, xv, yv),
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(aux["twice"], 2 * info.val_loss)
    # Without the direct term: the same minus ∂L/∂φ = 2·REG·φ.
    hg0, _ = implicit_hypergradient(g, lambda t: val(t, phi)[0], theta, phi,
                                    solver="exact")
    np.testing.assert_allclose(hg - hg0, 2 * REG * np.asarray(phi), rtol=1e-9)
    with pytest.raises(ValueError, match="aux"):
      implicit_hypergradient(g, lambda t, f: _outer(t, f, xv, yv), theta, phi,
                             val_loss_takes_phi=True, has_aux=True)


# ------------------------------------------------------------------------------------
# A non-quadratic problem with a non-symmetric J, for ridge, solve callables and
# Neumann's step="auto".


def _logistic_problem(scale, symmetric):
  """L2-regularised logistic regression with features × ``scale`` (λ_max of J grows
  with scale²); non-symmetric: the gradient of the regulariser scaled per half of θ by
  a function of φ, plus a rotation-like coupling."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(scale * rng.normal(size=(40, 5)))
  y = jnp.asarray(rng.integers(0, 2, size=40) * 2.0 - 1)
  xv = jnp.asarray(rng.normal(size=(10, 5)))
  yv = jnp.asarray(rng.integers(0, 2, size=10) * 2.0 - 1)
  theta = {"w": jnp.asarray(rng.normal(size=3) * 0.1),
           "v": jnp.asarray(rng.normal(size=2) * 0.1)}
  phi = jnp.asarray([0.2, -0.4])
  flat = lambda t: jnp.concatenate([t["w"], t["v"]])
  skew = jnp.asarray(np.triu(rng.normal(size=(5, 5)), 1) * 0.3)

  def train_loss(t, f):
    z = flat(t)
    return (jnp.mean(jax.nn.softplus(-y * (x @ z)))
            + 0.5 * jnp.exp(f[0]) * jnp.sum(t["w"] ** 2)
            + 0.5 * jnp.exp(f[1]) * jnp.sum(t["v"] ** 2))

  if symmetric:
    g = jax.grad(train_loss)
  else:
    def g(t, f):
      gr = jax.grad(train_loss)(t, f)
      z = (skew - skew.T) @ flat(t) * jax.nn.sigmoid(f[0])
      return {"w": gr["w"] + z[:3], "v": gr["v"] + z[3:]}
  val = lambda t: jnp.mean(jax.nn.softplus(-yv * (xv @ flat(t))))
  return g, val, theta, phi


def _dense(g, val, theta, phi):
  flat, unravel = ravel_pytree(theta)
  gflat = lambda t, f: ravel_pytree(g(unravel(t), f))[0]
  jac = np.asarray(jax.jacfwd(gflat, argnums=0)(flat, phi))
  dg_dphi = np.asarray(jax.jacfwd(gflat, argnums=1)(flat, phi))
  v0 = np.asarray(jax.grad(lambda t: val(unravel(t)))(flat))
  return jac, dg_dphi, v0


@pytest.mark.parametrize("symmetric", [True, False])
def test_ridge_equals_damped_dense_solve_for_every_solver(symmetric):
  with jax.enable_x64(True):
    g, val, theta, phi = _logistic_problem(1.0, symmetric)
    jac, dg_dphi, v0 = _dense(g, val, theta, phi)
    lam = 0.7
    want = -dg_dphi.T @ np.linalg.solve(jac.T + lam * np.eye(len(v0)), v0)
    undamped = -dg_dphi.T @ np.linalg.solve(jac.T, v0)
    assert np.abs(want - undamped).max() > 1e-3 * np.abs(undamped).max()
    runs = {"exact": {}, "cg": {"tol": 1e-13, "maxiter": 200},
            "neumann": {"steps": 3000, "step": "auto", "scale_by_step": True}}
    for solver, kw in runs.items():
      hg, info = jax.jit(lambda t, f: implicit_hypergradient(
          g, val, t, f, solver=solver, symmetric=symmetric,
          solver_kwargs={**kw, "ridge": lam}))(theta, phi)
      np.testing.assert_allclose(hg, want, rtol=1e-7, atol=1e-12, err_msg=solver)
      assert not bool(info.diverged), solver
    with pytest.raises(ValueError, match="ridge"):
      implicit_hypergradient(g, val, theta, phi, solver_kwargs={"ridge": -1.0})


@pytest.mark.parametrize("symmetric", [True, False])
def test_solve_callable_gives_the_builtin_cg_result(symmetric):
  with jax.enable_x64(True):
    g, val, theta, phi = _logistic_problem(1.0, symmetric)
    sp = jax.scipy.sparse.linalg
    if symmetric:
      def solve(matvec, b, tol=1e-5):  # the jaxopt / lineax shape
        return sp.cg(matvec, b, tol=tol, maxiter=200)[0]
    else:
      def solve(matvec, b, tol=1e-5):
        return sp.gmres(matvec, b, tol=tol, maxiter=200, solve_method="batched")[0]
    kw = {"tol": 1e-12}
    builtin, _ = implicit_hypergradient(g, val, theta, phi, solver="cg",
                                        symmetric=symmetric,
                                        solver_kwargs={**kw, "maxiter": 200})
    hg, info = implicit_hypergradient(g, val, theta, phi, solver=solve,
                                      symmetric=symmetric, solver_kwargs=kw)
    np.testing.assert_allclose(hg, builtin, rtol=1e-10, atol=1e-14)
    assert float(info.residual_norm) < 1e-9 and not bool(info.diverged)
    assert hypergrad.solver_options(solve) == ("tol", "ridge")
    with pytest.raises(ValueError, match="unknown"):
      implicit_hypergradient(g, val, theta, phi, solver=solve,
                             solver_kwargs={"maxiter": 3})
    # A jaxopt solve, with its **kwargs.
    _, linear_solve = _jaxopt()
    jaxopt_solve = linear_solve.solve_cg if symmetric else linear_solve.solve_gmres
    hg, _ = implicit_hypergradient(g, val, theta, phi, solver=jaxopt_solve,
                                   symmetric=symmetric, solver_kwargs=kw)
    np.testing.assert_allclose(hg, builtin, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("symmetric", [True, False])
def test_auto_step_converges_where_alpha_one_diverges(symmetric):
  with jax.enable_x64(True):
    g, val, theta, phi = _logistic_problem(4.0, symmetric)
    jac, dg_dphi, v0 = _dense(g, val, theta, phi)
    eig = np.linalg.eigvals(jac)
    assert eig.real.min() > 0 and np.abs(eig).max() > 2.5  # α = 1 cannot converge
    want = -dg_dphi.T @ np.linalg.solve(jac.T, v0)

    _, info = implicit_hypergradient(g, val, theta, phi, symmetric=symmetric,
                                     solver_kwargs={"steps": 3, "step": 1.0})
    assert bool(info.diverged) and float(info.ratio) > 1
    assert info.spectral_radius is None
    errors = []
    for steps in (1, 4, 16, 300):
      hg, info = implicit_hypergradient(
          g, val, theta, phi, symmetric=symmetric,
          solver_kwargs={"steps": steps, "step": "auto", "scale_by_step": True})
      assert not bool(info.diverged), steps
      errors.append(np.linalg.norm(np.asarray(hg) - want))
      rho = float(info.spectral_radius)
      assert 0.5 * np.abs(eig).max() < rho < 1.5 * np.abs(eig).max()
    tiny = 1e-12 * np.linalg.norm(want)
    assert all(b < a or b < tiny for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-9 * np.linalg.norm(want)


def test_auto_step_from_the_config():
  from aux_jax.train import optimizers
  from configs import common
  hyper = common.hyper()
  assert optimizers.solver_kwargs(hyper)["step"] == 1e-4  # the fixed α by default
  hyper.solver_kwargs.neumann.auto_step = True
  hyper.solver_kwargs.neumann.ridge = 0.5
  kwargs = optimizers.solver_kwargs(hyper)
  assert kwargs["step"] == "auto" and kwargs["ridge"] == 0.5
  assert "auto_step" not in kwargs
  with jax.enable_x64(True):
    g, val, theta, phi = _logistic_problem(4.0, True)
    _, info = implicit_hypergradient(g, val, theta, phi, symmetric=True,
                                     solver_kwargs=kwargs)
    assert not bool(info.diverged) and float(info.spectral_radius) > 2.5
