"""MAOAL on CIFAR-100/20, the original paper's setup (Chen et al., NeurIPS 2022).

CIFAR-100 split by its 20 coarse classes into 20 five-way tasks; main task = coarse
class 14 ("people"), auxiliary tasks = coarse classes 0–9, each on its own images;
dev = 5% of the main task's training images. CIFAR ResNet-18, one 512→5 head per task.
SGD 0.1, momentum 0.9, weight decay 5e-4, cosine over 200 epochs, batch 32 per task,
dev batch 100, random-crop(4)+flip on device; upper step every 10 steps with 3
Neumann terms (α = 1, no α prefactor), Adam 0.01 and weight decay 5e-4 on W, clip 10;
a growing series is clipped and applied as the original does (``hyper.on_diverged``).
Evaluation once per epoch as the original; besides the best-on-dev selection the
summary reports the original's figure, the maximum per-epoch test accuracy, as the
oracle ``test_accuracy_max_over_epochs`` (never used for selection).

As the original (docs/fidelity.md, "MAOAL — CIFAR-100/20", rows "dev augmentation",
"upper-step batches", "BatchNorm" and "init"), in every variant: the upper step's
dev batch augmented (``data.augment_dev``), its dev loss in train-mode BatchNorm
with the running statistics then updated (``hyper.dev_bn="train"``), G on a fresh
training batch (``hyper.train_term="fresh"``), and PyTorch's default initialisation
of the ResNet and the heads (``model.init``, ``model.head_init``). The library's
defaults (``eval``, ``lower``, no dev augmentation, ``flax``) are the clean-dev-loss
alternative. Kept as ours: task k's own head (the row "head of each aux task";
``--config.model.aux_heads=shifted`` is the original's indexing).

Prepare the data once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]' && python -m aux_jax.data.prepare cifar100

then ``python -m experiments.train --config=configs/maoal_cifar100_20.py[:METHOD]
--workdir=workdirs/cifar``, METHOD one of stl | equal | gcs | auxl | maoal (or any
other method of `aux_jax.methods.METHODS`), or ``maoal_convergent``: MAOAL with the
library's recommended upper level (α-scaled Neumann series with a small α, a diverged
series skipped; `configs.common.maoal_convergent`).
"""

import ml_collections

from configs import common

MAIN_TRAIN_IMAGES = 2375  # 2500 minus the 5% dev split
EPOCHS = 200
BATCH = 32
STEPS_PER_EPOCH = MAIN_TRAIN_IMAGES // BATCH  # 74 (drop-last; the original: 75)


# The compare launcher's default rows (`experiments.compare --variants` overrides).
VARIANTS = ("stl", "equal", "gcs", "auxl", "maoal")  # the MAOAL paper's table

def get_config(method: str = "maoal") -> ml_collections.ConfigDict:
  c = common.base()
  c.data = common.data("cifar100_20", batch_size=BATCH, dev_batch_size=100,
                       augment=True, crop_pad=4, data_dir=None, main_coarse=14,
                       aux_coarse=tuple(range(10)), dev_fraction=0.05,
                       normalization="cifar100",   # the original's fixed constants
                       augment_dev=True)   # the meta split is cut from the augmented set
  # BatchNorm running statistics updated by every task's batch, as the original's
  # per-task forward passes ("main": the main task's only); PyTorch's default
  # initialisation (no init code in the original).
  c.model = common.model("resnet18_cifar", bn_stats="all", width=64,
                         init="torch_default", head_init="torch_default")
  # stem, stage1..stage4 (heads excluded)
  c.method = common.method(method or "maoal", partition="module_wise")
  c.optim = common.optim("sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                         schedule="cosine",
                         num_steps=EPOCHS * STEPS_PER_EPOCH)
  # The original's α = 1: the series may grow; it is clipped and applied as the
  # original does, and counted (hypergrad_diverged).
  # The original's upper step: a train-mode forward of the dev batch (statistics
  # updated), G on a fresh training batch.
  c.hyper = common.hyper(interval=10, step=1.0, optimizer="adam", lr=0.01,
                         weight_decay=5e-4, on_diverged="apply", dev_bn="train",
                         train_term="fresh")
  common.maoal_variants(c, method, convergent_step=0.01)
  if c.method.name == "gradnorm":
    # GradNorm balances gradient norms at the last shared layer.
    c.method.kwargs = ml_collections.ConfigDict({"layer": r"^stage4/block1/conv2/"})
  c.train = common.train(log_every=STEPS_PER_EPOCH, eval_every=STEPS_PER_EPOCH,
                         checkpoint_every=10 * STEPS_PER_EPOCH, track_test_max=True)
  return c
