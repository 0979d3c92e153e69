"""The multi-task gradient rules (MGDA, IMTL-G, Aligned-MTL, Nash-MTL, GradVac) against
NumPy statements of their defining conditions on random gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.rules import aligned_mtl, gradvac_init, gradvac_update, imtl, mgda, nash_mtl
from aux_jax.rules.gradvac import GradVacState, gradvac_coefficients
from aux_jax.rules.pcgrad import random_orders

_mgda = jax.jit(mgda, static_argnames=("normalization", "num_iterations"))
_imtl = jax.jit(imtl)
_aligned = jax.jit(aligned_mtl)
_nash = jax.jit(nash_mtl, static_argnames=("max_iterations",))


def _problems(seed, t, d, count=6):
  """Random per-task gradients: scaled, some with a strong conflict, some with T > D."""
  rng = np.random.default_rng(seed)
  for n in range(count):
    flat = rng.normal(size=(t, d)) * rng.uniform(0.2, 3.0, size=(t, 1))
    if n % 2:
      flat[1] = -rng.uniform(0.3, 2.0) * flat[0] + 0.2 * rng.normal(size=d)
    yield flat


def _tree(flat):
  """Split the columns over two leaves (the rules work on pytrees)."""
  return {"a": jnp.asarray(flat[:, :3]), "b": jnp.asarray(flat[:, 3:])}


def _flat(tree):
  return np.concatenate([np.asarray(tree["a"]).reshape(-1), np.asarray(tree["b"]).reshape(-1)])


@pytest.mark.parametrize("t,d", [(2, 7), (4, 9), (5, 3)])  # (5, 3): T > D
def test_mgda_min_norm_point_satisfies_kkt(t, d):
  with jax.enable_x64(True):
    for flat in _problems(0, t, d):
      combined, info = _mgda(_tree(flat))
      w = np.asarray(info.weights)
      gram = flat @ flat.T
      scale = np.abs(gram).max()
      assert w.min() >= 0 and abs(w.sum() - 1) < 1e-12
      # KKT of min wᵀGw on the simplex: (Gw)_t ≥ wᵀGw, with equality on the support.
      gw, wgw = gram @ w, w @ gram @ w
      assert np.all(gw >= wgw - 1e-7 * scale)
      np.testing.assert_allclose(gw[w > 1e-6], wgw, atol=1e-7 * scale)
      np.testing.assert_allclose(_flat(combined), w @ flat, rtol=1e-10, atol=1e-12)
      np.testing.assert_allclose(info.min_norm, np.sqrt(max(wgw, 0)), rtol=1e-6,
                                 atol=1e-3 * np.sqrt(scale))  # √ of rounding near 0


def test_mgda_normalizations_solve_on_normalized_and_combine_raw_gradients():
  flat = list(_problems(1, 3, 6))[1]
  losses = np.array([0.5, 2.0, 1.3])
  norms = np.linalg.norm(flat, axis=1)
  with jax.enable_x64(True):
    for name, n in [("l2", norms), ("loss", losses), ("loss+", losses * norms)]:
      combined, info = _mgda(_tree(flat), jnp.asarray(losses), normalization=name)
      w = np.asarray(info.weights)
      g = (flat / n[:, None]) @ (flat / n[:, None]).T
      assert np.all(g @ w >= w @ g @ w - 1e-7 * np.abs(g).max())
      np.testing.assert_allclose(_flat(combined), w @ flat, rtol=1e-10, atol=1e-12)
  with pytest.raises(ValueError, match="needs the task losses"):
    mgda(_tree(flat), normalization="loss")


def test_mgda_opposite_gradients_give_zero():
  g = np.random.default_rng(2).normal(size=(1, 8))
  with jax.enable_x64(True):
    combined, info = _mgda(_tree(np.concatenate([g, -2 * g])))
  np.testing.assert_allclose(info.weights, [2 / 3, 1 / 3], atol=1e-9)
  assert float(info.min_norm) < 1e-8


@pytest.mark.parametrize("t,d", [(2, 6), (4, 9), (6, 10)])
def test_imtl_projections_on_unit_gradients_are_equal(t, d):
  with jax.enable_x64(True):
    for flat in _problems(3, t, d):
      combined, info = _imtl(_tree(flat))
      dvec = _flat(combined)
      alpha = np.asarray(info.coefficients)
      np.testing.assert_allclose(dvec, alpha @ flat, rtol=1e-9, atol=1e-12)
      assert abs(alpha.sum() - 1) < 1e-9
      proj = flat @ dvec / np.linalg.norm(flat, axis=1)
      np.testing.assert_allclose(proj, proj[0], rtol=1e-7)
      np.testing.assert_allclose(info.projection, proj[0], rtol=1e-7)


def test_imtl_float32_matches_float64():
  flat = list(_problems(4, 3, 8))[0]
  _, info32 = _imtl(_tree(flat.astype(np.float32)))
  with jax.enable_x64(True):
    _, info64 = _imtl(_tree(flat))
  np.testing.assert_allclose(info32.coefficients, info64.coefficients, rtol=1e-4)


@pytest.mark.parametrize("t,d", [(3, 8), (5, 12), (5, 3)])  # (5, 3): rank 3 < T
def test_aligned_mtl_gram_is_a_multiple_of_identity_on_kept_directions(t, d):
  with jax.enable_x64(True):
    for flat in _problems(5, t, d):
      combined, info = _aligned(_tree(flat))
      gram = flat @ flat.T
      lam, v = np.linalg.eigh(gram)
      keep = lam > lam.max() * t * np.finfo(np.float64).eps
      assert int(info.rank) == keep.sum() == min(t, d)
      vk, lk = v[:, keep], lam[keep]
      sigma = np.sqrt(lk.min())
      b = sigma * (vk / np.sqrt(lk)) @ vk.T       # the aligned gradients Ĝ = B G
      aligned = b @ flat
      # ĜĜᵀ = σ² V_r V_rᵀ: σ² times the identity on the kept eigen-directions.
      np.testing.assert_allclose(vk.T @ (aligned @ aligned.T) @ vk,
                                 sigma**2 * np.eye(keep.sum()), atol=1e-8 * lam.max())
      np.testing.assert_allclose(aligned @ aligned.T, sigma**2 * vk @ vk.T,
                                 atol=1e-8 * lam.max())
      np.testing.assert_allclose(info.sigma, sigma, rtol=1e-8)
      np.testing.assert_allclose(_flat(combined), aligned.sum(0), rtol=1e-7,
                                 atol=1e-9 * np.abs(flat).max())


@pytest.mark.parametrize("t,d", [(2, 5), (4, 9), (7, 20)])
def test_nash_mtl_solves_the_bargaining_equation(t, d):
  rng = np.random.default_rng(6)
  for n in range(4):
    flat = rng.normal(size=(t, d)) * rng.uniform(0.1, 10.0, size=(t, 1))
    if n % 2:  # conflicting but still with a positive solution (D ≥ T)
      flat[1] = -0.8 * flat[0] + 0.5 * rng.normal(size=d)
    with jax.enable_x64(True):
      combined, info = _nash(_tree(flat))
    alpha = np.asarray(info.coefficients)
    gram = flat @ flat.T
    assert np.all(alpha > 0)
    np.testing.assert_allclose(alpha * (gram @ alpha), 1.0, atol=1e-5)   # G α = 1/α
    assert 0 < int(info.iterations) <= 100 and float(info.residual) <= 1e-5
    np.testing.assert_allclose(_flat(combined), alpha @ flat, rtol=1e-9)
    # float32 (the trainer's): the same α up to the Gram matrix's rounding.
    _, info32 = _nash(_tree(flat.astype(np.float32)))
    np.testing.assert_allclose(info32.coefficients, alpha, rtol=1e-3)
    assert float(info32.residual) <= 1e-3 and int(info32.iterations) < 50  # rounding in Gα


def test_nash_mtl_orthogonal_gradients_need_no_iteration():
  flat = np.diag([0.5, 2.0, 4.0])
  _, info = _nash(_tree(np.concatenate([flat, np.zeros((3, 3))], axis=1)))
  np.testing.assert_allclose(info.coefficients, [2.0, 0.5, 0.25], rtol=1e-6)
  assert int(info.iterations) == 0


def _gradvac_numpy(flat, targets, orders, beta):
  """Paper Algorithm 1 with explicit vectors."""
  t = flat.shape[0]
  new_targets = targets.copy()
  out = []
  for i in range(t):
    gi = flat[i].copy()
    for j in orders[i]:
      gj = flat[j]
      phi = gi @ gj / (np.linalg.norm(gi) * np.linalg.norm(gj) + 1e-8)
      goal = new_targets[i, j]
      if phi < goal:
        w = np.linalg.norm(gi) * (goal * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - goal**2)) / (
            np.linalg.norm(gj) * np.sqrt(1 - goal**2) + 1e-8)
        gi = gi + w * gj
      new_targets[i, j] = (1 - beta) * goal + beta * phi
    out.append(gi)
  return np.sum(out, axis=0), new_targets


def test_gradvac_matches_numpy_over_several_steps():
  rng = np.random.default_rng(7)
  t, d, beta = 4, 9, 0.3
  targets = np.zeros((t, t))
  with jax.enable_x64(True):
    state = GradVacState(jnp.zeros((t, t), jnp.float64))
    for step, flat in enumerate(_problems(8, t, d, count=5)):
      key = jax.random.key(step)
      orders = np.asarray(random_orders(key, t))
      want, targets = _gradvac_numpy(flat, targets, orders, beta)
      state, combined, info = gradvac_update(state, _tree(flat), key, beta)
      np.testing.assert_allclose(_flat(combined), want, rtol=1e-9, atol=1e-12)
      np.testing.assert_allclose(state.targets, targets, rtol=1e-9, atol=1e-12)
  assert int(info.num_adjusted) > 0


def test_gradvac_raises_the_cosine_to_its_target():
  """One adjustment (T = 2) leaves cos(g_0', g_1) exactly at the target (paper eq. 3)."""
  rng = np.random.default_rng(9)
  flat = rng.normal(size=(2, 6))
  with jax.enable_x64(True):
    gram = jnp.asarray(flat @ flat.T)
    phi = float(gram[0, 1] / np.sqrt(gram[0, 0] * gram[1, 1]))
    goal = min(phi + 0.4, 0.95)
    targets = jnp.full((2, 2), goal)
    coeffs, new_targets, _, n = gradvac_coefficients(gram, targets, jnp.array([[1], [0]]), 0.1)
  g0 = np.asarray(coeffs[0]) @ flat
  np.testing.assert_allclose(g0 @ flat[1] / np.linalg.norm(g0) / np.linalg.norm(flat[1]),
                             goal, rtol=1e-6)
  np.testing.assert_allclose(new_targets[0, 1], 0.9 * goal + 0.1 * phi)
  assert int(n) == 2
  assert gradvac_init(3).targets.shape == (3, 3)
