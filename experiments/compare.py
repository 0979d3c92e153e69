"""Runs several methods over several seeds on one config and prints a results table.

    python -m experiments.compare --config=configs/maoal_digits.py --seeds=3 \
        [--methods=sll,equal,gcs,auxl,maoal] [--workdir=workdirs/compare] [--steps=N]
    python -m experiments.compare --config=configs/slgrad_toy.py --seeds=0,1,2 \
        --methods=sll,unif,slgrad --config.data.kwargs.main_noise=0.3

The config file's ``get_config(method)`` builds each method's config; seed s sets
``config.seed = s``; ``--config.x.y=value`` overrides (validated against the file's
default config, as in ``experiments.train``) are applied to every method's config.
``--seeds``: one number N means seeds 0 … N−1, several numbers are the seeds.

Each (method, seed) is one `aux_jax.train.loop.train_and_evaluate` run in
``<workdir>/<method>_seed<s>``; a finished run there with the same config is reused.
The table reports the main task's test metric of the best-on-dev checkpoint, mean ± std
over seeds (population std, ddof = 0), and wall time per run. The metric follows the
runs' model-selection metric (the summary's ``select``): ``accuracy`` → test accuracy
in %; ``neg_<m>`` (e.g. ``neg_mse`` for regression) → test ``<m>``, lower is better;
anything else → ``test_<select>`` as is. Writes ``<workdir>/compare.md`` (the table)
and ``<workdir>/compare.json`` (the table's numbers, every run, seeds, methods,
overrides, JAX version, machine, date).
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional, Sequence

from absl import app, flags, logging
import ml_collections
import numpy as np

from aux_jax.train.loop import train_and_evaluate
from experiments import report
from experiments.report import load_config_module

FLAGS = flags.FLAGS

# Display names of lower-is-better metrics (the part after "neg_").
_LOWER_NAMES = {"mse": "MSE", "abs_err": "absolute error", "mean_angle": "mean angle error"}


def define_flags():
  """Defines the flags; only when run as a script, because ``experiments.train`` defines
  --config and --workdir too and tests import both modules into one process."""
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "Config file with get_config(method).",
                                  lock_config=False)
  flags.DEFINE_list("seeds", ["3"], "N (seeds 0 .. N-1) or a list of seeds.")
  flags.DEFINE_list("methods", ["sll", "equal", "gcs", "auxl", "maoal"],
                    "Methods to compare.")
  flags.DEFINE_string("workdir", "workdirs/compare", "Output directory.")
  flags.DEFINE_integer("steps", None, "Override optim.num_steps (quick runs).")
  flags.mark_flag_as_required("config")


def parse_seeds(values: Sequence[str]) -> list[int]:
  """``["3"]`` → ``[0, 1, 2]`` (a count); ``["0", "2", "5"]`` → ``[0, 2, 5]``.

  Raises:
    ValueError: not integers, a count below 1, or repeated seeds.
  """
  try:
    seeds = [int(v) for v in values]
  except ValueError:
    raise ValueError(f"--seeds must be integers, got {list(values)}") from None
  if len(seeds) == 1:
    if seeds[0] < 1:
      raise ValueError(f"--seeds=N needs N >= 1, got {seeds[0]}")
    return list(range(seeds[0]))
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"--seeds has repeated seeds: {seeds}")
  return seeds


def metric_spec(select: str) -> dict:
  """How to report a run whose dev selection metric is ``select``.

  Returns:
    ``{"key": summary key, "label": table header, "scale": display factor,
    "digits": decimals, "lower_is_better": bool}``.
  """
  if select == "accuracy":
    return {"key": "test_accuracy", "label": "main-task test accuracy (%)", "scale": 100.0,
            "digits": 2, "lower_is_better": False}
  if select.startswith("neg_"):
    base = select[len("neg_"):]
    name = _LOWER_NAMES.get(base, base.replace("_", " "))
    return {"key": f"test_{base}", "label": f"main-task test {name} (lower is better)",
            "scale": 1.0, "digits": 4, "lower_is_better": True}
  return {"key": f"test_{select}", "label": f"main-task test {select.replace('_', ' ')}",
          "scale": 1.0, "digits": 4, "lower_is_better": False}


def summarize(runs: list[dict]) -> dict:
  """Per method (first-seen order): the test metric's mean, std (ddof=0) and values
  over seeds, in display units, and the mean wall time.

  Raises:
    ValueError: the runs were selected on different metrics.
  """
  selects = sorted({r["select"] for r in runs})
  if len(selects) != 1:
    raise ValueError(f"runs selected on different dev metrics {selects}: one table "
                     "needs one metric")
  spec = metric_spec(selects[0])
  methods = {}
  for method in dict.fromkeys(r["method"] for r in runs):
    rs = [r for r in runs if r["method"] == method]
    v = spec["scale"] * np.array([r[spec["key"]] for r in rs], np.float64)
    methods[method] = {"mean": float(v.mean()), "std": float(v.std()), "values": v.tolist(),
                       "seeds": [r.get("seed") for r in rs],
                       "wall_seconds": float(np.mean([r["wall_seconds"] for r in rs]))}
  return {"select": selects[0], **spec, "methods": methods}


def table(summary: dict) -> str:
  """A Markdown table of `summarize`'s output: method, metric mean ± std, seeds, wall
  time per run."""
  rows, d = summary["methods"], summary["digits"]
  lines = [f"| method | {summary['label']} | seeds | wall time per run (s) |",
           "|---|---|---|---|"]
  for m, row in rows.items():
    cell = f"{row['mean']:.{d}f} ± {row['std']:.{d}f}"
    lines.append(f"| {m} | {cell} | {len(row['values'])} | {row['wall_seconds']:.0f} |")
  return "\n".join(lines)


def _finished_run(run_dir: str, config: ml_collections.ConfigDict) -> Optional[dict]:
  """The recorded run in ``run_dir`` if it finished with exactly ``config``."""
  paths = [os.path.join(run_dir, f) for f in ("config.json", "compare_run.json")]
  if not all(os.path.exists(p) for p in paths):
    return None
  with open(paths[0]) as f:
    if json.load(f) != json.loads(config.to_json_best_effort(sort_keys=True)):
      return None
  with open(paths[1]) as f:
    return json.load(f)


def run_all(config_path: str, methods: Sequence[str], seeds: Sequence[int], workdir: str,
            overrides: Optional[dict] = None, steps: Optional[int] = None,
            log_fn: Callable[[str], None] = print) -> dict:
  """Runs every (method, seed), writes compare.md / compare.json, returns the payload.

  Args:
    config_path: a config file with ``get_config(method)``.
    methods: method names (the config file's argument).
    seeds: the seeds (``config.seed``).
    workdir: runs go to ``<workdir>/<method>_seed<s>``.
    overrides: ``{"dotted.field": value}`` set on every method's config.
    steps: if set, ``optim.num_steps``.
    log_fn: receives progress lines.
  """
  module = load_config_module(config_path)
  overrides = dict(overrides or {})
  runs = []
  for method in methods:
    for seed in seeds:
      config = module.get_config(method)
      config.update_from_flattened_dict(overrides)
      config.seed = int(seed)
      if steps:
        config.optim.num_steps = int(steps)
      run_dir = os.path.join(workdir, f"{method}_seed{seed}")
      record = _finished_run(run_dir, config)
      if record is not None:
        log_fn(f"== {method}, seed {seed}: reusing {run_dir}")
      else:
        log_fn(f"== {method}, seed {seed} -> {run_dir}")
        start = time.time()
        summary = train_and_evaluate(config, run_dir, progress=lambda _: None)
        record = {**summary, "seed": int(seed), "workdir": run_dir,
                  "wall_seconds": time.time() - start}  # data, compilation, checkpoints
        with open(os.path.join(run_dir, "compare_run.json"), "w") as f:
          json.dump(record, f, indent=2)
      runs.append(record)
      key = metric_spec(record["select"])["key"]
      log_fn(f"   {key} {record[key]:.4f}")
  summary = summarize(runs)
  payload = {
      "metric": f"{summary['label']} of the best-on-dev checkpoint; mean ± std "
                "(ddof=0) over seeds",
      "summary": summary,
      "table": table(summary),
      "runs": runs,
      "seeds": [int(s) for s in seeds],
      "methods": list(methods),
      "config": config_path,
      "config_overrides": overrides,
      "steps": steps,
      **report.provenance(),
  }
  report.write_results(workdir, "compare", payload)
  return payload


def main(argv):
  from ml_collections import config_flags

  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    seeds = parse_seeds(FLAGS.seeds)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  config_flag = FLAGS["config"]
  path = config_flags.get_config_filename(config_flag).split(":")[0]
  overrides = dict(config_flags.get_override_values(config_flag))
  payload = run_all(path, FLAGS.methods, seeds, FLAGS.workdir, overrides, FLAGS.steps,
                    log_fn=lambda s: print(s, flush=True))
  print(payload["table"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
