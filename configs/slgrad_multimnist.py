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

Fidelity rows followed (docs/fidelity.md, gradient-baseline table): SLGrad's GCS
(per-tensor cosines, unit-norm tensors), CAGrad c = 1, OL-AUX η = the model lr; SLGrad
one update per batch (``method.kwargs.look_ahead=True``: the original's two).
"""

import ml_collections

from configs import common

TRAIN_IMAGES = 15_000
EPOCHS = 50
BATCH = 64


# The compare launcher's default rows (`experiments.compare --variants` overrides).
VARIANTS = ("stl", "unif", "gcs", "olaux", "gradnorm", "pcgrad", "cagrad", "slgrad")

def get_config(method: str = "slgrad") -> ml_collections.ConfigDict:
  method = method or "slgrad"
  c = common.base()
  c.data = common.data(
      "multi_mnist", batch_size=BATCH, dev_batch_size=32, eval_batch_size=1000,
      crop_pad=4, data_dir=None, image_size=36,
      max_shift=2,                  # right digit 4..8 px down-right of the left one
      dev_fraction=5_000 / 60_000, max_train=TRAIN_IMAGES, seed=0)
  c.model = common.model("multi_lenet")
  common.slgrad_image_methods(c, method, num_steps=EPOCHS * TRAIN_IMAGES // BATCH)
  c.train = common.train(log_every=100, eval_every=500, checkpoint_every=2000)
  return c
