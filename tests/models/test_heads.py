"""Tests of the stacked per-task heads."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.models import heads as heads_lib


def test_init_shapes_and_lecun_scale():
  h = heads_lib.init_heads(jax.random.key(0), 3, 400, 7)
  assert h["kernel"].shape == (3, 400, 7) and h["bias"].shape == (3, 7)
  assert not np.any(h["bias"])
  # LeCun normal: variance 1 / fan_in.
  np.testing.assert_allclose(np.std(h["kernel"]), 1 / np.sqrt(400), rtol=0.1)
  assert not np.allclose(h["kernel"][0], h["kernel"][1])


def test_heads_equal_per_task_dense():
  t, b, f, c = 3, 4, 5, 6
  h = heads_lib.init_heads(jax.random.key(0), t, f, c)
  h["bias"] = jax.random.normal(jax.random.key(1), (t, c))
  feats = jax.random.normal(jax.random.key(2), (t, b, f))
  out = heads_lib.apply_heads(h, feats)
  assert out.shape == (t, b, c)
  dense = nn.Dense(c)
  apply_one = jax.jit(heads_lib.apply_head)
  for i in range(t):
    ref = dense.apply({"params": {"kernel": h["kernel"][i], "bias": h["bias"][i]}}, feats[i])
    np.testing.assert_allclose(out[i], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(apply_one(h, jnp.int32(i), feats[i]), ref, rtol=1e-5, atol=1e-6)


def test_conv3x3_dense_heads_match_numpy():
  """AuxiLearn's NYUv2 heads: per task a 3×3 conv F→F (bias, no activation, zero
  padding) then the 1×1 map to C_max outputs."""
  from aux_jax.models.heads import apply_heads_shared, init_heads
  t, b, h, w, f, c = 2, 1, 4, 5, 3, 2
  heads = init_heads(jax.random.key(0), t, f, c, conv3x3=True)
  heads = jax.tree.map(lambda a: a + 0.1, heads)  # non-zero biases
  assert heads["conv_kernel"].shape == (t, 3, 3, f, f) and heads["conv_bias"].shape == (t, f)
  x = np.asarray(jax.random.normal(jax.random.key(1), (b, h, w, f)), np.float64)
  out = np.asarray(apply_heads_shared(heads, jnp.asarray(x, jnp.float32)))
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  for k in range(t):
    kern = np.asarray(heads["conv_kernel"][k], np.float64)
    hid = sum(np.einsum("bhwf,fg->bhwg", xp[:, i:i + h, j:j + w], kern[i, j])
              for i in range(3) for j in range(3)) + np.asarray(heads["conv_bias"][k])
    want = hid @ np.asarray(heads["kernel"][k]) + np.asarray(heads["bias"][k])
    np.testing.assert_allclose(out[k], want, rtol=1e-4, atol=1e-5)
