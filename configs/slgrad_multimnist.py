"""SLGrad on Multi-MNIST (Grégoire et al., 2023), and its baselines.

Two overlaid MNIST digits on a 36×36 canvas (`aux_jax.data.multi_mnist`); task 0:
the left digit, task 1: the right digit, both 10-way. As in the original: 15,000
training and 5,000 dev composites, batch 64, main-task validation batch 32, SGD lr
1e-2 momentum 0.9; the MultiLeNet body of Sener & Koltun (2018) with one linear head
per task. Model selection by dev accuracy of the left digit. The original trains 500
epochs; this config runs 50 (``--config.optim.num_steps`` to change).

Prepare MNIST once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]' && python -m aux_jax.data.prepare mnist

then

    python -m experiments.train --config=configs/slgrad_multimnist.py[:METHOD] \
        --workdir=workdirs/multimnist

METHOD: any of `aux_jax.methods.METHODS` (default slgrad).
"""

import ml_collections
from ml_collections import config_dict

from configs import slgrad_toy

TRAIN_IMAGES = 15_000
EPOCHS = 50
BATCH = 64


def get_config(method: str = "slgrad") -> ml_collections.ConfigDict:
  c = slgrad_toy.get_config(method)
  c.data.name = "multi_mnist"
  c.data.kwargs = ml_collections.ConfigDict({
      "data_dir": config_dict.placeholder(str),
      "image_size": 36,
      "max_shift": 2,               # right digit 4..8 px down-right of the left one
      "dev_fraction": 5_000 / 60_000,
      "max_train": TRAIN_IMAGES,
      "seed": 0,
  })
  c.data.batch_size = BATCH
  c.data.dev_batch_size = 32
  c.data.eval_batch_size = 1000
  c.data.augment = False
  c.data.crop_pad = 4

  c.model.name = "multi_lenet"
  c.model.kwargs = ml_collections.ConfigDict()
  if c.method.name == "gradnorm":
    c.method.kwargs = ml_collections.ConfigDict({"layer": r"^dense/"})

  c.optim.num_steps = EPOCHS * TRAIN_IMAGES // BATCH

  c.train.select = "accuracy"
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 2000
  return c
