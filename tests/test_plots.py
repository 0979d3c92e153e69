"""The weights-over-training plot: one line per task and panel, unused weights not drawn,
one legend naming every task."""

import matplotlib.pyplot as plt
import numpy as np

from aux_jax import plots


def test_weights_plot_draws_used_weights_and_names_every_task(tmp_path, monkeypatch):
  figures = []
  monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to inspect it
  records = [{"step": s, "weights": (np.arange(6).reshape(2, 3) * s).tolist()}
             for s in (10, 20, 30)] + [{"step": 35, "loss": 1.0}]
  used = np.array([[1, 1, 1], [1, 1, 0]], bool)  # task b does not act in module z
  path = plots.weights_over_training(
      records, str(tmp_path / "w.png"), task_names=("a", "b"), module_names=("x", "y", "z"),
      best_step=20, used=used)
  assert (tmp_path / "w.png").stat().st_size > 0 and path.endswith("w.png")
  (fig,) = figures
  axes = fig.axes
  assert [ax.get_title() for ax in axes] == ["x", "y", "z"]
  drawn = [[line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
           for ax in axes]
  assert drawn == [["a", "b"], ["a", "b"], ["a"]]
  b_in_y = [line for line in axes[1].get_lines() if line.get_label() == "b"][0]
  np.testing.assert_array_equal(b_in_y.get_ydata(), [4 * s for s in (10, 20, 30)])
  legend = axes[-1].get_legend()
  assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
