"""The launchers' flag-free helpers: t confidence intervals, config modules, results."""

import json
import math
import os

import ml_collections
import numpy as np
import pytest

from experiments.report import ci95, load_config_module, write_results


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


def test_config_module_and_write_results(tmp_path):
  module = load_config_module(
      os.path.join(os.path.dirname(__file__), "..", "..", "configs", "attittud_chexpert.py"))
  c = module.get_config("stl")
  assert isinstance(c, ml_collections.ConfigDict) and c.runner == "two_phase"
  write_results(str(tmp_path / "out"), "cmp", {"table": "| a |", "x": 1})
  with open(tmp_path / "out" / "cmp.md") as f:
    assert f.read() == "| a |\n"
  with open(tmp_path / "out" / "cmp.json") as f:
    assert json.load(f) == {"table": "| a |", "x": 1}
