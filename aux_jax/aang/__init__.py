"""AANG (Dery et al., ICLR 2023): a factored space of auxiliary objectives on text.

Modules: `space` (the (I, T, R, O) space, validity, enumeration), `transforms` (T),
`attention` (R), `objectives` (the loss of one objective), `weights` (factored logits,
sampling, meta-update), `transformer` (a small Flax encoder and heads), `tokenizer`
(byte level), `data` (jsonl loader, macro-F1, a toy task), `train` (jitted steps and
`run_aang`), `plots` (per-axis weights over training), `experiment` (the launcher's
runner: config → workdir).
"""

from aux_jax.aang.data import TextClassificationData, TextSplit, keyword_data, load_jsonl_dir, macro_f1
from aux_jax.aang.space import SearchSpace, get_space, make_space
from aux_jax.aang.train import AangConfig, run_aang

__all__ = [
    "AangConfig", "SearchSpace", "TextClassificationData", "TextSplit", "get_space",
    "keyword_data", "load_jsonl_dir", "macro_f1", "make_space", "run_aang",
]
