"""SLGrad on CIFAR-10 as 10 one-vs-rest tasks (Grégoire et al., 2023), and its baselines.

Task 0: "is it an airplane?"; tasks 1–9: the other classes, each a 2-class task on
the same images (`aux_jax.data.cifar10_ovr`). As in the original: 800 training and
200 dev images, label noise on the main task's training labels (off by default; the
original's noisy run flips 60 % uniformly), batch 64, main-task validation batch
100, SGD lr 1e-2 momentum 0.9, 300 epochs. Backbone: the MultiLeNet body (the
original's small LeNet has a task-specific conv tower per task; here every task has
a linear head on the 50-d shared features). Model selection by dev accuracy.

Prepare the data once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]' && python -m aux_jax.data.prepare cifar10

then

    python -m experiments.train --config=configs/slgrad_cifar10.py[:METHOD] \
        --config.data.kwargs.noise=0.6 --workdir=workdirs/cifar10_ovr

METHOD: any of `aux_jax.methods.METHODS` (default slgrad). The full training set:
``--config.data.kwargs.dev_fraction=0.1 --config.data.kwargs.max_train=45000``.

Fidelity rows followed (docs/fidelity.md, gradient-baseline table): SLGrad's GCS
(per-tensor cosines, unit-norm tensors), CAGrad c = 1, OL-AUX η = the model lr; SLGrad
one update per batch (``method.kwargs.look_ahead=True``: the original's two).
"""

import ml_collections

from configs import common

TRAIN_IMAGES = 800
EPOCHS = 300
BATCH = 64


# The compare launcher's default rows (`experiments.compare --variants` overrides).
VARIANTS = ("stl", "unif", "gcs", "olaux", "gradnorm", "pcgrad", "cagrad", "slgrad")

def get_config(method: str = "slgrad") -> ml_collections.ConfigDict:
  method = method or "slgrad"
  c = common.base()
  c.data = common.data(
      "cifar10_ovr", batch_size=BATCH, dev_batch_size=100, eval_batch_size=1000,
      crop_pad=4, data_dir=None,
      main_class=0,                 # airplane
      noise=0.0,                    # label-noise rate on the main task's training labels
      noise_kind="uniform",         # uniform | background
      dev_fraction=0.004,           # 200 of the 50,000 training images
      max_train=TRAIN_IMAGES, seed=0)
  c.model = common.model("multi_lenet")
  common.slgrad_image_methods(c, method, num_steps=EPOCHS * TRAIN_IMAGES // BATCH)
  c.train = common.train(log_every=100, eval_every=250, checkpoint_every=1000)
  return c
