"""Flag-free helpers of the comparison launchers (importable from tests and notebooks):
loading a config module from a path, dotted config overrides, 95% confidence
intervals, Markdown result tables, provenance and writing the result files."""

import ast
import datetime
import importlib.util
import json
import os
import platform

import jax
import numpy as np


def provenance() -> dict:
  """Where and when results were measured: JAX version, machine, platform, date."""
  machine = (f"{os.cpu_count()}-core CPU" if jax.default_backend() == "cpu"
             else jax.devices()[0].device_kind)
  return {"jax_version": jax.__version__, "machine": machine,
          "platform": platform.platform(), "date": datetime.date.today().isoformat()}


def write_results(workdir: str, stem: str, payload: dict) -> None:
  """Writes ``payload`` to ``{stem}.json`` and its "table" to ``{stem}.md``."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, f"{stem}.json"), "w") as f:
    json.dump(payload, f, indent=2)
  with open(os.path.join(workdir, f"{stem}.md"), "w") as f:
    f.write(payload["table"] + "\n")


def load_config_module(path: str):
  """Imports a config file (e.g. ``configs/attittud_cifar10.py``) as a module."""
  spec = importlib.util.spec_from_file_location("aux_jax_config_module", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def apply_override(config, assignment: str) -> None:
  """Sets ``config.a.b.c = value`` from ``"a.b.c=value"`` (value parsed as a Python
  literal, else kept as a string).

  Raises:
    ValueError: no '=' or a field the config does not have.
  """
  if "=" not in assignment:
    raise ValueError(f"an override needs dotted.field=value, got {assignment!r}")
  path, text = assignment.split("=", 1)
  *parents, leaf = path.strip().split(".")
  node = config
  for i, name in enumerate(parents + [leaf]):
    if name not in node:
      raise ValueError(f"override {path}: the config has no field {name!r}")
    if i < len(parents):
      node = node[name]
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  node[leaf] = value


def ci95(values) -> tuple[float, float]:
  """Mean and half-width of the 95% confidence interval of the mean.

  Half-width = t_{0.975, n−1} · s / √n (Student's t, s the sample standard deviation
  with n − 1 degrees of freedom); nan when n < 2.
  """
  from scipy import stats  # installed with scikit-learn

  x = np.asarray(values, np.float64)
  if len(x) < 2:
    return float(x.mean()), float("nan")
  half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
  return float(x.mean()), float(half)


def ci_table(runs: list[dict], group: str = "variant", metric: str = "test_accuracy"
             ) -> str:
  """A Markdown table, one row per ``group`` value (in first-seen order): the metric
  in % as mean ± 95% CI half-width (`ci95`), the number of runs, and the mean
  ``wall_seconds`` per run."""
  lines = [f"| {group} | main-task {metric.replace('_', ' ')} (%), mean ± 95% CI | "
           "seeds | wall time per run (s) |", "|---|---|---|---|"]
  for name in dict.fromkeys(r[group] for r in runs):
    rows = [r for r in runs if r[group] == name]
    mean, half = ci95([r[metric] for r in rows])
    ci = "n/a" if np.isnan(half) else f"{100 * half:.2f}"
    secs = np.mean([r["wall_seconds"] for r in rows])
    lines.append(f"| {name} | {100 * mean:.2f} ± {ci} | {len(rows)} | {secs:.0f} |")
  return "\n".join(lines)
