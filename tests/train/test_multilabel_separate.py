"""A multi-label main task with its own images (ATTITTUD's CheXpert shape): the
trainer's losses and metrics against NumPy and scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aux_jax.data.multitask import MultiTaskData, decode_multilabel, encode_multilabel
from aux_jax.models import get_backbone
from aux_jax.models.heads import apply_head
from aux_jax.models.multitask import single_features
from aux_jax.train.experiment import build_experiment
from configs import common


def _data(rng):
  def images(n):
    return rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)

  y_main = encode_multilabel(rng.integers(0, 2, (24, 3)))
  y_aux = rng.integers(0, 4, 24).astype(np.int32)
  return MultiTaskData(
      train_images=np.stack([images(24), images(24)]),
      train_labels=np.stack([y_main, y_aux]), train_counts=np.array([24, 24], np.int32),
      num_classes=np.array([3, 4], np.int32),
      dev_images=images(10), dev_labels=encode_multilabel(rng.integers(0, 2, (10, 3))),
      test_images=images(30), test_labels=encode_multilabel(rng.integers(0, 2, (30, 3))),
      task_names=("findings", "aux"), mean=np.array([128.0], np.float32),
      std=np.array([64.0], np.float32), task_kinds=("multilabel", "classification"))


def _config():
  c = common.base()
  c.data = common.data("unused", batch_size=6, dev_batch_size=5, eval_batch_size=8)
  c.model = common.model("small_cnn", width=4, features=8)
  c.method = common.method("equal")
  c.optim = common.optim("sgd", lr=0.1, num_steps=10)
  c.hyper = common.hyper()
  c.train = common.train(log_every=5, eval_every=5, checkpoint_every=10)
  return c


def _sigmoid_bce(z, y):
  p = 1 / (1 + np.exp(-z.astype(np.float64)))
  return np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), -1)


def test_multilabel_main_task_losses_and_metrics():
  data = _data(np.random.default_rng(0))
  exp = build_experiment(_config(), data)
  assert exp.problem.spec.kinds == ("multilabel", "classification")
  assert exp.select == "auc"
  state = exp.init()
  # Each task's batch through the backbone alone (BatchNorm per task chunk).
  net = get_backbone("small_cnn", width=4, features=8)
  v = {"params": state.params["backbone"], "batch_stats": state.batch_stats}

  @jax.jit
  def step_losses(state):
    losses = exp.losses_at(state, 2)
    logits = [apply_head(state.params["heads"], t, single_features(
        net, v, losses.inputs[t], train=True)[0]) for t in range(2)]
    return losses.per_sample(state.params)[0], logits, losses.targets, losses.dev(
        state.params)

  rows, logits, targets, dev_loss = step_losses(state)
  for t in range(2):
    z = np.asarray(logits[t])
    if t == 0:
      want = _sigmoid_bce(z[:, :3], decode_multilabel(np.asarray(targets[0]), 3))
    else:
      zt = z[:, :4].astype(np.float64)
      lse = np.log(np.exp(zt).sum(-1))
      want = lse - zt[np.arange(len(zt)), np.asarray(targets[1])]
    np.testing.assert_allclose(rows[t], want, rtol=1e-5, atol=1e-6)

  metrics = exp.evaluate(exp.model(state), "test")
  z = np.asarray(jax.jit(lambda v: apply_head(state.params["heads"], 0, net.apply(
      v, data.preprocess(data.test_images), train=False)))(v))[:, :3]
  y = decode_multilabel(data.test_labels, 3)
  assert metrics["test_auc"] == pytest.approx(roc_auc_score(y, z), abs=1e-6)
  assert metrics["test_loss"] == pytest.approx(_sigmoid_bce(z, y).mean(), rel=1e-5)
  for l in range(3):
    assert metrics[f"test_auc_label{l}"] == pytest.approx(roc_auc_score(y[:, l], z[:, l]),
                                                          abs=1e-6)
  assert np.isfinite(float(dev_loss))
  new_state, _ = exp.lower_step(state)
  assert np.all(np.isfinite(jax.tree.leaves(jax.tree.map(jnp.sum, new_state.params))))
