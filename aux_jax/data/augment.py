"""On-device image augmentation (jittable, independent per image)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_crop_flip(key, images: jnp.ndarray, pad: int = 4, fill=0) -> jnp.ndarray:
  """Random crop after padding, then random horizontal flip (the CIFAR recipe).

  Each image `x ∈ R^{H×W×C}` is padded with `fill` by `pad` pixels on every side,
  a window `x_pad[dy : dy + H, dx : dx + W]` with `dy, dx ~ U{0, …, 2·pad}` is cut
  out, and with probability 1/2 it is mirrored left-right. Every image draws its own
  offsets and flip. To match torchvision's `RandomCrop(32, padding=4)` (black
  padding), apply it to pixel values before normalisation.

  Args:
    key: PRNG key.
    images: `[..., H, W, C]` of any dtype (leading axes are flattened, e.g. `[T, B]`).
    pad: padding in pixels, static.
    fill: padding value.

  Returns:
    An array of the same shape and dtype.
  """
  if images.ndim < 3:
    raise ValueError(f"images must be [..., H, W, C], got shape {images.shape}")
  lead, (h, w, c) = images.shape[:-3], images.shape[-3:]
  x = images.reshape((-1, h, w, c))
  n = x.shape[0]
  k_off, k_flip = jax.random.split(key)
  offsets = jax.random.randint(k_off, (n, 2), 0, 2 * pad + 1)
  flips = jax.random.bernoulli(k_flip, 0.5, (n,))
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=fill)

  def one(img, off, flip):
    win = jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
    return jnp.where(flip, win[:, ::-1], win)

  out = jax.vmap(one)(xp, offsets, flips)
  return out.reshape(lead + (h, w, c))
