"""Plots of learned auxiliary weights (PNG, matplotlib's non-interactive backend)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def weights_over_training(records: Sequence[dict], path: str, *,
                          task_names: Sequence[str], module_names: Sequence[str],
                          title: str = "", best_step: int | None = None,
                          used=None) -> str:
  """Line plots of the logged ``"weights"`` of every auxiliary task over training.

  Task × module weights (f32[K, M] per record, e.g. MAOAL's ω) get one panel per
  module; per-task weights (f32[K], e.g. AuxL's effective weights) one panel. Each
  task is one line (the same colour in every panel), so a task the method learns to
  ignore is seen sinking towards zero.

  Args:
    records: metric records with ``"step"`` and ``"weights"``.
    path: the PNG to write.
    task_names: the K auxiliary task names.
    module_names: the M module names.
    title: the figure's title.
    best_step: the selected (best-on-dev) step, marked by a dotted vertical line.
    used: optional bool[K, M], which task × module weights act (e.g. MAOAL's main-head
      column only for tasks trained through the main head); the others are not drawn.

  Returns:
    ``path``.

  Raises:
    ValueError: no record has weights.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = [r for r in records if "weights" in r]
  if not rows:
    raise ValueError("no logged weights to plot")
  steps = np.array([r["step"] for r in rows])
  weights = np.array([r["weights"] for r in rows], np.float32)
  if weights.ndim == 2:  # [records, K] -> one panel
    weights, panels = weights[:, :, None], ["per task (whole network)"]
  else:                  # [records, K, M]
    panels = list(module_names)
  fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels) + 1.6, 3.2),
                           sharey=True, squeeze=False, constrained_layout=True)
  colors = plt.get_cmap("tab10")
  handles = {}  # task -> a line, for one legend of every task (a panel may lack some)
  for m, (ax, panel) in enumerate(zip(axes[0], panels)):
    for k, name in enumerate(task_names):
      if used is not None and not np.asarray(used)[k, m]:
        continue
      handles[k], = ax.plot(steps, weights[:, k, m], color=colors(k % 10), label=name,
                            lw=1.6)
    if best_step is not None:
      ax.axvline(best_step, color="0.4", ls=":", lw=1)
    ax.set_title(panel, fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("learned weight")
  order = sorted(handles)
  axes[0][-1].legend([handles[k] for k in order], [task_names[k] for k in order],
                     fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5),
                     title="auxiliary task" + ("\n(dotted: selected step)"
                                               if best_step is not None else ""),
                     title_fontsize=7)
  fig.suptitle(title, fontsize=10)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
