"""The one training loop: steps, evaluation, best-on-dev selection, checkpoints, resume.

`train_and_evaluate` drives any experiment (the `Experiment` protocol below): the
weighting experiments of `aux_jax.train.experiment` (every method, task generation
included) and AANG's (`aux_jax.aang.experiment`); ATTITTUD's two phases are two runs of
it (`aux_jax.train.two_phase`). Each iteration::

    state, metrics = experiment.lower_step(state)
    every `upper_every` steps (if the experiment has an upper level):
        state, upper_metrics = experiment.upper_step(state)
    every `train.eval_every` steps: dev metrics of experiment.model(state); a better
        `dev_<select>` than every earlier evaluation makes it the best-on-dev model
    every `train.checkpoint_every` steps: write the pending metric lines, then save
        the whole `LoopState` (experiment state, best model, best dev value, patience)

Workdir layout after a run::

    .lock                 held by the run's process 0 (`aux_jax.train.lock`)
    config.json           the resolved config, and its ``provenance``
    metrics.jsonl         one JSON object per logged step (train, dev, counters)
    tb/                   the same scalars as TensorBoard events (``train.writers``),
                          the plots as images, ``train.profile_steps``' trace
    checkpoints/          orbax checkpoints of the `LoopState` (for resuming)
    best/                 the best-on-dev model (written when the run ends)
    test_metrics.json     test metrics of the best-on-dev model, and the run summary
    *.png                 the experiment's plots (e.g. learned weights over training)

Preemption: a run killed at any moment (SIGKILL included) and started again with the
same command ends with the same ``metrics.jsonl`` and ``test_metrics.json`` (the
``train_seconds`` field aside) as an uninterrupted run. This holds because

* batches, augmentation and every key are functions of the step (or live in the
  state), so steps after a restore repeat exactly;
* the best-on-dev model lives *inside* the checkpointed `LoopState`: nothing about
  selection exists outside a checkpoint, so ``checkpoints/`` and ``best/`` cannot
  disagree (``best/`` is exported from the final state, idempotently);
* metric lines reach ``metrics.jsonl`` just before the checkpoint of their step is
  saved, and a restore drops lines after the restored step (atomically);
* the writers (TensorBoard, W&B; `aux_jax.train.writers`) get the metric lines when
  ``metrics.jsonl`` does; on resume TensorBoard's events are rewritten from the
  truncated ``metrics.jsonl``;
* SIGTERM or SIGINT checkpoints the step in progress (not only the periodic ones) and
  ends the run with `Interrupted`; multi-process runs agree on the step through
  orbax's ``reached_preemption`` (JAX's preemption notifier);
* orbax finalises a checkpoint by an atomic rename, so a half-written one is never
  restored; a finalised checkpoint that fails to restore (corrupt files) is reported,
  removed, and the previous one is used.

Divergence: every experiment's steps are guarded (`aux_jax.train.nonfinite`): a
non-finite loss or update of either level is never applied. The loop reads the guard
where it already reads the device (log, evaluation and checkpoint steps). With
``train.on_nonfinite="stop"`` (default) the first one ends the run; with "skip" more
than ``train.max_consecutive_nonfinite`` in a row do. Such a run saves no further
checkpoint and writes its summary with ``"status": "diverged"``, the step
(``diverged_step``), the quantity, the last checkpoint (all hold finite parameters:
``last_finite_checkpoint``) and a one-line ``diverged_message``; the launcher prints
that line on stderr and exits with status 3. A dev metric that is not finite is never
selected; a run without a finite dev evaluation selects no model and reports no test
metrics for one (``no_selected_model`` says why).

Config fields read (``config.train`` unless said otherwise): ``optim.num_steps``,
``log_every``, ``eval_every``, ``checkpoint_every``, ``keep_checkpoints`` (at least 2
keeps a fallback for a corrupt latest checkpoint), ``select`` (the dev metric, higher
is better; "" = the experiment's), ``select_ties`` ("first": a later evaluation
replaces the best model only if strictly better; "last": also if equal, as
AuxiLearn's ``>=``; compared in float32, the stored value's precision), ``patience``
(stop after this many evaluations without a replacement of the best model; 0 =
never), ``init_from`` (a finished run's workdir whose best model initialises this one,
or a checkpoint ``<workdir>/checkpoints/<step>`` of a run that wrote its summary (e.g.
the last finite checkpoint of a diverged run) whose state's model does, where the
experiment supports it), ``on_nonfinite`` and ``max_consecutive_nonfinite`` (above),
``writers``, ``wandb_project`` (`aux_jax.train.writers`), ``profile_steps``
("a,b": a `jax.profiler` trace of steps a..b into ``tb/``), ``track_test_max``
(also evaluate the test split at every evaluation and report the maximum
``test_<select>`` over them as ``test_<select>_max_over_epochs``: the figure the MAOAL
paper reports, an oracle that is logged only and never used for selection).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import threading
import time
from typing import Any, Callable, NamedTuple, Optional, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from aux_jax import provenance, registry, sharding
from aux_jax.train import nonfinite, writers

PyTree = Any

# config.runner -> "module:function" building the experiment, ``(config, workdir) -> Experiment``.
EXPERIMENTS = {
    "train": "aux_jax.train.experiment:experiment_from_config",
    "aang": "aux_jax.aang.experiment:experiment_from_config",
}

# Testing hook (`_failpoint`): "name@step" kills this process with SIGKILL there;
# "nan_loss@step" makes that step's loss NaN; "pause@step" waits after that step
# (before its checkpoint, if any) until the file $AUX_JAX_FAILPOINT_RELEASE exists or a
# SIGTERM/SIGINT arrives.
FAILPOINT_ENV = "AUX_JAX_FAILPOINT"
RELEASE_ENV = "AUX_JAX_FAILPOINT_RELEASE"


class Interrupted(Exception):
  """A run stopped by SIGTERM or SIGINT after saving a checkpoint of its step.

  Attributes:
    signum: the signal; step: the step saved (a rerun resumes from it).
  """

  def __init__(self, signum: int, step: int, workdir: str):
    self.signum, self.step = signum, step
    super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}: "
                     f"checkpoint saved in {workdir}; rerun the same command to resume")


class _Signals:
  """SIGTERM and SIGINT noted (not acted on) while the loop runs: the loop saves a
  checkpoint of the step in progress and raises `Interrupted`. A second signal of
  the same kind while saving acts as the default (e.g. a second Ctrl-C). In a
  multi-process run, SIGTERM is left to JAX's preemption notifier: orbax's
  ``reached_preemption(step)`` makes every process stop at the same step."""

  def __init__(self, multiprocess: bool):
    self.signum = None
    self._old = {}
    self._signals = (signal.SIGINT,) if multiprocess else (signal.SIGTERM, signal.SIGINT)

  def _handle(self, signum, frame):
    if self.signum is not None:  # a second signal: the default action
      signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
      os.kill(os.getpid(), signum)
      return
    self.signum = signum

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in self._signals:
        self._old[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, old in self._old.items():
      signal.signal(s, old)
    self._old = {}


class Experiment(Protocol):
  """What the loop needs from an experiment (a NamedTuple of functions, usually).

  Attributes:
    name: shown in progress lines; the summary's ``method``.
    select: the default dev metric for model selection (higher is better); the
      evaluation must return ``dev_<select>``.
    init: ``() -> state``, a NamedTuple with an ``i32[]`` field ``step`` and a
      `aux_jax.train.nonfinite.Guard` field ``guard``.
    lower_step: ``state -> (state, metrics)``, one jitted training step, guarded by
      `aux_jax.train.nonfinite.guarded` (level "lower").
    upper_step: ``state -> (state, metrics)`` every ``upper_every`` steps, or None;
      guarded (level "upper").
    upper_every: steps between upper steps.
    model: ``state -> model``, the part of the state that evaluation needs; it is
      what the loop keeps of the best-on-dev state.
    evaluate: ``(model, split) -> {f"{split}_<metric>": float}``, split "dev"/"test".
    counters: ``state -> {name: int}``, run-level counts (e.g. hypergradients
      applied) logged at every evaluation (as ``<name>_total``) and in the summary.
    info: static summary fields (e.g. the task names).
    finish: ``(workdir, metric records, summary) -> None``: plots, on process 0 only.
    init_from: ``(state, model, summary) -> state`` initialising from another run's
      best model and summary (``train.init_from``), or None if unsupported.
    mesh: the data-parallel mesh the state lives on (`aux_jax.sharding`), or None.
    on_evaluate: optional attribute, ``(state, dev metrics) -> state`` called after
      each dev evaluation (e.g. a learning rate lowered on a plateau), or None.
  """

  name: str
  select: str
  init: Callable[[], PyTree]
  lower_step: Callable[[PyTree], tuple[PyTree, dict]]
  upper_step: Optional[Callable[[PyTree], tuple[PyTree, dict]]]
  upper_every: int
  model: Callable[[PyTree], PyTree]
  evaluate: Callable[[PyTree, str], dict]
  counters: Callable[[PyTree], dict]
  info: dict
  finish: Optional[Callable[[str, list, dict], None]]
  init_from: Optional[Callable[[PyTree, PyTree, dict], PyTree]]
  mesh: Any


SELECT_TIES = ("first", "last")


def replaces_best(value, best, ties: str = "first") -> bool:
  """Whether a dev ``value`` replaces the ``best`` so far (both compared in float32,
  the precision of the checkpointed best): strictly greater, or also equal with
  ``ties="last"`` (the latest of equal scores kept, AuxiLearn's ``>=``)."""
  value, best = np.float32(value), np.float32(best)
  return bool(value > best or (ties == "last" and value == best))


class LoopState(NamedTuple):
  """Everything a checkpoint holds.

  Attributes:
    state: the experiment's state.
    best: ``experiment.model(state)`` at the best dev evaluation so far.
    best_dev: f32[], that evaluation's dev metric (−inf before the first).
    best_step: i32[], its step (0 before the first).
    stale: i32[], evaluations since the dev metric last improved.
    test_max: f32[], the largest ``test_<select>`` over the evaluations so far
      (``train.track_test_max``; −inf otherwise). An oracle, never used to select.
    test_max_step: i32[], its step.
  """

  state: PyTree
  best: PyTree
  best_dev: jax.Array
  best_step: jax.Array
  stale: jax.Array
  test_max: jax.Array
  test_max_step: jax.Array


def build_experiment(config: ml_collections.ConfigDict,
                     workdir: str | None = None) -> Experiment:
  """The experiment of ``config`` by its ``runner`` field (`EXPERIMENTS`; default
  "train"), with its data loaded; ``workdir`` is the run's (files it writes, e.g.
  AANG's from-scratch ``tokenizer.json``)."""
  runner = config.get("runner", "train")
  return registry.lookup(EXPERIMENTS, runner, "runner for the loop")(config, workdir)


def _failpoint_matches(name: str, step: int, workdir: str) -> bool:
  """Whether ``$AUX_JAX_FAILPOINT`` names this point (``name@step[@dir]``)."""
  spec = os.environ.get(FAILPOINT_ENV, "")
  if not spec:
    return False
  parts = spec.split("@")
  return (parts[0] == name and parts[1:2] == [str(step)]
          and (len(parts) < 3 or os.path.basename(os.path.normpath(workdir)) == parts[2]))


def _failpoint(name: str, step: int, workdir: str) -> None:
  """Kills this process with SIGKILL when ``$AUX_JAX_FAILPOINT`` names this point.

  A testing hook for preemption: the kill tests start the launcher with, e.g.,
  ``AUX_JAX_FAILPOINT=after_best@40`` and check that rerunning it ends as an
  uninterrupted run does. ``name@step`` matches in any run, ``name@step@dir`` only in
  a run whose workdir's last component is ``dir`` (e.g. ``finetune``, a phase of a
  two-phase run). Points: ``after_best`` (a new best-on-dev model was just recorded,
  before its checkpoint), ``mid_checkpoint`` (a checkpoint save was started and is not
  yet finalised). (``nan_loss@step`` is not a kill: the loop makes that step's loss
  NaN, `aux_jax.train.nonfinite`.)
  """
  if _failpoint_matches(name, step, workdir):
    os.kill(os.getpid(), signal.SIGKILL)


def _pause(step: int, workdir: str, signals: _Signals, progress) -> None:
  """``pause@step``: waits until ``$AUX_JAX_FAILPOINT_RELEASE`` exists or a signal
  was received (tests of the workdir lock and of SIGTERM)."""
  if not _failpoint_matches("pause", step, workdir):
    return
  progress(f"paused at step {step} (failpoint)")
  release = os.environ.get(RELEASE_ENV, "")
  while signals.signum is None and not (release and os.path.exists(release)):
    time.sleep(0.05)


def _hms(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def _profile_steps(tcfg) -> Optional[tuple[int, int]]:
  """``train.profile_steps`` "a,b" (or a pair): the first and last step traced."""
  spec = tcfg.get("profile_steps", "")
  if not spec:
    return None
  parts = spec.split(",") if isinstance(spec, str) else list(spec)
  try:
    a, b = (int(p) for p in parts)
  except ValueError:
    raise ValueError(f"train.profile_steps must be 'first,last' (steps, 1-based), got "
                     f"{spec!r}") from None
  if not 1 <= a <= b:
    raise ValueError(f"train.profile_steps={spec!r}: need 1 <= first <= last")
  return a, b


def _to_host(tree) -> dict:
  return jax.tree.map(lambda x: np.asarray(x).tolist(), jax.device_get(tree))


def _manager(path: str, max_to_keep: Optional[int]) -> ocp.CheckpointManager:
  # Multi-host: managers saving at once (checkpoints/, best/) need their own barriers.
  multiprocessing = ocp.options.MultiprocessingOptions(
      barrier_sync_key_prefix=os.path.basename(os.path.normpath(path)))
  return ocp.CheckpointManager(
      os.path.abspath(path),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
          multiprocessing_options=multiprocessing))


def _abstract(template):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, template)


def _remove_step(manager: ocp.CheckpointManager, step: int) -> None:
  try:
    manager.delete(step)
  except Exception:  # a corrupt step may not even delete cleanly
    path = os.path.join(str(manager.directory), str(step))
    if jax.process_index() == 0:
      shutil.rmtree(path, ignore_errors=True)
    manager.reload()


def restore_latest(manager: ocp.CheckpointManager, template: PyTree,
                   warn: Callable[[str], None]) -> Optional[PyTree]:
  """The newest checkpoint of ``manager`` that restores, or None if there is none.

  A checkpoint that fails to restore (corrupt or missing files) is reported through
  ``warn``, removed, and the next older one tried. Checkpoints newer than the one
  restored are removed too, so that the steps re-run after it can be saved again.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.StandardRestore(_abstract(template)))
    except Exception as e:  # noqa: BLE001 -- any failure means "unusable"
      warn(f"warning: checkpoint {step} in {manager.directory} cannot be restored "
           f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
           "removing it and trying the previous one")
      _remove_step(manager, step)
      continue
    return restored
  return None


def _truncate_metrics(path: str, upto_step: int) -> None:
  """Keeps the metric lines of steps <= ``upto_step`` (atomically; a torn last line
  from a killed write is dropped)."""
  if not os.path.exists(path):
    return
  kept = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if record["step"] <= upto_step:
        kept.append(json.dumps(record) + "\n")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(kept)
  os.replace(tmp, path)


def load_metrics(workdir: str) -> list[dict]:
  """The metric records of a run, in order."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f if l.strip()]


def load_best(workdir: str) -> tuple[PyTree, dict]:
  """A finished run's best-on-dev model (a raw pytree of arrays) and its summary.

  Raises:
    FileNotFoundError: ``workdir`` holds no finished run.
  """
  summary_path = os.path.join(workdir, "test_metrics.json")
  if not os.path.exists(summary_path):
    raise FileNotFoundError(f"{workdir!r} holds no finished run (no test_metrics.json)")
  with open(summary_path) as f:
    summary = json.load(f)
  with _manager(os.path.join(workdir, "best"), 1) as manager:
    if manager.latest_step() is None:
      raise FileNotFoundError(f"{workdir!r} has no best/ model")
    raw = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
  return raw, summary


def load_init(path: str, exp: Experiment, state: PyTree) -> tuple[PyTree, dict]:
  """The model and summary that ``train.init_from = path`` initialises a run from.

  Args:
    path: a finished run's workdir (its best-on-dev model, `load_best`), or one of a
      run's checkpoints ``<workdir>/checkpoints/<step>`` (the model of the
      experiment state saved there; the run must have written its summary, e.g. a
      run that diverged).
    exp: this run's experiment (its ``model`` reads the checkpoint's state).
    state: a state of this experiment (its type rebuilds the checkpoint's state).

  Raises:
    FileNotFoundError: nothing to initialise from at ``path``.
  """
  path = os.path.normpath(os.path.abspath(path))
  parent, name = os.path.split(path)
  if not (os.path.basename(parent) == "checkpoints" and name.isdigit()):
    return load_best(path)
  run = os.path.dirname(parent)
  summary_path = os.path.join(run, "test_metrics.json")
  if not os.path.exists(summary_path):
    raise FileNotFoundError(f"train.init_from={path!r}: {run!r} has no summary "
                            "(test_metrics.json), so its task names are unknown")
  with open(summary_path) as f:
    summary = json.load(f)
  # Read-only: the source run may still be writing (no cleanup of its temporaries).
  with ocp.CheckpointManager(parent, options=ocp.CheckpointManagerOptions(
      read_only=True, create=False)) as manager:
    if int(name) not in manager.all_steps():
      raise FileNotFoundError(f"train.init_from={path!r}: no such checkpoint (there are "
                              f"{sorted(manager.all_steps())})")
    raw = manager.restore(int(name), args=ocp.args.StandardRestore())
  saved = raw["state"]  # the LoopState's experiment state, as a dict
  return exp.model(type(state)(**{f: saved.get(f) for f in type(state)._fields})), summary


def _export_best(workdir: str, loop: LoopState, mesh) -> None:
  """Writes the best model to ``best/`` (idempotent: an existing export of the same
  step is kept; any other is replaced)."""
  step = int(loop.best_step)
  with _manager(os.path.join(workdir, "best"), 1) as best:
    if step in best.all_steps():
      return
    for old in best.all_steps():
      _remove_step(best, old)
    best.save(step, args=ocp.args.StandardSave(sharding.replicate(loop.best, mesh)),
              force=True)
    best.wait_until_finished()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       experiment: Optional[Experiment] = None,
                       progress: Callable[[str], None] = print) -> dict:
  """Trains, selects the best-on-dev model, tests it, and writes the workdir.

  Args:
    config: an experiment config (see `configs/`).
    workdir: output directory; an existing one with checkpoints is resumed.
    experiment: a prebuilt experiment (tests); `build_experiment(config, workdir)` if None.
    progress: receives one progress line per evaluation, and warnings.

  Returns:
    The summary (also ``test_metrics.json``): ``method``, ``select``, ``best_step``,
    ``best_dev_<select>``, the test metrics of the best-on-dev model,
    ``final_test_<select>`` (of the last state), the experiment's counters and info,
    ``train_seconds``, ``steps``.
  """
  os.makedirs(workdir, exist_ok=True)
  # Multi-host: every process runs the steps and saves the checkpoints (orbax,
  # collectively); only process 0 writes the logs, metrics and plots.
  lead = jax.process_index() == 0
  if not lead:
    progress = lambda _: None
  run_info = provenance.run_provenance()
  if lead:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump({**json.loads(config.to_json_best_effort()), "provenance": run_info},
                f, indent=2, sort_keys=True)
  exp = build_experiment(config, workdir) if experiment is None else experiment
  tcfg = config.train
  num_steps = int(config.optim.num_steps)
  select = tcfg.get("select", "") or exp.select
  patience = int(tcfg.get("patience", 0))
  ties = tcfg.get("select_ties", "first")
  if ties not in SELECT_TIES:
    raise ValueError(f"train.select_ties must be one of {SELECT_TIES}, got {ties!r}")
  dev_key = f"dev_{select}"
  track_test_max = bool(tcfg.get("track_test_max", False))
  test_key = f"test_{select}"
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  writer_names = tcfg.get("writers", ("tensorboard",)) or ()
  if isinstance(writer_names, str):  # "tensorboard,wandb" from a flag
    writer_names = [w for w in writer_names.split(",") if w]
  profile = _profile_steps(tcfg)

  def fresh() -> LoopState:
    state = exp.init()
    if tcfg.get("init_from", ""):
      if exp.init_from is None:
        raise ValueError(f"train.init_from is not supported by the "
                         f"{config.get('runner', 'train')!r} runner")
      state = exp.init_from(state, *load_init(tcfg.init_from, exp, state))
      progress(f"initialised from {tcfg.init_from}")
    best = jax.tree.map(jnp.copy, exp.model(state))
    return sharding.replicate(LoopState(
        state=state, best=best, best_dev=jnp.array(-jnp.inf, jnp.float32),
        best_step=jnp.zeros((), jnp.int32), stale=jnp.zeros((), jnp.int32),
        test_max=jnp.array(-jnp.inf, jnp.float32),
        test_max_step=jnp.zeros((), jnp.int32)), exp.mesh)

  ckpts = _manager(os.path.join(workdir, "checkpoints"),
                   max(int(tcfg.get("keep_checkpoints", 2)), 1))
  loop = fresh()
  restored = restore_latest(ckpts, loop, progress)
  if restored is not None:
    loop = restored
    if lead:
      _truncate_metrics(metrics_path, int(loop.state.step))
    progress(f"resumed from step {int(loop.state.step)}")
  elif lead and os.path.exists(metrics_path):
    os.remove(metrics_path)
  out = (writers.Writers(workdir, writer_names, config.to_dict(),
                         getattr(exp, "array_names", None),
                         tcfg.get("wandb_project", ""),
                         replay=load_metrics(workdir) if restored is not None
                         and os.path.exists(metrics_path) else ())
         if lead else None)

  def emit(mfile, records):  # metrics.jsonl and the writers, at the same moment
    for r in records:
      mfile.write(json.dumps(r) + "\n")
    mfile.flush()
    if out is not None:
      out.write(records)

  start, t0 = int(loop.state.step), time.time()
  warm = None  # (step, time) after the first step (compiled): steps/s from there
  pending: list[dict] = []
  stale = int(loop.stale)  # a host copy: reading the device value would sync every step
  stopped = None  # (step, quantity code) once the guard ends the run (divergence)
  counters = lambda state: {**exp.counters(state),
                            "nonfinite_skipped": int(state.guard.skipped)}
  multiprocess = jax.process_count() > 1
  tracing = False
  cleanup = contextlib.ExitStack()  # a trace in progress ends with the loop
  cleanup.callback(lambda: tracing and jax.profiler.stop_trace())
  last_line = None  # (step, time) of the previous progress line
  with (cleanup, open(metrics_path if lead else os.devnull, "a") as mfile,
        _Signals(multiprocess) as signals):
    for step in range(start, num_steps):
      if patience and stale >= patience:  # also when resuming a stopped run
        break
      done = step + 1
      if profile is not None and done == profile[0]:
        jax.profiler.start_trace(os.path.join(workdir, writers.TB_DIR))
        tracing = True
      if _failpoint_matches("nan_loss", done, workdir):
        loop = loop._replace(state=sharding.replicate(nonfinite.poison(loop.state),
                                                      exp.mesh))
      state, metrics = exp.lower_step(loop.state)
      if exp.upper_step is not None and done % exp.upper_every == 0:
        state, upper = exp.upper_step(state)
        metrics = {**metrics, **upper}
      loop = loop._replace(state=state)
      if tracing and done == profile[1]:
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        tracing = False
        progress(f"profile of steps {profile[0]}-{profile[1]} written to "
                 f"{os.path.join(workdir, writers.TB_DIR, 'plugins', 'profile')}")
      if warm is None and (exp.upper_step is None or done - start >= exp.upper_every
                           or done == num_steps):
        int(state.step)  # waits for the first steps (compiling both levels)
        warm = (done, time.time())
      log = done % tcfg.log_every == 0 or done == num_steps
      evaluate = done % tcfg.eval_every == 0 or done == num_steps
      save = done % tcfg.checkpoint_every == 0 or done == num_steps
      if log:
        pending.append({"step": done, **_to_host(metrics)})
      if (log or evaluate or save) and int(state.guard.stop_step):  # read here anyway
        stopped = (int(state.guard.stop_step), int(state.guard.stop_what))
        break  # before any evaluation or checkpoint of a diverged run
      if evaluate:
        t_eval = time.time()
        dev = exp.evaluate(exp.model(state), "dev")
        if last_line is None and warm is not None:  # its compilation is not a step's
          warm = (warm[0], warm[1] + time.time() - t_eval)
        if dev_key not in dev:
          raise ValueError(f"train.select={select!r}: no {dev_key!r} among the dev "
                           f"metrics {sorted(dev)}")
        if getattr(exp, "on_evaluate", None) is not None:  # e.g. lr on plateau
          state = exp.on_evaluate(state, dev)
          loop = loop._replace(state=state)
        record = pending.pop() if pending and pending[-1]["step"] == done else {
            "step": done, **_to_host(metrics)}
        record.update(dev)
        record.update({f"{k}_total": v for k, v in counters(state).items()})
        if track_test_max:  # the oracle figure: logged, never used for selection
          test_now = exp.evaluate(exp.model(state), "test")
          record.update(test_now)
          if test_now[test_key] > float(loop.test_max):
            loop = loop._replace(test_max=jnp.float32(test_now[test_key]),
                                 test_max_step=jnp.int32(done))
        pending.append(record)
        # A non-finite dev metric (NaN compares False anyway; +inf too) never selects.
        if (np.isfinite(dev[dev_key])
            and replaces_best(dev[dev_key], loop.best_dev, ties)):
          stale = 0
          loop = sharding.replicate(loop._replace(
              best=jax.tree.map(jnp.copy, exp.model(state)),
              best_dev=jnp.float32(dev[dev_key]), best_step=jnp.int32(done),
              stale=jnp.zeros((), jnp.int32)), exp.mesh)
          _failpoint("after_best", done, workdir)
        else:
          stale += 1
          loop = loop._replace(stale=jnp.int32(stale))
        # steps/s since the previous line (the first: since the compiled first step)
        now = time.time()
        since = last_line or warm
        rate = ((done - since[0]) / max(now - since[1], 1e-9)
                if since is not None and done > since[0] else None)
        last_line = (done, now)
        loss = next((f"{k} {record[k]:.4f}  " for k in ("loss_main", "loss")
                     if isinstance(record.get(k), float)), "")
        speed = ("" if rate is None else f"  {rate:.1f} steps/s  "
                 f"ETA {_hms((num_steps - done) / max(rate, 1e-9))}")
        progress(f"[{exp.name}] step {done}/{num_steps}  {loss}{dev_key} "
                 f"{dev[dev_key]:.4f}  best {float(loop.best_dev):.4f} "
                 f"(step {int(loop.best_step)})  "
                 f"elapsed {_hms(now - t0)}{speed}")
      stop = bool(patience) and stale >= patience
      if stop:
        progress(f"early stop at step {done}: no {dev_key} improvement in "
                 f"{patience} evaluations")
      _pause(done, workdir, signals, progress)
      # SIGTERM/SIGINT (multi-process: orbax's preemption sync, the same step on
      # every process): checkpoint this step, then stop.
      signum = signals.signum or (signal.SIGTERM if multiprocess
                                  and ckpts.reached_preemption(done) else None)
      if stop or save or signum is not None:
        if signum is not None and int(state.guard.stop_step):  # never save a NaN
          stopped = (int(state.guard.stop_step), int(state.guard.stop_what))
          break
        emit(mfile, pending)
        pending.clear()
        # Multi-host orbax saves global arrays only: replicate what the loop edited.
        ckpts.save(done, args=ocp.args.StandardSave(sharding.replicate(loop, exp.mesh)),
                   force=True)
        _failpoint("mid_checkpoint", done, workdir)
      if signum is not None:
        ckpts.wait_until_finished()
        ckpts.close()
        if out is not None:
          out.close()
        raise Interrupted(signum, done, workdir)
    if stopped is not None:  # the lines since the last checkpoint (a rerun drops them)
      emit(mfile, pending)
  ckpts.wait_until_finished()
  last_checkpoint = ckpts.latest_step()
  ckpts.close()

  selected = int(loop.best_step) > 0  # some evaluation had a finite dev metric
  if selected:
    _export_best(workdir, loop, exp.mesh)
  test = exp.evaluate(loop.best, "test") if selected else {}
  final_test = exp.evaluate(exp.model(loop.state), "test") if stopped is None else {}
  summary = {
      "method": exp.name,
      **exp.info,
      "select": select,
      "status": "completed" if stopped is None else "diverged",
      "best_step": int(loop.best_step) if selected else None,
      f"best_{dev_key}": float(loop.best_dev) if selected else None,
      **test,
      f"final_test_{select}": final_test.get(f"test_{select}"),
      **({f"{test_key}_max_over_epochs": float(loop.test_max),
          f"{test_key}_max_over_epochs_step": int(loop.test_max_step)}
         if track_test_max and np.isfinite(float(loop.test_max)) else
         {f"{test_key}_max_over_epochs": None} if track_test_max else {}),
      **counters(loop.state),
      "train_seconds": time.time() - t0,
      "steps": int(loop.state.step),
      "provenance": run_info,
  }
  if not selected:
    summary["no_selected_model"] = (
        f"no evaluation had a finite {dev_key}"
        + (" before the run diverged" if stopped is not None else "")
        + ": no model was selected, so no test metrics are reported for one")
  if stopped is not None:
    summary.update(_divergence(stopped, last_checkpoint, workdir, config))
  if lead:
    tmp = os.path.join(workdir, "test_metrics.json.tmp")
    with open(tmp, "w") as f:
      json.dump(summary, f, indent=2)
    os.replace(tmp, os.path.join(workdir, "test_metrics.json"))
    if exp.finish is not None:
      exp.finish(workdir, load_metrics(workdir), summary)
    out.images(int(loop.state.step), sorted(
        os.path.join(workdir, n) for n in os.listdir(workdir) if n.endswith(".png")))
    out.close()
  return summary


def _divergence(stopped: tuple[int, int], last_checkpoint: Optional[int], workdir: str,
                config: ml_collections.ConfigDict) -> dict:
  """The summary fields of a run the non-finite guard ended, its one-line message
  included (what the launcher prints on stderr)."""
  step, code = stopped
  quantity = nonfinite.describe(code)
  limit = nonfinite.limit_from_config(config)
  if limit == 0:
    what = (f"non-finite {quantity} at step {step} (train.on_nonfinite=stop; "
            "=skip skips such updates)")
  else:
    what = (f"more than {limit} non-finite updates in a row, the one past the limit a "
            f"non-finite {quantity} at step {step} (train.on_nonfinite=skip, "
            f"train.max_consecutive_nonfinite={limit})")
  path = (None if last_checkpoint is None else
          os.path.join(os.path.abspath(workdir), "checkpoints", str(last_checkpoint)))
  where = ("no checkpoint was saved before it; rerun with a smaller optim.lr"
           if path is None else
           f"last checkpoint with finite parameters: {path} (start a new run from it "
           f"with a smaller optim.lr: --config.train.init_from={path})")
  return {"diverged_step": step, "diverged_quantity": quantity,
          "last_finite_checkpoint": path, "diverged_message": f"diverged: {what}; {where}"}
