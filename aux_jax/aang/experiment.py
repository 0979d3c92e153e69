"""One AANG experiment from a config into a workdir (the launcher's "aang" runner).

Kept out of ``experiments/train.py`` so that other drivers (``experiments/aang_compare``)
can import it without defining that script's absl flags a second time.
"""

from __future__ import annotations

import json
import os
from typing import Callable

from aux_jax.aang.data import load_jsonl_dir
from aux_jax.aang.plots import axis_weights_plot
from aux_jax.aang.train import run_aang


def run_aang_experiment(config, workdir: str,
                        log_fn: Callable[[str], None] | None = print) -> dict:
  """Runs ``config.aang`` on ``config.data_dir`` and writes the workdir.

  Writes ``config.json`` (the resolved config), ``results.json`` (`train.run_aang`'s
  output without the parameters) and, for the "aang" method, ``aang_weights.png`` (the
  learned objective weights per axis over training, `plots.axis_weights_plot`).

  Args:
    config: ``ml_collections.ConfigDict`` with ``seed``, ``data_dir`` (a directory of
      train/dev/test.jsonl) and ``aang`` (`train.AangConfig` fields).
    workdir: output directory (created).
    log_fn: receives one progress line per evaluation (None: silent).

  Returns:
    ``{"best_dev_f1", "test_f1", "best_step"}``.
  """
  if not config.data_dir:
    raise ValueError("set config.data_dir (--config.data_dir) to a directory with "
                     "train/dev/test.jsonl")
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  result = run_aang(config.aang, load_jsonl_dir(config.data_dir), seed=config.seed,
                    log_fn=log_fn)
  summary = {k: v for k, v in result.items() if k != "best_params"}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2, default=str)
  if summary.get("axis_weights_history"):
    axis_weights_plot(summary["axis_weights_history"], summary["axis_names"],
                      os.path.join(workdir, "aang_weights.png"),
                      title=f"AANG objective weights per axis (seed {config.seed})")
  return {k: summary[k] for k in ("best_dev_f1", "test_f1", "best_step")}
