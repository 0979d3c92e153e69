"""jsonl loader, macro-F1 and the byte tokenizer on tiny generated data."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from aux_jax.aang.data import keyword_data, load_jsonl_dir, macro_f1


def write_split(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    for text, label in rows:
      f.write(json.dumps({"text": text, "label": label, "metadata": {}}) + "\n")


@pytest.fixture
def data_dir(tmp_path):
  write_split(tmp_path / "train.jsonl", [("uses a parser", "Uses"), ("prior work", "Background"),
                                         ("unlike them", "CompareOrContrast"),
                                         ("we use", "Uses")])
  write_split(tmp_path / "dev.jsonl", [("as in", "Background"), ("we adopt", "Uses")])
  write_split(tmp_path / "test.jsonl", [("in contrast", "CompareOrContrast")])
  return tmp_path


def test_load_sorted_labels(data_dir):
  d = load_jsonl_dir(str(data_dir))
  assert d.label_names == ("Background", "CompareOrContrast", "Uses")
  assert d.train.texts[0] == "uses a parser"
  np.testing.assert_array_equal(d.train.labels, [2, 0, 1, 2])
  np.testing.assert_array_equal(d.dev.labels, [0, 2])
  np.testing.assert_array_equal(d.test.labels, [1])
  d2 = load_jsonl_dir(str(data_dir), label_names=["Uses", "Background", "CompareOrContrast"])
  np.testing.assert_array_equal(d2.train.labels, [0, 1, 2, 0])


def test_load_errors(data_dir, tmp_path_factory):
  with pytest.raises(ValueError, match="not in the label set"):
    load_jsonl_dir(str(data_dir), label_names=["Uses", "Background"])
  (data_dir / "test.jsonl").unlink()
  with pytest.raises(FileNotFoundError, match="train.jsonl, dev.jsonl and test.jsonl"):
    load_jsonl_dir(str(data_dir))
  with pytest.raises(FileNotFoundError, match="No data directory"):
    load_jsonl_dir(str(data_dir / "missing"))
  bad = tmp_path_factory.mktemp("bad")
  for s in ("train", "dev", "test"):
    (bad / f"{s}.jsonl").write_text('{"sentence": "x", "label": "a"}\n')
  with pytest.raises(ValueError, match="lacks a 'text' or 'label'"):
    load_jsonl_dir(str(bad))


def test_macro_f1_matches_sklearn():
  rng = np.random.default_rng(0)
  for _ in range(20):
    y, p = rng.integers(0, 5, 40), rng.integers(0, 4, 40)
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))
    assert macro_f1(y, p, num_classes=6) == pytest.approx(
        f1_score(y, p, average="macro", labels=list(range(6)), zero_division=0))
  # Hand-computed: classes 0 (tp 1, fp 0, fn 1 -> 2/3) and 1 (tp 1, fp 1, fn 0 -> 2/3).
  assert macro_f1([0, 0, 1], [0, 1, 1]) == pytest.approx(2 / 3)


def test_keyword_data_deterministic():
  a, b = keyword_data(3), keyword_data(3)
  assert a.train.texts == b.train.texts
  for text, y in zip(a.train.texts, a.train.labels):
    assert a.label_names[y] in text.split()
