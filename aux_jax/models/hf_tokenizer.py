"""The one tokenizer path: a Hugging Face ``tokenizer.json`` read by `HFTokenizer`.

Both AANG settings read their tokenizer here: a checkpoint's ``tokenizer.json`` (RoBERTa's
byte-level BPE), or, from scratch, the byte-level file `write_byte_level` saves in the
workdir (`byte_level_tokenizer`): the ``tokenizers`` library's byte-level pre-tokenizer
and decoder over a BPE model with no merges, so every UTF-8 byte is one token::

    0 <s>   1 <pad>   2 </s>   3 <unk>   4 + b  for each byte b in 0..255   260 <mask>

RoBERTa's special layout, so both settings share one code path. It is a fixed function
of nothing (no training text, nothing downloaded): the same ids on every machine, no
out-of-vocabulary text, and a model's embedding size (261) never depends on the data.

Sequences are laid out as ``<s> t_1 .. t_n </s> <pad> ...`` (RoBERTa's single-sentence
format), built here rather than by the file's post-processor, so the truncation of the
body to ``max_len - 2`` tokens is counted.

Special ids: RoBERTa's are ``<s>=0, <pad>=1, </s>=2, <unk>=3`` and ``<mask>`` is the
*last* id (50264 in roberta-base), so "special" is not one comparison ``ids <
first_regular_id``. The wrapper gives both views:

* ``special_ids`` (the file's added tokens marked special) and ``is_special(ids)``;
* ``first_regular_id`` and ``end_regular_id``: ``[first_regular_id, end_regular_id)`` is
  the largest block of regular ids after the leading specials (``[4, 50264)`` for
  roberta-base, ``[4, 260)`` for the byte level), the range to draw random
  replacement tokens from.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


class HFTokenizer:
  """``tokenizers.Tokenizer`` with ``<s> ... </s> <pad>...`` batches of fixed length.

  Attributes:
    pad_id, cls_id, sep_id, mask_id, unk_id: ids of ``<pad>``, ``<s>``, ``</s>``,
      ``<mask>``, ``<unk>`` (names configurable in `from_file`).
    special_ids: i32[S], sorted ids of the special tokens.
    first_regular_id: the smallest id that is not special.
    end_regular_id: the first special id above ``first_regular_id`` (or ``vocab_size``).
    vocab_size: number of ids, added tokens included.
  """

  def __init__(self, tokenizer, cls_token: str = "<s>", sep_token: str = "</s>",
               pad_token: str = "<pad>", mask_token: str = "<mask>",
               unk_token: str = "<unk>"):
    """Wraps a ``tokenizers.Tokenizer`` (its own truncation and padding are disabled).

    Raises:
      ValueError: a named special token is not in the vocabulary.
    """
    self._tok = tokenizer
    self._tok.no_truncation()
    self._tok.no_padding()

    def token_id(token: str) -> int:
      i = tokenizer.token_to_id(token)
      if i is None:
        raise ValueError(f"Special token {token!r} is not in the tokenizer's vocabulary.")
      return i

    self.cls_id, self.sep_id = token_id(cls_token), token_id(sep_token)
    self.pad_id, self.mask_id = token_id(pad_token), token_id(mask_token)
    self.unk_id = token_id(unk_token)
    self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    special = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    special |= {self.cls_id, self.sep_id, self.pad_id, self.mask_id, self.unk_id}
    self.special_ids = np.array(sorted(special), np.int32)
    self.first_regular_id = next(i for i in range(self.vocab_size + 1) if i not in special)
    above = self.special_ids[self.special_ids > self.first_regular_id]
    self.end_regular_id = int(above[0]) if above.size else self.vocab_size

  @classmethod
  def from_file(cls, path: str, **special_tokens: str) -> HFTokenizer:
    """Loads ``tokenizer.json``; ``special_tokens`` override the RoBERTa token names."""
    from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
    return cls(Tokenizer.from_file(path), **special_tokens)

  def is_special(self, ids):
    """bool mask of special ids; NumPy in, NumPy out; JAX (also traced) in, JAX out."""
    xp = jnp if isinstance(ids, jax.Array) else np
    return xp.isin(ids, self.special_ids)

  def encode_batch(self, texts: Sequence[str], max_len: int,
                   return_num_truncated: bool = False):
    """Encodes texts into ``i32[N, max_len]``: ``<s> t_1 .. t_n </s> <pad>...``.

    Args:
      texts: strings.
      max_len: output length, at least 2; bodies are truncated to ``max_len - 2`` tokens.
      return_num_truncated: also return how many texts were truncated.

    Returns:
      The ids, or ``(ids, num_truncated)``.
    """
    if max_len < 2:
      raise ValueError(f"max_len must be >= 2 (room for <s> and </s>), got {max_len}.")
    texts = list(texts)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
      raise ValueError(f"encode_batch expects strings, got {type(bad).__name__}.")
    out = np.full((len(texts), max_len), self.pad_id, np.int32)
    truncated = 0
    for row, enc in zip(out, self._tok.encode_batch(texts, add_special_tokens=False)):
      body = enc.ids[: max_len - 2]
      truncated += len(enc.ids) > len(body)
      row[0] = self.cls_id
      row[1 : 1 + len(body)] = body
      row[1 + len(body)] = self.sep_id
    return (out, truncated) if return_num_truncated else out

  def decode(self, ids) -> str:
    """Text of ``ids`` without ``<s>``, ``</s>`` and ``<pad>`` (``<mask>`` stays visible)."""
    drop = {self.cls_id, self.sep_id, self.pad_id}
    keep = [i for i in np.asarray(ids).tolist() if i not in drop]
    return self._tok.decode(keep, skip_special_tokens=False)


# RoBERTa's special tokens, in id order, then <mask> after the 256 bytes.
BYTE_LEVEL_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
BYTE_LEVEL_MASK = "<mask>"


def _byte_symbols() -> list[str]:
  """The character that stands for each byte b in a byte-level vocabulary (list[256]).

  The convention of the ``tokenizers`` ByteLevel pre-tokenizer (GPT-2's): printable
  Latin-1 bytes stand for themselves, the other bytes (controls, space, 0x7F-0xA0,
  0xAD) for code points 256, 257, ... in byte order.
  """
  printable = [b for b in range(256)
               if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
  out, extra = {}, 0
  for b in range(256):
    if b in printable:
      out[b] = chr(b)
    else:
      out[b] = chr(256 + extra)
      extra += 1
  return [out[b] for b in range(256)]


def byte_level_tokenizer():
  """The from-scratch ``tokenizers.Tokenizer``: one token per UTF-8 byte (module docstring)."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # pylint: disable=g-import-not-at-top

  vocab = {t: i for i, t in enumerate(BYTE_LEVEL_SPECIALS)}
  first = len(vocab)
  vocab.update({c: first + b for b, c in enumerate(_byte_symbols())})
  vocab[BYTE_LEVEL_MASK] = len(vocab)
  tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
  # No prefix space and no word split: the ids are exactly the text's bytes.
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  tok.decoder = decoders.ByteLevel()
  # The specials are vocabulary entries, not added tokens: a text that spells "<mask>"
  # is its six bytes, never the MASK id.
  return tok


def write_byte_level(path: str) -> str:
  """Saves `byte_level_tokenizer` as ``path`` (a ``tokenizer.json``) unless it exists.

  An existing file is kept (a resumed run reads the file its checkpoint was trained
  with). Written to a temporary name then renamed, so a reader never sees half a file.

  Returns:
    ``path``.
  """
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    byte_level_tokenizer().save(tmp)
    os.replace(tmp, path)
  return path
