"""AuxL: AuxiLearn's auxiliary network as a loss combiner (Navon et al., ICLR 2021).

The training loss is L_T(θ, φ) = g_φ(ℓ(θ)), with ℓ(θ) = (ℓ₀, …, ℓ_K) the batch-mean
task losses and g_φ an auxiliary network of `aux_jax.auxnets` (by default the
nonlinear monotone combiner T→5→5→1 with Softplus, weight normalisation, output =
mean + main loss). G = ∇_θ L_T is the gradient of one scalar, so J is a Hessian
(symmetric), and φ is trained by the implicit hypergradient over all parameters.

The logged "weights" are the effective auxiliary weights ∂g_φ/∂ℓ_k at the current
losses (k = 1..K).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aux_jax.auxnets import get_auxnet
from aux_jax.methods.base import Method, MethodState, mean_task_losses, task_metrics


def auxl(num_tasks: int, *, net: str = "nonlinear", hidden=(5, 5), monotone=True,
         **net_kwargs) -> Method:
  """The AuxL `Method`: an auxiliary network ``net`` over the T batch-mean losses."""
  kwargs = dict(net_kwargs)
  if net in ("nonlinear", "deep_linear"):
    kwargs["hidden"] = tuple(hidden)
  auxnet = get_auxnet(net, num_tasks, monotone=monotone, **kwargs)

  def combined(phi, task_losses):
    return auxnet.module.apply({"params": phi}, task_losses[None, :])

  def init(key):
    phi = auxnet.module.init(key, jnp.ones((1, num_tasks)))["params"]
    if auxnet.projection is not None:
      phi = auxnet.projection(phi)
    return MethodState(phi=phi, state=())

  def direction(params, phi, state, losses, key):
    del key

    def total(p):
      task_losses, model_state = mean_task_losses(losses)(p)
      return combined(phi, task_losses), (task_losses, model_state)

    grads, (task_losses, model_state) = jax.grad(total, has_aux=True)(params)
    eff = jax.grad(lambda l: combined(phi, l))(jax.lax.stop_gradient(task_losses))
    return grads, state, model_state, {**task_metrics(task_losses), "weights": eff[1:]}

  return Method(name="auxl", init=init, direction=direction, learnable=True,
                symmetric=True, projection=auxnet.projection, hyper_wrt="all")
