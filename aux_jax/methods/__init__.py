"""Weighting methods: how auxiliary losses are combined into one update direction.

Every method is a `Method` (see `aux_jax.methods.base`); `get_method` builds one from
a config. Learnable methods are trained by `aux_jax.hypergrad` with any solver.
"""

from __future__ import annotations

from aux_jax.methods.adaptive import gradnorm, olaux
from aux_jax.methods.attittud import attittud
from aux_jax.methods.auxl import auxl
from aux_jax.methods.base import LossFns, Method, MethodState, per_task_grads
from aux_jax.methods.fixed import equal, fixed_weights, sll, unif
from aux_jax.methods.gcs import gcs
from aux_jax.methods.maoal import maoal
from aux_jax.methods.slgrad import slgrad
from aux_jax.methods.surgery import cagrad, pcgrad

METHODS = ("sll", "equal", "unif", "gcs", "auxl", "maoal", "pcgrad", "cagrad", "gradnorm",
           "olaux", "slgrad", "attittud")

# Methods that need the partition of the shared parameters.
_NEEDS_PARTITION = ("maoal", "gradnorm", "attittud")


def get_method(name: str, num_tasks: int, partition=None, **kwargs) -> Method:
  """Builds a `Method` by name.

  Args:
    name: one of `METHODS`.
    num_tasks: T, main task included.
    partition: the module `aux_jax.partition.Partition` of the shared parameters
      (needed by ``maoal``, ``gradnorm`` (leaf paths) and ``attittud`` (leaf shapes)).
    **kwargs: method options from ``config.method.kwargs``:
      ``auxl``: net, hidden, monotone; ``cagrad``: c, num_iterations, rescale;
      ``gradnorm``: alpha, lr, layer, min_weight; ``olaux``: every_n, beta, model_lr,
      initial_aux_weight; ``attittud``: num_basis, nsamples, pca_every, lambdas,
      power_iters. ``pcgrad`` and ``slgrad`` take none (a TypeError on any);
      ``sll``/``equal``/``unif``/``gcs``/``maoal`` ignore them.

  Raises:
    ValueError: unknown name, or a missing partition.
  """
  if name in _NEEDS_PARTITION and partition is None:
    raise ValueError(f"{name} needs a partition of the shared parameters")
  if name == "sll":
    return sll(num_tasks)
  if name == "equal":
    return equal(num_tasks)
  if name == "unif":
    return unif(num_tasks)
  if name == "gcs":
    return gcs(num_tasks)
  if name == "auxl":
    return auxl(num_tasks, **kwargs)
  if name == "maoal":
    return maoal(num_tasks, partition)
  if name == "pcgrad":
    return pcgrad(num_tasks, **kwargs)
  if name == "cagrad":
    return cagrad(num_tasks, **kwargs)
  if name == "gradnorm":
    return gradnorm(num_tasks, partition, **kwargs)
  if name == "olaux":
    return olaux(num_tasks, **kwargs)
  if name == "slgrad":
    return slgrad(num_tasks, **kwargs)
  if name == "attittud":
    return attittud(num_tasks, partition, **kwargs)
  raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")


__all__ = ["LossFns", "METHODS", "Method", "MethodState", "fixed_weights", "get_method",
           "per_task_grads"]
