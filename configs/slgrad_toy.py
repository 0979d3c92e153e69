"""SLGrad on its synthetic toy regression (Grégoire et al., 2023), and its baselines.

Two regression tasks y_t = |σ_t tanh((B + ε_t)·x)| on x ∈ R^250 (see
`aux_jax.data.toy_regression`), 600/200/200 train/dev/test, task 0 the main task;
optionally a fraction of the main task's training targets replaced by noise. The
original's model and optimiser: a shared MLP 250→64→64→64 with one linear head per
task, SGD lr 1e-2 momentum 0.9, batch 16, main-task validation batch 32. Model
selection by dev MSE of the main task (``train.select = "neg_mse"``). About a minute
on a 2-core CPU.

    python -m experiments.train --config=configs/slgrad_toy.py --workdir=workdirs/toy
    python -m experiments.train --config=configs/slgrad_toy.py:pcgrad \
        --config.data.kwargs.main_noise=0.3 --workdir=...

The optional argument after ':' names the method (any of `aux_jax.methods.METHODS`;
default slgrad): stl | equal | unif | gcs | auxl | maoal | pcgrad | cagrad |
gradnorm | olaux | slgrad | attittud.
"""

import ml_collections

from configs import common

HIDDEN = (64, 64, 64)


def get_config(method: str = "slgrad") -> ml_collections.ConfigDict:
  c = common.base()
  c.data = common.data(
      "toy_regression", batch_size=16,   # examples per step, every task's loss on them
      dev_batch_size=32,                 # main-task validation batch (SLGrad's g_val)
      eval_batch_size=200,
      num_tasks=2, num_samples=1000, input_dim=250,
      main_noise=0.0,                    # fraction of main training targets replaced
      noise_kind="replace",              # replace | constant | gaussian
      seed=0)                            # the generated problem (B, ε, x, split, noise)
  c.model = common.model("mlp", hidden=HIDDEN)
  method = method or "slgrad"
  # Gradient rules act on the whole shared gradient; MAOAL gets one weight per layer.
  c.method = common.method(method, partition="module_wise" if method == "maoal" else "global")
  if method == "gradnorm":
    # GradNorm balances gradient norms at the last shared layer.
    c.method.kwargs = ml_collections.ConfigDict({"layer": rf"^layer{len(HIDDEN) - 1}/"})
  c.optim = common.optim("sgd", lr=1e-2, momentum=0.9,
                         num_steps=600)  # 16 epochs of 600 examples
  # Upper level of the learnable methods (auxl, maoal; unused by the gradient rules).
  c.hyper = common.hyper(interval=10, step=0.1, optimizer="adam", lr=0.01)
  if method == "auxl":
    common.auxl_baseline(c)
  c.train = common.train(select="neg_mse",  # dev metric of the main task, higher is better
                         log_every=50, eval_every=50, checkpoint_every=300)
  return c
