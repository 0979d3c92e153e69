"""AuxiLearn on NYUv2: 13-class segmentation (main), depth and surface normals (auxiliary).

Navon et al., "Auxiliary Learning by Implicit Differentiation", ICLR 2021, §5.2: the
SegNet-style multi-task network of MTAN, main task segmentation, model selection on
the validation mIoU. Data: the MTAN-preprocessed NYUv2 in a user-given directory
(layout in `aux_jax.data.nyuv2`; docs/experiments/auxilearn.md). Variants after ':':

    stl | equal | gcs                the baselines (main only, plain sum, gradient cosine)
    linear | nonlinear | conv        AuxiLearn's auxiliary networks (monotone), default
                                     nonlinear; conv combines per-pixel loss maps
    maoal                            module-wise weights on the same network

    python -m experiments.train --config=configs/auxilearn_nyuv2.py:conv \
        --config.data.kwargs.root=/path/to/nyuv2 --workdir=workdirs/nyuv2_conv

Hyper-parameters (the original's): Adam 1e-4 halved every 100 epochs, 200 epochs,
batch 8; upper step every 50 steps, 3 Neumann steps with α = 1e-4 and no α prefactor;
linear/nonlinear networks SGD 1e-3 (momentum 0.9, weight decay 1e-4), clip 25; ConvNet
SGD 1e-4 (weight decay 1e-5), clip 100; a growing series is clipped and applied.
Splits as the original: with AuxiLearn's ``hpo_validation_indices.json`` copied into
the data directory (from AvivNavon/AuxiLearn ``experiments/nyuv2/``; never downloaded)
its 79 validation images select the model (dev) and a random 17 of its 716 training
images (⌊2.5 %⌋) form the meta-validation set of the hypergradient (meta batch 2),
699 for training; without the file, a seeded 10 % (80) dev draw, 17 meta, 698 train.
An epoch is 87 steps either way. Losses: the original's arithmetic
(``data.loss_convention="original"``).

Fidelity rows followed (docs/fidelity.md, AuxiLearn NYUv2 table): every row; its
deliberate differences are this config's defaults.
"""

import ml_collections

from configs import common

EPOCH = 87

VARIANTS = {
    "stl": dict(name="stl"),
    "equal": dict(name="equal"),
    "gcs": dict(name="gcs"),
    "maoal": dict(name="maoal"),
    "linear": dict(name="auxl", kwargs={"net": "linear", "inputs": "sample",
                                        "monotone": True, "hidden": ()}),
    # The original's --aux-net nonlinear: 3→3→1, Softplus, no weight norm, no output bias.
    "nonlinear": dict(name="auxl", kwargs={"net": "nonlinear", "inputs": "sample",
                                           "monotone": True, "hidden": (3,),
                                           "weight_norm": False, "bias_out": False}),
    # The original's MonoNoFCCNNHyperNet: 3×3 3→8, 3×3 8→16 (bias, Softplus, 2× avg
    # pool each), 1×1 16→1 without bias, U(0, 0.1), no weight norm, means over all
    # pixels (no validity mask).
    "conv": dict(name="auxl", kwargs={"net": "conv", "inputs": "pixel", "monotone": True,
                                      "hidden": (8, 16), "kernel_sizes": (3, 3),
                                      "pool": 2, "init_bounds": (0.0, 0.1),
                                      "weight_norm": False, "bias_out": False,
                                      "pixel_mask": False}),
}


def get_config(variant: str = "nonlinear") -> ml_collections.ConfigDict:
  variant = variant or "nonlinear"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
  spec = VARIANTS[variant]
  c = common.base()
  c.data = common.data("nyuv2", batch_size=8, dev_batch_size=2, eval_batch_size=8,
                       root=None, dev_fraction=0.1, meta_fraction=0.025, downsample=1,
                       normalize=False,   # the original feeds images in [0, 1]
                       # AuxiLearn's split file, read from the data directory when there
                       # (aux_jax.data.nyuv2; "" = a seeded random dev draw)
                       split_file="hpo_validation_indices.json")
  # The original's loss arithmetic (aux_jax.losses): segmentation averaged over all
  # H·W pixels, normals masked by the depth mask, ConvNet normal map 1 outside it;
  # "ours": means over each task's valid pixels.
  c.data.loss_convention = "original"
  # SegNet as the original: 64-128-256-512-1024, task heads 3×3 then 1×1.
  c.model = common.model("segnet")
  c.model.dense_head = "3x3_1x1"
  c.method = common.method(
      spec["name"], partition="module_wise" if spec["name"] == "maoal" else "global",
      **spec.get("kwargs", {}))
  c.optim = common.optim("adam", lr=1e-4, momentum=0.0,
                         schedule="step",   # lr × 0.5 every decay_every steps
                         decay_every=100 * EPOCH, num_steps=200 * EPOCH)
  # AuxiLearn applies every clipped hypergradient (no divergence test).
  c.hyper = common.hyper(interval=50, step=1e-4, optimizer="sgd",
                         lr=1e-4 if variant == "conv" else 1e-3, momentum=0.9,
                         weight_decay=1e-5 if variant == "conv" else 1e-4,
                         max_norm=100.0 if variant == "conv" else 25.0,
                         on_diverged="apply")
  # Selection on the original's mIoU (per image, over the classes present, averaged
  # over images); the dataset-wide confusion-matrix mIoU is reported as miou_dataset.
  c.train = common.train(select="miou_per_image", log_every=50, eval_every=EPOCH,
                         checkpoint_every=10 * EPOCH,
                         select_ties="last")  # the original's >= (trainer.py:291)
  return c
