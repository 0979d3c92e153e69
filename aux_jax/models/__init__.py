"""Backbones (Flax linen), per-task heads and the multi-task forward pass."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from aux_jax import registry
from aux_jax.models.heads import apply_head, apply_heads, init_heads
from aux_jax.models.multitask import multitask_features, single_features
from aux_jax.models.resnet import CifarResNet18
from aux_jax.models.small_cnn import SmallCNN

# name -> "module:class"; a backbone maps inputs to features `f32[B, ..., F]`.
_BACKBONES = {
    "small_cnn": "aux_jax.models.small_cnn:SmallCNN",
    "resnet18_cifar": "aux_jax.models.resnet:CifarResNet18",
    "resnet18": "aux_jax.models.resnet:ResNet18",       # ImageNet stem (+ fc1000)
    "mlp": "aux_jax.models.mlp:MLP",                    # toy regression (SLGrad)
    "multi_lenet": "aux_jax.models.lenet:MultiLeNet",   # Multi-MNIST
    "segnet": "aux_jax.models.segnet:SegNetBody",       # NYUv2 (dense features)
}

BACKBONES = tuple(sorted(_BACKBONES))


def get_backbone(name: str, **kwargs) -> nn.Module:
  """A backbone by name (one of `BACKBONES`), e.g. 'small_cnn', 'resnet18_cifar'.

  Args:
    name: model name.
    **kwargs: module attributes (e.g. `width`, `dtype`).

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  return registry.lookup(_BACKBONES, name, "model")(**kwargs)


def load_pretrained_backbone(name: str, path: str, variables: dict) -> dict:
  """``variables`` of backbone ``name`` loaded from the weights file ``path`` (config
  ``model.pretrained``): torchvision ResNet-18 safetensors for "resnet18" and
  "resnet18_cifar" (`aux_jax.models.resnet.load_torchvision_weights`).

  Raises:
    ValueError: a backbone without a weights reader.
    FileNotFoundError, CheckpointError: from the reader.
  """
  if name not in ("resnet18", "resnet18_cifar"):
    raise ValueError(f"model.pretrained: no weights reader for model {name!r} (only "
                     "resnet18 / resnet18_cifar read torchvision safetensors)")
  from aux_jax.models.resnet import load_torchvision_weights  # pylint: disable=g-import-not-at-top
  return jax.tree.map(jnp.asarray, load_torchvision_weights(path, variables))


__all__ = [
    "BACKBONES",
    "CifarResNet18",
    "SmallCNN",
    "apply_head",
    "apply_heads",
    "get_backbone",
    "init_heads",
    "load_pretrained_backbone",
    "multitask_features",
    "single_features",
]
