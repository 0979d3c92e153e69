"""CPU smoke run of benchmarks/steps.py with tiny sizes (the timings are not checked)."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_steps_benchmark_reports_every_phase():
  spec = importlib.util.spec_from_file_location(
      "steps_benchmark", os.path.join(ROOT, "benchmarks", "steps.py"))
  steps = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(steps)
  lines = []
  records = steps.run(batch=2, dev_batch=2, width=2, repeats=1, interval=2,
                      num_tasks=3, stage_sizes=(1, 1, 1, 1), print_fn=lines.append)
  phases = [r["phase"] for r in records]
  assert phases == ["stl", "equal", "gcs", "maoal_lower", "maoal_upper",
                    "maoal_iteration", "auxl_lower", "auxl_upper"]
  assert len(lines) == len(records)
  equal = next(r for r in records if r["phase"] == "equal")
  assert equal["ratio_to_equal"] == 1.0
  for r in records:
    assert r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"]
    assert r["device"] and r["jax"] and r["batch_per_task"] == 2
