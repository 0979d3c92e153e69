"""CPU smoke run of benchmarks/roberta_step.py at a tiny size (the timing is not checked)."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_roberta_step_benchmark_reports_throughput():
  spec = importlib.util.spec_from_file_location(
      "roberta_step_benchmark", os.path.join(ROOT, "benchmarks", "roberta_step.py"))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  r = bench.run(size="tiny", batch=2, seq_len=8, repeats=1)
  assert r["tokens_per_s"] > 0 and r["min_ms"] <= r["median_ms"]
  assert r["xla_step_bytes"] > 0 and r["process_max_rss_bytes"] > 0
  assert r["device"] and r["jax"] and r["params"] > 0 and r["loss"] >= 0
