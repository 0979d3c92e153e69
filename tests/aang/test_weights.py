"""Factored logits, batch split, loss weights, sampling and the meta-update against
direct NumPy computations (the original's rules, see `aux_jax.aang.weights`)."""

import math

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


def test_objective_logits_and_balance():
  rng = np.random.default_rng(0)
  sp = get_space("citation.all")
  factors = sp.table().factors
  lg = random_logits(rng, sp.shape, len(sp))
  np.testing.assert_allclose(W.objective_logits(lg, jnp.asarray(factors)),
                             numpy_z(lg, factors), rtol=1e-6)
  np.testing.assert_allclose(W.objective_logits(lg, jnp.asarray(factors), use_all=False),
                             numpy_z(lg, factors, False), rtol=1e-6)
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


def numpy_split(lg, factors, sampled, batch):
  """The original's ceil chain (data.py:365-415) with Python loops, float64."""
  ws = [np.asarray(w, np.float64) for w in lg]
  f = factors[sampled]

  def soft(w, values):
    e = {v: math.exp(w[v]) for v in values}
    return {v: e[v] / sum(e.values()) for v in values}

  n_r = {r: math.ceil(batch * p - 1e-9)
         for r, p in soft(ws[2], sorted(set(f[:, 2]))).items()}
  sizes, groups = [], []
  for i, t, r, _ in f:
    p_i = soft(ws[0], sorted({x[0] for x in f if x[2] == r}))
    n_ri = math.ceil(n_r[r] * p_i[i] - 1e-9)
    p_t = soft(ws[1], sorted({x[1] for x in f if x[2] == r and x[0] == i}))
    sizes.append(math.ceil(n_ri * p_t[t] - 1e-9) if p_t[t] < 1 else n_ri)
    groups.append(n_ri)
  return np.array(sizes), np.array(groups)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_split_and_loss_scales_match_numpy(seed):
  rng = np.random.default_rng(seed)
  sp = get_space("citation.all")
  factors = sp.table().factors
  lg = random_logits(rng, sp.shape, len(sp))
  sampled = rng.choice(len(sp), 6, replace=False)
  sizes, groups = W.batch_split(lg, jnp.asarray(factors), jnp.asarray(sampled), 64)
  want_sizes, want_groups = numpy_split(lg, factors, sampled, 64)
  np.testing.assert_array_equal(np.asarray(sizes), want_sizes)
  np.testing.assert_array_equal(np.asarray(groups), want_groups)
  assert (want_sizes <= want_groups).all() and (want_groups <= 64).all()
  # s_c = (n_c / B) a_aux softmax_S(W_all + W_O).
  q = np.asarray(lg.w_all)[sampled] + np.asarray(lg.w_output)[factors[sampled, 3]]
  q = np.exp(q - q.max()) / np.exp(q - q.max()).sum()
  got = W.loss_scales(lg, jnp.asarray(factors), jnp.asarray(sampled), sizes, 64,
                      jnp.float32(0.4))
  np.testing.assert_allclose(got, want_sizes / 64 * 0.4 * q, rtol=1e-5)


def test_equal_logits_split_evenly():
  sp = get_space("citation.supervised")
  factors = jnp.asarray(sp.table().factors)
  lg = W.init_logits(sp.shape, len(sp))
  # Objectives 0, 1: (none, bidirectional, sup/denoise) share their group; 8: (replace,
  # left_to_right, denoise) is alone under its R.
  sizes, groups = W.batch_split(lg, factors, jnp.array([0, 1, 8]), 16)
  np.testing.assert_array_equal(sizes, [8, 8, 8])
  np.testing.assert_array_equal(groups, [8, 8, 8])
  sizes, _ = W.batch_split(lg, factors, jnp.array([0, 7, 13]), 15)  # one R, three T
  np.testing.assert_array_equal(sizes, [5, 5, 5])
