"""A multilayer perceptron backbone (SLGrad's toy regression)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense → ReLU per hidden layer: `f32[B, ...] -> f32[B, hidden[-1]]`.

  Inputs are flattened to `[B, D]`. The features are the last hidden activation; the
  task heads come on top (`aux_jax.models.heads`). The original toy model (Grégoire
  et al., 2023) shares 3 layers of 64 units. Submodules are `layer0`, `layer1`, …
  (the modules of `aux_jax.partition.MLP_MODULES` for the default 3 layers).

  Attributes:
    hidden: units of each hidden layer (at least one).
    dtype: compute dtype (params stay float32; the output is float32).
  """

  hidden: Sequence[int] = (64, 64, 64)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    del train  # no dropout or normalisation
    if not self.hidden:
      raise ValueError("MLP needs at least one hidden layer, got hidden=()")
    x = jnp.asarray(x, self.dtype).reshape((x.shape[0], -1))
    for i, units in enumerate(self.hidden):
      x = nn.relu(nn.Dense(int(units), dtype=self.dtype, name=f"layer{i}")(x))
    return x.astype(jnp.float32)
