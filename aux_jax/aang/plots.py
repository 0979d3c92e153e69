"""Plot of AANG's learned objective weights per axis over training (PNG).

One panel per axis of the factored space (I input, T transform, R representation,
O output; Dery et al., ICLR 2023), one line per axis value: the weight of that value
versus the training step, as recorded by `aux_jax.aang.experiment.axis_history`
(``"marginal"``: the share of ``softmax(z)`` over the valid objectives on that value;
``"factor_softmax"``: ``softmax(W_axis)``). A last panel shows the primary/auxiliary
balance ``softmax(beta)`` when it was recorded.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from aux_jax.aang.space import AXES

_LETTERS = dict(zip(AXES, "ITRO"))
KINDS = ("marginal", "factor_softmax")


def axis_weights_plot(history: Sequence[Mapping], axis_names: Mapping[str, Sequence[str]],
                      path: str, *, kind: str = "marginal", title: str = "",
                      balance: bool = True) -> str:
  """Draws the per-axis weights of ``history`` against the step and writes ``path``.

  Args:
    history: records ``{"step", kind: {axis: [w per value]}, "balance"?: [a_prim, a_aux]}``
      (`aux_jax.aang.experiment.axis_history`), in step order.
    axis_names: ``{axis: [value names]}`` for the four axes of `space.AXES`.
    path: the PNG to write.
    kind: ``"marginal"`` or ``"factor_softmax"``.
    title: figure title.
    balance: add a panel of the primary/auxiliary balance if recorded.

  Returns:
    ``path``.
  """
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
  if not history:
    raise ValueError("no recorded axis weights to plot (only AANG runs record them).")
  missing = [a for a in AXES if a not in axis_names or a not in history[0].get(kind, {})]
  if missing:
    raise ValueError(f"axis weights for {missing} missing; need axes {AXES}.")
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = np.array([r["step"] for r in history])
  with_balance = balance and all("balance" in r for r in history)
  panels = len(AXES) + int(with_balance)
  fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 3.2), sharex=True)
  for ax, axis in zip(axes, AXES):
    w = np.array([r[kind][axis] for r in history], np.float64)  # [records, |axis|]
    names = list(axis_names[axis])
    if w.shape[1] != len(names):
      raise ValueError(f"axis {axis!r}: {w.shape[1]} weights but {len(names)} names.")
    for j, name in enumerate(names):
      ax.plot(steps, w[:, j], marker=".", label=name)
    ax.set_title(f"{_LETTERS[axis]}: {axis}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.legend(fontsize=7, loc="best")
  axes[0].set_ylabel("weight" if kind == "marginal" else "softmax(W_axis)")
  if with_balance:
    b = np.array([r["balance"] for r in history], np.float64)
    ax = axes[-1]
    ax.plot(steps, b[:, 0], marker=".", label="primary")
    ax.plot(steps, b[:, 1], marker=".", label="auxiliary")
    ax.set_title("balance softmax(beta)")
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.legend(fontsize=7, loc="best")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
