"""Per-task linear heads stored as stacked arrays, so all tasks apply in one einsum.

Heads are `{'kernel': f32[T, F, C_max], 'bias': f32[T, C_max]}`; head `t` computes
`logits = feats @ kernel[t] + bias[t]`, exactly a `flax.linen.Dense(C_max)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


def init_heads(key, num_tasks: int, features: int, num_classes_max: int) -> dict:
  """Initialises `num_tasks` heads like `flax.linen.Dense`: LeCun-normal kernel, zero bias.

  Args:
    key: PRNG key.
    num_tasks: `T`.
    features: input size `F`.
    num_classes_max: output size `C_max`.

  Returns:
    `{'kernel': f32[T, F, C_max], 'bias': f32[T, C_max]}`.
  """
  keys = jax.random.split(key, num_tasks)
  init = nn.initializers.lecun_normal()
  kernel = jax.vmap(lambda k: init(k, (features, num_classes_max), jnp.float32))(keys)
  return {"kernel": kernel, "bias": jnp.zeros((num_tasks, num_classes_max), jnp.float32)}


def apply_heads(heads: dict, feats: jnp.ndarray) -> jnp.ndarray:
  """All heads on their own tasks' features: `f32[T, B, F] -> f32[T, B, C_max]`."""
  return jnp.einsum("tbf,tfc->tbc", feats, heads["kernel"]) + heads["bias"][:, None, :]


def apply_head(heads: dict, t, feats: jnp.ndarray) -> jnp.ndarray:
  """Head `t` (int, may be traced) on `f32[B, F]` features: `-> f32[B, C_max]`."""
  return feats @ heads["kernel"][t] + heads["bias"][t]


def apply_heads_shared(heads: dict, feats: jnp.ndarray) -> jnp.ndarray:
  """All heads on one batch's features: `f32[B, ..., F] -> f32[T, B, ..., C_max]`.

  Dense features (`f32[B, H, W, F]`) get a per-pixel linear head (a 1×1 convolution).
  """
  out = jnp.einsum("...f,tfc->t...c", feats, heads["kernel"])
  bias = heads["bias"].reshape((heads["bias"].shape[0],) + (1,) * (feats.ndim - 1)
                               + heads["bias"].shape[-1:])
  return out + bias
