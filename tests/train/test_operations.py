"""Operating runs: one writer per workdir, SIGTERM saves the current step, TensorBoard
and W&B writers, provenance, profiles (real launcher runs of the tiny configs)."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from aux_jax.train import loop, writers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(ROOT, "tests", "train", "tiny_configs.py")
AUX = ("aux_digit", "aux_parity", "aux_ge5", "aux_random")
MAOAL_NAMES = {"weights": (AUX, ("block1", "block2", "dense"))}


def _env(failpoint: str = "", release: str = "") -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in (loop.FAILPOINT_ENV, loop.RELEASE_ENV)}
  env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  if failpoint:
    env[loop.FAILPOINT_ENV] = failpoint
  if release:
    env[loop.RELEASE_ENV] = release
  return env


def _cmd(workdir: str, *flags) -> list:
  return [sys.executable, "-m", "experiments.train", f"--config={CONFIGS}:maoal",
          f"--workdir={workdir}", *flags]


def _run(workdir: str, *flags) -> subprocess.CompletedProcess:
  return subprocess.run(_cmd(workdir, *flags), cwd=ROOT, env=_env(), capture_output=True,
                        text=True, timeout=300)


def _start_paused(workdir: str, step: int, release: str = "") -> subprocess.Popen:
  """A launcher run that waits after ``step`` (failpoint ``pause``); returns once it
  waits there."""
  proc = subprocess.Popen(_cmd(workdir), cwd=ROOT, env=_env(f"pause@{step}", release),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for line in proc.stdout:
    if line.startswith(f"paused at step {step}"):
      return proc
  raise AssertionError(f"never paused: {proc.wait()} {proc.stderr.read()[-3000:]}")


def _outputs(workdir: str) -> dict:
  with open(os.path.join(workdir, "test_metrics.json")) as f:
    summary = json.load(f)
  return {"summary": {k: v for k, v in summary.items()
                      if k not in ("train_seconds", "provenance")},
          "metrics": loop.load_metrics(workdir),
          "tb": writers.read_scalars(os.path.join(workdir, "tb"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference") / "run")
  done = _run(workdir)
  assert done.returncode == 0, done.stderr[-3000:]
  out = _outputs(workdir)
  assert out["tb"] == writers.expected_scalars(out["metrics"], MAOAL_NAMES)
  assert "weights/aux_parity/block2" in out["tb"]
  return out


def test_second_launch_on_a_busy_workdir_exits_2_and_the_first_run_is_untouched(
    reference, tmp_path):
  workdir, release = str(tmp_path / "run"), str(tmp_path / "release")
  first = _start_paused(workdir, 8, release)
  try:
    second = _run(workdir)
    assert second.returncode == 2, second.stderr[-3000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid} on " in lines[0], lines
    assert "in use" in lines[0]
  finally:
    open(release, "w").close()
  assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
  assert _outputs(workdir) == reference


def test_sigterm_saves_the_current_step_and_the_rerun_resumes_there(reference, tmp_path):
  workdir = str(tmp_path / "run")
  run = _start_paused(workdir, 12)  # checkpoints every 8 steps: 12 is not one
  run.send_signal(signal.SIGTERM)
  assert run.wait(timeout=120) == 128 + signal.SIGTERM
  err = run.stderr.read().strip().splitlines()
  assert err[-1].startswith("interrupted by SIGTERM at step 12: checkpoint saved"), err
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "8"]
  # The metric lines up to step 12 were written, to TensorBoard too.
  assert [r["step"] for r in loop.load_metrics(workdir)][-1] == 12
  again = _run(workdir, "--profile_steps=14,15")  # a profile changes no result
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from step 12" in again.stdout
  assert _outputs(workdir) == reference
  profile = os.path.join(workdir, "tb", "plugins", "profile")
  assert any(n.endswith(".xplane.pb") for _, _, ns in os.walk(profile) for n in ns)


class _FakeWandb(types.ModuleType):
  """The calls aux_jax makes of ``wandb``, recorded (no network)."""

  def __init__(self):
    super().__init__("wandb")
    self.calls = []
    self.util = types.SimpleNamespace(generate_id=lambda: "fake-id")
    self.Image = lambda path: ("image", os.path.basename(path))

  def init(self, **kwargs):
    self.calls.append(("init", kwargs))
    fake = self

    class Run:
      def log(self, values, step):
        fake.calls.append(("log", step, values))

      def finish(self):
        fake.calls.append(("finish",))
    return Run()


def test_writers_provenance_and_profile_in_process(tmp_path, monkeypatch):
  from configs import common  # noqa: F401 -- the config file imports it
  from experiments.report import load_config_module

  fake = _FakeWandb()
  monkeypatch.setitem(sys.modules, "wandb", fake)
  config = load_config_module(CONFIGS).get_config("maoal")
  config.optim.num_steps = 8
  config.train.writers = ("tensorboard", "wandb")
  config.train.wandb_project = "proj"
  config.train.profile_steps = "5,6"
  workdir = str(tmp_path / "run")
  lines = []
  summary = loop.train_and_evaluate(config, workdir, progress=lines.append)
  records = loop.load_metrics(workdir)

  # Progress: step/total, elapsed, steps/s and ETA.
  assert any(l.startswith("[maoal] step 8/8 ") and " steps/s  ETA 0:00:0" in l
             and "elapsed 0:00:" in l for l in lines), lines
  # TensorBoard: every scalar of metrics.jsonl; the weights plot as an image.
  assert writers.read_scalars(os.path.join(workdir, "tb")) == writers.expected_scalars(
      records, MAOAL_NAMES)
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  acc = EventAccumulator(os.path.join(workdir, "tb"))
  acc.Reload()
  assert acc.Tags()["images"] == ["weights"]
  # W&B: the same scalars at the same steps, the plot, the run id kept for a resume.
  init = fake.calls[0]
  assert init[0] == "init" and init[1]["project"] == "proj" and init[1]["id"] == "fake-id"
  logged = [c for c in fake.calls if c[0] == "log"]
  assert [(s, v) for _, s, v in logged[:-1]] == [
      (r["step"], writers.record_scalars(r, MAOAL_NAMES)) for r in records]
  assert logged[-1][1:] == (8, {"weights": ("image", "weights.png")})
  assert fake.calls[-1] == ("finish",)
  with open(os.path.join(workdir, "wandb_id")) as f:
    assert f.read() == "fake-id"
  # A jax.profiler trace for TensorBoard's profile plugin.
  profile = os.path.join(workdir, "tb", "plugins", "profile")
  assert any(n.endswith(".xplane.pb") for _, _, ns in os.walk(profile) for n in ns)
  # Provenance in config.json and test_metrics.json.
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  assert saved["optim"]["num_steps"] == 8  # still the config
  head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
  for prov in (saved["provenance"], summary["provenance"]):
    import jax
    assert prov["git_commit"] == head and isinstance(prov["git_dirty"], bool)
    assert prov["aux_jax_version"]
    assert prov["versions"]["jax"] == jax.__version__
    assert set(prov["versions"]) == {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint"}
    assert all(prov["versions"].values())
    assert prov["device_kind"] == jax.devices()[0].device_kind
    assert prov["device_count"] == jax.device_count()
    assert prov["process_count"] == 1 and isinstance(prov["command"], list)


def test_record_scalars_names_list_axes():
  record = {"step": 3, "loss": 0.5, "weights": [[1.0, 2.0], [3.0, 4.0]], "n": 2,
            "per_task": [0.1, 0.2, 0.3]}
  names = {"weights": (("a", "b"), ("m1", "m2")), "per_task": (("x", "y"),)}
  assert writers.record_scalars(record, names) == {
      "loss": 0.5, "n": 2.0, "weights/a/m1": 1.0, "weights/a/m2": 2.0,
      "weights/b/m1": 3.0, "weights/b/m2": 4.0,
      # names of another length than the axis: indices
      "per_task/0": 0.1, "per_task/1": 0.2, "per_task/2": 0.3}
  scalars = writers.expected_scalars([record, {"step": 5, "loss": np.nan}])
  assert scalars["loss"][0] == (3, 0.5) and scalars["loss"][1][0] == 5
