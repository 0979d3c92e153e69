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


def test_auxilearn_split_file_in_the_data_directory(tmp_path):
  """root/hpo_validation_indices.json (AuxiLearn's split): its validation ids are the
  dev set, a ⌊0.025-style⌋ random part of its train ids the meta-validation set, the
  rest training; every image by file id; the file changes the split and nothing else."""
  import json

  examples = _write(tmp_path, "train", 12)
  _write(tmp_path, "test", 2, seed=1)
  val_ids, train_ids = [7, 2, 10], [0, 1, 3, 4, 5, 6, 8, 9, 11]
  kw = dict(meta_fraction=0.25, normalize=False)
  random = nyuv2.load_nyuv2_multitask(str(tmp_path), **kw)
  with open(tmp_path / nyuv2.SPLIT_FILE, "w") as f:
    json.dump({"validation_indices": val_ids, "train_indices": train_ids}, f)
  data = nyuv2.load_nyuv2_multitask(str(tmp_path), **kw)

  u8 = lambda i: np.clip(np.rint(examples[i][0] * 255), 0, 255).astype(np.uint8)
  ids_of = lambda x: sorted(next(i for i in range(12) if np.array_equal(im, u8(i)))
                            for im in x)
  assert ids_of(data.dev_inputs) == sorted(val_ids)
  meta, train = ids_of(data.meta_inputs), ids_of(data.train_inputs)
  assert len(meta) == int(0.25 * len(train_ids)) == 2       # the original truncates
  assert sorted(meta + train) == sorted(train_ids)
  for i, x in zip(ids_of(data.dev_inputs), data.dev_targets[0]):
    np.testing.assert_array_equal(x, examples[i][1].astype(np.int32))
  # Without the file (or with split_file=""): the seeded random draw, as before.
  again = nyuv2.load_nyuv2_multitask(str(tmp_path), split_file="", **kw)
  np.testing.assert_array_equal(again.dev_inputs, random.dev_inputs)
  assert ids_of(random.dev_inputs) != sorted(val_ids)
  np.testing.assert_array_equal(data.test_inputs, random.test_inputs)
  # A file that misses loaded images, or overlaps, is refused.
  with open(tmp_path / nyuv2.SPLIT_FILE, "w") as f:
    json.dump({"validation_indices": val_ids, "train_indices": train_ids[:-1]}, f)
  with pytest.raises(ValueError, match="are among the 12"):
    nyuv2.load_nyuv2_multitask(str(tmp_path), **kw)
  with open(tmp_path / nyuv2.SPLIT_FILE, "w") as f:
    json.dump({"validation_indices": val_ids, "train_indices": train_ids + [7]}, f)
  with pytest.raises(ValueError, match="overlap"):
    nyuv2.load_nyuv2_multitask(str(tmp_path), **kw)
