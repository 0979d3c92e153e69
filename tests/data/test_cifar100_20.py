"""Tests of the CIFAR-100/20 loader: on tfds mock data, and on a real array_record
dataset written by TFDS's own builder from fake examples, both read without TensorFlow."""

import importlib.util
import io
import json
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aux_jax.data import cifar100_20, prepare
from aux_jax.data.cifar100_20 import DatasetNotPreparedError, load_cifar100_20

AUX = (0, 3, 7)


def _expected(split, per_fine, coarse, seed=0):
  """Image bytes -> 0..4 label, computed directly from the fake examples."""
  examples, coarse_of_fine = cifar100_20.fake_cifar100_split(split, per_fine, seed)
  fine_ids = np.flatnonzero(coarse_of_fine == coarse)  # sorted
  return {ex["image"].tobytes(): int(np.searchsorted(fine_ids, ex["label"]))
          for ex in examples if ex["coarse_label"] == coarse}


def _as_dict(images, labels):
  out = {x.tobytes(): int(y) for x, y in zip(images, labels)}
  assert len(out) == len(images), "an image appears twice"
  return out


def _check(data, per_fine_train, per_fine_test, main, aux, dev_fraction):
  tasks = (main,) + aux
  assert data.task_names == tuple(f"coarse{c}" for c in tasks)
  np.testing.assert_array_equal(data.num_classes, [5] * len(tasks))
  data.validate()
  n_main = 5 * per_fine_train
  n_dev = max(1, round(dev_fraction * n_main))
  np.testing.assert_array_equal(data.train_counts, [n_main - n_dev] + [n_main] * len(aux))
  for t, c in enumerate(tasks):
    n = data.train_counts[t]
    got = _as_dict(data.train_images[t, :n], data.train_labels[t, :n])
    if t == 0:
      dev = _as_dict(data.dev_images, data.dev_labels)
      assert len(dev) == n_dev and not set(dev) & set(got), "dev overlaps train"
      got.update(dev)
    assert got == _expected("train", per_fine_train, c), f"task {t} (coarse {c})"
  assert _as_dict(data.test_images, data.test_labels) == _expected("test", per_fine_test, main)
  valid = np.concatenate([data.train_images[t, :n] for t, n in enumerate(data.train_counts)])
  flat = valid.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(data.mean, flat.mean(0), rtol=1e-5)
  np.testing.assert_allclose(data.std, flat.std(0), rtol=1e-4)


def test_pipeline_on_tfds_mock_data():
  with cifar100_20.mock_cifar100(per_fine_train=4, per_fine_test=2):
    data = load_cifar100_20(data_dir="/unused", main_coarse=14, aux_coarse=AUX,
                            dev_fraction=0.2, seed=0)
  _check(data, 4, 2, 14, AUX, 0.2)
  with cifar100_20.mock_cifar100(per_fine_train=4, per_fine_test=2):
    again = load_cifar100_20(main_coarse=14, aux_coarse=AUX, dev_fraction=0.2, seed=0)
    other = load_cifar100_20(main_coarse=14, aux_coarse=AUX, dev_fraction=0.2, seed=1,
                             normalization="cifar100")
  np.testing.assert_array_equal(again.dev_images, data.dev_images)
  # MAOAL's fixed CIFAR-100 constants, in pixel units.
  np.testing.assert_allclose(other.mean, np.array([0.5071, 0.4867, 0.4408]) * 255, rtol=1e-6)
  np.testing.assert_allclose(other.std, np.array([0.2675, 0.2565, 0.2761]) * 255, rtol=1e-6)
  assert not np.array_equal(other.dev_images, data.dev_images)


def test_default_tfds_mock_without_class_hierarchy_is_rejected():
  with tfds.testing.mock_data(num_examples=40):
    with pytest.raises(ValueError, match="mock_cifar100"):
      load_cifar100_20()


def _png(image):
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  buf.seek(0)
  return buf


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
  """A real TFDS 'cifar100' array_record dataset, built without TensorFlow."""
  if importlib.util.find_spec("importlib_resources") is None:
    pytest.skip("TFDS's builder needs importlib_resources")
  from tensorflow_datasets.image_classification import cifar

  def split_generators(self, dl_manager):
    del self, dl_manager
    def gen(split, per_fine):
      examples, _ = cifar100_20.fake_cifar100_split(split, per_fine)
      for i, ex in enumerate(examples):
        yield i, dict(ex, image=_png(ex["image"]))
    return {"train": gen("train", 3), "test": gen("test", 1)}

  data_dir = str(tmp_path_factory.mktemp("tfds"))
  with mock.patch.object(cifar.Cifar100, "_split_generators", split_generators):
    version_dir = prepare.prepare("cifar100", data_dir)
  assert json.load(open(f"{version_dir}/dataset_info.json"))["fileFormat"] == "array_record"
  return data_dir, version_dir


def test_reads_prepared_array_record(prepared_dir):
  data = load_cifar100_20(data_dir=prepared_dir[0], main_coarse=2, aux_coarse=(5,),
                          dev_fraction=0.3)
  _check(data, 3, 1, 2, (5,), 0.3)


def test_missing_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(DatasetNotPreparedError) as e:
    load_cifar100_20(data_dir=str(tmp_path))
  msg = str(e.value)
  assert "pip install 'aux_jax[prepare]'" in msg
  assert f"python -m aux_jax.data.prepare cifar100 --data_dir={tmp_path}" in msg
  assert f"tfds build cifar100 --file_format=array_record --data_dir={tmp_path}" in msg


def test_tfrecord_dataset_says_how_to_convert(prepared_dir, tmp_path):
  import shutil
  version_dir = tmp_path / "cifar100" / "3.0.2"
  shutil.copytree(prepared_dir[1], version_dir)
  info_path = version_dir / "dataset_info.json"
  info = json.loads(info_path.read_text())
  info["fileFormat"] = "tfrecord"
  info_path.write_text(json.dumps(info))
  with pytest.raises(DatasetNotPreparedError, match="tfds convert_format --dataset_version_dir="):
    load_cifar100_20(data_dir=str(tmp_path))


@pytest.mark.parametrize("kwargs, match", [
    (dict(main_coarse=3, aux_coarse=(1, 3)), "distinct"),
    (dict(main_coarse=20), r"\[0, 20\)"),
    (dict(dev_fraction=0.0), "dev_fraction"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    load_cifar100_20(**kwargs)


def test_prepare_cli_errors():
  with pytest.raises(ValueError, match="unknown dataset"):
    prepare.prepare("imagenet2012")
  if prepare.missing_requirements():
    with mock.patch("sys.stderr", new_callable=io.StringIO) as err:
      assert prepare.main(["cifar100", "--data_dir=/nowhere"]) == 1
    assert "pip install 'aux_jax[prepare]'" in err.getvalue()
