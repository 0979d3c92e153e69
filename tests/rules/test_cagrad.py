"""CAGrad: the simplex solver against brute force, the update against NumPy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.rules import cagrad
from aux_jax.rules.cagrad import cagrad_objective, project_to_simplex

# One jitted function for every test (c is traced; recompiles only per shape/dtype).
_cagrad = jax.jit(cagrad, static_argnames=("rescale", "num_iterations"))


def _simplex_grid(n):
  i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
  keep = i + j <= n
  return np.stack([i[keep], j[keep], n - i[keep] - j[keep]], axis=1) / n


def _numpy_objective(w, flat, c):
  g0 = flat.mean(0)
  gw = w @ flat
  return gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw, axis=-1)


def _problems(rng, t, d, count):
  for n in range(count):
    flat = rng.normal(size=(t, d)) * rng.uniform(0.2, 3.0, size=(t, 1))
    if n % 2:  # strong conflicts: the optimum lies on a face of the simplex
      flat[1] = -rng.uniform(0.3, 2.0) * flat[0] + 0.2 * rng.normal(size=d)
    yield flat


def test_simplex_solution_beats_fine_grid_for_three_tasks():
  grid = _simplex_grid(300)
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    for flat in _problems(rng, 3, 5, 6):
      for c in (0.1, 0.5, 0.9):
        _, info = _cagrad({"g": jnp.asarray(flat)}, c=c)
        w = np.asarray(info.weights)
        assert w.min() >= 0 and abs(w.sum() - 1) < 1e-12
        grid_obj = _numpy_objective(grid, flat, c)
        scale = np.abs(flat @ flat.T).max()
        # The solver is at least as good as the best grid point ...
        assert _numpy_objective(w, flat, c) <= grid_obj.min() + 1e-9 * scale
        # ... and close to it (the grid is within its resolution of the optimum).
        assert _numpy_objective(w, flat, c) >= grid_obj.min() - 1e-2 * scale
        np.testing.assert_allclose(info.objective, _numpy_objective(w, flat, c), rtol=1e-10)


def test_duality_gap_certifies_optimum_for_more_tasks():
  # For any w on the simplex, F(w) >= max_{‖d−ḡ‖≤c‖ḡ‖} min_t <g_t, d> >= min_t <g_t, d(w)>;
  # at the optimum the two sides meet (strong duality), so a small gap certifies w*.
  rng = np.random.default_rng(1)
  c = 0.5
  with jax.enable_x64(True):
    for flat in _problems(rng, 6, 12, 4):
      d, info = _cagrad({"g": jnp.asarray(flat)}, c=c, rescale=False)
      gap = float(info.objective) - (flat @ np.asarray(d["g"])).min()
      assert -1e-9 <= gap <= 1e-6 * np.abs(flat @ flat.T).max()


def test_update_matches_numpy():
  rng = np.random.default_rng(2)
  flat = list(_problems(rng, 4, 9, 2))[1]  # a conflicting problem
  with jax.enable_x64(True):
    grads = {"a": jnp.asarray(flat[:, :4]), "b": jnp.asarray(flat[:, 4:])}
    for c, rescale in [(0.5, True), (0.5, False), (0.2, True)]:
      d, info = _cagrad(grads, c=c, rescale=rescale)
      w = np.asarray(info.weights)
      g0 = flat.mean(0)
      gw = w @ flat
      # The paper's c (the official alpha): radius c‖ḡ‖, rescale 1 / (1 + c²).
      want = g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw
      if rescale:
        want = want / (1 + c**2)
      if not rescale:  # d lies on the ball's boundary ‖d − ḡ‖ = c‖ḡ‖
        np.testing.assert_allclose(np.linalg.norm(np.concatenate([d["a"], d["b"]]) - g0),
                                   c * np.linalg.norm(g0), rtol=1e-10)
      np.testing.assert_allclose(np.concatenate([d["a"], d["b"]]), want, rtol=1e-10)
      np.testing.assert_allclose(info.coefficients @ flat, want, rtol=1e-10)


def test_float32_close_to_float64():
  rng = np.random.default_rng(3)
  flat = next(_problems(rng, 5, 20, 1)) * 1e-3
  d32, info32 = _cagrad({"g": jnp.asarray(flat, jnp.float32)})
  with jax.enable_x64(True):
    d64, info64 = _cagrad({"g": jnp.asarray(flat)})
  np.testing.assert_allclose(info32.objective, info64.objective, rtol=1e-4)
  np.testing.assert_allclose(d32["g"], d64["g"], rtol=1e-3, atol=1e-3 * np.abs(d64["g"]).max())


def test_c_zero_gives_mean_and_zero_gradients_give_zero():
  flat = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
  d, _ = _cagrad({"g": jnp.asarray(flat)}, c=0.0)
  np.testing.assert_allclose(d["g"], flat.mean(0), rtol=1e-5, atol=1e-6)
  d, info = _cagrad({"g": jnp.zeros((3, 4))}, c=0.5)
  assert np.all(np.asarray(d["g"]) == 0) and np.all(np.isfinite(info.weights))
  with pytest.raises(ValueError, match="c >= 0"):
    cagrad({"g": jnp.asarray(flat)}, c=-0.1)


def test_project_to_simplex_optimality():
  # w = P(v) iff w is on the simplex and <v − w, u − w> <= 0 for every vertex u.
  rng = np.random.default_rng(5)
  with jax.enable_x64(True):
    for t in (1, 2, 5):
      for _ in range(5):
        v = rng.normal(size=t) * 2
        w = np.asarray(jax.jit(project_to_simplex)(jnp.asarray(v)))
        assert w.min() >= 0 and abs(w.sum() - 1) < 1e-12
        for u in np.eye(t):
          assert (v - w) @ (u - w) <= 1e-12
    np.testing.assert_allclose(project_to_simplex(jnp.asarray([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5])
    np.testing.assert_allclose(project_to_simplex(jnp.asarray([2.0, 0.0, -1.0])), [1.0, 0.0, 0.0])


def test_objective_helper_matches_numpy():
  rng = np.random.default_rng(6)
  flat = rng.normal(size=(4, 3))
  with jax.enable_x64(True):
    for w in itertools.islice(iter(rng.dirichlet(np.ones(4), size=3)), 3):
      np.testing.assert_allclose(
          cagrad_objective(jnp.asarray(w), jnp.asarray(flat @ flat.T), 0.3),
          _numpy_objective(w, flat, 0.3), rtol=1e-12)
