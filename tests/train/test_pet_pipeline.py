"""AuxiLearn's Pet pipeline at toy sizes: the config's path (ResNet-18 with fc, MLP
heads, ResNet labeler, stored-size crop) runs; ``data.crop_size`` changes only the
views it says."""

import dataclasses

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from aux_jax.data import augment
from aux_jax.train.experiment import build_experiment, load_data
from configs import auxilearn_taskgen_pet


def _tiny_pet(variant="learned"):
  c = auxilearn_taskgen_pet.get_config(variant)
  c.data.kwargs.image_size, c.data.crop_size = 20, 16
  c.data.kwargs.per_class, c.data.kwargs.meta_size = None, 4
  c.model.kwargs = {"width": 2, "num_outputs": 12, "stage_sizes": (1, 1, 1, 1)}
  c.model.head_hidden = 6
  if variant != "stl":
    c.method.kwargs.labeler_width = 2
    c.method.kwargs.labeler_hidden = (5,)
  c.data.batch_size, c.data.dev_batch_size, c.data.eval_batch_size = 4, 4, 16
  c.hyper.interval = 1
  return c


@pytest.fixture(scope="module")
def pet():
  c = _tiny_pet()
  with tfds.testing.mock_data(num_examples=24):
    data = load_data(c)
  return c, data


def test_pet_config_path_runs(pet):
  c, data = pet
  assert data.input_shape == (20, 20, 3)
  np.testing.assert_allclose(data.mean, 255 * np.array([0.485, 0.456, 0.406]), rtol=1e-6)
  exp = build_experiment(c, data)
  s0 = exp.init()
  heads = s0.params["heads"]
  assert heads["hidden_kernel"].shape == (2, 12, 6)     # fc outputs -> hidden
  assert "fc" in s0.params["backbone"]
  assert "resnet" in s0.method.phi["labeler"]["backbone"]
  s1, m = exp.lower_step(s0)  # (the upper step through two ResNets: too slow for CI)
  assert np.isfinite(float(m["loss_main"]))
  assert 0 < float(m["label_entropy"]) <= np.log(5) + 1e-5
  metrics = exp.evaluate(exp.model(s1), "test")
  assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_crop_size_changes_only_the_views(pet):
  """Centre-cropping the stored images beforehand with crop_size 0 gives the same
  initial model, dev loss and evaluation as crop_size on the stored images."""
  c, data = pet
  crop = lambda x: np.asarray(augment.center_crop(x, 16))
  pre = dataclasses.replace(
      data, train_inputs=crop(data.train_inputs), dev_inputs=crop(data.dev_inputs),
      test_inputs=crop(data.test_inputs), meta_inputs=crop(data.meta_inputs))
  c0 = _tiny_pet("stl")
  c0.data.crop_size = 0
  c0.data.augment = False
  c1 = _tiny_pet("stl")
  c1.data.augment = False
  a, b = build_experiment(c1, data), build_experiment(c0, pre)
  sa, sb = a.init(), b.init()
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(sa.params),
                                                   jax.tree.leaves(sb.params)))
  def losses(exp):  # the dev loss and the training losses of step 1
    def fn(state):
      fns = exp.losses_at(state, 1)
      return fns.dev(state.params), fns.per_sample(state.params)[0]
    return jax.jit(fn)

  (dev_a, train_a), (dev_b, train_b) = losses(a)(sa), losses(b)(sb)
  np.testing.assert_allclose(dev_a, dev_b, rtol=1e-6)
  # Without augmentation the training view is the centre crop too.
  np.testing.assert_allclose(train_a, train_b, rtol=1e-5)
  ea, eb = a.evaluate(a.model(sa), "test"), b.evaluate(b.model(sb), "test")
  for k in ea:
    np.testing.assert_allclose(ea[k], eb[k], rtol=1e-5)


def test_heads_start_as_pytorch_linear_layers(pet):
  """model.head_init="torch_default" (the config) on MLP heads: both layers, kernels and
  biases, U(±1/√fan_in) as nn.Linear (fan_in 12 = fc outputs, then 6 = hidden)."""
  c, data = pet
  heads = build_experiment(c, data).init().params["heads"]
  for name, fan_in in (("hidden_kernel", 12), ("hidden_bias", 12), ("kernel", 6),
                       ("bias", 6)):
    x = np.asarray(heads[name])
    assert np.abs(x).max() <= 1 / np.sqrt(fan_in) and x.std() > 0.2 / np.sqrt(fan_in), name


def test_pretrained_needs_the_modules_own_init(pet):
  c, data = pet
  c = c.copy_and_resolve_references()
  c.model.pretrained, c.model.init = "/nonexistent/resnet18.safetensors", "torch_default"
  with pytest.raises(ValueError, match="model.init"):
    build_experiment(c, data)


def test_meta_batch_is_augmented_at_the_crop_size(pet):
  """data.augment_dev (the config) with data.crop_size: the upper step's meta batch is a
  random crop_size crop + flip, as training batches. For images constant in space that
  equals the centre crop the lower step's dev loss sees, while the stored-size view
  (crop_size 0) gives another loss."""
  _, data = pet
  m = data.meta_inputs
  flat = np.broadcast_to(m.mean(axis=(1, 2), keepdims=True), m.shape).astype(m.dtype)
  flat_data = dataclasses.replace(data, meta_inputs=np.ascontiguousarray(flat))

  def dev_losses(crop_size):
    c = _tiny_pet("stl")
    c.hyper.dev_bn = "eval"   # running statistics: the views alone differ
    c.data.crop_size = crop_size
    exp = build_experiment(c, flat_data)
    s = exp.init()
    return (float(exp.losses_at(s, 1).dev(s.params)),
            float(exp.losses_at(s, 1, upper=True).dev(s.params)))

  lower, upper = dev_losses(16)
  np.testing.assert_allclose(upper, lower, rtol=1e-5)
  assert abs(dev_losses(0)[0] - lower) > 1e-6 * abs(lower)
