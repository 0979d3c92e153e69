"""AuxiLearn auxiliary-task generation on CIFAR-10 (Navon et al., ICLR 2021).

A labeler network (4-layer conv net) gives each training image a distribution over
k = 5 sub-classes of its class; a CIFAR ResNet-18 with a 10-way main head and a 50-way
auxiliary head learns both; the labeler gets the implicit hypergradient of the main
loss on the dev set (10% of the training split) every 10 steps: 3 Neumann terms with
α = 1e-4 and no α prefactor, clip 10, Adam 1e-4 on φ (DESIGN.md §3.1 and the AuxiLearn
README). See `aux_jax.train.taskgen`.

Prepare the data once (needs TensorFlow, only for preparing):

    pip install -e '.[prepare]' && python -m aux_jax.data.prepare cifar10

then

    python -m experiments.train --config=configs/auxilearn_taskgen_cifar10.py \
        --workdir=workdirs/taskgen_cifar10
    python -m experiments.train --config=configs/auxilearn_taskgen_cifar10.py:fixed \
        --workdir=workdirs/taskgen_cifar10_fixed      # fixed random labeler
    python -m experiments.train --config=configs/auxilearn_taskgen_cifar10.py:stl \
        --workdir=workdirs/taskgen_cifar10_stl        # main task only

The argument after ':' is the variant: learned (default), fixed
(``taskgen.learn_labeler=False``) or stl (``taskgen.aux_weight=0``). A low-data regime:
``--config.data.kwargs.max_train=5000``.
"""

import ml_collections
from ml_collections import config_dict

VARIANTS = ("learned", "fixed", "stl")
EPOCHS = 100
BATCH = 128
TRAIN_IMAGES = 45_000  # 50,000 minus the 10% dev split


def apply_variant(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Sets the ablation switches of ``variant`` (one of `VARIANTS`)."""
  variant = variant or "learned"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
  c.taskgen.learn_labeler = variant == "learned"
  if variant == "stl":
    c.taskgen.aux_weight = 0.0
  return c


def get_config(variant: str = "learned") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.runner = "taskgen"

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"
  c.data.kwargs = ml_collections.ConfigDict({
      "data_dir": config_dict.placeholder(str), "dev_fraction": 0.1, "seed": 0,
      "max_train": config_dict.placeholder(int)})
  c.data.batch_size = BATCH
  c.data.dev_batch_size = 128
  c.data.eval_batch_size = 500
  c.data.augment = True
  c.data.crop_pad = 4

  c.model = ml_collections.ConfigDict()
  c.model.name = "resnet18_cifar"
  c.model.dtype = "float32"
  c.model.kwargs = ml_collections.ConfigDict({"width": 64})

  c.taskgen = ml_collections.ConfigDict()
  c.taskgen.num_subclasses = 5          # k sub-classes per main class
  c.taskgen.aux_weight = 1.0            # λ; 0 = single-task learning
  c.taskgen.learn_labeler = True        # False: fixed random labeler (no upper steps)
  c.taskgen.labeler_features = (32, 64, 128, 256)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"
  c.optim.lr = 0.1
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.optim.num_steps = EPOCHS * (TRAIN_IMAGES // BATCH)

  c.hyper = ml_collections.ConfigDict()
  c.hyper.interval = 10
  c.hyper.solver = "neumann"
  c.hyper.neumann_steps = 3
  c.hyper.step = 1e-4                   # α (hpo_lr)
  c.hyper.scale_by_step = False         # the original: no α prefactor
  c.hyper.include_weight_decay = False  # the original: G = ∇_θ L_T only
  c.hyper.maxiter = 50                  # cg only
  c.hyper.tol = 1e-5                    # cg only
  c.hyper.optimizer = "adam"
  c.hyper.lr = 1e-4
  c.hyper.momentum = 0.9                # sgd only
  c.hyper.weight_decay = 0.0
  c.hyper.max_norm = 10.0

  c.train = ml_collections.ConfigDict()
  c.train.log_every = 100
  c.train.eval_every = 1000
  return apply_variant(c, variant)
