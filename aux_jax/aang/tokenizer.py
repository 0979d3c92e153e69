"""A byte-level tokenizer: UTF-8 bytes plus four special ids.

Why bytes (and not a word-piece vocabulary trained with HF ``tokenizers``):

* no dependency and nothing to train or download: the vocabulary is fixed (260 ids), so
  a model's embedding size never depends on the training texts, and the same ids come
  out on every machine;
* no out-of-vocabulary tokens: any text in any language encodes losslessly;
* the special ids sit below every byte id, so "is this a special token?" is one integer
  comparison (``ids < FIRST_BYTE_ID``) inside jitted corruption code.

The price is longer sequences (about 5 bytes per English word), which a small
from-scratch encoder with ``max_len`` of a few hundred handles on one CPU.

Layout of the ids::

    0 PAD   1 CLS (begin)   2 SEP (end)   3 MASK   4 + b  for each byte b in 0..255
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

PAD_ID = 0
CLS_ID = 1
SEP_ID = 2
MASK_ID = 3
FIRST_BYTE_ID = 4
NUM_SPECIAL = FIRST_BYTE_ID
VOCAB_SIZE = FIRST_BYTE_ID + 256


class ByteTokenizer:
  """UTF-8 byte tokenizer with ``[CLS] bytes... [SEP] [PAD]...`` sequences.

  Attributes:
    pad_id, cls_id, sep_id, mask_id: the special ids (all ``< first_regular_id``).
    first_regular_id: the smallest id of a real (byte) token.
    vocab_size: number of ids, 260.
  """

  pad_id = PAD_ID
  cls_id = CLS_ID
  sep_id = SEP_ID
  mask_id = MASK_ID
  first_regular_id = FIRST_BYTE_ID
  vocab_size = VOCAB_SIZE

  def encode(self, text: str, max_len: int) -> np.ndarray:
    """Encodes one text.

    Args:
      text: any string.
      max_len: output length, at least 2; the bytes are truncated to ``max_len - 2``.

    Returns:
      i32[max_len]: ``[CLS] b_1 .. b_n [SEP]`` then ``PAD`` to the right.
    """
    if not isinstance(text, str):
      raise ValueError(f"ByteTokenizer.encode expects a str, got {type(text).__name__}.")
    if max_len < 2:
      raise ValueError(f"max_len must be >= 2 (room for CLS and SEP), got {max_len}.")
    body = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)[: max_len - 2]
    out = np.full((max_len,), PAD_ID, dtype=np.int32)
    out[0] = CLS_ID
    out[1 : 1 + body.size] = body.astype(np.int32) + FIRST_BYTE_ID
    out[1 + body.size] = SEP_ID
    return out

  def encode_batch(self, texts: Sequence[str], max_len: int) -> np.ndarray:
    """Encodes texts into ``i32[N, max_len]`` (see `encode`)."""
    if len(texts) == 0:
      return np.zeros((0, max_len), dtype=np.int32)
    return np.stack([self.encode(t, max_len) for t in texts])

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    """Inverse of `encode` up to truncation: special ids are dropped, MASK shows as ``_``."""
    out = bytearray()
    for i in np.asarray(ids).tolist():
      if i >= FIRST_BYTE_ID:
        out.append(i - FIRST_BYTE_ID)
      elif i == MASK_ID:
        out.extend(b"_")
    return out.decode("utf-8", errors="replace")
