"""AuxiLearn on a synthetic helpful-vs-harmful problem, through the launcher's loop: the
embedded digits problem, whose auxiliary tasks include a helpful one (more digit
images, labels = the main task's classes) and a harmful one (random labels). The
linear auxiliary network learns a clearly larger weight for the helpful task."""

import numpy as np

from aux_jax.train.loop import load_metrics, train_and_evaluate
from configs import maoal_digits


def test_linear_auxiliary_network_weights_helpful_above_harmful(tmp_path):
  c = maoal_digits.get_config("auxl")
  c.method.kwargs = {"net": "linear", "inputs": "batch", "monotone": True, "hidden": ()}
  c.model.kwargs = {"width": 8, "features": 32}
  c.optim.num_steps = 150
  c.hyper.interval = 5
  c.hyper.optimizer = "adam"
  c.hyper.lr = 0.05
  c.hyper.solver_kwargs.neumann.step = 0.1
  c.hyper.weight_decay = 0.0  # the digits AuxL decays φ by 5e-4 (MAOAL's); not here
  c.train.log_every = c.train.eval_every = 50
  c.train.checkpoint_every = 150
  summary = train_and_evaluate(c, str(tmp_path), progress=lambda _: None)
  names = summary["task_names"][1:]
  w = np.asarray(load_metrics(str(tmp_path))[-1]["weights"])  # f32[K], init 1
  helpful, harmful = w[names.index("aux_digit")], w[names.index("aux_random")]
  assert summary["hypergrad_applied"] >= 20
  assert harmful < 1.0 < helpful and helpful - harmful > 0.2, dict(zip(names, w))
