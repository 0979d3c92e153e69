"""Plots of learned auxiliary weights (PNG, matplotlib's non-interactive backend)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def weights_heatmap(records: Sequence[dict], path: str, *, task_names: Sequence[str],
                    module_names: Sequence[str], title: str = "", snapshots: int = 4
                    ) -> str:
  """Heatmaps of the logged ``"weights"`` over training.

  Task × module weights (f32[K, M] per record, e.g. MAOAL's ω) are drawn as one
  K × M heatmap at each of ``snapshots`` evenly spaced logged steps; per-task weights
  (f32[K], e.g. AuxL's effective weights) as one step × task heatmap.

  Args:
    records: metric records with ``"step"`` and ``"weights"``.
    path: the PNG to write.
    task_names: the K auxiliary task names.
    module_names: the M module names.

  Returns:
    ``path``.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = [r for r in records if "weights" in r]
  if not rows:
    raise ValueError("no logged weights to plot")
  steps = np.array([r["step"] for r in rows])
  weights = np.array([r["weights"] for r in rows], np.float32)
  if weights.ndim == 3:  # [records, K, M]
    picks = np.unique(np.linspace(0, len(rows) - 1, snapshots).round().astype(int))
    vmax = max(float(weights.max()), 1e-6)
    fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks) + 1, 3.2),
                             squeeze=False, constrained_layout=True)
    for ax, i in zip(axes[0], picks):
      im = ax.imshow(weights[i], vmin=0.0, vmax=vmax, cmap="viridis", aspect="auto")
      ax.set_title(f"step {steps[i]}")
      ax.set_xticks(range(len(module_names)), module_names, rotation=60, fontsize=7)
      ax.set_yticks(range(len(task_names)), task_names, fontsize=7)
    fig.colorbar(im, ax=axes[0].tolist(), label="ω = ReLU(W)")
  else:  # [records, K]
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    im = ax.imshow(weights.T, cmap="viridis", aspect="auto",
                   extent=(steps[0], steps[-1], len(task_names) - 0.5, -0.5))
    ax.set_yticks(range(len(task_names)), task_names, fontsize=7)
    ax.set_xlabel("step")
    fig.colorbar(im, ax=ax, label="weight")
  fig.suptitle(title)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
