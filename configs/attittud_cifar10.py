"""ATTITTUD (Dery et al., ICLR 2021) on few-shot CIFAR-10 with CIFAR-100 as auxiliary data.

The substitute for the original's low-data pairs (DESIGN 3.4): main task = CIFAR-10
with 15 labelled training images per class; auxiliary task = CIFAR-100's 50,000
training images with their 100 fine labels; monitor (dev) set = 100 other CIFAR-10
training images per class; test = the CIFAR-10 test split (`aux_jax.data.fewshot`).
Runner ``two_phase`` (`aux_jax.train.two_phase`): pretrain, early-stopping on the
monitor set, then fine-tune on the main task alone.

Variants (the rows of the comparison; ``get_config(variant)``):

    primary_only       sll on CIFAR-10 alone (primary_only data), no fine-tuning
    pretrain_finetune  equal (main + auxiliary loss) pretraining, then fine-tuning
    multitask          equal, no fine-tuning
    attittud_100       ATTITTUD λ = (λ⊥, λ+, λ−) = (1, 0, 0) pretraining, then fine-tuning
    attittud_11m1      ATTITTUD λ = (1, 1, −1) pretraining, then fine-tuning (default)

Hyper-parameters of the original (its CheXpert command): Adam, lr 1e-3 for the
baselines and 1e-4 for ATTITTUD, fine-tuning Adam lr 5e-5, gradient clipping at
norm 1, patience 10 evaluations; ATTITTUD basis k = 10 from 64 main-task examples,
rebuilt every 10 steps. One batch size for every task (the original: 64 main,
128 auxiliary). CIFAR ResNet-18 (the original's CIFAR runs: a WRN-22-4).

Prepare the data once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]'
    python -m aux_jax.data.prepare cifar10 && python -m aux_jax.data.prepare cifar100

then

    python -m experiments.train --config=configs/attittud_cifar10.py:attittud_11m1 \\
        --workdir=workdirs/attittud/attittud_11m1
    python -m experiments.attittud_compare --seeds=5     # all variants, mean ± 95% CI
"""

import ml_collections

from configs import maoal_digits

VARIANTS = ("primary_only", "pretrain_finetune", "multitask", "attittud_100",
            "attittud_11m1")
# variant -> (phase-1 method, λ or None, main task only, fine-tune).
_ROWS = {
    "primary_only": ("sll", None, True, False),
    "pretrain_finetune": ("equal", None, False, True),
    "multitask": ("equal", None, False, False),
    "attittud_100": ("attittud", (1.0, 0.0, 0.0), False, True),
    "attittud_11m1": ("attittud", (1.0, 1.0, -1.0), False, True),
}

BATCH = 64
BASELINE_LR = 1e-3
ATTITTUD_LR = 1e-4
FINETUNE_LR = 5e-5


def set_variant(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Sets the method, data and fine-tuning fields of ``variant`` (one of `VARIANTS`)."""
  if variant not in _ROWS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
  method, lambdas, primary_only, finetune = _ROWS[variant]
  c.variant = variant
  c.method.name = method
  c.method.kwargs = ml_collections.ConfigDict()
  if method == "attittud":
    c.method.kwargs = ml_collections.ConfigDict({
        "num_basis": 10,      # k
        "nsamples": BATCH,    # main-task examples of the range finder (pca_nsamples)
        "pca_every": 10,      # steps between basis rebuilds
        "power_iters": 0,     # randomized subspace iterations (0: the original)
        "lambdas": lambdas,   # (λ⊥, λ+, λ−), the original's proj_lambda
    })
  c.optim.lr = ATTITTUD_LR if method == "attittud" else BASELINE_LR
  c.data.kwargs.primary_only = primary_only
  c.finetune.enabled = finetune
  return c


def get_config(variant: str = "attittud_11m1") -> ml_collections.ConfigDict:
  c = maoal_digits.get_config("sll")  # the shared sections (hyper is unused here)
  c.runner = "two_phase"
  c.variant = ""

  c.data.name = "cifar10_fewshot"
  c.data.kwargs = ml_collections.ConfigDict({
      "data_dir": None, "per_class": 15, "monitor_per_class": 100, "aux": "cifar100",
      "aux_per_class": None, "primary_only": False})
  c.data.kwargs.seed = c.get_ref("seed")  # each run seed draws its own few-shot subset
  c.data.batch_size = BATCH           # per task
  c.data.dev_batch_size = 100
  c.data.eval_batch_size = 500
  c.data.augment = True               # random crop (pad 4) + flip
  c.data.crop_pad = 4

  c.model.name = "resnet18_cifar"
  c.model.kwargs = ml_collections.ConfigDict({"width": 64})

  c.method.partition = "global"       # ATTITTUD's basis spans the whole backbone

  c.optim.name = "adam"
  c.optim.lr = BASELINE_LR
  c.optim.momentum = 0.0
  c.optim.weight_decay = 0.0
  c.optim.schedule = "constant"
  c.optim.clip_norm = 1.0             # global-norm clipping of the update direction
  c.optim.num_steps = 20_000

  c.train.log_every = 100
  c.train.eval_every = 250
  c.train.checkpoint_every = 2_500
  c.train.keep_checkpoints = 1
  c.train.patience = 10               # evaluations without a better dev accuracy
  c.train.select = "accuracy"
  c.train.init_from = ""

  # Phase 2: merged over phase 1's config, with method sll and primary_only data.
  c.finetune = ml_collections.ConfigDict()
  c.finetune.enabled = True
  c.finetune.optim = ml_collections.ConfigDict(
      {"name": "adam", "lr": FINETUNE_LR, "schedule": "constant", "weight_decay": 0.0,
       "num_steps": 5_000})
  c.finetune.train = ml_collections.ConfigDict({"eval_every": 50, "patience": 10,
                                                "checkpoint_every": 1_000})
  return set_variant(c, variant or "attittud_11m1")
