"""Backbones (Flax linen), per-task heads and the multi-task forward pass."""

from __future__ import annotations

import flax.linen as nn

from aux_jax.models.heads import apply_head, apply_heads, init_heads
from aux_jax.models.multitask import masked_cross_entropy, multitask_features, single_features
from aux_jax.models.resnet import CifarResNet18
from aux_jax.models.small_cnn import SmallCNN

_BACKBONES = {
    "small_cnn": SmallCNN,
    "resnet18_cifar": CifarResNet18,
}


def get_backbone(name: str, **kwargs) -> nn.Module:
  """A backbone by name: 'small_cnn' (`SmallCNN`) or 'resnet18_cifar' (`CifarResNet18`).

  Args:
    name: model name.
    **kwargs: module attributes (e.g. `width`, `dtype`).

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  if name not in _BACKBONES:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(_BACKBONES))}")
  return _BACKBONES[name](**kwargs)


__all__ = [
    "CifarResNet18",
    "SmallCNN",
    "apply_head",
    "apply_heads",
    "get_backbone",
    "init_heads",
    "masked_cross_entropy",
    "multitask_features",
    "single_features",
]
