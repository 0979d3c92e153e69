"""Tiny configs on the embedded digits data, one per runner, for the preemption tests.

A config file like those in ``configs/`` (the launcher loads it by path):

    python -m experiments.train --config=tests/train/tiny_configs.py:taskgen --workdir=W

Cases: ``maoal`` (runner train, module-wise weights with upper steps), ``taskgen``
(runner train, the task-generation method: a learned labeler), ``two_phase`` (equal
weights, then fine-tuning on the main task from the pretrained model). ``maoal`` and
``taskgen`` run the originals' upper-step batches (train-mode BatchNorm on an augmented
dev batch, G on a fresh training batch) and PyTorch's default initialisation, so
resuming is checked with them too.
"""

import ml_collections

from configs import common

CASES = ("maoal", "taskgen", "two_phase")
STEPS = 24


def get_config(case: str = "maoal") -> ml_collections.ConfigDict:
  if case not in CASES:
    raise ValueError(f"unknown case {case!r}; expected one of {CASES}")
  c = common.base("two_phase" if case == "two_phase" else "train")
  c.mesh.num_devices = 1
  c.data = common.data("digits", batch_size=8, dev_batch_size=10, eval_batch_size=100,
                       augment=True, crop_pad=1, n_train=40, n_dev=30, n_test=60, n_aux_digit=40,
                       n_aux_parity=40, n_aux_ge5=40, n_aux_random=40)
  c.model = common.model("small_cnn", width=4, features=16)
  c.method = common.method("maoal", partition="module_wise")
  c.optim = common.optim("sgd", lr=0.05, num_steps=STEPS)
  c.hyper = common.hyper(interval=3, step=0.1, optimizer="adam", lr=0.01)
  c.train = common.train(log_every=2, eval_every=4, checkpoint_every=8)
  if case != "two_phase":  # the originals' upper-step batches (MAOAL, AuxiLearn)
    c.hyper.dev_bn, c.hyper.train_term, c.data.augment_dev = "train", "fresh", True
    c.model.init = c.model.head_init = "torch_default"
  if case == "taskgen":
    c.data.kwargs.primary_only = True
    c.data.subclass_task = 2
    c.method = common.method("taskgen", aux_weight=1.0, learn_labeler=True,
                             labeler_features=(4,))
  elif case == "maoal":
    c.model.aux_heads = "shifted"  # the original MAOAL's head indexing
  elif case == "two_phase":
    c.method = common.method("equal")
    c.data.kwargs.primary_only = False
    c.finetune = ml_collections.ConfigDict({
        "enabled": True,
        "optim": {"name": "adam", "lr": 1e-3, "schedule": "constant",
                  "weight_decay": 0.0, "num_steps": 16}})
  return c
