"""AuxiLearn auxiliary-task generation on Oxford-IIIT Pet (Navon et al., ICLR 2021).

37 breeds (TFDS 'oxford_iiit_pet', feature 'label'), images resized to 64×64; dev =
10% of the 3,680 training images, test = the 3,669 test images. A width-32 CIFAR
ResNet-18 (256 features) with a 37-way main head and a 37·5-way auxiliary head;
the rest as in `configs/auxilearn_taskgen_cifar10.py` (k = 5, upper step every 10
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

from configs import auxilearn_taskgen_cifar10 as base

EPOCHS = 100
BATCH = 32
IMAGE_SIZE = 64
TRAIN_IMAGES = 3312  # 3,680 minus the 10% dev split


def get_config(variant: str = "learned") -> ml_collections.ConfigDict:
  c = base.get_config("learned")
  c.data.name = "oxford_pet"
  c.data.kwargs.image_size = IMAGE_SIZE
  c.data.batch_size = BATCH
  c.data.dev_batch_size = 64
  c.data.crop_pad = IMAGE_SIZE // 8

  c.model.kwargs.width = 32

  c.optim.lr = 0.05
  c.optim.num_steps = EPOCHS * (TRAIN_IMAGES // BATCH)

  c.train.log_every = 50
  c.train.eval_every = 500
  return base.apply_variant(c, variant)
