"""Runs several methods over several seeds on one config and prints a results table.

    python -m experiments.compare --config=configs/maoal_digits.py --seeds=3 \
        [--methods=sll,equal,gcs,auxl,maoal] [--workdir=workdirs/compare] [--steps=N]

The config file's ``get_config(method)`` builds each method's config. Prints a
Markdown table of main-task test accuracy (best-on-dev checkpoint, mean ± std over
seeds) and wall time per run, and writes every run's summary to
``<workdir>/compare.json``.
"""

import importlib.util
import json
import os
import time

from absl import app, flags, logging
import numpy as np

from aux_jax.train.loop import train_and_evaluate

_CONFIG = flags.DEFINE_string("config", None, "Config file with get_config(method).")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per method (0 .. seeds-1).")
_METHODS = flags.DEFINE_list("methods", ["sll", "equal", "gcs", "auxl", "maoal"],
                             "Methods to compare.")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/compare", "Output directory.")
_STEPS = flags.DEFINE_integer("steps", None, "Override optim.num_steps (quick runs).")
flags.mark_flag_as_required("config")


def load_config_module(path: str):
  spec = importlib.util.spec_from_file_location("aux_jax_compare_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def summarize(runs: list[dict]) -> str:
  """A Markdown table: method, test accuracy mean ± std, seeds, wall time."""
  lines = ["| method | main-task test accuracy | seeds | wall time per run (s) |",
           "|---|---|---|---|"]
  for method in dict.fromkeys(r["method"] for r in runs):
    acc = np.array([r["test_accuracy"] for r in runs if r["method"] == method])
    secs = np.array([r["wall_seconds"] for r in runs if r["method"] == method])
    lines.append(f"| {method} | {100 * acc.mean():.2f} ± {100 * acc.std():.2f} | "
                 f"{len(acc)} | {secs.mean():.0f} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  module = load_config_module(_CONFIG.value)
  runs = []
  for method in _METHODS.value:
    for seed in range(_SEEDS.value):
      config = module.get_config(method)
      config.seed = seed
      if _STEPS.value:
        config.optim.num_steps = _STEPS.value
      workdir = os.path.join(_WORKDIR.value, f"{method}_seed{seed}")
      print(f"== {method}, seed {seed} -> {workdir}", flush=True)
      start = time.time()
      summary = train_and_evaluate(config, workdir, progress=lambda _: None)
      summary["wall_seconds"] = time.time() - start  # data, compilation, checkpoints
      runs.append(summary)
      print(f"   test accuracy {summary['test_accuracy']:.4f}", flush=True)
  with open(os.path.join(_WORKDIR.value, "compare.json"), "w") as f:
    json.dump(runs, f, indent=2)
  print(summarize(runs))


if __name__ == "__main__":
  app.run(main)
