"""ATTITTUD's original pair: CheXpert (main task, 5 findings) with TinyImageNet as
auxiliary data (Dery et al., ICLR 2021; ldery/ATTITTUD @ 1083ea7, its CheXpert command
``README.md`` line 52).

Follows the rows of docs/fidelity.md's ATTITTUD table (the "CheXpert" rows for data,
model, loss and metric; the shared rows for the update, optimisers and selection).
As the original:

* data (`aux_jax.data.chexpert`): the 5 findings Atelectasis, Cardiomegaly,
  Consolidation, Edema, Pleural Effusion; 1,000 training images per finding drawn
  balanced (500 positive, 500 negative each) from ``train.csv``, uncertain → 1,
  blank → 0; a 100-image monitor (dev) set; the test set a balanced draw of
  ``valid.csv``; 200 TinyImageNet classes × 500 images; 224 × 224, ImageNet
  mean/std, no augmentation;
* model: torchvision's ResNet-18 (ImageNet stem; its fc replaced by the task heads,
  512 → 5 and 512 → 200), ImageNet weights from ``model.pretrained`` (a torchvision
  ``resnet18`` state dict as safetensors: docs/fidelity.md says how to write one;
  ``none`` trains from random weights, the original's "random init" baseline);
* loss: the main task multi-label (mean BCE over the 5 findings, `aux_jax.losses`),
  the auxiliary 200-way cross-entropy; metric: ROC AUC per finding and their mean
  (``test_auc``); selection on the monitor loss (``neg_loss``);
* budget: 100 epochs of the auxiliary data (1,562 steps of 64 = one pass over the
  100,000 TinyImageNet images), evaluated once per epoch, patience 10 epochs;
  fine-tuning up to 500 epochs of the 5,000 CheXpert images, evaluated per epoch.

* dropout 0.2 after the stem and stages 1-3 and on the features, in both phases, off
  while ATTITTUD builds its basis (``model.kwargs.dropout``).

Remaining differences (docs/fidelity.md): one batch size of 64 per task (the original:
128 auxiliary), the monitor set disjoint from training.

Neither dataset nor the weights can be downloaded by this package: request
CheXpert-v1.0-small at stanfordmlgroup.github.io/competitions/chexpert/, get
cs231n.stanford.edu/tiny-imagenet-200.zip, and give their directories:

    python -m experiments.train --config=configs/attittud_chexpert.py:attittud_11m1 \\
        --config.data.kwargs.chexpert_dir=/data/CheXpert-v1.0-small \\
        --config.data.kwargs.aux_dir=/data/tiny-imagenet-200 \\
        --config.model.pretrained=/data/resnet18_imagenet.safetensors \\
        --workdir=workdirs/chexpert

Memory: the two tasks at 224 px take about 30 GB (`aux_jax.data.chexpert`); lower
``data.kwargs.aux_per_class`` for less. Variants (`common.ATTITTUD_VARIANTS`) and the
update's hyper-parameters as in ``configs/attittud_cifar10.py``.

Fidelity rows followed (docs/fidelity.md, ATTITTUD table): no augmentation and g* from
examples independent of the basis's, as the original; the deliberate differences of
that table are this config's defaults.
"""

import ml_collections

from configs import common

VARIANTS = tuple(common.ATTITTUD_VARIANTS)
BATCH = 64
UNSET = ""  # placeholder: the loader (or the trainer) raises a clear error until set
AUX_IMAGES = 200 * 500
EPOCH = AUX_IMAGES // BATCH         # 1,562 steps: one pass over the auxiliary images
FINETUNE_EPOCH = 5 * 1000 // BATCH  # 78 steps: one pass over the CheXpert training draw


def get_config(variant: str = "attittud_11m1") -> ml_collections.ConfigDict:
  c = common.base("two_phase")
  c.data = common.data(
      # No augmentation, as the original (ToTensor + normalise, data/datasets.py:
      # 313-322); augment=True: our random crop (pad 4) + flip.
      "chexpert", batch_size=BATCH, dev_batch_size=BATCH, augment=False, crop_pad=4,
      chexpert_dir=UNSET,          # required: CheXpert-v1.0-small
      aux_dir=UNSET,               # required unless primary_only: tiny-imagenet-200
      image_size=224, train_per_class=1000, monitor=100,
      aux_classes=200, aux_per_class=500, primary_only=False)
  c.data.kwargs.seed = c.get_ref("seed")
  # ImageNet stem; fc = the task heads; dropout 0.2 (pretraining and fine-tuning, the
  # original's -dropRate / -ft-dropRate), off while ATTITTUD builds its basis.
  c.model = common.model("resnet18", width=64, dropout=0.2)
  c.model.pretrained = UNSET   # required: ImageNet weights (safetensors) or "none"
  c.optim = common.optim("adam", lr=1e-3, momentum=0.0, clip_norm=1.0,
                         num_steps=100 * EPOCH)
  c.hyper = common.hyper()  # unused: no learnable method here
  c.train = common.train(select="neg_loss", log_every=100, eval_every=EPOCH,
                         checkpoint_every=EPOCH, keep_checkpoints=1,
                         patience=10)  # epochs without a lower monitor loss
  c = common.attittud_protocol(c, variant or "attittud_11m1", batch=BATCH,
                               finetune_steps=500 * FINETUNE_EPOCH)
  c.finetune.train.eval_every = FINETUNE_EPOCH
  c.finetune.train.checkpoint_every = 10 * FINETUNE_EPOCH
  return c
