"""MAOAL on the embedded default: scikit-learn's handwritten digits as a multi-task problem.

Main task: 10-way digits from 100 labelled images; auxiliary tasks with their own images:
digits (helpful), parity and digit ≥ 5 (helpful, coarser), random labels (harmful).
See `aux_jax.data.digits`. Runs in about two minutes on a 2-core CPU.

    python -m experiments.train --config=configs/maoal_digits.py --workdir=workdirs/digits
    python -m experiments.train --config=configs/maoal_digits.py:gcs --workdir=...

The optional argument after ':' names the method (any of `aux_jax.methods.METHODS`:
sll | equal | unif | gcs | auxl | maoal | pcgrad | cagrad | gradnorm | olaux | slgrad |
attittud; default maoal) and sets that method's own upper-level settings.
"""

import ml_collections


def get_config(method: str = "maoal") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Data parallel over a mesh of devices (aux_jax.train.sharding): None = all devices
  # (one on CPU); the batch must divide over them.
  c.mesh = ml_collections.ConfigDict(
      {"num_devices": ml_collections.config_dict.placeholder(int)})

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"
  c.data.kwargs = ml_collections.ConfigDict()
  c.data.batch_size = 32            # per task
  c.data.dev_batch_size = 50
  c.data.eval_batch_size = 500
  c.data.augment = False
  c.data.crop_pad = 1

  c.model = ml_collections.ConfigDict()
  c.model.name = "small_cnn"
  c.model.dtype = "float32"

  c.method = ml_collections.ConfigDict()
  c.method.name = method or "maoal"  # any name in aux_jax.methods.METHODS
  c.method.partition = "module_wise"  # global | module_wise | param_wise
  c.method.kwargs = ml_collections.ConfigDict()

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"
  c.optim.lr = 0.05
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.optim.num_steps = 1500

  # Upper level (learnable methods): MAOAL's setting, with the Neumann step chosen so
  # the series converges on this model.
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
  c.hyper.weight_decay = 5e-4
  c.hyper.max_norm = 10.0

  if c.method.name == "auxl":
    # AuxL as the MAOAL paper runs it: nonlinear monotone combiner T→5→5→1 over the
    # batch-mean losses, SGD 1e-3 on φ, Neumann α 1e-4 (no α prefactor).
    c.method.kwargs = ml_collections.ConfigDict(
        {"net": "nonlinear", "hidden": (5, 5), "monotone": True})
    c.hyper.optimizer = "sgd"
    c.hyper.lr = 1e-3
    c.hyper.step = 1e-4
    c.hyper.weight_decay = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.log_every = 50
  c.train.eval_every = 100
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 2
  return c
