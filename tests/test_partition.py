"""Tests of module partitions as data and the per-module broadcast / inner products."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax import partition as P
from aux_jax.models import get_backbone


@pytest.fixture(scope="module")
def resnet_params():
  model = get_backbone("resnet18_cifar", width=4)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)),
                                             train=False))["params"]
  return jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)


def _toy_params():
  return {"enc": {"conv": {"kernel": np.zeros((3, 3, 1, 2)), "bias": np.zeros(2)},
                  "bn": {"scale": np.zeros(2)}},
          "dec": {"kernel": np.zeros((2, 4)), "bias": np.zeros(4)}}


def test_global_and_param_wise():
  params = _toy_params()
  g = P.make_partition(params, "global")
  assert g.module_names == ("global",) and g.num_modules == 1
  assert set(jax.tree.leaves(g.assignment)) == {0}
  pw = P.make_partition(params, "param_wise")
  paths = P.leaf_paths(params)
  assert pw.module_names == tuple(paths) and pw.num_modules == 5
  assert list(pw.leaf_modules) == list(range(5))
  assert "enc/conv/kernel" in paths and "dec/bias" in paths
  assert pw.module_sizes == tuple(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def test_resnet_module_wise(resnet_params):
  part = P.make_partition(resnet_params, "module_wise", P.partition_rules("resnet18_cifar"))
  assert part.module_names == ("stem", "stage1", "stage2", "stage3", "stage4")
  for path, m in zip(P.leaf_paths(resnet_params), part.leaf_modules):
    assert path.split("/")[0] == part.module_names[m]
  sizes = {k: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v))
           for k, v in resnet_params.items()}
  assert part.module_sizes == tuple(sizes[n] for n in part.module_names)


def test_small_cnn_rules_cover_the_model():
  model = get_backbone("small_cnn")
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)),
                                             train=False))["params"]
  part = P.make_partition(params, "module_wise", P.partition_rules("small_cnn"))
  assert part.module_names == ("block1", "block2", "dense")


def test_first_matching_rule_wins_and_names_may_repeat():
  params = _toy_params()
  part = P.make_partition(params, "module_wise",
                          [("convs", "conv"), ("rest", "^enc/"), ("convs", "^dec/kernel"),
                           ("rest", "bias")])
  assert part.module_names == ("convs", "rest")
  got = dict(zip(P.leaf_paths(params), part.leaf_modules))
  assert got == {"dec/bias": 1, "dec/kernel": 0, "enc/bn/scale": 1, "enc/conv/bias": 0,
                 "enc/conv/kernel": 0}


def test_errors_name_the_culprit():
  params = _toy_params()
  with pytest.raises(ValueError, match="unknown partition kind 'layer'"):
    P.make_partition(params, "layer")
  with pytest.raises(ValueError, match="needs rules"):
    P.make_partition(params, "module_wise")
  with pytest.raises(ValueError, match=r"\('head', '\^head/'\).*match no parameter"):
    P.make_partition(params, "module_wise", [("enc", "^enc/"), ("dec", "^dec/"),
                                             ("head", "^head/")])
  with pytest.raises(ValueError, match=r"\('again', 'enc'\).*taken by earlier rules"):
    P.make_partition(params, "module_wise", [("enc", "^enc/"), ("again", "enc"),
                                             ("dec", "^dec/")])
  with pytest.raises(ValueError, match=r"2 parameter\(s\) match no module rule.*'dec/bias'"):
    P.make_partition(params, "module_wise", [("enc", "^enc/")])
  with pytest.raises(ValueError, match="invalid regex"):
    P.make_partition(params, "module_wise", [("enc", "(")])
  with pytest.raises(ValueError, match="known: .*resnet18_cifar, .*small_cnn"):
    P.partition_rules("vgg")


def _part_and_trees(seed=0):
  params = _toy_params()
  part = P.make_partition(params, "module_wise", [("enc", "^enc/"), ("dec", "^dec/")])
  rng = np.random.default_rng(seed)
  a = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), params)
  b = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), params)
  return part, a, b


def test_module_broadcast_matches_loop():
  part, a, _ = _part_and_trees()
  w = np.array([2.0, -3.0], np.float32)
  out = P.module_broadcast(part, w)
  for leaf, m, x in zip(jax.tree.leaves(out), part.leaf_modules, jax.tree.leaves(a)):
    assert leaf.shape == ()
    np.testing.assert_array_equal(np.asarray(leaf * x), w[m] * x)
  wt = np.arange(6, dtype=np.float32).reshape(3, 2)  # [T, M]
  out = jax.jit(P.module_broadcast, static_argnums=0)(part, wt)
  for leaf, m, x in zip(jax.tree.leaves(out), part.leaf_modules, jax.tree.leaves(a)):
    assert leaf.shape == (3,) + (1,) * x.ndim
    scaled = np.asarray(leaf * x)  # [T, *x.shape]
    for t in range(3):
      np.testing.assert_array_equal(scaled[t], wt[t, m] * x)
  with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
    P.module_broadcast(part, np.ones(3))
  bare = P.Partition(part.module_names, part.assignment)
  with pytest.raises(ValueError, match="leaf_shapes"):
    P.module_broadcast(bare, wt)


def test_module_inner_matches_loop():
  part, a, b = _part_and_trees()
  expected = np.zeros(2)
  for m, x, y in zip(part.leaf_modules, jax.tree.leaves(a), jax.tree.leaves(b)):
    expected[m] += np.sum(x.astype(np.float64) * y)
  np.testing.assert_allclose(jax.jit(P.module_inner, static_argnums=0)(part, a, b), expected,
                             rtol=1e-5)
  # Leading task axis on `a` (and optionally `b`).
  at = jax.tree.map(lambda x: np.stack([x, 2 * x, -x]), a)
  out = P.module_inner(part, at, b, batched=True)
  np.testing.assert_allclose(out, np.outer([1, 2, -1], expected), rtol=1e-5)
  bt = jax.tree.map(lambda x: np.stack([x, x, x]), b)
  np.testing.assert_allclose(P.module_inner(part, at, bt, batched=True), out, rtol=1e-6)
  # vmap over the unbatched form gives the same.
  vm = jax.vmap(lambda x: P.module_inner(part, x, b))(at)
  np.testing.assert_allclose(vm, out, rtol=1e-5)
  # With a == b: squared module norms.
  norms = P.module_inner(part, a, a)
  for m in range(2):
    ref = sum(np.sum(np.square(x, dtype=np.float64))
              for i, x in zip(part.leaf_modules, jax.tree.leaves(a)) if i == m)
    np.testing.assert_allclose(norms[m], ref, rtol=1e-5)


def test_partition_is_hashable_by_value():
  p1 = P.make_partition(_toy_params(), "param_wise")
  p2 = P.make_partition(_toy_params(), "param_wise")
  assert p1 == p2 and hash(p1) == hash(p2)
  assert p1 != P.make_partition(_toy_params(), "global")
