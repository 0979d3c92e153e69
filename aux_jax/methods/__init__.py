"""Weighting methods: how auxiliary losses are combined into one update direction.

Every method is a `Method` (see `aux_jax.methods.base`); `get_method` builds one from
a config. Learnable methods are trained by `aux_jax.hypergrad` with any solver.
"""

from __future__ import annotations

from aux_jax.methods.adaptive import gradnorm, olaux
from aux_jax.methods.attittud import attittud
from aux_jax.methods.auxl import auxl
from aux_jax.methods.base import LossFns, Method, MethodState, TaskSpec, per_task_grads
from aux_jax.methods.fixed import equal, fixed, fixed_weights, stl, unif
from aux_jax.methods.gcs import gcs
from aux_jax.methods.loss_weighting import dbmtl, dwa, famo, rlw, uw
from aux_jax.methods.maoal import maoal
from aux_jax.methods.mtl import aligned_mtl, gradvac, imtl, mgda, nash_mtl
from aux_jax.methods.slgrad import slgrad
from aux_jax.methods.surgery import cagrad, pcgrad
from aux_jax.methods.taskgen import taskgen

# name -> (builder(num_tasks, partition, tasks, **kwargs), needs the partition).
_REGISTRY = {
    "stl": (lambda t, p, s, **kw: stl(t), False),
    "equal": (lambda t, p, s, **kw: equal(t), False),
    "unif": (lambda t, p, s, **kw: unif(t), False),
    "fixed": (lambda t, p, s, **kw: fixed(t, **kw), False),
    "gcs": (lambda t, p, s, **kw: gcs(t, **kw), False),
    "auxl": (lambda t, p, s, **kw: auxl(t, **kw), False),
    "maoal": (lambda t, p, s, **kw: maoal(t, p, heads=s.heads if s else None, **kw), True),
    "pcgrad": (lambda t, p, s, **kw: pcgrad(t, **kw), False),
    "cagrad": (lambda t, p, s, **kw: cagrad(t, **kw), False),
    "gradnorm": (lambda t, p, s, **kw: gradnorm(t, p, **kw), True),
    "olaux": (lambda t, p, s, **kw: olaux(t, **kw), False),
    "slgrad": (lambda t, p, s, **kw: slgrad(t, **kw), False),
    "attittud": (lambda t, p, s, **kw: attittud(t, p, **kw), True),
    "taskgen": (lambda t, p, s, **kw: taskgen(s, **kw), False),
    # Multi-task weightings (docs/weightings.md): gradient rules ...
    "mgda": (lambda t, p, s, **kw: mgda(t, **kw), False),
    "imtl": (lambda t, p, s, **kw: imtl(t, **kw), False),
    "aligned_mtl": (lambda t, p, s, **kw: aligned_mtl(t, **kw), False),
    "nash_mtl": (lambda t, p, s, **kw: nash_mtl(t, **kw), False),
    "gradvac": (lambda t, p, s, **kw: gradvac(t, **kw), False),
    # ... and loss weightings.
    "uw": (lambda t, p, s, **kw: uw(t, **kw), False),
    "dwa": (lambda t, p, s, **kw: dwa(t, **kw), False),
    "rlw": (lambda t, p, s, **kw: rlw(t, **kw), False),
    "famo": (lambda t, p, s, **kw: famo(t, **kw), False),
    "dbmtl": (lambda t, p, s, **kw: dbmtl(t, p, **kw), True),
}
METHODS = tuple(_REGISTRY)


def get_method(name: str, num_tasks: int, partition=None, tasks: TaskSpec = None,
               **kwargs) -> Method:
  """Builds a `Method` by name.

  Args:
    name: one of `METHODS`.
    num_tasks: T, main task included.
    partition: the module `aux_jax.partition.Partition` of the shared parameters
      (needed by ``maoal``, ``gradnorm`` (leaf paths) and ``attittud`` (leaf shapes)).
    tasks: the tasks' `TaskSpec` (needed by ``taskgen``: class counts, input shape).
    **kwargs: method options from ``config.method.kwargs``:
      ``auxl``: net, hidden, monotone, inputs, hyper_wrt, pixel_mask and the network's
      own (`aux_jax.auxnets`); ``maoal``: lower, floor; ``cagrad``: c (the paper's),
      num_iterations, rescale; ``gradnorm``: alpha, lr, layer, min_weight; ``olaux``:
      every_n, beta, model_lr, momentum, initial_aux_weight; ``slgrad``: scale, look_ahead, batch_size;
      ``attittud``: num_basis, nsamples, pca_every, lambdas, power_iters, body,
      primary_weight, main_samples, main_draw; ``taskgen``: aux_weight, learn_labeler,
      labeler_features, combiner, aux_scale; ``mgda``: normalization, num_iterations;
      ``nash_mtl``: max_norm, tol, max_iterations; ``gradvac``: beta; ``imtl`` and
      ``aligned_mtl`` take none; ``uw``: optimizer, lr, momentum, init; ``dwa``:
      temperature, window; ``rlw``: none; ``famo``: lr, gamma; ``dbmtl``: beta. ``pcgrad`` takes none (a TypeError on
      any); ``gcs``: per_layer, unit_layers; ``fixed``: weights (one per auxiliary task); ``stl``/``equal``/``unif`` ignore them.

  Raises:
    ValueError: unknown name, or a missing partition.
  """
  if name not in _REGISTRY:
    raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
  build, needs_partition = _REGISTRY[name]
  if needs_partition and partition is None:
    raise ValueError(f"{name} needs a partition of the shared parameters")
  if name == "taskgen" and tasks is None:
    raise ValueError("taskgen needs the tasks' TaskSpec")
  return build(num_tasks, partition, tasks, **kwargs)


__all__ = ["LossFns", "METHODS", "Method", "MethodState", "TaskSpec", "fixed_weights",
           "get_method", "per_task_grads"]
