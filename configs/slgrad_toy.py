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
default slgrad): sll | equal | unif | gcs | auxl | maoal | pcgrad | cagrad |
gradnorm | olaux | slgrad | attittud.
"""

import ml_collections

HIDDEN = (64, 64, 64)


def get_config(method: str = "slgrad") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Data parallel over a mesh of devices (aux_jax.train.sharding): None = all devices
  # (one on CPU); the batch must divide over them.
  c.mesh = ml_collections.ConfigDict(
      {"num_devices": ml_collections.config_dict.placeholder(int)})

  c.data = ml_collections.ConfigDict()
  c.data.name = "toy_regression"
  c.data.kwargs = ml_collections.ConfigDict({
      "num_tasks": 2, "num_samples": 1000, "input_dim": 250,
      "main_noise": 0.0,            # fraction of main training targets replaced
      "noise_kind": "replace",      # replace | constant | gaussian
      "seed": 0,                    # the generated problem (B, ε, x, split, noise)
  })
  c.data.batch_size = 16            # examples per step, every task's loss on them
  c.data.dev_batch_size = 32        # main-task validation batch (SLGrad's g_val)
  c.data.eval_batch_size = 200
  c.data.augment = False
  c.data.crop_pad = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"
  c.model.dtype = "float32"
  c.model.kwargs = ml_collections.ConfigDict({"hidden": HIDDEN})

  c.method = ml_collections.ConfigDict()
  c.method.name = method or "slgrad"  # any name in aux_jax.methods.METHODS
  # Gradient rules act on the whole shared gradient; MAOAL gets one weight per layer.
  c.method.partition = "module_wise" if c.method.name == "maoal" else "global"
  c.method.kwargs = ml_collections.ConfigDict()
  if c.method.name == "gradnorm":
    # GradNorm balances gradient norms at the last shared layer.
    c.method.kwargs = ml_collections.ConfigDict({"layer": rf"^layer{len(HIDDEN) - 1}/"})

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"
  c.optim.lr = 1e-2
  c.optim.momentum = 0.9
  c.optim.weight_decay = 0.0
  c.optim.schedule = "constant"
  c.optim.num_steps = 600           # 16 epochs of 600 examples

  # Upper level of the learnable methods (auxl, maoal; unused by the gradient rules).
  c.hyper = ml_collections.ConfigDict()
  c.hyper.interval = 10
  c.hyper.solver = "neumann"
  c.hyper.neumann_steps = 3
  c.hyper.step = 0.1
  c.hyper.scale_by_step = False
  c.hyper.maxiter = 50
  c.hyper.tol = 1e-5
  c.hyper.optimizer = "adam"
  c.hyper.lr = 0.01
  c.hyper.momentum = 0.9
  c.hyper.weight_decay = 0.0
  c.hyper.max_norm = 10.0
  if c.method.name == "auxl":
    c.method.kwargs = ml_collections.ConfigDict(
        {"net": "nonlinear", "hidden": (5, 5), "monotone": True})
    c.hyper.optimizer = "sgd"
    c.hyper.lr = 1e-3
    c.hyper.step = 1e-4

  c.train = ml_collections.ConfigDict()
  c.train.select = "neg_mse"        # dev metric of the main task, higher is better
  c.train.log_every = 50
  c.train.eval_every = 50
  c.train.checkpoint_every = 300
  c.train.keep_checkpoints = 2
  return c
