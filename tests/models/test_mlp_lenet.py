"""Tests of the MLP and MultiLeNet backbones and their module partitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.models import get_backbone
from aux_jax.models.lenet import MultiLeNet
from aux_jax.models.mlp import MLP
from aux_jax.partition import make_partition, partition_rules


def _init(model, x):
  return jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))


def test_mlp_matches_numpy_forward():
  model = get_backbone("mlp", hidden=(5, 4, 3))
  assert isinstance(model, MLP)
  x = np.asarray(jax.random.normal(jax.random.key(1), (6, 2, 4)))  # flattened to [6, 8]
  params = _init(model, jnp.asarray(x))["params"]
  assert set(params) == {"layer0", "layer1", "layer2"}
  assert params["layer0"]["kernel"].shape == (8, 5)
  h = x.reshape(6, -1).astype(np.float64)
  for name in ("layer0", "layer1", "layer2"):
    p = params[name]
    h = np.maximum(h @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"]), 0.0)
  out = model.apply({"params": params}, jnp.asarray(x), train=True)
  assert out.shape == (6, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, h, rtol=1e-5, atol=1e-6)


def test_mlp_bfloat16_compute_keeps_float32_params_and_output():
  model = MLP(hidden=(4,), dtype=jnp.bfloat16)
  variables = _init(model, jnp.ones((2, 3)))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  assert model.apply(variables, jnp.ones((2, 3)), train=False).dtype == jnp.float32
  with pytest.raises(ValueError, match="hidden"):
    _init(MLP(hidden=()), jnp.ones((2, 3)))


@pytest.mark.parametrize("shape, flat", [((28, 28, 1), 320), ((36, 36, 1), 720),
                                         ((32, 32, 3), 500)])
def test_multi_lenet_shapes(shape, flat):
  model = get_backbone("multi_lenet")
  assert isinstance(model, MultiLeNet)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2,) + shape),
                                                train=False))
  p = variables["params"]
  assert set(variables) == {"params"}  # no BatchNorm, no dropout state
  assert p["conv1"]["kernel"].shape == (5, 5, shape[-1], 10)
  assert p["conv2"]["kernel"].shape == (5, 5, 10, 20)
  assert p["dense"]["kernel"].shape == (flat, 50)
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2,) + shape), train=True),
                       variables)
  assert out.shape == (2, 50) and out.dtype == jnp.float32


def test_multi_lenet_matches_direct_computation():
  """conv(VALID) → maxpool → relu, twice, then dense → relu, written with lax directly."""
  model = MultiLeNet(channels=(2, 3), features=4)
  x = jax.random.normal(jax.random.key(2), (2, 16, 16, 1))
  params = _init(model, x)["params"]

  def conv(h, p):
    y = jax.lax.conv_general_dilated(h, p["kernel"], (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]

  def pool(h):
    b, hh, ww, c = h.shape
    return h[:, :hh // 2 * 2, :ww // 2 * 2].reshape(b, hh // 2, 2, ww // 2, 2, c).max((2, 4))

  h = jnp.maximum(pool(conv(x, params["conv1"])), 0)       # 12 -> 6
  h = jnp.maximum(pool(conv(h, params["conv2"])), 0)       # 2 -> 1
  h = h.reshape(2, -1)
  want = jnp.maximum(h @ params["dense"]["kernel"] + params["dense"]["bias"], 0)
  got = model.apply({"params": params}, x, train=False)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, shape, modules", [
    ("mlp", (3, 7), ("layer0", "layer1", "layer2")),
    ("multi_lenet", (1, 28, 28, 1), ("conv1", "conv2", "dense")),
])
def test_module_partition_covers_every_leaf(name, shape, modules):
  model = get_backbone(name)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape),
                                             train=False))["params"]
  part = make_partition(params, "module_wise", partition_rules(name))
  assert part.module_names == modules
  # Every leaf is assigned to the module its top-level name says; sizes add up.
  for path, m in zip(jax.tree_util.tree_flatten_with_path(params)[0], part.leaf_modules):
    assert path[0][0].key == modules[m]
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert sum(part.module_sizes) == total
  for m, mod in enumerate(modules):
    assert part.module_sizes[m] == sum(int(np.prod(x.shape))
                                       for x in jax.tree.leaves(params[mod]))


def test_mlp_rules_reject_other_depths():
  params = jax.eval_shape(lambda: MLP(hidden=(4, 4)).init(jax.random.key(0), jnp.zeros((1, 3)),
                                                         train=False))["params"]
  with pytest.raises(ValueError, match="match no parameter"):
    make_partition(params, "module_wise", partition_rules("mlp"))
