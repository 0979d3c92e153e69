"""ATTITTUD subspace and decomposition against dense NumPy linear algebra."""

import functools

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.rules import attittud_combine, attittud_decompose, subspace_basis, tree


def _mlp_problem(rng, n=6):
  """Per-example losses of a tiny MLP; params a pytree with D = 3*4 + 4 + 4 = 20."""
  params = {"w1": jnp.asarray(rng.normal(size=(3, 4))), "b1": jnp.asarray(rng.normal(size=(4,))),
            "w2": jnp.asarray(rng.normal(size=(4,)))}
  x = jnp.asarray(rng.normal(size=(n, 3)))
  y = jnp.asarray(rng.normal(size=(n,)))

  def losses(p):
    return (jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2

  return params, losses


def _jacobian(losses, params):
  """J [n, D] in the ravel_pytree order."""
  flat, unravel = ravel_pytree(params)
  return np.asarray(jax.jit(jax.jacrev(lambda f: losses(unravel(f))))(flat))


def _basis_matrix(basis):
  return np.asarray(tree.ravel_tasks(basis)[0])  # [k, D]


def test_basis_is_orthonormal_and_spans_examples_when_k_ge_n():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    params, losses = _mlp_problem(rng, n=6)
    jac = _jacobian(losses, params)
    for k, power in [(6, 0), (8, 2)]:
      basis = jax.jit(subspace_basis, static_argnums=(0, 3, 4))(
          losses, params, jax.random.key(k), k, power)
      assert jax.tree.structure(basis) == jax.tree.structure(params)
      assert basis["w1"].shape == (k, 3, 4)
      v = _basis_matrix(basis)
      np.testing.assert_allclose(v @ v.T, np.eye(k), atol=1e-12)
      residual = jac - jac @ v.T @ v
      assert np.linalg.norm(residual) <= 1e-10 * np.linalg.norm(jac)


def test_basis_column_is_omega_weighted_gradient():
  # With k = 1 the basis is Jᵀω / ‖Jᵀω‖ up to sign, ω the first Gaussian draw.
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    params, losses = _mlp_problem(rng, n=5)
    key = jax.random.key(0)
    v = _basis_matrix(jax.jit(subspace_basis, static_argnums=(0, 3))(losses, params, key, 1))[0]
    omega = np.asarray(jax.random.normal(key, (1, 5), jnp.float64))[0]
    y = _jacobian(losses, params).T @ omega
    np.testing.assert_allclose(abs(v @ y), np.linalg.norm(y), rtol=1e-10)


def test_power_iterations_capture_more_energy():
  # Linear per-example losses ℓ_i(θ) = <x_i, θ>: J = X, with a decaying spectrum.
  n, d, k = 24, 40, 4
  params = {"a": jnp.zeros((d - 10,)), "b": jnp.zeros((2, 5))}

  @functools.partial(jax.jit, static_argnums=2)
  def basis_matrix(x, key, power):
    basis = subspace_basis(lambda p: x @ ravel_pytree(p)[0], params, key, k, power)
    return tree.ravel_tasks(basis)[0]

  with jax.enable_x64(True):
    params = jax.tree.map(lambda z: jnp.asarray(z, jnp.float64), params)
    best = np.sum(0.8 ** (2 * np.arange(k))) / np.sum(0.8 ** (2 * np.arange(n)))
    for seed in range(3):
      rng = np.random.default_rng(seed)
      u, _ = np.linalg.qr(rng.normal(size=(n, n)))
      vt, _ = np.linalg.qr(rng.normal(size=(d, n)))
      x = (u * 0.8 ** np.arange(n)) @ vt.T

      def energy(power, x=x, seed=seed):
        v = np.asarray(basis_matrix(jnp.asarray(x), jax.random.key(seed), power))
        return np.linalg.norm(x @ v.T) ** 2 / np.linalg.norm(x) ** 2

      e0, e1, e2 = energy(0), energy(1), energy(2)
      assert e0 < e1 < e2 <= best + 1e-12
      assert best - e2 <= 0.25 * (best - e0)  # closes most of the gap to the top-k SVD


def _mlp_losses(p, x, y):
  return (jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2


@functools.partial(jax.jit, static_argnums=(3, 4))
def _mlp_basis_and_jacobian(params, x, y, k, q, key):
  """(V [k, D], J [n, D]) of the MLP's per-example losses, compiled once per (k, q)."""
  losses = lambda p: _mlp_losses(p, x, y)
  flat, unravel = ravel_pytree(params)
  jac = jax.jacrev(lambda f: losses(unravel(f)))(flat)
  return tree.ravel_tasks(subspace_basis(losses, params, key, k, q))[0], jac


def test_power_iterations_on_a_nonlinear_model_in_float32():
  # Per-example gradients of a tanh MLP whose inputs have a decaying spectrum; the
  # energy captured, Σ_i ‖V ∇ℓ_i‖² / Σ_i ‖∇ℓ_i‖² = ‖J Vᵀ‖²_F / ‖J‖²_F, against the
  # top-k SVD of the Jacobian J.
  n, k = 32, 3
  gaps = []
  for seed in range(4):
    rng = np.random.default_rng(seed)
    params = {"w1": jnp.asarray(rng.normal(size=(8, 6)) / 3, jnp.float32),
              "w2": jnp.asarray(rng.normal(size=(6,)), jnp.float32)}
    u, _ = np.linalg.qr(rng.normal(size=(n, 8)))
    x = jnp.asarray(u * 0.5 ** np.arange(8) * np.sqrt(n), jnp.float32)
    y = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
    energy = []
    for q in range(3):
      v, jac = _mlp_basis_and_jacobian(params, x, y, k, q, jax.random.key(seed))
      v, jac = np.asarray(v, np.float64), np.asarray(jac, np.float64)
      np.testing.assert_allclose(v @ v.T, np.eye(k), atol=1e-5)
      energy.append(np.linalg.norm(jac @ v.T) ** 2 / np.linalg.norm(jac) ** 2)
    s = np.linalg.svd(jac, compute_uv=False)
    best = np.sum(s[:k] ** 2) / np.sum(s ** 2)
    e0, e1, e2 = energy
    assert e0 < e1 and e0 < e2 and e2 >= e1 - 1e-4 and e2 <= best + 1e-4
    gaps.append((best - e0, best - e2))
  gap0, gap2 = np.mean(gaps, axis=0)
  assert gap2 < 0.2 * gap0  # two iterations close most of the gap to the top-k SVD


def _numpy_decompose(g, v, g_star):
  p, p_star = v @ g, v @ g_star
  m = (p * p_star > 0).astype(float)
  plus, minus = v.T @ (p * m), v.T @ (p * (1 - m))
  return plus, minus, g - plus - minus


def test_decomposition_and_combinations_match_numpy():
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    params, losses = _mlp_problem(rng, n=8)
    basis = jax.jit(subspace_basis, static_argnums=(0, 3))(losses, params, jax.random.key(1), 5)
    v = _basis_matrix(basis)
    flat, unravel = ravel_pytree(params)
    g = rng.normal(size=flat.shape)
    g_star = np.asarray(ravel_pytree(jax.jit(jax.grad(lambda p: losses(p).mean()))(params))[0])
    parts = jax.jit(attittud_decompose)(unravel(g), basis, unravel(g_star))
    plus, minus, perp = (np.asarray(ravel_pytree(x)[0]) for x in parts)
    want = _numpy_decompose(g, v, g_star)
    for got, ref in zip((plus, minus, perp), want):
      np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(plus + minus + perp, g, rtol=1e-12)
    for part in (plus, minus):  # in the span
      np.testing.assert_allclose(v.T @ (v @ part), part, atol=1e-12)
    np.testing.assert_allclose(v @ perp, 0, atol=1e-12)  # orthogonal to it
    # g+ agrees with g* coordinate-wise in the basis, g− conflicts.
    assert np.all((v @ plus) * (v @ g_star) >= -1e-12)
    assert np.all((v @ minus) * (v @ g_star) <= 1e-12)
    assert np.linalg.norm(plus) > 0 and np.linalg.norm(minus) > 0

    combine = jax.jit(attittud_combine)
    for lambdas in [(1.0, 0.0, 0.0), (1.0, 1.0, -1.0), (1.0, 1.0, 1.0), (0.5, 2.0, 0.0)]:
      got = ravel_pytree(combine(unravel(g), basis, unravel(g_star), lambdas))[0]
      l_perp, l_plus, l_minus = lambdas
      np.testing.assert_allclose(got, l_perp * want[2] + l_plus * want[0] + l_minus * want[1],
                                 rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        ravel_pytree(combine(unravel(g), basis, unravel(g_star), (1.0, 1.0, 1.0)))[0], g,
        rtol=1e-12)


def test_bad_inputs_raise():
  params, losses = _mlp_problem(np.random.default_rng(4))
  with pytest.raises(ValueError, match="k must be"):
    subspace_basis(losses, params, jax.random.key(0), 21)
  with pytest.raises(ValueError, match="f\\[n\\]"):
    subspace_basis(lambda p: jnp.sum(losses(p)), params, jax.random.key(0), 2)
  with pytest.raises(ValueError, match="lambdas"):
    attittud_combine(params, jax.tree.map(lambda x: x[None], params), params, (1.0, 0.0))
