"""MAOAL on CIFAR-100/20, the original paper's setup (Chen et al., NeurIPS 2022).

CIFAR-100 split by its 20 coarse classes into 20 five-way tasks; main task = coarse
class 14 ("people"), auxiliary tasks = coarse classes 0–9, each on its own images;
dev = 5% of the main task's training images. CIFAR ResNet-18, one 512→5 head per task.
SGD 0.1, momentum 0.9, weight decay 5e-4, cosine over 200 epochs, batch 32 per task,
dev batch 100, random-crop(4)+flip on device; upper step every 10 steps with 3
Neumann terms (α = 1, no α prefactor), Adam 0.01 and weight decay 5e-4 on W, clip 10.

Prepare the data once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]' && python -m aux_jax.data.prepare cifar100

then ``python -m experiments.train --config=configs/maoal_cifar100_20.py[:METHOD]
--workdir=workdirs/cifar``, METHOD one of sll | equal | gcs | auxl | maoal.
"""

import ml_collections

from configs import maoal_digits

MAIN_TRAIN_IMAGES = 2375  # 2500 minus the 5% dev split
EPOCHS = 200
BATCH = 32


def get_config(method: str = "maoal") -> ml_collections.ConfigDict:
  c = maoal_digits.get_config(method)
  c.data.name = "cifar100_20"
  c.data.kwargs = ml_collections.ConfigDict(
      {"data_dir": None, "main_coarse": 14, "aux_coarse": tuple(range(10)),
       "dev_fraction": 0.05})
  c.data.batch_size = BATCH
  c.data.dev_batch_size = 100
  c.data.augment = True
  c.data.crop_pad = 4

  c.model.name = "resnet18_cifar"
  c.model.kwargs = ml_collections.ConfigDict({"width": 64})

  c.method.partition = "module_wise"  # stem, stage1..stage4 (heads excluded)

  c.optim.lr = 0.1
  c.optim.num_steps = EPOCHS * (MAIN_TRAIN_IMAGES // BATCH)

  if c.method.name == "gradnorm":
    # GradNorm balances gradient norms at the last shared layer.
    c.method.kwargs = ml_collections.ConfigDict({"layer": r"^stage4/block1/conv2/"})
  if c.method.name == "maoal":
    c.hyper.step = 1.0                # the original's α (the series may diverge: skipped)
    c.hyper.lr = 0.01

  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 5000
  return c
