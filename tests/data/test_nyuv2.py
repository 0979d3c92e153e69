"""Tests for aux_jax.data.nyuv2 on a tiny fake directory."""

import os

import numpy as np
import pytest

from aux_jax.data import nyuv2

H, W = 4, 6


def _example(rng):
  image = rng.random((H, W, 3)).astype(np.float32)
  label = rng.integers(-1, nyuv2.NUM_CLASSES, size=(H, W)).astype(np.float32)
  depth = rng.uniform(0.5, 4.0, size=(H, W, 1)).astype(np.float32)
  depth[0, 0] = 0.0
  normal = rng.normal(size=(H, W, 3)).astype(np.float32)
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  return image, label, depth, normal


def _write(root, split, n, channels_first=False, seed=0):
  rng = np.random.default_rng(seed)
  examples = [_example(rng) for _ in range(n)]
  for folder in ("image", "label", "depth", "normal"):
    os.makedirs(os.path.join(root, split, folder), exist_ok=True)
  for i, (image, label, depth, normal) in enumerate(examples):
    if channels_first:
      image, normal = np.moveaxis(image, -1, 0), np.moveaxis(normal, -1, 0)
      depth = depth[..., 0]
    for folder, x in zip(("image", "label", "depth", "normal"),
                         (image, label, depth, normal)):
      np.save(os.path.join(root, split, folder, f"{i}.npy"), x)
  return examples


@pytest.mark.parametrize("channels_first", [False, True])
def test_loads_nhwc_arrays(tmp_path, channels_first):
  # 12 examples: the order must be numeric (2 before 10), not lexicographic.
  examples = _write(tmp_path, "train", 12, channels_first)
  data = nyuv2.load_nyuv2(str(tmp_path), "train")
  assert data["image"].shape == (12, H, W, 3) and data["image"].dtype == np.float32
  assert data["seg"].shape == (12, H, W) and data["seg"].dtype == np.int32
  assert data["depth"].shape == (12, H, W, 1) and data["normal"].shape == (12, H, W, 3)
  for i, (image, label, depth, normal) in enumerate(examples):
    np.testing.assert_array_equal(data["image"][i], image)
    np.testing.assert_array_equal(data["seg"][i], label.astype(np.int32))
    np.testing.assert_array_equal(data["depth"][i], depth)
    np.testing.assert_array_equal(data["normal"][i], normal)
  assert nyuv2.load_nyuv2(str(tmp_path), "train", max_examples=3)["image"].shape[0] == 3


def test_val_and_test_fall_back_to_each_other(tmp_path):
  _write(tmp_path, "train", 2)
  examples = _write(tmp_path, "test", 3, seed=1)
  for split in ("val", "test"):
    data = nyuv2.load_nyuv2(str(tmp_path), split)
    np.testing.assert_array_equal(data["image"][2], examples[2][0])


def test_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="image,label,depth,normal"):
    nyuv2.load_nyuv2(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="train"):
    nyuv2.load_nyuv2(str(tmp_path))
  with pytest.raises(ValueError, match="split"):
    nyuv2.load_nyuv2(str(tmp_path), "dev")
  _write(tmp_path, "train", 2)
  os.remove(tmp_path / "train" / "depth" / "1.npy")
  with pytest.raises(ValueError, match="different file indices"):
    nyuv2.load_nyuv2(str(tmp_path))
  np.save(tmp_path / "train" / "depth" / "1.npy", np.ones((2, H, W), np.float32))
  with pytest.raises(ValueError, match="depth must have shape"):
    nyuv2.load_nyuv2(str(tmp_path))
  np.save(tmp_path / "train" / "depth" / "1.npy", np.ones((H, W), np.float32))
  np.save(tmp_path / "train" / "label" / "0.npy", np.full((H, W), 13.0, np.float32))
  with pytest.raises(ValueError, match="labels must lie"):
    nyuv2.load_nyuv2(str(tmp_path))
  np.save(tmp_path / "train" / "label" / "0.npy", np.zeros((H, W + 1), np.float32))
  with pytest.raises(ValueError, match="spatial sizes"):
    nyuv2.load_nyuv2(str(tmp_path))
