"""experiments/compare.py: seeds, the metric by selection, the table, runs end to end, reuse."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import compare as C
from experiments.report import load_config_module

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TOY = os.path.join(ROOT, "configs", "slgrad_toy.py")
# A tiny toy problem: 100 examples (60/20/20), 8 inputs, 3 steps.
TINY = {"data.kwargs.num_samples": 100, "data.kwargs.input_dim": 8,
        "data.batch_size": 8, "data.dev_batch_size": 8, "data.kwargs.noise": 0.2}


def test_parse_seeds():
  assert C.parse_seeds(["3"]) == [0, 1, 2]
  assert C.parse_seeds(["4", "1", "7"]) == [4, 1, 7]
  for bad in (["0"], ["a"], ["1", "1"]):
    with pytest.raises(ValueError):
      C.parse_seeds(bad)


def test_accuracy_table_mean_sample_std_ci_and_dev():
  runs = [{"variant": m, "seed": s, "select": "accuracy", "test_accuracy": a,
           "best_dev_accuracy": d, "wall_seconds": w}
          for m, s, a, d, w in [("stl", 0, 0.9, 0.8, 10.0), ("maoal", 0, 0.95, 0.9, 40.0),
                                ("stl", 1, 0.92, 0.84, 14.0), ("maoal", 1, 0.96, 0.9, 50.0)]]
  lines = C.table(C.summarize(runs)).splitlines()
  assert lines[0].startswith("| variant | main-task test accuracy (%), mean ± std |")
  # Percent, 2 decimals, sample std (ddof=1): stl 91 ± 1.41; CI half-width
  # t_{0.975,1} · s / √2 with t_{0.975,1} = 12.706 (printed tables).
  s = np.std([90.0, 92.0], ddof=1)
  assert lines[2] == (f"| stl | 91.00 ± {s:.2f} | {12.7062 * s / np.sqrt(2):.2f} | "
                      f"82.00 ± {np.std([80.0, 84.0], ddof=1):.2f} | 2 | none | 12 |")
  assert lines[3].startswith("| maoal | 95.50 ± ")
  # The best mean dev score names the selection (maoal: dev 90 > 82).
  assert lines[-1].endswith(": maoal")


def test_named_grid_of_variants():
  module = load_config_module(os.path.join(ROOT, "configs", "aang_citation_intent.py"))
  assert C.resolve_variants(module, ["@META_GRID"]) == list(module.META_GRID)
  assert C.resolve_variants(module, None) == list(module.VARIANTS)
  assert C.resolve_variants(module, ["aang", "stl"]) == ["aang", "stl"]
  with pytest.raises(ValueError, match="no tuple NOPE"):
    C.resolve_variants(module, ["@NOPE"])


def test_grid_selection_is_on_dev_never_test():
  """Variant b has the better test score, a the better dev score: a is selected; for a
  lower-is-better metric the lower dev value wins."""
  runs = [{"variant": v, "seed": 0, "select": "macro_f1", "test_macro_f1": t,
           "best_dev_macro_f1": d, "wall_seconds": 1.0}
          for v, t, d in (("a", 0.5, 0.7), ("b", 0.9, 0.6))]
  assert C.summarize(runs)["best_on_dev"] == "a"
  runs = [{"variant": v, "seed": 0, "select": "neg_mse", "test_mse": t,
           "best_dev_neg_mse": -d, "wall_seconds": 1.0}
          for v, t, d in (("a", 0.5, 0.1), ("b", 0.1, 0.2))]
  assert C.summarize(runs)["best_on_dev"] == "a"


def test_a_variant_with_diverged_seeds_is_not_the_dev_pick():
  """b's surviving seed has the better dev score, but b lost a seed to divergence: the
  pick is a, whose every run finished."""
  ok = {"select": "accuracy", "status": "completed", "wall_seconds": 1.0}
  runs = [{**ok, "variant": "a", "seed": s, "test_accuracy": 0.8, "best_dev_accuracy": 0.8}
          for s in (0, 1)]
  runs += [{**ok, "variant": "b", "seed": 0, "test_accuracy": 0.9, "best_dev_accuracy": 0.95},
           {**ok, "variant": "b", "seed": 1, "status": "diverged", "test_accuracy": 0.1,
            "best_dev_accuracy": 0.1}]
  assert C.summarize(runs)["best_on_dev"] == "a"
  assert C.summarize(runs[2:])["best_on_dev"] == "b"  # nothing complete: still a pick


def test_diverged_and_unselected_runs_are_marked_and_left_out_of_the_means():
  ok = {"select": "accuracy", "status": "completed", "wall_seconds": 1.0}
  runs = [{**ok, "variant": "maoal", "seed": 0, "test_accuracy": 0.9, "best_dev_accuracy": 0.8},
          {**ok, "variant": "maoal", "seed": 1, "test_accuracy": 0.7, "best_dev_accuracy": 0.6},
          # Diverged after selecting a model at an earlier evaluation: still left out.
          {**ok, "variant": "maoal", "seed": 2, "status": "diverged", "test_accuracy": 0.1,
           "best_dev_accuracy": 0.1, "diverged_step": 57},
          {**ok, "variant": "gcs", "seed": 0, "status": "diverged", "best_dev_accuracy": None},
          {**ok, "variant": "gcs", "seed": 1, "best_dev_accuracy": None}]  # no model
  summary = C.summarize(runs)
  row = summary["variants"]["maoal"]
  assert row["mean"] == pytest.approx(80.0) and row["seeds"] == [0, 1]
  assert row["excluded"] == {2: "diverged"}
  assert np.isnan(summary["variants"]["gcs"]["mean"])
  lines = C.table(summary).splitlines()
  assert "excluded (diverged, no model)" in lines[0]
  assert lines[2].startswith("| maoal | 80.00 ± ") and "| 2 | seed 2: diverged |" in lines[2]
  assert lines[3].startswith("| gcs | n/a | n/a | n/a | 0 | "
                             "seed 0: diverged, seed 1: no model |")


def test_lower_is_better_metric_from_neg_select():
  spec = C.metric_spec("neg_mse")
  assert spec["key"] == "test_mse" and spec["lower_is_better"] and spec["scale"] == 1.0
  assert "MSE (lower is better)" in spec["label"]
  assert C.metric_spec("miou")["key"] == "test_miou"
  assert not C.metric_spec("miou")["lower_is_better"]
  runs = [{"variant": "a", "select": "neg_mse", "test_mse": v, "best_dev_neg_mse": -v,
           "wall_seconds": 1.0} for v in (0.01, 0.03)]
  row = C.table(C.summarize(runs)).splitlines()[2]
  # The dev value (selected as −MSE) is shown as a positive MSE.
  assert row.startswith(f"| a | 0.0200 ± {np.std([0.01, 0.03], ddof=1):.4f} | ")
  assert row.split("|")[4].strip().startswith("0.0200 ± ")
  with pytest.raises(ValueError, match="different dev metrics"):
    C.summarize(runs + [{"variant": "b", "select": "accuracy", "test_accuracy": 0.5,
                         "best_dev_accuracy": 0.5, "wall_seconds": 1.0}])


def test_report_another_test_metric_of_models_selected_on_the_dev_loss():
  # The digits config selects on the dev loss and tabulates the test accuracy (REPORT).
  runs = [{"variant": v, "select": "neg_loss", "test_accuracy": acc, "test_loss": loss,
           "best_dev_neg_loss": -dev, "wall_seconds": 1.0}
          for v, acc, loss, dev in (("a", 0.9, 0.3, 0.2), ("a", 0.8, 0.5, 0.4),
                                    ("b", 0.95, 0.1, 0.5), ("b", 0.97, 0.1, 0.7))]
  summary = C.summarize(runs, report_metric="accuracy")
  assert summary["variants"]["a"]["mean"] == pytest.approx(85.0)
  assert summary["variants"]["b"]["values"] == pytest.approx([95.0, 97.0])
  # The selection stays the dev loss: a (0.3) beats b (0.6) though b tests higher.
  assert summary["variants"]["a"]["dev_mean"] == pytest.approx(0.3)
  assert summary["best_on_dev"] == "a"
  lines = C.table(summary).splitlines()
  assert "test accuracy (%)" in lines[0] and "dev loss (lower is better) (selection)" in lines[0]
  assert lines[2].startswith("| a | 85.00 ± ") and "| 0.3000 ± " in lines[2]
  plain = C.summarize(runs)  # default: the selection metric's test counterpart
  assert plain["key"] == "test_loss" and plain["variants"]["a"]["mean"] == pytest.approx(0.4)


def test_run_all_on_the_toy_config_then_reuse_from_the_command_line(tmp_path):
  workdir = str(tmp_path / "cmp")
  logs = []
  payload = C.run_all(TOY, ["stl", "slgrad"], [0, 1], workdir, overrides=TINY, steps=3,
                      log_fn=logs.append)
  runs = payload["runs"]
  assert [(r["variant"], r["seed"]) for r in runs] == [
      ("stl", 0), ("stl", 1), ("slgrad", 0), ("slgrad", 1)]
  for r in runs:
    with open(os.path.join(r["workdir"], "test_metrics.json")) as f:
      tm = json.load(f)
    with open(os.path.join(r["workdir"], "config.json")) as f:
      cfg = json.load(f)
    assert tm["select"] == "neg_mse" and tm["test_mse"] == pytest.approx(-tm["test_neg_mse"])
    assert cfg["seed"] == r["seed"] and cfg["optim"]["num_steps"] == 3
    assert cfg["data"]["kwargs"]["num_samples"] == 100   # the overrides reached the run
    assert cfg["data"]["kwargs"]["noise"] == 0.2
    assert r["test_mse"] == tm["test_mse"]
  row = payload["summary"]["variants"]["slgrad"]
  mses = [r["test_mse"] for r in runs if r["variant"] == "slgrad"]
  assert row["mean"] == pytest.approx(np.mean(mses))
  assert row["std"] == pytest.approx(np.std(mses, ddof=1))
  assert runs[0]["test_mse"] != runs[1]["test_mse"]   # the seed reached the run
  lines = payload["table"].splitlines()
  assert "test MSE (lower is better)" in lines[0]
  assert lines[3].startswith(f"| slgrad | {np.mean(mses):.4f} ± {np.std(mses, ddof=1):.4f} | ")
  with open(os.path.join(workdir, "compare.md")) as f:
    assert f.read() == payload["table"] + "\n"
  with open(os.path.join(workdir, "compare.json")) as f:
    saved = json.load(f)
  assert saved["seeds"] == [0, 1] and saved["config_overrides"] == TINY
  assert saved["jax_version"] and saved["machine"] and saved["date"]

  assert all(r["status"] == "completed" for r in runs) and "| none |" in lines[3]

  # The launcher with --config.x=y overrides finds the same configs: every run is reused.
  cmd = [sys.executable, "-m", "experiments.compare", f"--config={TOY}", "--seeds=0,1",
         "--variants=stl,slgrad", "--steps=3", f"--workdir={workdir}"]
  cmd += [f"--config.{k}={v}" for k, v in TINY.items()]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.count("reusing") == 4, out.stdout
  assert payload["table"] in out.stdout


def test_run_all_marks_a_diverged_run(tmp_path):
  logs = []
  payload = C.run_all(TOY, ["stl"], [0], str(tmp_path / "cmp"),
                      overrides={**TINY, "optim.lr": 1e30}, steps=3, log_fn=logs.append)
  assert payload["runs"][0]["status"] == "diverged"
  assert any(l.strip().startswith("diverged: non-finite") for l in logs), logs
  assert payload["table"].splitlines()[2].startswith(
      "| stl | n/a | n/a | n/a | 0 | seed 0: diverged |")


def _without_wall(payload: dict) -> tuple:
  """The table's numbers and text without the wall-time column (timing differs)."""
  rows = {v: {k: x for k, x in row.items() if k != "wall_seconds"}
          for v, row in payload["summary"]["variants"].items()}
  text = [l.rsplit("|", 2)[0] for l in payload["table"].splitlines()]
  return rows, payload["summary"]["best_on_dev"], text


def test_a_job_array_then_aggregate_equals_the_unsharded_table(tmp_path):
  variants, seeds = ["stl", "slgrad"], [0, 1]
  whole = C.run_all(TOY, variants, seeds, str(tmp_path / "whole"), overrides=TINY,
                    steps=3, log_fn=lambda _: None)
  assert os.path.exists(tmp_path / "whole" / "compare.png")

  workdir = str(tmp_path / "array")
  _, runs = C.plan(TOY, variants, seeds, workdir, TINY, 3)
  logs = {}
  for task in (1, 0):  # array tasks finish in any order
    logs[task] = []
    done = C.run_share(runs, task, 2, log_fn=logs[task].append)
    assert [(r["variant"], r["seed"]) for r in done] == [
        (v, s) for i, (v, s, _, _) in enumerate(runs) if i % 2 == task]
    if task == 1:  # before every task has ended: no table
      with pytest.raises(ValueError, match="2 of 4 runs are not finished: stl_seed0"):
        C.aggregate(TOY, variants, seeds, workdir, TINY, 3)
  assert logs[0][0].startswith("== run 1 of 4 (task 0 of 2: 1 of 2): stl, seed 0 -> ")
  assert ", ETA " in logs[0][2]  # the second run of the share: the first one timed
  aggregated = C.aggregate(TOY, variants, seeds, workdir, TINY, 3)
  assert _without_wall(aggregated) == _without_wall(whole)
  assert os.path.exists(os.path.join(workdir, "compare.png"))
  assert aggregated["provenance"]["versions"]["jax"]

  # Rerunning a task reuses its finished runs.
  again = []
  C.run_share(runs, 1, 2, log_fn=again.append)
  assert sum("reusing" in l for l in again) == 2


def test_aggregate_from_the_command_line_names_missing_runs(tmp_path):
  cmd = [sys.executable, "-m", "experiments.compare", f"--config={TOY}", "--seeds=0,1",
         "--variants=stl", "--steps=3", f"--workdir={tmp_path}", "--aggregate"]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: 2 of 2 runs are not finished: stl_seed0, stl_seed1 (run their tasks "
      "first)"]
