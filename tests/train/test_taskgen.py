"""AuxiLearn task generation end to end on mock CIFAR-10 (tiny small_cnn, a few steps),
through the method API (`aux_jax.methods.taskgen` in the one training loop).

The hypergradient itself is checked against dense algebra in test_taskgen_hypergrad.py."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from aux_jax.models.labeler import Labeler, subclass_usage
from aux_jax.train.experiment import build_experiment, load_data
from aux_jax.train.loop import load_metrics, train_and_evaluate
from configs import auxilearn_taskgen_cifar10, auxilearn_taskgen_pet

K = 5
STEPS, INTERVAL = 4, 2


def _tiny_config():
  c = auxilearn_taskgen_cifar10.get_config()
  c.model.name = "small_cnn"
  c.model.kwargs = {"width": 2, "features": 8}
  c.method.kwargs.labeler_features = (4,)
  c.data.batch_size, c.data.dev_batch_size, c.data.eval_batch_size = 8, 4, 16
  c.optim.num_steps = STEPS
  c.hyper.interval = INTERVAL
  c.hyper.lr = 1e-2
  c.train.log_every = 1
  c.train.eval_every = 2
  c.train.checkpoint_every = STEPS
  return c


@pytest.fixture(scope="module")
def built():
  c = _tiny_config()
  with tfds.testing.mock_data(num_examples=40):
    data = load_data(c)
  return c, build_experiment(c, data)


def _soft_labels(exp, phi, split):
  data = exp.data
  x = data.preprocess(getattr(data, f"{split}_inputs"))
  y = getattr(data, f"{split}_targets")[0]
  labeler = Labeler(10, K, features=(4,))
  return np.asarray(labeler.apply({"params": phi["labeler"]}, x, y)), np.asarray(y)


def test_upper_step_moves_only_the_labeler_and_labels_stay_in_class(built):
  _, exp = built
  assert exp.method.learnable
  s0 = exp.init()
  s1, m = exp.lower_step(s0)
  assert np.isfinite(float(m["loss_main"])) and np.isfinite(float(m["loss_aux_mean"]))
  # Uniform labels over 5 sub-classes at most have entropy log 5.
  assert 0 < float(m["label_entropy"]) <= np.log(K) + 1e-5
  same = lambda a, b: all(np.array_equal(x, y) for x, y in
                          zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert same(s0.method.phi, s1.method.phi) and not same(s0.params, s1.params)
  s2, up = exp.upper_step(s1)
  assert int(up["hypergrad_skipped"]) == 0 and float(up["hypergrad_norm"]) > 0
  assert same(s1.params, s2.params)
  for a, b in zip(jax.tree.leaves(s1.method.phi), jax.tree.leaves(s2.method.phi)):
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 0  # every φ leaf moved

  q, y = _soft_labels(exp, s2.method.phi, "dev")
  assert q.shape == (len(y), 10 * K)
  inside = (np.arange(10 * K)[None] // K) == y[:, None]
  assert (q[~inside] == 0).all() and (q[inside] > 0).all()
  np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)


def test_run_writes_workdir_and_is_reproducible(built, tmp_path):
  c, exp = built
  lines = []
  summary = train_and_evaluate(c, str(tmp_path / "a"), experiment=exp,
                               progress=lines.append)
  for name in ("config.json", "metrics.jsonl", "test_metrics.json"):
    assert os.path.getsize(tmp_path / "a" / name) > 0
  with open(tmp_path / "a" / "config.json") as f:
    assert json.load(f)["data"]["subclass_task"] == K
  records = load_metrics(str(tmp_path / "a"))
  assert [r["step"] for r in records] == list(range(1, STEPS + 1))
  assert [("hypergrad_norm" in r) for r in records] == [s % INTERVAL == 0
                                                        for s in range(1, STEPS + 1)]
  evals = [r for r in records if "dev_accuracy" in r]
  assert [r["step"] for r in evals] == [2, 4] and len(lines) == 2
  best = max(evals, key=lambda r: r["dev_accuracy"])  # first of ties
  assert summary["best_dev_accuracy"] == best["dev_accuracy"]
  assert summary["best_step"] == best["step"]
  assert summary["hypergrad_applied"] + summary["hypergrad_skipped"] == STEPS // INTERVAL
  with open(tmp_path / "a" / "test_metrics.json") as f:
    assert json.load(f) == json.loads(json.dumps(summary))

  again = train_and_evaluate(c, str(tmp_path / "b"), experiment=exp,
                             progress=lambda _: None)
  assert load_metrics(str(tmp_path / "b")) == records
  for key in ("test_accuracy", "test_loss", "best_step"):
    assert again[key] == summary[key]


def test_subclass_usage_counts_argmax_per_class():
  soft = np.zeros((5, 3 * 2))
  labels = np.array([0, 0, 2, 2, 2])
  for b, j in enumerate([1, 1, 0, 1, 1]):
    soft[b, labels[b] * 2 + j] = 0.9
    soft[b, labels[b] * 2 + 1 - j] = 0.1
  np.testing.assert_allclose(subclass_usage(soft, labels, 3, 2),
                             [[0, 1], [0, 0], [1 / 3, 2 / 3]])


def test_variants_switch_off_upper_steps():
  for mod in (auxilearn_taskgen_cifar10, auxilearn_taskgen_pet):
    fixed, stl = mod.get_config("fixed"), mod.get_config("stl")
    assert fixed.method.name == "taskgen" and not fixed.method.kwargs.learn_labeler
    assert stl.method.name == "stl"
    assert mod.get_config().method.kwargs.learn_labeler
  with pytest.raises(ValueError, match="variant"):
    auxilearn_taskgen_cifar10.get_config("maxl")
