"""The optax optimizers of both levels, built from a config's `optim` and `hyper`
sections, and the hypergradient solver's arguments from ``config.hyper``."""

from __future__ import annotations

import optax

from aux_jax import hypergrad
from aux_jax.train.plateau import scale_by_plateau


def lower_optimizer(cfg) -> optax.GradientTransformation:
  """θ's optimizer from ``config.optim``: optional clip, weight decay, SGD/Adam.

  ``schedule="plateau"``: lr ``cfg.lr`` times a scale lowered on a plateau of a dev
  metric (`aux_jax.train.plateau`; stepped at evaluations with the options
  ``cfg.plateau``, see `plateau_options`).
  """
  if cfg.schedule == "cosine":
    lr = optax.cosine_decay_schedule(cfg.lr, cfg.num_steps)
  elif cfg.schedule in ("constant", "plateau"):
    lr = cfg.lr
  elif cfg.schedule == "step":  # × decay_factor (default 0.5) every decay_every steps
    lr = optax.exponential_decay(cfg.lr, cfg.decay_every, cfg.get("decay_factor", 0.5),
                                 staircase=True)
  else:
    raise ValueError(f"optim.schedule must be 'cosine', 'constant', 'step' or 'plateau', "
                     f"got {cfg.schedule!r}")
  if cfg.name == "sgd":
    base = optax.sgd(lr, momentum=cfg.momentum or None)
  elif cfg.name == "adam":
    base = optax.adam(lr)
  else:
    raise ValueError(f"optim.name must be 'sgd' or 'adam', got {cfg.name!r}")
  # PyTorch-style weight decay: added to the gradient before the optimizer; optional
  # clipping of the update direction's global norm first (ATTITTUD clips at 1).
  clip = cfg.get("clip_norm", 0.0)
  plateau = [scale_by_plateau()] if cfg.schedule == "plateau" else []
  return optax.chain(*([optax.clip_by_global_norm(clip)] if clip else []),
                     optax.add_decayed_weights(cfg.weight_decay), base, *plateau)


# ATTITTUD's ReduceLROnPlateau (ldery/ATTITTUD algorithms/algos.py lines 113-115):
# factor 0.5, patience 4, min lr 1e-5, PyTorch's default relative threshold 1e-4, on
# the monitor (dev) loss.
PLATEAU_DEFAULTS = {"metric": "loss", "factor": 0.5, "patience": 4, "min_lr": 1e-5,
                    "rtol": 1e-4}


def plateau_options(cfg) -> dict | None:
  """For ``schedule="plateau"``: the dev metric to monitor (lower is better; the
  evaluation's ``dev_<metric>``) and `aux_jax.train.plateau.step_plateau`'s keyword
  arguments, from ``cfg.plateau`` over `PLATEAU_DEFAULTS`; None for other schedules."""
  if cfg.schedule != "plateau":
    return None
  opts = {**PLATEAU_DEFAULTS, **dict(cfg.get("plateau", {}))}
  unknown = set(opts) - set(PLATEAU_DEFAULTS)
  if unknown:
    raise ValueError(f"optim.plateau: unknown options {sorted(unknown)}; known "
                     f"{sorted(PLATEAU_DEFAULTS)}")
  return {"metric": opts["metric"],
          "kwargs": {"factor": float(opts["factor"]), "patience": int(opts["patience"]),
                     "rtol": float(opts["rtol"]),
                     # lr 0 (a frozen run) has nothing to floor
                     "min_scale": float(opts["min_lr"]) / float(cfg.lr) if cfg.lr else 0.0}}


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
  ``cfg.solver_kwargs[cfg.solver]``, checked against what the solver takes, with
  ``auto_step=True`` turned into ``step="auto"`` (and ``auto_step=False`` dropped).

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
  if kwargs.pop("auto_step", False):  # neumann: α = 1/ρ̂ (a str cannot be a float field)
    kwargs["step"] = "auto"
  return hypergrad.check_solver_kwargs(cfg.solver, kwargs)
