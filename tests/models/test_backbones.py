"""Tests of the backbones and the model factory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.models import CifarResNet18, SmallCNN, get_backbone


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_resnet18_structure_and_size():
  model = get_backbone("resnet18_cifar")
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)),
                                                train=False))
  assert set(variables["params"]) == {"stem", "stage1", "stage2", "stage3", "stage4"}
  assert set(variables["batch_stats"]) == set(variables["params"])
  # The CIFAR ResNet-18 has 11,173,962 parameters with a 512->10 classifier
  # (11,168,832 without it), BatchNorm scales and biases included.
  assert _count(variables["params"]) == 11_173_962 - (512 * 10 + 10)
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 32, 32, 3)), train=False), variables)
  assert out.shape == (2, 512) and out.dtype == jnp.float32
  # Stage 4 of a 32x32 input runs at 4x4: three stride-2 stages, no max-pool.
  k = variables["params"]["stage4"]["block0"]["shortcut"]["conv"]["kernel"]
  assert k.shape == (1, 1, 256, 512)
  assert "shortcut" not in variables["params"]["stage1"]["block0"]


def test_resnet_small_forward_runs_and_trains_batch_stats():
  model = CifarResNet18(width=2, stage_sizes=(1, 1, 1, 1))
  x = jax.random.normal(jax.random.key(1), (3, 16, 16, 3))
  variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))
  feats, updates = jax.jit(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables)
  assert feats.shape == (3, 16) and np.all(np.isfinite(feats))
  assert np.all(np.asarray(feats) >= 0)  # ReLU before the global average pool
  old = variables["batch_stats"]["stem"]["bn"]["mean"]
  new = updates["batch_stats"]["stem"]["bn"]["mean"]
  assert not np.allclose(old, new)


def test_small_cnn_shapes_and_dtype():
  model = get_backbone("small_cnn", width=4, features=10, dtype=jnp.bfloat16)
  x = jnp.ones((5, 8, 8, 1))
  variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))
  assert set(variables["params"]) == {"block1", "block2", "dense"}
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  assert variables["params"]["dense"]["kernel"].shape == (2 * 2 * 8, 10)
  out = jax.jit(lambda v: model.apply(v, x, train=False))(variables)
  assert out.shape == (5, 10) and out.dtype == jnp.float32
  assert isinstance(get_backbone("small_cnn"), SmallCNN)


def test_unknown_model_names_known_ones():
  with pytest.raises(ValueError, match="known: .*resnet18_cifar, .*small_cnn"):
    get_backbone("vgg")
