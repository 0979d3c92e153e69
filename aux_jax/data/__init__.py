"""Multi-task datasets (host arrays), deterministic on-device sampling and augmentation."""

from aux_jax.data.augment import random_crop_flip
from aux_jax.data.cifar100_20 import DatasetNotPreparedError, load_cifar100_20
from aux_jax.data.digits import load_digits_multitask
from aux_jax.data.multitask import MultiTaskData, preprocess
from aux_jax.data.sampler import (
    check_batch_size,
    gather_task_batch,
    pool_batch_indices,
    task_batch_indices,
)

_LOADERS = {
    "digits": load_digits_multitask,
    "cifar100_20": load_cifar100_20,
}


def get_dataset(name: str, **kwargs) -> MultiTaskData:
  """Loads a multi-task dataset by name ('digits' or 'cifar100_20').

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  if name not in _LOADERS:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(_LOADERS))}")
  return _LOADERS[name](**kwargs)


__all__ = [
    "DatasetNotPreparedError",
    "MultiTaskData",
    "check_batch_size",
    "gather_task_batch",
    "get_dataset",
    "load_cifar100_20",
    "load_digits_multitask",
    "pool_batch_indices",
    "preprocess",
    "random_crop_flip",
    "task_batch_indices",
]
