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
defaults to the file's ``VARIANTS``, and the test metric tabulated to its ``REPORT``
(else the selection metric's; ``--report`` overrides). Seed s sets ``config.seed = s``;
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
Writes ``<workdir>/compare.md`` (the table), ``<workdir>/compare.json`` (the
table's numbers, every run, seeds, variants, overrides, JAX version, machine, date,
``provenance``) and ``<workdir>/compare.png`` (the means as bars with their 95% CIs).
Each run line says "run i of N" and, once a run has been timed, the ETA of the rest.

On a cluster, a job array shares the runs (run i goes to task i mod n) and a last
step builds the table from the finished run directories:

    python -m experiments.compare --config=... --seeds=5 --workdir=/shared/cmp \
        --task_index=$SLURM_ARRAY_TASK_ID --num_tasks=$SLURM_ARRAY_TASK_COUNT
    python -m experiments.compare --config=... --seeds=5 --workdir=/shared/cmp --aggregate
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, Optional, Sequence

from absl import app, flags, logging
import ml_collections
import numpy as np

from aux_jax.train import lock, loop, runner
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
  flags.DEFINE_integer("task_index", 0, "This task's index in a job array (runs "
                       "task_index, task_index + num_tasks, ...).")
  flags.DEFINE_integer("num_tasks", 1, "Number of tasks of the job array.")
  flags.DEFINE_string("report", None, "The test metric to tabulate, e.g. accuracy "
                      "(default: the config file's REPORT, else the selection metric).")
  flags.DEFINE_bool("aggregate", False, "Only build the table, CIs and plot from the "
                    "finished run directories (after every task of an array).")
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


def summarize(runs: list[dict], report_metric: Optional[str] = None) -> dict:
  """Per variant (first-seen order): the test metric's mean, sample std (ddof=1; 0 for
  one seed), 95% CI half-width and values over seeds in display units; the dev
  metric's mean and std; the mean wall time. Runs that diverged or selected no model
  are left out of these and listed in ``excluded`` (``{seed: reason}``); a variant
  without any other run has NaN statistics. The test metric is the selection
  metric's, or ``report_metric`` (e.g. ``"accuracy"`` of models selected on the dev
  loss).

  Raises:
    ValueError: the runs were selected on different metrics.
  """
  selects = sorted({r["select"] for r in runs})
  if len(selects) != 1:
    raise ValueError(f"runs selected on different dev metrics {selects}: one table "
                     "needs one metric")
  dev_spec = metric_spec(selects[0])
  spec = metric_spec(report_metric) if report_metric else dev_spec
  rows = {}
  for variant in dict.fromkeys(r["variant"] for r in runs):
    all_rs = [r for r in runs if r["variant"] == variant]
    rs = [r for r in all_rs if excluded_reason(r, spec["key"]) is None]
    excluded = {r.get("seed"): excluded_reason(r, spec["key"]) for r in all_rs
                if excluded_reason(r, spec["key"]) is not None}
    test = spec["scale"] * np.array([r[spec["key"]] for r in rs], np.float64)
    # A neg_ metric is selected as "higher is better": show the dev value positive.
    sign = -1.0 if dev_spec["lower_is_better"] else 1.0
    dev = sign * dev_spec["scale"] * np.array([r[dev_spec["dev_key"]] for r in rs],
                                              np.float64)
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
  # a variant without a usable run is never the pick, nor one with an excluded
  # (diverged) run while some variant has all its runs (its mean would be over the
  # seeds that survived).
  pick = min if dev_spec["lower_is_better"] else max
  usable = [v for v in rows if not np.isnan(rows[v]["dev_mean"])]
  complete = [v for v in usable if not rows[v]["excluded"]]
  usable = complete or usable
  best = pick(usable, key=lambda v: rows[v]["dev_mean"]) if usable else None
  return {"select": selects[0], **spec, "dev_key": dev_spec["dev_key"],
          "dev_label": dev_spec["label"].replace("main-task test ", "dev "),
          "dev_digits": dev_spec["digits"], "variants": rows, "best_on_dev": best}


def table(summary: dict) -> str:
  """A Markdown table of `summarize`'s output."""
  rows, d = summary["variants"], summary["digits"]
  dd = summary.get("dev_digits", d)
  dev_header = ("dev (selection)" if summary.get("dev_label", summary["label"])
                == summary["label"].replace("main-task test ", "dev ")
                else f"{summary['dev_label']} (selection)")
  lines = [f"| variant | {summary['label']}, mean ± std | 95% CI ± | {dev_header} | "
           "seeds | excluded (diverged, no model) | wall time per run (s) |",
           "|---|---|---|---|---|---|---|"]
  num = lambda mean, std, d=d: ("n/a" if np.isnan(mean) else f"{mean:.{d}f} ± {std:.{d}f}")
  for name, row in rows.items():
    ci = "n/a" if np.isnan(row["ci95"]) else f"{row['ci95']:.{d}f}"
    excluded = row.get("excluded", {})
    out = (", ".join(f"seed {s}: {why}" for s, why in excluded.items()) if excluded
           else "none")
    lines.append(f"| {name} | {num(row['mean'], row['std'])} | {ci} | "
                 f"{num(row['dev_mean'], row['dev_std'], dd)} | "
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


def plan(config_path: str, variants: Optional[Sequence[str]], seeds: Sequence[int],
         workdir: str, overrides: Optional[dict] = None, steps: Optional[int] = None
         ) -> tuple[list[str], list[tuple[str, int, ml_collections.ConfigDict, str]]]:
  """Every (variant, seed) run of a comparison, in table order.

  Returns:
    The resolved variants, and ``(variant, seed, config, run directory)`` per run
    (variants outer, seeds inner).

  Raises:
    ValueError: no variants given and the config file has no ``VARIANTS``.
  """
  module = load_config_module(config_path)
  variants = resolve_variants(module, variants, config_path)
  runs = []
  for variant in variants:
    for seed in seeds:
      config = module.get_config(variant)
      config.update_from_flattened_dict(dict(overrides or {}))
      config.seed = int(seed)
      if steps:
        _set_steps(config, steps)
      runs.append((variant, int(seed), config, os.path.join(workdir, f"{variant}_seed{seed}")))
  return variants, runs


def _hms(seconds: float) -> str:
  return time.strftime("%H:%M:%S", time.gmtime(max(seconds, 0)))


def run_share(runs: Sequence[tuple], task_index: int = 0, num_tasks: int = 1,
              log_fn: Callable[[str], None] = print) -> list[dict]:
  """Runs task ``task_index``'s share of ``runs`` (`plan`): runs ``task_index``,
  ``task_index + num_tasks``, ... (a job array: one task per index). A run finished
  with the same config is reused, an unfinished one resumed.

  Returns:
    The share's run records (summary + variant, seed, workdir, wall_seconds).

  Raises:
    ValueError: ``task_index`` not in [0, ``num_tasks``).
  """
  if not 0 <= task_index < num_tasks:
    raise ValueError(f"--task_index={task_index} must be in [0, --num_tasks={num_tasks})")
  share = [(i, r) for i, r in enumerate(runs) if i % num_tasks == task_index]
  records, walls = [], []
  for k, (i, (variant, seed, config, run_dir)) in enumerate(share):
    record = _finished_run(run_dir, config)
    where = f"run {i + 1} of {len(runs)}" + (
        f" (task {task_index} of {num_tasks}: {k + 1} of {len(share)})"
        if num_tasks > 1 else "")
    if record is not None:
      log_fn(f"== {where}: {variant}, seed {seed}: reusing {run_dir}")
    else:
      todo = sum(_finished_run(d, c) is None for _, (_, _, c, d) in share[k:])
      eta = f", ETA {_hms(np.mean(walls) * todo)}" if walls else ""
      log_fn(f"== {where}: {variant}, seed {seed} -> {run_dir}{eta}")
      start = time.time()
      summary = runner.run(config, run_dir, progress=lambda _: None)
      record = {**summary, "variant": variant, "seed": int(seed), "workdir": run_dir,
                "wall_seconds": time.time() - start}  # data, compilation, checkpoints
      walls.append(record["wall_seconds"])
      with open(os.path.join(run_dir, "compare_config.json"), "w") as f:
        f.write(config.to_json_best_effort(sort_keys=True))
      with open(os.path.join(run_dir, "compare_run.json"), "w") as f:
        json.dump(record, f, indent=2)
    records.append(record)
    key = metric_spec(record["select"])["key"]
    if record.get("status") == "diverged":
      log_fn(f"   {record['diverged_message']}")
    elif record.get(key) is None:
      log_fn(f"   {record.get('no_selected_model', 'no ' + key)}")
    else:
      log_fn(f"   {key} {record[key]:.4f}")
  return records


def aggregate(config_path: str, variants: Optional[Sequence[str]], seeds: Sequence[int],
              workdir: str, overrides: Optional[dict] = None,
              steps: Optional[int] = None, report_metric: Optional[str] = None) -> dict:
  """The table, CIs and plot from the finished run directories of a comparison: writes
  ``compare.md``, ``compare.json`` and ``compare.png`` (the table's means as bars with
  their 95% CIs) into ``workdir``; returns the payload. The test metric tabulated:
  ``report_metric``, else the config file's ``REPORT``, else the selection metric's.

  Raises:
    ValueError: some run is not finished (with this config): they are named.
  """
  variants, runs = plan(config_path, variants, seeds, workdir, overrides, steps)
  records = [(_finished_run(d, c), d) for _, _, c, d in runs]
  missing = [d for r, d in records if r is None]
  if missing:
    raise ValueError(f"{len(missing)} of {len(runs)} runs are not finished: "
                     f"{', '.join(os.path.basename(d) for d in missing)} (run their "
                     "tasks first)")
  records = [r for r, _ in records]
  if report_metric is None:  # the config file's REPORT, else the selection metric
    report_metric = getattr(load_config_module(config_path), "REPORT", None)
  summary = summarize(records, report_metric or None)
  overrides = dict(overrides or {})
  from aux_jax import provenance

  payload = {
      "metric": f"{summary['label']} of the best-on-dev model; mean ± sample std "
                "(ddof=1) over seeds, 95% CI half-width (Student's t); runs that "
                "diverged or selected no model excluded (and listed)",
      "summary": summary,
      "table": table(summary),
      "runs": records,
      "seeds": [int(s) for s in seeds],
      "variants": list(variants),
      "config": config_path,
      "config_overrides": overrides,
      "steps": steps,
      **report.provenance(),
      "provenance": provenance.run_provenance(),
  }
  report.write_results(workdir, "compare", payload)
  report.bar_chart(summary, os.path.join(workdir, "compare.png"))
  return payload


def run_all(config_path: str, variants: Optional[Sequence[str]], seeds: Sequence[int],
            workdir: str, overrides: Optional[dict] = None, steps: Optional[int] = None,
            log_fn: Callable[[str], None] = print,
            report_metric: Optional[str] = None) -> dict:
  """Runs every (variant, seed), writes compare.md / compare.json / compare.png,
  returns the payload (`aggregate`).

  Args:
    config_path: a config file with ``get_config(variant)``.
    variants: the variants (the config file's argument); None: its ``VARIANTS``;
      ``["@NAME"]``: its tuple ``NAME`` (a grid).
    seeds: the seeds (``config.seed``).
    workdir: runs go to ``<workdir>/<variant>_seed<s>``.
    overrides: ``{"dotted.field": value}`` set on every variant's config.
    steps: if set, ``optim.num_steps`` (and ``finetune.optim.num_steps``).
    log_fn: receives progress lines.
    report_metric: the test metric tabulated (`aggregate`).

  Raises:
    ValueError: no variants given and the config file has no ``VARIANTS``.
  """
  _, runs = plan(config_path, variants, seeds, workdir, overrides, steps)
  run_share(runs, log_fn=log_fn)
  return aggregate(config_path, variants, seeds, workdir, overrides, steps, report_metric)


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
  log = lambda s: print(s, flush=True)
  try:
    if FLAGS.aggregate:
      payload = aggregate(path, FLAGS.variants, seeds, FLAGS.workdir, overrides,
                          FLAGS.steps, FLAGS.report)
    elif FLAGS.num_tasks > 1:
      _, runs = plan(path, FLAGS.variants, seeds, FLAGS.workdir, overrides, FLAGS.steps)
      done = run_share(runs, FLAGS.task_index, FLAGS.num_tasks, log_fn=log)
      print(f"task {FLAGS.task_index} of {FLAGS.num_tasks}: {len(done)} runs finished; "
            "the table: the same command with --aggregate once every task has ended")
      return
    else:
      payload = run_all(path, FLAGS.variants, seeds, FLAGS.workdir, overrides,
                        FLAGS.steps, log_fn=log, report_metric=FLAGS.report)
  except lock.WorkdirBusy as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except loop.Interrupted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(128 + e.signum)
  except ValueError as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(2)
  print(payload["table"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
