"""SegNet-style multi-task encoder–decoder for NYUv2 (segmentation, depth, normals).

The "SegNet split" multi-task baseline of MTAN (Liu et al., CVPR 2019), used by
AuxiLearn (Navon et al., ICLR 2021) on NYUv2: a shared VGG-like encoder–decoder
(SegNet, Badrinarayanan et al., 2017) and one small head per task.

    encoder level i:  n_i × [3×3 conv → BatchNorm → ReLU] (f_i channels) → 2×2 max-pool,
                      remembering the arg-max position in every window
    decoder level i:  max-unpool (values back at the remembered positions, zeros
                      elsewhere) → n_i × [3×3 conv → BN → ReLU], the first one
                      changing f_i to f_{i−1} channels (f_0 at level 0), as
                      AuxiLearn's SegNet (``decoder_change="first"``; "last": the
                      last conv changes them)
    task head:        3×3 conv (f_0, no activation) → 1×1 conv to the task's channels

Outputs: 13-class segmentation logits, 1-channel depth, and 3-channel normals
divided by their L2 norm (a raw normal that is exactly the zero vector stays 0
instead of becoming NaN). The defaults (f = 64, 128, 256, 512, 1024; n = 2, 2, 3, 3, 3)
are AuxiLearn's (SegNet's VGG-16 widths with a 1024-channel deepest level); inputs
need H and W divisible by 2^levels (288×384 works for 5 levels). The training
experiments use `SegNetBody` with stacked per-task heads (`aux_jax.models.heads`;
``model.dense_head="3x3_1x1"``: AuxiLearn's 3×3 (bias, no activation) then 1×1).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aux_jax.models.small_cnn import BN_EPSILON, BN_MOMENTUM

TASK_CHANNELS = {"seg": 13, "depth": 1, "normal": 3}


def max_pool_with_argmax(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """2×2 / stride-2 max-pool that also returns where each maximum was.

  Args:
    x: f32[B, H, W, C] with even H and W.

  Returns:
    (pooled f32[B, H/2, W/2, C], mask f32[B, H/2, W/2, C, 4]) where the mask one-hot
    encodes the arg-max inside each window (row-major: (0,0), (0,1), (1,0), (1,1);
    the first one on ties).
  """
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"max_pool_with_argmax needs even H and W; got {x.shape}")
  windows = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
  windows = windows.reshape(b, h // 2, w // 2, c, 4)
  mask = jax.nn.one_hot(jnp.argmax(windows, axis=-1), 4, dtype=x.dtype)
  return jnp.max(windows, axis=-1), mask


def max_unpool(y: jax.Array, mask: jax.Array) -> jax.Array:
  """Inverse placement of `max_pool_with_argmax`: f32[B, h, w, C] → f32[B, 2h, 2w, C].

  Each value goes back to the position of its window's maximum; the other three
  positions are 0.
  """
  b, h, w, c = y.shape
  if mask.shape != (b, h, w, c, 4):
    raise ValueError(f"mask must have shape {(b, h, w, c, 4)}; got {mask.shape}")
  out = (y[..., None] * mask.astype(y.dtype)).reshape(b, h, w, c, 2, 2)
  return out.transpose(0, 1, 4, 2, 5, 3).reshape(b, 2 * h, 2 * w, c)


# Conv kernel initialisers by name: AuxiLearn's SegNet uses Xavier-normal (zero bias).
KERNEL_INITS = {"xavier_normal": nn.initializers.xavier_normal(),
                "lecun_normal": nn.initializers.lecun_normal()}


class _ConvBNReLU(nn.Module):
  features: int
  dtype: Any
  kernel_init: str = "xavier_normal"

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (3, 3), kernel_init=KERNEL_INITS[self.kernel_init],
                dtype=self.dtype)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                     epsilon=BN_EPSILON, dtype=self.dtype)(x)
    return nn.relu(x)


class _Head(nn.Module):
  features: int
  out_channels: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, (3, 3), dtype=self.dtype)(x)  # no activation (AuxiLearn)
    return nn.Conv(self.out_channels, (1, 1), dtype=self.dtype)(x).astype(jnp.float32)


class SegNetBody(nn.Module):
  """The shared SegNet encoder–decoder without task heads: `f32[B, H, W, C] ->
  f32[B, H, W, f_0]` per-pixel features (the trainer's stacked heads are then 1×1
  convolutions, `aux_jax.models.heads.apply_heads_shared`).

  Attributes:
    features: channels per level, f_0..f_{L−1}.
    convs_per_level: 3×3 convolutions per encoder (and decoder) level, n_0..n_{L−1}.
    dtype: compute dtype (params stay float32).
    decoder_change: which decoder conv of a level changes the channels, "first"
      (AuxiLearn's) or "last".
    kernel_init: "xavier_normal" (AuxiLearn's) or "lecun_normal" (Flax's default).
  """

  features: Sequence[int] = (64, 128, 256, 512, 1024)
  convs_per_level: Sequence[int] = (2, 2, 3, 3, 3)
  dtype: Any = jnp.float32
  decoder_change: str = "first"
  kernel_init: str = "xavier_normal"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    levels = len(self.features)
    if levels == 0 or len(self.convs_per_level) != levels or min(self.convs_per_level) < 1:
      raise ValueError(
          f"features {tuple(self.features)} and convs_per_level "
          f"{tuple(self.convs_per_level)} must be non-empty, of equal length, with "
          ">= 1 conv per level")
    if self.kernel_init not in KERNEL_INITS:
      raise ValueError(f"kernel_init must be one of {tuple(KERNEL_INITS)}, got "
                       f"{self.kernel_init!r}")
    if x.ndim != 4 or x.shape[1] % 2 ** levels or x.shape[2] % 2 ** levels:
      raise ValueError(
          f"SegNet expects f32[B, H, W, C] with H, W divisible by 2^{levels}; got "
          f"{x.shape}")
    h = jnp.asarray(x, self.dtype)
    masks = []
    for i, (f, n) in enumerate(zip(self.features, self.convs_per_level)):
      for j in range(n):
        h = _ConvBNReLU(f, self.dtype, self.kernel_init, name=f"enc{i}_{j}")(h, train)
      h, mask = max_pool_with_argmax(h)
      masks.append(mask)
    for i in reversed(range(levels)):
      h = max_unpool(h, masks[i])
      n = self.convs_per_level[i]
      if self.decoder_change not in ("first", "last"):
        raise ValueError(f"decoder_change must be 'first' or 'last', got "
                         f"{self.decoder_change!r}")
      for j in range(n):
        changed = self.decoder_change == "first" or j == n - 1
        f = self.features[max(i - 1, 0)] if changed else self.features[i]
        h = _ConvBNReLU(f, self.dtype, self.kernel_init, name=f"dec{i}_{j}")(h, train)
    return h


class SegNetMTL(nn.Module):
  """Shared SegNet body with segmentation, depth and surface-normal heads.

  Attributes:
    features: channels per level, f_0..f_{L−1}.
    convs_per_level: 3×3 convolutions per encoder (and decoder) level, n_0..n_{L−1}.
    num_classes: segmentation classes (13 for NYUv2).
    dtype: compute dtype (params stay float32; outputs are float32).
  """

  features: Sequence[int] = (64, 128, 256, 512, 1024)
  convs_per_level: Sequence[int] = (2, 2, 3, 3, 3)
  num_classes: int = 13
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
    """Forward pass.

    Args:
      x: f32[B, H, W, 3] images, H and W divisible by 2^L.
      train: BatchNorm uses batch statistics (and updates ``batch_stats``) if True.

    Returns:
      {"seg": f32[B, H, W, num_classes] logits, "depth": f32[B, H, W, 1],
       "normal": f32[B, H, W, 3] unit vectors}.
    """
    h = SegNetBody(self.features, self.convs_per_level, self.dtype, name="body")(x, train)
    channels = dict(TASK_CHANNELS, seg=self.num_classes)
    out = {t: _Head(self.features[0], c, self.dtype, name=f"head_{t}")(h)
           for t, c in channels.items()}
    norm = jnp.sqrt(jnp.sum(jnp.square(out["normal"]), axis=-1, keepdims=True) + 1e-12)
    out["normal"] = out["normal"] / norm
    return out
