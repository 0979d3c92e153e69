"""ATTITTUD's original pair: CheXpert (main task) with TinyImageNet as auxiliary data.

Neither dataset can be downloaded by this package: get them yourself (CheXpert-small
v1.0 needs a request at stanfordmlgroup.github.io/competitions/chexpert/;
TinyImageNet from cs231n.stanford.edu/tiny-imagenet-200.zip) and give their
directories, in the class-per-folder layout of `aux_jax.data.image_folders`:

    <primary_dir>/train/<class_name>/**/*.png|jpg|jpeg
    <primary_dir>/test/<class_name>/**/*.png|jpg|jpeg
    <aux_dir>/train/<class_name>/**/*.png|jpg|jpeg

TinyImageNet's ``tiny-imagenet-200`` folder already has this layout for ``train/``
(``train/<wnid>/images/*.JPEG``). CheXpert is a CSV of multi-label findings: convert
it into class folders for the single-label task you study first (e.g. one folder per
label of one finding, uncertain labels dropped or mapped; ``train/`` from its
training CSV, ``test/`` from its validation CSV).

    python -m experiments.train --config=configs/attittud_chexpert.py:attittud_11m1 \\
        --config.data.kwargs.primary_dir=/data/chexpert_folders \\
        --config.data.kwargs.aux_dir=/data/tiny-imagenet-200 --workdir=workdirs/chexpert
    python -m experiments.attittud_compare --config=configs/attittud_chexpert.py \\
        --override=data.kwargs.primary_dir=/data/chexpert_folders \\
        --override=data.kwargs.aux_dir=/data/tiny-imagenet-200 --workdir=workdirs/chexpert

Variants (`common.ATTITTUD_VARIANTS`) and hyper-parameters as in
``configs/attittud_cifar10.py`` (the original's
CheXpert command: 1,000 training images per class, Adam 1e-3 / 1e-4 (ATTITTUD), 5e-5
fine-tuning, patience 10, k = 10 from 64 examples every 10 steps, λ = (1, 1, −1));
images resized to 64 × 64 (TinyImageNet's size), 500 TinyImageNet images per class,
dev = 10% of each CheXpert class's training images.

Fidelity rows followed (docs/fidelity.md, ATTITTUD table): no augmentation and g* from
examples independent of the basis's, as the original; the deliberate differences of
that table are this config's defaults.
"""

import ml_collections

from configs import common

VARIANTS = tuple(common.ATTITTUD_VARIANTS)
BATCH = 64
UNSET = ""  # placeholder: the loader raises a clear error until it is set


def get_config(variant: str = "attittud_11m1") -> ml_collections.ConfigDict:
  c = common.base("two_phase")
  c.data = common.data(
      # No augmentation, as the original (ToTensor + normalise, data/datasets.py:
      # 269-272, 313-322); augment=True: our random crop (pad 4) + flip.
      "image_folders", batch_size=BATCH, dev_batch_size=64, augment=False, crop_pad=4,
      primary_dir=UNSET,           # required: the CheXpert class folders
      aux_dir=UNSET,               # required unless primary_only: TinyImageNet
      image_size=64, dev_fraction=0.1,
      per_class=1000,              # CheXpert training images per class
      aux_per_class=500,           # TinyImageNet images per class
      primary_only=False)
  c.data.kwargs.seed = c.get_ref("seed")
  c.model = common.model("resnet18_cifar", width=64)
  c.optim = common.optim("adam", lr=1e-3, momentum=0.0, clip_norm=1.0, num_steps=20_000)
  c.hyper = common.hyper()  # unused: no learnable method here
  c.train = common.train(select="neg_loss", log_every=100, eval_every=250,
                         checkpoint_every=2_500, keep_checkpoints=1,
                         patience=10)  # evaluations without a lower monitor loss
  return common.attittud_protocol(c, variant or "attittud_11m1", batch=BATCH)
