"""The training loop: steps, evaluation, checkpoints, metrics and plots in a workdir.

Workdir layout after a run::

    config.json           the resolved config
    metrics.jsonl         one JSON object per logged step (train, dev, weights)
    checkpoints/          orbax checkpoints of the whole `TrainState` (for resuming)
    best/                 the checkpoint with the best dev metric (model selection;
                          `config.train.select`, default the problem's: accuracy,
                          neg_mse, miou, ...)
    test_metrics.json     test metrics of the best-on-dev checkpoint, and the run summary
    weights.png           heatmap of the learned auxiliary weights over training

A killed run restarted with the same workdir resumes from its last checkpoint and
ends at the same result as an uninterrupted run (batches and keys are functions of
the step; see `aux_jax.train.experiment`).

Optional `config.train` fields: ``select`` (the dev metric, higher is better),
``patience`` (stop after this many evaluations without improvement; 0 = never),
``init_from`` (a finished run's workdir: its best checkpoint initialises the backbone,
BatchNorm statistics, and the heads of tasks of the same name — ATTITTUD's fine-tuning).
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from aux_jax import plots
from aux_jax.data import get_dataset
from aux_jax.train import sharding
from aux_jax.train.experiment import Experiment, TrainState, build_experiment


def _to_host(tree) -> dict:
  return {k: np.asarray(v).tolist() for k, v in jax.device_get(tree).items()}


def _manager(path: str, max_to_keep: int) -> ocp.CheckpointManager:
  # Multi-host: managers saving the same step at once (checkpoints/, best/) need
  # their own barrier names.
  multiprocessing = ocp.options.MultiprocessingOptions(
      barrier_sync_key_prefix=os.path.basename(os.path.normpath(path)))
  return ocp.CheckpointManager(
      os.path.abspath(path),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           multiprocessing_options=multiprocessing))


def _restore(manager: ocp.CheckpointManager, template: TrainState,
             step: Optional[int] = None) -> TrainState:
  step = manager.latest_step() if step is None else step
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def _rewrite_metrics(path: str, upto_step: int) -> None:
  """On resume, drop metric lines written after the checkpoint we resume from."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f if l.strip() and json.loads(l)["step"] <= upto_step]
  with open(path, "w") as f:
    f.writelines(lines)


def _restore_raw(path: str):
  """A finished run's best checkpoint as a raw pytree, and its summary."""
  with open(os.path.join(path, "test_metrics.json")) as f:
    summary = json.load(f)
  with _manager(os.path.join(path, "best"), 1) as manager:
    if manager.latest_step() is None:
      raise FileNotFoundError(f"train.init_from={path!r} has no best/ checkpoint")
    raw = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
  return raw, summary


def initialize_from(state: TrainState, path: str, task_names) -> TrainState:
  """``state`` with the backbone, BatchNorm statistics and same-named task heads of the
  best checkpoint in workdir ``path`` (head rows: the first `C_max` outputs).

  Raises:
    ValueError: the backbones differ in structure or shapes.
  """
  raw, summary = _restore_raw(path)
  params, stats = raw["params"], raw["batch_stats"]
  src = jax.tree.map(jnp.asarray, params["backbone"])
  dst = state.params["backbone"]
  if (jax.tree.structure(src) != jax.tree.structure(dst)
      or jax.tree.map(jnp.shape, src) != jax.tree.map(jnp.shape, dst)):
    raise ValueError(f"train.init_from={path!r}: its backbone differs from this model's")
  heads = dict(state.params["heads"])
  src_names = list(summary.get("task_names", []))
  for t, name in enumerate(task_names):
    if name in src_names:
      s = src_names.index(name)
      for k in heads:
        row = jnp.asarray(params["heads"][k])[s]
        width = min(row.shape[-1], heads[k].shape[-1])
        heads[k] = heads[k].at[t, ..., :width].set(row[..., :width])
  new_params = {"backbone": src, "heads": heads}
  return state._replace(
      params=new_params,
      batch_stats=jax.tree.map(jnp.asarray, stats) if state.batch_stats else state.batch_stats)


def load_metrics(workdir: str) -> list[dict]:
  """The metric records of a run, in order."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f if l.strip()]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       experiment: Optional[Experiment] = None,
                       progress: Callable[[str], None] = print) -> dict:
  """Trains, selects the best-on-dev checkpoint, tests it, and writes the workdir.

  Args:
    config: an experiment config (see `configs/`).
    workdir: output directory; an existing one with checkpoints is resumed.
    experiment: a prebuilt experiment (tests); built from ``config`` if None.
    progress: receives one progress line per evaluation.

  Returns:
    A summary dict: final test metrics of the best-on-dev checkpoint, best dev
    accuracy, skipped hypergradients, wall time.
  """
  os.makedirs(workdir, exist_ok=True)
  # Multi-host: every process runs the steps and saves the checkpoints (orbax,
  # collectively); only process 0 writes the logs, metrics and plots.
  lead = jax.process_index() == 0
  if not lead:
    progress = lambda _: None
  if lead:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  if experiment is None:
    data = get_dataset(config.data.name, **dict(config.data.get("kwargs", {})))
    experiment = build_experiment(config, data)
  exp, tcfg = experiment, config.train
  method = exp.method
  num_steps = config.optim.num_steps
  interval = config.hyper.interval
  select = tcfg.get("select", "") or exp.problem.select
  patience = tcfg.get("patience", 0)
  dev_key = f"dev_{select}"

  ckpts = _manager(os.path.join(workdir, "checkpoints"), tcfg.keep_checkpoints)
  best = _manager(os.path.join(workdir, "best"), 1)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  state = exp.init()
  if ckpts.latest_step() is not None:
    state = _restore(ckpts, state)
    if lead:
      _rewrite_metrics(metrics_path, int(state.step))
    progress(f"resumed from step {int(state.step)}")
  else:
    if lead and os.path.exists(metrics_path):
      os.remove(metrics_path)
    if tcfg.get("init_from", ""):
      state = initialize_from(state, tcfg.init_from, exp.problem.task_names)
      state = state._replace(opt_state=exp.init().opt_state)
      progress(f"initialised from {tcfg.init_from}")

  start, t0 = int(state.step), time.time()
  pending: list[dict] = []
  with open(metrics_path if lead else os.devnull, "a") as mfile:
    for step in range(start, num_steps):
      if patience and int(state.stale) >= patience:  # also when resuming a stopped run
        break
      state, metrics = exp.lower_step(state)
      if method.learnable and (step + 1) % interval == 0:
        state, upper = exp.upper_step(state)
        metrics = {**metrics, **upper}
      done = step + 1
      if done % tcfg.log_every == 0 or done == num_steps:
        pending.append({"step": done, **_to_host(metrics)})
      if done % tcfg.eval_every == 0 or done == num_steps:
        dev = exp.evaluate(state, "dev")
        record = pending.pop() if pending and pending[-1]["step"] == done else {
            "step": done, **_to_host(metrics)}
        record.update(dev)
        if method.learnable:
          record["hypergrad_skipped_total"] = int(state.meta_state.num_skipped)
        pending.append(record)
        if dev_key not in dev:
          raise ValueError(f"train.select={select!r}: no {dev_key!r} among the dev "
                           f"metrics {sorted(dev)}")
        if dev[dev_key] > float(state.best_dev):
          state = state._replace(best_dev=jnp.float32(dev[dev_key]),
                                 stale=jnp.zeros((), jnp.int32))
          best.save(done, args=ocp.args.StandardSave(sharding.replicate(state, exp.mesh)),
                    force=True)
        else:
          state = state._replace(stale=state.stale + 1)
        rate = (done - start) / max(time.time() - t0, 1e-9)
        progress(f"[{method.name}] step {done}/{num_steps}  "
                 f"loss_main {record['loss_main']:.4f}  {dev_key} {dev[dev_key]:.4f}  "
                 f"best {float(state.best_dev):.4f}  {rate:.1f} steps/s")
      stop = bool(patience) and int(state.stale) >= patience
      if stop:
        progress(f"early stop at step {done}: no {dev_key} improvement in "
                 f"{patience} evaluations")
      if stop or done % tcfg.checkpoint_every == 0 or done == num_steps:
        for r in pending:
          mfile.write(json.dumps(r) + "\n")
        pending.clear()
        mfile.flush()
        # Multi-host orbax saves global arrays only: replicate what the loop edited.
        ckpts.save(done, args=ocp.args.StandardSave(sharding.replicate(state, exp.mesh)),
                   force=True)
  ckpts.wait_until_finished()
  best.wait_until_finished()

  final = state
  best_state = _restore(best, final) if best.latest_step() is not None else final
  test = exp.evaluate(best_state, "test")
  final_test = exp.evaluate(final, "test")
  summary = {
      "method": method.name,
      "task_names": list(exp.problem.task_names),
      "select": select,
      "best_step": best.latest_step(),
      f"best_{dev_key}": float(final.best_dev),
      **test,
      f"final_test_{select}": final_test[f"test_{select}"],
      "hypergrad_skipped": int(final.meta_state.num_skipped),
      "hypergrad_applied": int(final.meta_state.num_updates),
      "train_seconds": time.time() - t0,
      "steps": int(final.step),
  }
  if lead:
    with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
      json.dump(summary, f, indent=2)
    plots.weights_heatmap(load_metrics(workdir), os.path.join(workdir, "weights.png"),
                          task_names=exp.problem.task_names[1:],
                          module_names=exp.partition.module_names,
                          title=f"{method.name}: learned auxiliary weights")
  ckpts.close()
  best.close()
  return summary
