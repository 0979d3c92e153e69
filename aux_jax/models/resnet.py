"""ResNet-18 for 32×32 images (He et al., CVPR 2016, CIFAR variant).

The CIFAR variant replaces ImageNet's 7×7/2 stem and max-pool with one 3×3/1 conv,
so stage 1 runs at full resolution:

    stem: conv3×3(w) → BN → ReLU                               32×32×w
    stage1: 2 BasicBlocks, w channels, stride 1                32×32×w
    stage2: 2 BasicBlocks, 2w channels, first stride 2         16×16×2w
    stage3: 2 BasicBlocks, 4w channels, first stride 2         8×8×4w
    stage4: 2 BasicBlocks, 8w channels, first stride 2         4×4×8w
    global average pool                                        8w (= 512 for w = 64)

BasicBlock: y = ReLU(BN(conv3×3(ReLU(BN(conv3×3/s(x))))) + shortcut(x)), the shortcut
a 1×1/s conv + BN where the shape changes, identity otherwise. ``stem="imagenet"``
restores ImageNet's stem (7×7/2 conv → BN → ReLU → 3×3/2 max-pool) for large images
(e.g. AuxiLearn's 224-px Oxford Pet). Every parameter path
starts with `stem`, `stage1` … `stage4`: the modules of MAOAL's module-wise weights
(`aux_jax.partition.RESNET18_CIFAR_MODULES`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from aux_jax.models.small_cnn import BN_EPSILON, BN_MOMENTUM

# He-normal over fan-out, as torchvision's ResNet initialises its convolutions.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ConvBN(nn.Module):
  """conv (no bias) → BatchNorm, submodules `conv` and `bn`."""

  features: int
  kernel_size: int = 3
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    k = self.kernel_size
    x = nn.Conv(self.features, (k, k), strides=(self.strides, self.strides),
                padding=[(k // 2, k // 2)] * 2, use_bias=False,
                kernel_init=_CONV_INIT, dtype=self.dtype, name="conv")(x)
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPSILON, dtype=self.dtype, name="bn")(x)


class BasicBlock(nn.Module):
  """Two 3×3 ConvBN layers with a residual connection (`conv1`, `conv2`, `shortcut`)."""

  features: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.relu(ConvBN(self.features, 3, self.strides, self.dtype, name="conv1")(x, train))
    y = ConvBN(self.features, 3, 1, self.dtype, name="conv2")(y, train)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = ConvBN(self.features, 1, self.strides, self.dtype, name="shortcut")(x, train)
    return nn.relu(y + x)


class Stage(nn.Module):
  """`num_blocks` BasicBlocks (`block0`, `block1`, …), the first with `strides`."""

  features: int
  num_blocks: int
  strides: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(self.num_blocks):
      x = BasicBlock(self.features, self.strides if i == 0 else 1, self.dtype,
                     name=f"block{i}")(x, train)
    return x


class CifarResNet18(nn.Module):
  """CIFAR ResNet-18 backbone: `f32[B, H, W, C] -> f32[B, 8·width]` (see module doc).

  Attributes:
    width: channels of the stem and stage 1 (64 in the paper).
    stage_sizes: BasicBlocks per stage.
    dtype: compute dtype (params stay float32; the output is float32).
    stem: "cifar" (3×3/1) or "imagenet" (7×7/2 and a 3×3/2 max-pool).
  """

  width: int = 64
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  dtype: Any = jnp.float32
  stem: str = "cifar"

  @nn.compact
  def __call__(self, x, train: bool):
    x = jnp.asarray(x, self.dtype)
    if self.stem not in ("cifar", "imagenet"):
      raise ValueError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")
    if self.stem == "imagenet":
      x = nn.relu(ConvBN(self.width, 7, 2, self.dtype, name="stem")(x, train))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = nn.relu(ConvBN(self.width, 3, 1, self.dtype, name="stem")(x, train))
    for i, n in enumerate(self.stage_sizes):
      x = Stage(self.width * 2**i, n, 1 if i == 0 else 2, self.dtype,
                name=f"stage{i + 1}")(x, train)
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
