"""Factored logits, sampling and the meta-update against direct NumPy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.aang import weights as W
from aux_jax.aang.space import get_space


def random_logits(rng, shape, c):
  return W.FactoredLogits(*(jnp.asarray(rng.normal(size=n), jnp.float32)
                            for n in (*shape, c)))


def numpy_z(lg, factors, use_all=True):
  z = sum(np.asarray(w)[factors[:, a]] for a, w in enumerate(lg[:4]))
  return z + (np.asarray(lg.w_all) if use_all else 0)


def test_objective_logits_and_aux_weights():
  rng = np.random.default_rng(0)
  sp = get_space("citation.all")
  factors = sp.table().factors
  lg = random_logits(rng, sp.shape, len(sp))
  np.testing.assert_allclose(W.objective_logits(lg, jnp.asarray(factors)),
                             numpy_z(lg, factors), rtol=1e-6)
  np.testing.assert_allclose(W.objective_logits(lg, jnp.asarray(factors), use_all=False),
                             numpy_z(lg, factors, False), rtol=1e-6)
  sampled = np.array([3, 17, 0, 39])
  zs = numpy_z(lg, factors)[sampled]
  want = 0.7 * np.exp(zs - zs.max()) / np.exp(zs - zs.max()).sum()
  np.testing.assert_allclose(
      W.aux_weights(lg, jnp.asarray(factors), jnp.asarray(sampled), 0.7), want, rtol=1e-5)
  np.testing.assert_allclose(W.balance_weights(jnp.array([0.3, -0.2])),
                             np.exp([0.3, -0.2]) / np.exp([0.3, -0.2]).sum(), rtol=1e-6)


@pytest.mark.parametrize("use_all", [True, False])
def test_meta_update_matches_numpy(use_all):
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    sp = get_space("citation.supervised")
    factors = sp.table().factors
    lg = W.FactoredLogits(*(jnp.asarray(rng.normal(size=n)) for n in (*sp.shape, len(sp))))
    sampled = np.array([5, 0, 23, 9, 14])   # several share T, R or O values
    cos = rng.uniform(-1, 1, size=5)
    lr = 0.3
    new = W.meta_update(lg, jnp.asarray(factors), jnp.asarray(sampled), jnp.asarray(cos),
                        lr, use_all)
    # Direct: each sampled objective pushes -lr * (-cos) into each of its factors.
    want = [np.array(w, copy=True) for w in lg]
    for c, cs in zip(sampled, cos):
      for axis in range(4):
        want[axis][factors[c, axis]] += lr * cs
      if use_all:
        want[4][c] += lr * cs
    for got, w in zip(new, want):
      np.testing.assert_allclose(np.asarray(got), w, rtol=1e-12, atol=1e-12)
    # And the new objective logits move by lr * (sum of cos of sampled sharing factors).
    dz = numpy_z(new, factors, use_all) - numpy_z(lg, factors, use_all)
    c = sampled[0]
    share = [np.sum([cs for s, cs in zip(sampled, cos) if factors[s, a] == factors[c, a]])
             for a in range(4)]
    np.testing.assert_allclose(dz[c], lr * (sum(share) + (cos[0] if use_all else 0)),
                               rtol=1e-10)


def test_cosine_and_clip():
  rng = np.random.default_rng(2)
  a = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=5)}
  b = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=5)}
  fa = np.concatenate([a["x"].ravel(), a["y"]])
  fb = np.concatenate([b["x"].ravel(), b["y"]])
  want = fa @ fb / np.linalg.norm(fa) / np.linalg.norm(fb)
  with jax.enable_x64(True):
    np.testing.assert_allclose(W.tree_cosine(a, b), want, rtol=1e-6)
    scaled = jax.tree.map(lambda v: 37.0 * v, b)
    np.testing.assert_allclose(W.tree_cosine(a, scaled), want, rtol=1e-6)
  np.testing.assert_allclose(W.clip_factor(jnp.array([5.0, 20.0]), 10.0), [1.0, 0.5],
                             rtol=1e-6)


def test_sampling_distinct_uniform_and_by_logits():
  c, k, n = 24, 4, 3000
  idx = np.asarray(jax.vmap(lambda key: W.sample_objectives(key, c, k))(
      jax.random.split(jax.random.PRNGKey(0), n)))
  assert idx.shape == (n, k) and idx.min() >= 0 and idx.max() < c
  assert all(len(set(r)) == k for r in idx)
  freq = np.bincount(idx.ravel(), minlength=c) / n
  np.testing.assert_allclose(freq, k / c, atol=0.04)  # inclusion prob K/C for each
  # Plackett-Luce: the first draw is softmax(z)-distributed.
  z = jnp.asarray(np.linspace(-1.0, 1.0, 6))
  first = np.asarray(jax.vmap(lambda key: W.sample_objectives(key, 6, 2, z))(
      jax.random.split(jax.random.PRNGKey(1), n)))[:, 0]
  p = np.exp(np.asarray(z)) / np.exp(np.asarray(z)).sum()
  np.testing.assert_allclose(np.bincount(first, minlength=6) / n, p, atol=0.03)
  with pytest.raises(ValueError, match="k must be"):
    W.sample_objectives(jax.random.PRNGKey(0), 3, 4)
