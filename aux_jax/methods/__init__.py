"""Weighting methods: how auxiliary losses are combined into one update direction.

Every method is a `Method` (see `aux_jax.methods.base`); `get_method` builds one from
a config. Learnable methods are trained by `aux_jax.hypergrad` with any solver.
"""

from __future__ import annotations

from aux_jax.methods.auxl import auxl
from aux_jax.methods.base import LossFns, Method, MethodState, per_task_grads
from aux_jax.methods.fixed import equal, fixed_weights, sll, unif
from aux_jax.methods.gcs import gcs
from aux_jax.methods.maoal import maoal

METHODS = ("sll", "equal", "unif", "gcs", "auxl", "maoal")


def get_method(name: str, num_tasks: int, partition=None, **kwargs) -> Method:
  """Builds a `Method` by name.

  Args:
    name: one of `METHODS`.
    num_tasks: T, main task included.
    partition: the module `aux_jax.partition.Partition` of the shared parameters
      (needed by module-wise methods).
    **kwargs: method options (e.g. ``net``, ``hidden``, ``monotone`` for ``auxl``).

  Raises:
    ValueError: unknown name.
  """
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
    if partition is None:
      raise ValueError("maoal needs a partition of the shared parameters")
    return maoal(num_tasks, partition)
  raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")


__all__ = ["LossFns", "METHODS", "Method", "MethodState", "get_method",
           "per_task_grads"]
