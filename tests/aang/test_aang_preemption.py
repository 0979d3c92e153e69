"""An AANG run killed with SIGKILL (after a best-on-dev save, then mid-checkpoint) and
started again with the same command ends as an uninterrupted run does."""

import json
import os
import signal
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY = ["--config.optim.num_steps=12", "--config.train.eval_every=4",
        "--config.train.checkpoint_every=4", "--config.train.log_every=2",
        "--config.train.patience=0", "--config.finetune.enabled=False",
        "--config.data.max_len=24", "--config.data.batch_size=8",
        "--config.data.aux_batch_size=8", "--config.data.dev_batch_size=8",
        "--config.data.eval_batch_size=16", "--config.model.kwargs.width=16",
        "--config.model.kwargs.mlp_dim=16", "--config.model.kwargs.depth=1",
        "--config.model.kwargs.num_heads=2", "--config.aang.dev_head.steps=3"]


def write_jsonl(root, sizes=(("train", 24), ("dev", 8), ("test", 8))):
  """A three-class keyword task: each text holds its class's keyword."""
  rng = np.random.default_rng(0)
  words = ["the", "model", "we", "data", "show", "results"]
  keys = {"Uses": "zebra", "Background": "maple", "Future": "quartz"}
  os.makedirs(root, exist_ok=True)
  for split, n in sizes:
    with open(os.path.join(root, f"{split}.jsonl"), "w") as f:
      for _ in range(n):
        label = list(keys)[int(rng.integers(3))]
        text = " ".join(list(rng.choice(words, 3)) + [keys[label]])
        f.write(json.dumps({"text": text, "label": label}) + "\n")


def launch(workdir, data, cache, failpoint=None, extra=()):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("AUX_JAX_FAILPOINT", None)
  if failpoint:
    env["AUX_JAX_FAILPOINT"] = failpoint
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=configs/aang_citation_intent.py:aang", f"--workdir={workdir}",
         f"--config.data_dir={data}", *TINY, *extra]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)


def outputs(workdir):
  phase = os.path.join(workdir, "pretrain")
  with open(os.path.join(phase, "metrics.jsonl")) as f:
    metrics = [json.loads(l) for l in f]
  with open(os.path.join(phase, "test_metrics.json")) as f:
    summary = json.load(f)
  summary.pop("train_seconds")
  summary.pop("provenance")  # the command names the workdir
  return metrics, summary


def test_killed_aang_run_resumes_to_the_same_result(tmp_path):
  data, cache = tmp_path / "data", tmp_path / "jax_cache"
  write_jsonl(data)
  ref = launch(tmp_path / "ref", data, cache)
  assert ref.returncode == 0, ref.stderr[-3000:]
  work = tmp_path / "run"
  # Killed right after the first best-on-dev evaluation (before its checkpoint) ...
  r = launch(work, data, cache, "after_best@4")
  assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
  # ... then, restarted, killed while the checkpoint of step 8 is being written ...
  r = launch(work, data, cache, "mid_checkpoint@8")
  assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
  # ... and restarted once more to the end.
  r = launch(work, data, cache)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "resumed from step" in r.stdout + r.stderr
  got_metrics, got_summary = outputs(work)
  want_metrics, want_summary = outputs(tmp_path / "ref")
  assert [m["step"] for m in want_metrics] == [2, 4, 6, 8, 10, 12]
  assert "dev_macro_f1" in want_metrics[1] and "w_all" in want_metrics[0]
  # The logits move at the meta-update after step 3 (the mean of 3 steps' cosines),
  # not before; the logged ones are those the step used.
  assert not np.any(want_metrics[0]["w_all"])
  assert np.any(want_metrics[1]["w_all"]) and np.any(want_metrics[1]["w_transform"])
  assert got_metrics == want_metrics
  assert got_summary == want_summary
  assert (work / "pretrain" / "aang_weights.png").exists()
