"""Trains one experiment from a config file.

    python -m experiments.train --config=configs/maoal_digits.py --workdir=workdirs/digits \
        [--config.method.name=gcs --config.optim.num_steps=500 ...]

Writes the resolved config, metrics (JSON lines), orbax checkpoints, the best-on-dev
checkpoint, the final test metrics and a heatmap of the learned weights into the
workdir; rerunning with the same workdir resumes from the last checkpoint.
"""

import importlib
import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

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
  print(json.dumps(get_runner(config)(config, workdir), indent=2))


# A config's `runner` field picks how it is run (default "train"): "module:function",
# each function `(config, workdir) -> summary dict`, imported only when used.
RUNNERS = {
    "train": "aux_jax.train.loop:train_and_evaluate",      # one bi-level training run
    "aang": "experiments.train:run_aang_experiment",       # searched text objectives
    "taskgen": "aux_jax.train.taskgen:run_taskgen",        # AuxiLearn label generation
    "two_phase": "aux_jax.train.two_phase:run_two_phase",  # ATTITTUD pretrain+finetune
}


def get_runner(config):
  """The function that runs ``config`` (its ``runner`` field; "train" if absent)."""
  name = config.get("runner", "aang" if "aang" in config else "train")
  if name not in RUNNERS:
    raise app.UsageError(f"unknown runner {name!r}; known: {', '.join(sorted(RUNNERS))}")
  module, fn = RUNNERS[name].split(":")
  return getattr(importlib.import_module(module), fn)


def run_aang_experiment(config, workdir: str) -> dict:
  """AANG on a jsonl directory (`aux_jax.aang.experiment.run_aang_experiment`): writes
  config.json, results.json and, for the "aang" method, aang_weights.png."""
  from aux_jax.aang.experiment import run_aang_experiment as run

  if not config.data_dir:
    raise app.UsageError("set --config.data_dir to a directory with train/dev/test.jsonl")
  return run(config, workdir)


if __name__ == "__main__":
  app.run(main)
