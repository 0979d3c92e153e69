"""AuxL: AuxiLearn's auxiliary network as a loss combiner (Navon et al., ICLR 2021).

The training loss is L_T(θ, φ) = g_φ(ℓ(θ)) with g_φ an auxiliary network of
`aux_jax.auxnets` (by default the nonlinear monotone combiner T→5→5→1 with Softplus,
weight normalisation, output = mean + main loss). What g_φ sees (``inputs``):

* "batch": the T batch-mean losses ℓ_t = mean_b ℓ_{b,t} (the AuxL baseline of MAOAL,
  whose tasks have separate images, so samples of different tasks do not pair up);
* "sample": each sample's loss vector ℓ_b ∈ R^T, g_φ averaged over the batch
  (AuxiLearn; needs tasks that share their inputs, `SharedInputData`);
* "pixel": per-pixel loss maps f32[B, H, W, T] for the convolutional network
  (AuxiLearn's NYUv2 ConvNet; needs `LossFns.per_pixel`), averaged over the pixels
  valid for the main task (``pixel_mask=True``) or over all pixels as the original
  (``pixel_mask=False``; invalid pixels then enter with the loss 0 they carry).

G = ∇_θ L_T is the gradient of one scalar, so J is a Hessian (symmetric), and φ is
trained by the implicit hypergradient over ``hyper_wrt``: ``"all"`` parameters
(AuxiLearn's NYUv2 and Pet trainers) or the ``"shared"`` backbone only, heads held
fixed, J = H_ss the backbone block of the Hessian (the AuxL baseline of MAOAL's code,
which passes only the shared parameters to its meta optimizer), or ``"main_head"``: the
backbone and the main task's head (the shared parameters when auxiliary tasks are
trained through the main head, `MultiTaskData.task_heads`).

The logged "weights" are the effective auxiliary weights Σ ∂g_φ/∂ℓ_{·,k} at the current
losses (summed over samples/pixels; for L = Σ_k w_k · mean ℓ_k this is w_k), k = 1..K.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aux_jax.auxnets import get_auxnet
from aux_jax.methods.base import Method, MethodState, mean_task_losses, task_metrics

INPUTS = ("batch", "sample", "pixel")


def auxl(num_tasks: int, *, net: str = "nonlinear", hidden=(5, 5), monotone=True,
         inputs: str = "batch", hyper_wrt: str = "all", pixel_mask: bool = True,
         **net_kwargs) -> Method:
  """The AuxL `Method`: auxiliary network ``net`` over the losses named by ``inputs``,
  hypergradient over ``hyper_wrt`` (``"all"`` | ``"shared"`` | ``"main_head"``)."""
  if hyper_wrt not in ("all", "shared", "main_head"):
    raise ValueError(f"auxl hyper_wrt must be 'all', 'shared' or 'main_head', got "
                     f"{hyper_wrt!r}")
  if inputs not in INPUTS:
    raise ValueError(f"auxl inputs must be one of {INPUTS}, got {inputs!r}")
  if (net == "conv") != (inputs == "pixel"):
    raise ValueError(f"auxl: net='conv' goes with inputs='pixel' (got net={net!r}, "
                     f"inputs={inputs!r})")
  kwargs = dict(net_kwargs)
  if net in ("nonlinear", "deep_linear", "conv"):
    kwargs["hidden"] = tuple(hidden)
  for key in ("kernel_sizes", "init_bounds"):
    if key in kwargs:
      kwargs[key] = tuple(kwargs[key])
  auxnet = get_auxnet(net, num_tasks, monotone=monotone, **kwargs)

  def init(key):
    shape = (1, 2, 2, num_tasks) if inputs == "pixel" else (1, num_tasks)
    phi = auxnet.module.init(key, jnp.ones(shape))["params"]
    if auxnet.projection is not None:
      phi = auxnet.projection(phi)
    return MethodState(phi=phi, state=())

  def forward(p, losses):
    """(network input f32[..., T], mask or None, f32[T] task losses, model_state)."""
    if inputs == "pixel":
      if losses.per_pixel is None:
        raise ValueError("auxl with the conv network needs per-pixel losses: an "
                         "experiment whose tasks are all dense (e.g. NYUv2)")
      maps, valid, model_state = losses.per_pixel(p)
      axes = (1, 2, 3)
      # The per-sample losses' convention: Σ map·weights / Σ weights (`loss_map`).
      task_losses = (jnp.sum(maps * valid, axes)
                     / jnp.maximum(jnp.sum(valid, axes), 1.0))
      # Average over pixels valid for the main task (AuxiLearn's mask).
      return (jnp.moveaxis(maps, 0, -1), valid[0] if pixel_mask else None, task_losses,
              model_state)
    if inputs == "sample":
      per_sample, model_state = losses.per_sample(p)
      return per_sample.T, None, jnp.mean(per_sample, axis=1), model_state
    task_losses, model_state = mean_task_losses(losses)(p)
    return task_losses[None, :], None, task_losses, model_state

  def combine(phi, x, mask):
    if mask is None:
      return auxnet.module.apply({"params": phi}, x)
    return auxnet.module.apply({"params": phi}, x, mask)

  def direction(params, phi, state, losses, key):
    del key

    def total(p):
      x, mask, task_losses, model_state = forward(p, losses)
      return combine(phi, x, mask), (x, mask, task_losses, model_state)

    grads, (x, mask, task_losses, model_state) = jax.grad(total, has_aux=True)(params)
    x = jax.lax.stop_gradient(x)
    dx = jax.grad(lambda v: combine(phi, v, mask))(x)
    eff = jnp.sum(dx.reshape(-1, num_tasks), axis=0)
    return grads, state, model_state, {**task_metrics(task_losses), "weights": eff[1:]}

  return Method(name="auxl", init=init, direction=direction, learnable=True,
                symmetric=True, projection=auxnet.projection, hyper_wrt=hyper_wrt)
