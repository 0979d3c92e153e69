"""Preemption: a run killed with SIGKILL at any moment and started again with the same
command ends exactly as an uninterrupted run, for every runner; a corrupt latest
checkpoint is skipped with a warning."""

import json
import os
import signal
import subprocess
import sys

import pytest

from aux_jax.train import lock, loop, writers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(ROOT, "tests", "train", "tiny_configs.py")
# Checkpoints every 8 steps and evaluations every 4 (tiny_configs): "after_best@4"
# dies after the first best-on-dev model, before any checkpoint exists (the case that
# used to leave best/ ahead of checkpoints/); "mid_checkpoint@16" dies with the step-16
# checkpoint being written.
KILLS = {
    "maoal": ("after_best@4", "mid_checkpoint@16"),
    "taskgen": ("after_best@4", "mid_checkpoint@16"),
    # Pretraining dies after its first best model; fine-tuning dies mid-checkpoint.
    "two_phase": ("after_best@4@pretrain", "mid_checkpoint@8@finetune"),
}


def _launch(case: str, workdir: str, failpoint: str = "") -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != loop.FAILPOINT_ENV}
  env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  if failpoint:
    env[loop.FAILPOINT_ENV] = failpoint
  cmd = [sys.executable, "-m", "experiments.train", f"--config={CONFIGS}:{case}",
         f"--workdir={workdir}"]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)


def _without_seconds(tree):
  """Without what differs between two runs of one config: wall times, provenance (the
  command names the workdir, the date)."""
  if isinstance(tree, dict):
    return {k: _without_seconds(v) for k, v in tree.items()
            if k not in ("train_seconds", "provenance")}
  return tree


def _outputs(workdir: str, case: str) -> dict:
  """What must not depend on interruptions: metrics and summaries of every phase."""
  runs = ([os.path.join(workdir, p) for p in ("pretrain", "finetune")]
          if case == "two_phase" else [workdir])
  out = {}
  for run in runs:
    with open(os.path.join(run, "test_metrics.json")) as f:
      out[run[len(workdir):] + "/test_metrics"] = _without_seconds(json.load(f))
    out[run[len(workdir):] + "/metrics"] = loop.load_metrics(run)
    out[run[len(workdir):] + "/best"] = sorted(os.listdir(os.path.join(run, "best")))
    # TensorBoard (its own reader) holds every scalar of metrics.jsonl, each step once.
    out[run[len(workdir):] + "/tb"] = writers.read_scalars(os.path.join(run, "tb"))
    assert out[run[len(workdir):] + "/tb"] == writers.expected_scalars(
        out[run[len(workdir):] + "/metrics"], _array_names(case))
  if case == "two_phase":
    with open(os.path.join(workdir, "summary.json")) as f:
      summary = json.load(f)
    assert summary["provenance"]["versions"]["jax"]
    out["summary"] = _without_seconds(summary)
  return out


def _array_names(case: str) -> dict:
  """The names of the logged weights' axes in TensorBoard's tags (the tiny configs'
  auxiliary tasks; MAOAL's modules of small_cnn)."""
  aux = ("aux_digit", "aux_parity", "aux_ge5", "aux_random")
  return {"weights": {"maoal": (aux, ("block1", "block2", "dense")),
                      "taskgen": (("subclasses",),), "two_phase": (aux,)}[case]}


@pytest.mark.parametrize("case", sorted(KILLS))
def test_killed_twice_then_rerun_ends_as_an_uninterrupted_run(case, tmp_path):
  reference = str(tmp_path / "reference")
  done = _launch(case, reference)
  assert done.returncode == 0, done.stderr[-3000:]

  workdir = str(tmp_path / "killed")
  for failpoint in KILLS[case]:
    killed = _launch(case, workdir, failpoint)
    assert killed.returncode == -signal.SIGKILL, (failpoint, killed.stderr[-3000:])
    assert os.path.exists(os.path.join(workdir, lock.LOCK_FILE))  # left by the dead run
  again = _launch(case, workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from step" in again.stdout
  assert _outputs(workdir, case) == _outputs(reference, case)


def test_corrupt_latest_checkpoint_is_skipped_with_a_warning(tmp_path):
  from configs import common  # noqa: F401 -- the config file imports it
  from experiments.report import load_config_module

  config = load_config_module(CONFIGS).get_config("maoal")
  config.optim.num_steps = 16
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir, progress=lambda _: None)
  first = loop.load_metrics(workdir)
  with open(os.path.join(workdir, "test_metrics.json")) as f:
    summary = _without_seconds(json.load(f))

  latest = os.path.join(workdir, "checkpoints", "16")
  files = [os.path.join(d, n) for d, _, ns in os.walk(latest) for n in ns]
  assert files
  for path in files:  # a disk error: every file of the latest checkpoint garbled
    with open(path, "wb") as f:
      f.write(b"\x00garbage")
  lines = []
  resumed = loop.train_and_evaluate(config, workdir, progress=lines.append)
  assert any(l.startswith("warning: checkpoint 16 ") for l in lines), lines
  assert "resumed from step 8" in lines
  assert loop.load_metrics(workdir) == first
  assert _without_seconds(resumed) == summary
