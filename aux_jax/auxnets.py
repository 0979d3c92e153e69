"""Auxiliary networks g_φ that combine per-sample task losses into one training loss.

AuxiLearn (Navon et al., "Auxiliary Learning by Implicit Differentiation", ICLR 2021)
trains the model θ on L_T(θ, φ) = g_φ(ℓ_0, ℓ_1, …, ℓ_K), where ℓ_0 is the main-task loss
and ℓ_1..ℓ_K are auxiliary losses, and learns φ by the implicit hypergradient of the
main-task loss on a held-out set (`aux_jax.hypergrad`). Every network here is a Flax
linen module whose parameters are φ, mapping losses to a scalar:

* `LinearAuxNet`: one weight per loss (init 1), optionally AuxiLearn's skip connection
  (an extra mean main loss) or a fixed weight 1 on ℓ_0.
* `NonlinearAuxNet`: a weight-normalised MLP applied to each sample's loss vector,
  Softplus activations, weights U(0, 1); output = mean MLP output + mean main loss.
  ``activation="identity"`` is the *deep linear* network.
* `ConvAuxNet`: the same idea with convolutions (optionally weight-normalised, optionally
  followed by average pooling) over per-pixel loss maps f32[B, H, W, T] (dense
  prediction, e.g. NYUv2).

Input convention: the last axis indexes tasks, column 0 is the main task. Losses are
per sample (f32[B, T]; any f32[..., T] works for the linear and MLP nets, the mean then
runs over all leading axes) or per pixel (f32[B, H, W, T] for the conv net).

*Monotone* variants ("Mono" in the paper) clamp the weights to ≥ 0 after each upper
step: with non-negative weights and non-decreasing activations (Softplus, identity)
the combined loss is non-decreasing in every individual loss, so no auxiliary loss can
be *maximised*. Use `monotone_projection` as the upper-level projection, e.g.
``meta_optimizer(optax.adam(1e-3), projection=monotone_projection)``;
`get_auxnet(..., monotone=True)` returns it alongside the module.

Weight normalisation (Salimans & Kingma, 2016) follows PyTorch's ``weight_norm``: each
layer stores a direction ``kernel`` v and a per-output-unit ``scale`` g, and uses
w = g · v / ‖v‖ (norm over all axes but the output axis). g is initialised to ‖v‖, so
at initialisation w = v ~ U(0, 1) (flax's ``nn.WeightNorm`` would start from g = 1).
Biases start at 0: they only shift the training loss by a constant and never change
its gradient with respect to θ.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any

# Parameter names clamped by `monotone_projection`: linear weights, weight-norm
# directions v and scales g. Biases are free: they do not affect monotonicity.
MONOTONE_PARAM_NAMES = ("weights", "kernel", "scale")

_ACTIVATIONS = {"softplus": jax.nn.softplus, "identity": lambda x: x}

# Smallest squared norm added under the square root: keeps w = g·v/‖v‖ and its
# gradient finite when a projection clamps a whole direction v to zero.
_NORM_EPS = 1e-24


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in _ACTIVATIONS:
    raise ValueError(
        f"unknown activation {name!r}; expected one of {tuple(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


def _check_losses(losses: jax.Array, num_tasks: int, min_ndim: int, what: str):
  if losses.ndim < min_ndim or losses.shape[-1] != num_tasks:
    raise ValueError(
        f"{what} expects losses of shape {'[B, H, W, T]' if min_ndim == 4 else '[..., T]'}"
        f" with T = num_tasks = {num_tasks} (column 0 = main task); got shape "
        f"{losses.shape}")


def _check_num_tasks(num_tasks: int, skip_main: bool):
  if num_tasks < 1 or (skip_main and num_tasks < 2):
    raise ValueError(
        f"num_tasks must be >= {2 if skip_main else 1}"
        f"{' with skip_main=True' if skip_main else ''}; got {num_tasks}")


def _uniform(low: float, high: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, low, high)
  return init


class _WNKernel(nn.Module):
  """A kernel of shape ``shape`` (output units last), optionally weight-normalised.

  Returns w = g · v / ‖v‖ with ``kernel`` v ~ U(low, high) and ``scale`` g = ‖v‖ at
  initialisation (per output unit), or v itself when ``weight_norm`` is False.
  """

  shape: tuple[int, ...]
  init_bounds: tuple[float, float]
  weight_norm: bool

  @nn.compact
  def __call__(self) -> jax.Array:
    v = self.param("kernel", _uniform(*self.init_bounds), self.shape)
    if not self.weight_norm:
      return v
    axes = tuple(range(v.ndim - 1))
    norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x), axis=axes) + _NORM_EPS)
    g = self.param("scale", lambda _: norm(v))
    return v * (g / norm(v))


class _Dense(nn.Module):
  features: int
  init_bounds: tuple[float, float]
  weight_norm: bool
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = _WNKernel((x.shape[-1], self.features), self.init_bounds, self.weight_norm,
                  name="wn")()
    if not self.use_bias:
      return x @ w
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    return x @ w + b


class _Conv(nn.Module):
  features: int
  kernel_size: int
  init_bounds: tuple[float, float]
  weight_norm: bool
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:  # NHWC, 'SAME' zero padding
    k = self.kernel_size
    w = _WNKernel((k, k, x.shape[-1], self.features), self.init_bounds,
                  self.weight_norm, name="wn")()
    b = (self.param("bias", nn.initializers.zeros, (self.features,))
         if self.use_bias else None)
    dtype = jnp.result_type(x, w)
    y = jax.lax.conv_general_dilated(
        x.astype(dtype), w.astype(dtype), window_strides=(1, 1), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + b if self.use_bias else y


class LinearAuxNet(nn.Module):
  """Linear combination of the mean task losses.

  With ℓ ∈ f32[B, T] (column 0 = main task) and weights w:

      default:          L = mean_b Σ_{t=0}^{T-1} w_t ℓ_{b,t},                    w ∈ R^T
      skip_main=True:   L = mean_b Σ_{t=0}^{T-1} w_t ℓ_{b,t} + mean_b ℓ_{b,0},   w ∈ R^T
      fix_main=True:    L = mean_b (ℓ_{b,0} + Σ_{t=1}^{T-1} w_t ℓ_{b,t}),        w ∈ R^{T-1}

  ``skip_main`` is AuxiLearn's skip connection (``MonoLinearHyperNet(skip_connection=
  True)``): the main weight stays learnable and the extra main loss keeps it in the
  objective however w moves (effective main weight w_0 + 1, 2 at init). ``fix_main``
  instead learns only the auxiliary weights.
  All weights start at ``init_value`` (1: the plain sum Σ_t mean_b ℓ_{b,t}).
  Parameters: ``weights`` f32[T] or f32[T-1].

  Attributes:
    num_tasks: T, main task included.
    skip_main: add mean_b ℓ_{b,0} (AuxiLearn's skip connection).
    fix_main: fix the main-task weight to 1 and learn only the auxiliary weights.
    init_value: initial value of every weight.
  """

  num_tasks: int
  skip_main: bool = False
  init_value: float = 1.0
  fix_main: bool = False

  @nn.compact
  def __call__(self, losses: jax.Array) -> jax.Array:
    """Args: losses f32[..., T]. Returns f32[], the combined loss."""
    if self.skip_main and self.fix_main:
      raise ValueError("LinearAuxNet: skip_main and fix_main exclude each other")
    _check_num_tasks(self.num_tasks, self.fix_main)
    _check_losses(losses, self.num_tasks, 1, "LinearAuxNet")
    n = self.num_tasks - 1 if self.fix_main else self.num_tasks
    w = self.param("weights", nn.initializers.constant(self.init_value), (n,))
    if self.fix_main:
      w = jnp.concatenate([jnp.ones((1,), w.dtype), w])
    out = jnp.mean(losses @ w)
    if self.skip_main:
      out = out + jnp.mean(losses[..., 0])
    return out


class NonlinearAuxNet(nn.Module):
  """An MLP over each sample's loss vector, plus a skip connection on the main loss.

      h⁰_b = ℓ_b ∈ R^T,   hⁱ_b = σ(Wᵢ hⁱ⁻¹_b + cᵢ)   (i = 1..len(hidden)),
      L = mean_b (W_out h_b + c_out) + [skip_main] · mean_b ℓ_{b,0},

  with σ = Softplus (``activation="softplus"``) or the identity (``"identity"``: the
  *deep linear* network), and every W weight-normalised (W = g · V/‖V‖, see the module
  docstring) with V ~ U(init_bounds) (U(0, 1) as in the paper). Parameters per layer:
  ``wn/kernel`` V, ``wn/scale`` g (if ``weight_norm``) and ``bias`` c (none on the
  output layer when ``bias_out`` is False, as AuxiLearn's; c_out only shifts L).

  Attributes:
    num_tasks: T, main task included.
    hidden: widths of the hidden layers (may be empty: a single weight-normed layer).
    activation: "softplus" or "identity".
    skip_main: add mean_b ℓ_{b,0} to the output.
    weight_norm: use the g · V/‖V‖ parametrisation (else W = V).
    init_bounds: V ~ U(low, high).
    bias_out: give the output layer a bias c_out.
  """

  num_tasks: int
  hidden: Sequence[int] = (16,)
  activation: str = "softplus"
  skip_main: bool = True
  weight_norm: bool = True
  init_bounds: tuple[float, float] = (0.0, 1.0)
  bias_out: bool = True

  @nn.compact
  def __call__(self, losses: jax.Array) -> jax.Array:
    """Args: losses f32[..., T]. Returns f32[], the combined loss."""
    _check_num_tasks(self.num_tasks, False)
    _check_losses(losses, self.num_tasks, 1, "NonlinearAuxNet")
    act = _activation(self.activation)
    h = losses
    for width in self.hidden:
      h = act(_Dense(width, tuple(self.init_bounds), self.weight_norm)(h))
    out = jnp.mean(_Dense(1, tuple(self.init_bounds), self.weight_norm,
                          self.bias_out)(h))
    if self.skip_main:
      out = out + jnp.mean(losses[..., 0])
    return out


class ConvAuxNet(nn.Module):
  """A small CNN over per-pixel loss maps (dense prediction tasks).

  With ℓ ∈ f32[B, H, W, T] (channel 0 = main task), hidden layers
  hⁱ = pool(σ(convᵢ(hⁱ⁻¹) + cᵢ)) of kernel sizes ``kernel_sizes`` ('SAME' zero
  padding, bias cᵢ; pool = ``pool``×``pool`` average pooling with stride ``pool``, or
  none when ``pool`` is 1), a final 1×1 convolution to one channel o ∈ f32[B, H', W']
  (H' = H / pool^len(hidden)), and a pixel mask m (default 1; pooled like o):

      L = Σ_{b,h,w} m'·o / Σ m'  +  [skip_main] · Σ m·ℓ_{·,0} / Σ m .

  AuxiLearn's NYUv2 network (``MonoNoFCCNNHyperNet``) is ``hidden=(8, 16)``,
  ``kernel_sizes=(3, 3)``, ``pool=2``, ``init_bounds=(0, 0.1)``, ``weight_norm=False``,
  ``bias_out=False``, no mask. Pixels with no target (ignored label, missing depth)
  carry loss 0 in aux_jax's maps; pass ``mask`` to also leave them out of the
  averages. Weights are initialised U(init_bounds), optionally weight-normalised like
  `NonlinearAuxNet`.

  Attributes:
    num_tasks: T, main task included.
    hidden: channels of the hidden convolutions.
    kernel_sizes: one (odd) kernel size per hidden convolution.
    activation: "softplus" or "identity".
    skip_main: add the mean main loss.
    weight_norm: use the g · V/‖V‖ parametrisation.
    init_bounds: V ~ U(low, high).
    pool: average-pooling window and stride after each hidden layer (1: none).
    bias_out: give the output convolution a bias.
  """

  num_tasks: int
  hidden: Sequence[int] = (16, 16)
  kernel_sizes: Sequence[int] = (1, 3)
  activation: str = "softplus"
  skip_main: bool = True
  weight_norm: bool = True
  init_bounds: tuple[float, float] = (0.0, 1.0)
  pool: int = 1
  bias_out: bool = True

  @nn.compact
  def __call__(self, loss_maps: jax.Array, mask: Optional[jax.Array] = None
               ) -> jax.Array:
    """Combined loss.

    Args:
      loss_maps: f32[B, H, W, T] per-pixel losses.
      mask: optional f32/bool[B, H, W], the pixels to average over.

    Returns:
      f32[], the combined loss.
    """
    _check_num_tasks(self.num_tasks, False)
    _check_losses(loss_maps, self.num_tasks, 4, "ConvAuxNet")
    if loss_maps.ndim != 4:
      raise ValueError(f"ConvAuxNet expects f32[B, H, W, T]; got {loss_maps.shape}")
    if len(self.hidden) != len(self.kernel_sizes):
      raise ValueError(
          f"hidden {tuple(self.hidden)} and kernel_sizes {tuple(self.kernel_sizes)} "
          "must have the same length")
    if mask is not None and mask.shape != loss_maps.shape[:3]:
      raise ValueError(
          f"mask must have shape {loss_maps.shape[:3]}; got {mask.shape}")
    act = _activation(self.activation)
    p = int(self.pool)
    pool = (lambda x: x) if p == 1 else (
        lambda x: nn.avg_pool(x, (p, p), strides=(p, p), padding="VALID"))
    h = loss_maps
    for width, k in zip(self.hidden, self.kernel_sizes):
      h = pool(act(_Conv(width, k, tuple(self.init_bounds), self.weight_norm)(h)))
    out = _Conv(1, 1, tuple(self.init_bounds), self.weight_norm, self.bias_out)(h)[..., 0]
    main = loss_maps[..., 0]
    if mask is None:
      total = jnp.mean(out)
      return total + jnp.mean(main) if self.skip_main else total
    m = mask.astype(out.dtype)
    m_out = m[..., None]
    for _ in self.hidden:
      m_out = pool(m_out)
    m_out = m_out[..., 0]
    total = jnp.sum(m_out * out) / jnp.maximum(jnp.sum(m_out), 1e-12)
    if self.skip_main:
      total = total + jnp.sum(m * main) / jnp.maximum(jnp.sum(m), 1.0)
    return total


def monotone_projection(aux_params: PyTree) -> PyTree:
  """Clamps the weights of an auxiliary network to ≥ 0 (the "Mono" variants).

  Leaves named ``weights`` (`LinearAuxNet`), ``kernel`` (weight-norm directions V) and
  ``scale`` (weight-norm scales g) become max(x, 0); biases and anything else are
  unchanged. After the projection every effective weight g·V/‖V‖ is ≥ 0, so the
  network's output is non-decreasing in each input loss (its activations are
  non-decreasing). Works on the full variables dict or on ``variables["params"]``.

  Args:
    aux_params: a pytree of φ (nested dicts as produced by ``Module.init``).

  Returns:
    The projected pytree, same structure.
  """

  def clamp(path, x):
    name = getattr(path[-1], "key", getattr(path[-1], "name", None)) if path else None
    return jnp.maximum(x, 0) if name in MONOTONE_PARAM_NAMES else x

  return jax.tree_util.tree_map_with_path(clamp, aux_params)


class AuxNet(NamedTuple):
  """An auxiliary network and its upper-level projection.

  Attributes:
    module: the Flax module; ``module.apply(variables, losses)`` is the loss.
    projection: `monotone_projection` for monotone networks, else None (pass it to
      `aux_jax.meta_optimizer.meta_optimizer(..., projection=...)`).
  """

  module: nn.Module
  projection: Optional[Callable[[PyTree], PyTree]]


AUXNETS = ("linear", "nonlinear", "deep_linear", "conv")


def get_auxnet(name: str, num_tasks: int, *, monotone: bool = False, **kwargs
               ) -> AuxNet:
  """Builds an auxiliary network by name.

  Args:
    name: "linear" (`LinearAuxNet`), "nonlinear" (`NonlinearAuxNet`),
      "deep_linear" (`NonlinearAuxNet` with the identity activation) or "conv"
      (`ConvAuxNet`).
    num_tasks: T, main task included.
    monotone: return `monotone_projection` as the projection (clamp weights ≥ 0
      after each upper step).
    **kwargs: the module's other attributes (e.g. ``hidden=(10,)``,
      ``skip_main=True``).

  Returns:
    An `AuxNet` (module, projection).
  """
  if name == "linear":
    module = LinearAuxNet(num_tasks, **kwargs)
  elif name == "nonlinear":
    module = NonlinearAuxNet(num_tasks, **kwargs)
  elif name == "deep_linear":
    if kwargs.get("activation", "identity") != "identity":
      raise ValueError("deep_linear is the identity-activation network; do not pass "
                       f"activation={kwargs['activation']!r}")
    module = NonlinearAuxNet(num_tasks, **{**kwargs, "activation": "identity"})
  elif name == "conv":
    module = ConvAuxNet(num_tasks, **kwargs)
  else:
    raise ValueError(f"unknown auxiliary network {name!r}; expected one of {AUXNETS}")
  return AuxNet(module, monotone_projection if monotone else None)
