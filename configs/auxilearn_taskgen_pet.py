"""AuxiLearn auxiliary-task generation on Oxford-IIIT Pet (Navon et al., ICLR 2021).

37 breeds (TFDS 'oxford_iiit_pet', feature 'label'), images resized to 64×64; dev =
10% of the 3,680 training images, test = the 3,669 test images. A width-32 CIFAR
ResNet-18 (256 features) with a 37-way main head and a 37·5-way auxiliary head;
the rest as for CIFAR-10 (`configs/auxilearn_taskgen_cifar10.py`) (k = 5, upper step every 10
steps, 3 Neumann terms, α = 1e-4, no α prefactor, clip 10, Adam 1e-4 on φ).

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

VARIANTS = ("learned", "fixed", common.STL)
EPOCHS = 100
BATCH = 32
IMAGE_SIZE = 64
TRAIN_IMAGES = 3312  # 3,680 minus the 10% dev split


def get_config(variant: str = "learned") -> ml_collections.ConfigDict:
  variant = variant or "learned"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
  c = common.base()
  c.variant = variant
  c.data = common.data("oxford_pet", batch_size=BATCH, dev_batch_size=64, augment=True,
                       crop_pad=IMAGE_SIZE // 8, data_dir=None, dev_fraction=0.1,
                       seed=0, max_train=None, image_size=IMAGE_SIZE)
  c.data.subclass_task = 5              # k sub-classes per main class
  c.model = common.model("resnet18_cifar", width=32)
  if variant == common.STL:
    c.method = common.method(common.STL)
  else:
    c.method = common.method("taskgen", aux_weight=1.0,
                             learn_labeler=variant == "learned",
                             labeler_features=(32, 64, 128, 256))
  c.optim = common.optim("sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                         schedule="cosine", num_steps=EPOCHS * (TRAIN_IMAGES // BATCH))
  c.hyper = common.hyper(interval=10, step=1e-4, optimizer="adam", lr=1e-4)
  c.hyper.include_weight_decay = False  # the original: G = ∇_θ L_T only
  c.train = common.train(log_every=50, eval_every=500, checkpoint_every=2000)
  return c
