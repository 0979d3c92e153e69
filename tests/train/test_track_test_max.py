"""``train.track_test_max``: the MAOAL paper's figure (max test accuracy over the
per-epoch evaluations) is logged as an oracle beside, never instead of, best-on-dev."""

import numpy as np
import pytest

from aux_jax.train.loop import load_metrics, train_and_evaluate
from configs import maoal_digits


def test_test_max_over_epochs_is_the_max_of_logged_test_accuracies(tmp_path):
  c = maoal_digits.get_config("stl")
  c.optim.num_steps = 40
  c.train.log_every = c.train.eval_every = 10
  c.train.checkpoint_every = 20
  assert c.train.track_test_max
  summary = train_and_evaluate(c, str(tmp_path), progress=lambda _: None)
  evals = [r for r in load_metrics(str(tmp_path)) if "dev_accuracy" in r]
  test = [r["test_accuracy"] for r in evals]
  dev = [r["dev_accuracy"] for r in evals]
  assert len(test) == 4
  assert summary["test_accuracy_max_over_epochs"] == pytest.approx(max(test))
  assert summary["test_accuracy_max_over_epochs_step"] == evals[int(np.argmax(test))]["step"]
  assert summary["best_step"] == evals[int(np.argmax(dev))]["step"]  # selection on dev
