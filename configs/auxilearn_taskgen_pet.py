"""AuxiLearn auxiliary-task generation on Oxford-IIIT Pet (Navon et al., ICLR 2021).

The original's protocol (AuxiLearn's ``experiments/oxford_pet``): 37 breeds (TFDS
'oxford_iiit_pet'), 30 % of the trainval images held out for model selection, 30
training images per breed; images resized to 256 × 256, a random 224 crop and a flip
for training (and the meta-validation batch, below), the centre 224 crop otherwise,
ImageNet's mean/std (data.py:113-127; ``data.crop_size``, ``normalization="imagenet"``).
The primary network is torchvision's ResNet-18 with its 1000-way fc and MLP heads
1000 → 512 → 37 (main) and 1000 → 512 → 37·5 (auxiliary) (models.py:7-30; model
``resnet18``, ``num_outputs=1000``, ``model.head_hidden=512``); the labeler is a second
such ResNet-18 → 512 → 37·5 with a masked softmax over the k = 5 sub-classes of the
image's breed (models.py:33-64; ``method.kwargs.labeler="resnet18"``,
``labeler_hidden=(512,)``). Both start from random weights, the original's defaults
(``--primary-pretrained``, ``--auxiliary-pretrained`` False); ImageNet weights from a
local torchvision safetensors file with ``--config.model.pretrained=PATH`` and
``--config.method.kwargs.labeler_pretrained=PATH`` (docs/fidelity.md: how to get it).
Objective as the original: focal losses (γ = 2) on both heads, the auxiliary term ×
0.25, combined by a learnable linear network with skip (w ∈ R² init 1, clamped ≥ 0)
that is trained with the labeler (φ = labeler + combiner). Upper step every 30 steps:
3 Neumann terms over the backbone and the main head (the auxiliary head left out, as
the original), α = 1e-3 (the original's primary lr), no α prefactor, clip 50, meta SGD
1e-3 (momentum 0.9, weight decay 5e-3), a growing series applied. Lower level: SGD
1e-3 (momentum 0.9, weight decay 5e-3), cosine over 150 epochs, batch 16. The
hypergradient's objective is a separate 9-image meta-validation set (the whole set per
upper step), model selection the 30 % held-out set. Follows the rows of
docs/fidelity.md's Oxford-IIIT Pet table; remaining differences there (the labeler's
mask floor and its MLP's initialisation).

As the original (docs/fidelity.md, "AuxiLearn — task generation, Oxford-IIIT Pet",
rows "upper-step batches" and "init"): the meta-validation batch augmented like
training batches (``data.augment_dev``), its loss in train-mode BatchNorm with the
running statistics then updated (``hyper.dev_bn="train"``), the hypergradient's
training term on a fresh batch (``hyper.train_term="fresh"``); PyTorch's default
initialisation of both layers of both MLP heads (``model.head_init``) and torchvision's
of the ResNet (He-normal fan-out convolutions, its fc PyTorch's default; the module's
own: ``model.init="flax"``, which ``model.pretrained`` requires).

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
IMAGE_SIZE = 224   # the crop the networks see
STORED_SIZE = 256  # images resized to this, then cropped
PER_CLASS = 30
TRAIN_IMAGES = 37 * PER_CLASS - 9  # 1,101: 30 per breed minus the 9 meta-validation


def get_config(variant: str = "learned") -> ml_collections.ConfigDict:
  c = common.base()
  c.seed = 42
  c.data = common.data("oxford_pet", batch_size=BATCH, dev_batch_size=9, augment=True,
                       crop_pad=0, data_dir=None, dev_fraction=0.3,
                       seed=0, max_train=None, per_class=PER_CLASS, meta_size=9,
                       image_size=STORED_SIZE, normalization="imagenet",
                       augment_dev=True)   # the meta set is a subset of the augmented set
  c.data.crop_size = IMAGE_SIZE         # random 224 crop (train, meta), centre crop (eval)
  c.data.subclass_task = 5              # k sub-classes per main class
  c.data.focal_gamma = 2.0              # focal losses on main and auxiliary heads
  c.model = common.model("resnet18", width=64, num_outputs=1000,  # torchvision's, fc1000
                         head_init="torch_default")   # nn.Linear heads
  c.model.head_hidden = 512             # heads 1000 -> 512 -> C
  c.model.pretrained = common.placeholder_path()  # ImageNet weights file (unset: random)
  c.method = common.method("taskgen", aux_weight=1.0, learn_labeler=True,
                           labeler="resnet18", labeler_hidden=(512,), labeler_width=64,
                           labeler_pretrained=common.placeholder_path(),
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
