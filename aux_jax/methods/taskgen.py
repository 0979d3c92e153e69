"""AuxiLearn's auxiliary-task generation as a weighting method: φ is a labeler network.

Navon et al., "Auxiliary Learning by Implicit Differentiation", ICLR 2021 ("learning
a novel auxiliary task"). No auxiliary labels are given: a labeler g_φ
(`aux_jax.models.labeler.Labeler`) assigns every training image x of main class y a
distribution q_φ(x, y) over the k sub-classes of y (`aux_jax.models.labeler.masked_softmax`).
The data carry a second task of kind "soft_classification" with C·k outputs
(`aux_jax.data.shared_input.with_subclass_task`); this method replaces its targets by
q_φ on every batch. With per-sample losses ℓ_m (main) and ℓ_a (generated labels) —
cross-entropies, or focal losses when the problem's ``data.focal_gamma`` is set, as in
the original (`aux_jax.losses.focal_loss`) — and s = ``aux_scale``, λ = ``aux_weight``,
the lower level minimises, by ``combiner``:

    "fixed":        L_T(θ, φ) = mean_b ℓ_m + λ s mean_b ℓ_a
    "linear_skip":  L_T(θ, φ) = mean_b (w_0 ℓ_m + w_1 λ s ℓ_a) + mean_b ℓ_m

"linear_skip" is the original's (AuxiLearn's ``MonoLinearHyperNet`` with skip: w ∈ R²
init 1, clamped ≥ 0 after each upper step, `aux_jax.auxnets.LinearAuxNet`), trained
jointly with the labeler: φ = {"labeler", "combiner"}. The original: focal γ = 2,
s = 0.25, λ = 1.

q depends on φ only, so the lower step treats it as a constant, while the upper step
differentiates through it: G = ∇_θ L_T over all parameters is the gradient of one
scalar (J symmetric), and φ gets dL_dev/dφ = −(∂G/∂φ)ᵀ p by any solver of
`aux_jax.hypergrad` (the original: 3 Neumann terms, no α prefactor).

Variants: ``learn_labeler=False`` keeps the random labeler fixed (no upper steps);
``aux_weight=0`` — or method ``stl`` on the same data — trains the main task alone.
The logged "weights" are the effective auxiliary weight ``[w_1 λ s]`` (``[λ s]`` for
"fixed"); ``label_entropy`` (nats; log k = uniform) shows a
labeler collapsing onto one sub-class.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from aux_jax.auxnets import LinearAuxNet, monotone_projection
from aux_jax.methods.base import Method, MethodState, TaskSpec, task_metrics
from aux_jax.models.resnet import BatchStatsResNet18, load_torchvision_weights
from aux_jax.models.labeler import Labeler

COMBINERS = ("fixed", "linear_skip")


def label_entropy(q: jax.Array) -> jax.Array:
  """Mean entropy (nats) of the rows of f32[B, C·k] distributions (0 log 0 = 0)."""
  logs = jnp.log(jnp.where(q > 0, q, 1.0))
  return jnp.mean(-jnp.sum(q * logs, axis=-1))


LABELERS = ("conv", "resnet18")


def taskgen(tasks: TaskSpec, *, aux_weight: float = 1.0, learn_labeler: bool = True,
            labeler_features: Sequence[int] = (16, 32), combiner: str = "fixed",
            aux_scale: float = 1.0, hyper_wrt: str = "all", labeler: str = "conv",
            labeler_hidden: Sequence[int] = (), labeler_width: int = 64,
            labeler_pretrained: str | None = None) -> Method:
  """The task-generation `Method` for a (main, sub-class) task pair.

  Args:
    tasks: the tasks: task 0 classification with C classes, task 1
      "soft_classification" with C·k outputs.
    aux_weight: λ >= 0.
    learn_labeler: train φ by the hypergradient (False: a fixed random labeler).
    labeler_features: widths of the labeler's conv (or dense) layers.
    combiner: "fixed" or "linear_skip" (module docstring).
    aux_scale: s, the factor on the auxiliary loss (the original: 0.25).
    hyper_wrt: θ of the implicit hypergradient: "all" parameters, or "main_head" (the
      backbone and the main head; the original Pet code leaves the auxiliary head out).
    labeler: the labeler's body: "conv" (a small conv net, widths
      ``labeler_features``) or "resnet18" (AuxiLearn's Pet labeler: an ImageNet
      ResNet-18 of width ``labeler_width`` with its 1000-way fc, BatchNorm with batch
      statistics, `aux_jax.models.resnet.BatchStatsResNet18`).
    labeler_hidden: Dense + ReLU widths between the body and the C·k logits (the Pet
      labeler: (512,)).
    labeler_pretrained: a torchvision ResNet-18 safetensors file for the "resnet18"
      body (the original's ``--auxiliary-pretrained``; None: random init, its default).

  Raises:
    ValueError: the tasks are not such a pair, λ < 0, or an unknown combiner.
  """
  if hyper_wrt not in ("all", "main_head"):
    raise ValueError(f"taskgen hyper_wrt must be 'all' or 'main_head', got {hyper_wrt!r}")
  if combiner not in COMBINERS:
    raise ValueError(f"taskgen combiner must be one of {COMBINERS}, got {combiner!r}")
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
  if labeler not in LABELERS:
    raise ValueError(f"taskgen labeler must be one of {LABELERS}, got {labeler!r}")
  if labeler_pretrained and labeler != "resnet18":
    raise ValueError("taskgen labeler_pretrained needs labeler='resnet18'")
  body = BatchStatsResNet18(width=int(labeler_width)) if labeler == "resnet18" else None
  net_labeler = Labeler(num_classes, k, features=tuple(labeler_features), backbone=body,
                        hidden=tuple(labeler_hidden))

  def soft_labels(phi_labeler, x, labels):
    # BatchNorm of a ResNet body normalises with the batch's statistics; what it
    # writes to batch_stats is discarded (the conv body has none).
    return net_labeler.apply({"params": phi_labeler}, x, labels,
                             mutable=["batch_stats"])[0]
  net = LinearAuxNet(2, skip_main=True)
  scale = float(aux_weight) * float(aux_scale)

  def init(key):
    x = jnp.zeros((2,) + tuple(tasks.input_shape), jnp.float32)
    variables = net_labeler.init(key, x, jnp.zeros((2,), jnp.int32))
    phi = {"labeler": variables["params"]}
    if labeler_pretrained:
      resnet = load_torchvision_weights(labeler_pretrained, {
          "params": variables["params"]["backbone"]["resnet"],
          "batch_stats": variables["batch_stats"]["backbone"]["resnet"]})
      phi["labeler"] = {**phi["labeler"], "backbone": {
          "resnet": jax.tree.map(jnp.asarray, resnet["params"])}}
    if combiner == "linear_skip":
      phi["combiner"] = net.init(key, jnp.zeros((1, 2)))["params"]
    return MethodState(phi=phi, state=())

  def projection(phi):  # the combiner is monotone (weights ≥ 0); the labeler is free
    return {**phi, "combiner": monotone_projection(phi["combiner"])}

  def combine(phi, per_sample):
    """f32[T=2, B] per-sample losses -> (L_T, effective auxiliary weight f32[1])."""
    if combiner == "fixed":
      return jnp.mean(per_sample[0]) + scale * jnp.mean(per_sample[1]), jnp.full((1,), scale)
    scaled = jnp.stack([per_sample[0], scale * per_sample[1]], axis=-1)  # [B, 2]
    w = phi["combiner"]["weights"]
    return net.apply({"params": phi["combiner"]}, scaled), w[1:] * scale

  def direction(params, phi, state, losses, key):
    del key
    if not isinstance(losses.targets, tuple) or losses.inputs is None:
      raise ValueError("taskgen needs tasks that share their inputs")
    labels = losses.targets[0]
    q = soft_labels(phi["labeler"], losses.inputs, labels)

    def total(p):
      per_sample, model_state = losses.per_sample(p, (labels, q))
      loss, weight = combine(phi, per_sample)
      return loss, (jnp.mean(per_sample, axis=1), weight, model_state)

    grads, (task_losses, weight, model_state) = jax.grad(total, has_aux=True)(params)
    metrics = {**task_metrics(task_losses), "weights": jax.lax.stop_gradient(weight),
               "label_entropy": label_entropy(jax.lax.stop_gradient(q))}
    return grads, state, model_state, metrics

  return Method(name="taskgen", init=init, direction=direction,
                learnable=bool(learn_labeler) and aux_weight > 0, symmetric=True,
                projection=projection if combiner == "linear_skip" else None,
                hyper_wrt=hyper_wrt)
