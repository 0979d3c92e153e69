"""experiments/aang_compare.py: overrides, the mean ± std table, per-run workdirs, reuse."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from absl import app

from aux_jax.aang import train as aang_train
from experiments import aang_compare as C

TINY = dict(max_len=32, width=16, mlp_dim=32, num_heads=2, depth=1, batch_size=8,
            learning_rate=1e-2, num_steps=10, eval_every=5, patience=5)


def test_parse_overrides():
  got = C.parse_overrides(steps=200, patience=3, sets=["meta_lr=0.1", "space=citation.all",
                                                         "use_all=False"])
  assert got == {"num_steps": 200, "patience": 3, "meta_lr": 0.1,
                 "space": "citation.all", "use_all": False}
  with pytest.raises(app.UsageError, match="name=value"):
    C.parse_overrides(sets=["meta_lr"])


def test_summarize_and_table_against_numpy():
  rng = np.random.default_rng(0)
  runs = [dict(method=m, seed=s, best_dev_f1=float(rng.random()), test_f1=float(rng.random()),
               wall_seconds=10.0 + s, best_step=50 * (s + 1), steps_run=300)
          for m in ("supervised", "aang") for s in range(3)]
  summary = C.summarize(runs)
  for m in ("supervised", "aang"):
    dev = np.array([r["best_dev_f1"] for r in runs if r["method"] == m])
    assert summary[m]["best_dev_f1"]["mean"] == pytest.approx(dev.mean())
    assert summary[m]["best_dev_f1"]["std"] == pytest.approx(np.std(dev, ddof=1))
    assert summary[m]["seeds"] == [0, 1, 2]
  text = C.table(summary)
  best = max(summary, key=lambda m: summary[m]["best_dev_f1"]["mean"])
  assert f"| {best} (best on dev) |" in text and text.count("best on dev") == 1
  row = summary["aang"]["test_f1"]
  assert f"{row['mean']:.3f} ± {row['std']:.3f}" in text


def _write_keyword_data(root):
  rng = np.random.default_rng(0)
  for split, n in (("train", 32), ("dev", 12), ("test", 12)):
    with open(os.path.join(root, f"{split}.jsonl"), "w") as f:
      for _ in range(n):
        label = ["Uses", "Background"][int(rng.integers(2))]
        word = "good" if label == "Uses" else "bad"
        f.write(json.dumps({"text": f"we use {word} tools", "label": label}) + "\n")


def _no_training_step(*args, **kwargs):
  """Stands in for `train.make_fixed_step` (a real step's compile dominates this test)."""
  del args, kwargs
  return lambda state, data: (state._replace(step=state.step + 1), {
      "loss_primary": jnp.zeros(()), "loss_aux": jnp.zeros(())})


def test_run_all_writes_per_run_workdirs_and_reuses_them(tmp_path, monkeypatch):
  monkeypatch.setattr(aang_train, "make_fixed_step", _no_training_step)
  data = tmp_path / "data"
  data.mkdir()
  _write_keyword_data(data)
  wd = tmp_path / "wd"
  args = ("configs/aang_citation_intent.py", str(data), str(wd), ["0", "1"],
          ["supervised"], TINY)
  lines = []
  payload = C.run_all(*args, log_fn=lines.append)
  with open(wd / "results.json") as f:
    assert json.load(f) == payload
  assert (wd / "results.md").read_text().strip() == payload["table"]
  assert payload["seeds"] == [0, 1] and payload["config_overrides"] == TINY
  for seed in (0, 1):
    with open(wd / f"supervised_seed{seed}" / "results.json") as f:
      res = json.load(f)
    with open(wd / f"supervised_seed{seed}" / "config.json") as f:
      cfg = json.load(f)
    assert cfg["seed"] == seed and cfg["aang"]["num_steps"] == 10
    assert cfg["aang"]["method"] == "supervised" and res["steps_run"] == 10
    run = payload["runs"][seed]
    assert run["best_dev_f1"] == res["best_dev_f1"] and run["test_f1"] == res["test_f1"]
  dev = [r["best_dev_f1"] for r in payload["runs"]]
  assert payload["summary"]["supervised"]["best_dev_f1"]["mean"] == pytest.approx(
      np.mean(dev))
  # A second call with the same config reuses both runs instead of training again.
  lines.clear()
  again = C.run_all(*args, log_fn=lines.append)
  assert sum("reusing" in s for s in lines) == 2
  assert again["runs"] == payload["runs"]
  with pytest.raises(ValueError, match="Unknown AangConfig field"):
    C.run_all(*args[:5], {"num_stepz": 3}, log_fn=lines.append)
