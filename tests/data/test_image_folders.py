"""The class-per-folder loader on a tiny generated directory of PNG/JPEG files.

Every image is one constant colour that encodes its own id, so each decoded image
tells which file it came from (constant images survive resizing exactly)."""

import os

import numpy as np
from PIL import Image
import pytest

from aux_jax.data import get_dataset
from aux_jax.data.image_folders import load_image_folders

PRIMARY = {"train": {"cat": 5, "dog": 6, "emu": 10}, "test": {"cat": 2, "emu": 3}}
AUX = {"train": {"n01": 4, "n02": 3}}


def _write(root, layout, first_id, nested=False):
  """Writes constant images; returns {id: (split, class)}. Colour of id i: (i, 255 − i, 7)
  for RGB files; grayscale (8-bit or 16-bit) files have gray level i on every channel."""
  files, i = {}, first_id
  for split, classes in layout.items():
    for name, count in classes.items():
      folder = os.path.join(root, split, name, "images" if nested else "")
      os.makedirs(folder, exist_ok=True)
      for j in range(count):
        size = (9 + j, 7)
        kind = j % 4
        if kind == 0:
          img = Image.new("RGB", size, (i, 255 - i, 7))
          img.save(os.path.join(folder, f"im{j}.png"))
        elif kind == 1:
          Image.new("L", size, i).save(os.path.join(folder, f"im{j}.png"))
        elif kind == 2:
          arr = np.full(size[::-1], 257 * i, np.uint16)  # 16-bit grayscale
          Image.fromarray(arr).save(os.path.join(folder, f"im{j}.png"))
        else:  # lossless content is not needed: a constant survives JPEG up to ±2
          Image.new("RGB", size, (i, 255 - i, 7)).save(os.path.join(folder, f"im{j}.JPG"))
        files[i] = (split, name, kind)
        i += 4  # ids 4 apart: JPEG's ±2 cannot confuse them
  return files


def _ids(images, files):
  """The id of each decoded image, checking that its colour is its file's."""
  out = []
  for x in images:
    assert np.ptp(x.reshape(-1, 3), axis=0).max() <= 2, "not a constant image"
    r, g, b = (int(v) for v in x[0, 0])
    i = min(files, key=lambda k: abs(k - r))
    kind = files[i][2]
    want = (i, i, i) if kind in (1, 2) else (i, 255 - i, 7)
    np.testing.assert_allclose((r, g, b), want, atol=2 if kind == 3 else 0)
    out.append(i)
  return np.array(out)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("folders")
  primary, aux = str(root / "chexpert"), str(root / "tiny")
  files = _write(primary, PRIMARY, first_id=8)
  files.update(_write(aux, AUX, first_id=140, nested=True))  # TinyImageNet-style nesting
  return primary, aux, files


def test_layout_splits_and_decoding(dirs):
  primary, aux, files = dirs
  data = get_dataset("image_folders", primary_dir=primary, aux_dir=aux, image_size=8,
                     dev_fraction=0.2, seed=0)
  assert data.task_names == ("chexpert", "tiny")
  assert data.image_shape == (8, 8, 3)
  np.testing.assert_array_equal(data.num_classes, [3, 2])
  n_dev = {"cat": 1, "dog": 1, "emu": 2}  # max(1, round(0.2 n))
  np.testing.assert_array_equal(data.train_counts, [5 + 6 + 10 - 4, 7])
  classes = sorted(PRIMARY["train"])
  train = _ids(data.train_images[0, :data.train_counts[0]], files)
  dev = _ids(data.dev_images, files)
  test = _ids(data.test_images, files)
  assert not set(train) & set(dev)
  assert set(train) | set(dev) == {i for i, f in files.items() if f[:1] == ("train",)
                                   and f[1] in classes}
  for ids, labels in ((train, data.train_labels[0, :len(train)]), (dev, data.dev_labels),
                      (test, data.test_labels)):
    np.testing.assert_array_equal(labels, [classes.index(files[i][1]) for i in ids])
  assert sorted(test) == sorted(i for i, f in files.items() if f[0] == "test")
  assert {classes[c]: int(n) for c, n in enumerate(np.bincount(data.dev_labels))} == n_dev
  aux_ids = _ids(data.train_images[1, :7], files)
  assert sorted(aux_ids) == list(range(140, 168, 4))
  np.testing.assert_array_equal(data.train_labels[1, :7],
                                [sorted(AUX["train"]).index(files[i][1]) for i in aux_ids])
  # Normalisation from the primary task's training + dev images.
  x = np.concatenate([data.train_images[0, :len(train)], data.dev_images]).reshape(-1, 3)
  np.testing.assert_allclose(data.mean, x.mean(0), rtol=1e-5)


def test_determinism_primary_only_and_caps(dirs):
  primary, aux, _ = dirs
  kw = dict(primary_dir=primary, image_size=8, dev_fraction=0.2)
  a = load_image_folders(aux_dir=aux, seed=3, **kw)
  b = load_image_folders(aux_dir=aux, seed=3, **kw)
  c = load_image_folders(aux_dir=aux, seed=4, **kw)
  only = load_image_folders(aux_dir=aux, seed=3, primary_only=True, **kw)
  none = load_image_folders(seed=3, **kw)
  np.testing.assert_array_equal(a.train_images, b.train_images)
  np.testing.assert_array_equal(a.dev_images, b.dev_images)
  assert not np.array_equal(a.dev_images, c.dev_images)
  for d in (only, none):
    assert d.num_tasks == 1 and d.task_names == ("chexpert",)
    np.testing.assert_array_equal(d.train_images[0], a.train_images[0, :a.train_counts[0]])
    np.testing.assert_array_equal(d.dev_images, a.dev_images)
    np.testing.assert_array_equal(d.mean, a.mean)
  capped = load_image_folders(aux_dir=aux, seed=3, per_class=2, aux_per_class=1, **kw)
  np.testing.assert_array_equal(np.bincount(capped.train_labels[0, :capped.train_counts[0]]),
                                [2, 2, 2])
  np.testing.assert_array_equal(capped.train_counts, [6, 2])
  np.testing.assert_array_equal(capped.dev_images, a.dev_images)


def test_clear_errors(dirs, tmp_path):
  primary, aux, _ = dirs
  with pytest.raises(FileNotFoundError, match="no directory"):
    load_image_folders(str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="primary_dir is not set"):
    load_image_folders("")
  with pytest.raises(ValueError, match="aux_dir is not set"):
    load_image_folders(primary, aux_dir="")
  with pytest.raises(FileNotFoundError, match="/test/<class_name>"):
    _write(str(tmp_path / "notest"), {"train": {"a": 2, "b": 2}}, 0)
    load_image_folders(str(tmp_path / "notest"))
  empty = tmp_path / "empty"
  _write(str(empty), {"train": {"a": 3, "b": 3}, "test": {"a": 1}}, 0)
  os.makedirs(empty / "train" / "c")
  with pytest.raises(ValueError, match="has no .png/.jpg/.jpeg images"):
    load_image_folders(str(empty))
  unknown = tmp_path / "unknown"
  _write(str(unknown), {"train": {"a": 3, "b": 3}, "test": {"z": 1}}, 0)
  with pytest.raises(ValueError, match=r"class folders \['z'\]"):
    load_image_folders(str(unknown))
  tiny = tmp_path / "tiny"
  _write(str(tiny), {"train": {"a": 1, "b": 3}, "test": {"a": 1}}, 0)
  with pytest.raises(ValueError, match="'a' has 1 training image"):
    load_image_folders(str(tiny))
  with pytest.raises(ValueError, match="dev_fraction"):
    load_image_folders(primary, dev_fraction=1.0)
