"""AuxiLearn's Pet labeler: ResNet-18 (fc1000) → 512 → C·k, masked softmax; optional
torchvision weights."""

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from aux_jax.methods.base import TaskSpec
from aux_jax.methods.taskgen import taskgen
from aux_jax.models.resnet import BatchStatsResNet18, ResNet18, torchvision_names
from aux_jax.models.labeler import Labeler

C, K = 3, 2
SPEC = TaskSpec(("main", "sub"), ("classification", "soft_classification"), (C, C * K),
                (16, 16, 3))


def _random_file(path, width):
  variables = jax.eval_shape(lambda: ResNet18(width=width, num_outputs=1000).init(
      jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False))
  rng = np.random.default_rng(0)
  tensors = {}
  for key, (name, layout) in torchvision_names(variables).items():
    leaf = variables
    for k in key:
      leaf = leaf[k]
    shape = leaf.shape
    shape = {"conv": lambda s: (s[3], s[2], s[0], s[1]), "linear": lambda s: (s[1], s[0]),
             "same": lambda s: s}[layout](shape)
    tensors[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
  save_file(tensors, path)
  return tensors


def test_resnet_labeler_structure_and_soft_labels():
  method = taskgen(SPEC, labeler="resnet18", labeler_width=2, labeler_hidden=(8,))
  phi = method.init(jax.random.key(0)).phi["labeler"]
  assert phi["backbone"]["resnet"]["fc"]["kernel"].shape == (16, 1000)
  assert phi["Dense_0"]["kernel"].shape == (1000, 8)
  assert phi["Dense_1"]["kernel"].shape == (8, C * K)
  net = Labeler(C, K, backbone=None, hidden=(8,))  # same head, conv body: other params
  assert "backbone" not in net.init(jax.random.key(0), jnp.zeros((2, 16, 16, 3)),
                                    jnp.zeros((2,), jnp.int32))["params"]
  # The conv labeler (default) is unchanged by the new options.
  a = taskgen(SPEC).init(jax.random.key(0)).phi
  b = taskgen(SPEC, labeler="conv", labeler_hidden=()).init(jax.random.key(0)).phi
  assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b))


def test_resnet_labeler_pretrained_weights(tmp_path):
  path = str(tmp_path / "r18.safetensors")
  tensors = _random_file(path, width=2)
  method = taskgen(SPEC, labeler="resnet18", labeler_width=2, labeler_hidden=(8,),
                   labeler_pretrained=path)
  phi = method.init(jax.random.key(0)).phi["labeler"]
  resnet = phi["backbone"]["resnet"]
  np.testing.assert_array_equal(resnet["stem"]["conv"]["kernel"],
                                np.transpose(tensors["conv1.weight"], (2, 3, 1, 0)))
  np.testing.assert_array_equal(resnet["fc"]["kernel"], tensors["fc.weight"].T)
  np.testing.assert_array_equal(resnet["stage2"]["block0"]["conv1"]["bn"]["scale"],
                                tensors["layer2.0.bn1.weight"])
  # The head after the body stays randomly initialised, as without the file.
  ref = taskgen(SPEC, labeler="resnet18", labeler_width=2, labeler_hidden=(8,)).init(
      jax.random.key(0)).phi["labeler"]
  np.testing.assert_array_equal(phi["Dense_1"]["kernel"], ref["Dense_1"]["kernel"])
  # Soft labels: distributions on each sample's own k sub-classes.
  net = Labeler(C, K, backbone=BatchStatsResNet18(width=2), hidden=(8,))
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
  y = jnp.array([0, 2, 1, 2])
  q, _ = net.apply({"params": phi}, x, y, mutable=["batch_stats"])
  q = np.asarray(q).reshape(4, C, K)
  np.testing.assert_allclose(q.sum((1, 2)), 1.0, rtol=1e-5)
  for i, c in enumerate(np.asarray(y)):
    assert np.all(np.delete(q[i], c, axis=0) == 0)
