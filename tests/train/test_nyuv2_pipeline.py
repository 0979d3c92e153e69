"""NYUv2 through the launcher's path on a tiny fake directory: the loader as
SharedInputData, dense per-sample losses = mean of the per-pixel maps, AuxiLearn's
ConvNet combiner trained by the upper step, and the dense metrics in the summary."""

import json
import os

import jax
import numpy as np
import pytest

from aux_jax.data import get_dataset
from aux_jax.data import nyuv2
from aux_jax.train.experiment import build_experiment
from aux_jax.train.loop import load_metrics, train_and_evaluate
from configs import auxilearn_nyuv2

H, W = 8, 8


def _write(root, split, n, seed):
  rng = np.random.default_rng(seed)
  for folder in ("image", "label", "depth", "normal"):
    os.makedirs(os.path.join(root, split, folder), exist_ok=True)
  for i in range(n):
    normal = rng.normal(size=(H, W, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    depth = rng.uniform(0.5, 4, size=(H, W, 1)).astype(np.float32)
    depth[0, 0] = 0
    arrays = {"image": rng.random((3, H, W)).astype(np.float32),  # channels first
              "label": rng.integers(-1, nyuv2.NUM_CLASSES, size=(H, W)).astype(np.float32),
              "depth": depth, "normal": normal}
    for folder, x in arrays.items():
      np.save(os.path.join(root, split, folder, f"{i}.npy"), x)


@pytest.fixture(autouse=True, scope="module")
def xla_optimizations():
  """SegNet's gradient comes out NaN on XLA:CPU with jax_disable_most_optimizations
  (set by conftest) from the second step on, while the optimised build and eager mode
  are finite: run this module with the optimisations on."""
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("nyuv2"))
  _write(path, "train", 12, 0)
  _write(path, "val", 5, 1)
  return path


def _config(root, variant):
  c = auxilearn_nyuv2.get_config(variant)
  c.data.kwargs.root = root
  c.data.kwargs.dev_fraction = 0.25
  c.data.kwargs.meta_fraction = 0.25       # 12 → dev 3, meta 2, train 7
  c.data.batch_size, c.data.dev_batch_size = 3, 2
  c.data.eval_batch_size = 4
  c.model.kwargs = {"features": (4, 8), "convs_per_level": (1, 1)}
  c.optim.num_steps = 6
  c.optim.decay_every = 3
  c.hyper.interval = 2
  c.hyper.lr = 0.05
  c.hyper.solver_kwargs.neumann.step = 1e-7  # keeps the tiny problem's Neumann series convergent
  if variant == "conv":
    c.method.kwargs.hidden = (2,)
    c.method.kwargs.kernel_sizes = (1,)
  c.train.eval_every = 3
  c.train.log_every = 1
  c.train.checkpoint_every = 6
  return c


def test_loader_splits_and_kinds(root):
  data = get_dataset("nyuv2", root=root, dev_fraction=0.25)
  assert data.task_names == ("seg", "depth", "normal")
  assert data.train_inputs.shape == (9, H, W, 3) and data.dev_inputs.shape == (3, H, W, 3)
  assert data.test_inputs.shape == (5, H, W, 3)
  raw = nyuv2.load_nyuv2(root, "train")
  # Train and dev partition the training folder; images are the files × 255 as u8.
  rows = [np.flatnonzero((raw["seg"] == s).all((1, 2)))[0] for s in data.train_targets[0]]
  rows += [np.flatnonzero((raw["seg"] == s).all((1, 2)))[0] for s in data.dev_targets[0]]
  assert sorted(rows) == list(range(12))
  np.testing.assert_array_equal(
      data.train_inputs[0], np.rint(raw["image"][rows[0]] * 255).astype(np.uint8))
  small = get_dataset("nyuv2", root=root, dev_fraction=0.25, downsample=2)
  assert small.train_inputs.shape[1:3] == (H // 2, W // 2)


def test_selection_and_meta_validation_sets_are_disjoint(root):
  """AuxiLearn's splits: dev (selection) 10 %, then 2.5 % of the rest (truncated) as a
  separate meta-validation set; here 12 → 3 / ⌊0.25·9⌋ = 2 / 7."""
  data = get_dataset("nyuv2", root=root, dev_fraction=0.25, meta_fraction=0.25)
  raw = nyuv2.load_nyuv2(root, "train")
  row = lambda segs: [int(np.flatnonzero((raw["seg"] == s).all((1, 2)))[0]) for s in segs]
  train, dev, meta = (row(d) for d in (data.train_targets[0], data.dev_targets[0],
                                       data.meta_targets[0]))
  assert (len(train), len(dev), len(meta)) == (7, 3, 2)
  assert sorted(train + dev + meta) == list(range(12))
  # normalize=False: the original's images in [0, 1] (u8 / 255).
  raw01 = get_dataset("nyuv2", root=root, dev_fraction=0.25, normalize=False)
  x = np.asarray(raw01.preprocess(raw01.train_inputs[:1]))
  np.testing.assert_allclose(x, raw01.train_inputs[:1] / 255.0, rtol=1e-6)


def test_conv_auxiliary_network_end_to_end(root, tmp_path):
  c = _config(root, "conv")
  exp = build_experiment(c, get_dataset(c.data.name, **c.data.kwargs))
  state = exp.init()
  losses = exp.losses_at(state, 0)
  per_sample, _ = losses.per_sample(state.params)
  maps, valid, _ = losses.per_pixel(state.params)
  # The config's original loss arithmetic: per sample Σ map·weights / Σ weights, the
  # segmentation over all pixels, the normal map 1 outside the depth mask.
  assert c.data.loss_convention == "original"
  np.testing.assert_allclose(
      per_sample, (maps * valid).sum((2, 3)) / np.maximum(valid.sum((2, 3)), 1), rtol=1e-5)
  assert np.all(np.asarray(valid[0]) == 1)
  outside = np.asarray(valid[2]) == 0
  assert outside.any() and np.all(np.asarray(maps[2])[outside] == 1.0)
  assert per_sample.shape == (3, 3)

  summary = train_and_evaluate(c, str(tmp_path), experiment=exp, progress=lambda _: None)
  for key in ("test_miou_per_image", "test_miou_dataset", "test_pixel_acc_per_image",
              "test_pixel_acc_dataset", "test_depth_abs_err", "test_depth_rel_err",
              "test_normal_angle_mean", "test_normal_angle_median",
              "test_normal_angle_within_11_25"):
    assert np.isfinite(summary[key]), (key, str(summary))
  assert summary["select"] == "miou_per_image" and "best_dev_miou_per_image" in summary
  assert summary["hypergrad_applied"] + summary["hypergrad_skipped"] == 3
  records = load_metrics(str(tmp_path))
  w = [np.asarray(r["weights"]) for r in records]
  assert w[0].shape == (2,) and not np.allclose(w[0], w[-1])  # φ was learned
  with open(os.path.join(tmp_path, "test_metrics.json")) as f:
    assert json.load(f)["task_names"] == ["seg", "depth", "normal"]


def test_step_schedule_halves_the_learning_rate():
  from aux_jax.train.optimizers import lower_optimizer
  import ml_collections
  cfg = ml_collections.ConfigDict(dict(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0,
                                       schedule="step", decay_every=2, num_steps=10))
  tx = lower_optimizer(cfg)
  p = {"x": np.float32(0.0)}
  state = tx.init(p)
  steps = []
  for _ in range(5):
    upd, state = tx.update({"x": np.float32(1.0)}, state, p)
    steps.append(-float(upd["x"]))
  np.testing.assert_allclose(steps, [1, 1, 0.5, 0.5, 0.25])
