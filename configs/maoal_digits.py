"""MAOAL on the embedded default: scikit-learn's handwritten digits as a multi-task problem.

Main task: 10-way digits from 100 labelled images; auxiliary tasks with their own images:
more digit labels from a careful annotator (helpful) and from one who guessed (random
labels, harmful), both through the main task's classifier; parity and digit ≥ 5
(helpful, coarser, their own heads). See `aux_jax.data.digits`. About a minute on a
2-core CPU.

    python -m experiments.train --config=configs/maoal_digits.py --workdir=workdirs/digits
    python -m experiments.train --config=configs/maoal_digits.py:gcs --workdir=...

The optional argument after ':' names the method (any of `aux_jax.methods.METHODS`:
stl | equal | unif | gcs | auxl | maoal | pcgrad | cagrad | gradnorm | olaux | slgrad |
attittud | taskgen; default maoal) and sets that method's own upper-level settings;
``maoal_<estimator>`` is MAOAL with another upper-level estimator
(`configs.common.MAOAL_ESTIMATORS`: ``original`` — the paper's α = 1 series applied even
when it grows —, ``convergent``, ``auto``, ``ridge``), ``auxl`` is AuxL's network with
this config's upper level and ``auxl_original`` AuxL as the MAOAL paper runs it (SGD
1e-3, α = 1e-4), and ``equal_helpful`` is `equal`
without the harmful ``aux_random`` task (an oracle that knows which task hurts; the
same split and labels, `aux_jax.data.digits`); ``fixed`` takes given weights
(``--config.method.kwargs.weights="(1,1,1,0)"``). The original's estimator by hand::

    python -m experiments.train --config=configs/maoal_digits.py \
      --config.hyper.on_diverged=apply --config.hyper.solver_kwargs.neumann.step=1.0 \
      --config.hyper.solver_kwargs.neumann.scale_by_step=False --workdir=...
"""

import ml_collections
from ml_collections import config_dict

from configs import common

HELPFUL = ("aux_digit", "aux_parity", "aux_ge5")  # every auxiliary task but aux_random


# The upper level's Adam learning rate per method, chosen on dev (the mean over seeds
# 0-2 of the lowest dev loss) from {0.01, 0.03, 0.1, 0.3} (docs/experiments/maoal.md):
# MAOAL's own 0.01 moves a weight by at most 1.5 in the 150 upper steps of this run.
UPPER_LR = {"maoal": 0.3, "auxl": 0.03}

# The test metric the compare launcher tabulates (models are selected on the dev loss).
REPORT = "accuracy"

# The compare launcher's default rows (`experiments.compare --variants` overrides).
VARIANTS = ("stl", "equal", "gcs", "auxl", "maoal")  # the README table

def get_config(method: str = "maoal") -> ml_collections.ConfigDict:
  c = common.base()
  c.data = common.data("digits", batch_size=32, dev_batch_size=50, crop_pad=1)
  # Which auxiliary tasks to load (None: all four), e.g. --config.data.kwargs.tasks=...
  c.data.kwargs.tasks = config_dict.placeholder(tuple)
  # aux_digit and aux_random through the main head (False: every task its own head).
  c.data.kwargs.share_main_head = True
  c.model = common.model("small_cnn")
  method = method or "maoal"
  if method == "equal_helpful":
    c.variant = method
    method, c.data.kwargs.tasks = "equal", HELPFUL
  c.method = common.method(method, partition="module_wise")
  if method == "fixed":  # given weights, one per auxiliary task (default: equal's)
    c.method.kwargs.weights = (1.0, 1.0, 1.0, 1.0)
  c.optim = common.optim("sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                         schedule="cosine", num_steps=1500)
  # UW's log-variances on the model's optimizer; DWA's epoch = one pass over the
  # largest task (aux_digit: 350 images / 32 per step).
  common.mtl_baselines(c, epoch_steps=11)
  # Upper level (learnable methods): MAOAL's (Adam, every 10 steps, φ decay 5e-4), with
  # the Neumann step chosen so the series converges on this model (a diverged series
  # is skipped) and the learning rate chosen per method on dev (`UPPER_LR`).
  c.hyper = common.hyper(interval=10, step=0.1, optimizer="adam", lr=UPPER_LR["maoal"],
                         weight_decay=5e-4, on_diverged="skip")
  # aux_digit and aux_random are trained through the main head, which is then shared;
  # AuxL gets the same upper level (``auxl_original``: as the MAOAL paper runs it).
  common.maoal_variants(c, method, convergent_step=0.1, shared="main_head",
                        auxl_upper="experiment")
  if c.method.name == "auxl" and method == "auxl":
    c.hyper.lr = UPPER_LR["auxl"]
  # Selection on the dev loss (the upper level's objective): the accuracy of 100 dev
  # images moves in steps of 1 % and ties across most evaluations.
  c.train = common.train(log_every=50, eval_every=100, checkpoint_every=500,
                         track_test_max=True, select="neg_loss")
  return c
