"""AANG and its baselines over several seeds on a jsonl text task; a dev/test macro-F1 table.

    python -m experiments.aang_compare --data_dir=/path/to/citation_intent \
        --workdir=workdirs/aang_compare [--seeds=0,1,2] [--methods=supervised,tapt,aang] \
        [--steps=N] [--eval_every=N] [--patience=N] [--set=meta_lr=0.1 --set=...]

Each (method, seed) is one `aux_jax.aang.experiment.run_aang_experiment` run with the
config file's ``get_config(method)`` (default ``configs/aang_citation_intent.py``) in
``<workdir>/<method>_seed<seed>`` (config.json, results.json, aang_weights.png for
AANG); a run whose workdir already holds results.json for the same config is reused.
Every run keeps the parameters of its best dev macro-F1 evaluation and scores test once
with them: selection is on dev only. Prints and writes ``<workdir>/results.md`` (a
Markdown table of dev and test macro-F1, mean ± sample std over seeds) and
``<workdir>/results.json`` (the table's numbers, every run, the overrides, versions).
"""

from __future__ import annotations

import ast
import json
import os
import time

from absl import app, flags, logging
import numpy as np

from aux_jax.aang.experiment import run_aang_experiment
from experiments import report

FLAGS = flags.FLAGS


def define_flags():
  """Defines the flags; only when run as a script, because ``experiments.train`` defines
  --config and --workdir too and tests import both modules into one process."""
  flags.DEFINE_string("config", "configs/aang_citation_intent.py",
                      "Config file with get_config(method).")
  flags.DEFINE_string("data_dir", None, "Directory with train/dev/test.jsonl.")
  flags.DEFINE_string("workdir", "workdirs/aang_compare", "Output directory.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
  flags.DEFINE_list("methods", ["supervised", "tapt", "aang"], "Methods.")
  flags.DEFINE_integer("steps", None, "Override aang.num_steps.")
  flags.DEFINE_integer("eval_every", None, "Override aang.eval_every.")
  flags.DEFINE_integer("patience", None, "Override aang.patience.")
  flags.DEFINE_multi_string("set", [], "Override any aang field: name=value.")
  flags.mark_flag_as_required("data_dir")


def parse_overrides(steps=None, eval_every=None, patience=None, sets=()) -> dict:
  """``{aang field: value}`` from the flags (``name=value``, value a Python literal)."""
  out = {k: v for k, v in (("num_steps", steps), ("eval_every", eval_every),
                           ("patience", patience)) if v is not None}
  for item in sets:
    name, sep, value = item.partition("=")
    if not sep or not name:
      raise app.UsageError(f"--set expects name=value, got {item!r}")
    try:
      out[name.strip()] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[name.strip()] = value
  return out


def summarize(runs: list[dict]) -> dict:
  """Per method: dev/test macro-F1 mean and sample std over seeds, wall time, seeds."""
  out = {}
  for method in dict.fromkeys(r["method"] for r in runs):
    rs = [r for r in runs if r["method"] == method]
    row = {"seeds": [r["seed"] for r in rs]}
    for key in ("best_dev_f1", "test_f1", "wall_seconds", "best_step", "steps_run"):
      v = np.array([r[key] for r in rs], np.float64)
      row[key] = {"mean": float(v.mean()),
                  "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                  "values": v.tolist()}
    out[method] = row
  return out


def table(summary: dict) -> str:
  """Markdown table of `summarize`'s output; marks the best method on dev."""
  best = max(summary, key=lambda m: summary[m]["best_dev_f1"]["mean"])
  lines = ["| method | dev macro-F1 | test macro-F1 | seeds | best step | "
           "wall time per run (s) |", "|---|---|---|---|---|---|"]
  for m, row in summary.items():
    dev, test = row["best_dev_f1"], row["test_f1"]
    lines.append(
        f"| {m}{' (best on dev)' if m == best else ''} | {dev['mean']:.3f} ± "
        f"{dev['std']:.3f} | {test['mean']:.3f} ± {test['std']:.3f} | {len(row['seeds'])} | "
        f"{row['best_step']['mean']:.0f} | {row['wall_seconds']['mean']:.0f} |")
  lines.append("\nmean ± sample std (ddof=1) over seeds; each run's parameters are those "
               "of its best dev evaluation; test scored once with them.")
  return "\n".join(lines)


def _same_config(workdir: str, config) -> bool:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(os.path.join(workdir, "results.json")) or not os.path.exists(path):
    return False
  with open(path) as f:
    return json.load(f) == json.loads(config.to_json_best_effort(sort_keys=True))


def run_all(config_path: str, data_dir: str, workdir: str, seeds, methods,
            overrides: dict, log_fn=print) -> dict:
  """Runs every (method, seed) and returns the results.json payload (also written)."""
  module = report.load_config_module(config_path)
  runs = []
  for method in methods:
    for seed in seeds:
      config = module.get_config(method)
      config.seed = int(seed)
      config.data_dir = data_dir
      config.aang.update(overrides)
      run_dir = os.path.join(workdir, f"{method}_seed{seed}")
      if _same_config(run_dir, config):
        log_fn(f"== {method}, seed {seed}: reusing {run_dir}")
        with open(os.path.join(run_dir, "results.json")) as f:
          res = json.load(f)
        wall = res.get("wall_seconds", res["seconds"])
      else:
        log_fn(f"== {method}, seed {seed} -> {run_dir}")
        start = time.time()
        run_aang_experiment(config, run_dir, log_fn=log_fn)
        wall = time.time() - start  # data, tokenisation, compilation, evaluation
        with open(os.path.join(run_dir, "results.json")) as f:
          res = json.load(f)
        res["wall_seconds"] = wall
        with open(os.path.join(run_dir, "results.json"), "w") as f:
          json.dump(res, f, indent=2)
      runs.append({"method": method, "seed": int(seed), "workdir": run_dir,
                   "wall_seconds": wall,
                   **{k: res[k] for k in ("best_dev_f1", "test_f1", "best_step",
                                          "steps_run")}})
      log_fn(f"   dev macro-F1 {res['best_dev_f1']:.4f} (step {res['best_step']}), "
             f"test macro-F1 {res['test_f1']:.4f}, {wall:.0f} s")
  summary = summarize(runs)
  payload = {
      "task": os.path.basename(os.path.normpath(data_dir)),
      "metric": "macro-F1; dev = best dev evaluation, test = at that checkpoint",
      "summary": summary,
      "table": table(summary),
      "runs": runs,
      "seeds": [int(s) for s in seeds],
      "methods": list(methods),
      "config": config_path,
      "config_overrides": overrides,
      **report.provenance(),
  }
  report.write_results(workdir, "results", payload)
  return payload


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  overrides = parse_overrides(FLAGS.steps, FLAGS.eval_every, FLAGS.patience, FLAGS.set)
  payload = run_all(FLAGS.config, FLAGS.data_dir, FLAGS.workdir, FLAGS.seeds,
                    FLAGS.methods, overrides, log_fn=lambda s: print(s, flush=True))
  print(payload["table"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
