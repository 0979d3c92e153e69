"""The CheXpert + TinyImageNet loader on a tiny generated directory."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from aux_jax.data import get_dataset
from aux_jax.data.chexpert import LABELS, balanced_rows, targets
from aux_jax.data.multitask import IMAGENET_MEAN, IMAGENET_STD, decode_multilabel

HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Cardiomegaly",
          "Edema", "Consolidation", "Atelectasis", "Pleural Effusion", "Support Devices"]


def _write_split(root, split, n, rng):
  """n rows with random "1.0"/"0.0"/"-1.0"/"" values; image i is gray level i."""
  rows = []
  for i in range(n):
    rel = f"{split}/patient{i:05d}/study1/view1_frontal.jpg"
    os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
    # Grayscale PNG content under a .jpg name is fine for Pillow; lossless keeps the level.
    Image.fromarray(np.full((12, 10), (7 * i + 3) % 256, np.uint8)).save(
        os.path.join(root, rel), format="PNG")
    vals = {c: rng.choice(["1.0", "0.0", "-1.0", ""]) for c in HEADER[5:]}
    rows.append({"Path": "CheXpert-v1.0-small/" + rel, "Sex": "F", "Age": "50",
                 "Frontal/Lateral": "Frontal", "AP/PA": "AP", **vals})
  with open(os.path.join(root, f"{split}.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, HEADER)
    w.writeheader()
    w.writerows(rows)
  return rows


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  chex = str(root / "CheXpert-v1.0-small")
  rng = np.random.default_rng(0)
  train_rows = _write_split(chex, "train", 60, rng)
  valid_rows = _write_split(chex, "valid", 20, rng)
  tiny = str(root / "tiny-imagenet-200")
  for c, wnid in enumerate(["n01", "n02", "n03"]):
    d = os.path.join(tiny, "train", wnid, "images")
    os.makedirs(d)
    for j in range(5):
      Image.fromarray(np.full((6, 6, 3), 40 * c + j, np.uint8)).save(
          os.path.join(d, f"{wnid}_{j}.JPEG"), format="PNG")
  return chex, tiny, train_rows, valid_rows


def _row_of(image, rows):
  """The CSV row whose generated gray level the image carries."""
  level = int(image[0, 0, 0])
  (i,) = [i for i in range(len(rows)) if (7 * i + 3) % 256 == level]
  return rows[i]


def test_balanced_rows_is_the_originals_draw():
  values = np.array([["1.0", "0.0"], ["1.0", "-1.0"], ["0.0", "1.0"], ["", "0.0"],
                     ["1.0", "1.0"], ["0.0", ""]], dtype=object)
  rows = balanced_rows(values, 4, np.random.default_rng(0))  # 2 per label: 1 pos + 1 neg
  assert len(rows) == 4 and len(set(rows)) == 4
  for col in range(2):
    assert np.sum(values[rows, col] == "1.0") >= 1 and np.sum(values[rows, col] == "0.0") >= 1
  none = balanced_rows(values, 4, np.random.default_rng(0), exclude=np.arange(6))
  assert len(none) == 0
  np.testing.assert_array_equal(targets(values[:4]), [[1, 0], [1, 1], [0, 1], [0, 0]])


def test_chexpert_loader(dirs):
  chex, tiny, train_rows, valid_rows = dirs
  data = get_dataset("chexpert", chexpert_dir=chex, aux_dir=tiny, image_size=8,
                     train_per_class=4, monitor=10, aux_classes=2, aux_per_class=3, seed=1)
  assert data.kinds == ("multilabel", "classification")
  assert data.task_names == ("chexpert", "tiny_imagenet")
  np.testing.assert_array_equal(data.num_classes, [5, 2])
  np.testing.assert_allclose(data.mean, IMAGENET_MEAN)
  np.testing.assert_allclose(data.std, IMAGENET_STD)
  assert data.train_images.shape[2:] == (8, 8, 3)
  n = int(data.train_counts[0])
  assert n <= 20 and int(data.train_counts[1]) == 6   # 2 classes × 3
  assert set(data.train_labels[1, :6].tolist()) == {0, 1}

  def check(images, codes, rows):
    ids = []
    for img, code in zip(images, codes):
      row = _row_of(img, rows)
      ids.append(row["Path"])
      want = [1.0 if row[c] in ("1.0", "-1.0") else 0.0 for c in LABELS]  # U-Ones, blank 0
      np.testing.assert_array_equal(decode_multilabel(np.asarray(code), 5), want)
      assert np.all(img == img[0, 0, 0])  # grayscale repeated over RGB
    return ids

  train_ids = check(data.train_images[0, :n], data.train_labels[0, :n], train_rows)
  dev_ids = check(data.dev_images, data.dev_labels, train_rows)
  check(data.test_images, data.test_labels, valid_rows)
  assert not set(train_ids) & set(dev_ids)            # monitor set disjoint from training
  assert len(set(train_ids)) == n and len(dev_ids) <= 10
  # The training draw holds exact positives and negatives of every finding.
  codes = np.array([[r[c] for c in LABELS] for r in train_rows], dtype=object)
  assert n == len(balanced_rows(codes, 20, np.random.default_rng(1)))

  alone = get_dataset("chexpert", chexpert_dir=chex, aux_dir=tiny, image_size=8,
                      train_per_class=4, monitor=10, seed=1, primary_only=True)
  assert alone.num_tasks == 1 and alone.kinds == ("multilabel",)
  np.testing.assert_array_equal(alone.train_images[0], data.train_images[0, :n])


def test_chexpert_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="train.csv"):
    get_dataset("chexpert", chexpert_dir=str(tmp_path), primary_only=True)
  with pytest.raises(ValueError, match="chexpert_dir is not set"):
    get_dataset("chexpert", chexpert_dir="", primary_only=True)


def test_attittud_chexpert_config_path(dirs):
  """The config's path at toy sizes: multilabel main task, ATTITTUD step, AUC metrics."""
  from aux_jax.train.experiment import build_experiment, load_data
  from configs import attittud_chexpert

  chex, tiny, _, _ = dirs
  c = attittud_chexpert.get_config("attittud_11m1")
  assert c.data.name == "chexpert" and c.model.name == "resnet18"
  assert c.train.select == "neg_loss" and c.data.kwargs.image_size == 224
  c.data.kwargs.update(dict(chexpert_dir=chex, aux_dir=tiny, image_size=32,
                            train_per_class=4, monitor=10, aux_classes=2, aux_per_class=3))
  c.model.kwargs = {"width": 2, "stage_sizes": (1, 1, 1, 1)}
  c.data.batch_size, c.data.dev_batch_size, c.data.eval_batch_size = 4, 4, 8
  c.method.kwargs.num_basis = 2
  data = load_data(c)
  with pytest.raises(ValueError, match="model.pretrained is not set"):
    build_experiment(c, data)
  c.model.pretrained = "none"
  exp = build_experiment(c, data)
  assert exp.problem.spec.kinds == ("multilabel", "classification")
  state, metrics = exp.lower_step(exp.init())
  assert np.isfinite(float(metrics["loss_main"]))
  m = exp.evaluate(exp.model(state), "test")
  assert {"test_auc", "test_loss", "test_label_accuracy"} <= set(m)
  assert all(f"test_auc_label{l}" in m for l in range(5))
