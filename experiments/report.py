"""Flag-free helpers of the launchers (importable from tests and notebooks): loading a
config module from a path, 95% confidence intervals, provenance and writing result
files."""

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


def bar_chart(summary: dict, path: str) -> str:
  """The compare table as a bar chart: per variant the mean test metric with its 95%
  CI as an error bar (none for one seed), the best-on-dev variant hatched.

  Args:
    summary: `experiments.compare.summarize`'s output.
    path: the PNG to write.

  Returns:
    ``path``.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = summary["variants"]
  names = list(rows)
  means = np.array([rows[n]["mean"] for n in names], np.float64)
  cis = np.array([rows[n]["ci95"] for n in names], np.float64)
  fig, ax = plt.subplots(figsize=(max(4.0, 1.2 + 0.9 * len(names)), 3.4),
                         constrained_layout=True)
  bars = ax.bar(range(len(names)), np.nan_to_num(means),
                yerr=np.where(np.isnan(cis), 0.0, cis), capsize=4, color="tab:blue",
                alpha=0.8)
  for bar, name in zip(bars, names):
    if name == summary.get("best_on_dev") and len(names) > 1:
      bar.set_hatch("//")
  finite = means[np.isfinite(means)]
  if finite.size:  # zoom on the differences (bars of a metric near 100% look equal)
    lo = np.nanmin(means - np.nan_to_num(cis))
    hi = np.nanmax(means + np.nan_to_num(cis))
    pad = 0.15 * max(hi - lo, 1e-6)
    # Bars of a non-negative metric start at 0 unless it is far from 0 (accuracies).
    bottom = lo - pad if finite.min() < 0 or lo - pad > 0 else 0.0
    ax.set_ylim(bottom, hi + pad)
  ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel(summary["label"], fontsize=8)
  ax.set_title("mean over seeds ± 95% CI" + ("\n(hatched: best on dev)"
                                             if len(names) > 1 else ""), fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
