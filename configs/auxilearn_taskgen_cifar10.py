"""AuxiLearn auxiliary-task generation on CIFAR-10 (Navon et al., ICLR 2021).

A labeler network (4-layer conv net) gives each training image a distribution over
k = 5 sub-classes of its class; a CIFAR ResNet-18 with a 10-way main head and a 50-way
auxiliary head learns both; the labeler gets the implicit hypergradient of the main
loss on the dev set (10% of the training split) every 10 steps: 3 Neumann terms with
α = 1e-4 and no α prefactor, clip 10, Adam 1e-4 on φ (the AuxiLearn README's usage
example). This experiment is our own extension: the AuxiLearn repository has no
CIFAR-10 code (only NYUv2 and Oxford Pet), so it uses the library's defaults (cross-
entropies, a fixed λ = 1 sum); the original's objective (focal losses, × 0.25, a
learnable combiner) is one override away (see `configs/auxilearn_taskgen_pet.py`).
See `aux_jax.methods.taskgen`.

Prepare the data once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]' && python -m aux_jax.data.prepare cifar10

then

    python -m experiments.train --config=configs/auxilearn_taskgen_cifar10.py \
        --workdir=workdirs/taskgen_cifar10
    python -m experiments.train --config=configs/auxilearn_taskgen_cifar10.py:fixed \
        --workdir=workdirs/taskgen_cifar10_fixed      # fixed random labeler
    python -m experiments.train --config=configs/auxilearn_taskgen_cifar10.py:stl \
        --workdir=workdirs/taskgen_cifar10_stl        # main task only

The argument after ':' is the variant: learned (default), fixed
(``method.kwargs.learn_labeler=False``) or stl (the main task alone). A low-data
regime: ``--config.data.kwargs.max_train=5000``.
"""

import ml_collections

from configs import common

VARIANTS = common.TASKGEN_VARIANTS
EPOCHS = 100
BATCH = 128
TRAIN_IMAGES = 45_000  # 50,000 minus the 10% dev split


def get_config(variant: str = "learned") -> ml_collections.ConfigDict:
  c = common.base()
  c.data = common.data("cifar10", batch_size=BATCH, dev_batch_size=128, augment=True,
                       crop_pad=4, data_dir=None, dev_fraction=0.1, seed=0,
                       max_train=None)
  c.data.subclass_task = 5              # k sub-classes per main class
  c.model = common.model("resnet18_cifar", width=64)
  c.method = common.method(
      "taskgen", aux_weight=1.0,        # λ
      learn_labeler=True,               # False: fixed random labeler (no upper steps)
      labeler_features=(32, 64, 128, 256))
  c.optim = common.optim("sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                         schedule="cosine", num_steps=EPOCHS * (TRAIN_IMAGES // BATCH))
  c.hyper = common.hyper(interval=10, step=1e-4, optimizer="adam", lr=1e-4)
  c.hyper.include_weight_decay = False  # the original: G = ∇_θ L_T only
  c.train = common.train(log_every=100, eval_every=1000, checkpoint_every=5000)
  return common.taskgen_variant(c, variant)
