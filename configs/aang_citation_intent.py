"""AANG on citation intent (ACL-ARC), from a user-given jsonl directory.

The directory holds train.jsonl, dev.jsonl and test.jsonl, one JSON object per line
with "text" and "label" (see `aux_jax.aang.data`). Dev macro-F1 selects the model;
test is scored once, for the selected model.

    python -m experiments.train --config=configs/aang_citation_intent.py:aang \
        --config.data_dir=/path/to/citation_intent --workdir=workdirs/aang

The argument after ':' is the variant (`VARIANTS`):

* ``stl``: the primary task alone;
* ``tapt``: primary + BERT-style denoising of the task's texts, fixed weights;
* ``static_mt``: the 24 objectives of ``citation.supervised`` with fixed, equal
  weights (the original's static multitask baseline: AANG with meta learning rates 0);
* ``aang``: AANG, the objectives' weights meta-learned;
* ``aang_roberta`` (and ``<variant>_roberta``): the paper's pretrained setting
  (ldery/Automating-Auxiliary-Learning @ f876fe2, ``hyperparam_search.py`` and
  ``hyper_search_configs.py`` ``partial_big``); needs ``--config.model.pretrained=DIR``,
  a Hugging Face RoBERTa directory (config.json, model.safetensors, tokenizer.json).

Every variant runs as the original does: the search (or baseline) training, then a
final low-learning-rate fine-tuning of the body and primary head (AdamW 1e-6, patience
3), kept only if it improves the dev score (``finetune.*``; ``--config.finetune.enabled
=False`` to skip it). The runner is ``two_phase`` over AANG's experiment: the workdir
holds ``pretrain/`` (the search), ``finetune/`` and ``summary.json``.

Defaults without ``_roberta``: the same RoBERTa module (`aux_jax.models.roberta`), small
and trained from scratch over a byte-level ``tokenizer.json`` written in the workdir,
sized for a CPU (the paper's learning rates are for a pretrained body).

Hyper-parameter grid. The original chooses its meta learning rates (with the head lr
and K) from a grid, ``partial_big`` (``hyper_search_configs.py:4-12``): auxlr ∈ {0.1,
1.0}, soptlr ∈ {0.01, 0.1}, classflr ∈ {1e-4, 1e-3}, nconf ∈ {3, 6}. A grid point is a
variant with ``+`` suffixes, ``<variant>+aux<a>+bal<b>[+head<h>][+k<K>]`` (``aang.aux_lr``
= auxlr, ``aang.balance_lr`` = soptlr, ``optim.head_lr`` = classflr,
``aang.num_sampled`` = nconf). ``GRID`` is the original's 16 points on RoBERTa,
``META_GRID`` the 4 meta-lr points on the from-scratch model; the compare launcher runs a grid
and names the row of the best **dev** score (the original ranks by test, README.md:
88-90; test is never used to select here):

    python -m experiments.compare --config=configs/aang_citation_intent.py \
        --config.data_dir=DIR --config.model.pretrained=ROBERTA --variants=@GRID --seeds=3

Fidelity rows followed: docs/fidelity.md, AANG table (every row; the deliberate
differences there are this config's defaults).
"""

import itertools
import re

import ml_collections
from ml_collections import config_dict

from configs import common

VARIANTS = (common.STL, "tapt", "static_mt", "aang")

# Grid points (module docstring): (auxlr, soptlr, classflr, nconf) of `partial_big`.
_GRID_KEYS = {"aux": ("aang", "aux_lr", float), "bal": ("aang", "balance_lr", float),
              "head": ("optim", "head_lr", float), "k": ("aang", "num_sampled", int)}
GRID = tuple(f"aang_roberta+aux{a}+bal{b}+head{h}+k{k}" for a, b, h, k in
             itertools.product(("0.1", "1.0"), ("0.01", "0.1"), ("1e-4", "1e-3"), (3, 6)))
META_GRID = tuple(f"aang+aux{a}+bal{b}" for a, b in
                  itertools.product(("0.1", "1.0"), ("0.01", "0.1")))


def get_config(variant: str = "aang") -> ml_collections.ConfigDict:
  variant = variant or "aang"
  name, *point = variant.split("+")
  if point:
    c = get_config(name)
    c.variant = variant
    for token in point:
      m = re.fullmatch(r"(aux|bal|head|k)(.+)", token)
      if m is None:
        raise ValueError(f"unknown grid setting {token!r} in {variant!r}; known "
                         f"prefixes: {sorted(_GRID_KEYS)}")
      section, field, cast = _GRID_KEYS[m.group(1)]
      c[section][field] = cast(m.group(2))
    return c
  roberta = variant.endswith("_roberta")
  method = variant.removesuffix("_roberta")
  if method not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS} and "
                     f"<variant>_roberta")
  c = common.base("two_phase")
  c.phase_runner = "aang"     # each phase is an AANG experiment (aux_jax.aang.experiment)
  c.variant = variant
  c.data_dir = config_dict.placeholder(str)
  c.data = ml_collections.ConfigDict({
      "name": "jsonl",         # train/dev/test.jsonl in data_dir (aux_jax.aang.data)
      "kwargs": ml_collections.ConfigDict(),
      "batch_size": 16,        # primary examples per step
      "aux_batch_size": 16,    # auxiliary rows per step, shared out by the batch split
      "dev_batch_size": 32,    # dev-head fit (training rows) and g_dev (dev rows)
      "eval_batch_size": 64,
      "max_len": 160,          # tokens per sequence (longer texts are truncated)
  })
  # From scratch: RoBERTa of width 64, 2 layers, 4 heads, MLP 128 (aang.model.fresh_net),
  # dense kernels lecun_normal (variance 1/fan_in): RoBERTa's N(0, 0.02) is 1/6 of that
  # at width 64 and learns much more slowly in 800 steps (docs/fidelity.md, AANG
  # "encoder"). The "_roberta" variants load a checkpoint (its config.json, no kwargs).
  c.model = common.model("roberta", width=64, depth=2, num_heads=4, mlp_dim=128,
                         dropout=0.1, kernel_init="lecun_normal")
  c.model.pretrained = ""      # a Hugging Face RoBERTa directory; "" = from scratch
  c.model.classifier_dropout = 0.1
  c.model.tie_lm_decoders = False   # True: LM heads decode with the body's embedding
  c.method = common.method(method)
  c.aang = ml_collections.ConfigDict({
      "space": "citation.supervised",
      "drop_identity_denoise": False,
      "num_sampled": 3,        # K objectives per step (nconf_samp)
      "clip_norm": 10.0,       # per-objective body-gradient clip
      "use_all": True,         # the per-objective logit W_all
      "aux_lr": 0.1,           # meta lr of W_I, W_T, W_R, W_O, W_all (auxiliaries-lr)
      "balance_lr": 0.1,       # meta lr of the primary/auxiliary balance (prim-aux-lr)
      "meta_every": 3,         # steps whose cosines one meta-update averages
      "mask_rate": 0.15,
      "rf_keep_prob": 0.6,     # random-factorised attention density
      "copy_fix": True,        # hide the diagonal in the copy cases (False: original)
      "dev_head": {"lr": 1e-2, "weight_decay": 0.1, "steps": 10, "tol": 1e-3},
  })
  c.optim = common.optim("adamw", lr=2e-3, num_steps=800, weight_decay=0.01,
                         schedule="warmup_linear", clip_norm=1.0, head_lr=2e-3,
                         head_weight_decay=0.1, b1=0.9, b2=0.98, eps=1e-6,
                         warmup_frac=0.06, warmup_max=700)
  # Ties: the latest of equal dev scores is kept and resets patience (the original's
  # ">= max", AA:406, modelling.py:823; its stop "max of the last N < max", AA:414-417).
  c.train = common.train(log_every=10, eval_every=50, checkpoint_every=50, patience=6,
                         select="macro_f1", select_ties="last")
  # Final fine-tuning (scripts/autoaux.py:433-484): body + primary head, AdamW 1e-6
  # (no schedule), dev every ~epoch, patience 3; kept only if dev improves.
  c.finetune = ml_collections.ConfigDict({
      "enabled": True,
      "keep_if_better": True,
      "optim": {"lr": 1e-6, "head_lr": 1e-6, "head_weight_decay": 0.01,
                "schedule": "constant", "num_steps": 1_000},
      "train": {"eval_every": 100, "checkpoint_every": 100, "patience": 3},
  })
  if roberta:
    paper_pretrained(c)
  return c


def paper_pretrained(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The paper's hyper-parameters for RoBERTa-base (``partial_big``; HS = the original's
  hyperparam_search.py, HSC = hyper_search_configs.py, AA = scripts/autoaux.py)."""
  c.data.batch_size = 128        # primary 32 x 4 micro-batches (HSC:10)
  c.data.aux_batch_size = 256    # auxiliary 64 x 4 (HSC:11)
  c.data.max_len = 512           # classf_max_seq_len / block_size
  c.model.dtype = "float32"
  c.model.classifier_dropout = 0.3   # --classifier_dropout (HS:44)
  c.optim.lr = 1e-4              # body (HS:53)
  c.optim.weight_decay = 0.01
  c.optim.head_lr = 1e-4         # classflr in {1e-4, 1e-3} (HSC:7)
  c.optim.head_weight_decay = 0.1
  c.optim.num_steps = 900        # 150 epochs of floor(1688/64)//4 steps (AA:238)
  c.train.eval_every = 30        # AA:402-421
  c.train.checkpoint_every = 30
  c.train.patience = 20
  c.finetune.optim.num_steps = 140   # 10 epochs of 1688/128 steps
  c.finetune.train.eval_every = 14   # one epoch
  c.finetune.train.checkpoint_every = 14
  return c
