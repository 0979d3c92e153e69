"""Random and centre crops to a smaller size (AuxiLearn's Pet: 256 → 224)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.data import augment


def test_random_crop_to_size_is_a_window_or_its_mirror():
  x = np.arange(3 * 10 * 9 * 2, dtype=np.float32).reshape(3, 10, 9, 2)
  out = np.asarray(augment.random_crop_flip(jax.random.key(0), jnp.asarray(x), pad=0,
                                            size=6))
  assert out.shape == (3, 6, 6, 2)
  for img, crop in zip(x, out):
    windows = [img[i:i + 6, j:j + 6] for i in range(5) for j in range(4)]
    assert any(np.array_equal(crop, w) or np.array_equal(crop, w[:, ::-1])
               for w in windows)
  # Over many draws every offset of U{0..4} × U{0..3} occurs (torchvision's RandomCrop).
  many = np.asarray(augment.random_crop_flip(
      jax.random.key(1), jnp.broadcast_to(jnp.asarray(x[:1]), (400, 10, 9, 2)), pad=0,
      size=6))
  tops = {int(np.argwhere(x[0, :, :, 0] == m[0, :, 0].min())[0][0]) for m in many}
  assert tops == set(range(5))
  with pytest.raises(ValueError, match="exceeds"):
    augment.random_crop_flip(jax.random.key(0), jnp.asarray(x), pad=0, size=11)


def test_default_window_unchanged():
  """Without ``size`` the draws are the CIFAR recipe's (same key, same output)."""
  x = jax.random.uniform(jax.random.key(2), (4, 8, 8, 3))
  a = augment.random_crop_flip(jax.random.key(3), x, pad=2)
  b = augment.random_crop_flip(jax.random.key(3), x, pad=2, size=8)
  np.testing.assert_array_equal(a, b)


def test_center_crop_is_torchvisions():
  x = np.arange(256 * 256).reshape(1, 256, 256, 1)
  np.testing.assert_array_equal(augment.center_crop(x, 224), x[:, 16:240, 16:240])
  y = np.arange(7 * 6).reshape(7, 6, 1)
  # top = round(3/2) = 2 (Python rounds half to even), left = round(2/2) = 1
  np.testing.assert_array_equal(augment.center_crop(y, 4), y[2:6, 1:5])
