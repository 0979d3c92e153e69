"""AuxiLearn auxiliary-task generation on Oxford-IIIT Pet (Navon et al., ICLR 2021).

The original's protocol (AuxiLearn's ``experiments/oxford_pet``): 37 breeds (TFDS
'oxford_iiit_pet'), 30 % of the trainval images held out for model selection, 30
training images per breed, images at 224 px; a ResNet-18 (ImageNet stem) with a 37-way
main head and a 37·5-way auxiliary head; a labeler gives each image a distribution over
the k = 5 sub-classes of its breed. Objective as the original: focal losses (γ = 2) on
both heads, the auxiliary term × 0.25, combined by a learnable linear network with
skip (w ∈ R² init 1, clamped ≥ 0) that is trained with the labeler (φ = labeler +
combiner). Upper step every 30 steps: 3 Neumann terms over the backbone and the main
head (the auxiliary head left out, as the original), α = 1e-3 (the original's primary
lr), no α prefactor, clip 50, meta SGD 1e-3 (momentum 0.9, weight decay 5e-3),
a growing series applied. Lower level: SGD 1e-3 (momentum 0.9, weight decay 5e-3),
cosine over 150 epochs, batch 16. The hypergradient's objective is a separate
9-image meta-validation set (the whole set per upper step), model selection the 30 %
held-out set. Remaining differences (docs/fidelity.md): a small conv labeler (the
original: a second ResNet-18) and pad-and-crop at 224 px (the original: resize 256,
random crop 224).

As the original (docs/fidelity.md, "AuxiLearn — task generation, Oxford-IIIT Pet",
rows "upper-step batches" and "init"): the meta-validation batch augmented like
training batches (``data.augment_dev``), its loss in train-mode BatchNorm with the
running statistics then updated (``hyper.dev_bn="train"``), the hypergradient's
training term on a fresh batch (``hyper.train_term="fresh"``); PyTorch's default
initialisation of the heads (``model.head_init``) and torchvision's of the ResNet
(He-normal fan-out convolutions, the module's own: ``model.init="flax"``).

Prepare the data once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]' && python -m aux_jax.data.prepare oxford_iiit_pet

then

    python -m experiments.train --config=configs/auxilearn_taskgen_pet.py \
        --workdir=workdirs/taskgen_pet
    python -m experiments.train --config=configs/auxilearn_taskgen_pet.py:fixed \
        --workdir=workdirs/taskgen_pet_fixed          # fixed random labeler
    python -m experiments.train --config=configs/auxilearn_taskgen_pet.py:stl \
        --workdir=workdirs/taskgen_pet_stl            # main task only
"""

import ml_collections

from configs import common

VARIANTS = common.TASKGEN_VARIANTS
EPOCHS = 150
BATCH = 16
IMAGE_SIZE = 224
PER_CLASS = 30
TRAIN_IMAGES = 37 * PER_CLASS - 9  # 1,101: 30 per breed minus the 9 meta-validation


def get_config(variant: str = "learned") -> ml_collections.ConfigDict:
  c = common.base()
  c.seed = 42
  c.data = common.data("oxford_pet", batch_size=BATCH, dev_batch_size=9, augment=True,
                       crop_pad=IMAGE_SIZE // 8, data_dir=None, dev_fraction=0.3,
                       seed=0, max_train=None, per_class=PER_CLASS, meta_size=9,
                       image_size=IMAGE_SIZE,
                       augment_dev=True)   # the meta set is a subset of the augmented set
  c.data.subclass_task = 5              # k sub-classes per main class
  c.data.focal_gamma = 2.0              # focal losses on main and auxiliary heads
  c.model = common.model("resnet18_cifar", width=64, stem="imagenet",
                         head_init="torch_default")   # nn.Linear heads
  c.method = common.method("taskgen", aux_weight=1.0, learn_labeler=True,
                           labeler_features=(32, 64, 128, 256),
                           combiner="linear_skip", aux_scale=0.25,
                           hyper_wrt="main_head")   # the IFT leaves the aux head out
  c.optim = common.optim("sgd", lr=1e-3, momentum=0.9, weight_decay=5e-3,
                         schedule="cosine", num_steps=EPOCHS * (TRAIN_IMAGES // BATCH))
  # The original's hyperstep: train-mode forwards of the meta batch, then of a fresh
  # training batch (A:experiments/oxford_pet/trainer.py:237-266).
  c.hyper = common.hyper(interval=30, step=1e-3, optimizer="sgd", lr=1e-3, momentum=0.9,
                         weight_decay=5e-3, max_norm=50.0, on_diverged="apply",
                         dev_bn="train", train_term="fresh")
  c.hyper.include_weight_decay = False  # the original: G = ∇_θ L_T only
  steps_per_epoch = TRAIN_IMAGES // BATCH
  c.train = common.train(log_every=steps_per_epoch, eval_every=steps_per_epoch,
                         checkpoint_every=10 * steps_per_epoch,
                         select_ties="last")  # the original's >= (trainer.py:364)
  return common.taskgen_variant(c, variant)
