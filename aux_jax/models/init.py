"""Parameter initialisation schemes applied to a whole parameter tree (config
``model.init`` for the backbone, ``model.head_init`` for the task heads).

* ``"flax"``: the modules' own initialisers, as declared (e.g. He-normal fan-out for
  the ResNet's convolutions, as torchvision's ResNet; LeCun-normal heads).
* ``"torch_default"``: PyTorch's default of ``nn.Conv*d`` and ``nn.Linear``
  (``reset_parameters``): the weight from ``kaiming_uniform_(a=√5)``, i.e.
  U(−b, b) with b = gain·√(3/fan_in) and gain = √(2/(1 + a²)) = √(1/3), so
  b = 1/√fan_in (variance 1/(3·fan_in), a sixth of He's 2/fan_in for a 3×3 conv with
  as many input as output channels); the bias U(−1/√fan_in, 1/√fan_in);
  fan_in = in_channels/groups · kernel size. BatchNorm/LayerNorm are left as Flax
  makes them: scale 1, bias 0, as PyTorch's.

A module's kernel is any leaf named ``…kernel`` (Flax Conv ``[*window, in/groups, out]``,
Dense ``[in, out]``: fan_in is the product of all but the last axis), its bias the
sibling ``…bias`` with the same prefix (the stacked heads' ``conv_kernel`` and
``conv_bias``). Leaves in a dict without a kernel (normalisation scale and bias) are
unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

PyTree = Any
INITS = ("flax", "torch_default")


def torch_default(key: jax.Array, params: PyTree, lead: int = 0) -> PyTree:
  """``params`` with every kernel and its bias redrawn as PyTorch's default
  initialisation (module docstring).

  Args:
    key: PRNG key.
    params: a (nested dict) parameter tree.
    lead: leading axes that index copies (e.g. 1 for stacked per-task heads
      ``[T, F, C]``), excluded from fan_in; every copy draws its own values.

  Returns:
    A tree like ``params``: kernels and their biases U(−1/√fan_in, 1/√fan_in),
    every other leaf unchanged.
  """
  flat = traverse_util.flatten_dict(params)
  out = dict(flat)
  kernels = sorted(p for p in flat if p[-1].endswith("kernel"))
  for i, path in enumerate(kernels):
    kernel = flat[path]
    fan_in = math.prod(kernel.shape[lead:-1])
    bound = 1.0 / math.sqrt(fan_in)
    k_w, k_b = jax.random.split(jax.random.fold_in(key, i))
    out[path] = jax.random.uniform(k_w, kernel.shape, kernel.dtype, -bound, bound)
    bias_path = path[:-1] + (path[-1][:-len("kernel")] + "bias",)
    if bias_path in flat:
      bias = flat[bias_path]
      out[bias_path] = jax.random.uniform(k_b, bias.shape, bias.dtype, -bound, bound)
  return traverse_util.unflatten_dict(out)


def initialize(scheme: str, key: jax.Array, params: PyTree, lead: int = 0) -> PyTree:
  """``params`` as scheme ``scheme`` (one of `INITS`) initialises them: unchanged for
  ``"flax"``, `torch_default` for ``"torch_default"``.

  Raises:
    ValueError: an unknown scheme.
  """
  if scheme not in INITS:
    raise ValueError(f"init must be one of {INITS}, got {scheme!r}")
  return params if scheme == "flax" else torch_default(key, params, lead)
