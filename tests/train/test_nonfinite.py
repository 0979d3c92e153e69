"""A run that diverges says so: the non-finite guard (aux_jax/train/nonfinite.py), the
loop's "stop" and "skip" modes on a NaN injected by the ``nan_loss@N`` failpoint, a
diverged run's last checkpoint as ``train.init_from``, and selection never picking a
non-finite dev metric."""

import json
import os
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aux_jax.train import loop, nonfinite
from aux_jax.train.experiment import experiment_from_config
from configs import common
from experiments import train as launcher
from experiments.report import load_config_module

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(ROOT, "tests", "train", "tiny_configs.py")
NAN_STEP = 10  # tiny configs: checkpoints every 8 steps, logs every 2, evaluations every 4


# ---- the guard on a toy step: y = p·x, loss (y − 1)², SGD ------------------------------


class Toy(NamedTuple):
  step: jax.Array
  p: jax.Array
  best: jax.Array  # an unchanged +inf sentinel (as the plateau rule's) is no divergence
  guard: nonfinite.Guard


def _toy_step(state, x):
  loss, g = jax.value_and_grad(lambda p: (p * x - 1.0) ** 2)(state.p)
  return state._replace(step=state.step + 1, p=state.p - 0.1 * g), {"loss": loss}


def test_guard_skips_counts_and_records_the_step_past_the_limit():
  step = jax.jit(nonfinite.guarded(_toy_step, "lower", limit=2))
  upper = jax.jit(nonfinite.guarded(lambda s: (s._replace(p=s.p * jnp.nan), {}), "upper", 2))
  state = Toy(jnp.int32(0), jnp.float32(0.5), jnp.float32(jnp.inf), nonfinite.init())
  state, m = step(state, 1.0)
  assert float(state.p) == pytest.approx(0.5 - 0.1 * 2 * (0.5 - 1.0))  # applied
  assert int(m["nonfinite_skipped"]) == 0 and int(state.guard.skipped) == 0
  kept = float(state.p)
  state, m = step(state, jnp.inf)  # loss and update non-finite: kept, step advanced
  assert float(state.p) == kept and int(state.step) == 2
  assert int(m["nonfinite_skipped"]) == 1 and int(state.guard.consecutive) == 1
  state, m = upper(state)  # an upper-level update: skipped, counted, no reset
  assert float(state.p) == kept and int(state.guard.consecutive) == 2
  assert int(state.guard.stop_step) == 0  # 2 in a row: not more than the limit
  state, _ = step(state, jnp.nan)  # the third in a row, at step 3
  assert float(state.p) == kept and int(state.guard.skipped) == 3
  assert int(state.guard.stop_step) == 3
  assert nonfinite.describe(int(state.guard.stop_what)) == "lower-level loss"
  state, _ = step(state, 1.0)  # applied: the run of skips ends, the record stays
  assert float(state.p) != kept and int(state.guard.consecutive) == 0
  assert int(state.guard.stop_step) == 3


def test_stop_mode_records_the_first_non_finite_step_and_poison_is_one_step():
  step = jax.jit(nonfinite.guarded(_toy_step, "lower", limit=0))
  state = Toy(jnp.int32(0), jnp.float32(0.5), jnp.float32(jnp.inf), nonfinite.init())
  state, _ = step(state, 1.0)
  state, m = step(nonfinite.poison(state), 1.0)  # the nan_loss failpoint's NaN
  assert np.isnan(float(m["loss"])) and int(state.guard.stop_step) == 2
  assert float(state.guard.poison) == 0.0
  state, m = step(state, 1.0)
  assert np.isfinite(float(m["loss"])) and int(state.guard.skipped) == 1


def test_on_nonfinite_is_validated():
  c = load_config_module(CONFIGS).get_config("maoal")
  assert nonfinite.limit_from_config(c) == 0  # the default is "stop"
  c.train.on_nonfinite = "skip"
  assert nonfinite.limit_from_config(c) == c.train.max_consecutive_nonfinite == 10
  c.train.on_nonfinite = "ignore"
  with pytest.raises(ValueError, match="on_nonfinite"):
    nonfinite.limit_from_config(c)


# ---- the loop -------------------------------------------------------------------------


def _config(method: str = "maoal", **train):
  c = load_config_module(CONFIGS).get_config("maoal")
  if method != "maoal":
    c.method = common.method(method)
  c.train.update(train)
  return c


def test_stop_exits_3_with_one_line_and_its_last_checkpoint_starts_a_new_run(tmp_path):
  workdir = str(tmp_path / "diverged")
  env = {k: v for k, v in os.environ.items() if k != loop.FAILPOINT_ENV}
  env.update({"JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
              loop.FAILPOINT_ENV: f"nan_loss@{NAN_STEP}"})
  out = subprocess.run([sys.executable, "-m", "experiments.train",
                        f"--config={CONFIGS}:maoal", f"--workdir={workdir}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == launcher.DIVERGED_STATUS == 3, out.stderr[-3000:]
  lines = [l for l in out.stderr.splitlines() if l.startswith("diverged:")]
  last = os.path.join(workdir, "checkpoints", "8")
  assert len(lines) == 1 and f"at step {NAN_STEP}" in lines[0], out.stderr[-3000:]
  assert "loss_main" in lines[0] and f"init_from={last}" in lines[0]
  with open(os.path.join(workdir, "test_metrics.json")) as f:
    summary = json.load(f)
  assert summary["status"] == "diverged" and summary["diverged_step"] == NAN_STEP
  assert summary["diverged_message"] == lines[0]
  assert summary["last_finite_checkpoint"] == last
  # A model from an evaluation before the NaN (steps 4 and 8) is selected and tested.
  assert summary["best_step"] in (4, 8) and "test_accuracy" in summary
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["8"]  # none after the NaN
  records = loop.load_metrics(workdir)  # the NaN step's line is kept, nothing after it
  assert records[-1]["step"] == NAN_STEP and np.isnan(records[-1]["loss_main"])

  # The checkpoint loads and starts a new run with a smaller learning rate.
  config = _config("maoal", init_from=last)
  config.optim.lr, config.optim.num_steps = 0.01, 4
  exp = experiment_from_config(config)
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints")) as manager:
    raw = manager.restore(8, args=ocp.args.StandardRestore())
  model, _ = loop.load_init(last, exp, exp.init())
  for got, want in zip(jax.tree.leaves(model["params"]),
                       jax.tree.leaves(raw["state"]["params"])):
    np.testing.assert_array_equal(got, want)
    assert np.all(np.isfinite(want))
  progress = []
  resumed = loop.train_and_evaluate(config, str(tmp_path / "smaller_lr"), experiment=exp,
                                    progress=progress.append)
  assert f"initialised from {last}" in progress
  assert resumed["status"] == "completed" and resumed["nonfinite_skipped"] == 0


def test_skip_mode_equals_a_run_without_that_update(tmp_path, monkeypatch):
  config = _config("maoal", on_nonfinite="skip")
  exp = experiment_from_config(config)
  monkeypatch.setenv(loop.FAILPOINT_ENV, f"nan_loss@{NAN_STEP}")
  summary = loop.train_and_evaluate(config, str(tmp_path / "skip"), experiment=exp,
                                    progress=lambda _: None)
  monkeypatch.delenv(loop.FAILPOINT_ENV)
  assert summary["status"] == "completed" and summary["nonfinite_skipped"] == 1
  records = loop.load_metrics(str(tmp_path / "skip"))
  assert [r["step"] for r in records if r["nonfinite_skipped"]] == [NAN_STEP]
  assert records[-1]["nonfinite_skipped_total"] == 1

  # The reference: the same steps, update NAN_STEP not applied (its step number taken).
  state = exp.init()
  for done in range(1, config.optim.num_steps + 1):
    if done == NAN_STEP:
      state = state._replace(step=state.step + 1)
    else:
      state, _ = exp.lower_step(state)
    if done % exp.upper_every == 0:
      state, _ = exp.upper_step(state)
  with ocp.CheckpointManager(str(tmp_path / "skip" / "checkpoints")) as manager:
    final = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
  for got, want in zip(jax.tree.leaves(final["state"]["params"]),
                       jax.tree.leaves(state.params)):
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(final["state"]["method"]["phi"], state.method.phi)
  assert summary["final_test_accuracy"] == exp.evaluate(exp.model(state), "test")[
      "test_accuracy"]


def test_a_non_finite_dev_metric_is_never_selected(tmp_path):
  config = _config("equal")
  exp = experiment_from_config(config)

  def scripted(values):
    dev = iter(values)

    def evaluate(model, split):
      out = exp.evaluate(model, split)
      return {**out, "dev_accuracy": next(dev)} if split == "dev" else out

    return exp._replace(evaluate=evaluate)

  # Evaluations at steps 4, 8, ..., 24: the best finite one is at step 16.
  values = [np.nan, 0.3, np.inf, 0.5, np.nan, 0.4]
  summary = loop.train_and_evaluate(config, str(tmp_path / "mixed"),
                                    experiment=scripted(values), progress=lambda _: None)
  assert summary["best_step"] == 16 and summary["best_dev_accuracy"] == 0.5
  assert "test_accuracy" in summary and "no_selected_model" not in summary

  workdir = str(tmp_path / "never")
  summary = loop.train_and_evaluate(config, workdir, experiment=scripted([np.nan] * 6),
                                    progress=lambda _: None)
  assert summary["best_step"] is None and summary["best_dev_accuracy"] is None
  assert "test_accuracy" not in summary and "no evaluation had a finite dev_accuracy" in summary[
      "no_selected_model"]
  assert summary["status"] == "completed" and not os.path.exists(os.path.join(workdir, "best"))
