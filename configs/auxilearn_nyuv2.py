"""AuxiLearn on NYUv2: 13-class segmentation (main), depth and surface normals (auxiliary).

Navon et al., "Auxiliary Learning by Implicit Differentiation", ICLR 2021, §5.2: the
SegNet-style multi-task network of MTAN, main task segmentation, model selection on
the validation mIoU. Data: the MTAN-preprocessed NYUv2 in a user-given directory
(layout in `aux_jax.data.nyuv2`; README "NYUv2"). Variants after ':':

    stl | equal | gcs                the baselines (main only, plain sum, gradient cosine)
    linear | nonlinear | conv        AuxiLearn's auxiliary networks (monotone), default
                                     nonlinear; conv combines per-pixel loss maps
    maoal                            module-wise weights on the same network

    python -m experiments.train --config=configs/auxilearn_nyuv2.py:conv \
        --config.data.kwargs.root=/path/to/nyuv2 --workdir=workdirs/nyuv2_conv

Hyper-parameters (the original's): Adam 1e-4 halved every 100 epochs, 200 epochs,
batch 8; upper step every 50 steps, 3 Neumann steps with α = 1e-4 and no α prefactor;
linear/nonlinear networks SGD 1e-3 (momentum 0.9), clip 25; ConvNet SGD 1e-4, clip 100.
An epoch is ⌈716 / 8⌉ = 90 steps (795 training images minus a 10% dev split).
"""

import ml_collections

EPOCH = 90
VARIANTS = {
    "stl": dict(name="sll"),
    "equal": dict(name="equal"),
    "gcs": dict(name="gcs"),
    "maoal": dict(name="maoal"),
    "linear": dict(name="auxl", kwargs={"net": "linear", "inputs": "sample",
                                        "monotone": True, "hidden": ()}),
    "nonlinear": dict(name="auxl", kwargs={"net": "nonlinear", "inputs": "sample",
                                           "monotone": True, "hidden": (10, 10)}),
    "conv": dict(name="auxl", kwargs={"net": "conv", "inputs": "pixel", "monotone": True,
                                      "hidden": (16, 16), "kernel_sizes": (1, 3)}),
}


def get_config(variant: str = "nonlinear") -> ml_collections.ConfigDict:
  variant = variant or "nonlinear"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Data parallel over a mesh of devices (aux_jax.train.sharding): None = all devices
  # (one on CPU); the batch must divide over them.
  c.mesh = ml_collections.ConfigDict(
      {"num_devices": ml_collections.config_dict.placeholder(int)})

  c.data = ml_collections.ConfigDict()
  c.data.name = "nyuv2"
  c.data.kwargs = ml_collections.ConfigDict(
      {"root": ml_collections.config_dict.placeholder(str), "dev_fraction": 0.1,
       "downsample": 1})
  c.data.batch_size = 8
  c.data.dev_batch_size = 8
  c.data.eval_batch_size = 8
  c.data.augment = False
  c.data.crop_pad = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "segnet"
  c.model.dtype = "float32"
  c.model.kwargs = ml_collections.ConfigDict()

  spec = VARIANTS[variant]
  c.method = ml_collections.ConfigDict()
  c.method.name = spec["name"]
  c.method.partition = "module_wise" if spec["name"] == "maoal" else "global"
  c.method.kwargs = ml_collections.ConfigDict(spec.get("kwargs", {}))

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"
  c.optim.lr = 1e-4
  c.optim.momentum = 0.0
  c.optim.weight_decay = 0.0
  c.optim.schedule = "step"          # lr × 0.5 every decay_every steps
  c.optim.decay_every = 100 * EPOCH
  c.optim.num_steps = 200 * EPOCH

  c.hyper = ml_collections.ConfigDict()
  c.hyper.interval = 50
  c.hyper.solver = "neumann"
  c.hyper.neumann_steps = 3
  c.hyper.step = 1e-4
  c.hyper.scale_by_step = False
  c.hyper.maxiter = 50
  c.hyper.tol = 1e-5
  c.hyper.optimizer = "sgd"
  c.hyper.lr = 1e-4 if variant == "conv" else 1e-3
  c.hyper.momentum = 0.9
  c.hyper.weight_decay = 0.0
  c.hyper.max_norm = 100.0 if variant == "conv" else 25.0

  c.train = ml_collections.ConfigDict()
  c.train.select = "miou"
  c.train.log_every = 50
  c.train.eval_every = EPOCH
  c.train.checkpoint_every = 10 * EPOCH
  c.train.keep_checkpoints = 2
  return c
