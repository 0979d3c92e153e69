"""The training loop: steps, evaluation, checkpoints, metrics and plots in a workdir.

Workdir layout after a run::

    config.json           the resolved config
    metrics.jsonl         one JSON object per logged step (train, dev, weights)
    checkpoints/          orbax checkpoints of the whole `TrainState` (for resuming)
    best/                 the checkpoint with the best dev accuracy (model selection)
    test_metrics.json     main-task test metrics of the best-on-dev checkpoint
    weights.png           heatmap of the learned auxiliary weights over training

A killed run restarted with the same workdir resumes from its last checkpoint and
ends at the same result as an uninterrupted run (batches and keys are functions of
the step; see `aux_jax.train.experiment`).
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
from aux_jax.train.experiment import Experiment, TrainState, build_experiment


def _to_host(tree) -> dict:
  return {k: np.asarray(v).tolist() for k, v in jax.device_get(tree).items()}


def _manager(path: str, max_to_keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(path),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


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
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  if experiment is None:
    data = get_dataset(config.data.name, **dict(config.data.get("kwargs", {})))
    experiment = build_experiment(config, data)
  exp, tcfg = experiment, config.train
  method = exp.method
  num_steps = config.optim.num_steps
  interval = config.hyper.interval

  ckpts = _manager(os.path.join(workdir, "checkpoints"), tcfg.keep_checkpoints)
  best = _manager(os.path.join(workdir, "best"), 1)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  state = exp.init()
  if ckpts.latest_step() is not None:
    state = _restore(ckpts, state)
    _rewrite_metrics(metrics_path, int(state.step))
    progress(f"resumed from step {int(state.step)}")
  elif os.path.exists(metrics_path):
    os.remove(metrics_path)

  start, t0 = int(state.step), time.time()
  pending: list[dict] = []
  with open(metrics_path, "a") as mfile:
    for step in range(start, num_steps):
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
        if dev["dev_accuracy"] > float(state.best_dev):
          state = state._replace(best_dev=jnp.float32(dev["dev_accuracy"]))
          best.save(done, args=ocp.args.StandardSave(state), force=True)
        rate = (done - start) / max(time.time() - t0, 1e-9)
        progress(f"[{method.name}] step {done}/{num_steps}  "
                 f"loss_main {record['loss_main']:.4f}  dev_acc {dev['dev_accuracy']:.4f}  "
                 f"best {float(state.best_dev):.4f}  {rate:.1f} steps/s")
      if done % tcfg.checkpoint_every == 0 or done == num_steps:
        for r in pending:
          mfile.write(json.dumps(r) + "\n")
        pending.clear()
        mfile.flush()
        ckpts.save(done, args=ocp.args.StandardSave(state), force=True)
  ckpts.wait_until_finished()
  best.wait_until_finished()

  final = state
  best_state = _restore(best, final) if best.latest_step() is not None else final
  test = exp.evaluate(best_state, "test")
  summary = {
      "method": method.name,
      "best_step": best.latest_step(),
      "best_dev_accuracy": float(final.best_dev),
      **test,
      "final_test_accuracy": exp.evaluate(final, "test")["test_accuracy"],
      "hypergrad_skipped": int(final.meta_state.num_skipped),
      "hypergrad_applied": int(final.meta_state.num_updates),
      "train_seconds": time.time() - t0,
      "steps": num_steps,
  }
  with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
    json.dump(summary, f, indent=2)
  plots.weights_heatmap(load_metrics(workdir), os.path.join(workdir, "weights.png"),
                        task_names=exp.data.task_names[1:],
                        module_names=exp.partition.module_names,
                        title=f"{method.name}: learned auxiliary weights")
  ckpts.close()
  best.close()
  return summary
