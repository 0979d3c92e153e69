"""A tiny convolutional backbone for 8×8 images (the embedded digits problem)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# PyTorch's BatchNorm defaults (momentum 0.1 <-> flax momentum 0.9, eps 1e-5).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class ConvBlock(nn.Module):
  """3×3 conv (no bias) → BatchNorm → ReLU → 2×2 average pool.

  Attributes:
    features: output channels.
    dtype: compute dtype (params stay float32).
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                     epsilon=BN_EPSILON, dtype=self.dtype, name="bn")(x)
    x = nn.relu(x)
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class SmallCNN(nn.Module):
  """`block1` → `block2` → flatten → `dense` → ReLU: `f32[B, H, W, C] -> f32[B, F]`.

  For 8×8 inputs: 8×8×C → 4×4×`width` → 2×2×2`width` → `features`. Top-level
  submodules `block1`, `block2`, `dense` are the modules of
  `aux_jax.partition.SMALL_CNN_MODULES`.

  Attributes:
    width: channels of the first block (the second has twice as many).
    features: output feature size `F`.
    dtype: compute dtype (params stay float32; the output is float32).
  """

  width: int = 16
  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = jnp.asarray(x, self.dtype)
    x = ConvBlock(self.width, self.dtype, name="block1")(x, train)
    x = ConvBlock(2 * self.width, self.dtype, name="block2")(x, train)
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(self.features, dtype=self.dtype, name="dense")(x)
    return nn.relu(x).astype(jnp.float32)
