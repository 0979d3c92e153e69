"""Runs several variants of one config over several seeds and prints a results table.

    python -m experiments.compare --config=configs/maoal_digits.py --seeds=3 \
        [--variants=stl,equal,gcs,auxl,maoal] [--workdir=workdirs/compare] [--steps=N]
    python -m experiments.compare --config=configs/slgrad_toy.py --seeds=0,1,2 \
        --variants=stl,unif,slgrad --config.data.kwargs.noise=0.3
    python -m experiments.compare --config=configs/attittud_cifar10.py --seeds=5
    python -m experiments.compare --config=configs/aang_citation_intent.py \
        --config.data_dir=DIR --variants=stl,tapt,static_mt,aang

The config file's ``get_config(variant)`` builds each variant's config (the argument
after ':' of ``experiments.train``: a method, or a named variant); ``--variants``
defaults to the file's ``VARIANTS``. Seed s sets ``config.seed = s``;
``--config.x.y=value`` overrides (validated against the file's default config, as in
``experiments.train``) apply to every variant. ``--variants=@NAME`` runs the tuple
``NAME`` of the config file (a hyper-parameter grid, e.g. AANG's ``@GRID``). ``--seeds``: one number N means seeds
0 … N−1, several numbers are the seeds. ``--steps`` sets ``optim.num_steps`` (and the
fine-tuning phase's, for two-phase configs): quick runs.

Each (variant, seed) is one `aux_jax.train.runner.run` (any runner: train, aang,
two_phase) in ``<workdir>/<variant>_seed<s>``; a finished run there with the same
config is reused, an unfinished one resumed. The table reports, per variant, the
main task's test metric of the best-on-dev model (mean ± sample std over seeds, and
the half-width of its 95% confidence interval, Student's t), the dev metric it was
selected on, and the wall time per run; a run that diverged (summary ``"status":
"diverged"``, `aux_jax.train.loop`) or selected no model is left out of the means and
named in the table's "excluded" column; below the table, the variant of the best mean
dev score (how a grid is resolved: test never selects). The metric follows the runs' selection metric
(the summary's ``select``): ``accuracy`` → %; ``neg_<m>`` (e.g. ``neg_mse``) →
test ``<m>``, lower is better; anything else (miou, macro_f1) → ``test_<select>``.
Writes ``<workdir>/compare.md`` (the table) and ``<workdir>/compare.json`` (the
table's numbers, every run, seeds, variants, overrides, JAX version, machine, date).
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional, Sequence

from absl import app, flags, logging
import ml_collections
import numpy as np

from aux_jax.train import runner
from experiments import report
from experiments.report import load_config_module

FLAGS = flags.FLAGS

# Display names of lower-is-better metrics (the part after "neg_").
_LOWER_NAMES = {"mse": "MSE", "abs_err": "absolute error", "mean_angle": "mean angle error"}


def define_flags():
  """Defines the flags; only when run as a script, because ``experiments.train`` defines
  --config and --workdir too and tests import both modules into one process."""
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None,
                                  "Config file with get_config(variant).",
                                  lock_config=False)
  flags.DEFINE_list("seeds", ["3"], "N (seeds 0 .. N-1) or a list of seeds.")
  flags.DEFINE_list("variants", None, "Variants to compare (default: the config "
                    "file's VARIANTS).")
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
    ``{"key": test summary key, "dev_key": dev summary key, "label": table header,
    "scale": display factor, "digits": decimals, "lower_is_better": bool}``.
  """
  dev_key = f"best_dev_{select}"
  if select == "accuracy":
    return {"key": "test_accuracy", "dev_key": dev_key,
            "label": "main-task test accuracy (%)", "scale": 100.0, "digits": 2,
            "lower_is_better": False}
  if select.startswith("neg_"):
    base = select[len("neg_"):]
    name = _LOWER_NAMES.get(base, base.replace("_", " "))
    return {"key": f"test_{base}", "dev_key": dev_key,
            "label": f"main-task test {name} (lower is better)", "scale": 1.0,
            "digits": 4, "lower_is_better": True}
  return {"key": f"test_{select}", "dev_key": dev_key,
          "label": f"main-task test {select.replace('_', ' ')}", "scale": 1.0,
          "digits": 4, "lower_is_better": False}


def excluded_reason(run: dict, key: str) -> Optional[str]:
  """Why ``run`` is left out of the means: "diverged" (summary ``status``), "no model"
  (no finite dev evaluation, so no test ``key``), or None (it counts)."""
  if run.get("status") == "diverged":
    return "diverged"
  if run.get(key) is None:
    return "no model"
  return None


def summarize(runs: list[dict]) -> dict:
  """Per variant (first-seen order): the test metric's mean, sample std (ddof=1; 0 for
  one seed), 95% CI half-width and values over seeds in display units; the dev
  metric's mean and std; the mean wall time. Runs that diverged or selected no model
  are left out of these and listed in ``excluded`` (``{seed: reason}``); a variant
  without any other run has NaN statistics.

  Raises:
    ValueError: the runs were selected on different metrics.
  """
  selects = sorted({r["select"] for r in runs})
  if len(selects) != 1:
    raise ValueError(f"runs selected on different dev metrics {selects}: one table "
                     "needs one metric")
  spec = metric_spec(selects[0])
  rows = {}
  for variant in dict.fromkeys(r["variant"] for r in runs):
    all_rs = [r for r in runs if r["variant"] == variant]
    rs = [r for r in all_rs if excluded_reason(r, spec["key"]) is None]
    excluded = {r.get("seed"): excluded_reason(r, spec["key"]) for r in all_rs
                if excluded_reason(r, spec["key"]) is not None}
    test = spec["scale"] * np.array([r[spec["key"]] for r in rs], np.float64)
    # A neg_ metric is selected as "higher is better": show the dev value positive.
    sign = -1.0 if spec["lower_is_better"] else 1.0
    dev = sign * spec["scale"] * np.array([r[spec["dev_key"]] for r in rs], np.float64)
    _, half = report.ci95(test) if len(rs) else (None, float("nan"))
    nan = float("nan")
    rows[variant] = {
        "mean": float(test.mean()) if len(rs) else nan,
        "std": float(test.std(ddof=1)) if len(rs) > 1 else (0.0 if rs else nan),
        "ci95": half, "values": test.tolist(), "seeds": [r.get("seed") for r in rs],
        "dev_mean": float(dev.mean()) if len(rs) else nan,
        "dev_std": float(dev.std(ddof=1)) if len(rs) > 1 else (0.0 if rs else nan),
        "wall_seconds": float(np.mean([r["wall_seconds"] for r in all_rs])),
        "excluded": excluded}
  # Grid selection on dev only (dev is shown in display units: lower-is-better there);
  # a variant without a usable run is never the pick.
  pick = min if spec["lower_is_better"] else max
  usable = [v for v in rows if not np.isnan(rows[v]["dev_mean"])]
  best = pick(usable, key=lambda v: rows[v]["dev_mean"]) if usable else None
  return {"select": selects[0], **spec, "variants": rows, "best_on_dev": best}


def table(summary: dict) -> str:
  """A Markdown table of `summarize`'s output."""
  rows, d = summary["variants"], summary["digits"]
  lines = [f"| variant | {summary['label']}, mean ± std | 95% CI ± | dev (selection) | "
           "seeds | excluded (diverged, no model) | wall time per run (s) |",
           "|---|---|---|---|---|---|---|"]
  num = lambda mean, std: ("n/a" if np.isnan(mean) else f"{mean:.{d}f} ± {std:.{d}f}")
  for name, row in rows.items():
    ci = "n/a" if np.isnan(row["ci95"]) else f"{row['ci95']:.{d}f}"
    excluded = row.get("excluded", {})
    out = (", ".join(f"seed {s}: {why}" for s, why in excluded.items()) if excluded
           else "none")
    lines.append(f"| {name} | {num(row['mean'], row['std'])} | {ci} | "
                 f"{num(row['dev_mean'], row['dev_std'])} | "
                 f"{len(row['values'])} | {out} | {row['wall_seconds']:.0f} |")
  if len(rows) > 1 and summary.get("best_on_dev"):
    lines += ["", f"Best mean dev score (the selection; test never selects): "
              f"{summary['best_on_dev']}"]
  return "\n".join(lines)


def _finished_run(run_dir: str, config: ml_collections.ConfigDict) -> Optional[dict]:
  """The recorded run in ``run_dir`` if it finished with exactly ``config``."""
  paths = [os.path.join(run_dir, f) for f in ("compare_config.json", "compare_run.json")]
  if not all(os.path.exists(p) for p in paths):
    return None
  with open(paths[0]) as f:
    if json.load(f) != json.loads(config.to_json_best_effort(sort_keys=True)):
      return None
  with open(paths[1]) as f:
    return json.load(f)


def _set_steps(config: ml_collections.ConfigDict, steps: int) -> None:
  config.optim.num_steps = int(steps)
  if "finetune" in config and "optim" in config.finetune:
    config.finetune.optim.num_steps = int(steps)


def resolve_variants(module, variants: Optional[Sequence[str]],
                     config_path: str = "the config file") -> list[str]:
  """The variants to run: ``variants``; ``["@NAME"]``: the module's tuple ``NAME``;
  None or empty: its ``VARIANTS``.

  Raises:
    ValueError: the module lacks the named tuple (or ``VARIANTS``).
  """
  if variants and len(variants) == 1 and variants[0].startswith("@"):
    name = variants[0][1:]
    if not isinstance(getattr(module, name, None), tuple):
      raise ValueError(f"{config_path} has no tuple {name} (from --variants=@{name})")
    return list(getattr(module, name))
  if not variants:
    if not hasattr(module, "VARIANTS"):
      raise ValueError(f"{config_path} has no VARIANTS: name them with --variants")
    return list(module.VARIANTS)
  return list(variants)


def run_all(config_path: str, variants: Optional[Sequence[str]], seeds: Sequence[int],
            workdir: str, overrides: Optional[dict] = None, steps: Optional[int] = None,
            log_fn: Callable[[str], None] = print) -> dict:
  """Runs every (variant, seed), writes compare.md / compare.json, returns the payload.

  Args:
    config_path: a config file with ``get_config(variant)``.
    variants: the variants (the config file's argument); None: its ``VARIANTS``;
      ``["@NAME"]``: its tuple ``NAME`` (a grid).
    seeds: the seeds (``config.seed``).
    workdir: runs go to ``<workdir>/<variant>_seed<s>``.
    overrides: ``{"dotted.field": value}`` set on every variant's config.
    steps: if set, ``optim.num_steps`` (and ``finetune.optim.num_steps``).
    log_fn: receives progress lines.

  Raises:
    ValueError: no variants given and the config file has no ``VARIANTS``.
  """
  module = load_config_module(config_path)
  variants = resolve_variants(module, variants, config_path)
  overrides = dict(overrides or {})
  runs = []
  for variant in variants:
    for seed in seeds:
      config = module.get_config(variant)
      config.update_from_flattened_dict(overrides)
      config.seed = int(seed)
      if steps:
        _set_steps(config, steps)
      run_dir = os.path.join(workdir, f"{variant}_seed{seed}")
      record = _finished_run(run_dir, config)
      if record is not None:
        log_fn(f"== {variant}, seed {seed}: reusing {run_dir}")
      else:
        log_fn(f"== {variant}, seed {seed} -> {run_dir}")
        start = time.time()
        summary = runner.run(config, run_dir, progress=lambda _: None)
        record = {**summary, "variant": variant, "seed": int(seed), "workdir": run_dir,
                  "wall_seconds": time.time() - start}  # data, compilation, checkpoints
        with open(os.path.join(run_dir, "compare_config.json"), "w") as f:
          f.write(config.to_json_best_effort(sort_keys=True))
        with open(os.path.join(run_dir, "compare_run.json"), "w") as f:
          json.dump(record, f, indent=2)
      runs.append(record)
      key = metric_spec(record["select"])["key"]
      if record.get("status") == "diverged":
        log_fn(f"   {record['diverged_message']}")
      elif record.get(key) is None:
        log_fn(f"   {record.get('no_selected_model', 'no ' + key)}")
      else:
        log_fn(f"   {key} {record[key]:.4f}")
  summary = summarize(runs)
  payload = {
      "metric": f"{summary['label']} of the best-on-dev model; mean ± sample std "
                "(ddof=1) over seeds, 95% CI half-width (Student's t); runs that "
                "diverged or selected no model excluded (and listed)",
      "summary": summary,
      "table": table(summary),
      "runs": runs,
      "seeds": [int(s) for s in seeds],
      "variants": list(variants),
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
  payload = run_all(path, FLAGS.variants, seeds, FLAGS.workdir, overrides, FLAGS.steps,
                    log_fn=lambda s: print(s, flush=True))
  print(payload["table"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
