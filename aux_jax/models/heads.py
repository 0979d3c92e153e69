"""Per-task linear heads stored as stacked arrays, so all tasks apply in one einsum.

Heads are `{'kernel': f32[T, F, C_max], 'bias': f32[T, C_max]}`; head `t` computes
`logits = feats @ kernel[t] + bias[t]`, exactly a `flax.linen.Dense(C_max)`.

MLP heads (``hidden`` = H > 0) first map the features through a per-task hidden layer
with ReLU: ``h = relu(feats @ hidden_kernel[t] + hidden_bias[t])`` (extra leaves
``hidden_kernel`` f32[T, F, H], ``hidden_bias`` f32[T, H]; ``kernel`` is then
f32[T, H, C_max]), as AuxiLearn's Pet heads Linear(1000, 512) → ReLU → Linear(512, C).

Dense heads (per-pixel features) may start with a per-task 3×3 convolution F → F with
bias and no activation (``conv3x3=True``: extra leaves ``conv_kernel`` f32[T, 3, 3, F, F]
and ``conv_bias`` f32[T, F]), as the task heads of AuxiLearn's NYUv2 SegNet (3×3 then
1×1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


def init_heads(key, num_tasks: int, features: int, num_classes_max: int,
               conv3x3: bool = False, hidden: int = 0) -> dict:
  """Initialises `num_tasks` heads like `flax.linen.Dense`: LeCun-normal kernel, zero bias.

  Args:
    key: PRNG key.
    num_tasks: `T`.
    features: input size `F`.
    num_classes_max: output size `C_max`.
    conv3x3: also a 3×3 convolution F → F before the linear map (dense heads).
    hidden: H > 0: a hidden layer F → H with ReLU first (MLP heads); 0: linear heads.

  Returns:
    `{'kernel': f32[T, F or H, C_max], 'bias': f32[T, C_max]}` (+ ``conv_kernel``,
    ``conv_bias``; + ``hidden_kernel``, ``hidden_bias``).
  """
  keys = jax.random.split(key, num_tasks)
  init = nn.initializers.lecun_normal()
  width = int(hidden) or features
  kernel = jax.vmap(lambda k: init(k, (width, num_classes_max), jnp.float32))(keys)
  heads = {"kernel": kernel, "bias": jnp.zeros((num_tasks, num_classes_max), jnp.float32)}
  if conv3x3:
    ckeys = jax.random.split(jax.random.fold_in(key, 1), num_tasks)
    heads["conv_kernel"] = jax.vmap(
        lambda k: init(k, (3, 3, features, features), jnp.float32))(ckeys)
    heads["conv_bias"] = jnp.zeros((num_tasks, features), jnp.float32)
  if hidden:
    if conv3x3:
      raise ValueError("heads have either a 3×3 convolution or a hidden layer, not both")
    hkeys = jax.random.split(jax.random.fold_in(key, 2), num_tasks)
    heads["hidden_kernel"] = jax.vmap(
        lambda k: init(k, (features, int(hidden)), jnp.float32))(hkeys)
    heads["hidden_bias"] = jnp.zeros((num_tasks, int(hidden)), jnp.float32)
  return heads


def apply_heads(heads: dict, feats: jnp.ndarray) -> jnp.ndarray:
  """All heads on their own tasks' features: `f32[T, B, F] -> f32[T, B, C_max]`."""
  if "hidden_kernel" in heads:
    feats = jax.nn.relu(jnp.einsum("tbf,tfh->tbh", feats, heads["hidden_kernel"])
                        + heads["hidden_bias"][:, None, :])
  return jnp.einsum("tbf,tfc->tbc", feats, heads["kernel"]) + heads["bias"][:, None, :]


def apply_head(heads: dict, t, feats: jnp.ndarray) -> jnp.ndarray:
  """Head `t` (int, may be traced) on `f32[B, F]` features: `-> f32[B, C_max]`."""
  if "hidden_kernel" in heads:
    feats = jax.nn.relu(feats @ heads["hidden_kernel"][t] + heads["hidden_bias"][t])
  return feats @ heads["kernel"][t] + heads["bias"][t]


def apply_heads_shared(heads: dict, feats: jnp.ndarray) -> jnp.ndarray:
  """All heads on one batch's features: `f32[B, ..., F] -> f32[T, B, ..., C_max]`.

  Dense features (`f32[B, H, W, F]`) get a per-pixel linear head (a 1×1 convolution),
  after the per-task 3×3 convolution if the heads have one (``conv_kernel``).
  """
  if "conv_kernel" in heads:
    if feats.ndim != 4:
      raise ValueError(f"3×3 conv heads need features f32[B, H, W, F]; got {feats.shape}")
    conv = lambda k, b: jax.lax.conv_general_dilated(
        feats, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
    hidden = jax.vmap(conv)(heads["conv_kernel"], heads["conv_bias"])  # [T, B, H, W, F]
    out = jnp.einsum("t...f,tfc->t...c", hidden, heads["kernel"])
    bias = heads["bias"].reshape((heads["bias"].shape[0],) + (1,) * (feats.ndim - 1)
                                 + heads["bias"].shape[-1:])
    return out + bias
  if "hidden_kernel" in heads:
    hb = heads["hidden_bias"].reshape((heads["hidden_bias"].shape[0],)
                                      + (1,) * (feats.ndim - 1) + heads["hidden_bias"].shape[-1:])
    hidden = jax.nn.relu(jnp.einsum("...f,tfh->t...h", feats, heads["hidden_kernel"]) + hb)
    out = jnp.einsum("t...h,thc->t...c", hidden, heads["kernel"])
  else:
    out = jnp.einsum("...f,tfc->t...c", feats, heads["kernel"])
  bias = heads["bias"].reshape((heads["bias"].shape[0],) + (1,) * (feats.ndim - 1)
                               + heads["bias"].shape[-1:])
  return out + bias
