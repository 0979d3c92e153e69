"""MAOAL on the embedded default: scikit-learn's handwritten digits as a multi-task problem.

Main task: 10-way digits from 100 labelled images; auxiliary tasks with their own images:
digits (helpful), parity and digit ≥ 5 (helpful, coarser), random labels (harmful).
See `aux_jax.data.digits`. Runs in under a minute on a 2-core CPU.

    python -m experiments.train --config=configs/maoal_digits.py --workdir=workdirs/digits
    python -m experiments.train --config=configs/maoal_digits.py:gcs --workdir=...

The optional argument after ':' names the method (any of `aux_jax.methods.METHODS`:
stl | equal | unif | gcs | auxl | maoal | pcgrad | cagrad | gradnorm | olaux | slgrad |
attittud | taskgen; default maoal) and sets that method's own upper-level settings;
``maoal_convergent`` is MAOAL with the library's recommended upper level (α-scaled
series, a diverged one skipped; `configs.common.maoal_convergent`). The original's
α = 1 without prefactor, applied even when the series grows::

    python -m experiments.train --config=configs/maoal_digits.py \
      --config.hyper.on_diverged=apply --config.hyper.solver_kwargs.neumann.step=1.0 \
      --config.hyper.solver_kwargs.neumann.scale_by_step=False --workdir=...
"""

import ml_collections

from configs import common


# The compare launcher's default rows (`experiments.compare --variants` overrides).
VARIANTS = ("stl", "equal", "gcs", "auxl", "maoal")  # the README table

def get_config(method: str = "maoal") -> ml_collections.ConfigDict:
  c = common.base()
  c.data = common.data("digits", batch_size=32, dev_batch_size=50, crop_pad=1)
  c.model = common.model("small_cnn")
  method = method or "maoal"
  c.method = common.method(method, partition="module_wise")
  c.optim = common.optim("sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                         schedule="cosine", num_steps=1500)
  # Upper level (learnable methods): MAOAL's setting, with the Neumann step chosen so
  # the series converges on this model; our harness skips a diverged series.
  c.hyper = common.hyper(interval=10, step=0.1, optimizer="adam", lr=0.01,
                         weight_decay=5e-4, on_diverged="skip")
  common.maoal_variants(c, method, convergent_step=0.1)
  c.train = common.train(log_every=50, eval_every=100, checkpoint_every=500,
                         track_test_max=True)
  return c
