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

# name -> (builder(num_tasks, partition, **kwargs), needs the partition).
_REGISTRY = {
    "sll": (lambda t, p, **kw: sll(t), False),
    "equal": (lambda t, p, **kw: equal(t), False),
    "unif": (lambda t, p, **kw: unif(t), False),
    "gcs": (lambda t, p, **kw: gcs(t), False),
    "auxl": (lambda t, p, **kw: auxl(t, **kw), False),
    "maoal": (lambda t, p, **kw: maoal(t, p), True),
    "pcgrad": (lambda t, p, **kw: pcgrad(t, **kw), False),
    "cagrad": (lambda t, p, **kw: cagrad(t, **kw), False),
    "gradnorm": (lambda t, p, **kw: gradnorm(t, p, **kw), True),
    "olaux": (lambda t, p, **kw: olaux(t, **kw), False),
    "slgrad": (lambda t, p, **kw: slgrad(t, **kw), False),
    "attittud": (lambda t, p, **kw: attittud(t, p, **kw), True),
}
METHODS = tuple(_REGISTRY)


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
  if name not in _REGISTRY:
    raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
  build, needs_partition = _REGISTRY[name]
  if needs_partition and partition is None:
    raise ValueError(f"{name} needs a partition of the shared parameters")
  return build(num_tasks, partition, **kwargs)


__all__ = ["LossFns", "METHODS", "Method", "MethodState", "fixed_weights", "get_method",
           "per_task_grads"]
