"""On-device image augmentation (jittable, independent per image)."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp


def random_crop_flip(key, images: jnp.ndarray, pad: int = 4, fill=0,
                     size: Optional[int] = None) -> jnp.ndarray:
  """Random crop after padding, then random horizontal flip (the CIFAR recipe).

  Each image `x ∈ R^{H×W×C}` is padded with `fill` by `pad` pixels on every side,
  a window `x_pad[dy : dy + S_h, dx : dx + S_w]` with `dy ~ U{0, …, H + 2·pad − S_h}`
  (likewise dx) is cut out, and with probability 1/2 it is mirrored left-right. Every
  image draws its own offsets and flip. The window is the image's size by default
  (torchvision's `RandomCrop(32, padding=4)`, black padding: apply it to pixel values
  before normalisation); ``size`` = S < H, W with ``pad=0`` is torchvision's
  `RandomCrop(S)` (AuxiLearn's Pet: 256 → 224).

  Args:
    key: PRNG key.
    images: `[..., H, W, C]` of any dtype (leading axes are flattened, e.g. `[T, B]`).
    pad: padding in pixels, static.
    fill: padding value.
    size: side S of the square window (None: the image's H × W).

  Returns:
    `[..., S_h, S_w, C]`, the dtype of ``images``.
  """
  if images.ndim < 3:
    raise ValueError(f"images must be [..., H, W, C], got shape {images.shape}")
  lead, (h0, w0, c) = images.shape[:-3], images.shape[-3:]
  h, w = (h0, w0) if size is None else (int(size), int(size))
  if h > h0 + 2 * pad or w > w0 + 2 * pad:
    raise ValueError(f"crop size {size} exceeds the padded image {h0 + 2 * pad}×"
                     f"{w0 + 2 * pad}")
  x = images.reshape((-1, h0, w0, c))
  n = x.shape[0]
  k_off, k_flip = jax.random.split(key)
  # A scalar bound where both axes have the same slack (the same draws as before).
  span = (h0 + 2 * pad - h + 1 if h0 - h == w0 - w
          else jnp.array([h0 + 2 * pad - h + 1, w0 + 2 * pad - w + 1]))
  offsets = jax.random.randint(k_off, (n, 2), 0, span)
  flips = jax.random.bernoulli(k_flip, 0.5, (n,))
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=fill)

  def one(img, off, flip):
    win = jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
    return jnp.where(flip, win[:, ::-1], win)

  out = jax.vmap(one)(xp, offsets, flips)
  return out.reshape(lead + (h, w, c))


def center_crop(images: jnp.ndarray, size: int) -> jnp.ndarray:
  """The central ``size × size`` window of `[..., H, W, C]` images (torchvision's
  `CenterCrop`: top = round((H − S)/2), left = round((W − S)/2))."""
  h, w = images.shape[-3:-1]
  s = int(size)
  if s > h or s > w:
    raise ValueError(f"center crop {s} exceeds the image {h}×{w}")
  top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
  return images[..., top:top + s, left:left + s, :]
