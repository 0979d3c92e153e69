"""The CIFAR-100/20 experiment end to end on tfds mock data (tiny ResNet, a few steps)."""

import numpy as np

from aux_jax.data import cifar100_20, get_dataset
from aux_jax.train.experiment import build_experiment
from configs import maoal_cifar100_20


def test_cifar100_20_maoal_pipeline_on_mock_data():
  c = maoal_cifar100_20.get_config("maoal")
  c.model.kwargs.width = 2
  c.model.kwargs.stage_sizes = (1, 1, 1, 1)  # compile time: the pipeline, not the depth
  c.data.batch_size = 4
  c.data.dev_batch_size = 2
  c.hyper.interval = 1
  with cifar100_20.mock_cifar100(per_fine_train=8, per_fine_test=2):
    data = get_dataset(c.data.name, **dict(c.data.kwargs))
  assert data.num_tasks == 11 and data.image_shape == (32, 32, 3)
  assert data.task_names[0].endswith("14") or "14" in data.task_names[0]
  exp = build_experiment(c, data)
  assert exp.partition.module_names == ("stem", "stage1", "stage2", "stage3", "stage4")
  state = exp.init()
  assert state.method.phi.shape == (10, 5)
  before = state.params
  state, metrics = exp.lower_step(state)
  assert np.isfinite(float(metrics["loss_main"]))
  state, upper = exp.upper_step(state)
  assert int(state.step) == 1
  assert int(upper["hypergrad_skipped"]) in (0, 1)
  changed = [not np.allclose(a, b) for a, b in
             zip(np.asarray(before["heads"]["kernel"]), np.asarray(state.params["heads"]["kernel"]))]
  assert all(changed)  # every task's own head was trained
  assert 0.0 <= exp.evaluate(exp.model(state), "test")["test_accuracy"] <= 1.0
