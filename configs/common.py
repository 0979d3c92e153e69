"""The config sections every experiment shares, with their defaults.

Each experiment config (``configs/<name>.py``, ``get_config(variant)``) builds its
ConfigDict from these sections and sets what is its own. A field exists in every
config that has its section, so a command-line override such as
``--config.train.patience=5`` works on every experiment.

Sections:

* ``seed``, ``runner`` (``train`` | ``aang`` | ``two_phase``: what `aux_jax.train.run`
  builds from the config), ``mesh`` (data parallelism, `aux_jax.sharding`).
* ``data``: the loader (``name``, ``kwargs``) and the batch sizes.
* ``model``: the backbone (``name``, ``dtype``, ``kwargs``).
* ``method``: the weighting (``name`` in `aux_jax.methods.METHODS`, ``partition``,
  ``kwargs``).
* ``optim``: the lower level (θ's optimizer, schedule, step count).
* ``hyper``: the upper level of learnable methods: every ``interval`` steps a
  hypergradient from ``solver`` (`aux_jax.hypergrad.SOLVERS`), called with its own
  keyword arguments ``solver_kwargs.<solver>`` (so ``--config.hyper.solver=cg``
  needs nothing else, and ``--config.hyper.solver_kwargs.neumann.step=1.0`` sets α),
  then clip to ``max_norm`` and φ's optimizer.
* ``train``: the loop (`aux_jax.train.loop`): logging, evaluation, checkpoints,
  selection, early stopping.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

STL = "stl"  # the single-task baseline (main-task loss only), in every experiment


def base(runner: str = "train") -> ml_collections.ConfigDict:
  """``seed``, ``runner`` and ``mesh``."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.runner = runner
  # Data parallel over a mesh of devices (aux_jax.sharding): None = every accelerator
  # (one device on CPU); the batch must divide over them.
  c.mesh = ml_collections.ConfigDict({"num_devices": config_dict.placeholder(int)})
  return c


def data(name: str, *, batch_size: int, dev_batch_size: int, eval_batch_size: int = 500,
         augment: bool = False, crop_pad: int = 0, augment_dev: bool = False,
         **kwargs) -> ml_collections.ConfigDict:
  """The ``data`` section: loader ``name`` called with ``kwargs`` (`aux_jax.data`).

  ``batch_size`` is per task for data whose tasks have their own images, per step
  otherwise; ``dev_batch_size`` is the dev batch of the upper level and of the
  methods that read the dev loss (0: the whole dev split every step).
  ``augment_dev``: the upper step's dev batch randomly cropped and flipped like a
  training batch (the MAOAL and AuxiLearn originals draw it from an augmented set).
  """
  # A None default must stay overridable from the command line (ml_collections cannot
  # override a None field): paths (``root``, ``*_dir``) become str placeholders, any
  # other None (a size limit such as ``max_train``) an int placeholder.
  kwargs = {k: (v if v is not None else config_dict.placeholder(
      str if k == "root" or k.endswith("_dir") else int)) for k, v in kwargs.items()}
  return ml_collections.ConfigDict({
      "name": name, "kwargs": ml_collections.ConfigDict(kwargs),
      "batch_size": batch_size, "dev_batch_size": dev_batch_size,
      "eval_batch_size": eval_batch_size, "augment": augment, "crop_pad": crop_pad,
      "augment_dev": augment_dev})


def placeholder_path():
  """An unset, command-line-settable path (e.g. ``model.pretrained``): None until given
  (ml_collections cannot override a plain None field)."""
  return config_dict.placeholder(str)


def model(name: str, dtype: str = "float32", bn_stats: str = "main", init: str = "flax",
          head_init: str = "flax", aux_heads: str = "own",
          **kwargs) -> ml_collections.ConfigDict:
  """The ``model`` section: backbone ``name`` (`aux_jax.models`), compute ``dtype``
  (``float32`` or ``bfloat16``; parameters stay float32), and for tasks with their own
  images which task batches update the BatchNorm running statistics: ``"main"`` only
  or ``"all"`` in task order, as the original MAOAL's per-task forward passes
  (`aux_jax.models.multitask`). ``init`` (backbone) and ``head_init`` (task heads):
  ``"flax"`` (the modules' own initialisers) or ``"torch_default"`` (PyTorch's
  ``nn.Conv``/``nn.Linear`` defaults; `aux_jax.models.init`). ``aux_heads``: ``"own"``
  (task t through head t) or ``"shifted"`` (the original MAOAL's indexing: auxiliary
  task k through head k − 1, so the first shares the main head; tasks with their own
  images only)."""
  return ml_collections.ConfigDict({"name": name, "dtype": dtype, "bn_stats": bn_stats,
                                    "init": init, "head_init": head_init,
                                    "aux_heads": aux_heads,
                                    "kwargs": ml_collections.ConfigDict(kwargs)})


def method(name: str, partition: str = "global", **kwargs) -> ml_collections.ConfigDict:
  """The ``method`` section: weighting ``name``, module ``partition`` of the shared
  parameters (``global`` | ``module_wise`` | ``param_wise``), the method's options,
  and how per-task gradients are taken (``per_task_grads``: ``auto`` | ``vmap`` |
  ``map`` | ``vjp``, `aux_jax.methods.base.per_task_grads`; the same gradients)."""
  return ml_collections.ConfigDict({"name": name, "partition": partition,
                                    "kwargs": ml_collections.ConfigDict(kwargs),
                                    "per_task_grads": "auto"})


def optim(name: str = "sgd", *, lr: float, num_steps: int, momentum: float = 0.9,
          weight_decay: float = 0.0, schedule: str = "constant",
          clip_norm: float = 0.0, **extra) -> ml_collections.ConfigDict:
  """The ``optim`` section (`aux_jax.train.optimizers.lower_optimizer`): ``sgd`` or
  ``adam``; ``schedule`` ``constant`` | ``cosine`` | ``step`` (``decay_every``,
  ``decay_factor``); PyTorch-style ``weight_decay``; ``clip_norm`` (0: none)."""
  return ml_collections.ConfigDict({
      "name": name, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
      "schedule": schedule, "clip_norm": clip_norm, "num_steps": num_steps, **extra})


def solver_kwargs(*, steps: int = 3, step: float = 1e-4, scale_by_step: bool = False,
                  unroll: bool = False, auto_step: bool = False,
                  power_iterations: int = 10, maxiter: int = 50, tol: float = 1e-5,
                  ridge: float = 0.0) -> ml_collections.ConfigDict:
  """``hyper.solver_kwargs``: each solver's own keyword arguments.

  ``neumann`` (`aux_jax.hypergrad.neumann`): ``steps`` terms after the first, step α,
  and whether the sum is multiplied by α (False: the original AuxiLearn/MAOAL
  convention), and ``unroll`` (the loop unrolled: same result, longer compilation, ~10×
  faster upper steps on a CPU); ``auto_step=True`` replaces ``step`` by ``"auto"`` (α =
  1/ρ̂, ρ̂ from ``power_iterations`` products; `aux_jax.train.optimizers.solver_kwargs`
  translates it: a config field cannot hold both a number and a string). ``cg``
  (`aux_jax.hypergrad.conjugate_gradient`): ``maxiter``, ``tol``. ``exact``: none.
  Every solver: ``ridge`` λ, solving (Jᵀ + λI)p = v₀ (0: undamped).
  """
  return ml_collections.ConfigDict({
      "neumann": {"steps": steps, "step": step, "scale_by_step": scale_by_step,
                  "unroll": unroll, "auto_step": auto_step,
                  "power_iterations": power_iterations, "ridge": ridge},
      "cg": {"maxiter": maxiter, "tol": tol, "ridge": ridge},
      "exact": {"ridge": ridge}})


def hyper(*, interval: int = 10, solver: str = "neumann", step: float = 1e-4,
          scale_by_step: bool = False, optimizer: str = "adam", lr: float = 0.01,
          momentum: float = 0.9, weight_decay: float = 0.0,
          max_norm: float = 10.0, on_diverged: str = "skip", dev_bn: str = "eval",
          train_term: str = "lower") -> ml_collections.ConfigDict:
  """The ``hyper`` section: the upper level of learnable methods (unused otherwise);
  ``step`` and ``scale_by_step`` are the Neumann series' (see `solver_kwargs`).

  The upper step's batches (`aux_jax.train.problems.UpperOptions`): ``dev_bn`` the dev
  loss with BatchNorm in ``"eval"`` mode (running statistics), or in ``"train"`` mode
  (batch statistics; the running statistics then updated as PyTorch's train-mode
  forwards do, `aux_jax.train.experiment`); ``train_term`` G on the ``"lower"``
  step's batch or on a ``"fresh"`` training batch (a function of the step).

  ``on_diverged``: what to do with a finite hypergradient whose solver diverged (e.g.
  a growing Neumann series): ``"apply"`` it clipped to ``max_norm``, as the MAOAL and
  AuxiLearn originals do, or ``"skip"`` it (`aux_jax.meta_optimizer`). Non-finite
  ones are always skipped. Counted as ``hypergrad_diverged`` either way.
  """
  return ml_collections.ConfigDict({
      "interval": interval, "solver": solver,
      "solver_kwargs": solver_kwargs(step=step, scale_by_step=scale_by_step),
      "optimizer": optimizer, "lr": lr, "momentum": momentum,
      "weight_decay": weight_decay, "max_norm": max_norm, "on_diverged": on_diverged,
      "dev_bn": dev_bn, "train_term": train_term})


def train(*, log_every: int, eval_every: int, checkpoint_every: int,
          keep_checkpoints: int = 2, select: str = "", patience: int = 0,
          init_from: str = "", track_test_max: bool = False,
          select_ties: str = "first", on_nonfinite: str = "stop",
          max_consecutive_nonfinite: int = 10, writers: tuple = ("tensorboard",),
          wandb_project: str = "", profile_steps: str = "") -> ml_collections.ConfigDict:
  """The ``train`` section (`aux_jax.train.loop`).

  ``select``: the dev metric for model selection, higher is better ("" = the
  experiment's own: accuracy, neg_mse, miou_dataset, macro_f1, ...); ``patience``: stop after
  this many evaluations without improvement (0: never); ``init_from``: a finished
  run's workdir whose best-on-dev model initialises this one (or a checkpoint
  ``<workdir>/checkpoints/<step>``, e.g. a diverged run's last finite one);
  ``track_test_max``: also evaluate test at every evaluation and report the maximum as
  ``test_<select>_max_over_epochs`` (MAOAL's reported figure, an oracle: logged only,
  never used for selection); ``select_ties``: "first" keeps the earliest of equal dev
  scores, "last" the latest (AuxiLearn's ``>=``); ``on_nonfinite``: a non-finite loss
  or update ends the run ("stop", exit status 3) or is skipped and counted ("skip":
  until more than ``max_consecutive_nonfinite`` in a row); `aux_jax.train.nonfinite`.
  ``writers``: where the metrics also go, "tensorboard" (``<workdir>/tb``) and/or
  "wandb" (project ``wandb_project``), `aux_jax.train.writers`; ``profile_steps``:
  "a,b" writes a `jax.profiler` trace of steps a..b into ``<workdir>/tb``.
  """
  return ml_collections.ConfigDict({
      "log_every": log_every, "eval_every": eval_every,
      "checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints,
      "select": select, "patience": patience, "init_from": init_from,
      "track_test_max": track_test_max, "select_ties": select_ties,
      "on_nonfinite": on_nonfinite,
      "max_consecutive_nonfinite": max_consecutive_nonfinite,
      "writers": tuple(writers), "wandb_project": wandb_project,
      "profile_steps": profile_steps})


def maoal_convergent(c: ml_collections.ConfigDict, step: float
                     ) -> ml_collections.ConfigDict:
  """The library's recommended MAOAL upper level instead of the original's α = 1
  series: p = α Σ_{j≤3} (I − αJᵀ)^j v₀ (``scale_by_step``, a consistent truncation of
  (Jᵀ)⁻¹v₀ when α < 2/λ_max) with a small ``step`` α, and a diverged series skipped."""
  c.method.name = "maoal"
  neumann = c.hyper.solver_kwargs.neumann
  neumann.step, neumann.scale_by_step = step, True
  c.hyper.on_diverged = "skip"
  return c


def auxl_network(c: ml_collections.ConfigDict, *, hyper_wrt: str = "all"
                 ) -> ml_collections.ConfigDict:
  """AuxL's auxiliary network as the MAOAL paper runs it: AuxiLearn's nonlinear
  monotone combiner T→5→5→1 over the batch-mean losses, the hypergradient over
  ``hyper_wrt``; ``c.hyper`` untouched."""
  c.method.name = "auxl"
  c.method.kwargs = ml_collections.ConfigDict(
      {"net": "nonlinear", "hidden": (5, 5), "monotone": True, "hyper_wrt": hyper_wrt,
       "bias_out": False})   # AuxiLearn's Mono nonlinear net: no output bias
  return c


def auxl_baseline(c: ml_collections.ConfigDict, *, hyper_wrt: str = "all",
                  weight_decay: float = 0.0) -> ml_collections.ConfigDict:
  """AuxL as the MAOAL paper runs it: `auxl_network`, SGD 1e-3 on φ, Neumann α 1e-4
  (no prefactor). MAOAL's code also restricts the hypergradient to the shared
  parameters (``hyper_wrt="shared"``) and decays φ by 5e-4; its configs pass both."""
  auxl_network(c, hyper_wrt=hyper_wrt)
  c.hyper.optimizer = "sgd"
  c.hyper.lr = 1e-3
  c.hyper.solver_kwargs.neumann.step = 1e-4
  c.hyper.weight_decay = weight_decay
  return c


# MAOAL's upper-level estimators, compared side by side as variants ``maoal_<name>``
# of the MAOAL configs (`maoal_variants`): name -> what it sets on ``hyper``.
MAOAL_ESTIMATORS = {
    # The MAOAL paper's: 3 Neumann terms at α = 1, no α prefactor, applied (clipped)
    # even when the series grows.
    "original": "neumann, steps 3, α 1, no prefactor, on_diverged apply",
    # The library's recommended series (`maoal_convergent`).
    "convergent": "neumann, steps 3, α = convergent_step, α prefactor, diverged skipped",
    # α = 1/ρ̂ from power iterations on Jᵀ (`aux_jax.hypergrad`, step="auto").
    "auto": "neumann, steps 3, α = 1/ρ̂ (auto_step), α prefactor, diverged skipped",
    # A longer, damped series: (Jᵀ + λI)p = v₀ with λ = 1, 10 terms.
    "ridge": "neumann, steps 10, α = convergent_step, α prefactor, ridge 1, diverged skipped",
}


def maoal_estimator(c: ml_collections.ConfigDict, name: str, *,
                    convergent_step: float) -> ml_collections.ConfigDict:
  """Sets MAOAL's upper-level estimator ``name`` (a key of `MAOAL_ESTIMATORS`)."""
  if name not in MAOAL_ESTIMATORS:
    raise ValueError(f"unknown MAOAL estimator {name!r}; known: {tuple(MAOAL_ESTIMATORS)}")
  c.method.name = "maoal"
  neumann = c.hyper.solver_kwargs.neumann
  c.hyper.solver = "neumann"
  if name == "original":
    neumann.steps, neumann.step, neumann.scale_by_step = 3, 1.0, False
    c.hyper.on_diverged = "apply"
    return c
  maoal_convergent(c, step=convergent_step)
  if name == "auto":
    neumann.auto_step = True
  elif name == "ridge":
    neumann.steps, neumann.ridge = 10, 1.0
  return c


def maoal_variants(c: ml_collections.ConfigDict, method: str, *,
                   convergent_step: float, shared: str = "shared",
                   auxl_upper: str = "original") -> ml_collections.ConfigDict:
  """The MAOAL experiments' own variants, after ``c.method`` and ``c.hyper`` are set:
  ``maoal_<estimator>`` (`maoal_estimator`, e.g. ``maoal_convergent`` with α =
  ``convergent_step``, ``maoal_original``), ``auxl_original`` (AuxL as MAOAL's code
  runs it: `auxl_baseline` over the shared parameters, φ decay 5e-4), and ``auxl``:
  that too with ``auxl_upper="original"``, or AuxL's network with the experiment's own
  upper level (``c.hyper`` as set, MAOAL's) with ``auxl_upper="experiment"``.
  ``shared``: AuxL's ``hyper_wrt`` for the shared parameters, ``"shared"`` (the
  backbone) or ``"main_head"`` (the backbone and the main head, where auxiliary tasks
  share it)."""
  if auxl_upper not in ("original", "experiment"):
    raise ValueError(f"auxl_upper must be 'original' or 'experiment', got {auxl_upper!r}")
  if method.startswith("maoal_"):
    maoal_estimator(c, method[len("maoal_"):], convergent_step=convergent_step)
  if method == "auxl_original" or (method == "auxl" and auxl_upper == "original"):
    auxl_baseline(c, hyper_wrt=shared, weight_decay=5e-4)
  elif method == "auxl":
    auxl_network(c, hyper_wrt=shared)
  return c


def slgrad_image_methods(c: ml_collections.ConfigDict, name: str, *,
                         num_steps: int) -> ml_collections.ConfigDict:
  """The ``method`` (``name``), ``optim`` and ``hyper`` sections of SLGrad's image
  experiments (CIFAR-10 one-vs-rest, Multi-MNIST; a MultiLeNet): SGD 1e-2 with
  momentum 0.9, the baselines as SLGrad runs them (`slgrad_baselines`), GradNorm on
  the dense layer, AuxL as in the MAOAL paper."""
  c.method = method(name, partition="module_wise" if name == "maoal" else "global")
  if name == "gradnorm":
    c.method.kwargs = ml_collections.ConfigDict({"layer": r"^dense/"})
  c.optim = optim("sgd", lr=1e-2, momentum=0.9, num_steps=num_steps)
  slgrad_baselines(c)  # CAGrad c = 1; OL-AUX η = optim.lr
  c.hyper = hyper(interval=10, step=0.1, optimizer="adam", lr=0.01)
  if name == "auxl":
    auxl_baseline(c)
  if name == "slgrad":  # look_ahead: the original's two updates per batch (a defect)
    c.method.kwargs = ml_collections.ConfigDict(
        {"scale": "batch", "look_ahead": False,
         "batch_size": c.data.get_ref("batch_size")})
  return c


def slgrad_baselines(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The gradient baselines as SLGrad's experiments run them (vub-dl/SLGrad @ e5ea387):
  CAGrad with c (its ``alpha``) = 1 and the ÷(1 + c²) rescale
  (``Examples/run_experiments_toy.py`` lines 108-109, every runner); OL-AUX's weight
  gradient scaled by the model's learning rate ``optim.lr`` (its other defaults are
  SLGrad's, `aux_jax.methods.adaptive.olaux`); GCS as SLGrad's code: per-tensor cosines
  summed (≥ 0) and each shared tensor's update scaled to unit norm
  (``Dynamic_weighting.py:527-591``). Call after ``c.optim`` is set."""
  if c.method.name == "gcs":
    c.method.kwargs = ml_collections.ConfigDict({"per_layer": True, "unit_layers": True})
  elif c.method.name == "cagrad":
    c.method.kwargs = ml_collections.ConfigDict({"c": 1.0, "rescale": True})
  elif c.method.name == "olaux":
    c.method.kwargs = ml_collections.ConfigDict({"model_lr": c.optim.lr})
  return c


def mtl_baselines(c: ml_collections.ConfigDict, epoch_steps: int) -> ml_collections.ConfigDict:
  """The multi-task weightings' options that depend on the experiment
  (docs/weightings.md): UW's log-variances trained by the model's optimizer (its name,
  lr, momentum; as the paper and LibMTL, where they are model parameters); DWA's loss
  averages over ``epoch_steps`` steps (the paper's epoch). Call after ``c.optim`` is set."""
  if c.method.name == "uw":
    c.method.kwargs = ml_collections.ConfigDict(
        {"optimizer": c.optim.name, "lr": c.optim.lr, "momentum": c.optim.momentum})
  elif c.method.name == "dwa":
    c.method.kwargs = ml_collections.ConfigDict({"window": epoch_steps})
  return c


# ATTITTUD's comparison (Dery et al., ICLR 2021), shared by its experiments
# (configs/attittud_*.py): variant -> (phase-1 method, λ = (λ⊥, λ+, λ−) or None,
# main task only, fine-tune after pretraining).
ATTITTUD_VARIANTS = {
    STL: (STL, None, True, False),
    "pretrain_finetune": ("equal", None, False, True),
    "multitask": ("equal", None, False, False),
    "attittud_100": ("attittud", (1.0, 0.0, 0.0), False, True),
    "attittud_11m1": ("attittud", (1.0, 1.0, -1.0), False, True),
}


def attittud_protocol(c: ml_collections.ConfigDict, variant: str, *, batch: int,
                      baseline_lr: float = 1e-3, attittud_lr: float = 1e-4,
                      finetune_lr: float = 5e-5, finetune_steps: int = 5_000
                      ) -> ml_collections.ConfigDict:
  """Sets the method, data, schedule, selection and fine-tuning fields of an ATTITTUD
  ``variant`` (a key of `ATTITTUD_VARIANTS`) on a two-phase config (runner
  ``two_phase``).

  The original's hyper-parameters (ldery/ATTITTUD @ 1083ea7, its CheXpert command in
  README.md line 52, and ``algorithms/algos.py``): Adam, lr 1e-3 for the baselines and
  1e-4 for ATTITTUD, fine-tuning Adam 5e-5, clip 1; in both phases the lr halved when
  the monitor (dev) loss has not improved (relative 1e-4) for 4 evaluations, floor
  1e-5 (algos.py lines 113-115), and early stopping with the best-monitor-loss model
  after 10 evaluations without a lower monitor loss (lines 508-548; ``train.select =
  "neg_loss"``, ``train.patience``); basis k = 10 from ``batch`` (64) main-task
  examples, rebuilt every 10 steps, g* from 32 others drawn independently
  (``lowrank_nsamples``, ``main_draw="independent"``); the body gets
  the decomposed auxiliary gradient only (``body = "aux_only"``, the original's
  default run; ``"multitask"`` adds the main gradient with weights w/(1+w)).
  The original evaluates once per epoch; here every ``train.eval_every`` steps.
  """
  if variant not in ATTITTUD_VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; expected one of "
                     f"{tuple(ATTITTUD_VARIANTS)}")
  name, lambdas, primary_only, finetune = ATTITTUD_VARIANTS[variant]
  c.runner = "two_phase"
  c.variant = variant
  c.method = method(name, partition="global")  # the basis spans the whole backbone
  if name == "attittud":
    c.method.kwargs = ml_collections.ConfigDict({
        "num_basis": 10,      # k
        "nsamples": batch,    # main-task examples of the range finder (pca_nsamples)
        "main_samples": 32,   # main-task examples of g* (lowrank_nsamples)
        "main_draw": "independent",  # g*'s examples drawn apart from the basis's
        "pca_every": 10,      # steps between basis rebuilds
        "power_iters": 0,     # randomized subspace iterations (0: the original)
        "lambdas": lambdas,   # (λ⊥, λ+, λ−), the original's proj_lambda
        "body": "aux_only",   # aux_only (the original's run) | multitask | sum
        "primary_weight": 1.0,  # w of body=multitask
    })
  c.optim.lr = attittud_lr if name == "attittud" else baseline_lr
  c.optim.schedule = "plateau"  # ReduceLROnPlateau on the monitor loss
  c.optim.plateau = ml_collections.ConfigDict(
      {"metric": "loss", "factor": 0.5, "patience": 4, "min_lr": 1e-5, "rtol": 1e-4})
  c.train.select = "neg_loss"  # best checkpoint and early stopping: monitor loss
  c.data.kwargs.primary_only = primary_only
  # Phase 2: merged over phase 1's config, with method stl and primary_only data.
  c.finetune = ml_collections.ConfigDict({
      "enabled": finetune,
      "optim": {"name": "adam", "lr": finetune_lr, "schedule": "plateau",
                "weight_decay": 0.0, "num_steps": finetune_steps},
      "train": {"eval_every": 50, "patience": 10, "checkpoint_every": 1_000}})
  return c


# AuxiLearn task generation: a learned labeler, a fixed random one, the main task alone.
TASKGEN_VARIANTS = ("learned", "fixed", STL)


def taskgen_variant(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Sets the method of a task-generation ``variant`` (one of `TASKGEN_VARIANTS`):
  ``fixed`` keeps the random labeler (``method.kwargs.learn_labeler=False``), ``stl``
  trains the main task alone."""
  variant = variant or "learned"
  if variant not in TASKGEN_VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {TASKGEN_VARIANTS}")
  c.variant = variant
  if variant == STL:
    c.method = method(STL)
  else:
    c.method.kwargs.learn_labeler = variant == "learned"
  return c
