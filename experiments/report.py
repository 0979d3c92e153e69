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
