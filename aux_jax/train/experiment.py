"""A weighting experiment's pure, jitted functions: init, lower step, upper step,
evaluation; what `aux_jax.train.loop.train_and_evaluate` drives for every method.

Data flow of one training iteration (all on device, no host round-trip):

    step s ──► Problem.losses_at(batch_stats, s)   (aux_jax.train.problems: batch
    indices from (seed, s), gather from device-resident data, preprocess, augment)
    ──► LossFns (per-task per-sample losses f32[T, B]; dev loss) ──► method.direction ──► grads ──► optax (SGD) ──► new params       (lower step)
    every `hyper.interval` steps, for learnable methods:
    implicit_hypergradient(method.direction, dev loss) ──► meta optimizer ──► new φ
                                                                          (upper step)

Randomness: the batch order is a pure function of (seed, step) and every other key
is ``fold_in(step_key, step)``, so a run resumed from a checkpoint reproduces the
uninterrupted run exactly.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aux_jax import hypergrad, plots
from aux_jax.data import get_dataset
from aux_jax.data.shared_input import with_subclass_task
from aux_jax.meta_optimizer import MetaState, meta_optimizer
from aux_jax.methods import LossFns, Method, MethodState, get_method
from aux_jax.methods.maoal import module_names as maoal_module_names
from aux_jax.methods.maoal import weights_used as maoal_weights_used
from aux_jax.models import get_backbone, load_pretrained_backbone
from aux_jax.models import init as model_init
from aux_jax.partition import Partition, make_partition, partition_rules
from aux_jax import sharding
from aux_jax.train import nonfinite, optimizers, problems
from aux_jax.train.plateau import step_plateau

PyTree = Any


class TrainState(NamedTuple):
  """The experiment's state. The data-iterator position is ``step``."""

  step: jax.Array                 # i32[]
  params: PyTree                  # {"backbone": θ_s, "heads": per-task heads}
  batch_stats: PyTree             # BatchNorm running statistics (main-task batches)
  opt_state: optax.OptState
  method: MethodState             # φ and the method's own state
  meta_state: MetaState           # upper-level optimizer
  guard: nonfinite.Guard          # non-finite updates skipped (aux_jax.train.nonfinite)


class Experiment(NamedTuple):
  """One configured weighting experiment: the `aux_jax.train.loop.Experiment`
  protocol (name … mesh) and the parts it is built from (config … losses_at)."""

  name: str
  select: str
  init: Callable[[], TrainState]
  lower_step: Callable[[TrainState], tuple[TrainState, dict]]
  upper_step: Optional[Callable[[TrainState], tuple[TrainState, dict]]]
  upper_every: int
  model: Callable[[TrainState], dict]       # {"params", "batch_stats"}
  evaluate: Callable[[dict, str], dict]
  counters: Callable[[TrainState], dict]
  info: dict
  finish: Callable[[str, list, dict], None]
  init_from: Callable[[TrainState, PyTree, dict], TrainState]
  mesh: Any                       # the data-parallel mesh (aux_jax.sharding)
  on_evaluate: Optional[Callable[[TrainState, dict], TrainState]]  # plateau lr rule
  config: ml_collections.ConfigDict
  data: Any                       # MultiTaskData | SharedInputData
  problem: problems.Problem
  method: Method
  partition: Partition
  losses_at: Callable[[TrainState, jax.Array], LossFns]
  # Names of the axes of list-valued metrics (`aux_jax.train.writers.record_scalars`).
  array_names: dict = {}


def _compute_dtype(name: str):
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"model.dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def _pretrained_path(cfg) -> Optional[str]:
  """``model.pretrained``: a weights file, or None for random weights (field absent,
  None, or "none"); "" (a config's required-but-unset placeholder) raises."""
  path = cfg.model.get("pretrained")
  if path == "":
    raise ValueError("model.pretrained is not set: give the backbone's weights file "
                     "(e.g. --config.model.pretrained=/data/resnet18_imagenet.safetensors; "
                     "docs/fidelity.md says how to write one), or 'none' for random weights")
  return None if path is None or str(path).lower() == "none" else str(path)


def build_experiment(config: ml_collections.ConfigDict, data) -> Experiment:
  """Builds the jitted functions of an experiment from its config and data.

  Args:
    config: an experiment config (see `configs/`).
    data: `MultiTaskData` or `SharedInputData` (see `aux_jax.train.problems`).
  """
  cfg = config
  dtype = _compute_dtype(cfg.model.dtype)
  backbone = get_backbone(cfg.model.name, dtype=dtype, **dict(cfg.model.get("kwargs", {})))
  keys = problems.Keys(*jax.random.split(jax.random.key(cfg.seed), 4))
  # Data parallel: the batch split over `mesh.num_devices` devices (None: every
  # accelerator; one device on a single-process CPU backend),
  # the state replicated; see `aux_jax.sharding`.
  mesh = sharding.make_mesh(sharding.data_parallel_size(
      cfg.get("mesh", {}).get("num_devices"), cfg.data.batch_size))
  replicated = sharding.replicated(mesh)
  problem = problems.build_problem(cfg, data, backbone, dtype, keys, mesh)
  num_tasks = problem.num_tasks
  variables = problem.variables
  pretrained = _pretrained_path(cfg)
  if pretrained and cfg.model.get("init", "flax") != "flax":
    # The init scheme would redraw every loaded kernel (`init` below).
    raise ValueError(f"model.pretrained loads the backbone's weights; model.init="
                     f"{cfg.model.init!r} would redraw them (use 'flax', or pretrained='none')")
  if pretrained:  # e.g. ImageNet weights of a ResNet-18 (safetensors)
    variables = load_pretrained_backbone(cfg.model.name, pretrained, variables)
  partition = make_partition(variables["params"], cfg.method.partition,
                             partition_rules(cfg.model.name)
                             if cfg.method.partition == "module_wise" else ())
  method = get_method(cfg.method.name, num_tasks, partition, tasks=problem.spec,
                      **dict(cfg.method.get("kwargs", {})))
  # The columns of a [K, M] weight array (MAOAL adds the main head when it is shared).
  weight_modules = (maoal_module_names(partition, num_tasks, problem.spec.heads)
                    if method.name == "maoal" else partition.module_names)
  weights_used = (maoal_weights_used(partition, num_tasks, problem.spec.heads)
                  if method.name == "maoal" else None)
  # The optimizer's weight decay wd·θ is part of the lower-level fixed point; the
  # originals leave it out of G (hyper.include_weight_decay=False).
  decay = float(cfg.optim.weight_decay) if cfg.hyper.get("include_weight_decay") else 0.0
  solver_kwargs = optimizers.solver_kwargs(cfg.hyper) if method.learnable else {}
  tx = optimizers.lower_optimizer(cfg.optim)
  plateau = optimizers.plateau_options(cfg.optim)
  meta = meta_optimizer(optimizers.upper_optimizer(cfg.hyper), max_norm=cfg.hyper.max_norm,
                        projection=method.projection,
                        on_diverged=cfg.hyper.get("on_diverged", "skip"))
  step_key = keys.step
  init_backbone = cfg.model.get("init", "flax")
  init_heads = cfg.model.get("head_init", "flax")
  for name, scheme in (("init", init_backbone), ("head_init", init_heads)):
    if scheme not in model_init.INITS:
      raise ValueError(f"model.{name} must be one of {model_init.INITS}, got {scheme!r}")
  upper_opts = problems.upper_options(cfg)
  limit = nonfinite.limit_from_config(cfg)

  @functools.partial(jax.jit, out_shardings=replicated)
  def init() -> TrainState:
    k_heads, k_method = jax.random.split(jax.random.fold_in(keys.init, 1))
    # model.init / model.head_init (`aux_jax.models.init`): the modules' own
    # initialisers or PyTorch's defaults (keys of their own: "flax" draws as before).
    k_torch_backbone, k_torch_heads = jax.random.split(jax.random.fold_in(keys.init, 2))
    params = {"backbone": model_init.initialize(init_backbone, k_torch_backbone,
                                                variables["params"]),
              "heads": model_init.initialize(init_heads, k_torch_heads,
                                             problem.init_heads(k_heads), lead=1)}
    mstate = method.init(k_method)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
        method=mstate, meta_state=meta.init(mstate.phi), guard=nonfinite.init())

  def losses_at(state: TrainState, step, upper: bool = False) -> LossFns:
    """The training and dev losses of the batches of `step` (``upper``: the upper
    step's batches, `problems.UpperOptions`)."""
    return problem.losses_at(state.batch_stats, step, upper)

  # Donating the state halves peak memory on accelerators (CPU cannot use it).
  donate = () if jax.default_backend() == "cpu" else (0,)

  # The state is replicated on every device (also one edited outside a step, e.g. by
  # the loop); metrics too, so every process can read them.
  step_jit = functools.partial(jax.jit, donate_argnums=donate, in_shardings=(replicated,),
                               out_shardings=replicated)

  def lower_raw(state: TrainState):
    key = jax.random.fold_in(jax.random.fold_in(step_key, state.step), 1)
    # Usually one update; SLGrad's look-ahead option makes two on the same batch.
    for sub in range(method.updates_per_batch):
      losses = losses_at(state, state.step)   # the step's batch, current BN statistics
      grads, mstate, new_stats, metrics = method.direction(
          state.params, state.method.phi, state.method.state, losses,
          key if sub == 0 else jax.random.fold_in(key, sub))
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      metrics["grad_norm"] = optax.tree.norm(grads)
      state = state._replace(
          params=params, opt_state=opt_state,
          batch_stats=state.batch_stats if new_stats is None else new_stats,
          method=MethodState(state.method.phi, mstate))
    return state._replace(step=state.step + 1), metrics

  def upper_raw(state: TrainState):
    """One hypergradient step on φ after the lower step ``state.step − 1``: G on that
    step's batch or a fresh one, the dev loss in eval or train mode
    (`problems.UpperOptions`).

    With ``hyper.dev_bn="train"`` the running statistics change as PyTorch's train-mode
    forwards of the originals' upper step change them, in their order (M:train.py:267,
    275-283; A:oxford_pet/trainer.py:243, 255): first the dev batch,
    r ← m r + (1 − m) μ_dev; then, with ``train_term="fresh"``, the fresh training
    batch's chunks folded as a lower step folds its own (``model.bn_stats``). The
    ``"lower"`` term recomputes a batch already folded, so it adds nothing. With
    ``"eval"`` the upper step leaves them untouched.
    """
    last = state.step - 1
    stats = state.batch_stats
    losses = losses_at(state, last, upper=True)
    if losses.dev_stats is not None and stats:
      stats = losses.dev_stats(state.params)
      # The same batches; train-mode losses do not read the running statistics, so
      # only the fresh batch's fold below starts from the dev-updated ones.
      losses = problem.losses_at(stats, last, upper=True)
    key = jax.random.fold_in(jax.random.fold_in(step_key, last), 1)
    mstate = state.method.state
    if method.hyper_wrt == "shared":
      heads = state.params["heads"]
      theta = state.params["backbone"]
      merge = lambda t: {"backbone": t, "heads": heads}
      direction = lambda t, phi: method.direction(merge(t), phi, mstate, losses,
                                                  key)[0]["backbone"]
      val = lambda t: losses.dev(merge(t))
    elif method.hyper_wrt == "main_head":  # backbone + row 0 of every stacked head leaf
      heads = state.params["heads"]
      main = lambda tree: jax.tree.map(lambda h: h[0], tree)
      theta = {"backbone": state.params["backbone"], "main_head": main(heads)}
      merge = lambda t: {"backbone": t["backbone"], "heads": jax.tree.map(
          lambda h, m: h.at[0].set(m), heads, t["main_head"])}

      def direction(t, phi):
        g = method.direction(merge(t), phi, mstate, losses, key)[0]
        return {"backbone": g["backbone"], "main_head": main(g["heads"])}

      val = lambda t: losses.dev(merge(t))
    else:
      theta = state.params
      direction = lambda t, phi: method.direction(t, phi, mstate, losses, key)[0]
      val = losses.dev
    g = direction if not decay else (
        lambda t, phi: optax.tree.add_scale(direction(t, phi), decay, t))
    hg, info = hypergrad.implicit_hypergradient(
        g, val, theta, state.method.phi, solver=cfg.hyper.solver,
        symmetric=method.symmetric, solver_kwargs=solver_kwargs)
    phi, meta_state, metrics = meta.update(hg, info, state.meta_state, state.method.phi)
    metrics["dev_loss"] = info.val_loss  # evaluated once, inside the hypergradient
    if losses.dev_stats is not None and stats and upper_opts.train_term == "fresh":
      stats = losses.per_sample(state.params)[1]
    return state._replace(method=MethodState(phi, mstate), meta_state=meta_state,
                          batch_stats=stats), metrics

  # A non-finite loss or update is not applied, and counted (train.on_nonfinite).
  lower_jit = step_jit(nonfinite.guarded(lower_raw, "lower", limit))
  upper_jit = step_jit(nonfinite.guarded(upper_raw, "upper", limit))

  def lower_step(state: TrainState):
    """One lower-level step: ``state -> (state, metrics)`` (jitted)."""
    return lower_jit(sharding.wait_on_cpu(state, mesh))

  def upper_step(state: TrainState):
    """One hypergradient step on φ after the lower step just taken (jitted; see
    ``upper_jit``)."""
    return upper_jit(sharding.wait_on_cpu(state, mesh))

  def evaluate(model: dict, split: str) -> dict:
    """Metrics on ``split`` ('dev' or 'test'): main task unprefixed, see `Problem`."""
    return problem.evaluate(model["params"], model["batch_stats"], split)

  def on_evaluate(state: TrainState, dev: dict) -> TrainState:
    """The learning-rate plateau rule stepped with this evaluation's dev metric."""
    key = f"dev_{plateau['metric']}"
    if key not in dev:
      raise ValueError(f"optim.plateau.metric={plateau['metric']!r}: no {key!r} among "
                       f"the dev metrics {sorted(dev)}")
    opt_state = step_plateau(state.opt_state, dev[key], **plateau["kwargs"])
    return sharding.replicate(state._replace(opt_state=opt_state), mesh)

  def finish(workdir: str, records: list, summary: dict) -> None:
    if problem.num_tasks < 2:  # the main task alone (e.g. a fine-tuning phase)
      return
    plots.weights_over_training(
        records, os.path.join(workdir, "weights.png"),
        task_names=problem.task_names[1:], module_names=weight_modules,
        title=f"{method.name}: auxiliary weights over training",
        best_step=summary.get("best_step"), used=weights_used)

  return Experiment(
      name=method.name, select=problem.select, init=init, lower_step=lower_step,
      upper_step=upper_step if method.learnable else None,
      upper_every=int(cfg.hyper.interval),
      model=lambda state: {"params": state.params, "batch_stats": state.batch_stats},
      evaluate=evaluate, counters=counters, info={"task_names": list(problem.task_names)},
      finish=finish,
      init_from=lambda state, model, summary: initialize_from(
          state, model, summary.get("task_names", []), problem.task_names),
      mesh=mesh, on_evaluate=on_evaluate if plateau is not None else None,
      config=cfg, data=data, problem=problem, method=method,
      partition=partition, losses_at=losses_at,
      array_names={"weights": (tuple(problem.task_names[1:]), weight_modules)})


def counters(state: TrainState) -> dict:
  """Hypergradients applied, skipped, and diverged (applied or not, by
  ``hyper.on_diverged``) so far; zeros for methods without φ."""
  return {"hypergrad_applied": int(state.meta_state.num_updates),
          "hypergrad_skipped": int(state.meta_state.num_skipped),
          "hypergrad_diverged": int(state.meta_state.num_diverged)}


def initialize_from(state: TrainState, model: PyTree, source_tasks, task_names
                    ) -> TrainState:
  """``state`` with the backbone, BatchNorm statistics and same-named task heads of
  another run's best ``model`` (``{"params", "batch_stats"}``, e.g. ATTITTUD's
  pretraining for its fine-tuning); head rows: the first `C_max` outputs.
  The optimizer state of ``state`` is kept: SGD's and Adam's start at zero whatever
  the parameters.

  Raises:
    ValueError: the backbones differ in structure or shapes.
  """
  params, stats = model["params"], model["batch_stats"]
  src = jax.tree.map(jnp.asarray, params["backbone"])
  dst = state.params["backbone"]
  if (jax.tree.structure(src) != jax.tree.structure(dst)
      or jax.tree.map(jnp.shape, src) != jax.tree.map(jnp.shape, dst)):
    raise ValueError("train.init_from: its backbone differs from this model's")
  heads = dict(state.params["heads"])
  src_names = list(source_tasks)
  for t, name in enumerate(task_names):
    if name in src_names:
      s = src_names.index(name)
      for k in heads:
        row = jnp.asarray(params["heads"][k])[s]
        width = min(row.shape[-1], heads[k].shape[-1])
        heads[k] = heads[k].at[t, ..., :width].set(row[..., :width])
  return state._replace(
      params={"backbone": src, "heads": heads},
      batch_stats=jax.tree.map(jnp.asarray, stats) if state.batch_stats else state.batch_stats)


def load_data(config: ml_collections.ConfigDict):
  """The data ``config.data`` names: loader ``name`` with ``kwargs``, and AuxiLearn's
  generated sub-class task added when ``subclass_task`` (k) is set."""
  data = get_dataset(config.data.name, **dict(config.data.get("kwargs", {})))
  if config.data.get("subclass_task", 0):
    data = with_subclass_task(data, config.data.subclass_task)
  return data


def experiment_from_config(config: ml_collections.ConfigDict,
                           workdir: str | None = None) -> Experiment:
  """`build_experiment` on the data of ``config`` (`load_data`); writes nothing in
  ``workdir``."""
  del workdir
  return build_experiment(config, load_data(config))
