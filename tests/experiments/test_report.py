"""The launchers' flag-free helpers: t confidence intervals, the Markdown table, overrides."""

import math
import os

import ml_collections
import numpy as np
import pytest

from experiments.report import apply_override, ci95, ci_table, load_config_module


def test_ci95_against_t_table_values():
  # Student's t quantiles t_{0.975, n-1} from printed tables: n = 3 → 4.3027, n = 5 → 2.7764.
  x = [0.5, 0.6, 0.7]
  mean, half = ci95(x)
  assert mean == pytest.approx(0.6)
  assert half == pytest.approx(4.3027 * 0.1 / math.sqrt(3), rel=1e-4)
  y = [0.81, 0.79, 0.84, 0.80, 0.86]
  s = math.sqrt(sum((v - np.mean(y)) ** 2 for v in y) / 4)
  assert ci95(y)[1] == pytest.approx(2.7764 * s / math.sqrt(5), rel=1e-4)
  assert math.isnan(ci95([0.3])[1])


def test_ci_table_rows():
  runs = [{"variant": v, "test_accuracy": a, "wall_seconds": 10.0 * i}
          for i, (v, a) in enumerate([("b", 0.5), ("a", 0.9), ("b", 0.7), ("b", 0.6)])]
  lines = ci_table(runs).splitlines()
  assert len(lines) == 4 and lines[0].startswith("| variant |")
  half = 4.3027 * 0.1 / math.sqrt(3) * 100
  assert lines[2] == f"| b | 60.00 ± {half:.2f} | 3 | {np.mean([0, 20, 30]):.0f} |"
  assert lines[3] == "| a | 90.00 ± n/a | 1 | 10 |"


def test_apply_override_and_config_module():
  module = load_config_module(
      os.path.join(os.path.dirname(__file__), "..", "..", "configs", "attittud_chexpert.py"))
  c = module.get_config("attittud_100")
  apply_override(c, "data.kwargs.primary_dir=/data/x")
  apply_override(c, "optim.num_steps=7")
  apply_override(c, "method.kwargs.lambdas=(1.0, 0.5, -1.0)")
  assert c.data.kwargs.primary_dir == "/data/x" and c.optim.num_steps == 7
  assert tuple(c.method.kwargs.lambdas) == (1.0, 0.5, -1.0)
  with pytest.raises(ValueError, match="no field 'nope'"):
    apply_override(c, "data.nope=1")
  with pytest.raises(ValueError, match="dotted.field=value"):
    apply_override(ml_collections.ConfigDict(), "seed")
