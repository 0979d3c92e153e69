"""Prepares TFDS datasets in the `array_record` format, readable without TensorFlow.

Usage (once per machine or shared data directory):

    pip install 'aux_jax[prepare]'          # TensorFlow: TFDS needs it to build CIFAR
    python -m aux_jax.data.prepare {cifar10,cifar100,mnist,oxford_iiit_pet} [--data_dir=DIR]

This is `tfds build NAME --file_format=array_record`; training then reads the
data through `tfds.data_source` with no TensorFlow installed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import importlib.util
import sys

DATASETS = ("cifar10", "cifar100", "mnist", "oxford_iiit_pet")


def missing_requirements() -> list[str]:
  """Python modules the TFDS builders need to prepare data, not installed here."""
  # tfds 4.9.10's builder imports `importlib_resources` on Python >= 3.9 without
  # declaring it as a dependency.
  return [m for m in ("tensorflow", "importlib_resources")
          if importlib.util.find_spec(m) is None]


def prepare(name: str, data_dir: str | None = None) -> str:
  """Downloads and prepares `name` as `array_record` under `data_dir`.

  Args:
    name: a TFDS dataset name from `DATASETS`.
    data_dir: TFDS data directory (default: `TFDS_DATA_DIR` or
      `~/tensorflow_datasets`).

  Returns:
    The prepared dataset's version directory.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return str(builder.data_dir)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("name", choices=DATASETS)
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data directory (default: TFDS_DATA_DIR or "
                      "~/tensorflow_datasets)")
  args = parser.parse_args(argv)
  missing = missing_requirements()
  if missing:
    print(
        f"Preparing {args.name} needs {', '.join(missing)}; install with\n"
        "    pip install 'aux_jax[prepare]'",
        file=sys.stderr,
    )
    return 1
  path = prepare(args.name, args.data_dir)
  print(f"{args.name} prepared in {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
