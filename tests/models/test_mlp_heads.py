"""MLP heads (AuxiLearn's Pet: Linear(1000, 512) → ReLU → Linear(512, C)) vs NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.models.heads import apply_head, apply_heads, apply_heads_shared, init_heads


def test_mlp_heads_match_numpy():
  t, b, f, hid, c = 3, 4, 6, 5, 2
  h = init_heads(jax.random.key(0), t, f, c, hidden=hid)
  assert h["hidden_kernel"].shape == (t, f, hid) and h["kernel"].shape == (t, hid, c)
  h = {k: v + 0.1 * jax.random.normal(jax.random.key(i), v.shape)  # non-zero biases
       for i, (k, v) in enumerate(h.items())}
  x = np.asarray(jax.random.normal(jax.random.key(9), (t, b, f)))
  hp = {k: np.asarray(v, np.float64) for k, v in h.items()}

  def ref(i, feats):
    z = np.maximum(feats @ hp["hidden_kernel"][i] + hp["hidden_bias"][i], 0.0)
    return z @ hp["kernel"][i] + hp["bias"][i]

  out = apply_heads(h, jnp.asarray(x))
  shared = apply_heads_shared(h, jnp.asarray(x[0]))
  for i in range(t):
    np.testing.assert_allclose(out[i], ref(i, x[i]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(apply_head(h, jnp.int32(i), jnp.asarray(x[i])), ref(i, x[i]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shared[i], ref(i, x[0]), rtol=1e-5, atol=1e-6)


def test_hidden_zero_is_the_linear_head():
  a = init_heads(jax.random.key(0), 2, 5, 3)
  b = init_heads(jax.random.key(0), 2, 5, 3, hidden=0)
  assert set(a) == set(b) == {"kernel", "bias"}
  np.testing.assert_array_equal(a["kernel"], b["kernel"])
  with pytest.raises(ValueError, match="not both"):
    init_heads(jax.random.key(0), 2, 5, 3, conv3x3=True, hidden=4)
