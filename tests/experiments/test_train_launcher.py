"""experiments/train.py dispatches AANG configs to run_aang and writes the workdir."""

import json
import os
import random

from configs import aang_citation_intent
from aux_jax.aang.experiment import run_aang_experiment


def _write_keyword_data(root):
  rng = random.Random(0)
  for split, n in (("train", 48), ("dev", 16), ("test", 16)):
    with open(os.path.join(root, f"{split}.jsonl"), "w") as f:
      for _ in range(n):
        label = rng.choice(["Uses", "Background"])
        word = "good" if label == "Uses" else "bad"
        f.write(json.dumps({"text": f"we use {word} tools {rng.random():.2f}",
                            "label": label}) + "\n")


def test_aang_config_runs_from_the_launcher(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  _write_keyword_data(data)
  c = aang_citation_intent.get_config("supervised")
  c.data_dir = str(data)
  c.aang.update(num_steps=30, eval_every=10, max_len=32, width=16, mlp_dim=32,
                num_heads=2, depth=1, batch_size=8, learning_rate=1e-2)
  summary = run_aang_experiment(c, str(tmp_path / "wd"))
  with open(tmp_path / "wd" / "results.json") as f:
    results = json.load(f)
  assert results["best_dev_f1"] == summary["best_dev_f1"]
  assert summary["best_dev_f1"] > 0.6  # a keyword decides the label; chance ≈ 0.5
  with open(tmp_path / "wd" / "config.json") as f:
    assert json.load(f)["aang"]["method"] == "supervised"
