"""Text-classification data for AANG: a jsonl directory loader, macro-F1, a toy generator.

Expected directory layout (the "don't stop pretraining" format, e.g. ACL-ARC citation
intent)::

    DIR/train.jsonl   DIR/dev.jsonl   DIR/test.jsonl

one JSON object per line with at least ``"text"`` (str) and ``"label"`` (str or int);
other fields (``"metadata"``) are ignored. Label names are mapped to ids in sorted order
of the training labels (deterministic), or in the order of a user-given list.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np

FORMAT_HELP = (
    "Expected a directory with train.jsonl, dev.jsonl and test.jsonl, one JSON object per "
    'line like {"text": "a sentence", "label": "Background"}.')


@dataclasses.dataclass(frozen=True)
class TextSplit:
  """Texts and integer labels of one split.

  Attributes:
    texts: N strings.  labels: i32[N] label ids.
  """

  texts: tuple[str, ...]
  labels: np.ndarray

  def __post_init__(self):
    if len(self.texts) != len(self.labels):
      raise ValueError(
          f"TextSplit has {len(self.texts)} texts but {len(self.labels)} labels.")

  def __len__(self) -> int:
    return len(self.texts)


@dataclasses.dataclass(frozen=True)
class TextClassificationData:
  """A task: train/dev/test splits, label names, optional unlabelled in-domain texts."""

  train: TextSplit
  dev: TextSplit
  test: TextSplit
  label_names: tuple[str, ...]
  in_domain: tuple[str, ...] | None = None

  @property
  def num_classes(self) -> int:
    return len(self.label_names)


def _read_jsonl(path: str) -> list[tuple[str, str]]:
  rows = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{n} is not valid JSON ({e}). {FORMAT_HELP}") from None
      if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
        raise ValueError(f"{path}:{n} lacks a 'text' or 'label' field. {FORMAT_HELP}")
      if not isinstance(obj["text"], str):
        raise ValueError(f"{path}:{n}: 'text' must be a string. {FORMAT_HELP}")
      rows.append((obj["text"], str(obj["label"])))
  if not rows:
    raise ValueError(f"{path} has no examples. {FORMAT_HELP}")
  return rows


def load_jsonl_dir(directory: str,
                   label_names: Sequence[str] | None = None) -> TextClassificationData:
  """Loads ``train/dev/test.jsonl`` from ``directory``.

  Args:
    directory: the data directory (see the module docstring).
    label_names: optional label order; default: sorted distinct training labels.

  Returns:
    `TextClassificationData` (``in_domain`` is None).

  Raises:
    FileNotFoundError: a file is missing.  ValueError: a malformed line or unknown label.
  """
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No data directory {directory!r}. {FORMAT_HELP}")
  rows = {}
  for split in ("train", "dev", "test"):
    path = os.path.join(directory, f"{split}.jsonl")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"Missing {path}. {FORMAT_HELP}")
    rows[split] = _read_jsonl(path)
  if label_names is None:
    label_names = sorted({label for _, label in rows["train"]})
  label_names = tuple(str(x) for x in label_names)
  index = {name: i for i, name in enumerate(label_names)}

  def to_split(split):
    unknown = sorted({lab for _, lab in rows[split] if lab not in index})
    if unknown:
      raise ValueError(
          f"{split}.jsonl has labels {unknown} not in the label set {list(label_names)}.")
    return TextSplit(tuple(t for t, _ in rows[split]),
                     np.array([index[lab] for _, lab in rows[split]], np.int32))

  return TextClassificationData(to_split("train"), to_split("dev"), to_split("test"),
                                label_names)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray,
             num_classes: int | None = None) -> float:
  """Unweighted mean over classes of ``F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)``.

  Classes: those in ``y_true`` or ``y_pred`` (scikit-learn's convention), or all of
  ``0..num_classes-1`` if given (a class absent from both then scores 0).

  Args:
    y_true, y_pred: int[N].
    num_classes: optional class count.

  Returns:
    Macro-F1 in [0, 1].
  """
  y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
  if y_true.shape != y_pred.shape:
    raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape.")
  if y_true.size == 0:
    raise ValueError("macro_f1 of no examples.")
  classes = (np.arange(num_classes) if num_classes is not None
             else np.union1d(y_true, y_pred))
  f1s = []
  for k in classes:
    tp = np.sum((y_true == k) & (y_pred == k))
    denom = np.sum(y_true == k) + np.sum(y_pred == k)
    f1s.append(2.0 * tp / denom if denom else 0.0)
  return float(np.mean(f1s))


_FILLER = ("the", "model", "data", "we", "results", "method", "paper", "work", "text",
           "task", "show", "using", "table", "large", "new", "on", "of", "and", "in", "a")


def keyword_data(seed: int, num_classes: int = 3, n_train: int = 96, n_dev: int = 48,
                 n_test: int = 48, length: int = 8,
                 keywords: Sequence[str] | None = None) -> TextClassificationData:
  """A toy task: each sentence of filler words contains its class's keyword once.

  Args:
    seed: numpy seed.
    num_classes: classes (at most the number of keywords).
    n_train, n_dev, n_test: split sizes.
    length: words per sentence (keyword included).
    keywords: one distinctive word per class.

  Returns:
    `TextClassificationData` with ``in_domain`` = unlabelled sentences of the same kind.
  """
  keywords = tuple(keywords or ("zebra", "quartz", "violin", "copper", "maple"))
  if not 1 < num_classes <= len(keywords):
    raise ValueError(f"num_classes must be in [2, {len(keywords)}], got {num_classes}.")
  rng = np.random.default_rng(seed)

  def split(n):
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    texts = []
    for y in labels:
      words = list(rng.choice(_FILLER, length - 1))
      words.insert(int(rng.integers(0, length)), keywords[y])
      texts.append(" ".join(words))
    return TextSplit(tuple(texts), labels)

  train, dev, test = split(n_train), split(n_dev), split(n_test)
  return TextClassificationData(train, dev, test,
                                tuple(keywords[:num_classes]), split(n_train).texts)
