"""AANG (Dery et al., ICLR 2023): a factored space of auxiliary objectives on text.

Modules: `space` (the (I, T, R, O) space, validity, enumeration), `transforms` (T),
`attention` (R), `objectives` (the loss of one objective), `weights` (factored logits,
batch split, loss weights, meta-update), `model` (the RoBERTa body of
`aux_jax.models.roberta`, fresh or loaded, with one head per objective), `data` (jsonl loader, macro-F1, a toy task), `step` (the
pure jitted steps), `experiment` (the one loop's experiment), `plots` (per-axis
weights over training).
"""

from aux_jax.aang.data import TextClassificationData, TextSplit, keyword_data, load_jsonl_dir, macro_f1
from aux_jax.aang.space import SearchSpace, get_space, make_space

__all__ = [
    "SearchSpace", "TextClassificationData", "TextSplit", "get_space",
    "keyword_data", "load_jsonl_dir", "macro_f1", "make_space",
]
