"""Reading TFDS datasets as NumPy arrays, without TensorFlow.

Every loader of a `tensorflow-datasets` dataset goes through this module:
`tfds.data_source` reads the `array_record` format with no TensorFlow installed.
Preparing a dataset (download + conversion) needs TensorFlow, once:
`python -m aux_jax.data.prepare NAME` (see `aux_jax.data.prepare`). Tests use
`tfds.testing.mock_data`, which this path honours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np


class DatasetNotPreparedError(FileNotFoundError):
  """The dataset is not prepared in a format readable without TensorFlow."""


def _prepare_message(name: str, data_dir_root: str, version_dir: str) -> str:
  return (
      f"{name} is not prepared under data_dir={data_dir_root!r} (looked for "
      f"{version_dir}). Prepare it once (needs TensorFlow and internet):\n"
      f"    pip install 'aux_jax[prepare]'\n"
      f"    python -m aux_jax.data.prepare {name} --data_dir={data_dir_root}\n"
      f"(equivalently: tfds build {name} --file_format=array_record "
      f"--data_dir={data_dir_root}). Training then reads it without TensorFlow; "
      f"point the loader at it with data_dir (or the TFDS_DATA_DIR environment "
      f"variable)."
  )


def _tfrecord_message(version_dir: str, file_format) -> str:
  return (
      f"the dataset in {version_dir} is stored as {file_format}, which needs "
      f"TensorFlow to read. Add an array_record copy once:\n"
      f"    pip install 'aux_jax[prepare]'\n"
      f"    tfds convert_format --dataset_version_dir={version_dir} "
      f"--out_file_format=array_record\n"
      f"or prepare it afresh in another directory with "
      f"`python -m aux_jax.data.prepare NAME --data_dir=NEW_DIR`."
  )


def open_sources(name: str, splits: Sequence[str], data_dir: Optional[str] = None,
                 decode_images: bool = True):
  """Opens splits of TFDS dataset ``name`` as random-access data sources.

  Args:
    name: TFDS dataset name, e.g. 'cifar10', 'cifar100', 'mnist', 'oxford_iiit_pet'.
    splits: split names, e.g. ('train', 'test').
    data_dir: TFDS data directory (default: `TFDS_DATA_DIR` or
      `~/tensorflow_datasets`).
    decode_images: if False, the 'image' feature comes back encoded (`bytes`);
      decode rows lazily with `decode_images_at`.

  Returns:
    `(sources, features)`: one sequence of example dicts per split, and the
    dataset's `tfds.features.FeaturesDict`.

  Raises:
    DatasetNotPreparedError: with the commands that prepare it.
  """
  import tensorflow_datasets as tfds  # Heavy: imported only when used.
  from etils import epath

  builder = tfds.builder(name, data_dir=data_dir)
  version_dir = str(builder.data_dir)
  root = str(epath.Path(version_dir).parent.parent)
  decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
  try:
    sources = builder.as_data_source(split=list(splits), decoders=decoders)
  except Exception as e:  # tfds raises several types; diagnose below.
    if not builder.is_prepared():
      raise DatasetNotPreparedError(_prepare_message(name, root, version_dir)) from e
    formats = builder.info.available_file_formats()
    if not any(f.value in ("array_record", "parquet") for f in formats):
      raise DatasetNotPreparedError(
          _tfrecord_message(version_dir, builder.info.file_format.value)) from e
    raise
  return list(sources), builder.info.features


def read_examples(source, keys: Sequence[str]) -> dict[str, list]:
  """Every example's values of ``keys``, as lists (images kept as they come)."""
  examples = [source[i] for i in range(len(source))]
  return {k: [ex[k] for ex in examples] for k in keys}


def decode_images_at(images: list, rows, image_feature,
                     shape: Optional[tuple[int, int, int]] = None) -> np.ndarray:
  """Decodes (if encoded), optionally resizes, and stacks ``images[rows]``.

  Args:
    images: per-example images, `u8[H, W, C]` arrays or encoded `bytes`.
    rows: indices into ``images``.
    image_feature: the dataset's image feature (decodes `bytes`).
    shape: `(H, W, C)` every image must have; images of another height/width are
      resized to it (bilinear, for datasets of varying size like Oxford-IIIT Pet).
      None: the first image's shape, and all must match it.

  Returns:
    `u8[len(rows), H, W, C]`.
  """
  rows = np.asarray(rows)
  out = None
  for j, r in enumerate(rows):
    img = images[int(r)]
    if isinstance(img, (bytes, np.bytes_)):
      img = image_feature.decode_example_np(img)
    img = np.asarray(img)
    if img.ndim == 2:
      img = img[..., None]
    if shape is None:
      shape = img.shape
    if img.shape[-1] != shape[-1]:
      raise ValueError(f"expected {shape[-1]} channels, got image of shape {img.shape}")
    if img.shape != tuple(shape):
      img = resize(img, shape[:2])
    if out is None:
      out = np.zeros((len(rows),) + tuple(shape), np.uint8)
    out[j] = img
  if out is None:
    out = np.zeros((0,) + tuple(shape or (1, 1, 1)), np.uint8)
  return out


def resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """Bilinear (antialiased when shrinking) resize of one `u8[H, W, C]` image to
  `u8[h, w, C]`, with Pillow: fast on the host for datasets of many image sizes
  (a jitted resize would compile once per input shape)."""
  from PIL import Image

  image = np.asarray(image, np.uint8)
  h, w = hw
  if image.shape[-1] == 1:
    out = Image.fromarray(image[..., 0]).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(out)[..., None]
  return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))


def load_arrays(name: str, split: str, data_dir: Optional[str] = None,
                label_keys: Sequence[str] = ("label",),
                shape: Optional[tuple[int, int, int]] = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """One split of an image-classification TFDS dataset as arrays.

  Args:
    name: TFDS dataset name.
    split: split name.
    data_dir: TFDS data directory.
    label_keys: integer features to return.
    shape: `(H, W, C)` to resize every image to (see `decode_images_at`).

  Returns:
    `(images u8[N, H, W, C], {key: i32[N]})`.
  """
  (source,), features = open_sources(name, [split], data_dir)
  ex = read_examples(source, ("image",) + tuple(label_keys))
  images = decode_images_at(ex["image"], np.arange(len(source)), features["image"], shape)
  labels = {k: np.asarray([int(v) for v in ex[k]], np.int32) for k in label_keys}
  return images, labels
