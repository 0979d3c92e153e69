"""The optax optimizers of both levels, built from a config's `optim` and `hyper`
sections, and the hypergradient solver's arguments from ``config.hyper``."""

from __future__ import annotations

import optax

from aux_jax import hypergrad


def lower_optimizer(cfg) -> optax.GradientTransformation:
  """θ's optimizer from ``config.optim``: optional clip, weight decay, SGD/Adam."""
  if cfg.schedule == "cosine":
    lr = optax.cosine_decay_schedule(cfg.lr, cfg.num_steps)
  elif cfg.schedule == "constant":
    lr = cfg.lr
  elif cfg.schedule == "step":  # × decay_factor (default 0.5) every decay_every steps
    lr = optax.exponential_decay(cfg.lr, cfg.decay_every, cfg.get("decay_factor", 0.5),
                                 staircase=True)
  else:
    raise ValueError(f"optim.schedule must be 'cosine', 'constant' or 'step', got "
                     f"{cfg.schedule!r}")
  if cfg.name == "sgd":
    base = optax.sgd(lr, momentum=cfg.momentum or None)
  elif cfg.name == "adam":
    base = optax.adam(lr)
  else:
    raise ValueError(f"optim.name must be 'sgd' or 'adam', got {cfg.name!r}")
  # PyTorch-style weight decay: added to the gradient before the optimizer; optional
  # clipping of the update direction's global norm first (ATTITTUD clips at 1).
  clip = cfg.get("clip_norm", 0.0)
  return optax.chain(*([optax.clip_by_global_norm(clip)] if clip else []),
                     optax.add_decayed_weights(cfg.weight_decay), base)


def upper_optimizer(cfg) -> optax.GradientTransformation:
  """φ's base optimizer from ``config.hyper`` (`meta_optimizer` adds the clipping)."""
  if cfg.optimizer == "adam":
    base = optax.adam(cfg.lr)
  elif cfg.optimizer == "sgd":
    base = optax.sgd(cfg.lr, momentum=cfg.momentum or None)
  else:
    raise ValueError(f"hyper.optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay), base)


def solver_kwargs(cfg) -> dict:
  """The keyword arguments of ``cfg.solver`` (a name in `aux_jax.hypergrad.SOLVERS`):
  ``cfg.solver_kwargs[cfg.solver]``, checked against what the solver takes.

  Raises:
    ValueError: an unknown solver, an argument it does not take, or a solver option
      at its old place (``hyper.step``, ``hyper.neumann_steps``, ...).
  """
  moved = {"step": "neumann.step", "neumann_steps": "neumann.steps",
           "scale_by_step": "neumann.scale_by_step", "maxiter": "cg.maxiter",
           "tol": "cg.tol"}
  old = [k for k in moved if k in cfg]
  if old:
    raise ValueError("solver options live in hyper.solver_kwargs.<solver> now: " + ", ".join(
        f"hyper.{k} -> hyper.solver_kwargs.{moved[k]}" for k in old))
  hypergrad.get_solver(cfg.solver)
  section = cfg.get("solver_kwargs", {}).get(cfg.solver, {})
  kwargs = section.to_dict() if hasattr(section, "to_dict") else dict(section)
  return hypergrad.check_solver_kwargs(cfg.solver, kwargs)
