"""ResNet-18 (He et al., CVPR 2016): the CIFAR variant for 32×32 images, and
torchvision's ImageNet model (`ResNet18`) with ImageNet weights from a local file.

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
(e.g. AuxiLearn's 224-px Oxford Pet); `ResNet18` is that model, registered as
"resnet18". ``num_outputs`` > 0 adds torchvision's final Linear layer `fc` on the
pooled features (1000 for ImageNet's classifier: AuxiLearn's Pet networks put their
heads on these 1000 logits). Every parameter path starts with `stem`, `stage1` …
`stage4` (and `fc`): the modules of MAOAL's module-wise weights
(`aux_jax.partition.RESNET18_CIFAR_MODULES`).

ImageNet weights come from a local safetensors file with torchvision's names
(`load_torchvision_weights`; config ``model.pretrained=PATH``): the table
`torchvision_names` maps every Flax variable to its torchvision tensor, e.g.
``stage2/block0/shortcut/conv/kernel`` ← ``layer2.0.downsample.0.weight``. Convolution
kernels are stored OIHW by PyTorch and HWIO by Flax; BatchNorm's ``weight``, ``bias``,
``running_mean``, ``running_var`` become ``scale``, ``bias`` (params) and ``mean``,
``var`` (batch_stats); ``fc.weight`` [O, I] is transposed. The geometry is
torchvision's: 7×7/2 conv with padding 3, 3×3/2 max-pool with padding 1 (padded with
−∞), 3×3 convs with padding 1, 1×1/s shortcut convs, BatchNorm ε = 1e-5.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.models.roberta import CheckpointError  # one error type for weight files
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
    num_outputs: outputs of a final Linear layer `fc` on the pooled features (0: none,
      the output is the 8·width pooled features; 1000: ImageNet's classifier).
    dropout: p of dropout after the stem, after stages 1–3 and on the output, as
      ATTITTUD's CheXpert ResNet-18 (its ``TransferResnet``). Active only in training
      and only when the caller gives a ``"dropout"`` PRNG (the trainer's training
      losses do; a call without one, e.g. ATTITTUD's basis, runs without dropout).
  """

  width: int = 64
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  dtype: Any = jnp.float32
  stem: str = "cifar"
  num_outputs: int = 0
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool):
    x = jnp.asarray(x, self.dtype)
    active = bool(train and self.dropout > 0 and self.has_rng("dropout"))
    drop = lambda h: nn.Dropout(self.dropout, deterministic=not active)(h) if active else h
    if self.stem not in ("cifar", "imagenet"):
      raise ValueError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")
    if self.stem == "imagenet":
      x = nn.relu(ConvBN(self.width, 7, 2, self.dtype, name="stem")(x, train))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = nn.relu(ConvBN(self.width, 3, 1, self.dtype, name="stem")(x, train))
    x = drop(x)
    for i, n in enumerate(self.stage_sizes):
      x = Stage(self.width * 2**i, n, 1 if i == 0 else 2, self.dtype,
                name=f"stage{i + 1}")(x, train)
      if i < len(self.stage_sizes) - 1:
        x = drop(x)
    x = jnp.mean(x, axis=(1, 2))
    if self.num_outputs:
      # torchvision's Linear init: U(±1/sqrt(fan_in)) for weight and bias.
      bound = 1.0 / np.sqrt(x.shape[-1])
      uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(
          key, shape, dtype, -bound, bound)
      x = nn.Dense(self.num_outputs, kernel_init=uniform, bias_init=uniform,
                   dtype=self.dtype, name="fc")(x)
    return drop(x).astype(jnp.float32)


class ResNet18(CifarResNet18):
  """ImageNet ResNet-18 (torchvision's ``resnet18``): `CifarResNet18` with the ImageNet
  stem by default; ``num_outputs=1000`` adds ImageNet's classifier `fc`."""

  stem: str = "imagenet"


class BatchStatsResNet18(nn.Module):
  """`ResNet18` called as ``f(x)``, its BatchNorm always normalising with the batch's
  statistics (PyTorch's train mode; running statistics are not used). AuxiLearn's Pet
  labeler: a second ResNet-18 with the 1000-way fc, only ever run in training. Apply
  with ``mutable=["batch_stats"]`` (the statistics it writes are discarded)."""

  width: int = 64
  num_outputs: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return ResNet18(width=self.width, num_outputs=self.num_outputs, dtype=self.dtype,
                    name="resnet")(x, train=True)


# Flax ConvBN submodule -> torchvision (conv, bn) names, inside a block or the stem.
_BLOCK_LAYERS = {"conv1": ("conv1", "bn1"), "conv2": ("conv2", "bn2"),
                 "shortcut": ("downsample.0", "downsample.1")}
# Flax BatchNorm variable -> torchvision buffer/parameter.
_BN = {("params", "scale"): "weight", ("params", "bias"): "bias",
       ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


def _torch_layer(path: tuple[str, ...]) -> str:
  """The torchvision name of the layer at a Flax path (without the variable name)."""
  if path[0] == "stem":
    return {"conv": "conv1", "bn": "bn1"}[path[1]]
  if path[0] == "fc":
    return "fc"
  stage = int(path[0][len("stage"):])
  block = int(path[1][len("block"):])
  conv, bn = _BLOCK_LAYERS[path[2]]
  return f"layer{stage}.{block}." + (conv if path[3] == "conv" else bn)


def torchvision_names(variables: dict) -> dict[tuple[str, ...], tuple[str, str]]:
  """The name table: every variable of a `CifarResNet18`/`ResNet18` to its tensor.

  Args:
    variables: ``{"params", "batch_stats"}`` of the model (arrays or shapes).

  Returns:
    ``(collection, *path) -> (torchvision name, layout)`` with layout "conv" (OIHW →
    HWIO), "linear" ([O, I] → [I, O]) or "same"; e.g. ``("params", "stage1",
    "block0", "conv1", "bn", "scale") -> ("layer1.0.bn1.weight", "same")``.
  """
  table = {}
  for collection in ("params", "batch_stats"):
    flat = jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]
    for keypath, _ in flat:
      path = tuple(k.key for k in keypath)
      layer, leaf = _torch_layer(path[:-1]), path[-1]
      if path[0] == "fc":
        name, layout = f"fc.{'weight' if leaf == 'kernel' else 'bias'}", (
            "linear" if leaf == "kernel" else "same")
      elif leaf == "kernel":
        name, layout = f"{layer}.weight", "conv"
      else:
        name, layout = f"{layer}.{_BN[(collection, leaf)]}", "same"
      table[(collection,) + path] = (name, layout)
  return table


_LAYOUTS = {"conv": lambda w: np.transpose(w, (2, 3, 1, 0)),
            "linear": lambda w: np.transpose(w, (1, 0)), "same": lambda w: w}
_INVERSE = {"conv": (3, 2, 0, 1), "linear": (1, 0), "same": None}


def convert_torchvision(tensors: dict[str, np.ndarray], variables: dict) -> dict:
  """Maps torchvision ResNet tensors onto ``variables`` (same tree, f32 NumPy leaves).

  ``num_batches_tracked`` counters are ignored, and so are ``fc.*`` when the model has
  no `fc` (features only, e.g. ATTITTUD's body whose fc is replaced by an identity).

  Raises:
    CheckpointError: a missing tensor, a mis-shaped one (expected/found shapes in
      torchvision's layout), or a tensor the model has no place for (another
      architecture, e.g. a ResNet-34 file).
  """
  table = torchvision_names(variables)
  out: dict = {}
  used = set()
  for key, (name, layout) in table.items():
    if name not in tensors:
      raise CheckpointError(
          f"the weights file has no tensor {name!r} (for {'/'.join(key)}); is it a "
          "torchvision/timm ResNet-18 state dict?", name=name)
    leaf = variables
    for k in key:
      leaf = leaf[k]
    perm = _INVERSE[layout]
    expected = tuple(np.shape(leaf)) if perm is None else tuple(
        np.shape(leaf)[i] for i in perm)
    value = np.asarray(tensors[name])
    if tuple(value.shape) != expected:
      raise CheckpointError(
          f"tensor {name!r} has shape {tuple(value.shape)}, the model expects {expected} "
          f"(torchvision layout; width/num_outputs of the model?)", name=name,
          expected=expected, found=tuple(value.shape))
    node = out
    for k in key[:-1]:
      node = node.setdefault(k, {})
    node[key[-1]] = _LAYOUTS[layout](value).astype(np.float32)
    used.add(name)
  has_fc = "fc" in variables.get("params", {})
  unused = sorted(n for n in tensors if n not in used and not n.endswith(
      "num_batches_tracked") and (has_fc or not n.startswith("fc.")))
  if unused:
    raise CheckpointError(
        f"the weights file has {len(unused)} tensor(s) the model has no place for, e.g. "
        f"{unused[:3]}: not a ResNet-18 of this width?", name=unused[0])
  return out


def load_torchvision_weights(path: str, variables: dict) -> dict:
  """``variables`` with every tensor replaced by the safetensors file's at ``path``.

  The file holds a torchvision ``resnet18`` state dict (timm's ``resnet18`` uses the
  same names), e.g. written once with PyTorch::

      import torchvision, safetensors.torch
      m = torchvision.models.resnet18(weights="IMAGENET1K_V1")
      safetensors.torch.save_file(m.state_dict(), "resnet18_imagenet.safetensors")

  Read with NumPy (no PyTorch needed here).

  Raises:
    FileNotFoundError: no file at ``path``.
    CheckpointError: see `convert_torchvision`.
  """
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"no weights file {path!r}: model.pretrained must be a safetensors file of a "
        "torchvision resnet18 state dict (docs/fidelity.md: where to get one)")
  return convert_torchvision(load_file(path), variables)
