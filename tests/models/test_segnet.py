"""Tests for aux_jax.models.segnet: pooling with indices, output contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.models import segnet


def test_max_pool_and_unpool_match_brute_force():
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 4, 6, 3)))
  pooled, mask = segnet.max_pool_with_argmax(jnp.asarray(x))
  restored = np.asarray(segnet.max_unpool(pooled, mask))
  want_pool = np.zeros((2, 2, 3, 3))
  want_unpool = np.zeros_like(x)
  for b in range(2):
    for i in range(2):
      for j in range(3):
        for c in range(3):
          window = x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
          r, s = np.unravel_index(np.argmax(window), (2, 2))
          want_pool[b, i, j, c] = window[r, s]
          want_unpool[b, 2 * i + r, 2 * j + s, c] = window[r, s]
  np.testing.assert_array_equal(pooled, want_pool)
  np.testing.assert_array_equal(restored, want_unpool)
  with pytest.raises(ValueError, match="even"):
    segnet.max_pool_with_argmax(jnp.zeros((1, 3, 4, 1)))


def test_output_shapes_and_unit_normals():
  # 16 channels in the normal head: a pixel where all its ReLUs are off (the raw
  # normal is then the zero vector and stays 0) is then vanishingly unlikely.
  model = segnet.SegNetMTL(features=(16, 8), convs_per_level=(1, 2))
  x = jax.random.uniform(jax.random.key(0), (2, 16, 12, 3))
  variables = jax.jit(model.init, static_argnames="train")(
      jax.random.key(1), x, train=False)
  out, updates = jax.jit(model.apply, static_argnames=("train", "mutable"))(
      variables, x, train=True, mutable=("batch_stats",))
  assert out["seg"].shape == (2, 16, 12, 13)
  assert out["depth"].shape == (2, 16, 12, 1)
  assert out["normal"].shape == (2, 16, 12, 3)
  assert all(v.dtype == jnp.float32 for v in out.values())
  np.testing.assert_allclose(np.linalg.norm(out["normal"], axis=-1), 1.0, rtol=1e-5)
  # Training mode updates the BatchNorm running statistics; eval mode uses them.
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                         variables["batch_stats"], updates["batch_stats"])
  assert all(jax.tree.leaves(changed))
  eval_out = jax.jit(model.apply, static_argnames="train")(
      {**variables, **updates}, x, train=False)
  assert np.all(np.isfinite(eval_out["seg"]))


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  model = segnet.SegNetMTL(features=(4, 8), convs_per_level=(1, 1), num_classes=5,
                           dtype=jnp.bfloat16)
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda k, x: model.init(k, x, train=False), jax.random.key(0), x)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
      "seg": ((2, 8, 8, 5), jnp.float32), "depth": ((2, 8, 8, 1), jnp.float32),
      "normal": ((2, 8, 8, 3), jnp.float32)}
  # The convolutions themselves run in bfloat16.
  hlo = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(
      variables, x).as_text()
  assert "bf16" in hlo and "convolution" in hlo


def test_bad_input_size():
  model = segnet.SegNetMTL(features=(4, 8), convs_per_level=(1, 1))
  with pytest.raises(ValueError, match="divisible"):
    model.init(jax.random.key(0), jnp.zeros((1, 10, 8, 3)), train=False)


def test_body_parameter_count_is_auxilearns_segnet():
  """64-128-256-512-1024 with 2/2/3/3/3 convs (3×3, bias, BN scale+bias), decoder
  changing channels on a level's first conv: counted from the layer list."""
  def conv(cin, cout):
    return 9 * cin * cout + cout + 2 * cout
  f, n = (64, 128, 256, 512, 1024), (2, 2, 3, 3, 3)
  enc = sum(conv(3 if i == 0 else f[i - 1], f[i]) + (n[i] - 1) * conv(f[i], f[i])
            for i in range(5))
  dec = sum(conv(f[i], f[max(i - 1, 0)]) + (n[i] - 1) * conv(f[max(i - 1, 0)], f[max(i - 1, 0)])
            for i in range(5))
  assert enc + dec == 43_822_272
  shapes = jax.eval_shape(lambda k: segnet.SegNetBody().init(
      k, jnp.zeros((1, 32, 32, 3)), train=False)["params"], jax.random.key(0))
  assert sum(np.prod(s.shape) for s in jax.tree.leaves(shapes)) == enc + dec
