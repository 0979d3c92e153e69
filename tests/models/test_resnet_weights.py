"""ImageNet ResNet-18 weights from a torchvision-named safetensors file."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from aux_jax.models import get_backbone, load_pretrained_backbone
from aux_jax.models.resnet import CheckpointError, ResNet18, torchvision_names


def _torchvision_state(rng, width=64, num_outputs=1000):
  """A random resnet18 state dict under torchvision's names (PyTorch layouts)."""
  sd = {}

  def conv(name, o, i, k):
    sd[name] = rng.normal(0, np.sqrt(2.0 / (i * k * k)), (o, i, k, k)).astype(np.float32)

  def bn(name, c):
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
    sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
    sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

  conv("conv1.weight", width, 3, 7)
  bn("bn1", width)
  cin = width
  for layer in range(1, 5):
    cout = width * 2 ** (layer - 1)
    for block in range(2):
      p = f"layer{layer}.{block}"
      conv(f"{p}.conv1.weight", cout, cin if block == 0 else cout, 3)
      bn(f"{p}.bn1", cout)
      conv(f"{p}.conv2.weight", cout, cout, 3)
      bn(f"{p}.bn2", cout)
      if block == 0 and layer > 1:
        conv(f"{p}.downsample.0.weight", cout, cin, 1)
        bn(f"{p}.downsample.1", cout)
    cin = cout
  sd["fc.weight"] = rng.normal(0, 0.05, (num_outputs, cin)).astype(np.float32)
  sd["fc.bias"] = rng.normal(0, 0.05, num_outputs).astype(np.float32)
  return sd


def _conv(x, w, stride, pad):
  """NumPy conv, x [B, H, W, I], w OIHW (PyTorch's layout, used as it is)."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  _, _, kh, kw = w.shape
  h = (x.shape[1] - kh) // stride + 1
  v = (x.shape[2] - kw) // stride + 1
  out = 0.0
  for i in range(kh):
    for j in range(kw):
      out = out + x[:, i:i + stride * h:stride, j:j + stride * v:stride] @ w[:, :, i, j].T
  return out


def _bn(x, sd, name):  # eval mode: running statistics
  return ((x - sd[f"{name}.running_mean"]) / np.sqrt(sd[f"{name}.running_var"] + 1e-5)
          * sd[f"{name}.weight"] + sd[f"{name}.bias"])


def _maxpool(x):  # 3×3, stride 2, padding 1 (padded with −∞)
  x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  h, w = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
  return np.max([x[:, i:i + 2 * h:2, j:j + 2 * w:2] for i in range(3) for j in range(3)], 0)


def _reference_forward(sd, x):
  relu = lambda z: np.maximum(z, 0.0)
  x = _maxpool(relu(_bn(_conv(x, sd["conv1.weight"], 2, 3), sd, "bn1")))
  for layer in range(1, 5):
    for block in range(2):
      p = f"layer{layer}.{block}"
      s = 2 if (block == 0 and layer > 1) else 1
      y = relu(_bn(_conv(x, sd[f"{p}.conv1.weight"], s, 1), sd, f"{p}.bn1"))
      y = _bn(_conv(y, sd[f"{p}.conv2.weight"], 1, 1), sd, f"{p}.bn2")
      if f"{p}.downsample.0.weight" in sd:
        x = _bn(_conv(x, sd[f"{p}.downsample.0.weight"], s, 0), sd, f"{p}.downsample.1")
      x = relu(y + x)
  feats = x.mean(axis=(1, 2))
  return feats, feats @ sd["fc.weight"].T + sd["fc.bias"]


def _init(model, size=32):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                           train=False))


def test_name_table_is_torchvisions():
  sd = _torchvision_state(np.random.default_rng(0), width=2, num_outputs=3)
  table = torchvision_names(_init(ResNet18(width=2, num_outputs=3)))
  names = [n for n, _ in table.values()]
  assert len(names) == len(set(names))  # one variable per tensor
  assert set(names) == {k for k in sd if not k.endswith("num_batches_tracked")}
  assert table[("params", "stage2", "block0", "shortcut", "conv", "kernel")] == (
      "layer2.0.downsample.0.weight", "conv")
  assert table[("batch_stats", "stem", "bn", "var")] == ("bn1.running_var", "same")


@pytest.mark.parametrize("num_outputs", [1000, 0])
def test_loaded_forward_matches_numpy_reference(tmp_path, num_outputs):
  """Full-size ResNet-18 tensors (random), a 32×32 input: the Flax forward with the
  loaded weights (eval-mode BatchNorm) equals a NumPy forward on the PyTorch layouts."""
  rng = np.random.default_rng(1)
  sd = _torchvision_state(rng)
  path = str(tmp_path / "resnet18.safetensors")
  save_file(sd, path)
  model = get_backbone("resnet18", num_outputs=num_outputs)
  x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
  variables = model.init(jax.random.key(0), jnp.asarray(x), train=False)
  loaded = load_pretrained_backbone("resnet18", path, variables)
  assert jax.tree.structure(loaded) == jax.tree.structure(variables)
  out = np.asarray(jax.jit(lambda v: model.apply(v, x, train=False))(loaded))
  feats, logits = _reference_forward({k: v.astype(np.float64) for k, v in sd.items()},
                                     x.astype(np.float64))
  want = logits if num_outputs else feats
  np.testing.assert_allclose(out, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_errors_name_the_tensor(tmp_path):
  sd = _torchvision_state(np.random.default_rng(2), width=2, num_outputs=3)
  variables = _init(ResNet18(width=2, num_outputs=3))
  path = str(tmp_path / "w.safetensors")
  missing = dict(sd)
  del missing["layer3.1.bn2.running_var"]
  save_file(missing, path)
  with pytest.raises(CheckpointError, match=r"layer3\.1\.bn2\.running_var") as e:
    load_pretrained_backbone("resnet18", path, variables)
  assert e.value.name == "layer3.1.bn2.running_var"
  bad = dict(sd, **{"layer1.0.conv1.weight": np.zeros((2, 2, 3, 5), np.float32)})
  save_file(bad, path)
  with pytest.raises(CheckpointError, match=r"layer1\.0\.conv1\.weight") as e:
    load_pretrained_backbone("resnet18", path, variables)
  assert e.value.expected == (2, 2, 3, 3) and e.value.found == (2, 2, 3, 5)
  save_file(dict(sd, **{"layer5.0.conv1.weight": np.zeros(1, np.float32)}), path)
  with pytest.raises(CheckpointError, match="no place for"):
    load_pretrained_backbone("resnet18", path, variables)
  with pytest.raises(FileNotFoundError, match="no weights file"):
    load_pretrained_backbone("resnet18", str(tmp_path / "none.safetensors"), variables)
