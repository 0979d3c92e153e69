"""AuxiLearn's auxiliary-task generation as a weighting method: φ is a labeler network.

Navon et al., "Auxiliary Learning by Implicit Differentiation", ICLR 2021 ("learning
a novel auxiliary task"). No auxiliary labels are given: a labeler g_φ
(`aux_jax.taskgen.Labeler`) assigns every training image x of main class y a
distribution q_φ(x, y) over the k sub-classes of y (`aux_jax.taskgen.masked_softmax`).
The data carry a second task of kind "soft_classification" with C·k outputs
(`aux_jax.data.shared_input.with_subclass_task`); this method replaces its targets by
q_φ on every batch, so the lower level minimises

    L_T(θ, φ) = mean_b CE(main(x_b), y_b) + λ mean_b [−Σ_i q_φ(x_b, y_b)_i log softmax(aux(x_b))_i]

(λ = ``aux_weight``). q depends on φ only, so the lower step treats it as a constant,
while the upper step differentiates through it: G = ∇_θ L_T over all parameters is the
gradient of one scalar (J symmetric), and φ gets dL_dev/dφ = −(∂G/∂φ)ᵀ p by any solver
of `aux_jax.hypergrad` (the original: 3 Neumann terms, no α prefactor).

Variants: ``learn_labeler=False`` keeps the random labeler fixed (no upper steps);
``aux_weight=0`` — or method ``stl`` on the same data — trains the main task alone.
The logged "weights" are ``[λ]``; ``label_entropy`` (nats; log k = uniform) shows a
labeler collapsing onto one sub-class.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from aux_jax.methods.base import Method, MethodState, TaskSpec, task_metrics
from aux_jax.taskgen import Labeler


def label_entropy(q: jax.Array) -> jax.Array:
  """Mean entropy (nats) of the rows of f32[B, C·k] distributions (0 log 0 = 0)."""
  logs = jnp.log(jnp.where(q > 0, q, 1.0))
  return jnp.mean(-jnp.sum(q * logs, axis=-1))


def taskgen(tasks: TaskSpec, *, aux_weight: float = 1.0, learn_labeler: bool = True,
            labeler_features: Sequence[int] = (16, 32)) -> Method:
  """The task-generation `Method` for a (main, sub-class) task pair.

  Args:
    tasks: the tasks: task 0 classification with C classes, task 1
      "soft_classification" with C·k outputs.
    aux_weight: λ >= 0.
    learn_labeler: train φ by the hypergradient (False: a fixed random labeler).
    labeler_features: widths of the labeler's conv (or dense) layers.

  Raises:
    ValueError: the tasks are not such a pair, or λ < 0.
  """
  if (len(tasks.kinds) != 2 or tasks.kinds[0] != "classification"
      or tasks.kinds[1] != "soft_classification"):
    raise ValueError(
        "taskgen needs a main classification task and a generated sub-class task "
        "(set data.subclass_task = k on a single-task dataset); got tasks "
        f"{list(zip(tasks.names, tasks.kinds))}")
  num_classes, total = int(tasks.num_outputs[0]), int(tasks.num_outputs[1])
  if total % num_classes:
    raise ValueError(f"the sub-class task has {total} outputs, not a multiple of the "
                     f"{num_classes} main classes")
  if aux_weight < 0:
    raise ValueError(f"taskgen aux_weight must be >= 0, got {aux_weight}")
  k = total // num_classes
  labeler = Labeler(num_classes, k, features=tuple(labeler_features))
  weight = jnp.asarray([aux_weight], jnp.float32)

  def init(key):
    x = jnp.zeros((2,) + tuple(tasks.input_shape), jnp.float32)
    phi = labeler.init(key, x, jnp.zeros((2,), jnp.int32))["params"]
    return MethodState(phi=phi, state=())

  def direction(params, phi, state, losses, key):
    del key
    if not isinstance(losses.targets, tuple) or losses.inputs is None:
      raise ValueError("taskgen needs tasks that share their inputs")
    labels = losses.targets[0]
    q = labeler.apply({"params": phi}, losses.inputs, labels)

    def total(p):
      per_sample, model_state = losses.per_sample(p, (labels, q))
      task_losses = jnp.mean(per_sample, axis=1)
      return task_losses[0] + aux_weight * task_losses[1], (task_losses, model_state)

    grads, (task_losses, model_state) = jax.grad(total, has_aux=True)(params)
    metrics = {**task_metrics(task_losses), "weights": weight,
               "label_entropy": label_entropy(jax.lax.stop_gradient(q))}
    return grads, state, model_state, metrics

  return Method(name="taskgen", init=init, direction=direction,
                learnable=bool(learn_labeler) and aux_weight > 0, symmetric=True,
                hyper_wrt="all")
