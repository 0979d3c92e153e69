"""Multi-task datasets (host arrays), deterministic on-device sampling and augmentation."""

from aux_jax import registry
from aux_jax.data.augment import random_crop_flip
from aux_jax.data.cifar100_20 import load_cifar100_20
from aux_jax.data.tfds_source import DatasetNotPreparedError
from aux_jax.data.digits import load_digits_multitask
from aux_jax.data.multitask import MultiTaskData, preprocess
from aux_jax.data.shared_input import SharedInputData
from aux_jax.data.sampler import (
    check_batch_size,
    gather_task_batch,
    pool_batch_indices,
    task_batch_indices,
)

# name -> "module:function" (imported when used: keeps TFDS and friends lazy).
_LOADERS = {
    "digits": "aux_jax.data.digits:load_digits_multitask",
    "cifar100_20": "aux_jax.data.cifar100_20:load_cifar100_20",
    "cifar10": "aux_jax.data.tfds_images:load_cifar10",
    "oxford_pet": "aux_jax.data.tfds_images:load_oxford_pet",
    "cifar10_fewshot": "aux_jax.data.fewshot:load_cifar10_fewshot",
    "image_folders": "aux_jax.data.image_folders:load_image_folders",
    "chexpert": "aux_jax.data.chexpert:load_chexpert",
    "toy_regression": "aux_jax.data.toy_regression:load_toy_regression",
    "cifar10_ovr": "aux_jax.data.cifar10_ovr:load_cifar10_ovr",
    "multi_mnist": "aux_jax.data.multi_mnist:load_multi_mnist",
    "nyuv2": "aux_jax.data.nyuv2:load_nyuv2_multitask",
}

DATASETS = tuple(sorted(_LOADERS))


def get_dataset(name: str, **kwargs) -> "MultiTaskData | SharedInputData":
  """Loads a multi-task dataset by name (one of `DATASETS`).

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  return registry.lookup(_LOADERS, name, "dataset")(**kwargs)


__all__ = [
    "DatasetNotPreparedError",
    "DATASETS",
    "MultiTaskData",
    "SharedInputData",
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
