"""MultiLeNet: the shared body of Sener & Koltun's Multi-MNIST network."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class MultiLeNet(nn.Module):
  """`conv1` → max-pool → ReLU → `conv2` → max-pool → ReLU → flatten → `dense` → ReLU.

  The shared representation of Sener & Koltun, "Multi-Task Learning as
  Multi-Objective Optimization" (NeurIPS 2018), without its dropout: 5×5 'VALID'
  convolutions with 10 and 20 channels, 2×2 max-pools, a 50-unit dense layer:
  `f32[B, H, W, C] -> f32[B, 50]`. For 28×28 inputs the flattened size is 4·4·20 =
  320 (as in the paper); for 36×36, 6·6·20 = 720; for CIFAR's 32×32×3, 5·5·20 = 500.
  Submodules `conv1`, `conv2`, `dense` are the modules of
  `aux_jax.partition.MULTI_LENET_MODULES`.

  Attributes:
    channels: output channels of the convolutions `conv1`, `conv2`, …
    features: output feature size `F`.
    dtype: compute dtype (params stay float32; the output is float32).
  """

  channels: tuple[int, int] = (10, 20)
  features: int = 50
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    del train  # dropout-free
    x = jnp.asarray(x, self.dtype)
    for i, ch in enumerate(self.channels):
      x = nn.Conv(int(ch), (5, 5), padding="VALID", dtype=self.dtype, name=f"conv{i + 1}")(x)
      x = nn.relu(nn.max_pool(x, (2, 2), strides=(2, 2)))
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(self.features, dtype=self.dtype, name="dense")(x)
    return nn.relu(x).astype(jnp.float32)
