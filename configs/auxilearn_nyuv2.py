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

from configs import common

EPOCH = 90

VARIANTS = {
    "stl": dict(name="stl"),
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
  spec = VARIANTS[variant]
  c = common.base()
  c.data = common.data("nyuv2", batch_size=8, dev_batch_size=8, eval_batch_size=8,
                       root=None, dev_fraction=0.1, downsample=1)
  c.model = common.model("segnet")
  c.method = common.method(
      spec["name"], partition="module_wise" if spec["name"] == "maoal" else "global",
      **spec.get("kwargs", {}))
  c.optim = common.optim("adam", lr=1e-4, momentum=0.0,
                         schedule="step",   # lr × 0.5 every decay_every steps
                         decay_every=100 * EPOCH, num_steps=200 * EPOCH)
  c.hyper = common.hyper(interval=50, step=1e-4, optimizer="sgd",
                         lr=1e-4 if variant == "conv" else 1e-3, momentum=0.9,
                         max_norm=100.0 if variant == "conv" else 25.0)
  c.train = common.train(select="miou", log_every=50, eval_every=EPOCH,
                         checkpoint_every=10 * EPOCH)
  return c
