"""Trains one experiment from a config file.

    python -m experiments.train --config=configs/maoal_digits.py --workdir=workdirs/digits \
        [--config.method.name=gcs --config.optim.num_steps=500 ...]

Writes the resolved config, metrics (JSON lines), orbax checkpoints, the best-on-dev
checkpoint, the final test metrics and a heatmap of the learned weights into the
workdir; rerunning with the same workdir resumes from the last checkpoint.
"""

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from aux_jax.train.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumed if it exists).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Progress lines are printed; keep the libraries' (orbax's) info logs out of them.
  logging.set_verbosity(logging.WARNING)
  config, workdir = _CONFIG.value, _WORKDIR.value
  if "aang" in config:  # text experiments with searched auxiliary objectives
    summary = run_aang_experiment(config, workdir)
  else:
    summary = train_and_evaluate(config, workdir)
  print(json.dumps(summary, indent=2))


def run_aang_experiment(config, workdir: str) -> dict:
  """AANG on a jsonl directory: writes config.json and results.json to the workdir."""
  from aux_jax.aang.data import load_jsonl_dir
  from aux_jax.aang.train import run_aang

  if not config.data_dir:
    raise app.UsageError("set --config.data_dir to a directory with train/dev/test.jsonl")
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  result = run_aang(config.aang, load_jsonl_dir(config.data_dir), seed=config.seed,
                    log_fn=print)
  summary = {k: v for k, v in result.items() if k != "best_params"}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2, default=str)
  return {k: summary[k] for k in ("best_dev_f1", "test_f1", "best_step") if k in summary}


if __name__ == "__main__":
  app.run(main)
