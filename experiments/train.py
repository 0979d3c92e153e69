"""Trains one experiment from a config file.

    python -m experiments.train --config=configs/maoal_digits.py --workdir=workdirs/digits \
        [--config.method.name=gcs --config.optim.num_steps=500 ...]

Writes the resolved config, metrics (JSON lines), orbax checkpoints, the best-on-dev
checkpoint, the final test metrics and a heatmap of the learned weights into the
workdir; rerunning with the same workdir resumes from the last checkpoint.
"""

import json

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
  summary = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  app.run(main)
