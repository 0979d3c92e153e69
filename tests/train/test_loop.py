"""The training loop on the embedded default: workdir contents, model selection on dev,
learned weights (harmful < helpful). Killed runs: tests/train/test_preemption.py."""

import json
import os

import numpy as np
import pytest

from aux_jax.data import get_dataset
from aux_jax.methods.maoal import module_names, weights_used
from aux_jax.train.experiment import build_experiment
from aux_jax.train.loop import load_metrics, train_and_evaluate
from configs import maoal_digits

STEPS = 100


def _config():
  c = maoal_digits.get_config()
  c.optim.num_steps = STEPS
  c.train.log_every = 10
  c.train.eval_every = 20
  c.train.checkpoint_every = 20
  return c


@pytest.fixture(scope="module")
def experiment():
  c = _config()
  return build_experiment(c, get_dataset(c.data.name))


@pytest.fixture(scope="module")
def full_run(experiment, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  lines = []
  summary = train_and_evaluate(_config(), workdir, experiment=experiment,
                               progress=lines.append)
  return workdir, summary, lines


def test_workdir_contents_and_dev_selection(full_run):
  workdir, summary, lines = full_run
  for name in ("config.json", "metrics.jsonl", "test_metrics.json", "weights.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  assert os.listdir(os.path.join(workdir, "best"))
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["method"]["name"] == "maoal"
  with open(os.path.join(workdir, "test_metrics.json")) as f:
    written = json.load(f)
  assert written.pop("task_names") == list(summary["task_names"])
  assert written.pop("provenance") == summary["provenance"]
  assert written == pytest.approx({k: v for k, v in summary.items()
                                   if k not in ("task_names", "provenance")})
  assert len(lines) == STEPS // 20 and "dev_neg_loss" in lines[-1]
  assert f"(step {summary['best_step']})" in lines[-1]  # the selected step, as it goes

  records = load_metrics(workdir)
  assert [r["step"] for r in records] == list(range(10, STEPS + 1, 10))
  evals = [r for r in records if "dev_accuracy" in r]
  dev = [r["dev_neg_loss"] for r in evals]
  # Model selection (the digits config: the dev loss): the first step with the best
  # dev score, never the test set.
  assert summary["best_step"] == evals[int(np.argmax(np.float32(dev)))]["step"]
  assert summary["best_dev_neg_loss"] == pytest.approx(max(dev))
  # train.track_test_max (on in the digits config): the original MAOAL's figure, the
  # max test score over evaluations, is logged beside best-on-dev, never selecting.
  test = [r["test_neg_loss"] for r in evals]
  assert summary["test_neg_loss_max_over_epochs"] == pytest.approx(max(test))
  assert summary["test_neg_loss_max_over_epochs_step"] == evals[int(np.argmax(test))]["step"]
  assert summary["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
  assert summary["hypergrad_applied"] + summary["hypergrad_skipped"] == STEPS // 10


def test_maoal_weights_the_harmful_task_below_every_helpful_one_in_every_module(
    full_run, experiment):
  # A property of the method on the README's problem (not a number): after a short
  # run, the random-label task's weight is the lowest in every module it acts on,
  # the main head included (aux_random and aux_digit are trained through it) — a
  # helpful task may reach 0 in a module too —, and its mean over the modules is
  # below every helpful task's.
  workdir, _, _ = full_run
  names = list(experiment.data.task_names[1:])
  omega = np.asarray(load_metrics(workdir)[-1]["weights"])  # [K, M + 1]
  heads = experiment.problem.spec.heads
  modules = module_names(experiment.partition, len(names) + 1, heads)
  assert omega.shape == (len(names), len(modules)) and modules[-1] == "main_head"
  used = weights_used(experiment.partition, len(names) + 1, heads)
  harmful = names.index("aux_random")
  for m, module in enumerate(modules):
    helpful = [omega[k, m] for k in range(len(names)) if k != harmful and used[k, m]]
    assert omega[harmful, m] <= min(helpful), (module, names, omega)
  mean = [omega[k][used[k]].mean() for k in range(len(names))]
  assert all(mean[harmful] < mean[k] - 0.05 for k in range(len(names)) if k != harmful)


def _scripted_run(tmp_path, dev_scores, ties, patience=0):
  """The loop over a scripted experiment: dev score ``dev_scores[i]`` at evaluation
  i (every step), test score = the evaluated step."""
  import jax.numpy as jnp
  import ml_collections
  from aux_jax.train.loop import Experiment  # noqa: F401 (the protocol it follows)
  from typing import NamedTuple

  from aux_jax.train import nonfinite

  class State(NamedTuple):  # the protocol's step and non-finite guard
    step: object
    guard: object = nonfinite.init()

  class Scripted(NamedTuple):
    name: str = "scripted"
    select: str = "score"
    init: object = lambda: State(jnp.zeros((), jnp.int32))
    lower_step: object = lambda s: (State(s.step + 1, s.guard), {"loss": 0.0})
    upper_step: object = None
    upper_every: int = 1
    model: object = lambda s: {"step": s.step}
    evaluate: object = None
    counters: object = lambda s: {}
    info: dict = {}
    finish: object = None
    init_from: object = None
    mesh: object = None

  def evaluate(model, split):
    i = int(model["step"])
    return {"dev_score": dev_scores[i - 1]} if split == "dev" else {"test_score": i}

  c = ml_collections.ConfigDict({
      "optim": {"num_steps": len(dev_scores)},
      "train": {"log_every": 1, "eval_every": 1, "checkpoint_every": 100,
                "keep_checkpoints": 1, "select": "", "patience": patience,
                "select_ties": ties}})
  return train_and_evaluate(c, str(tmp_path / ties), experiment=Scripted(evaluate=evaluate))


def test_select_ties_first_or_last_of_equal_dev_scores(tmp_path):
  """train.select_ties: "first" keeps the earliest of equal best dev scores, "last"
  the latest (AuxiLearn's >=); nothing else changes (same best value, a strictly
  better score wins either way)."""
  scores = [0.2, 0.5, 0.3, 0.5, 0.1, 0.5, 0.4]     # best 0.5 at evaluations 2, 4, 6
  first, last = (_scripted_run(tmp_path, scores, t) for t in ("first", "last"))
  assert (first["best_step"], first["test_score"]) == (2, 2)
  assert (last["best_step"], last["test_score"]) == (6, 6)
  assert first["best_dev_score"] == last["best_dev_score"] == pytest.approx(0.5)
  # float32 ties: 0.1 + 0.2 and 0.3 differ in float64, not in the stored float32.
  assert _scripted_run(tmp_path / "f", [0.3, 0.1 + 0.2], "last")["best_step"] == 2
  up = [0.1, 0.2, 0.3]
  assert _scripted_run(tmp_path / "u", up, "first")["best_step"] == 3
  assert _scripted_run(tmp_path / "v", up, "last")["best_step"] == 3
  # Patience counts evaluations since the best was last replaced (a tie replaces it
  # under "last": the original's "stop when the last N are all below the max").
  flat = [0.5, 0.5, 0.5, 0.5]
  assert _scripted_run(tmp_path / "p", flat, "first", patience=2)["steps"] == 3
  assert _scripted_run(tmp_path / "q", flat, "last", patience=2)["steps"] == 4
  with pytest.raises(ValueError, match="select_ties"):
    _scripted_run(tmp_path / "x", flat, "middle")
