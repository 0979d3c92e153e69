"""Metric writers: every scalar of ``metrics.jsonl`` also in TensorBoard (and W&B).

``train.writers`` (default ``("tensorboard",)``) names the writers of a run:

* ``tensorboard``: event files in ``<workdir>/tb/`` (tensorboardX's synchronous
  event-file writer: no TensorFlow), ``tensorboard --logdir <workdir>/tb``;
* ``wandb``: Weights & Biases (``pip install aux_jax[wandb]``; imported only when
  selected). The run id is kept in ``<workdir>/wandb_id`` so a resumed run continues
  the same W&B run; ``train.wandb_project`` names the project.

The loop hands each writer the records it appends to ``metrics.jsonl``, at the same
moment (just before the checkpoint of their step), so the preemption guarantees of
``metrics.jsonl`` carry over. On resume the TensorBoard events are rewritten from the
truncated ``metrics.jsonl`` (the old event files are removed first), so no step is ever
shown twice and nothing past the restored step survives. W&B cannot drop points (its
"rewind" is a private preview): a resumed W&B run keeps the killed run's points past
the restored step and ignores the rerun's steps below its last one; as steps repeat
exactly, those are the values the rerun computes again.

A record becomes scalars by `record_scalars`: numbers under their key; a list under
``key/i`` (``key/i/j`` ...), or under the names that ``array_names[key]`` gives its
axes (e.g. ``weights/<task>/<module>`` for MAOAL's task × module weights).
"""

from __future__ import annotations

import glob
import importlib
import io
import os
import time
from typing import Mapping, Optional, Sequence

WRITERS = ("tensorboard", "wandb")
TB_DIR = "tb"


def record_scalars(record: Mapping, array_names: Optional[Mapping] = None
                   ) -> dict[str, float]:
  """The scalars of one metric record, by tag (the ``step`` field excluded).

  Args:
    record: a ``metrics.jsonl`` record: ``step`` and numbers or nested lists.
    array_names: ``{key: (names of axis 0, names of axis 1, ...)}`` for list-valued
      metrics; axes without names (or of another length) use their indices.

  Returns:
    ``{tag: float}``: ``key`` for a number, ``key/a/b`` for element [a, b] of a list.
  """
  out = {}
  names = array_names or {}

  def walk(tag, value, axes):
    if isinstance(value, bool):
      out[tag] = float(value)
    elif isinstance(value, (int, float)):
      out[tag] = float(value)
    elif isinstance(value, (list, tuple)):
      labels = axes[0] if axes and len(axes[0]) == len(value) else None
      for i, v in enumerate(value):
        walk(f"{tag}/{labels[i] if labels else i}", v, axes[1:])

  for key, value in record.items():
    if key != "step":
      walk(key, value, tuple(names.get(key, ())))
  return out


class TensorBoardWriter:
  """Scalars and images into TensorBoard event files (written synchronously, so a
  ``flush`` puts every event on disk before the checkpoint that follows it)."""

  def __init__(self, logdir: str):
    from tensorboardX.event_file_writer import EventsWriter

    os.makedirs(logdir, exist_ok=True)
    self.logdir = logdir
    self._writer = EventsWriter(os.path.join(logdir, "events"), "")

  def _summary(self, step: int, summary) -> None:
    from tensorboardX.proto.event_pb2 import Event

    self._writer.write_event(Event(wall_time=time.time(), step=int(step),
                                   summary=summary))

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    from tensorboardX.proto.summary_pb2 import Summary

    self._summary(step, Summary(value=[Summary.Value(tag=t, simple_value=v)
                                       for t, v in values.items()]))

  def image(self, step: int, tag: str, png_path: str) -> None:
    from PIL import Image
    from tensorboardX.proto.summary_pb2 import Summary

    with open(png_path, "rb") as f:
      data = f.read()
    with Image.open(io.BytesIO(data)) as im:
      width, height = im.size
    self._summary(step, Summary(value=[Summary.Value(tag=tag, image=Summary.Image(
        height=height, width=width, colorspace=4, encoded_image_string=data))]))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class WandbWriter:
  """Scalars and images to Weights & Biases (``wandb`` imported only here)."""

  def __init__(self, workdir: str, config: dict, project: str = ""):
    self._wandb = importlib.import_module("wandb")
    id_path = os.path.join(workdir, "wandb_id")
    if os.path.exists(id_path):
      with open(id_path) as f:
        run_id = f.read().strip()
    else:
      run_id = self._wandb.util.generate_id()
      with open(id_path, "w") as f:
        f.write(run_id)
    self._run = self._wandb.init(
        project=project or None, id=run_id, resume="allow", dir=workdir,
        name=os.path.basename(os.path.normpath(workdir)), config=config)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    self._run.log(dict(values), step=int(step))

  def image(self, step: int, tag: str, png_path: str) -> None:
    self._run.log({tag: self._wandb.Image(png_path)}, step=int(step))

  def flush(self) -> None:
    pass

  def close(self) -> None:
    self._run.finish()


class Writers:
  """The run's writers, fed the records of ``metrics.jsonl`` (process 0 only).

  Args:
    workdir: the run's directory.
    names: the writers (`WRITERS`).
    config: the run's config as a dict (W&B's run config).
    array_names: names of the axes of list-valued metrics (`record_scalars`).
    wandb_project: the W&B project ("" = W&B's default).
    replay: the records already in ``metrics.jsonl`` (a resumed run): TensorBoard's
      events are rewritten from them.
  """

  def __init__(self, workdir: str, names: Sequence[str], config: dict,
               array_names: Optional[Mapping] = None, wandb_project: str = "",
               replay: Sequence[Mapping] = ()):
    unknown = [n for n in names if n not in WRITERS]
    if unknown:
      raise ValueError(f"train.writers: unknown {unknown}; known: {', '.join(WRITERS)}")
    self._array_names = dict(array_names or {})
    self._writers = []
    if "tensorboard" in names:
      logdir = os.path.join(workdir, TB_DIR)
      for old in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        os.remove(old)  # rewritten below from the (truncated) metrics.jsonl
      tb = TensorBoardWriter(logdir)
      for record in replay:
        tb.scalars(record["step"], self._scalars(record))
      tb.flush()
      self._writers.append(tb)
    if "wandb" in names:
      self._writers.append(WandbWriter(workdir, config, wandb_project))

  def _scalars(self, record):
    return record_scalars(record, self._array_names)

  def write(self, records: Sequence[Mapping]) -> None:
    """Writes ``records`` and flushes (called where ``metrics.jsonl`` is appended)."""
    for record in records:
      scalars = self._scalars(record)
      for w in self._writers:
        w.scalars(record["step"], scalars)
    for w in self._writers:
      w.flush()

  def images(self, step: int, paths: Sequence[str]) -> None:
    """Each PNG as an image tagged by its file name (e.g. the weights plot)."""
    for path in paths:
      tag = os.path.splitext(os.path.basename(path))[0]
      for w in self._writers:
        w.image(step, tag, path)
    for w in self._writers:
      w.flush()

  def close(self) -> None:
    for w in self._writers:
      w.close()
    self._writers = []


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """A run's TensorBoard scalars read back with TensorBoard's own reader
  (``EventAccumulator``; needs the ``tensorboard`` package): ``{tag: [(step, value),
  ...]}`` in the order TensorBoard shows them."""
  from tensorboard.backend.event_processing import event_accumulator

  acc = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.SCALARS: 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()["scalars"]}


def expected_scalars(records: Sequence[Mapping], array_names: Optional[Mapping] = None
                     ) -> dict[str, list[tuple[int, float]]]:
  """What `read_scalars` holds for a run whose ``metrics.jsonl`` has ``records``
  (values in float32, TensorBoard's precision)."""
  import numpy as np

  out: dict[str, list] = {}
  for record in records:
    for tag, value in record_scalars(record, array_names).items():
      out.setdefault(tag, []).append((record["step"], float(np.float32(value))))
  return out
