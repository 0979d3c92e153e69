"""ATTITTUD (Dery et al., ICLR 2021) on few-shot CIFAR-10 with CIFAR-100 as auxiliary data.

The substitute for the original's low-data pairs (CheXpert + TinyImageNet, see
`configs/attittud_chexpert.py`): main task = CIFAR-10
with 15 labelled training images per class; auxiliary task = CIFAR-100's 50,000
training images with their 100 fine labels; monitor (dev) set = 100 other CIFAR-10
training images per class; test = the CIFAR-10 test split (`aux_jax.data.fewshot`).
Runner ``two_phase`` (`aux_jax.train.two_phase`): pretrain, early-stopping on the
monitor set, then fine-tune on the main task alone.

Variants (the rows of the comparison; ``get_config(variant)``):

    stl                main task alone (primary_only data), no fine-tuning
    pretrain_finetune  equal (main + auxiliary loss) pretraining, then fine-tuning
    multitask          equal, no fine-tuning
    attittud_100       ATTITTUD λ = (λ⊥, λ+, λ−) = (1, 0, 0) pretraining, then fine-tuning
    attittud_11m1      ATTITTUD λ = (1, 1, −1) pretraining, then fine-tuning (default)

Hyper-parameters of the original (its CheXpert command): Adam, lr 1e-3 for the
baselines and 1e-4 for ATTITTUD, fine-tuning Adam lr 5e-5, gradient clipping at
norm 1; in both phases lr halved after 4 evaluations without a lower monitor loss
(floor 1e-5), early stopping after 10 and the best-monitor-loss model kept
(``train.select = "neg_loss"``); ATTITTUD basis k = 10 from 64 main-task examples,
rebuilt every 10 steps, g* from 32, the body updated with the decomposed auxiliary
gradient only (see `configs.common.attittud_protocol`). One batch size for every
task (the original: 64 main, 128 auxiliary). CIFAR ResNet-18 (the original's CIFAR
runs: a WRN-22-4).

Prepare the data once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]'
    python -m aux_jax.data.prepare cifar10 && python -m aux_jax.data.prepare cifar100

then

    python -m experiments.train --config=configs/attittud_cifar10.py:attittud_11m1 \\
        --workdir=workdirs/attittud/attittud_11m1
    python -m experiments.attittud_compare --seeds=5     # all variants, mean ± 95% CI

Fidelity rows followed (docs/fidelity.md, ATTITTUD table): no augmentation and g* from
examples independent of the basis's, as the original; the deliberate differences of
that table are this config's defaults.
"""

import ml_collections

from configs import common

VARIANTS = tuple(common.ATTITTUD_VARIANTS)
BATCH = 64


def get_config(variant: str = "attittud_11m1") -> ml_collections.ConfigDict:
  c = common.base("two_phase")
  c.data = common.data(
      "cifar10_fewshot", batch_size=BATCH,  # per task
      # No augmentation, as the original (ToTensor + normalise, data/datasets.py:
      # 269-272, 313-322); augment=True: our random crop (pad 4) + flip.
      dev_batch_size=100, augment=False, crop_pad=4,
      data_dir=None, per_class=15, monitor_per_class=100, aux="cifar100",
      aux_per_class=None, primary_only=False)
  c.data.kwargs.seed = c.get_ref("seed")  # each run seed draws its own few-shot subset
  c.model = common.model("resnet18_cifar", width=64)
  c.optim = common.optim("adam", lr=1e-3, momentum=0.0,
                         clip_norm=1.0,  # global-norm clipping of the update direction
                         num_steps=20_000)
  c.hyper = common.hyper()  # unused: no learnable method here
  c.train = common.train(select="neg_loss", log_every=100, eval_every=250,
                         checkpoint_every=2_500, keep_checkpoints=1,
                         patience=10)  # evaluations without a lower monitor loss
  return common.attittud_protocol(c, variant or "attittud_11m1", batch=BATCH)
