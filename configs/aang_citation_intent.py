"""AANG on citation intent (ACL-ARC), from a user-given jsonl directory.

The directory holds train.jsonl, dev.jsonl and test.jsonl, one JSON object per line
with "text" and "label" (see `aux_jax.aang.data`). A small byte-level Transformer
encoder trained from scratch; macro-F1 on dev every `eval_every` steps with early
stopping; test scored once for the dev-selected parameters.

    python -m experiments.train --config=configs/aang_citation_intent.py:aang \
        --config.data_dir=/path/to/citation_intent --workdir=workdirs/aang

The argument after ':' is the method: aang (searched auxiliary objectives), tapt (fixed
multitask with the BERT-style denoise objective) or supervised (primary task only).
"""

import dataclasses

import ml_collections

from aux_jax.aang.train import AangConfig


def get_config(method: str = "aang") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.aang = ml_collections.ConfigDict(dataclasses.asdict(AangConfig(
      method=method or "aang", max_len=160, learning_rate=2e-3, num_steps=800,
      eval_every=50, patience=6, num_sampled=3)))
  return c
