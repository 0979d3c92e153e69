"""The two-phase protocol (pretrain with auxiliary data, fine-tune on the main task): the
five comparison rows as configs, and both phases end to end on fake data (tiny CNN)."""

import json
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from aux_jax.data.multitask import MultiTaskData, pad_tasks
from aux_jax.train import experiment
from aux_jax.train.two_phase import phase_configs, run_two_phase
from configs import attittud_chexpert, attittud_cifar10

# variant -> (phase-1 method, λ, primary_only, phases)
ROWS = {
    "stl": ("stl", None, True, 1),
    "pretrain_finetune": ("equal", None, False, 2),
    "multitask": ("equal", None, False, 1),
    "attittud_100": ("attittud", (1.0, 0.0, 0.0), False, 2),
    "attittud_11m1": ("attittud", (1.0, 1.0, -1.0), False, 2),
}


@pytest.mark.parametrize("module", [attittud_cifar10, attittud_chexpert])
@pytest.mark.parametrize("variant", sorted(ROWS))
def test_each_table_row_is_a_config_choice(module, variant, tmp_path):
  method, lambdas, primary_only, n_phases = ROWS[variant]
  config = module.get_config(variant)
  config.seed = 3
  config.lock()  # as experiments/train.py's config flag gives it
  phases = phase_configs(config, str(tmp_path))
  assert [name for name, _ in phases] == ["pretrain", "finetune"][:n_phases]
  first = phases[0][1]
  assert first.method.name == method and first.runner == "train" and "finetune" not in first
  assert first.method.kwargs.get("lambdas", None) == lambdas
  assert first.data.kwargs.primary_only is primary_only
  assert first.data.kwargs.seed == 3  # the data subset follows the run seed
  assert first.optim.lr == (1e-4 if method == "attittud" else 1e-3)
  # The original trains without augmentation (data.augment=True: our crop + flip);
  # g* from examples drawn apart from the basis's.
  assert first.data.augment is False and first.data.crop_pad == 4
  if method == "attittud":
    assert first.method.kwargs.main_draw == "independent"
    assert first.method.kwargs.main_samples == 32
  if n_phases == 2:
    second = phases[1][1]
    assert second.method.name == "stl" and dict(second.method.kwargs) == {}
    assert second.data.kwargs.primary_only is True
    assert second.train.init_from == os.path.join(str(tmp_path), "pretrain")
    assert (second.optim.name, second.optim.lr) == ("adam", 5e-5)
    assert second.optim.num_steps == config.finetune.optim.num_steps
    assert second.train.patience == config.finetune.train.patience
    assert second.data.name == first.data.name and second.model == first.model
  assert config.data.kwargs.primary_only is primary_only  # the input is not modified


def test_unknown_finetune_section_is_rejected(tmp_path):
  config = attittud_cifar10.get_config("attittud_100")
  config.finetune.optimiser = {"lr": 1.0}
  with pytest.raises(ValueError, match="finetune.optimiser"):
    phase_configs(config, str(tmp_path))


def _fake_data(primary_only=False, seed=0, **unused):
  """Main task: 3 classes of 8×8 images; auxiliary task: 5 classes."""
  del unused
  rng = np.random.default_rng(seed)
  img = lambda n: rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
  images, labels = [img(24)], [np.arange(24) % 3]
  if not primary_only:
    images.append(img(32))
    labels.append(np.arange(32) % 5)
  x, y, counts = pad_tasks(images, labels)
  return MultiTaskData(
      train_images=x, train_labels=y, train_counts=counts,
      num_classes=np.array([3, 5][:len(images)], np.int32),
      dev_images=img(12), dev_labels=np.arange(12, dtype=np.int32) % 3,
      test_images=img(12), test_labels=np.arange(12, dtype=np.int32) % 3,
      task_names=("main", "aux")[:len(images)], mean=np.full(3, 127.0, np.float32),
      std=np.full(3, 64.0, np.float32))


def _raw_checkpoint(path):
  with ocp.CheckpointManager(os.path.abspath(path)) as manager:
    return manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())


def test_both_phases_end_to_end(tmp_path, monkeypatch):
  calls = []

  def get_dataset(name, **kwargs):
    calls.append((name, kwargs))
    return _fake_data(**kwargs)

  monkeypatch.setattr(experiment, "get_dataset", get_dataset)
  c = attittud_cifar10.get_config("attittud_11m1")
  c.model.name = "small_cnn"
  c.model.kwargs = {"width": 2, "features": 4}
  c.data.update(batch_size=8, dev_batch_size=4, eval_batch_size=16, augment=False)
  c.method.kwargs.update(num_basis=3, nsamples=8, pca_every=2)
  c.optim.num_steps = 4
  c.train.update(log_every=2, eval_every=2, checkpoint_every=2)
  # Fine-tuning with a zero learning rate keeps the initialisation: phase 2's weights
  # must then be phase 1's best checkpoint.
  c.finetune.optim.update(lr=0.0, num_steps=2)
  c.finetune.train.update(eval_every=1, checkpoint_every=2)
  workdir = str(tmp_path / "run")
  lines = []
  result = run_two_phase(c, workdir, progress=lines.append)

  assert [kw["primary_only"] for _, kw in calls] == [False, True]
  with open(os.path.join(workdir, "summary.json")) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(result))
  assert result["method"] == "attittud_11m1" and result["final_phase"] == "finetune"
  pre, fine = result["pretrain"], result["finetune"]
  assert (pre["method"], pre["task_names"]) == ("attittud", ["main", "aux"])
  assert (fine["method"], fine["task_names"]) == ("stl", ["main"])
  assert result["test_accuracy"] == fine["test_accuracy"]
  assert any(l.startswith("[finetune] initialised from") for l in lines)

  best = _raw_checkpoint(os.path.join(workdir, "pretrain", "best"))
  final = _raw_checkpoint(os.path.join(workdir, "finetune", "checkpoints"))["state"]
  for a, b in zip(*(jax_leaves(s["params"]["backbone"]) for s in (best, final))):
    np.testing.assert_array_equal(a, b)
  for name in ("kernel", "bias"):
    head = np.asarray(best["params"]["heads"][name])
    np.testing.assert_array_equal(np.asarray(final["params"]["heads"][name])[0],
                                  head[0][..., :3])


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]
