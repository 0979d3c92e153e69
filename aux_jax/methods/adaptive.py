"""Adaptive task weights updated inside the lower step: GradNorm and OL-AUX.

Both train the model on Σ_t w_t mean_b ℓ_t with per-task weights w ∈ R^T that a
rule of `aux_jax.rules` moves every step from the per-task gradients
g_t = ∇_θ mean_b ℓ_t (one backward pass, `aux_jax.methods.base.per_task_grads`).
The weights are method *state* (not φ: no hypergradient), and the update of step s
uses the weights in force before that step's weight update:

    G = Σ_t w_t(s) g_t        (shared parameters and heads alike)

* ``gradnorm`` (Chen et al., ICML 2018, "GradNorm: Gradient Normalization for
  Adaptive Loss Balancing in Deep Multitask Networks"): n_t = ‖∇_W ℓ_t‖ over a
  chosen shared layer W; w takes an SGD step on Σ_t |w_t n_t − sg[Ḡ r_t^α]|
  (Ḡ = mean_t w_t n_t, r_t the relative inverse training rate ℓ_t/ℓ_t(0) over its
  mean), is clipped at 1e-3 and renormalised to Σ_t w_t = T
  (`aux_jax.rules.gradnorm_update`).
* ``olaux`` (Lin et al., NeurIPS 2019, "Adaptive Auxiliary Task Weighting for
  Reinforcement Learning"): every step a_k += ⟨g_0, g_k⟩ over the shared
  parameters; every N steps one SGD-with-momentum step on w with gradient −η a
  (v ← μv − ηa, w ← w − βv), then a ← 0; w_0 = 1 (`aux_jax.rules.olaux_update`).
  Defaults as SLGrad's implementation (N = 2, μ = 0.9, β = η·N); its step counter
  starts at 0.4 and so never fires there, a defect not reproduced.

The layer W of GradNorm (``layer``): a regex searched (`re.search`) in the
backbone's leaf paths (``'/'``-joined keys, `aux_jax.partition.leaf_paths`), all
matching leaves together; by default (None) the leaves that share the parent
path of the backbone's last leaf in tree order, e.g. ``dense/{bias,kernel}`` of
``small_cnn``. Flax parameter dicts flatten in sorted key order, which need not be
the execution order: for ``resnet18_cifar`` the last leaf is ``stem/conv/kernel``,
so pass e.g. ``layer=r"^stage4/block1/conv2/"`` there.
"""

from __future__ import annotations

import re
from typing import Optional

import jax

from aux_jax.methods.base import Method, MethodState, per_task_grads, task_metrics
from aux_jax.partition import Partition, leaf_paths
from aux_jax.rules.gradnorm import gradnorm_init, gradnorm_update
from aux_jax.rules.olaux import olaux_init, olaux_update
from aux_jax.rules.tree import task_combine, task_dots, task_norms, task_slice


def last_layer_paths(paths: list[str], layer: Optional[str] = None) -> tuple[str, ...]:
  """The leaf paths of GradNorm's layer W (see the module docstring).

  Args:
    paths: the backbone's leaf paths in tree order.
    layer: a regex (`re.search`) selecting the leaves, or None for the leaves
      sharing the parent path of the last leaf.

  Returns:
    The selected paths, in tree order.

  Raises:
    ValueError: no paths, an invalid regex, or a regex that matches no path.
  """
  if not paths:
    raise ValueError("the backbone has no parameters")
  if layer is None:
    parent = paths[-1].rpartition("/")[0]
    return tuple(p for p in paths if p.rpartition("/")[0] == parent)
  try:
    rx = re.compile(layer)
  except re.error as e:
    raise ValueError(f"gradnorm layer: invalid regex {layer!r}: {e}") from e
  chosen = tuple(p for p in paths if rx.search(p))
  if not chosen:
    raise ValueError(f"gradnorm layer {layer!r} matches no backbone parameter; paths "
                     f"look like {paths[:3]} ... {paths[-3:]}")
  return chosen


def gradnorm(num_tasks: int, partition: Partition, alpha: float = 1.5, lr: float = 0.025,
             layer: Optional[str] = None, min_weight: float = 1e-3) -> Method:
  """The GradNorm `Method`.

  Args:
    num_tasks: T (≥ 2).
    partition: the partition of the backbone (only its tree structure and paths
      are used, to find the layer W).
    alpha: α, the pull toward equal relative training rates; 1.5, SLGrad's value
      (vub-dl/SLGrad ``Multi-Task Model/MTL_MODEL_OPT.py`` line 57; SLGrad's copy
      never updates its weights, so it computes equal weighting, a defect not
      reproduced).
    lr: SGD learning rate of the weights; 0.025, aux_jax's choice (SLGrad's copy
      has no effective one: its weights are in no optimizer).
    layer: regex selecting W among the backbone's leaf paths; None: the last leaf
      group (see the module docstring). The paper's choice is the last shared layer
      (SLGrad's copy uses each task's own last head layer).
    min_weight: lower clip of the weights before renormalising.

  State: a `aux_jax.rules.GradNormState` (weights f32[T], Σ = T). Metrics:
  ``weights`` f32[K] = w[1:] used for this step, ``main_weight`` f32[],
  ``gradnorm_main`` f32[] = n_0.

  Raises:
    ValueError: fewer than 2 tasks, min_weight <= 0, or a ``layer`` that matches
      nothing.
  """
  if num_tasks < 2:
    raise ValueError(f"gradnorm needs at least one auxiliary task, got num_tasks={num_tasks}")
  if min_weight <= 0:
    raise ValueError(f"gradnorm needs min_weight > 0, got {min_weight}")
  paths = leaf_paths(partition.assignment)
  chosen = set(last_layer_paths(paths, layer))
  selected = [p in chosen for p in paths]  # static mask over backbone leaves

  def init(key):
    del key
    return MethodState(phi=(), state=gradnorm_init(num_tasks))

  def direction(params, phi, state, losses, key):
    del phi, key
    grads, task_losses, model_state = per_task_grads(losses, params)
    layer_grads = [g for g, s in zip(jax.tree.leaves(grads["backbone"]), selected) if s]
    norms = task_norms(layer_grads)
    new_state, w = gradnorm_update(state, task_losses, norms, alpha=alpha, lr=lr,
                                   min_weight=min_weight)
    metrics = {**task_metrics(task_losses), "weights": w[1:], "main_weight": w[0],
               "gradnorm_main": norms[0]}
    return task_combine(grads, w), new_state, model_state, metrics

  return Method(name="gradnorm", init=init, direction=direction)


def olaux(num_tasks: int, every_n: int = 2, beta: Optional[float] = None,
          model_lr: float = 1e-2, momentum: float = 0.9,
          initial_aux_weight: float = 1.0) -> Method:
  """The OL-AUX `Method`. Defaults: SLGrad's implementation (vub-dl/SLGrad @ e5ea387).

  Args:
    num_tasks: T (≥ 2).
    every_n: N, steps between weight updates; 2 (``gradSpeed_N``,
      ``Multi-Task Model/MTL_MODEL_OPT.py`` line 66).
    beta: β, the learning rate of the weights' SGD; None: η·N (line 73).
    model_lr: η, the model's learning rate: the weights' gradient is −η a
      (``Dynamic_weighting.py`` line 369); 1e-2, SLGrad's toy and CIFAR lr
      (``Examples/run_experiments_toy.py``); pass the config's ``optim.lr``.
    momentum: μ of the weights' SGD; 0.9, the model's momentum
      (``beta_1_backbone``, ``MTL_MODEL_OPT.py`` line 74). 0 with β = 0.1, η = 1,
      N = 10 is aux_jax's earlier plain rule w_k ← w_k + 0.1 Σ⟨g_0, g_k⟩.
    initial_aux_weight: w_k at the start (k ≥ 1); 1 (line 69).

  State: a `aux_jax.rules.OLAuxState`. Metrics: ``weights`` f32[K] = w[1:] used
  for this step, ``alignments`` f32[K] = ⟨g_0, g_k⟩ over the shared parameters.

  Raises:
    ValueError: fewer than 2 tasks or every_n < 1.
  """
  if num_tasks < 2:
    raise ValueError(f"olaux needs at least one auxiliary task, got num_tasks={num_tasks}")
  if every_n < 1:
    raise ValueError(f"olaux needs every_n >= 1, got {every_n}")
  weight_lr = model_lr * every_n if beta is None else beta

  def init(key):
    del key
    return MethodState(phi=(), state=olaux_init(num_tasks, initial_aux_weight))

  def direction(params, phi, state, losses, key):
    del phi, key
    grads, task_losses, model_state = per_task_grads(losses, params)
    shared = grads["backbone"]
    align = task_dots(shared, task_slice(shared, 0))[1:]
    new_state, w = olaux_update(state, align, every_n=every_n, beta=weight_lr,
                                model_lr=model_lr, momentum=momentum)
    metrics = {**task_metrics(task_losses), "weights": w[1:], "alignments": align}
    return task_combine(grads, w), new_state, model_state, metrics

  return Method(name="olaux", init=init, direction=direction)
