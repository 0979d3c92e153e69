"""Per-layer cotangent scaling: one backward pass that weights each module differently.

MAOAL's lower-level direction on module m is G_m = ∇_{θ_m} Σ_t c[t, m] ℓ_t. When each
task has its own rows (its own images, BatchNorm statistics per task chunk), the
cotangents of different tasks never mix inside the backbone, so one backward pass
can give every G_m: every layer that owns parameters of module m sees its output
cotangent multiplied by s = c[t, m] (its weight gradient is then s·∇ℓ_t) and divides
its input cotangent by s again (the layers before it see the true cotangent).

`scale_backward(x, s)` is the identity whose vector–Jacobian product multiplies the
cotangent by s. It is a `jax.custom_vjp`, so a backward pass that uses it is an
ordinary differentiable function of the parameters and of s: differentiating that
backward pass again (the implicit hypergradient does, through G) differentiates the
true forward pass (the identity) and the scaled backward pass, as the M-pass
reference does. (A ``stop_gradient`` formulation would not: its second derivative
would scale the forward pass too.)

`scaled_layers` wraps every parameter-owning layer of a linen module with these
scalings through `flax.linen.intercept_methods`.
"""

from __future__ import annotations

import contextlib
from typing import Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


@jax.custom_vjp
def scale_backward(x: jax.Array, s: jax.Array) -> jax.Array:
  """Identity on ``x`` whose cotangent is multiplied by ``s`` (broadcast against x)."""
  del s
  return x


def _fwd(x, s):
  return x, s


def _bwd(s, ct):
  # In at least float32, so that a bfloat16 cotangent is rounded once and s·(1/s)
  # carries no systematic bfloat16 error. The output does not depend on s: its
  # cotangent is zero.
  wide = jnp.promote_types(ct.dtype, jnp.promote_types(s.dtype, jnp.float32))
  return (ct.astype(wide) * s.astype(wide)).astype(ct.dtype), jnp.zeros_like(s)


scale_backward.defvjp(_fwd, _bwd)


def _is_float(x) -> bool:
  return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating)


def _scale_tree(tree, s):
  return jax.tree.map(lambda x: scale_backward(x, s) if _is_float(x) else x, tree)


def layer_paths(params) -> dict[str, list[str]]:
  """Leaf-path → owning layer: ``{'stage1/block0/conv1/conv': ['kernel'], ...}``."""
  from aux_jax.partition import leaf_paths  # local: partition imports nothing of models
  out: dict[str, list[str]] = {}
  for p in leaf_paths(params):
    layer, _, name = p.rpartition("/")
    out.setdefault(layer, []).append(name)
  return out


@contextlib.contextmanager
def scaled_layers(scales: Optional[Mapping[str, jax.Array]]):
  """Within the context, the call of a layer at path ``p`` (``'/'``-joined module names,
  e.g. ``'stage1/block0/conv1/conv'``) in ``scales`` has its output cotangent
  multiplied by ``scales[p]`` and its input cotangent divided by it.

  Args:
    scales: layer path → f32[] scale (under `jax.vmap` over tasks: the task's own),
      strictly positive or exactly zero (then the input cotangent is zero too). The
      layers must not call other layers of ``scales`` (leaf layers: Conv, Dense,
      BatchNorm, ...). None or empty: no interception.

  Raises:
    ValueError: on exit, if a layer of ``scales`` was never called.
  """
  if not scales:
    yield
    return

  seen = set()

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    path = "/".join(context.module.path)
    s = scales.get(path)
    if s is None:
      return next_fun(*args, **kwargs)
    seen.add(path)
    inv = jnp.where(s > 0, 1.0 / jnp.where(s > 0, s, 1.0), 0.0)
    args, kwargs = _scale_tree((args, kwargs), inv)
    return _scale_tree(next_fun(*args, **kwargs), s)

  with nn.intercept_methods(interceptor):
    yield
  # A layer never called by its path (renamed, shared or transformed modules) would
  # silently get the wrong weight.
  missing = sorted(set(scales) - seen)
  if missing:
    raise ValueError(f"scaled layers never called under their path: {missing[:5]}")
